"""Calibration observers (spec B.2, C.3, C.5, C.6; pitfalls 2 and 6).

Every observer has ``update(x)`` (call once per calibration sample — the upstream recipe runs batch 1,
one document per forward) and ``reset()``. Scale-producing observers also have ``amax()`` (fp32 tensor,
on the device of the observed data) and ``scale(bits=8)`` = ``scale_from_amax(amax(), bits)``, i.e.
``amax / 127`` with the zero-amax guard of :mod:`quamba_edge.quant.quantize`. Calling ``amax()`` before
any non-empty ``update`` raises ``RuntimeError``. Inputs are detached and reduced in fp32.

=========================  ================================================  ====================
class                      statistic                                          spec
=========================  ================================================  ====================
MinMaxObserver             running max |x| (per tensor)                       B.2, C.6
PercentileObserver         EMA over samples of quantile(|x|, α)               B.2, C.6, pitfall 2
PerGroupObserver           absmax per SSD group, x ``[..., G, N]`` → ``[G]``   C.5
SortClusterStatObserver    max over samples of per-sample mean_t |x|          C.3 step 1, pitfall 6
CrossHeadMinMaxObserver    absmax per (g, head group, channel group)          C.3 step 3
StateGroupObserver         absmax per (g, head group, channel group, n)       C.6
StatePerTensorObserver     per-tensor percentile / min-max of SSM states      C.6 (Mamba1), B.0(c)
=========================  ================================================  ====================
"""

from __future__ import annotations

import torch
from torch import Tensor

from .groups import block_index_map
from .quantize import scale_from_amax

__all__ = [
    "TORCH_QUANTILE_MAX_NUMEL",
    "exact_quantile",
    "Observer",
    "MinMaxObserver",
    "PercentileObserver",
    "PerGroupObserver",
    "SortClusterStatObserver",
    "CrossHeadMinMaxObserver",
    "StateGroupObserver",
    "StatePerTensorObserver",
]

#: ``torch.quantile`` refuses inputs with more elements than this.
TORCH_QUANTILE_MAX_NUMEL: int = 1 << 24


def exact_quantile(x: Tensor, alpha: float, *, max_torch_numel: int = TORCH_QUANTILE_MAX_NUMEL) -> Tensor:
    """``torch.quantile(x.flatten().float(), alpha)`` (linear interpolation) for inputs of any size.

    Up to ``max_torch_numel`` elements this calls ``torch.quantile``. Above it, the same formula is
    evaluated with two ``torch.kthvalue`` selections: ``r = α·(n−1)``, ``lo = ⌊r⌋``, ``hi = ⌈r⌉``,
    ``lerp(v_lo, v_hi, r − lo)``. The rank is computed in fp32 exactly as torch does while ``n − 1 < 2^24``
    (so the result is bit-identical to ``torch.quantile``), and in float64 beyond (where fp32 could not
    even represent ``n − 1``). Returns a 0-d fp32 tensor.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    v = x.detach().reshape(-1).float()
    n = v.numel()
    if n == 0:
        raise ValueError("exact_quantile of an empty tensor")
    if n <= max_torch_numel:
        return torch.quantile(v, alpha)
    rdt = torch.float32 if n - 1 < (1 << 24) else torch.float64
    rank = torch.tensor(alpha, dtype=rdt) * (n - 1)
    lo = int(torch.floor(rank).item())
    hi = int(torch.ceil(rank).item())
    weight = (rank - lo).to(torch.float32)
    v_lo = torch.kthvalue(v, lo + 1).values
    v_hi = v_lo if hi == lo else torch.kthvalue(v, hi + 1).values
    return torch.lerp(v_lo, v_hi, weight.to(v.device))


class Observer:
    """Base class: subclasses implement ``update`` and ``_amax``."""

    def __init__(self) -> None:
        self.num_updates = 0

    def update(self, x: Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def reset(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _amax(self) -> Tensor | None:  # pragma: no cover - interface
        raise NotImplementedError

    def amax(self) -> Tensor:
        a = self._amax()
        if a is None:
            raise RuntimeError(f"{type(self).__name__}: no data observed yet")
        return a.clone()

    def scale(self, bits: int = 8) -> Tensor:
        """fp32 symmetric scale ``max(amax, MIN_AMAX) / (2^(bits-1)-1)``."""
        return scale_from_amax(self.amax(), bits)


class MinMaxObserver(Observer):
    """Per-tensor running max of ``|x|`` over all elements of all samples (spec B.2 "min-max")."""

    def __init__(self) -> None:
        super().__init__()
        self._max: Tensor | None = None

    def update(self, x: Tensor) -> None:
        if x.numel() == 0:
            return
        a = x.detach().abs().amax().float()
        self._max = a if self._max is None else torch.maximum(self._max, a)
        self.num_updates += 1

    def reset(self) -> None:
        self._max, self.num_updates = None, 0

    def _amax(self) -> Tensor | None:
        return self._max


class PercentileObserver(Observer):
    """Per-tensor percentile with EMA (spec B.2, pitfall 2).

    Per call: ``q = quantile(|x|.flatten().float(), alpha)`` (exact, any size: :func:`exact_quantile`).
    The first call sets ``m = q``; later calls ``m ← m + momentum·(q − m)`` (fp32). ``amax() = m``,
    so ``scale() = m / 127``. Samples are combined by the EMA, never pooled.
    """

    def __init__(self, alpha: float, momentum: float = 0.01) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.alpha = float(alpha)
        self.momentum = float(momentum)
        self._m: Tensor | None = None

    def update(self, x: Tensor) -> None:
        if x.numel() == 0:
            return
        q = exact_quantile(x.detach().abs(), self.alpha)
        if self._m is None:
            self._m = q
        else:
            self._m = self._m + self.momentum * (q - self._m)
        self.num_updates += 1

    def reset(self) -> None:
        self._m, self.num_updates = None, 0

    def _amax(self) -> Tensor | None:
        return self._m


class PerGroupObserver(Observer):
    """Absmax per SSD group for Mamba2 B/C after the conv (spec C.5, ``PerSSDGroupObserver``).

    ``x``: ``[..., G, N]`` (a channel-last ``[..., G·N]`` tensor must be ``unflatten(-1, (G, N))``'d by
    the caller). Reduces over everything but the group dim. ``amax()``/``scale()`` have shape ``[G]``.
    """

    def __init__(self, ngroups: int) -> None:
        super().__init__()
        self.ngroups = int(ngroups)
        self._max: Tensor | None = None

    def update(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[-2] != self.ngroups:
            raise ValueError(f"PerGroupObserver expects [..., G={self.ngroups}, N], got {tuple(x.shape)}")
        if x.numel() == 0:
            return
        a = x.detach().abs().float().transpose(-2, 0).reshape(self.ngroups, -1).amax(dim=1)
        self._max = a if self._max is None else torch.maximum(self._max, a)
        self.num_updates += 1

    def reset(self) -> None:
        self._max, self.num_updates = None, 0

    def _amax(self) -> Tensor | None:
        return self._max


class SortClusterStatObserver:
    """Per-channel statistic for sort-and-cluster (spec C.3 step 1, pitfall 6).

    For each sample: ``mean over tokens of |x|`` per channel; kept: element-wise max across samples.
    ``x``: ``[B, L, E]`` (each batch row is one sample — use batch 1 without padding, as upstream) or
    ``[L, E]`` (one sample). :meth:`statistic` returns fp32 ``[E]``.
    """

    def __init__(self) -> None:
        self.num_updates = 0
        self._stat: Tensor | None = None

    def update(self, x: Tensor) -> None:
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"SortClusterStatObserver expects [B, L, E] or [L, E], got {tuple(x.shape)}")
        if x.shape[1] == 0:
            return
        s = x.detach().abs().float().mean(dim=1).amax(dim=0)
        self._stat = s if self._stat is None else torch.maximum(self._stat, s)
        self.num_updates += x.shape[0]

    def reset(self) -> None:
        self._stat, self.num_updates = None, 0

    def statistic(self) -> Tensor:
        if self._stat is None:
            raise RuntimeError("SortClusterStatObserver: no data observed yet")
        return self._stat.clone()


class _BlockObserver(Observer):
    """Running per-position absmax reduced to (g, head group, channel group) blocks at read time."""

    def __init__(self, head_groups: Tensor, channel_groups: Tensor, nheads: int, headdim: int) -> None:
        super().__init__()
        self.head_groups = torch.as_tensor(head_groups).long().cpu().clone()
        self.channel_groups = torch.as_tensor(channel_groups).long().cpu().clone()
        self.nheads, self.headdim = int(nheads), int(headdim)
        self._index = block_index_map(self.head_groups, self.channel_groups, self.nheads, self.headdim)
        self._pos_max: Tensor | None = None

    @property
    def block_shape(self) -> tuple[int, int, int]:
        G, m, n = self.channel_groups.shape
        return int(G), int(m), int(n)

    def reset(self) -> None:
        self._pos_max, self.num_updates = None, 0

    def _accumulate(self, pos_max: Tensor) -> None:
        self._pos_max = pos_max if self._pos_max is None else torch.maximum(self._pos_max, pos_max)
        self.num_updates += 1

    def _reduce(self, trailing: int) -> Tensor | None:
        if self._pos_max is None:
            return None
        G, m, n = self.block_shape
        pm = self._pos_max.reshape(self.nheads * self.headdim, trailing)
        idx = self._index.reshape(-1, 1).expand(-1, trailing).to(pm.device)
        out = torch.zeros(G * m * n, trailing, dtype=torch.float32, device=pm.device)
        out.scatter_reduce_(0, idx, pm, reduce="amax", include_self=True)
        return out


class CrossHeadMinMaxObserver(_BlockObserver):
    """x scales of Quamba2 (spec C.3 step 3, ``CrossHeadMinmaxObserver``): absmax over batch, tokens,
    the heads of head group ``i`` and the channels of channel group ``j`` of SSD group ``g``.

    ``x``: the PERMUTED conv output, ``[..., H·P]`` (channel-last) or ``[..., H, P]``.
    ``amax()``/``scale()`` have shape ``[G, m, n]`` (``G×4×4``); empty blocks give amax 0 (→ floor scale).
    Group conventions: :mod:`quamba_edge.quant.groups`.
    """

    def update(self, x: Tensor) -> None:
        H, P = self.nheads, self.headdim
        if x.shape[-1] == H * P:
            flat = x.detach().reshape(-1, H * P)
        elif x.dim() >= 2 and tuple(x.shape[-2:]) == (H, P):
            flat = x.detach().reshape(-1, H * P)
        else:
            raise ValueError(f"CrossHeadMinMaxObserver expects [..., {H * P}] or [..., {H}, {P}], "
                             f"got {tuple(x.shape)}")
        if flat.shape[0] == 0:
            return
        self._accumulate(flat.abs().float().amax(dim=0))

    def _amax(self) -> Tensor | None:
        out = self._reduce(1)
        return None if out is None else out.reshape(self.block_shape)


class StateGroupObserver(_BlockObserver):
    """Cached SSM state scales of Quamba2 (spec C.6, ``CachedStatesCrossHeadMinmax``).

    ``states``: ``[B, H, P, N]`` (permuted head/channel order). absmax over batch, the heads of each head
    group and the channels of each channel group, separately for every state index ``n``.
    ``amax()``/``scale()`` have shape ``[G, m, n_groups, N]`` (``G×4×4×N``).
    """

    def __init__(self, head_groups: Tensor, channel_groups: Tensor, nheads: int, headdim: int,
                 dstate: int) -> None:
        super().__init__(head_groups, channel_groups, nheads, headdim)
        self.dstate = int(dstate)

    def update(self, states: Tensor) -> None:
        shp = (self.nheads, self.headdim, self.dstate)
        if states.dim() != 4 or tuple(states.shape[1:]) != shp:
            raise ValueError(f"StateGroupObserver expects [B, {shp[0]}, {shp[1]}, {shp[2]}], "
                             f"got {tuple(states.shape)}")
        if states.shape[0] == 0:
            return
        self._accumulate(states.detach().abs().float().amax(dim=0))

    def _amax(self) -> Tensor | None:
        out = self._reduce(self.dstate)
        return None if out is None else out.reshape(*self.block_shape, self.dstate)


class StatePerTensorObserver(Observer):
    """One per-tensor scale for SSM states: Mamba1 ``[B, E, N]`` (spec B.0(c), C.6) or Mamba2 without
    grouping ``[B, H, P, N]``. ``method="percentile"`` (default, α = 0.9995 as at REPO@HEAD; each
    ``update`` is one sample of the EMA) or ``"minmax"``."""

    def __init__(self, method: str = "percentile", alpha: float = 0.9995, momentum: float = 0.01) -> None:
        super().__init__()
        if method == "percentile":
            self._inner: Observer = PercentileObserver(alpha, momentum)
        elif method == "minmax":
            self._inner = MinMaxObserver()
        else:
            raise ValueError(f"method must be 'percentile' or 'minmax', got {method!r}")
        self.method = method

    def update(self, states: Tensor) -> None:
        if states.dim() not in (3, 4):
            raise ValueError(f"expected states [B, E, N] or [B, H, P, N], got {tuple(states.shape)}")
        self._inner.update(states)
        self.num_updates = self._inner.num_updates

    def reset(self) -> None:
        self._inner.reset()
        self.num_updates = 0

    def _amax(self) -> Tensor | None:
        return self._inner._amax()
