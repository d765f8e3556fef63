#!/usr/bin/env python
"""End-to-end latency on this GPU: ``quamba-edge bench`` with the issue's shapes, into benchmarks/results/.

    python benchmarks/latency.py [any `quamba-edge bench` option, e.g. --models mamba2-8b --tokens 256]

Defaults: mamba-2.8b, mamba2-2.7b and mamba2-8b in fp16 / w8a8 / w4a8 / w4a16, prompts 128 ... 2048, batch
1 / 4 / 16 / 64, output benchmarks/results/latency.{json,csv,md,png}. Options given override the defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

from quamba_edge.cli import main

DEFAULTS = {"--models": "mamba-2.8b,mamba2-2.7b,mamba2-8b",
            "--out": str(Path(__file__).resolve().parent / "results")}

if __name__ == "__main__":
    argv = sys.argv[1:]
    for opt, val in DEFAULTS.items():
        if opt not in argv:
            argv += [opt, val]
    sys.exit(main(["bench", *argv]))
