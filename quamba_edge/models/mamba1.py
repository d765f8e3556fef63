"""Mamba1 mixer (FP reference), parameter names as in the checkpoints (shared/spec/quamba.md A.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._tracing import exporting

from .config import MambaConfig


class Mamba1Mixer(nn.Module):
    """``[x|z] = in_proj(h)``; ``x = silu(conv(x))``; ``[d|B|C] = x_proj(x)``; selective scan;
    ``y * silu(z)``; ``out_proj``.

    Tap points (``nn.Identity``, for calibration hooks): ``x_conv_out`` (SSM input u after conv+SiLU),
    ``ssm_out`` (y after the z gate = out_proj input), ``ssm_state_act`` (the SSM state handed back:
    the final state of a prefill, or the new state of a decode step).

    A quantized subclass overrides :meth:`_conv`, :meth:`_ssm` and/or :meth:`_ssm_step`.
    """

    def __init__(self, config: MambaConfig, layer_idx: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if config.arch != "mamba1":
            raise ValueError(f"Mamba1Mixer needs arch='mamba1', got {config.arch!r}")
        fk = {"device": device, "dtype": dtype}
        self.config = config
        self.layer_idx = layer_idx
        d, e, n, r, k = config.d_model, config.d_inner, config.d_state, config.dt_rank, config.d_conv
        self.d_inner, self.d_state, self.dt_rank, self.d_conv = e, n, r, k
        self.in_proj = nn.Linear(d, 2 * e, bias=config.bias, **fk)
        self.conv1d = nn.Conv1d(e, e, kernel_size=k, groups=e, padding=k - 1, bias=config.conv_bias, **fk)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False, **fk)
        self.dt_proj = nn.Linear(r, e, bias=True, **fk)
        self.A_log = nn.Parameter(torch.empty(e, n, device=device, dtype=torch.float32))
        self.D = nn.Parameter(torch.empty(e, device=device, dtype=torch.float32))
        self.out_proj = nn.Linear(e, d, bias=config.bias, **fk)
        self.x_conv_out = nn.Identity()
        self.ssm_out = nn.Identity()
        self.ssm_state_act = nn.Identity()
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """The usual S4D-real init: A = -[1..N], D = 1, softplus(dt_bias) log-uniform in [dt_min, dt_max]."""
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_log.device)
        self.A_log.copy_(torch.log(a).expand(self.d_inner, -1))
        self.D.fill_(1.0)
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner, device=self.A_log.device)
                       * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    # ---- pieces a quantized subclass may replace ------------------------------------------------

    def _conv(self, x: Tensor, conv_state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Causal depthwise conv + SiLU. x ``[B, L, E]``; state ``[B, E, K-1]``."""
        from ..ops import kernel_dispatch

        # ssm.causal_conv1d, or the float conv kernel (torch-cuda)
        return kernel_dispatch.causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, conv_state, "silu")

    def _ssm(self, x: Tensor, dt: Tensor, B: Tensor, C: Tensor, z: Tensor,
             ssm_state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Selective scan over a sequence; returns (y gated by z ``[B, L, E]``, final state)."""
        A = -torch.exp(self.A_log.float())
        from ..ops import kernel_dispatch  # here, not at the top: quamba_edge.ops imports this package

        # ssm.selective_scan, or the CUDA kernel inside kernel_dispatch.use_kernels (the torch-cuda backend)
        return kernel_dispatch.selective_scan(x, dt, A, B, C, self.D, z, delta_bias=self.dt_proj.bias,
                                              delta_softplus=True, initial_state=ssm_state)

    def _ssm_step(self, x: Tensor, dt: Tensor, B: Tensor, C: Tensor, z: Tensor,
                  ssm_state: Tensor) -> tuple[Tensor, Tensor]:
        """One token (x, dt, z ``[B, E]``; B, C ``[B, N]``); returns (y ``[B, E]``, new state)."""
        A = -torch.exp(self.A_log.float())
        from ..ops import kernel_dispatch

        return kernel_dispatch.selective_state_update(ssm_state, x, dt, A, B, C, self.D, z, self.dt_proj.bias,
                                                      True)  # ssm.selective_state_update / kernel

    # ---- forward ---------------------------------------------------------------------------------

    def forward(self, hidden: Tensor, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """hidden ``[B, L, d]`` -> (out ``[B, L, d]``, conv state ``[B, E, K-1]``, ssm state ``[B, E, N]``).

        States are not modified in place; the returned states have the dtype of the ones passed in
        (fp32 for the SSM state and the activation dtype for the conv state when none were passed).
        """
        bsz, seqlen, _ = hidden.shape
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        # export: one graph for every L (the custom node handles L = 1), so no branch on the length
        decode = (not exporting() and seqlen == 1 and conv_state is not None
                  and ssm_state is not None)
        x, new_conv = self._conv(x, conv_state)
        x = self.x_conv_out(x)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # bias is added inside the scan, before softplus
        if decode:
            y, new_ssm = self._ssm_step(x[:, 0], dt[:, 0], B[:, 0], C[:, 0], z[:, 0], ssm_state)
            y = y.unsqueeze(1)
        else:
            y, new_ssm = self._ssm(x, dt, B, C, z, ssm_state)
        y = self.ssm_out(y)
        new_ssm = self.ssm_state_act(new_ssm)
        if ssm_state is not None:
            new_ssm = new_ssm.to(ssm_state.dtype)
        if conv_state is not None:
            new_conv = new_conv.to(conv_state.dtype)
        return self.out_proj(y), new_conv, new_ssm
