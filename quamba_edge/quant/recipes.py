"""Quamba / Quamba2 quantization pipelines (spec shared/spec/quamba.md B, C.1; order of pitfall F.5).

:func:`quantize_model` runs, on a deep copy of the FP model (the caller's model is never modified):

1. (quamba2) untie lm_head, fuse the block-norm / norm_f weights into in_proj / lm_head
   (``rotation.fuse_norms``) and rotate the residual stream (``rotation.rotate_residual``; option
   ``residual_rotation``). The ``quamba`` (v1) recipe keeps the norm weights and the residual basis.
2. (Mamba2, 8-bit activations, ``group_heads``) sort-and-cluster statistics and the weight permutation
   (``reorder.reorder_mamba2``); the head/channel group tables go into the QuantConfig.
3. out_proj-input Hadamard (``rotation.rotate_out_proj_input``; option ``out_proj_hadamard``).
4. Activation calibration on the permuted, rotated FP model (``calibrate.collect_scales``):
   ``quamba``: percentile alpha (0.99999) on the SSM input x, min-max elsewhere, no state scale;
   ``quamba2`` Mamba1 and Mamba2 with ``group_heads=False``: percentile alpha (0.9995) on x and on the
   SSM state; ``quamba2`` Mamba2 with ``group_heads``: cross-head x scales, per-SSD-group B/C, grouped
   state scales, min-max elsewhere. Mamba2 B / C after the conv: per SSD group when ``bc_per_group``
   (default: ``group_heads``), else one per-tensor min-max scale. W4A16: no activation calibration.
5. The Hadamard matrices are already fused into the weights (``HadamardLinear.linear`` holds ``W·Mᵀ``).
6. (W4, ``gptq=True``) GPTQ, sequential layer by layer: the inputs of layer i come from layers 0..i-1
   whose in_proj / out_proj already carry their GPTQ weights; activations are not quantized; in_proj
   then out_proj of every layer, then lm_head; 4 bits, group 128, damp 1 %, natural column order.
   ``gptq=False``: RTN with the same grids. (Mamba1 x_proj is RTN, dt_proj W8A8 / fp: spec F.24.)
7. Quantize / pack into a :class:`~quamba_edge.quant.qlm.QuantMambaLM` (``QuantMambaLM.from_fp``).

"Quamba on Mamba2" (Q2-paper's baseline, spec F.27) is ``quantize_model(m2, "quamba2", "w8a8", calib,
group_heads=False)``: HEAD's percentile path (residual rotation, alpha 0.9995 on x and state, per-tensor
int8 state, quantized embedding / lm_head). ``quantize_model(m2, "quamba", "w8a8", calib)`` is the
paper-v1-style variant (no residual rotation, alpha 0.99999, fp16 state, fp16 embedding / lm_head).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .gptq import GPTQ, GPTQResult
from .qconfig import VALID_COMBOS, QuantConfig
from .qlm import QuantMambaLM

__all__ = ["RECIPES", "quantize_model", "calibration_plan", "run_gptq", "prepare_fp_model"]

#: Valid (recipe, bits, arch) combinations.
RECIPES: tuple[tuple[str, str, str], ...] = VALID_COMBOS

_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(QuantConfig)
                       if f.name not in ("recipe", "bits", "arch", "head_groups", "channel_groups"))


def _progress(it, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


def calibration_plan(qc: QuantConfig, reorder_infos: Sequence[Any] | None = None):
    """The ``calibrate.CalibrationPlan`` of a QuantConfig (None for 16-bit activations)."""
    from .calibrate import CalibrationPlan, ObserverSpec

    if not qc.act8:
        return None
    alpha = qc.percentile_alpha
    if qc.arch == "mamba2" and qc.group_heads:
        if reorder_infos is None:
            raise ValueError("the sort-and-cluster calibration plan needs the reorder infos")
        plan = CalibrationPlan.quamba2_mamba2(reorder_infos)
    elif qc.recipe == "quamba":
        plan = CalibrationPlan.quamba_v1(qc.arch)
    else:
        plan = CalibrationPlan.quamba_percentile(qc.arch, alpha)
    if qc.arch == "mamba2":  # B / C after the conv: per SSD group (spec C.5) or per tensor
        bc = ObserverSpec("per_ssd_group") if qc.bc_per_group else ObserverSpec("minmax")
        plan.points["B_conv_out"] = plan.points["C_conv_out"] = bc
    x_point = "x_proj:input" if qc.arch == "mamba1" else "x_conv_out"
    if plan.points[x_point].kind == "percentile":
        plan.points[x_point] = ObserverSpec("percentile", alpha)
    if qc.int8_ssm_state and "ssm_state_act" not in plan.points:
        plan.points["ssm_state_act"] = ObserverSpec("percentile", alpha)
    if not qc.int8_ssm_state:
        plan.points.pop("ssm_state_act", None)
    if not qc.lm_head_a8:
        plan.lm_head_input = None
    return plan


@torch.no_grad()
def prepare_fp_model(model: nn.Module, qc: QuantConfig, calib: Sequence[Tensor]) -> tuple[nn.Module, list | None]:
    """Steps 1-3 on a deep fp32 copy: returns ``(transformed model, reorder infos or None)``; fills
    ``qc.head_groups`` / ``qc.channel_groups`` after sort-and-cluster."""
    from . import reorder, rotation

    m = copy.deepcopy(model).float().eval()
    if qc.recipe == "quamba2" or qc.residual_rotation:
        rotation.fuse_norms(m)
    if qc.residual_rotation:
        rotation.rotate_residual(m)
    infos = None
    if qc.arch == "mamba2" and qc.group_heads:
        infos = reorder.reorder_mamba2(m, list(calib), qc.nhead_groups, qc.ndim_groups)
        qc.head_groups = [i.head_groups.tolist() for i in infos]
        qc.channel_groups = [i.channel_groups.tolist() for i in infos]
    if qc.out_proj_hadamard:
        rotation.rotate_out_proj_input(m)
    return m, infos


def _inner_linear(mod: nn.Module) -> nn.Linear:
    return mod.linear if hasattr(mod, "linear") and hasattr(mod, "hadamard_matrix") else mod


@torch.no_grad()
def run_gptq(model: nn.Module, samples: Sequence[Tensor], qc: QuantConfig, progress: bool = False
             ) -> dict[str, GPTQResult]:
    """Sequential GPTQ (step 6) of in_proj / out_proj of every layer and of lm_head on the transformed FP
    ``model``. The model's weights are REPLACED by the fake-quantized GPTQ weights as it goes (so layer
    i sees inputs produced by quantized layers 0..i-1); pass a copy if that matters. Returns
    ``{"layers.{i}.mixer.in_proj" | "layers.{i}.mixer.out_proj" | "lm_head": GPTQResult}``."""
    dev = model.embedding.weight.device
    ids = []
    for s in samples:
        t = torch.as_tensor(s)
        ids.append((t.unsqueeze(0) if t.dim() == 1 else t).to(dev))
    if not ids:
        raise ValueError("GPTQ needs at least one calibration sample")
    hidden = [model.embedding(t).float() for t in ids]
    residual: list[Tensor | None] = [None] * len(ids)
    results: dict[str, GPTQResult] = {}

    def solve(lin: nn.Linear, run) -> GPTQResult:
        g = GPTQ(lin.weight.detach().float())
        handle = lin.register_forward_pre_hook(lambda _m, inp: g.add_batch(inp[0]))
        try:
            run()
        finally:
            handle.remove()
        res = g.quantize(bits=4, group_size=qc.group_size, damp=qc.gptq_damp)
        lin.weight.copy_(res.weight.to(lin.weight.dtype))
        return res

    for i, layer in enumerate(_progress(model.layers, progress, desc="GPTQ", unit="layer")):
        def run_layer(layer=layer):
            for k in range(len(ids)):
                layer(hidden[k], residual[k])

        for name in ("in_proj", "out_proj"):
            results[f"layers.{i}.mixer.{name}"] = solve(_inner_linear(getattr(layer.mixer, name)), run_layer)
        for k in range(len(ids)):
            hidden[k], residual[k], _, _ = layer(hidden[k], residual[k])

    def run_head():
        for k in range(len(ids)):
            r = hidden[k] if residual[k] is None else residual[k] + hidden[k]
            model.lm_head(model.norm_f(r))

    if qc.quantize_lm_head:
        results["lm_head"] = solve(model.lm_head, run_head)
    return results


def quantize_model(model: nn.Module, recipe: str, bits: str, calib: Sequence[Tensor],
                   gptq_calib: Sequence[Tensor] | None = None, *, progress: bool = False,
                   **options: Any) -> QuantMambaLM:
    """Quantize an FP :class:`~quamba_edge.models.MambaLM` with ``recipe`` ("quamba" | "quamba2") at
    ``bits`` ("w8a8" | "w4a8" | "w4a16") (module docstring for the steps).

    ``calib``: activation-calibration samples (long ``[1, L]``, batch 1, spec B.2; also used for the
    sort-and-cluster statistics). ``gptq_calib``: GPTQ samples (spec F.4: separate data; default:
    ``calib``). ``options``: QuantConfig fields (``percentile_alpha``, ``group_size``, ``gptq``,
    ``gptq_damp``, ``quantize_embedding``, ``quantize_lm_head``, ``ssm_state_bits``,
    ``residual_rotation``, ``out_proj_hadamard``, ``group_heads``, ``bc_per_group``, ``nhead_groups``,
    ``ndim_groups``, ``fp_dtype``, ``meta``). ``progress``: tqdm bars. Valid combinations: :data:`RECIPES`.
    """
    from .calibrate import collect_scales

    unknown = sorted(set(options) - set(_OPTION_FIELDS))
    if unknown:
        raise ValueError(f"unknown quantize_model options {unknown}; valid: {', '.join(_OPTION_FIELDS)}")
    arch = model.config.arch
    qc = QuantConfig(recipe=recipe, bits=bits, arch=arch, **options)
    calib = list(calib)
    if qc.act8 or (qc.arch == "mamba2" and qc.group_heads):
        if not calib:
            raise ValueError("activation calibration needs at least one sample in calib")
    m, infos = prepare_fp_model(model, qc, calib)
    scales: dict[str, Tensor] = {}
    plan = calibration_plan(qc, infos)
    if plan is not None:
        scales = collect_scales(m, calib, plan, progress=progress)
    gptq_results = None
    if qc.w_bits == 4 and qc.gptq:
        data = list(gptq_calib) if gptq_calib is not None else calib
        if not data:
            raise ValueError("GPTQ needs samples (gptq_calib or calib); pass gptq=False for RTN")
        gptq_results = run_gptq(m, data, qc, progress=progress)
    qc.meta = {**qc.meta, "num_calib_samples": len(calib),
               "num_gptq_samples": 0 if gptq_results is None else len(gptq_calib or calib)}
    return QuantMambaLM.from_fp(m, qc, scales, gptq_results, reorder_infos=infos)
