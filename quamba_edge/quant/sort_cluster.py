"""Sort-and-cluster of the Mamba2 SSM input x (spec C.3 step 2, pitfalls 7 and 8).

:func:`group_wise_sort_indices` turns the per-channel statistic of
:class:`~quamba_edge.quant.observers.SortClusterStatObserver` into a channel permutation, a head
permutation and the head-group / channel-group sizes used by the grouped x and state scales.

Algorithm (per SSD group ``g`` independently):

1. Reshape the statistic ``[E]`` to ``[G, H/G, P]``.
2. Sort the ``P`` channels of every head ascending (stable sort; each head gets its own order).
3. L2-normalise every head's sorted vector (an all-zero vector stays zero).
4. Ward agglomerative clustering (scikit-learn, Euclidean) of the ``H/G`` head vectors into
   ``m_eff = min(nhead_groups, H/G)`` clusters. Heads are reordered so clusters are contiguous, clusters
   in ascending label order, heads inside a cluster in their original order (stable).
5. For each head cluster, every channel POSITION is a point whose features are that position's sorted,
   normalised values across the cluster's heads. KMeans with ``n_eff = min(ndim_groups, P)`` clusters,
   ``n_init=1``, initial centres = the points at positions ``k·P // n_eff`` (0, P/4, P/2, 3P/4 for 4).
   The labels must be monotone along the positions (upstream asserts it); the run lengths are the
   channel-group sizes (low-magnitude channels first).

Choices where the spec leaves room (documented behaviour, not upstream):

* Fewer heads per SSD group than ``nhead_groups``: ``m_eff = H/G`` clusters (one head each, or one
  cluster when ``H/G == 1``); the missing head groups get size 0 and their channel-group rows are all 0.
  Fewer channels than ``ndim_groups``: ``n_eff = P`` groups, trailing sizes 0. The output shapes are
  always ``[G, nhead_groups]`` and ``[G, nhead_groups, ndim_groups]``.
* KMeans labels that are not monotone but still form one contiguous run per label are accepted
  (equivalent ranges, relabelled by position). Otherwise a ``RuntimeWarning`` is issued and the channel
  positions are split into ``n_eff`` contiguous near-equal ranges (the first ``P mod n_eff`` ranges one
  channel longer).

Permutation conventions ("gather"): ``x_new = x_old[..., channel_index]`` and
``head_new[h] = head_old[head_index[h]]``. Heads only move inside their SSD group, channels only inside
their head: ``channel_index[h·P + c] = head_index[h]·P + order[head_index[h], c]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .groups import validate_groups

__all__ = ["SortClusterResult", "group_wise_sort_indices", "invert_permutation"]


@dataclass(frozen=True)
class SortClusterResult:
    """Output of :func:`group_wise_sort_indices` (all ``torch.long``, CPU).

    ``channel_index`` ``[E]``, ``head_index`` ``[H]``, ``head_groups`` ``[G, m]``,
    ``channel_groups`` ``[G, m, n]`` (conventions in the module docstring and :mod:`.groups`).
    """

    channel_index: Tensor
    head_index: Tensor
    head_groups: Tensor
    channel_groups: Tensor
    headdim: int
    ngroups: int

    @property
    def nheads(self) -> int:
        return int(self.head_index.numel())

    def validate(self) -> None:
        """Raise ``ValueError`` if any invariant (permutations, scopes, group tilings) is violated."""
        H, P, G = self.nheads, self.headdim, self.ngroups
        hi, ci = self.head_index, self.channel_index
        if not torch.equal(torch.sort(hi).values, torch.arange(H)):
            raise ValueError("head_index is not a permutation")
        if not torch.equal(torch.sort(ci).values, torch.arange(H * P)):
            raise ValueError("channel_index is not a permutation")
        hpg = H // G
        if not torch.equal(hi // hpg, torch.arange(H) // hpg):
            raise ValueError("a head left its SSD group")
        if not torch.equal(ci.reshape(H, P) // P, hi[:, None].expand(H, P)):
            raise ValueError("channel_index is inconsistent with head_index (channel left its head)")
        validate_groups(self.head_groups, self.channel_groups, H, P)


def invert_permutation(index: Tensor) -> Tensor:
    """``inv`` with ``inv[index[k]] = k`` (so ``x_old = x_new[..., inv]``)."""
    inv = torch.empty_like(index)
    inv[index] = torch.arange(index.numel(), dtype=index.dtype, device=index.device)
    return inv


def _split_sizes(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _channel_ranges(points: np.ndarray, n: int) -> list[int]:
    """KMeans over channel positions (rows of ``points`` ``[P, f]``) → ``n`` contiguous range sizes."""
    from sklearn.cluster import KMeans

    P = points.shape[0]
    n_eff = min(n, P)
    if n_eff <= 1:
        return [P] + [0] * (n - 1)
    init_pos = [(k * P) // n_eff for k in range(n_eff)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "fewer distinct clusters": handled by the checks below
        km = KMeans(n_clusters=n_eff, init=points[init_pos], n_init=1, random_state=0).fit(points)
    labels = np.asarray(km.labels_)
    if np.all(np.diff(labels) >= 0):
        sizes = np.bincount(labels, minlength=n_eff).tolist()
    else:
        change = np.flatnonzero(np.diff(labels) != 0) + 1
        bounds = [0, *change.tolist(), P]
        if len(bounds) - 1 == len(np.unique(labels)):
            sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            warnings.warn(f"sort_cluster: KMeans channel labels are not contiguous ({labels.tolist()}); "
                          f"falling back to {n_eff} near-equal contiguous channel ranges", RuntimeWarning,
                          stacklevel=3)
            sizes = _split_sizes(P, n_eff)
    return sizes + [0] * (n - len(sizes))


def group_wise_sort_indices(stat: Tensor, headdim: int, ngroups: int = 1, nhead_groups: int = 4,
                            ndim_groups: int = 4) -> SortClusterResult:
    """Spec C.3 step 2 (see module docstring). ``stat``: per-channel statistic ``[E]`` (E = H·headdim),
    channels in the ORIGINAL order. Deterministic for a given input."""
    from sklearn.cluster import AgglomerativeClustering

    s = torch.as_tensor(stat).detach().reshape(-1).to(torch.float64).cpu()
    E, P, G = s.numel(), int(headdim), int(ngroups)
    if P <= 0 or E % P:
        raise ValueError(f"stat length {E} is not a multiple of headdim {P}")
    H = E // P
    if G <= 0 or H % G:
        raise ValueError(f"nheads {H} is not divisible by ngroups {G}")
    if nhead_groups < 1 or ndim_groups < 1:
        raise ValueError("nhead_groups and ndim_groups must be >= 1")
    hpg = H // G
    vals, order = torch.sort(s.reshape(G, hpg, P), dim=-1, stable=True)
    normed = vals / vals.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)

    head_index = torch.empty(H, dtype=torch.long)
    head_groups = torch.zeros(G, nhead_groups, dtype=torch.long)
    channel_groups = torch.zeros(G, nhead_groups, ndim_groups, dtype=torch.long)
    for g in range(G):
        X = normed[g].numpy()
        m_eff = min(nhead_groups, hpg)
        if m_eff <= 1:
            labels = np.zeros(hpg, dtype=np.int64)
        else:
            labels = AgglomerativeClustering(n_clusters=m_eff, linkage="ward").fit_predict(X)
        perm = np.argsort(labels, kind="stable")
        head_index[g * hpg:(g + 1) * hpg] = torch.from_numpy(perm.astype(np.int64)) + g * hpg
        for i, c in enumerate(np.unique(labels)):
            heads = perm[labels[perm] == c]
            head_groups[g, i] = len(heads)
            channel_groups[g, i] = torch.tensor(_channel_ranges(X[heads].T.copy(), ndim_groups))

    old_local = head_index % hpg
    grp = head_index // hpg
    within = order[grp, old_local]  # [H, P]: old channel (inside the old head) at each new position
    channel_index = (head_index[:, None] * P + within).reshape(-1)
    res = SortClusterResult(channel_index, head_index, head_groups, channel_groups, P, G)
    res.validate()
    return res
