#!/usr/bin/env python
"""One quantized linear kernel, launched a few times, for a profiler (ncu / nsys) on a GPU machine.

    ncu --clock-control none --kernel-name regex:gemv --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats --section Occupancy \\
        python benchmarks/profile_linear.py --fmt w4a16 --n 18560 --k 4096 --m 1

Random weights in the kernel's format (the time does not depend on the values).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from kernels_linear import _run, _weights  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fmt", choices=("w8a8", "w4a8", "w4a16"), required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--launches", type=int, default=4)
    args = ap.parse_args()
    from quamba_edge import kernels

    ops = kernels.load()
    wt = _weights(args.fmt, args.n, args.k)
    a8 = args.fmt != "w4a16"
    x = (torch.randint(-128, 128, (args.m, args.k), dtype=torch.int8, device="cuda") if a8
         else torch.randn(args.m, args.k, device="cuda").half())
    y = torch.empty(args.m, args.n, dtype=torch.float16, device="cuda")
    xs = torch.full((), 0.02, device="cuda")
    for _ in range(args.launches):
        _run(ops, args.fmt, x, wt, y, xs, None)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
