"""QuantMambaLM: the quantized Mamba1 / Mamba2 language model (integer-faithful torch reference).

Same API as :class:`quamba_edge.models.MambaLM` (``forward``, ``step``, ``allocate_state``) and the same
module names (``embedding``, ``layers.{i}.norm``, ``layers.{i}.mixer.*``, ``norm_f``, ``lm_head``), with
every quantized computation done by the reference ops of ``quamba_edge.ops``.

``QuantMambaLM(model_config, quant_config)`` builds the skeleton (buffers of the right shapes and dtypes,
placeholder values) from the two configs alone, which is what loading an artifact needs:
``m = QuantMambaLM(mc, qc); m.load_state_dict(tensors)``. :meth:`QuantMambaLM.from_fp` quantizes a
transformed FP model (``recipes.quantize_model`` runs the whole pipeline).

Per recipe (spec B.1, C.7-C.10):

=================  =====================  ====================  ================================
                   quamba (v1)            quamba2 W8A8 / W4A8   quamba2 W4A16
=================  =====================  ====================  ================================
embedding          fp16                   W8 / W4 per row       W4 per row
block norm         add+RMSNorm -> int8    add+RMSNorm -> int8   add+RMSNorm (fp)
conv state         int8                   int8                  fp16
SSM state          fp16                   int8                  fp16
final norm         fp                     -> int8 (F.11)        fp
lm_head            fp16                   W8A8 / W4A8 (GPTQ)    W4A16 (GPTQ)
=================  =====================  ====================  ================================

(``quantize_embedding`` / ``quantize_lm_head`` / ``ssm_state_bits`` override the defaults.)
Activations between ops are fp32 here (the kernels write fp16 where the spec says fp16).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..models.config import MambaConfig
from ..models.state import ModelState
from .gptq import GPTQResult
from .qconfig import QuantConfig
from .qlinear import FPLinear, QuantAddRMSNorm, QuantEmbedding, W4A8Linear, W4A16Linear, W8A8Linear
from .qmamba1 import QMamba1Mixer, ScaleLookup
from .qmamba2 import QMamba2Mixer

__all__ = ["QuantMambaLM", "QuantBlock"]


class QuantBlock(nn.Module):
    """Add -> (quantizing) RMSNorm -> quantized mixer. ``forward(hidden, residual, conv, ssm) ->
    (out, residual, conv, ssm)``, the FP Block's contract."""

    def __init__(self, config: MambaConfig, quant_config: QuantConfig, layer_idx: int,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.norm = QuantAddRMSNorm(config.d_model, config.rms_norm_eps, quantize_output=quant_config.act8,
                                    residual_in_fp32=config.residual_in_fp32,
                                    fp_dtype=quant_config.torch_fp_dtype, device=device)
        mixer_cls = QMamba1Mixer if config.arch == "mamba1" else QMamba2Mixer
        self.mixer = mixer_cls(config, quant_config, layer_idx, device=device)

    def forward(self, hidden: Tensor, residual: Tensor | None = None, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, residual = self.norm(hidden, residual)
        out, conv_state, ssm_state = self.mixer(h, conv_state, ssm_state)
        return out, residual, conv_state, ssm_state


def _embedding_bits(qc: QuantConfig) -> int:
    return qc.w_bits if qc.quantize_embedding else 16


class QuantMambaLM(nn.Module):
    """Quantized Mamba1/Mamba2 causal LM (module docstring)."""

    def __init__(self, model_config: MambaConfig, quant_config: QuantConfig,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        quant_config.validate_for(model_config)
        self.config, self.quant_config = model_config, quant_config
        cfg, qc = model_config, quant_config
        fpd = qc.torch_fp_dtype
        self.embedding = QuantEmbedding(cfg.vocab_size, cfg.d_model, _embedding_bits(qc), fpd, device=device)
        self.layers = nn.ModuleList(QuantBlock(cfg, qc, i, device=device) for i in range(cfg.n_layer))
        self.norm_f = QuantAddRMSNorm(cfg.d_model, cfg.rms_norm_eps, quantize_output=qc.lm_head_a8,
                                      residual_in_fp32=cfg.residual_in_fp32, fp_dtype=fpd, device=device)
        self.lm_head = self._make_lm_head(cfg, qc, device)

    @staticmethod
    def _make_lm_head(cfg: MambaConfig, qc: QuantConfig, device) -> nn.Module:
        d, v = cfg.d_model, cfg.vocab_size
        if not qc.quantize_lm_head:
            return FPLinear(d, v, dtype=qc.torch_fp_dtype, device=device)
        if qc.bits == "w8a8":
            return W8A8Linear(d, v, out_int8=False, device=device)
        if qc.bits == "w4a8":
            return W4A8Linear(d, v, qc.group_size, out_int8=False, device=device)
        return W4A16Linear(d, v, qc.group_size, device=device)

    # ---- properties / state ------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Activation dtype of the reference (fp32)."""
        return torch.float32

    def allocate_state(self, batch_size: int, device: torch.device | str | None = None) -> ModelState:
        """Zero state: conv int8 (A8) or fp16 (W4A16); SSM int8 where the recipe quantizes it, else fp16."""
        cfg = self.config
        device = self.device if device is None else device
        conv, ssm = [], []
        for layer in self.layers:
            mx = layer.mixer
            conv.append(torch.zeros(batch_size, *cfg.conv_state_shape, device=device, dtype=mx.conv_state_dtype))
            ssm.append(torch.zeros(batch_size, *cfg.ssm_state_shape, device=device, dtype=mx.ssm_state_dtype))
        return ModelState(conv, ssm)

    # ---- forward -----------------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, input_ids: Tensor, state: ModelState | None = None, return_state: bool = False,
                num_last_tokens: int = 0) -> Tensor | tuple[Tensor, ModelState]:
        """input_ids ``[B, L]`` -> fp32 logits ``[B, L, V]`` (last ``num_last_tokens`` only if > 0), plus
        the new state if ``return_state``. ``state`` (not modified) continues a sequence; L == 1 with a
        state takes the single-token update ops."""
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [B, L] with L >= 1, got {tuple(input_ids.shape)}")
        if state is not None and state.num_layers != len(self.layers):
            raise ValueError(f"state has {state.num_layers} layers, model has {len(self.layers)}")
        hidden = self.embedding(input_ids)
        residual: Tensor | None = None
        convs, ssms = [], []
        for i, layer in enumerate(self.layers):
            hidden, residual, conv, ssm = layer(hidden, residual,
                                                None if state is None else state.conv[i],
                                                None if state is None else state.ssm[i])
            convs.append(conv)
            ssms.append(ssm)
        if num_last_tokens > 0:
            hidden = hidden[:, -num_last_tokens:]
            residual = None if residual is None else residual[:, -num_last_tokens:]
        h, _ = self.norm_f(hidden, residual)
        logits = self.lm_head(h)
        if return_state:
            return logits, ModelState(convs, ssms)
        return logits

    @torch.no_grad()
    def step(self, input_ids: Tensor, state: ModelState) -> tuple[Tensor, ModelState]:
        """One decode step: input_ids ``[B]`` -> (logits ``[B, V]``, new state)."""
        logits, state = self.forward(input_ids.reshape(-1, 1), state, return_state=True)
        return logits[:, 0], state

    # ---- construction from a transformed FP model ------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def from_fp(cls, fp_model: nn.Module, quant_config: QuantConfig, scales: Mapping[str, Any],
                gptq_results: Mapping[str, GPTQResult] | None = None,
                reorder_infos: list | None = None) -> "QuantMambaLM":
        """Quantize a transformed FP ``MambaLM`` (norms fused / residual rotated as the recipe says,
        Mamba2 A8 reordered, out_proj wrapped in ``rotation.HadamardLinear`` when
        ``out_proj_hadamard``).

        ``scales``: the flat dict of ``calibrate.collect_scales`` (``layers.{i}.mixer.<point>``,
        ``lm_head:input``). ``gptq_results``: ``{"layers.{i}.mixer.in_proj" | "...out_proj" |
        "lm_head": GPTQResult}`` for W4 layers (RTN where absent). ``reorder_infos``: per-layer
        ``reorder.ReorderInfo`` (Mamba2 with sort-and-cluster; recorded as ``channel_index`` /
        ``head_index`` buffers). The FP model is not modified.
        """
        cfg, qc = fp_model.config, quant_config
        qc.validate_for(cfg)
        gptq = dict(gptq_results or {})
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.config, m.quant_config = cfg, qc
        fpd = qc.torch_fp_dtype
        m.embedding = QuantEmbedding.from_float(fp_model.embedding.weight, _embedding_bits(qc), fpd)
        layers = []
        for i, fp_layer in enumerate(fp_model.layers):
            blk = QuantBlock.__new__(QuantBlock)
            nn.Module.__init__(blk)
            blk.layer_idx = i
            in_scale = ScaleLookup(scales, f"layers.{i}.mixer.").get("in_proj:input") if qc.act8 else None
            blk.norm = QuantAddRMSNorm.from_float(fp_layer.norm, in_scale, cfg.residual_in_fp32, fpd)
            if cfg.arch == "mamba1":
                blk.mixer = QMamba1Mixer.from_fp(fp_layer.mixer, cfg, qc, i, scales, gptq)
            else:
                info = None if reorder_infos is None else reorder_infos[i]
                blk.mixer = QMamba2Mixer.from_fp(fp_layer.mixer, cfg, qc, i, scales, gptq, reorder_info=info)
            layers.append(blk)
        m.layers = nn.ModuleList(layers)
        head_scale = ScaleLookup(scales).get("lm_head:input") if qc.lm_head_a8 else None
        m.norm_f = QuantAddRMSNorm.from_float(fp_model.norm_f, head_scale, cfg.residual_in_fp32, fpd)
        w = fp_model.lm_head.weight.detach()
        if not qc.quantize_lm_head:
            m.lm_head = FPLinear.from_float(w, dtype=fpd)
        elif qc.bits == "w8a8":
            m.lm_head = W8A8Linear.from_float(w, head_scale, None)
        elif qc.bits == "w4a8":
            m.lm_head = W4A8Linear.from_float(w, head_scale, None, gptq.get("lm_head"), qc.group_size)
        else:
            m.lm_head = W4A16Linear.from_float(w, gptq.get("lm_head"), qc.group_size)
        m._check_against_skeleton()
        return m.eval()

    def _check_against_skeleton(self) -> None:
        """The state_dict must have exactly the names/dtypes/shapes of ``QuantMambaLM(config, qconfig)``
        (what an artifact loader builds); raise RuntimeError naming the differences otherwise."""
        with torch.device("meta"):
            ref = QuantMambaLM(self.config, self.quant_config)
        want = {k: (v.dtype, tuple(v.shape)) for k, v in ref.state_dict().items()}
        got = {k: (v.dtype, tuple(v.shape)) for k, v in self.state_dict().items()}
        if want != got:
            diff = sorted(set(want.items()) ^ set(got.items()))[:10]
            raise RuntimeError(f"internal error: quantized model does not match its skeleton: {diff}")

    def extra_repr(self) -> str:
        qc = self.quant_config
        return f"arch={self.config.arch}, recipe={qc.recipe}, bits={qc.bits}"
