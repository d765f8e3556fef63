"""Quantized linear layers, embedding and add+RMSNorm (spec shared/spec/quamba.md C.8, C.9, B.1).

Every module stores integer codes and fp32 scales as buffers (int4 codes PACKED with
``quant.packing.pack_int4`` in the state_dict) and computes through the reference ops in
``quamba_edge.ops`` so the ops stay the single numeric oracle for kernels.

Buffer layouts (the artifact's tensor set):

* :class:`W8A8Linear`: ``weight`` int8 ``[N, K]``; ``weight_scale`` fp32 ``[S]`` (S = 1 per-tensor, or one
  per output segment, e.g. Mamba2 in_proj z|x|B|C|dt); ``input_scale`` fp32 ``[]``; ``output_scale`` fp32
  ``[S]`` when the output is int8; ``bias`` fp32 ``[N]`` if any.
* :class:`W4A8Linear`: ``qweight`` uint8 ``[N, ceil(K/2)]`` (offset-binary nibbles, low first);
  ``s_group`` fp16 ``[N, n_groups]``; ``s_channel`` fp32 ``[N]`` (Marlin-QQQ two-level scales, spec C.8);
  ``input_scale`` ``[]``; ``output_scale`` ``[S]`` when int8 out; ``bias``.
* :class:`W4A16Linear`: ``qweight`` as above; ``scale`` fp16 ``[N, n_groups]``; ``bias``.
* :class:`FPLinear`: ``weight`` in the fp storage dtype (kept-float layers: fp16 lm_head of the
  ``quamba`` recipe, Mamba1 dt_proj under W4A16).
* :class:`QuantEmbedding`: ``weight`` int8 ``[V, d]`` (W8), uint8 ``[V, ceil(d/2)]`` packed (W4) or float
  (16); ``row_scale`` fp16 ``[V]`` (W8/W4 only).
* :class:`QuantAddRMSNorm`: ``weight`` float ``[d]``; ``output_scale`` fp32 ``[]`` when it emits int8.

Effective W4 group size: ``quant.quantize.resolve_group_size(K, group_size)`` (K <= group_size means one
group per row, spec C.8); it is a function of the shapes and the QuantConfig, so a skeleton rebuilt from
the configs has the same buffer shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..ops import kernel_dispatch  # the kernel-backed ops: CUDA kernels when on
from ..ops import registry
from ..ops.quant_embedding import emit_quant_embedding
from ..ops.scales import expand_segment_scales
from ..ops.w4a8_linear import emit_w4a8_linear
from ..ops.w4a16_linear import emit_w4a16_linear
from .gptq import GPTQResult, rtn_quantize
from .hadamard import hadamard_matrix
from .packing import pack_int4, unpack_int4, w4a8_two_level_scales
from .quantize import (
    embedding_quantize_w4,
    embedding_quantize_w8,
    num_groups,
    quantize_per_segment,
    quantize_sym,
    resolve_group_size,
    segments_from_sizes,
    w4_quantize_with_scale,
)

__all__ = [
    "FPLinear",
    "QuantAddRMSNorm",
    "QuantEmbedding",
    "QuantRMSNorm",
    "W4A8Linear",
    "W4A16Linear",
    "W8A8Linear",
    "W8A8SegmentLinear",
    "as_scale",
    "online_hadamard_matrix",
]


def as_scale(s, shape: Sequence[int] = ()) -> Tensor:
    """A scale (python float, 0-d or n-d tensor) as a detached fp32 CPU tensor of ``shape`` (a scalar
    broadcasts; a tensor with the same number of elements is reshaped)."""
    t = torch.as_tensor(s).detach().to(torch.float32).cpu()
    shape = tuple(shape)
    if t.numel() == 1:
        return t.reshape(()).expand(shape).clone()
    if t.numel() != math.prod(shape):
        raise ValueError(f"scale of shape {tuple(t.shape)} does not fit {shape}")
    return t.reshape(shape).clone()


def memo(module: nn.Module, name: object, sources: Sequence[Tensor], fn) -> Tensor:
    """``fn()`` cached on ``module`` under ``name`` while every tensor of ``sources`` is unchanged (the same
    tensor, storage and version): constant per-channel tables (segment row scales, gathered group scales)
    would otherwise be rebuilt by a few small kernels on every decode step. Not cached while exporting
    (traced tensors) or for inference tensors (no version counter)."""
    if registry.exporting():
        return fn()
    try:
        key = tuple((t.data_ptr(), t._version, t.device) for t in sources)
    except RuntimeError:
        return fn()
    cache = module.__dict__.setdefault("_memo_cache", {})
    hit = cache.get(name)
    if hit is None or hit[1] != key or any(a is not b for a, b in zip(hit[0], sources)):
        hit = cache[name] = (tuple(sources), key, fn())
    return hit[2]


def _segment_rows(module: nn.Module, t: Tensor, segments: Sequence[int]) -> Tensor:
    """``expand_segment_scales(t, segments)`` on ``t``'s device, cached on the module (:func:`memo`)."""
    return memo(module, ("segment_rows", id(t)), (t,), lambda: expand_segment_scales(t, segments).to(t.device))


def _weight_of(linear_or_weight) -> tuple[Tensor, Tensor | None]:
    if isinstance(linear_or_weight, Tensor):
        return linear_or_weight.detach(), None
    w = linear_or_weight.weight.detach()
    b = getattr(linear_or_weight, "bias", None)
    return w, (None if b is None else b.detach())


def online_hadamard_matrix(n: int, device: torch.device | str | None = None) -> Tensor:
    """The fp32 orthonormal matrix of the online out_proj-input transform (the cached matrix of
    ``quant.hadamard.hadamard_matrix``, the one the rotation fuses into out_proj's weight)."""
    return hadamard_matrix(n, torch.float32, device=device)


class W8A8Linear(nn.Module):
    """int8 x int8 linear (spec C.8 W8): per-tensor weight scale, or one scale per output segment.

    ``forward(x_q int8 [..., K]) -> int8 [..., N]`` (``out_int8``) or fp32 ``[..., N]``.
    """

    def __init__(self, in_features: int, out_features: int, out_int8: bool = True,
                 segments: Sequence[int] | None = None, bias: bool = False,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.segments = tuple(int(s) for s in (segments or (out_features,)))
        if sum(self.segments) != self.out_features:
            raise ValueError(f"segments {self.segments} must sum to out_features={out_features}")
        self.out_int8 = bool(out_int8)
        s = len(self.segments)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(s, dtype=torch.float32, device=device))
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32, device=device))
        if self.out_int8:
            self.register_buffer("output_scale", torch.ones(s, dtype=torch.float32, device=device))
        else:
            self.output_scale = None
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None

    def row_scales(self, t: Tensor) -> Tensor:
        """Per-segment ``[S]`` -> per-row ``[N]`` (a scalar stays scalar for S = 1)."""
        if len(self.segments) == 1:
            return t.reshape(())
        return _segment_rows(self, t, self.segments)

    def forward(self, x_q: Tensor) -> Tensor:
        out_scale = None if self.output_scale is None else self.row_scales(self.output_scale)
        fn = ops.w8a8_linear if registry.exporting() else kernel_dispatch.w8a8_linear
        return fn(x_q, self.input_scale, self.weight, self.row_scales(self.weight_scale), self.bias, out_scale)

    def dequantized_weight(self) -> Tensor:
        """fp32 ``[N, K]`` = ``q * s_row`` (what the integer GEMM applies)."""
        s = self.row_scales(self.weight_scale)
        return self.weight.to(torch.float32) * (s[:, None] if s.dim() else s)

    @classmethod
    def from_float(cls, linear_or_weight, in_scale, out_scale=None, segments: Sequence[int] | None = None,
                   bias: Tensor | None = None) -> W8A8Linear:
        """Quantize the weight with absmax per tensor (or per output segment, spec C.8 / F.17).
        ``out_scale`` None -> fp32 output; else one scale (or one per segment) for the int8 output."""
        w, b = _weight_of(linear_or_weight)
        b = b if bias is None else bias
        n, k = w.shape
        segs = tuple(segments or (n,))
        q, s = quantize_per_segment(w.float(), segments_from_sizes(segs), 8)
        m = cls(k, n, out_int8=out_scale is not None, segments=segs, bias=b is not None, device=w.device)
        m.weight.copy_(q)
        m.weight_scale.copy_(s.reshape(-1))
        m.input_scale.copy_(as_scale(in_scale))
        if out_scale is not None:
            m.output_scale.copy_(as_scale(out_scale, (len(segs),)))
        if b is not None:
            m.bias.copy_(b.float())
        return m

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, out={'int8' if self.out_int8 else 'fp'}, "
                f"segments={self.segments if len(self.segments) > 1 else 'per-tensor'}")


class W8A8SegmentLinear(W8A8Linear):
    """:class:`W8A8Linear` with per-output-segment weight scales and int8 per-segment output scales
    (Mamba2 in_proj: segments z | x | B | C | dt, spec C.7 / C.8)."""

    def __init__(self, in_features: int, out_features: int, segments: Sequence[int], out_int8: bool = True,
                 bias: bool = False, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, out_int8=out_int8, segments=segments, bias=bias,
                         device=device)


def _w4_codes(w: Tensor, gptq_result: GPTQResult | None, group_size: int) -> tuple[Tensor, Tensor, int]:
    """(offset-binary codes uint8 [N, K], fp32 group scales [N, ng], effective group size)."""
    k = w.shape[1]
    gs = resolve_group_size(k, group_size)
    r = gptq_result if gptq_result is not None else rtn_quantize(w.float(), 4, group_size)
    if r.bits != 4:
        raise ValueError(f"expected a 4-bit GPTQ/RTN result, got {r.bits} bits")
    if r.group_size != gs or tuple(r.codes.shape) != tuple(w.shape):
        raise ValueError(f"GPTQ result (group {r.group_size}, codes {tuple(r.codes.shape)}) does not match "
                         f"the layer (group {gs}, weight {tuple(w.shape)})")
    return r.codes.to(torch.uint8), r.scales.to(torch.float32), gs


class W4A8Linear(nn.Module):
    """int4 weight (two-level Marlin-QQQ scales) x int8 activation (spec C.8, pitfall F.16)."""

    def __init__(self, in_features: int, out_features: int, group_size: int = 128, out_int8: bool = True,
                 segments: Sequence[int] | None = None, bias: bool = False,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.group_size = resolve_group_size(self.in_features, group_size)
        self.segments = tuple(int(s) for s in (segments or (out_features,)))
        if sum(self.segments) != self.out_features:
            raise ValueError(f"segments {self.segments} must sum to out_features={out_features}")
        self.out_int8 = bool(out_int8)
        ng = num_groups(self.in_features, self.group_size)
        self.register_buffer("qweight", torch.full((out_features, (in_features + 1) // 2), 0x88,
                                                   dtype=torch.uint8, device=device))
        self.register_buffer("s_group", torch.ones(out_features, ng, dtype=torch.float16, device=device))
        self.register_buffer("s_channel", torch.ones(out_features, dtype=torch.float32, device=device))
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32, device=device))
        if self.out_int8:
            self.register_buffer("output_scale", torch.ones(len(self.segments), dtype=torch.float32,
                                                            device=device))
        else:
            self.output_scale = None
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None

    def codes(self) -> Tensor:
        """Unpacked offset-binary codes uint8 ``[N, K]``."""
        return unpack_int4(self.qweight, self.in_features)

    def forward(self, x_q: Tensor) -> Tensor:
        out_scale = None
        if self.output_scale is not None:
            out_scale = (self.output_scale.reshape(()) if len(self.segments) == 1
                         else _segment_rows(self, self.output_scale, self.segments))
        if registry.exporting():  # the node takes the packed weight
            return emit_w4a8_linear(x_q, self.input_scale, self.qweight, self.s_group, self.s_channel,
                                    self.group_size, out_scale, self.bias, self.in_features)
        # the kernel reads the packed weight; the reference fallback unpacks it
        return kernel_dispatch.w4a8_linear(x_q, self.input_scale, self.qweight, self.s_group, self.s_channel,
                                           self.group_size, out_scale, self.bias, self.in_features)

    def dequantized_weight(self) -> Tensor:
        """fp32 ``[N, K]`` the kernel applies: ``w8 * s_channel`` (int4 -> fp16 -> int8 chain)."""
        w8 = ops.w4a8_int8_weight(self.codes(), self.s_group, self.group_size)
        return w8.to(torch.float32) * self.s_channel[:, None]

    @classmethod
    def from_float(cls, linear_or_weight, in_scale, out_scale=None, gptq_result: GPTQResult | None = None,
                   group_size: int = 128, segments: Sequence[int] | None = None,
                   bias: Tensor | None = None) -> W4A8Linear:
        """W4 codes from ``gptq_result`` (GPTQ, group 128) or RTN with the same grid, then the two-level
        ``s_channel`` / ``s_group`` scales (``quant.packing.w4a8_two_level_scales``)."""
        w, b = _weight_of(linear_or_weight)
        b = b if bias is None else bias
        n, k = w.shape
        codes, gscale, gs = _w4_codes(w, gptq_result, group_size)
        s_channel, s_group = w4a8_two_level_scales(codes, gscale, gs)
        segs = tuple(segments or (n,))
        m = cls(k, n, group_size=group_size, out_int8=out_scale is not None, segments=segs,
                bias=b is not None, device=w.device)
        m.qweight.copy_(pack_int4(codes, pad_code=8))
        m.s_group.copy_(s_group)
        m.s_channel.copy_(s_channel)
        m.input_scale.copy_(as_scale(in_scale))
        if out_scale is not None:
            m.output_scale.copy_(as_scale(out_scale, (len(segs),)))
        if b is not None:
            m.bias.copy_(b.float())
        return m

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, group_size={self.group_size}, "
                f"out={'int8' if self.out_int8 else 'fp'}")


class W4A16Linear(nn.Module):
    """float activation x int4 weight with fp16 group scales (Marlin semantics, spec C.8)."""

    def __init__(self, in_features: int, out_features: int, group_size: int = 128, bias: bool = False,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.group_size = resolve_group_size(self.in_features, group_size)
        ng = num_groups(self.in_features, self.group_size)
        self.register_buffer("qweight", torch.full((out_features, (in_features + 1) // 2), 0x88,
                                                   dtype=torch.uint8, device=device))
        self.register_buffer("scale", torch.ones(out_features, ng, dtype=torch.float16, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None

    def codes(self) -> Tensor:
        return unpack_int4(self.qweight, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        if registry.exporting():  # the node takes the packed weight
            return emit_w4a16_linear(x, self.qweight, self.scale, self.group_size, self.bias, self.in_features)
        return kernel_dispatch.w4a16_linear(x, self.qweight, self.scale, self.group_size, self.bias,
                                            self.in_features)

    def takes_fp16(self, x: Tensor) -> bool:
        """Whether ``forward`` rounds an input shaped like ``x`` to fp16 first (its kernels take fp16 activations):
        a producer may then hand fp16 without changing a value (kernel_dispatch.w4a16_linear_takes_fp16)."""
        return kernel_dispatch.w4a16_linear_takes_fp16(x, self.qweight, self.scale, self.group_size, self.bias,
                                                       self.in_features)

    def dequantized_weight(self) -> Tensor:
        return ops.w4a16_dequantize(self.codes(), self.scale, self.group_size)

    @classmethod
    def from_float(cls, linear_or_weight, gptq_result: GPTQResult | None = None, group_size: int = 128,
                   bias: Tensor | None = None) -> W4A16Linear:
        w, b = _weight_of(linear_or_weight)
        b = b if bias is None else bias
        n, k = w.shape
        codes, gscale, gs = _w4_codes(w, gptq_result, group_size)
        m = cls(k, n, group_size=group_size, bias=b is not None, device=w.device)
        m.qweight.copy_(pack_int4(codes, pad_code=8))
        m.scale.copy_(gscale.to(torch.float16))
        if b is not None:
            m.bias.copy_(b.float())
        return m

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, group_size={self.group_size}"


class FPLinear(nn.Module):
    """A linear layer kept in floating point (weight stored in the fp storage dtype, math in fp32)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 dtype: torch.dtype = torch.float16, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device))
        else:
            self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        b = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.weight.float(), b)

    def dequantized_weight(self) -> Tensor:
        return self.weight.float()

    @classmethod
    def from_float(cls, linear_or_weight, dtype: torch.dtype = torch.float16, bias: Tensor | None = None
                   ) -> FPLinear:
        w, b = _weight_of(linear_or_weight)
        b = b if bias is None else bias
        m = cls(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype, device=w.device)
        m.weight.copy_(w)
        if b is not None:
            m.bias.copy_(b)
        return m

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, dtype={self.weight.dtype}"


class QuantEmbedding(nn.Module):
    """Per-row (per-token) W8 / W4 embedding (spec C.9, pitfall F.14), or a float table (``bits=16``).

    ``forward(ids [B, L]) -> fp32 [B, L, d]`` through ``ops.quant_embedding`` (``kernel_dispatch``: the CUDA
    kernel when on).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8,
                 fp_dtype: torch.dtype = torch.float16, device: torch.device | str | None = None) -> None:
        super().__init__()
        if bits not in (4, 8, 16):
            raise ValueError(f"embedding bits must be 4, 8 or 16, got {bits}")
        self.num_embeddings, self.embedding_dim, self.bits = int(num_embeddings), int(embedding_dim), bits
        v, d = self.num_embeddings, self.embedding_dim
        if bits == 8:
            self.register_buffer("weight", torch.zeros(v, d, dtype=torch.int8, device=device))
        elif bits == 4:
            self.register_buffer("weight", torch.full((v, (d + 1) // 2), 0x88, dtype=torch.uint8, device=device))
        else:
            self.register_buffer("weight", torch.zeros(v, d, dtype=fp_dtype, device=device))
        if bits in (4, 8):
            self.register_buffer("row_scale", torch.ones(v, dtype=torch.float16, device=device))
        else:
            self.row_scale = None

    def table(self) -> Tensor:
        """The table in the op's input form (int8 / unpacked uint8 codes / float)."""
        if self.bits == 4:
            return unpack_int4(self.weight, self.embedding_dim)
        return self.weight

    def forward(self, ids: Tensor) -> Tensor:
        if self.bits == 16:
            return F.embedding(ids, self.weight).float()
        if registry.exporting():  # the node takes the stored (packed) table
            return emit_quant_embedding(ids, self.weight, self.row_scale, self.bits, self.embedding_dim)
        # the kernel on CUDA when on, else the reference (W4: the packed rows gathered, only those unpacked)
        return kernel_dispatch.quant_embedding(ids, self.weight, self.row_scale, self.bits, self.embedding_dim)

    def dequantized_weight(self) -> Tensor:
        if self.bits == 16:
            return self.weight.float()
        ids = torch.arange(self.num_embeddings, device=self.weight.device)
        return ops.quant_embedding(ids, self.table(), self.row_scale, self.bits)

    @classmethod
    def from_float(cls, weight: Tensor, bits: int = 8, fp_dtype: torch.dtype = torch.float16) -> QuantEmbedding:
        """Signed-row-max scales (``quant.quantize.embedding_quantize_w8/w4``) rounded to fp16; the codes
        are computed with the fp16-rounded scale so they decode exactly with the stored scales."""
        w = weight.detach()
        v, d = w.shape
        m = cls(v, d, bits=bits, fp_dtype=fp_dtype, device=w.device)
        if bits == 16:
            m.weight.copy_(w)
            return m
        wf = w.float()
        if bits == 8:
            s = embedding_quantize_w8(wf).scale.to(torch.float16)
            m.weight.copy_(quantize_sym(wf, s.float()[:, None], 8))
        else:
            s = embedding_quantize_w4(wf).scale.to(torch.float16)
            m.weight.copy_(pack_int4(w4_quantize_with_scale(wf, s.float()[:, None]), pad_code=8))
        m.row_scale.copy_(s)
        return m

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}"


class QuantAddRMSNorm(nn.Module):
    """Residual add + RMSNorm (+ static int8 quantization) through ``ops.quant_add_rms_norm``.

    ``forward(hidden, residual) -> (y, residual_out)``: y int8 when ``quantize_output`` (scale
    ``output_scale``: the consumer's ``<linear>:input``), else fp32.
    """

    def __init__(self, d: int, eps: float = 1e-5, quantize_output: bool = True, residual_in_fp32: bool = True,
                 fp_dtype: torch.dtype = torch.float16, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.d, self.eps = int(d), float(eps)
        self.quantize_output = bool(quantize_output)
        self.residual_in_fp32 = bool(residual_in_fp32)
        self.register_buffer("weight", torch.ones(d, dtype=fp_dtype, device=device))
        if self.quantize_output:
            self.register_buffer("output_scale", torch.ones((), dtype=torch.float32, device=device))
        else:
            self.output_scale = None

    def forward(self, hidden: Tensor, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return kernel_dispatch.quant_add_rms_norm(hidden, residual, self.weight, self.eps, self.output_scale,
                                                  self.residual_in_fp32)

    @classmethod
    def from_float(cls, norm: nn.Module, out_scale=None, residual_in_fp32: bool = True,
                   fp_dtype: torch.dtype = torch.float16) -> QuantAddRMSNorm:
        w = norm.weight.detach()
        m = cls(w.shape[0], getattr(norm, "eps", 1e-5), out_scale is not None, residual_in_fp32,
                fp_dtype=fp_dtype, device=w.device)
        m.weight.copy_(w)
        if out_scale is not None:
            m.output_scale.copy_(as_scale(out_scale))
        return m

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}, out={'int8' if self.quantize_output else 'fp'}"


#: The block / final norm with the fused residual add (spec D.3 item 1); alias.
QuantRMSNorm = QuantAddRMSNorm
