#!/usr/bin/env python
"""The fp16 exports plugins/check_trt_rtx.py parses: the test suite's tiny models (tests/runtime_helpers.py),
quantized with quamba2 at w8a8 / w4a8 / w4a16 and unquantized (the FP graphs' SSD / SelectiveScan nodes), for
Mamba1 and Mamba2 -- every custom op of the registry with its attributes. Tiny, so they travel to the GPU machine
or are made there (~1 min on CPU):

    python plugins/trt_rtx_exports.py OUT_DIR
    python plugins/check_trt_rtx.py --plugins libquamba_trt_plugins.so --per-op 0 OUT_DIR/* --out R.json
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from runtime_helpers import artifact_dir, fp_dir, session_root  # noqa: E402

from quamba_edge.export import export_model  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for arch in ("mamba1", "mamba2"):
        for bits in ("w8a8", "w4a8", "w4a16"):
            export_model(artifact_dir(session_root(), arch, bits), out / f"tiny-{arch}-{bits}", dtype="fp16")
        export_model(fp_dir(session_root(), arch), out / f"tiny-{arch}-fp", dtype="fp16")
    print(f"wrote {len(list(out.iterdir()))} fp16 exports under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
