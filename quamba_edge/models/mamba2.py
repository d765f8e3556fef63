"""Mamba2 mixer (FP reference), parameter names as in the checkpoints (shared/spec/quamba.md A.3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._tracing import exporting

from .config import MambaConfig
from .ssm import mamba2_dt


class GatedRMSNorm(nn.Module):
    """mamba_ssm ``RMSNormGated``: groupwise RMSNorm of ``y * silu(z)`` (``norm_before_gate=False``)."""

    def __init__(self, d: int, group_size: int, eps: float = 1e-5, norm_before_gate: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))
        self.group_size = group_size
        self.eps = eps
        self.norm_before_gate = norm_before_gate

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        from ..ops import kernel_dispatch  # here, not at the top: quamba_edge.ops imports this package

        # ssm.gated_rms_norm, or the CUDA kernel inside kernel_dispatch.use_kernels (the torch-cuda backend)
        return kernel_dispatch.gated_rms_norm(x, z, self.weight, self.eps, self.group_size, self.norm_before_gate)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, group_size={self.group_size}, eps={self.eps}"


class Mamba2Mixer(nn.Module):
    """``[z|x|B|C|dt] = in_proj(h)``; ``xBC = silu(conv(xBC))``; SSD with ``dt = softplus(dt + dt_bias)``
    (clamped to ``dt_limit``); ``y = norm(y, z)`` (gated RMSNorm); ``out_proj``.

    Tap points (``nn.Identity``): ``z_act``, ``x_conv_in``, ``B_conv_in``, ``C_conv_in``, ``dt_act`` (raw
    dt, before bias and softplus), ``x_conv_out``, ``B_conv_out``, ``C_conv_out``, ``ssd_out`` (y before
    the gated norm), ``ssm_state_act`` (the SSM state handed back).

    A quantized subclass overrides :meth:`_conv`, :meth:`_ssm`, :meth:`_ssm_step` and/or :meth:`_norm`.
    """

    def __init__(self, config: MambaConfig, layer_idx: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if config.arch != "mamba2":
            raise ValueError(f"Mamba2Mixer needs arch='mamba2', got {config.arch!r}")
        fk = {"device": device, "dtype": dtype}
        self.config = config
        self.layer_idx = layer_idx
        d, e, n, k = config.d_model, config.d_inner, config.d_state, config.d_conv
        self.d_inner, self.d_state, self.d_conv = e, n, k
        self.nheads, self.headdim, self.ngroups = config.nheads, config.headdim, config.ngroups
        self.chunk_size = config.chunk_size
        self.dt_limit = config.dt_limit
        self.conv_dim = config.conv_dim
        self.in_proj = nn.Linear(d, config.in_proj_dim, bias=config.bias, **fk)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=k, groups=self.conv_dim,
                                padding=k - 1, bias=config.conv_bias, **fk)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads, device=device, dtype=torch.float32))
        self.A_log = nn.Parameter(torch.empty(self.nheads, device=device, dtype=torch.float32))
        self.D = nn.Parameter(torch.empty(self.nheads, device=device, dtype=torch.float32))
        self.norm = GatedRMSNorm(e, config.group_size, config.rms_norm_eps, config.norm_before_gate, **fk)
        self.out_proj = nn.Linear(e, d, bias=config.bias, **fk)
        for name in ("z_act", "x_conv_in", "B_conv_in", "C_conv_in", "dt_act", "x_conv_out",
                     "B_conv_out", "C_conv_out", "ssd_out", "ssm_state_act"):
            self.add_module(name, nn.Identity())
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4,
                             A_init_range: tuple[float, float] = (1.0, 16.0)) -> None:
        """Usual Mamba2 init: A uniform in A_init_range, D = 1, softplus(dt_bias) log-uniform."""
        dev = self.A_log.device
        self.A_log.copy_(torch.log(torch.empty(self.nheads, device=dev).uniform_(*A_init_range)))
        self.D.fill_(1.0)
        dt = torch.exp(torch.rand(self.nheads, device=dev) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    # ---- pieces a quantized subclass may replace ------------------------------------------------

    def _conv(self, xBC: Tensor, conv_state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Causal depthwise conv + SiLU over ``[x|B|C]``: ``[B, L, E+2GN]``, state ``[B, E+2GN, K-1]``."""
        from ..ops import kernel_dispatch

        # ssm.causal_conv1d, or the float conv kernel (torch-cuda)
        return kernel_dispatch.causal_conv1d(xBC, self.conv1d.weight.squeeze(1), self.conv1d.bias, conv_state, "silu")

    def _ssm(self, x: Tensor, dt_raw: Tensor, B: Tensor, C: Tensor,
             ssm_state: Tensor | None) -> tuple[Tensor, Tensor]:
        """SSD over a sequence: x ``[B, L, H, P]``, dt_raw ``[B, L, H]``, B/C ``[B, L, G, N]``."""
        A = -torch.exp(self.A_log.float())
        dt = mamba2_dt(dt_raw, self.dt_bias, self.dt_limit)
        from ..ops import kernel_dispatch  # here, not at the top: quamba_edge.ops imports this package

        # ssm.ssd_chunked, or the CUDA kernel inside kernel_dispatch.use_kernels (the torch-cuda backend)
        return kernel_dispatch.ssd(x, dt, A, B, C, self.chunk_size, self.D, ssm_state)

    def _ssm_step(self, x: Tensor, dt_raw: Tensor, B: Tensor, C: Tensor,
                  ssm_state: Tensor) -> tuple[Tensor, Tensor]:
        """One token: x ``[B, H, P]``, dt_raw ``[B, H]``, B/C ``[B, G, N]``."""
        A = -torch.exp(self.A_log.float())
        dt = mamba2_dt(dt_raw, self.dt_bias, self.dt_limit)
        from ..ops import kernel_dispatch

        return kernel_dispatch.ssd_state_update(ssm_state, x, dt, A, B, C, self.D)  # ssm.ssd_state_update / kernel

    def _norm(self, y: Tensor, z: Tensor) -> Tensor:
        return self.norm(y, z)

    # ---- forward ---------------------------------------------------------------------------------

    def forward(self, hidden: Tensor, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """hidden ``[B, L, d]`` -> (out ``[B, L, d]``, conv state ``[B, E+2GN, K-1]``,
        ssm state ``[B, H, P, N]``). States are not modified in place (see Mamba1Mixer.forward)."""
        bsz, seqlen, _ = hidden.shape
        e, gn, h, p = self.d_inner, self.ngroups * self.d_state, self.nheads, self.headdim
        z, x, B, C, dt = self.in_proj(hidden).split([e, e, gn, gn, h], dim=-1)
        z = self.z_act(z)
        x, B, C = self.x_conv_in(x), self.B_conv_in(B), self.C_conv_in(C)
        dt = self.dt_act(dt)
        xBC, new_conv = self._conv(torch.cat([x, B, C], dim=-1), conv_state)
        x, B, C = xBC.split([e, gn, gn], dim=-1)
        x, B, C = self.x_conv_out(x), self.B_conv_out(B), self.C_conv_out(C)
        g, n = self.ngroups, self.d_state
        # export: one graph for every L (the custom node handles L = 1), so no branch on the length
        decode = (not exporting() and seqlen == 1 and conv_state is not None
                  and ssm_state is not None)
        if decode:
            y, new_ssm = self._ssm_step(x.reshape(bsz, h, p), dt[:, 0], B.reshape(bsz, g, n),
                                        C.reshape(bsz, g, n), ssm_state)
        else:
            y, new_ssm = self._ssm(x.reshape(bsz, seqlen, h, p), dt, B.reshape(bsz, seqlen, g, n),
                                   C.reshape(bsz, seqlen, g, n), ssm_state)
        y = self.ssd_out(y.reshape(bsz, seqlen, e))
        new_ssm = self.ssm_state_act(new_ssm)
        if ssm_state is not None:
            new_ssm = new_ssm.to(ssm_state.dtype)
        if conv_state is not None:
            new_conv = new_conv.to(conv_state.dtype)
        return self.out_proj(self._norm(y, z)), new_conv, new_ssm
