"""Head-group / channel-group bookkeeping for Quamba2 grouped scales (spec C.3 step 3, C.6, C.7).

Layout (after the sort-and-cluster permutation, spec C.3/C.4):

* ``H`` heads of ``P`` channels; SSD group ``g`` owns heads ``[g·H/G, (g+1)·H/G)``.
* ``head_groups``: int ``[G, m]`` sizes; head group ``i`` of SSD group ``g`` is the contiguous run of
  ``head_groups[g, i]`` heads starting at ``g·H/G + sum(head_groups[g, :i])``. Each row sums to ``H/G``.
  Sizes may be 0 (fewer clusters than ``m``, see ``sort_cluster``).
* ``channel_groups``: int ``[G, m, n]`` sizes; channel group ``j`` of head group ``(g, i)`` covers head
  channels ``[sum(channel_groups[g, i, :j]), sum(channel_groups[g, i, :j+1]))`` for every head of that
  head group. Each row of a non-empty head group sums to ``P``; rows of empty head groups are ignored
  (``sort_cluster`` writes zeros there).
* Block ``(g, i, j)`` has flat id ``(g·m + i)·n + j``. Block scales are ``[G, m, n]`` (x, spec C.3) or
  ``[G, m, n, N]`` (cached SSM states, spec C.6).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["validate_groups", "block_index_map", "expand_block_scales"]


def validate_groups(head_groups: Tensor, channel_groups: Tensor, nheads: int, headdim: int) -> None:
    """Raise ``ValueError`` unless the group sizes describe a valid tiling (module docstring)."""
    hg = torch.as_tensor(head_groups)
    cg = torch.as_tensor(channel_groups)
    if hg.dim() != 2 or cg.dim() != 3 or cg.shape[:2] != hg.shape:
        raise ValueError(f"head_groups must be [G, m] and channel_groups [G, m, n]; got "
                         f"{tuple(hg.shape)} and {tuple(cg.shape)}")
    G = hg.shape[0]
    if nheads % G:
        raise ValueError(f"nheads={nheads} is not divisible by ngroups={G}")
    if (hg < 0).any() or (cg < 0).any():
        raise ValueError("group sizes must be non-negative")
    if not torch.equal(hg.sum(1), torch.full((G,), nheads // G, dtype=hg.sum(1).dtype)):
        raise ValueError(f"each head_groups row must sum to H/G={nheads // G}, got {hg.sum(1).tolist()}")
    sums = cg.sum(-1)
    bad = (hg > 0) & (sums != headdim)
    if bad.any():
        raise ValueError(f"channel_groups of non-empty head groups must sum to P={headdim}; "
                         f"got {sums.tolist()}")


def block_index_map(head_groups: Tensor, channel_groups: Tensor, nheads: int, headdim: int) -> Tensor:
    """Long ``[H, P]``: the flat block id ``(g·m + i)·n + j`` of every (head, channel) position."""
    hg = torch.as_tensor(head_groups).long().cpu()
    cg = torch.as_tensor(channel_groups).long().cpu()
    validate_groups(hg, cg, nheads, headdim)
    G, m = hg.shape
    n = cg.shape[2]
    hpg = nheads // G
    out = torch.empty(nheads, headdim, dtype=torch.long)
    for g in range(G):
        h0 = g * hpg
        for i in range(m):
            nh = int(hg[g, i])
            if nh == 0:
                continue
            c0 = 0
            for j in range(n):
                nc = int(cg[g, i, j])
                out[h0:h0 + nh, c0:c0 + nc] = (g * m + i) * n + j
                c0 += nc
            h0 += nh
    return out


def expand_block_scales(scales: Tensor, head_groups: Tensor, channel_groups: Tensor, nheads: int,
                        headdim: int) -> Tensor:
    """Block scales ``[G, m, n, *rest]`` → per-position scales ``[H, P, *rest]`` (e.g. to quantize x
    ``[..., H, P]`` or states ``[B, H, P, N]`` with broadcasting)."""
    G, m, n = scales.shape[:3]
    rest = scales.shape[3:]
    idx = block_index_map(head_groups, channel_groups, nheads, headdim).to(scales.device)
    flat = scales.reshape(G * m * n, *rest)
    return flat[idx.reshape(-1)].reshape(nheads, headdim, *rest)
