"""SSD: the float Mamba2 chunked scan as a custom node (fp16 baseline and W4A16 models).

The reference is the FP model's own ``quamba_edge.models.ssm.ssd_chunked`` (``ssd_state_update`` for
L = 1). dt arrives already processed (softplus of dt + bias, clamped: standard ONNX ops before the node).
"""

from __future__ import annotations

import torch

from .registry import Attr, OpRecord, Port, register


def _node(x, dt, A, B, C, D, state_in, *, chunk_size: int, **_: object):
    from ..models import ssm

    if x.shape[1] == 1:
        y, s = ssm.ssd_state_update(state_in, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], D)
        y = y.unsqueeze(1)
    else:
        y, s = ssm.ssd_chunked(x, dt, A, B, C, chunk_size, D, state_in)
    return y.to(x.dtype), s.to(state_in.dtype)


RECORD = register(OpRecord(
    name="SSD",
    inputs=(Port("x", "T", "[B, L, H, P]"), Port("dt", "T", "[B, L, H] (softplus'ed, clamped)"),
            Port("A", "float32", "[H] (= -exp(A_log))"), Port("B", "T", "[B, L, G, N]"),
            Port("C", "T", "[B, L, G, N]"), Port("D", "float32", "[H]"), Port("state_in", "T", "[B, H, P, N]")),
    outputs=(Port("y", "T", "[B, L, H, P]"), Port("state_out", "T", "[B, H, P, N]")),
    attrs=(Attr("chunk_size", "int", 256),),
    reason="Chunked scan with state passing (see QuantSSD); float inputs, fp32 state math. The plugin runs "
           "ssd_state_update.cu for L = 1.",
    reference="quamba_edge.models.ssm.ssd_chunked (+ ssd_state_update for L = 1)",
    impl=_node,
    kernel="ssd.cu",
))


def emit_ssd(x, dt, A, B, C, chunk_size, D, initial_state):
    """Export form of ``ssm.ssd_chunked``."""
    from .registry import emit

    bsz, _, h, p = x.shape
    n = B.shape[-1]
    D = torch.zeros(h) if D is None else D
    if initial_state is None:
        initial_state = x.new_zeros(bsz, h, p, n)
    return emit("SSD", [x, dt, A, B, C, D, initial_state], {"chunk_size": int(chunk_size)},
                shapes=[x.shape, [bsz, h, p, n]])
