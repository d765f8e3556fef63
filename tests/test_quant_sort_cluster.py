"""Sort-and-cluster (spec C.3 step 2, C.4, pitfalls 7, 8)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from quamba_edge.quant import sort_cluster as sc
from quamba_edge.quant.groups import expand_block_scales
from quamba_edge.quant.observers import CrossHeadMinMaxObserver, SortClusterStatObserver
from quamba_edge.quant.quantize import quantize_sym
from quamba_edge.quant.sort_cluster import group_wise_sort_indices, invert_permutation


def _stat(H: int, P: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    head_scale = torch.rand(H, 1, generator=g) * 5 + 0.1
    prof = torch.rand(H, P, generator=g) ** 3  # skewed within heads
    out = head_scale * prof
    out[:, :2] *= 20  # a couple of outlier channels per head
    return out.reshape(-1)


def _check_contiguous_groups(res, stat, H, P, G):
    res.validate()
    hpg = H // G
    # heads stay in their SSD group, channels stay in their head (validate checks too; explicit here)
    assert torch.equal(res.head_index // hpg, torch.arange(H) // hpg)
    ci = res.channel_index.reshape(H, P)
    assert torch.equal(ci // P, res.head_index[:, None].expand(H, P))
    # channels inside each new head are sorted ascending by the statistic
    permuted = stat[res.channel_index].reshape(H, P)
    assert (permuted.diff(dim=1) >= 0).all()
    # group tilings: head groups tile each SSD group, channel groups tile each head
    assert res.head_groups.shape == (G, 4) and res.channel_groups.shape == (G, 4, 4)
    assert (res.head_groups.sum(1) == hpg).all()
    nonempty = res.head_groups > 0
    assert (res.channel_groups.sum(-1)[nonempty] == P).all()


@pytest.mark.parametrize("H,P,G", [(24, 64, 1), (16, 32, 2), (32, 16, 8)])
def test_valid_permutations_and_groups(H, P, G):
    stat = _stat(H, P)
    res = group_wise_sort_indices(stat, headdim=P, ngroups=G)
    _check_contiguous_groups(res, stat, H, P, G)
    again = group_wise_sort_indices(stat, headdim=P, ngroups=G)
    assert torch.equal(res.channel_index, again.channel_index)  # deterministic
    assert torch.equal(res.channel_groups, again.channel_groups)


def test_head_clusters_follow_magnitude_profiles():
    # 8 heads, two very different normalised profiles: flat vs. one huge channel -> Ward separates them
    P = 16
    flat = torch.ones(P)
    spiky = torch.ones(P)
    spiky[3] = 100.0
    heads = [flat, spiky, flat * 2, spiky * 3, flat * 0.5, spiky, flat, spiky * 0.1]
    stat = torch.stack(heads).reshape(-1) + torch.linspace(0, 1e-3, 8 * P)
    res = group_wise_sort_indices(stat, headdim=P, ngroups=1, nhead_groups=2, ndim_groups=2)
    _spiky = {1, 3, 5, 7}
    first = set(res.head_index[: int(res.head_groups[0, 0])].tolist())
    assert first == _spiky or first == {0, 2, 4, 6}
    assert res.head_groups.tolist() == [[4, 4]]


def test_small_sizes_fewer_clusters():
    # 2 heads per SSD group (< 4 head clusters) and P = 2 (< 4 channel groups)
    stat = _stat(4, 2)
    res = group_wise_sort_indices(stat, headdim=2, ngroups=2)
    res.validate()
    assert res.head_groups.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
    assert res.channel_groups[:, :2].sum(-1).eq(2).all()
    assert (res.channel_groups[:, 2:] == 0).all()
    assert (res.channel_groups[:, :2, 2:] == 0).all()
    # one head per SSD group
    res = group_wise_sort_indices(_stat(3, 8), headdim=8, ngroups=3)
    res.validate()
    assert res.head_groups.tolist() == [[1, 0, 0, 0]] * 3
    assert torch.equal(res.head_index, torch.arange(3))


def test_constant_statistic_does_not_crash():
    res = group_wise_sort_indices(torch.ones(8 * 16), headdim=16, ngroups=1)
    res.validate()
    res = group_wise_sort_indices(torch.zeros(8 * 16), headdim=16, ngroups=1)
    res.validate()


def test_non_monotone_kmeans_falls_back(monkeypatch):
    class FakeKMeans:
        def __init__(self, n_clusters, **kw):
            self.n = n_clusters

        def fit(self, X):
            self.labels_ = np.arange(X.shape[0]) % self.n  # interleaved: not contiguous
            return self

    import sklearn.cluster

    monkeypatch.setattr(sklearn.cluster, "KMeans", FakeKMeans)
    with pytest.warns(RuntimeWarning, match="not contiguous"):
        res = group_wise_sort_indices(_stat(8, 10), headdim=10, ngroups=1)
    res.validate()
    nonempty = res.head_groups[0] > 0
    for row in res.channel_groups[0][nonempty]:
        assert row.tolist() == [3, 3, 2, 2]


def test_contiguous_but_relabelled_kmeans_is_accepted(monkeypatch):
    class FakeKMeans:
        def __init__(self, n_clusters, **kw):
            self.n = n_clusters

        def fit(self, X):
            P = X.shape[0]
            self.labels_ = np.array([1] * 3 + [0] * 3 + [3] * (P - 8) + [2] * 2)
            return self

    import sklearn.cluster

    monkeypatch.setattr(sklearn.cluster, "KMeans", FakeKMeans)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = group_wise_sort_indices(_stat(4, 10), headdim=10, ngroups=1)
    assert res.channel_groups[0, 0].tolist() == [3, 3, 2, 2]


def test_end_to_end_stat_permute_observe_quantize():
    H, P, G, L = 8, 16, 2, 64
    g = torch.Generator().manual_seed(3)
    gain = torch.rand(H * P, generator=g) * 4
    obs = SortClusterStatObserver()
    xs = [torch.randn(1, L, H * P, generator=g) * gain for _ in range(4)]
    for x in xs:
        obs.update(x)
    res = group_wise_sort_indices(obs.statistic(), headdim=P, ngroups=G)
    ch = CrossHeadMinMaxObserver(res.head_groups, res.channel_groups, H, P)
    for x in xs:
        ch.update(x[..., res.channel_index])
    s = ch.scale()
    assert s.shape == (G, 4, 4)
    per_pos = expand_block_scales(s, res.head_groups, res.channel_groups, H, P).reshape(-1)
    xq = quantize_sym(xs[0][..., res.channel_index], per_pos)
    assert xq.abs().max() <= 127  # block absmax scales: nothing saturates on calibration data
    # compute invariance of the permutation: (x P)(W P)ᵀ = x Wᵀ, and the inverse restores x
    w = torch.randn(5, H * P, generator=g, dtype=torch.float64)
    x0 = xs[0].double()
    torch.testing.assert_close(x0[..., res.channel_index] @ w[:, res.channel_index].T, x0 @ w.T)
    inv = invert_permutation(res.channel_index)
    assert torch.equal(xs[0][..., res.channel_index][..., inv], xs[0])


def test_bad_arguments():
    with pytest.raises(ValueError):
        group_wise_sort_indices(torch.ones(10), headdim=3)
    with pytest.raises(ValueError):
        group_wise_sort_indices(torch.ones(12), headdim=4, ngroups=2)
    assert sc.SortClusterResult is not None
