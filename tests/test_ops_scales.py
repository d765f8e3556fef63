"""Expansion of compact Quamba2 scale tables to per-channel vectors (quamba_edge.ops.scales)."""

import pytest
import torch

from quamba_edge.ops.scales import (
    conv_channel_scales,
    expand_head_channel_scales,
    expand_head_channel_state_scales,
    expand_segment_scales,
    expand_ssd_group_scales,
    head_channel_index,
)


def _layout(ngroups):
    """H = 8 heads per SSD group... small but irregular group sizes, P = 8."""
    if ngroups == 1:
        hg = [[3, 2, 2, 1]]
        cg = [[[1, 2, 2, 3], [4, 2, 1, 1], [2, 2, 2, 2], [5, 1, 1, 1]]]
        nheads = 8
    else:
        hg = [[1, 1, 1, 1], [2, 1, 1, 0]]
        cg = [[[2, 2, 2, 2], [1, 1, 1, 5], [3, 3, 1, 1], [8, 0, 0, 0]],
              [[1, 2, 3, 2], [2, 2, 2, 2], [4, 4, 0, 0], [2, 2, 2, 2]]]
        nheads = 8
    return hg, cg, nheads, 8


def _loop_expand(table, hg, cg, nheads, headdim):
    ngroups = len(hg)
    hpg = nheads // ngroups
    out = {}
    for g in range(ngroups):
        h_local = 0
        for i, nh in enumerate(hg[g]):
            for _ in range(nh):
                h = g * hpg + h_local
                p = 0
                for j, nc in enumerate(cg[g][i]):
                    for _ in range(nc):
                        out[(h, p)] = table[g][i][j]
                        p += 1
                h_local += 1
    return out


@pytest.mark.parametrize("ngroups", [1, 2])
def test_expand_head_channel_scales(ngroups):
    hg, cg, nheads, headdim = _layout(ngroups)
    table = torch.arange(ngroups * 16, dtype=torch.float32).reshape(ngroups, 4, 4) + 1
    out = expand_head_channel_scales(table, hg, cg, nheads, headdim)
    assert out.shape == (nheads, headdim) and out.dtype == torch.float32
    ref = _loop_expand(table.tolist(), hg, cg, nheads, headdim)
    assert len(ref) == nheads * headdim
    for (h, p), v in ref.items():
        assert out[h, p].item() == v


@pytest.mark.parametrize("ngroups", [1, 2])
def test_expand_state_scales(ngroups):
    hg, cg, nheads, headdim = _layout(ngroups)
    n = 3
    table = torch.rand(ngroups, 4, 4, n, generator=torch.Generator().manual_seed(0))
    out = expand_head_channel_state_scales(table, hg, cg, nheads, headdim)
    assert out.shape == (nheads, headdim, n)
    for k in range(n):
        assert torch.equal(out[..., k], expand_head_channel_scales(table[..., k], hg, cg, nheads, headdim))


def test_index_and_errors():
    g, i, j = head_channel_index([[1, 1, 1, 1]], [[[2, 2, 2, 2]] * 4], 4, 8)
    assert g.unique().tolist() == [0] and i[:, 0].tolist() == [0, 1, 2, 3]
    assert j[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError):  # head groups do not sum to H/G
        head_channel_index([[1, 1, 1, 2]], [[[2, 2, 2, 2]] * 4], 4, 8)
    with pytest.raises(ValueError):  # channel groups do not sum to P
        head_channel_index([[1, 1, 1, 1]], [[[2, 2, 2, 1]] * 4], 4, 8)
    with pytest.raises(ValueError):  # table shape mismatch
        expand_head_channel_scales(torch.ones(1, 4, 3), [[1, 1, 1, 1]], [[[2, 2, 2, 2]] * 4], 4, 8)


def test_ssd_group_and_segment_scales():
    s = torch.tensor([0.5, 2.0])
    assert expand_ssd_group_scales(s, 3).tolist() == [0.5, 0.5, 0.5, 2.0, 2.0, 2.0]
    seg = expand_segment_scales([1.0, 2.0, 3.0], [2, 1, 3])
    assert seg.tolist() == [1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        expand_segment_scales([1.0, 2.0], [1, 2, 3])
    x = torch.ones(2, 4)
    c = conv_channel_scales(x, torch.full((3,), 2.0), torch.full((3,), 3.0))
    assert c.tolist() == [1.0] * 8 + [2.0] * 3 + [3.0] * 3
