#!/usr/bin/env python3
"""Run the small representative kernel calls under compute-sanitizer.

    compute-sanitizer --tool memcheck  python plugins/sanitize_driver.py
    compute-sanitizer --tool racecheck python plugins/sanitize_driver.py

Every GPU test module may define tests whose names contain ``sanitize`` (e.g. ``test_sanitize_<op>``):
one or two calls of its kernel on small shapes (odd L, every optional input). This driver runs exactly
those (``pytest -m gpu -k sanitize tests/gpu``), so new ops join by adding such a test. torch's caching
allocator is switched off so that memcheck sees each tensor as its own allocation (an out-of-bounds
access into a neighbouring pooled block would otherwise go unnoticed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")
    sys.path.insert(0, str(ROOT))
    import pytest

    args = ["-q", "-m", "gpu", "-k", "sanitize", "-p", "no:cacheprovider", str(ROOT / "tests" / "gpu")]
    return int(pytest.main(args + sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
