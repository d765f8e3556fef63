"""Quamba2 sort-and-cluster statistics and the Mamba2 weight permutation (spec C.3, C.4; F.5–F.8).

Permutation convention ("gather", as :mod:`.sort_cluster`): after the reorder, channel ``k`` of x / y / z
is old channel ``channel_index[k]`` and head ``h`` is old head ``head_index[h]``. Heads move only inside
their SSD group and channels only inside their head, so the head→B/C-group map and the gated-norm
groups (E/G consecutive channels = the heads of one SSD group) are unchanged: the model computes the
same function (compute invariance, spec C.4). Tensors moved (``ci`` = channel_index, ``hi`` = head_index):

=================================  ==================  =======
tensor                             dimension           index
=================================  ==================  =======
in_proj rows [0:E) (z)             output rows         ci
in_proj rows [E:2E) (x)            output rows         E + ci
in_proj rows [2E:2E+2GN) (B, C)    —                   kept
in_proj rows [2E+2GN:) (dt)        output rows         hi
conv1d weight / bias [0:E)         channels            ci (B/C channels kept)
A_log, D, dt_bias                  heads               hi
gated-norm weight                  channels            ci
out_proj weight                    input columns       ci
=================================  ==================  =======

(in_proj bias follows its rows.) The reorder must run BEFORE the out_proj-input Hadamard is fused
(F.5); :func:`reorder_mamba2` refuses a model whose out_proj is already a ``HadamardLinear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..models.lm import MambaLM
from ..models.mamba2 import Mamba2Mixer
from ..models.state import ModelState
from .observers import SortClusterStatObserver
from .rotation import HadamardLinear
from .sort_cluster import SortClusterResult, group_wise_sort_indices

__all__ = [
    "ReorderInfo",
    "collect_sort_cluster_stats",
    "reorder_mamba2",
    "apply_reorder",
    "permute_mamba2_mixer",
    "permute_state",
]


@dataclass(frozen=True)
class ReorderInfo:
    """One layer's reorder (all ``torch.long``, CPU): ``channel_index`` ``[E]``, ``head_index`` ``[H]``,
    ``head_groups`` ``[G, m]``, ``channel_groups`` ``[G, m, n]`` (sizes, :mod:`.groups` conventions)."""

    channel_index: Tensor
    head_index: Tensor
    head_groups: Tensor
    channel_groups: Tensor

    @property
    def nheads(self) -> int:
        return int(self.head_index.numel())

    @property
    def headdim(self) -> int:
        return int(self.channel_index.numel()) // self.nheads

    @property
    def ngroups(self) -> int:
        return int(self.head_groups.shape[0])

    @classmethod
    def from_result(cls, res: SortClusterResult) -> "ReorderInfo":
        return cls(res.channel_index, res.head_index, res.head_groups, res.channel_groups)

    def validate(self) -> None:
        """``ValueError`` unless: permutations, heads inside their SSD group, channels inside their head,
        and group sizes tiling the layer (:meth:`SortClusterResult.validate`)."""
        SortClusterResult(self.channel_index.long().cpu(), self.head_index.long().cpu(),
                          self.head_groups.long().cpu(), self.channel_groups.long().cpu(),
                          self.headdim, self.ngroups).validate()

    def to_dict(self) -> dict[str, Tensor]:
        """Plain tensors (for safetensors / torch.save)."""
        return {"channel_index": self.channel_index, "head_index": self.head_index,
                "head_groups": self.head_groups, "channel_groups": self.channel_groups}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "ReorderInfo":
        info = cls(*(torch.as_tensor(d[k]).long().cpu() for k in
                     ("channel_index", "head_index", "head_groups", "channel_groups")))
        info.validate()
        return info


# ---- statistics ---------------------------------------------------------------------------------


def _as_batch1(ids: Tensor, device: torch.device) -> Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"calibration samples must be [1, L] (batch 1, one document per forward, "
                         f"spec B.2), got {tuple(ids.shape)}")
    return ids.to(device)


@torch.no_grad()
def collect_sort_cluster_stats(model: MambaLM, samples: Sequence[Tensor]) -> list[Tensor]:
    """Per layer: fp32 ``[E]`` = max over samples of the per-sample mean ``|x|`` per channel at the
    ``x_conv_out`` tap (spec C.3 step 1, F.6). Samples run one at a time, no state carried."""
    if not samples:
        raise ValueError("collect_sort_cluster_stats needs at least one sample")
    obs = [SortClusterStatObserver() for _ in model.layers]
    handles = [layer.mixer.x_conv_out.register_forward_hook(
        lambda _m, _inp, out, ob=ob: ob.update(out)) for layer, ob in zip(model.layers, obs)]
    try:
        for ids in samples:
            model(_as_batch1(ids, model.device))
    finally:
        for h in handles:
            h.remove()
    return [ob.statistic().cpu() for ob in obs]


# ---- permutation --------------------------------------------------------------------------------


def _index_vectors(mixer: Mamba2Mixer, info: ReorderInfo) -> tuple[Tensor, Tensor, Tensor]:
    """(in_proj row gather, conv channel gather, ci) on the mixer's device."""
    e, gn = mixer.d_inner, mixer.ngroups * mixer.d_state
    ci, hi = info.channel_index.long(), info.head_index.long()
    keep = torch.arange(2 * e, 2 * e + 2 * gn)
    rows = torch.cat([ci, e + ci, keep, 2 * e + 2 * gn + hi])
    conv = torch.cat([ci, torch.arange(e, e + 2 * gn)])
    dev = mixer.in_proj.weight.device
    return rows.to(dev), conv.to(dev), ci.to(dev)


def _check_info(mixer: Mamba2Mixer, info: ReorderInfo, where: str) -> None:
    if (info.nheads, info.headdim, info.ngroups) != (mixer.nheads, mixer.headdim, mixer.ngroups):
        raise ValueError(f"{where}: reorder info is for H={info.nheads}, P={info.headdim}, "
                         f"G={info.ngroups}; the mixer has H={mixer.nheads}, P={mixer.headdim}, "
                         f"G={mixer.ngroups}")
    info.validate()


@torch.no_grad()
def _gather_(param: Tensor, index: Tensor, dim: int = 0) -> None:
    param.copy_(param.index_select(dim, index.to(param.device)))


@torch.no_grad()
def permute_mamba2_mixer(mixer: Mamba2Mixer, info: ReorderInfo) -> None:
    """Apply one layer's permutation in place (module docstring table)."""
    if isinstance(mixer.out_proj, HadamardLinear):
        raise ValueError("out_proj already carries the input Hadamard: the channel permutation must be "
                         "applied before rotate_out_proj_input (spec F.5)")
    _check_info(mixer, info, f"layer {mixer.layer_idx}")
    rows, conv, ci = _index_vectors(mixer, info)
    hi = info.head_index.long()
    _gather_(mixer.in_proj.weight, rows)
    if mixer.in_proj.bias is not None:
        _gather_(mixer.in_proj.bias, rows)
    _gather_(mixer.conv1d.weight, conv)
    if mixer.conv1d.bias is not None:
        _gather_(mixer.conv1d.bias, conv)
    for p in (mixer.A_log, mixer.D, mixer.dt_bias):
        _gather_(p, hi)
    _gather_(mixer.norm.weight, ci)
    _gather_(mixer.out_proj.weight, ci, dim=1)


def _mamba2_mixers(model: MambaLM) -> list[Mamba2Mixer]:
    if model.config.arch != "mamba2":
        raise ValueError(f"sort-and-cluster reordering is for Mamba2 only (spec C.3, F.23); this model "
                         f"is {model.config.arch}")
    mixers = [layer.mixer for layer in model.layers]
    bad = [i for i, m in enumerate(mixers) if isinstance(m.out_proj, HadamardLinear)]
    if bad:
        raise ValueError(f"layers {bad} already have the out_proj-input Hadamard; reorder before "
                         "rotate_out_proj_input (spec F.5)")
    return mixers


def apply_reorder(model: MambaLM, infos: Sequence[ReorderInfo]) -> None:
    """Apply saved per-layer reorders (e.g. :meth:`ReorderInfo.from_dict`). All layers are checked
    before any weight moves."""
    mixers = _mamba2_mixers(model)
    if len(infos) != len(mixers):
        raise ValueError(f"{len(infos)} reorder infos for {len(mixers)} layers")
    for i, (m, info) in enumerate(zip(mixers, infos)):
        _check_info(m, info, f"layer {i}")
    for m, info in zip(mixers, infos):
        permute_mamba2_mixer(m, info)


def reorder_mamba2(model: MambaLM, data: Sequence[Tensor], nhead_groups: int = 4,
                   ndim_groups: int = 4) -> list[ReorderInfo]:
    """Sort-and-cluster every layer and permute its weights (spec C.3, C.4).

    ``data``: calibration samples (long ``[1, L]`` tensors; the statistics are collected with
    :func:`collect_sort_cluster_stats`) or precomputed per-layer statistics (float ``[E]``, one per
    layer, channels in the current order). Returns one :class:`ReorderInfo` per layer.
    """
    mixers = _mamba2_mixers(model)
    if not data:
        raise ValueError("reorder_mamba2 needs samples or per-layer statistics")
    if all(torch.as_tensor(t).is_floating_point() for t in data):
        stats = [torch.as_tensor(t).detach().float().reshape(-1).cpu() for t in data]
        if len(stats) != len(mixers):
            raise ValueError(f"{len(stats)} statistics for {len(mixers)} layers")
    else:
        stats = collect_sort_cluster_stats(model, data)
    infos = []
    for i, (m, s) in enumerate(zip(mixers, stats)):
        if s.numel() != m.d_inner:
            raise ValueError(f"layer {i}: statistic has {s.numel()} channels, d_inner is {m.d_inner}")
        res = group_wise_sort_indices(s, m.headdim, m.ngroups, nhead_groups, ndim_groups)
        infos.append(ReorderInfo.from_result(res))
    apply_reorder(model, infos)
    return infos


def permute_state(state: ModelState, infos: Sequence[ReorderInfo], d_inner: int) -> ModelState:
    """The state of the original model expressed in the reordered model's order (new tensors):
    conv ``[B, E+2GN, K-1]`` channels [0:E) by ``ci``; SSM ``[B, H, P, N]`` by ``(hi, within-head)``,
    i.e. flat channel gather by ``ci``."""
    convs, ssms = [], []
    for conv, ssm, info in zip(state.conv, state.ssm, infos):
        ci = info.channel_index.long().to(conv.device)
        idx = torch.cat([ci, torch.arange(d_inner, conv.shape[1], device=conv.device)])
        convs.append(conv.index_select(1, idx))
        b, h, p, n = ssm.shape
        ssms.append(ssm.reshape(b, h * p, n).index_select(1, ci.to(ssm.device)).reshape(b, h, p, n))
    return ModelState(convs, ssms)
