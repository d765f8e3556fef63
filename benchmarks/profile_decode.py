#!/usr/bin/env python
"""Eager batch-1 decode steps of a model at a real shape, for a profiler (ncu / nsys) on a GPU machine.

    ncu --clock-control none --cache-control none --kernel-name regex:rms_norm --launch-skip 8 \\
        --launch-count 4 --section LaunchStats --section SpeedOfLight \\
        python benchmarks/profile_decode.py --model mamba2-2.7b --precision fp16

Random weights built on the GPU in the precision's final format (the time does not depend on the values);
the kernels see the same arguments (dtypes, strides, aliasing) as in ``quamba-edge bench``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mamba2-2.7b", help="a shape of quamba_edge.bench.roofline.MODEL_SHAPES")
    ap.add_argument("--precision", default="fp16", choices=("fp16", "w8a8", "w4a8", "w4a16"))
    ap.add_argument("--steps", type=int, default=3, help="decode steps after the prompt")
    args = ap.parse_args()
    import numpy as np
    import torch

    from quamba_edge.bench.random_model import random_model
    from quamba_edge.runtime.backends.torch_backend import TorchBackend

    model = random_model(args.model, args.precision, device="cuda")
    be = TorchBackend(model, tokenizer_dir=None, precision=args.precision, description=args.model)
    _, state = be.forward(np.zeros((1, 16), dtype=np.int64), None, last_only=True)
    nxt = np.zeros((1, 1), dtype=np.int64)
    for _ in range(args.steps):
        _, state = be.forward(nxt, state, last_only=True)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
