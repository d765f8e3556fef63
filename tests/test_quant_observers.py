"""Calibration observers (spec B.2, C.3, C.5, C.6; pitfalls 2, 6)."""

from __future__ import annotations

import pytest
import torch

from quamba_edge.quant.groups import block_index_map, expand_block_scales, validate_groups
from quamba_edge.quant.observers import (
    CrossHeadMinMaxObserver,
    MinMaxObserver,
    PercentileObserver,
    PerGroupObserver,
    SortClusterStatObserver,
    StateGroupObserver,
    StatePerTensorObserver,
    exact_quantile,
)
from quamba_edge.quant.quantize import MIN_AMAX


def test_minmax_by_hand():
    ob = MinMaxObserver()
    with pytest.raises(RuntimeError):
        ob.amax()
    ob.update(torch.tensor([[1.0, -3.0], [2.0, 0.5]]))
    assert ob.amax().item() == 3.0
    ob.update(torch.tensor([-5.0]))
    ob.update(torch.tensor([4.0]))
    assert ob.amax().item() == 5.0
    assert ob.scale().dtype == torch.float32
    assert ob.scale().item() == pytest.approx(5.0 / 127)
    assert ob.scale(bits=4).item() == pytest.approx(5.0 / 7)
    ob.reset()
    ob.update(torch.zeros(3))
    assert ob.scale().item() == pytest.approx(MIN_AMAX / 127) and ob.scale().item() > 0


def test_percentile_ema_by_hand():
    ob = PercentileObserver(alpha=0.5, momentum=0.1)
    ob.update(torch.tensor([1.0, -2.0, 3.0, -4.0]))  # |x| sorted 1,2,3,4; rank 1.5 -> 2.5
    assert ob.amax().item() == 2.5  # first sample initialises the EMA
    ob.update(torch.tensor([[-10.0, 20.0, 30.0]]))  # rank 1 -> 20
    assert ob.amax().item() == pytest.approx(2.5 + 0.1 * (20.0 - 2.5))  # 4.25
    ob.update(torch.tensor([0.0, 0.0, 0.0]))
    assert ob.amax().item() == pytest.approx(4.25 + 0.1 * (0.0 - 4.25))
    assert ob.scale().item() == pytest.approx(ob.amax().item() / 127)
    # default momentum 0.01
    ob = PercentileObserver(alpha=0.5)
    ob.update(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    ob.update(torch.tensor([10.0, 20.0, 30.0]))
    assert ob.amax().item() == pytest.approx(2.5 + 0.01 * 17.5)


def test_percentile_is_not_pooled():
    a, b = torch.randn(1000), 5 * torch.randn(1000)
    ob = PercentileObserver(alpha=0.99, momentum=0.01)
    ob.update(a)
    ob.update(b)
    qa, qb = torch.quantile(a.abs(), 0.99), torch.quantile(b.abs(), 0.99)
    torch.testing.assert_close(ob.amax(), qa + 0.01 * (qb - qa))


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 4097])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.999, 0.9995, 0.99999, 1.0])
def test_exact_quantile_selection_path_matches_torch(n, alpha):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)).abs()
    ref = torch.quantile(x, alpha)
    got = exact_quantile(x, alpha, max_torch_numel=0)  # force the kthvalue path
    assert torch.equal(got, ref), (got, ref)
    assert torch.equal(exact_quantile(x, alpha), ref)


def test_exact_quantile_above_torch_limit():
    n = (1 << 24) + 5
    x = torch.rand(n, generator=torch.Generator().manual_seed(0))
    alpha = 0.9995
    got = exact_quantile(x, alpha)
    rank = alpha * (n - 1)  # n - 1 >= 2^24: float64 rank
    lo = int(rank // 1)
    top = torch.topk(x, n - lo).values  # descending: top[-1] = sorted[lo], top[-2] = sorted[lo + 1]
    ref = torch.lerp(top[-1], top[-2], torch.tensor(rank - lo, dtype=torch.float32))
    assert torch.equal(got, ref)


def test_per_group_observer_by_hand():
    ob = PerGroupObserver(2)
    x = torch.tensor([[[1.0, -6.0], [2.0, 0.0]], [[0.5, 0.5], [-3.0, 1.0]]])  # [L=2, G=2, N=2]
    ob.update(x)
    assert ob.amax().tolist() == [6.0, 3.0]
    ob.update(torch.tensor([[[0.0, 0.0], [-9.0, 0.0]]]))
    assert ob.amax().tolist() == [6.0, 9.0]
    torch.testing.assert_close(ob.scale(), torch.tensor([6.0, 9.0]) / 127)
    with pytest.raises(ValueError):
        ob.update(torch.zeros(4, 3, 2))


def test_sort_cluster_stat_by_hand():
    ob = SortClusterStatObserver()
    ob.update(torch.tensor([[[1.0, -2.0, 0.0], [3.0, 0.0, -4.0]]]))  # mean|x| over L: [2, 1, 2]
    assert ob.statistic().tolist() == [2.0, 1.0, 2.0]
    ob.update(torch.tensor([[0.0, 5.0, 1.0]]))  # [L=1, E=3] -> [0, 5, 1]
    assert ob.statistic().tolist() == [2.0, 5.0, 2.0]
    # batch of 2 samples: per-sample means, then max
    ob2 = SortClusterStatObserver()
    ob2.update(torch.tensor([[[4.0], [0.0]], [[1.0], [1.0]]]))
    assert ob2.statistic().tolist() == [2.0]


# H=4 heads, P=4, G=1, m=2 head groups (sizes 1, 3), n=2 channel groups per head group
HG = torch.tensor([[1, 3]])
CG = torch.tensor([[[1, 3], [2, 2]]])


def test_block_index_map_and_validation():
    idx = block_index_map(HG, CG, 4, 4)
    assert idx.tolist() == [[0, 1, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3], [2, 2, 3, 3]]
    with pytest.raises(ValueError):
        validate_groups(torch.tensor([[2, 3]]), CG, 4, 4)
    with pytest.raises(ValueError):
        validate_groups(HG, torch.tensor([[[1, 3], [2, 1]]]), 4, 4)
    # empty head group rows are ignored
    validate_groups(torch.tensor([[4, 0]]), torch.tensor([[[2, 2], [0, 0]]]), 4, 4)


def test_cross_head_minmax_by_hand():
    ob = CrossHeadMinMaxObserver(HG, CG, nheads=4, headdim=4)
    x = torch.zeros(2, 16)  # [L, H·P]
    x[0, 0] = -7.0   # head 0, ch 0 -> block (0,0,0)
    x[1, 3] = 2.0    # head 0, ch 3 -> block (0,0,1)
    x[0, 5] = 3.0    # head 1, ch 1 -> block (0,1,0)
    x[1, 14] = -1.5  # head 3, ch 2 -> block (0,1,1)
    ob.update(x)
    assert ob.amax().tolist() == [[[7.0, 2.0], [3.0, 1.5]]]
    ob.update(torch.full((1, 4, 4), 0.5))  # [L, H, P] layout, smaller values change nothing
    assert ob.amax().tolist() == [[[7.0, 2.0], [3.0, 1.5]]]
    s = ob.scale()
    assert s.shape == (1, 2, 2)
    torch.testing.assert_close(s, torch.tensor([[[7.0, 2.0], [3.0, 1.5]]]) / 127)
    per_pos = expand_block_scales(s, HG, CG, 4, 4)
    assert per_pos.shape == (4, 4) and per_pos[3, 2] == s[0, 1, 1]


def test_state_group_observer_by_hand():
    ob = StateGroupObserver(HG, CG, nheads=4, headdim=4, dstate=2)
    st = torch.zeros(3, 4, 4, 2)  # [B, H, P, N]
    st[0, 0, 0, 1] = 4.0        # block (0,0,0), n=1
    st[2, 2, 3, 0] = -6.0       # head 2, ch 3 -> block (0,1,1), n=0
    st[1, 1, 0, 0] = 1.0        # head 1, ch 0 -> block (0,1,0), n=0
    ob.update(st)
    a = ob.amax()
    assert a.shape == (1, 2, 2, 2)
    assert a[0, 0, 0].tolist() == [0.0, 4.0]
    assert a[0, 1, 1].tolist() == [6.0, 0.0]
    assert a[0, 1, 0].tolist() == [1.0, 0.0]
    assert (ob.scale() > 0).all()
    with pytest.raises(ValueError):
        ob.update(torch.zeros(1, 4, 4, 3))
    assert expand_block_scales(ob.scale(), HG, CG, 4, 4).shape == (4, 4, 2)


def test_state_per_tensor_observer():
    ob = StatePerTensorObserver("minmax")
    ob.update(torch.tensor([[[1.0, -2.0]], [[0.5, 0.0]]]))  # [B=2, E=1, N=2]
    assert ob.amax().item() == 2.0
    ob = StatePerTensorObserver("percentile", alpha=0.5, momentum=0.5)
    ob.update(torch.tensor([[[1.0, 2.0, 3.0]]]))
    ob.update(torch.tensor([[[5.0, 5.0, 5.0]]]))
    assert ob.amax().item() == pytest.approx(2.0 + 0.5 * 3.0)
    with pytest.raises(ValueError):
        ob.update(torch.zeros(3, 3))
    with pytest.raises(ValueError):
        StatePerTensorObserver("mean")
