"""Activation calibration of a (transformed) FP MambaLM: observers on forward hooks → scale dict
(spec B.2, C.5, C.6, C.7; pitfalls F.2, F.5, F.6).

:func:`collect_scales` attaches one observer per planned point, runs the samples one at a time (batch 1,
``torch.no_grad``, ``return_state=True`` so every sample's final SSM state passes the ``ssm_state_act``
tap), removes the hooks (also on error) and returns fp32 CPU scales (``amax / 127``):

* ``layers.{i}.mixer.<tap>`` — an ``nn.Identity`` tap point of the mixer (its output);
* ``layers.{i}.mixer.<linear>:input`` / ``:output`` — input / output of a mixer ``nn.Linear``; for a
  :class:`~quamba_edge.quant.rotation.HadamardLinear` out_proj the hook sits on its ``.linear``, so
  ``out_proj:input`` is measured in the Hadamard domain (spec B.2);
* ``layers.{i}.mixer.dt_proj:output`` (Mamba1) — Δraw. The FP mixer applies ``dt_proj.weight`` with
  ``F.linear`` (its bias goes into the scan), so the module never runs: the value is recomputed from the
  x_proj output as ``F.linear(x_proj_out[..., :R], dt_proj.weight)``, the tensor the mixer uses. Its input
  scale is ``x_proj:output`` (spec B.1, F.18), so no ``dt_proj:input`` is produced;
* ``lm_head:input`` — the norm_f output.

Per-tensor scales are 0-d tensors; grouped ones have the observer's shape (``[G]``, ``[G, m, n]``,
``[G, m, n, N]``). Which observer runs where is a :class:`CalibrationPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.lm import MambaLM
from .observers import (
    CrossHeadMinMaxObserver,
    MinMaxObserver,
    Observer,
    PercentileObserver,
    PerGroupObserver,
    StateGroupObserver,
)
from .reorder import ReorderInfo, _as_batch1
from .rotation import HadamardLinear

__all__ = ["ObserverSpec", "CalibrationPlan", "collect_scales", "MAMBA1_POINTS", "MAMBA2_POINTS"]

#: Mamba1 mixer points observed by the presets (spec B.1).
MAMBA1_POINTS: tuple[str, ...] = ("in_proj:input", "in_proj:output", "x_proj:input", "x_proj:output",
                                  "dt_proj:output", "out_proj:input", "out_proj:output")
#: Mamba2 mixer points observed by the presets (spec C.6, C.7); ``ssd_out`` = upstream ``ssd_out_act``.
MAMBA2_POINTS: tuple[str, ...] = ("in_proj:input", "in_proj:output", "z_act", "x_conv_in", "B_conv_in",
                                  "C_conv_in", "dt_act", "x_conv_out", "B_conv_out", "C_conv_out",
                                  "ssd_out", "out_proj:input", "out_proj:output")

_KINDS = ("minmax", "percentile", "per_ssd_group", "cross_head", "state_group")


@dataclass(frozen=True)
class ObserverSpec:
    """Which observer (:mod:`.observers`) a point gets.

    ``minmax`` (per-tensor running absmax), ``percentile`` (per-tensor EMA of per-sample quantiles,
    ``alpha``, ``momentum``; F.2), ``per_ssd_group`` (Mamba2 B/C after the conv, ``[G]``; C.5),
    ``cross_head`` (Mamba2 x, ``[G, m, n]``; C.3) and ``state_group`` (Mamba2 SSM state, ``[G, m, n, N]``;
    C.6). The last two need the layer's :class:`~quamba_edge.quant.reorder.ReorderInfo`.
    """

    kind: str = "minmax"
    alpha: float | None = None
    momentum: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown observer kind {self.kind!r}; use one of {_KINDS}")
        if self.kind == "percentile" and self.alpha is None:
            raise ValueError("a percentile observer needs alpha")


MINMAX = ObserverSpec("minmax")


def _pct(alpha: float) -> ObserverSpec:
    return ObserverSpec("percentile", float(alpha))


@dataclass
class CalibrationPlan:
    """Observer per mixer point (keys of :data:`MAMBA1_POINTS` / :data:`MAMBA2_POINTS` syntax, plus
    ``ssm_state_act``), the ``lm_head:input`` observer (None = skip), aliases (extra mixer keys that copy
    another point's scale) and the per-layer reorder infos needed by grouped observers."""

    arch: str
    points: dict[str, ObserverSpec]
    lm_head_input: ObserverSpec | None = MINMAX
    aliases: dict[str, str] = field(default_factory=dict)
    reorder_infos: list[ReorderInfo] | None = None
    name: str = "custom"

    # ---- presets --------------------------------------------------------------------------------

    @classmethod
    def quamba_v1(cls, arch: str = "mamba1") -> "CalibrationPlan":
        """Quamba paper / REPO@v1 (spec B.1, B.2): percentile α = 0.99999 on the SSM input x
        (``x_proj:input`` for Mamba1, ``x_conv_out`` for Mamba2), min-max elsewhere, SSM state not
        quantized (no ``ssm_state_act``). Mamba1 also gets ``x_conv_out`` as an alias of ``x_proj:input``
        (the same tensor)."""
        return cls._percentile_plan(arch, 0.99999, state=False, name="quamba_v1")

    @classmethod
    def quamba_percentile(cls, arch: str, alpha: float = 0.9995) -> "CalibrationPlan":
        """REPO@HEAD ``run_quamba_calibration`` (spec B.0, C.6 last bullet): percentile α on x AND on the
        SSM state (``ssm_state_act``, per-tensor), min-max elsewhere. Used for Mamba1 under quamba2 and
        for "Quamba on Mamba2" (F.27). The code comment suggests α = 0.99999 for 130m models."""
        return cls._percentile_plan(arch, alpha, state=True, name=f"quamba_percentile({alpha})")

    @classmethod
    def quamba2_mamba2(cls, reorder_infos: Sequence[ReorderInfo]) -> "CalibrationPlan":
        """Quamba2 for Mamba2 (spec C.6): ``x_conv_out`` cross-head ``[G, m, n]``, ``B_conv_out`` /
        ``C_conv_out`` per SSD group ``[G]``, ``ssm_state_act`` ``[G, m, n, N]``, everything else
        per-tensor min-max. Calibrate the REORDERED model (F.5)."""
        pts = {p: MINMAX for p in MAMBA2_POINTS}
        pts["x_conv_out"] = ObserverSpec("cross_head")
        pts["B_conv_out"] = pts["C_conv_out"] = ObserverSpec("per_ssd_group")
        pts["ssm_state_act"] = ObserverSpec("state_group")
        return cls("mamba2", pts, reorder_infos=list(reorder_infos), name="quamba2_mamba2")

    @classmethod
    def _percentile_plan(cls, arch: str, alpha: float, state: bool, name: str) -> "CalibrationPlan":
        if arch == "mamba1":
            pts = {p: MINMAX for p in MAMBA1_POINTS}
            pts["x_proj:input"] = _pct(alpha)
            aliases = {"x_conv_out": "x_proj:input"}
        elif arch == "mamba2":
            pts = {p: MINMAX for p in MAMBA2_POINTS}
            pts["x_conv_out"] = _pct(alpha)
            aliases = {}
        else:
            raise ValueError(f"arch must be 'mamba1' or 'mamba2', got {arch!r}")
        if state:
            pts["ssm_state_act"] = _pct(alpha)
        return cls(arch, pts, aliases=aliases, name=name)

    def keys(self, n_layer: int) -> list[str]:
        """The keys :func:`collect_scales` returns for a model of ``n_layer`` layers."""
        per = [*self.points, *self.aliases]
        out = [f"layers.{i}.mixer.{p}" for i in range(n_layer) for p in per]
        return out + (["lm_head:input"] if self.lm_head_input is not None else [])


# ---- hooks --------------------------------------------------------------------------------------

def _make_observer(spec: ObserverSpec, mixer: nn.Module, info: ReorderInfo | None,
                   where: str) -> tuple[Observer, Callable[[Tensor], Tensor]]:
    """(observer, transform applied to the hooked tensor before ``update``)."""
    ident = lambda t: t  # noqa: E731
    if spec.kind == "minmax":
        return MinMaxObserver(), ident
    if spec.kind == "percentile":
        return PercentileObserver(spec.alpha, spec.momentum), ident
    if not hasattr(mixer, "ngroups"):
        raise ValueError(f"{where}: observer {spec.kind!r} is for Mamba2 mixers only")
    g, n = mixer.ngroups, mixer.d_state
    if spec.kind == "per_ssd_group":
        return PerGroupObserver(g), lambda t: t.unflatten(-1, (g, n))
    if info is None:
        raise ValueError(f"{where}: observer {spec.kind!r} needs the layer's ReorderInfo "
                         "(CalibrationPlan.quamba2_mamba2(reorder_infos))")
    hg, cg, H, P = info.head_groups, info.channel_groups, mixer.nheads, mixer.headdim
    if spec.kind == "cross_head":
        return CrossHeadMinMaxObserver(hg, cg, H, P), ident
    return StateGroupObserver(hg, cg, H, P, n), ident


def _hook_site(mixer: nn.Module, point: str, where: str) -> tuple[nn.Module, Callable]:
    """(module to hook, picks the observed tensor from ``(inputs, output)``)."""
    if ":" in point:
        name, side = point.split(":", 1)
        if side not in ("input", "output"):
            raise ValueError(f"{where}: point {point!r} must end in ':input' or ':output'")
        if name == "dt_proj" and side == "output" and hasattr(mixer, "dt_rank"):
            r, w = mixer.dt_rank, mixer.dt_proj.weight  # Mamba1 Δraw, see module docstring
            return mixer.x_proj, lambda inp, out: F.linear(out[..., :r], w)
        mod = getattr(mixer, name, None)
        if isinstance(mod, HadamardLinear):
            mod = mod.linear
        if not isinstance(mod, nn.Linear):
            raise ValueError(f"{where}: {name!r} is not an nn.Linear of the mixer")
        return mod, (lambda inp, out: inp[0]) if side == "input" else (lambda inp, out: out)
    mod = getattr(mixer, point, None)
    if not isinstance(mod, nn.Identity):
        taps = sorted(k for k, m in mixer.named_children() if isinstance(m, nn.Identity))
        raise ValueError(f"{where}: {point!r} is not a tap point of {type(mixer).__name__} "
                         f"(taps: {taps})")
    return mod, lambda inp, out: out


def _attach(model: MambaLM, plan: CalibrationPlan) -> tuple[dict[str, Observer], list]:
    observers: dict[str, Observer] = {}
    handles: list = []

    def add(key: str, mod: nn.Module, pick: Callable, ob: Observer, tf: Callable) -> None:
        observers[key] = ob
        handles.append(mod.register_forward_hook(
            lambda _m, inp, out: ob.update(tf(pick(inp, out)))))

    try:
        for i, layer in enumerate(model.layers):
            info = plan.reorder_infos[i] if plan.reorder_infos is not None else None
            for point, spec in plan.points.items():
                key = f"layers.{i}.mixer.{point}"
                mod, pick = _hook_site(layer.mixer, point, key)
                ob, tf = _make_observer(spec, layer.mixer, info, key)
                add(key, mod, pick, ob, tf)
        if plan.lm_head_input is not None:
            ob, tf = _make_observer(plan.lm_head_input, model.layers[0].mixer, None, "lm_head:input")
            add("lm_head:input", model.lm_head, lambda inp, out: inp[0], ob, tf)
    except BaseException:
        for h in handles:
            h.remove()
        raise
    return observers, handles


def _check_plan(model: MambaLM, plan: CalibrationPlan) -> None:
    if plan.arch != model.config.arch:
        raise ValueError(f"plan {plan.name!r} is for {plan.arch}, the model is {model.config.arch}")
    if plan.reorder_infos is not None and len(plan.reorder_infos) != len(model.layers):
        raise ValueError(f"plan has {len(plan.reorder_infos)} reorder infos for {len(model.layers)} layers")
    for alias, target in plan.aliases.items():
        if target not in plan.points:
            raise ValueError(f"alias {alias!r} points to {target!r}, which the plan does not observe")


# ---- public API ---------------------------------------------------------------------------------


@torch.no_grad()
def collect_scales(model: MambaLM, samples: Sequence[Tensor], plan: CalibrationPlan, bits: int = 8,
                   progress: bool = False) -> dict[str, Tensor]:
    """Run ``samples`` (long ``[1, L]`` each; batch 1, spec B.2) through ``model`` with the plan's
    observers and return ``{key: fp32 CPU scale}`` (module docstring). The model is not modified."""
    if not samples:
        raise ValueError("collect_scales needs at least one sample")
    _check_plan(model, plan)
    observers, handles = _attach(model, plan)
    it = samples
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(samples, desc=f"calibrating ({plan.name})", unit="sample")
    try:
        for ids in it:
            model(_as_batch1(ids, model.device), return_state=True)
    finally:
        for h in handles:
            h.remove()
    missing = [k for k, ob in observers.items() if ob.num_updates == 0]
    if missing:
        raise RuntimeError(f"these points were never reached during calibration: {missing[:6]}"
                           f"{' ...' if len(missing) > 6 else ''}")
    scales = {k: ob.scale(bits).detach().to(torch.float32).cpu() for k, ob in observers.items()}
    for i in range(len(model.layers)):
        for alias, target in plan.aliases.items():
            scales[f"layers.{i}.mixer.{alias}"] = scales[f"layers.{i}.mixer.{target}"].clone()
    return scales
