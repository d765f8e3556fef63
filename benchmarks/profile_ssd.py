#!/usr/bin/env python
"""One chunked SSD prefill (quant_ssd: int8 inputs, or ssd: the float op), launched a few times, for a profiler
(ncu / nsys) on a GPU machine — the evidence for where the chunked kernel's time goes (it runs at 0.4-0.7x
mamba_ssm's fp16 Triton kernel: benchmarks/results/kernels_float_ssm.json):

    ncu --clock-control none --kernel-name regex:chunked_kernel --launch-skip 1 --launch-count 1 \\
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \\
        --section SchedulerStats --section ComputeWorkloadAnalysis \\
        python benchmarks/profile_ssd.py --op ssd --model mamba2-2.7b --seqlen 2048

Random inputs (the time does not depend on the values); d_state / heads / headdim / groups of the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

# (heads, headdim, groups, d_state) of the Mamba2 shapes the benchmarks use
SHAPES = {"mamba2-2.7b": (80, 64, 1, 128), "mamba2-8b": (128, 64, 8, 128)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", choices=("quant_ssd", "ssd"), required=True)
    ap.add_argument("--model", choices=sorted(SHAPES), default="mamba2-2.7b")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--launches", type=int, default=3)
    args = ap.parse_args()
    from quamba_edge import kernels

    ops = kernels.load()
    h, p, g, n = SHAPES[args.model]
    b, L = args.batch, args.seqlen
    dev = "cuda"
    y = torch.empty(b, L, h, p, dtype=torch.float16, device=dev)
    st = torch.zeros(b, h, p, n, device=dev)
    if args.op == "ssd":
        x, B, C = (torch.randn(*s, device=dev).half() for s in ((b, L, h, p), (b, L, g, n), (b, L, g, n)))
        dt = torch.rand(b, L, h, device=dev) * 0.1
        A, D = -torch.rand(h, device=dev) * 8, torch.randn(h, device=dev)
        run = lambda: ops.ssd(x, dt, A, B, C, 256, D, st, y, st)  # noqa: E731
    else:
        i8 = lambda *s: torch.randint(-128, 128, s, dtype=torch.int8, device=dev)  # noqa: E731
        x, dt, B, C = i8(b, L, h, p), i8(b, L, h), i8(b, L, g, n), i8(b, L, g, n)
        x_scale = torch.full((h, p), 0.01, device=dev)
        bc_scale = torch.full((g,), 0.02, device=dev)
        dt_bias, a_log, d_q = torch.randn(h, device=dev), i8(h), i8(h)
        run = lambda: ops.quant_ssd(x, x_scale, dt, 0.03, dt_bias, a_log, 0.02, B, bc_scale, C, bc_scale,  # noqa: E731
                                    d_q, 0.01, 256, 0.0, float("inf"), st, None, y, st)
    for _ in range(args.launches):
        run()
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
