"""Expansion of compact Quamba2 scale tables to the per-channel form the reference ops take.

The ops take one scale per channel (QuantCausalConv1d: [C]; QuantSSD: x [H, P], state [H, P, N]; B/C
[G]), because one formula then covers Mamba1 (per-tensor: all entries equal) and Mamba2 (grouped). The
artifact and the kernels keep the compact tables; these helpers are the one definition of how a compact
table maps onto channels (spec shared/spec/quamba.md C.3 step 3, C.5, C.6).

Sort-and-cluster layout (after the weight permutation, spec C.3/C.4): heads are ordered SSD group by
SSD group (H/G heads each). Inside SSD group g the heads form ``m`` contiguous head groups of sizes
``head_group_sizes[g]`` (sum H/G). Inside every head of head group i of SSD group g the P channels form
``n`` contiguous channel groups of sizes ``channel_group_sizes[g, i]`` (sum P). Block (g, i, j) has the
scale ``scales[g, i, j]`` (x) or ``scales[g, i, j, :]`` (state, one per state index).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

IntsLike = Union[torch.Tensor, Sequence[int], Sequence[Sequence[int]]]


def _ints(t: IntsLike) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.int64)


def head_channel_index(
    head_group_sizes: IntsLike,
    channel_group_sizes: IntsLike,
    nheads: int,
    headdim: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every (head, channel): its SSD group g, head group i and channel group j, each int64 [H, P]."""
    hg = _ints(head_group_sizes)
    cg = _ints(channel_group_sizes)
    if hg.dim() != 2 or cg.dim() != 3 or cg.shape[:2] != hg.shape:
        raise ValueError(f"head_group_sizes must be [G, m] and channel_group_sizes [G, m, n]; got "
                         f"{tuple(hg.shape)}, {tuple(cg.shape)}")
    ngroups, m = hg.shape
    if nheads % ngroups != 0:
        raise ValueError(f"nheads {nheads} is not a multiple of ngroups {ngroups}")
    heads_per_group = nheads // ngroups
    if (hg < 0).any() or (cg < 0).any():
        raise ValueError("group sizes must be non-negative")
    if not torch.all(hg.sum(1) == heads_per_group):
        raise ValueError(f"each row of head_group_sizes must sum to H/G = {heads_per_group}: {hg.tolist()}")
    if not torch.all(cg.sum(2) == headdim):
        raise ValueError(f"each row of channel_group_sizes must sum to P = {headdim}: {cg.tolist()}")
    g_idx = torch.empty(nheads, headdim, dtype=torch.int64)
    i_idx = torch.empty(nheads, headdim, dtype=torch.int64)
    j_idx = torch.empty(nheads, headdim, dtype=torch.int64)
    for g in range(ngroups):
        head_of_group = torch.repeat_interleave(torch.arange(m), hg[g])  # [H/G] -> head group
        for hl in range(heads_per_group):
            h = g * heads_per_group + hl
            i = int(head_of_group[hl])
            g_idx[h] = g
            i_idx[h] = i
            j_idx[h] = torch.repeat_interleave(torch.arange(cg.shape[2]), cg[g, i])
    return g_idx, i_idx, j_idx


def expand_head_channel_scales(
    scales: torch.Tensor,
    head_group_sizes: IntsLike,
    channel_group_sizes: IntsLike,
    nheads: int,
    headdim: int,
) -> torch.Tensor:
    """x scales [G, m, n] (G x 4 x 4) -> per-channel fp32 [H, P]."""
    g, i, j = head_channel_index(head_group_sizes, channel_group_sizes, nheads, headdim)
    if scales.dim() != 3 or scales.shape != (*_ints(channel_group_sizes).shape,):
        raise ValueError(f"scales must be [G, m, n] = {tuple(_ints(channel_group_sizes).shape)}, got "
                         f"{tuple(scales.shape)}")
    return scales.to(torch.float32)[g, i, j]


def expand_head_channel_state_scales(
    scales: torch.Tensor,
    head_group_sizes: IntsLike,
    channel_group_sizes: IntsLike,
    nheads: int,
    headdim: int,
) -> torch.Tensor:
    """SSM-state scales [G, m, n, N] (G x 4 x 4 x N) -> fp32 [H, P, N]."""
    g, i, j = head_channel_index(head_group_sizes, channel_group_sizes, nheads, headdim)
    if scales.dim() != 4 or scales.shape[:3] != _ints(channel_group_sizes).shape:
        raise ValueError(f"scales must be [G, m, n, N] with [G, m, n] = "
                         f"{tuple(_ints(channel_group_sizes).shape)}, got {tuple(scales.shape)}")
    return scales.to(torch.float32)[g, i, j]


def expand_ssd_group_scales(scales: torch.Tensor, d_state: int) -> torch.Tensor:
    """Per-SSD-group scales [G] of B (or C) -> per-channel fp32 [G * N] of the B (or C) conv segment
    (channel g*N + n belongs to group g)."""
    if scales.dim() != 1:
        raise ValueError(f"scales must be [G], got {tuple(scales.shape)}")
    return scales.to(torch.float32).repeat_interleave(d_state)


def expand_segment_scales(scales: Union[torch.Tensor, Sequence[float]], sizes: Sequence[int]) -> torch.Tensor:
    """One scale per segment -> one per row/channel: ``[S]`` + sizes -> fp32 ``[sum(sizes)]``.

    Used for Mamba2's in_proj (segments z | x | B | C | dt: per-segment weight and output scales) and its
    conv (segments x | B | C: input, weight and bias scales).
    """
    s = torch.as_tensor(scales, dtype=torch.float32)
    if s.shape != (len(sizes),):
        raise ValueError(f"{len(sizes)} segment sizes need {len(sizes)} scales, got {tuple(s.shape)}")
    # static sizes (python ints), so torch.export sees fixed shapes (a tensor of repeats is data-dependent)
    return torch.cat([s[i].expand(int(n)) for i, n in enumerate(sizes)])


def conv_channel_scales(
    x_scales: torch.Tensor,
    b_scales: torch.Tensor,
    c_scales: torch.Tensor,
) -> torch.Tensor:
    """Concatenate per-channel x [E] (or [H, P]), B [G*N] and C [G*N] scales -> [E + 2GN], the channel
    order of Mamba2's conv (x | B | C)."""
    return torch.cat([x_scales.reshape(-1), b_scales.reshape(-1), c_scales.reshape(-1)]).to(torch.float32)
