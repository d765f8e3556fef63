"""Reference SSM math for Mamba1 and Mamba2 (pure functions, PyTorch).

These functions are the oracles that the quantized modules, the ONNX reference ops and the CUDA kernels
are checked against, and they are also what the FP models run. Conventions (docs/CONTRACTS.md):
activations are ``[B, L, C]``; the conv state holds the last K-1 conv *inputs* ``[B, C, K-1]``; the
Mamba1 SSM state is ``[B, E, N]`` and the Mamba2 one ``[B, H, P, N]``.

Numerics: every recurrence runs in fp32 with autocast disabled (so bf16/fp16 autocast training is
safe); outputs come back in the dtype of the main input and final states in fp32. No function ever
evaluates ``exp`` of a positive cumulative sum: decays are products of factors in (0, 1] or ``exp`` of
non-positive segment sums, so nothing overflows however long the sequence or large ``dt * |A|``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor

from .._tracing import exporting

__all__ = [
    "causal_conv1d",
    "gated_rms_norm",
    "mamba2_dt",
    "rms_norm",
    "selective_scan",
    "selective_state_update",
    "ssd_chunked",
    "ssd_state_update",
]


@contextlib.contextmanager
def _fp32_region(t: Tensor) -> Iterator[None]:
    """Disable autocast so einsum/matmul inside a recurrence are not silently run in bf16/fp16."""
    dev = t.device.type
    if dev in ("cpu", "cuda", "xpu", "mps") and torch.amp.is_autocast_available(dev):
        with torch.autocast(device_type=dev, enabled=False):
            yield
    else:
        yield


def _acc_dtype(t: Tensor) -> torch.dtype:
    """Accumulation dtype: fp32, or fp64 when the caller works in fp64 (tight oracle tests)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------------------------
# causal depthwise conv1d
# ------------------------------------------------------------------------------------------------


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    conv_state: Tensor | None = None,
    activation: str | None = "silu",
) -> tuple[Tensor, Tensor]:
    """Depthwise causal conv over time, continuing from ``conv_state``.

    Args:
        x: ``[B, L, C]`` conv inputs (L >= 1).
        weight: ``[C, K]`` (``nn.Conv1d`` depthwise weight ``[C, 1, K]`` squeezed); ``weight[:, K-1]``
            multiplies the current token.
        bias: ``[C]`` or None.
        conv_state: ``[B, C, K-1]``, the previous K-1 inputs, oldest first; None means zeros (start of
            a sequence).
        activation: "silu" or None.

    Returns:
        ``y [B, L, C]`` and ``new_conv_state [B, C, K-1]`` = the last K-1 columns of
        ``concat(conv_state, x^T)`` (so prefill-with-state and decode are one formula).
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"unsupported activation {activation!r}; use 'silu' or None")
    bsz, seqlen, channels = x.shape
    k = weight.shape[-1]
    weight = weight.reshape(channels, k)
    xt = x.transpose(1, 2)  # [B, C, L]
    if conv_state is None:
        conv_state = xt.new_zeros(bsz, channels, k - 1)
    full = torch.cat([conv_state.to(xt.dtype), xt], dim=-1)  # [B, C, K-1+L]
    y = F.conv1d(full, weight.to(xt.dtype).unsqueeze(1), None if bias is None else bias.to(xt.dtype),
                 groups=channels)  # valid conv: exactly L outputs
    if activation is not None:
        y = F.silu(y)
    new_state = full[:, :, full.shape[-1] - (k - 1):]
    # [B, L, C] contiguous: strided activations make every later elementwise op several times slower
    return y.transpose(1, 2).contiguous(), new_state.contiguous()


# ------------------------------------------------------------------------------------------------
# Mamba1 selective scan
# ------------------------------------------------------------------------------------------------


def _scan_in_chunk(dt: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """All states of one chunk: ``h_t = exp(dt_t A) h_{t-1} + b_t`` with ``h_{-1} = 0``.

    Hillis-Steele (log-depth) scan over dim 1. After k steps, position t holds the composition of the
    maps over the window ``(t - 2^k, t]``, whose decay is ``exp(A * sum(dt over the window))``: the
    window sums are kept on ``[B, T, E]`` (N times smaller than the states), and since dt >= 0 and A < 0
    every exponent is <= 0, so nothing can overflow. Out of place, so autograd works.

    dt: ``[B, T, E]``; A: ``[E, N]``; b: ``[B, T, E, N]``. Returns ``[B, T, E, N]``.
    """
    n = b.shape[1]
    w = dt  # window sums of dt
    step = 1
    while step < n:
        keep = n - step
        decay = torch.exp(w.narrow(1, step, keep).unsqueeze(-1) * A)  # decay over position t's window
        # compose "window ending at t-step" then "window ending at t"
        b = torch.cat([b.narrow(1, 0, step),
                       torch.addcmul(b.narrow(1, step, keep), decay, b.narrow(1, 0, keep))], dim=1)
        w = torch.cat([w.narrow(1, 0, step), w.narrow(1, step, keep) + w.narrow(1, 0, keep)], dim=1)
        step *= 2
    return b


def _selective_scan_chunk(dt: Tensor, du: Tensor, B: Tensor, C: Tensor, A: Tensor,
                          h: Tensor) -> tuple[Tensor, Tensor]:
    """One chunk of :func:`selective_scan`: dt, du = dt*u ``[B, T, E]``; B, C ``[B, T, N]``; carried state
    h ``[B, E, N]``. Returns (``y [B, T, E]`` without D and gate, state after the chunk)."""
    b = du.unsqueeze(-1) * B.unsqueeze(-2)  # dt * u * B   [B, T, E, N]
    # h_0 = exp(dt_0 A) h_carry + b_0, so the in-chunk scan can start from zero
    b0 = torch.addcmul(b[:, :1], torch.exp(dt[:, :1, :, None] * A), h.unsqueeze(1))
    states = _scan_in_chunk(dt, A, torch.cat([b0, b[:, 1:]], dim=1))
    y = torch.matmul(states, C.unsqueeze(-1)).squeeze(-1)  # sum_n h[e, n] C[n]
    return y, states[:, -1]


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
    initial_state: Tensor | None = None,
    chunk_size: int | None = None,
    checkpoint_chunks: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba1 selective scan (chunked parallel scan, no loop over tokens).

    ``dt = softplus(delta + delta_bias)``; per channel e and state n:
    ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``; ``y_t = C_t . h_t + D u_t``; ``y *= silu(z)``.

    Args:
        u: ``[B, L, E]`` SSM input (after conv + SiLU).
        delta: ``[B, L, E]`` raw time step (``dt_proj`` output without its bias).
        A: ``[E, N]`` (negative; ``-exp(A_log)``).
        B, C: ``[B, L, N]`` input-dependent.
        D: ``[E]`` skip, or None.
        z: ``[B, L, E]`` gate, or None.
        delta_bias: ``[E]`` or None.
        delta_softplus: apply softplus to ``delta + delta_bias`` (without it the caller must pass
            ``dt >= 0``, as the stability argument of the scan needs it).
        initial_state: ``[B, E, N]`` or None (zeros).
        chunk_size: tokens per chunk; a speed knob only (results agree to rounding). None picks 16 on
            CPU (chunk states stay in cache) and 128 elsewhere (fewer kernel launches).
        checkpoint_chunks: recompute each chunk's ``[B, T, E, N]`` states in the backward pass instead
            of keeping them (activation checkpointing; only the carried ``[B, E, N]`` states are kept).
            None = on whenever gradients are being recorded.

    Returns:
        ``y [B, L, E]`` in ``u.dtype`` and ``final_state [B, E, N]`` in fp32 (fp64 for fp64 inputs).

    Algorithm: a loop over chunks carries the state; inside a chunk the carried state is folded into
    the first token's input and a log-depth scan (:func:`_scan_in_chunk`) gives all the chunk's states.
    """
    if exporting():  # one custom node (quamba_edge.ops.selective_scan)
        from ..ops.selective_scan import emit_selective_scan

        return emit_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    out_dtype = u.dtype
    with _fp32_region(u):
        cdt = _acc_dtype(u)
        bsz, seqlen, d_inner = u.shape
        n_state = A.shape[-1]
        if chunk_size is None:
            chunk_size = 16 if u.device.type == "cpu" else 128
        # contiguous [B, L, ...] inputs: the chunk slices below are then dense blocks (much faster)
        u32 = u.to(cdt).contiguous()
        dt = delta.to(cdt).contiguous()
        if delta_bias is not None:
            dt = dt + delta_bias.to(cdt)
        if delta_softplus:
            dt = F.softplus(dt)
        A32, B32, C32 = A.to(cdt), B.to(cdt).contiguous(), C.to(cdt).contiguous()
        du = dt * u32
        h = (initial_state.to(cdt) if initial_state is not None
             else u32.new_zeros(bsz, d_inner, n_state))

        if checkpoint_chunks is None:
            checkpoint_chunks = torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (u, delta, A, B, C, delta_bias, initial_state))
        ys = []
        for s in range(0, seqlen, int(chunk_size)):
            e = min(s + int(chunk_size), seqlen)
            args = (dt[:, s:e], du[:, s:e], B32[:, s:e], C32[:, s:e], A32, h)
            if checkpoint_chunks:
                y_c, h = torch.utils.checkpoint.checkpoint(_selective_scan_chunk, *args, use_reentrant=False)
            else:
                y_c, h = _selective_scan_chunk(*args)
            ys.append(y_c)
        y = torch.cat(ys, dim=1)
        if D is not None:
            y = y + u32 * D.to(cdt)
        if z is not None:
            y = y * F.silu(z.to(cdt))
    return y.to(out_dtype), h


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = True,
) -> tuple[Tensor, Tensor]:
    """One token of the Mamba1 scan.

    Args:
        state: ``[B, E, N]``; x, dt, z: ``[B, E]``; A: ``[E, N]``; B, C: ``[B, N]``; D, dt_bias: ``[E]``.

    Returns:
        ``y [B, E]`` in ``x.dtype`` and ``new_state [B, E, N]`` in fp32.
    """
    with _fp32_region(x):
        cdt = _acc_dtype(x)
        x32 = x.to(cdt)
        dt = dt.to(cdt)
        if dt_bias is not None:
            dt = dt + dt_bias.to(cdt)
        if dt_softplus:
            dt = F.softplus(dt)
        da = torch.exp(dt.unsqueeze(-1) * A.to(cdt))
        new_state = state.to(cdt) * da + (dt * x32).unsqueeze(-1) * B.to(cdt).unsqueeze(1)
        y = torch.matmul(new_state, C.to(cdt).unsqueeze(-1)).squeeze(-1)
        if D is not None:
            y = y + x32 * D.to(cdt)
        if z is not None:
            y = y * F.silu(z.to(cdt))
    return y.to(x.dtype), new_state


# ------------------------------------------------------------------------------------------------
# Mamba2 SSD
# ------------------------------------------------------------------------------------------------


def mamba2_dt(dt_raw: Tensor, dt_bias: Tensor, dt_limit: tuple[float, float] = (0.0, float("inf"))) -> Tensor:
    """Mamba2 time step: ``clamp(softplus(dt_raw + dt_bias), *dt_limit)`` in fp32. ``[.., H]``."""
    cdt = _acc_dtype(dt_raw)
    dt = F.softplus(dt_raw.to(cdt) + dt_bias.to(cdt))
    lo, hi = dt_limit
    if lo > 0.0 or hi != float("inf"):
        dt = dt.clamp(min=lo, max=hi)
    return dt


def _segsum(a: Tensor) -> Tensor:
    """``out[..., i, j] = sum_{k=j+1..i} a[..., k]`` for ``j <= i`` and ``-inf`` above the diagonal.

    Computed as a masked cumulative sum (not as ``cumsum_i - cumsum_j``), so there is no cancellation
    and ``exp(out)`` is a product of decays in (0, 1].
    """
    t = a.shape[-1]
    x = a.unsqueeze(-1).expand(*a.shape, t)  # x[..., k, j] = a_k
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=-1)
    x = x.masked_fill(~strict, 0.0)  # keep k > j
    out = torch.cumsum(x, dim=-2)  # out[i, j] = sum_{j < k <= i} a_k
    incl = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~incl, float("-inf"))


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba2 chunked SSD (state space duality).

    Per head h (state group ``g = h // (H/G)``): ``S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t (x) B_t[g]``
    (``P x N``), ``y_t = S_t C_t[g] + D_h x_t``.

    Args:
        x: ``[B, L, H, P]``.
        dt: ``[B, L, H]``, already ``softplus(dt + dt_bias)`` and clamped (see :func:`mamba2_dt`).
        A: ``[H]`` (negative).
        B, C: ``[B, L, G, N]``.
        chunk_size: SSD chunk length T. Sequences are padded to a multiple of T with dt = 0 (the
            identity map, so the state is unchanged); a sequence shorter than T is one chunk of its own
            length (identical maths, less work).
        D: ``[H]`` or None.
        initial_state: ``[B, H, P, N]`` or None (zeros).

    Returns:
        ``y [B, L, H, P]`` in ``x.dtype`` and ``final_state [B, H, P, N]`` in fp32.

    Per chunk: (1) the intra-chunk output is a masked quadratic form ``(C B^T * decay) (dt x)`` with
    the decay matrix ``exp(segsum(dt A))``; (2) every chunk's own end state; (3) a recurrence over chunks
    passes the states along; (4) the chunk's start state contributes ``exp(cumsum) * C S``.
    """
    if exporting():  # one custom node (quamba_edge.ops.ssd)
        from ..ops.ssd import emit_ssd

        return emit_ssd(x, dt, A, B, C, chunk_size, D, initial_state)
    out_dtype = x.dtype
    with _fp32_region(x):
        cdt = _acc_dtype(x)
        bsz, seqlen, nheads, headdim = x.shape
        ngroups, n_state = B.shape[-2], B.shape[-1]
        if nheads % ngroups != 0:
            raise ValueError(f"nheads ({nheads}) must be a multiple of ngroups ({ngroups})")
        hpg = nheads // ngroups  # heads per group
        t = max(1, min(int(chunk_size), seqlen))
        nchunks = -(-seqlen // t)
        pad = nchunks * t - seqlen

        x32, dt32, B32, C32 = x.to(cdt), dt.to(cdt), B.to(cdt), C.to(cdt)
        if pad:
            x32 = F.pad(x32, (0, 0, 0, 0, 0, pad))
            dt32 = F.pad(dt32, (0, 0, 0, pad))  # dt = 0 -> decay 1, input 0
            B32 = F.pad(B32, (0, 0, 0, 0, 0, pad))
            C32 = F.pad(C32, (0, 0, 0, 0, 0, pad))

        # heads are split as (group g, head-in-group r) so B/C are shared without copying
        xc = x32.view(bsz, nchunks, t, ngroups, hpg, headdim)  # b c l g r p
        dtc = dt32.view(bsz, nchunks, t, ngroups, hpg)  # b c l g r
        Bc = B32.view(bsz, nchunks, t, ngroups, n_state)  # b c l g n
        Cc = C32.view(bsz, nchunks, t, ngroups, n_state)
        dA = (dtc * A.to(cdt).view(ngroups, hpg)).permute(0, 1, 3, 4, 2)  # b c g r l (<= 0)
        dA_cum = torch.cumsum(dA, dim=-1)  # b c g r l
        xdt = xc * dtc.unsqueeze(-1)  # dt-weighted input  b c l g r p

        # (1) intra-chunk: y_l = sum_{s<=l} (C_l . B_s) exp(sum_{s<k<=l} dA_k) dt_s x_s
        decay = torch.exp(_segsum(dA))  # b c g r l s
        scores = torch.einsum("bclgn,bcsgn->bcgls", Cc, Bc)  # b c g l s
        y_diag = torch.einsum("bcgls,bcgrls,bcsgrp->bclgrp", scores, decay, xdt)

        # (2) each chunk's end state from its own inputs (start state 0)
        decay_to_end = torch.exp(dA_cum[..., -1:] - dA_cum)  # b c g r l, exponent <= 0
        chunk_states = torch.einsum("bclgn,bcgrl,bclgrp->bcgrpn", Bc, decay_to_end, xdt)

        # (3) pass states across chunks (a short loop over chunks, not tokens)
        chunk_decay = torch.exp(dA_cum[..., -1])  # b c g r
        if initial_state is not None:
            s = initial_state.to(cdt).reshape(bsz, ngroups, hpg, headdim, n_state)
        else:
            s = x32.new_zeros(bsz, ngroups, hpg, headdim, n_state)
        starts = []
        for c in range(nchunks):
            starts.append(s)
            s = chunk_decay[:, c, :, :, None, None] * s + chunk_states[:, c]
        start_states = torch.stack(starts, dim=1)  # b c g r p n
        final_state = s.reshape(bsz, nheads, headdim, n_state)

        # (4) contribution of the chunk's start state: exp(dA_cum_l) * C_l . S_start
        y_off = torch.einsum("bclgn,bcgrpn,bcgrl->bclgrp", Cc, start_states, torch.exp(dA_cum))

        y = (y_diag + y_off).reshape(bsz, nchunks * t, nheads, headdim)[:, :seqlen]
        if D is not None:
            y = y + x.to(cdt) * D.to(cdt).view(nheads, 1)
    return y.to(out_dtype), final_state


def ssd_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token of the Mamba2 recurrence.

    Args:
        state: ``[B, H, P, N]``; x: ``[B, H, P]``; dt: ``[B, H]`` (already softplus'ed and clamped);
        A: ``[H]``; B, C: ``[B, G, N]``; D: ``[H]`` or None.

    Returns:
        ``y [B, H, P]`` in ``x.dtype`` and ``new_state [B, H, P, N]`` in fp32.
    """
    with _fp32_region(x):
        cdt = _acc_dtype(x)
        bsz, nheads, headdim = x.shape
        ngroups = B.shape[1]
        hpg = nheads // ngroups
        x32, dt32 = x.to(cdt), dt.to(cdt)
        Bh = B.to(cdt).repeat_interleave(hpg, dim=1)  # [B, H, N]: head h uses group h // hpg
        Ch = C.to(cdt).repeat_interleave(hpg, dim=1)
        da = torch.exp(dt32 * A.to(cdt))  # [B, H]
        new_state = (state.to(cdt) * da[:, :, None, None]
                     + (dt32.unsqueeze(-1) * x32).unsqueeze(-1) * Bh.unsqueeze(2))
        y = torch.matmul(new_state, Ch.unsqueeze(-1)).squeeze(-1)  # [B, H, P]
        if D is not None:
            y = y + x32 * D.to(cdt).view(nheads, 1)
    return y.to(x.dtype), new_state


# ------------------------------------------------------------------------------------------------
# norms
# ------------------------------------------------------------------------------------------------


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dim, computed in fp32, returned in x.dtype."""
    with _fp32_region(x):
        cdt = _acc_dtype(x)
        x32 = x.to(cdt)
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.to(cdt)
    return y.to(x.dtype)


def gated_rms_norm(
    x: Tensor,
    z: Tensor | None,
    weight: Tensor,
    eps: float,
    group_size: int | None = None,
    norm_before_gate: bool = False,
) -> Tensor:
    """Mamba2's gated RMSNorm (mamba_ssm ``RMSNormGated``), groupwise over ``group_size`` channels.

    ``norm_before_gate=False`` (Mamba2 default): ``RMSNorm_g(x * silu(z)) * weight``;
    ``True``: ``RMSNorm_g(x) * weight * silu(z)``. The RMS is taken separately over each consecutive
    block of ``group_size`` channels (E / ngroups); None means the whole last dim.
    x, z: ``[..., E]``; weight: ``[E]``. Computed in fp32, returned in x.dtype.
    """
    with _fp32_region(x):
        cdt = _acc_dtype(x)
        e = x.shape[-1]
        gs = e if group_size is None else int(group_size)
        if e % gs != 0:
            raise ValueError(f"channels ({e}) must be a multiple of group_size ({gs})")
        h = x.to(cdt)
        if z is not None and not norm_before_gate:
            h = h * F.silu(z.to(cdt))
        hg = h.reshape(*h.shape[:-1], e // gs, gs)
        hg = hg * torch.rsqrt(hg.pow(2).mean(-1, keepdim=True) + eps)
        y = hg.reshape(h.shape) * weight.to(cdt)
        if z is not None and norm_before_gate:
            y = y * F.silu(z.to(cdt))
    return y.to(x.dtype)
