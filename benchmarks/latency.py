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


def merge(argv: list[str]) -> int:
    import argparse

    from quamba_edge.bench.latency import merge_docs, write_outputs

    ap = argparse.ArgumentParser(prog="benchmarks/latency.py --merge")
    ap.add_argument("files", nargs="+", type=Path, help="latency.json of each run")
    ap.add_argument("--out", default=DEFAULTS["--out"], help="output directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    docs = [json.loads(f.read_text()) for f in args.files]
    for p in write_outputs(merge_docs(docs), args.out):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--merge"]:
        sys.exit(merge(argv[1:]))
    for opt, val in DEFAULTS.items():
        if opt not in argv:
            argv += [opt, val]
    sys.exit(main(["bench", *argv]))
