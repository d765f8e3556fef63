"""mamba_ssm's fp16 Triton kernels as benchmark anchors: what users run today, timed beside ours.

Benchmark use only: nothing in ``quamba_edge`` imports this, and the anchor is third-party code that is never
copied here (see ../shared/anchors/README.md). The anchor is found when ``mamba_ssm`` is importable, e.g. after

    mkdir -p /tmp/anchors && tar xzf .anchor/mamba_ssm_triton.tgz -C /tmp/anchors
    export QUAMBA_ANCHORS=/tmp/anchors          # or PYTHONPATH=/tmp/anchors

Each builder returns ``(callable(i), kind)`` with fp16 inputs of the row's shape rotated over the same number
of input sets as our kernel, or ``None`` when the anchor is not there (the row then has no anchor column).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

SSD_KIND = "mamba_ssm 2.3.2 Triton mamba_chunk_scan_combined (fp16, dt_softplus, initial + final state)"
UPDATE_KIND = "mamba_ssm 2.3.2 Triton selective_state_update (fp16 state, dt_softplus)"


@cache
def _mamba_ssm() -> Any | None:
    path = os.environ.get("QUAMBA_ANCHORS")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        from mamba_ssm.ops.triton import selective_state_update as ssu
        from mamba_ssm.ops.triton import ssd_combined
    except Exception as e:  # noqa: BLE001 -- absent or broken anchor: rows go without the column
        if path:
            print(f"anchors: mamba_ssm not importable from {path}: {e!r}", file=sys.stderr)
        return None
    return dict(ssd=ssd_combined.mamba_chunk_scan_combined, update=ssu.selective_state_update)


def available() -> bool:
    return _mamba_ssm() is not None


def _h(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, device="cuda") * scale).to(torch.float16)


def ssd_prefill(bsz: int, seqlen: int, h: int, p: int, g: int, n: int, chunk: int,
                nsets: int) -> tuple[Callable[[int], None], str] | None:
    """Mamba2 chunked SSD prefill: x [B, L, H, P], dt [B, L, H] (bias + softplus inside), B / C [B, L, G, N],
    initial state [B, H, P, N], final state returned: the work of our quant_ssd call."""
    m = _mamba_ssm()
    if m is None:
        return None
    a = -torch.rand(h, device="cuda") * 4
    d, dt_bias = _h(h), _h(h)
    sets = [dict(x=_h(bsz, seqlen, h, p), dt=_h(bsz, seqlen, h), B=_h(bsz, seqlen, g, n), C=_h(bsz, seqlen, g, n),
                 s0=_h(bsz, h, p, n)) for _ in range(nsets)]
    fn = m["ssd"]

    def call(i: int) -> None:
        s = sets[i % len(sets)]
        fn(s["x"], s["dt"], a, s["B"], s["C"], chunk, D=d, dt_bias=dt_bias, dt_softplus=True,
           initial_states=s["s0"], return_final_states=True)

    return call, SSD_KIND


def ssd_decode(bsz: int, h: int, p: int, g: int, n: int, nsets: int) -> tuple[Callable[[int], None], str] | None:
    """Mamba2 decode step: fp16 state [B, H, P, N] updated in place, per-head A / D / dt_bias broadcast over
    P and N (stride 0, as mamba_ssm's own Mamba2 layer passes them)."""
    m = _mamba_ssm()
    if m is None:
        return None
    a = (-torch.rand(h, device="cuda") * 4)[:, None, None].expand(h, p, n)
    d = _h(h)[:, None].expand(h, p)
    dt_bias = _h(h)[:, None].expand(h, p)
    sets = [dict(st=_h(bsz, h, p, n), x=_h(bsz, h, p), dt=_h(bsz, h)[:, :, None].expand(bsz, h, p),
                 B=_h(bsz, g, n), C=_h(bsz, g, n)) for _ in range(nsets)]
    fn = m["update"]

    def call(i: int) -> None:
        s = sets[i % len(sets)]
        fn(s["st"], s["x"], s["dt"], a, s["B"], s["C"], D=d, dt_bias=dt_bias, dt_softplus=True)

    return call, UPDATE_KIND


def scan_decode(bsz: int, e: int, n: int, nsets: int) -> tuple[Callable[[int], None], str] | None:
    """Mamba1 decode step: fp16 state [B, E, N] updated in place, z gate, D, dt_bias."""
    m = _mamba_ssm()
    if m is None:
        return None
    a = -torch.rand(e, n, device="cuda") * 8
    d, dt_bias = _h(e), _h(e)
    sets = [dict(st=_h(bsz, e, n), x=_h(bsz, e), dt=_h(bsz, e), z=_h(bsz, e), B=_h(bsz, n), C=_h(bsz, n))
            for _ in range(nsets)]
    fn = m["update"]

    def call(i: int) -> None:
        s = sets[i % len(sets)]
        fn(s["st"], s["x"], s["dt"], a, s["B"], s["C"], D=d, z=s["z"], dt_bias=dt_bias, dt_softplus=True)

    return call, UPDATE_KIND
