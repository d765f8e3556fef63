"""SelectiveScan: the float Mamba1 selective scan as a custom node (fp16 baseline and W4A16 models).

The reference is the FP model's own ``quamba_edge.models.ssm.selective_scan`` (``selective_state_update``
for L = 1). A recurrence over time: ONNX cannot express it without unrolling the time loop.
"""

from __future__ import annotations

import torch

from .registry import Attr, OpRecord, Port, register


def _node(u, delta, A, B, C, D, z, delta_bias, state_in, *, delta_softplus: int, **_: object):
    from ..models import ssm

    if u.shape[1] == 1:
        y, s = ssm.selective_state_update(state_in, u[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D, z[:, 0],
                                          delta_bias, bool(delta_softplus))
        y = y.unsqueeze(1)
    else:
        y, s = ssm.selective_scan(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), state_in)
    return y.to(u.dtype), s.to(state_in.dtype)


RECORD = register(OpRecord(
    name="SelectiveScan",
    inputs=(Port("u", "T", "[B, L, E]"), Port("delta", "T", "[B, L, E] (dt_proj output without bias)"),
            Port("A", "float32", "[E, N] (= -exp(A_log))"), Port("B", "T", "[B, L, N]"),
            Port("C", "T", "[B, L, N]"), Port("D", "float32", "[E]"), Port("z", "T", "[B, L, E]"),
            Port("delta_bias", "float32", "[E]"), Port("state_in", "T", "[B, E, N]")),
    outputs=(Port("y", "T", "[B, L, E]"), Port("state_out", "T", "[B, E, N]")),
    attrs=(Attr("delta_softplus", "int", 1),),
    reason="Recurrence over time (see QuantSelectiveScan); float inputs, fp32 state math. The plugin runs "
           "selective_state_update.cu for L = 1.",
    reference="quamba_edge.models.ssm.selective_scan (+ selective_state_update for L = 1)",
    impl=_node,
    kernel="selective_scan.cu",
))


def emit_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
    """Export form of ``ssm.selective_scan`` (absent D / bias become zeros, absent state zeros)."""
    from .registry import emit

    bsz, _, e = u.shape
    n = A.shape[1]
    D = torch.zeros(e) if D is None else D
    delta_bias = torch.zeros(e) if delta_bias is None else delta_bias
    if z is None:
        raise ValueError("export needs the Mamba1 gate z (every Mamba1 layer has one)")
    if initial_state is None:
        initial_state = u.new_zeros(bsz, e, n)
    return emit("SelectiveScan", [u, delta, A, B, C, D, z, delta_bias, initial_state],
                {"delta_softplus": int(delta_softplus)}, shapes=[u.shape, [bsz, e, n]])
