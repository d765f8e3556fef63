#!/usr/bin/env python
"""End-to-end latency on this GPU: ``quamba-edge bench`` with the issue's shapes, into benchmarks/results/.

    python benchmarks/latency.py [any `quamba-edge bench` option, e.g. --models mamba2-8b --tokens 256]

Defaults: mamba-2.8b, mamba2-2.7b and mamba2-8b in fp16 / w8a8 / w4a8 / w4a16, prompts 128 ... 2048, batch
1 / 4 / 16 / 64, output benchmarks/results/latency.{json,csv,md,png}. Options given override the defaults.

    python benchmarks/latency.py --merge A/latency.json B/latency.json [--out DIR]

joins runs of the same commit and options that measured different models (the full grid does not fit in one
GPU-machine call) into DIR's latency.{json,csv,md,png}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quamba_edge.cli import main

DEFAULTS = {"--models": "mamba-2.8b,mamba2-2.7b,mamba2-8b",
            "--out": str(Path(__file__).resolve().parent / "results")}


def merge(paths: list[str], out: str) -> int:
    from quamba_edge.bench.latency import merge_docs, write_outputs

    docs = [json.loads(Path(p).read_text()) for p in paths]
    for p in write_outputs(merge_docs(docs), out):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--merge"]:
        files = [a for a in argv[1:] if a != "--out"]
        out = argv[argv.index("--out") + 1] if "--out" in argv else DEFAULTS["--out"]
        sys.exit(merge([f for f in files if f != out], out))
    for opt, val in DEFAULTS.items():
        if opt not in argv:
            argv += [opt, val]
    sys.exit(main(["bench", *argv]))
