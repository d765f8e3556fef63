"""Mamba1 / Mamba2 language model (FP reference): embedding -> n_layer x Block -> norm_f -> lm_head."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module_hooks

from .._tracing import exporting
from .config import MambaConfig
from .mamba1 import Mamba1Mixer
from .mamba2 import Mamba2Mixer
from .ssm import rms_norm
from .state import ModelState


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in fp32; the output has the weight's dtype (the model dtype),
    whatever the input's (the fp32 residual stream goes in)."""

    def __init__(self, d: int, eps: float = 1e-5, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps).to(self.weight.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _fused_norm(norm: nn.Module) -> bool:
    """Whether a norm may run fused with its residual add (``kernel_dispatch.add_rms_norm``: one CUDA kernel on
    torch-cuda, the same reference ops elsewhere): a plain :class:`RMSNorm` with no forward hooks (a replaced norm,
    e.g. the fake-quant one, or an observed one keeps its module call), and not while exporting (the module call
    keeps the exported graph as it was)."""
    return (type(norm) is RMSNorm and not exporting() and not (norm._forward_hooks or norm._forward_pre_hooks)
            and not (_module_hooks._global_forward_hooks or _module_hooks._global_forward_pre_hooks))


class Block(nn.Module):
    """mamba_ssm's "Add -> Norm -> Mixer" block with the fused add+norm semantics:
    ``residual = hidden + residual`` (just ``hidden`` in the first block), kept in fp32 when
    ``residual_in_fp32``; ``out = mixer(norm(residual))``. Returns ``(out, residual, conv, ssm)``."""

    def __init__(self, config: MambaConfig, layer_idx: int, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.d_model, config.rms_norm_eps, device=device, dtype=dtype)
        mixer_cls = Mamba1Mixer if config.arch == "mamba1" else Mamba2Mixer
        self.mixer = mixer_cls(config, layer_idx, device=device, dtype=dtype)

    def forward(self, hidden: Tensor, residual: Tensor | None = None, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if _fused_norm(self.norm):
            from ..ops import kernel_dispatch  # here, not at the top: quamba_edge.ops imports this package

            normed, residual = kernel_dispatch.add_rms_norm(hidden, residual, self.norm.weight, self.norm.eps,
                                                            self.residual_in_fp32)
        else:
            residual = hidden if residual is None else residual + hidden
            if self.residual_in_fp32:
                residual = residual.float()
            normed = self.norm(residual)
        out, conv_state, ssm_state = self.mixer(normed, conv_state, ssm_state)
        return out, residual, conv_state, ssm_state


class MambaLM(nn.Module):
    """Mamba1/Mamba2 causal LM. Module names mirror the mamba_ssm checkpoint keys without ``backbone.``:
    ``embedding``, ``layers.{i}.norm``, ``layers.{i}.mixer.*``, ``norm_f``, ``lm_head``."""

    def __init__(self, config: MambaConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.config = config
        fk = {"device": device, "dtype": dtype}
        self.embedding = nn.Embedding(config.vocab_size, config.d_model, **fk)
        self.layers = nn.ModuleList(Block(config, i, **fk) for i in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, config.rms_norm_eps, **fk)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False, **fk)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, std=0.02)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding matrix with lm_head when the config says so."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def allocate_state(self, batch_size: int, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None,
                       ssm_dtype: torch.dtype | None = torch.float32) -> ModelState:
        """Zero state (= the start of a sequence). The conv state defaults to the model dtype and the
        SSM state to fp32 (the recurrence runs in fp32); ``ssm_dtype=None`` uses ``dtype`` for both."""
        cfg = self.config
        device = self.device if device is None else device
        dtype = self.dtype if dtype is None else dtype
        ssm_dtype = dtype if ssm_dtype is None else ssm_dtype
        conv = [torch.zeros(batch_size, *cfg.conv_state_shape, device=device, dtype=dtype)
                for _ in range(cfg.n_layer)]
        ssm = [torch.zeros(batch_size, *cfg.ssm_state_shape, device=device, dtype=ssm_dtype)
               for _ in range(cfg.n_layer)]
        return ModelState(conv, ssm)

    def forward(self, input_ids: Tensor, state: ModelState | None = None, return_state: bool = False,
                num_last_tokens: int = 0) -> Tensor | tuple[Tensor, ModelState]:
        """input_ids ``[B, L]`` -> logits ``[B, L, V]`` (the last ``num_last_tokens`` positions only if
        > 0), plus the new state if ``return_state``. ``state`` (not modified) continues a sequence;
        None starts one. L == 1 with a state takes the single-token update path."""
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [B, L] with L >= 1, got {tuple(input_ids.shape)}")
        if state is not None and state.num_layers != len(self.layers):
            raise ValueError(f"state has {state.num_layers} layers, model has {len(self.layers)}")
        hidden = self.embedding(input_ids)
        residual: Tensor | None = None
        convs, ssms = [], []
        for i, layer in enumerate(self.layers):
            hidden, residual, conv, ssm = layer(
                hidden, residual,
                None if state is None else state.conv[i],
                None if state is None else state.ssm[i])
            convs.append(conv)
            ssms.append(ssm)
        if _fused_norm(self.norm_f):  # the last add fused with norm_f (the slice taken first: elementwise)
            from ..ops import kernel_dispatch

            if num_last_tokens > 0:
                hidden = hidden[:, -num_last_tokens:]
                residual = None if residual is None else residual[:, -num_last_tokens:]
            normed = kernel_dispatch.add_rms_norm(hidden, residual, self.norm_f.weight, self.norm_f.eps,
                                                  residual_in_fp32=False, prenorm=False)
        else:
            residual = hidden if residual is None else residual + hidden
            if num_last_tokens > 0:
                residual = residual[:, -num_last_tokens:]
            normed = self.norm_f(residual)
        logits = self.lm_head(normed)
        if return_state:
            return logits, ModelState(convs, ssms)
        return logits

    @torch.no_grad()
    def step(self, input_ids: Tensor, state: ModelState) -> tuple[Tensor, ModelState]:
        """One decode step: input_ids ``[B]`` -> (logits ``[B, V]``, new state)."""
        logits, state = self.forward(input_ids.reshape(-1, 1), state, return_state=True)
        return logits[:, 0], state
