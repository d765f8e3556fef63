"""QuantHadamard: online orthonormal (Hadamard) transform of the out_proj input, fused with int8
quantization; ``hadamard`` is the float variant used by W4A16.

Spec: shared/spec/quamba.md B.3, C.2 (the only online transform: out_proj input, dimension E), D.1
(``quant_hadamard``), D.3 item 8, pitfalls F.9 (one matrix for fusion and the online transform) and F.12
(the original kernel does not saturate; ours must clamp).
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import Scale, f32, quantize_int8
from .registry import Attr, OpRecord, Port, emit, exporting, register


def _check(x: torch.Tensor, matrix: torch.Tensor) -> None:
    n = x.shape[-1]
    if matrix.shape != (n, n):
        raise ValueError(f"matrix must be [{n}, {n}] for an input of width {n}, got {tuple(matrix.shape)}")


def hadamard(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Float transform ``y = x @ M^T`` (row vectors: ``y_i = sum_j M[i, j] * x_j``).

    Inputs
      x       float (fp16/bf16/fp32) [..., n].
      matrix  fp32 [n, n]: the orthonormal matrix M (for sizes 2^k, 12*2^k, 40*2^k: the normalised
              Hadamard matrix, 1/sqrt(n) included). It is passed in, never rebuilt here, so the online
              transform is the very matrix that was fused into out_proj's weight.
    Output
      fp32 [..., n]; fp32 arithmetic, summation order free (a fast Walsh-Hadamard butterfly in the
      kernel gives the same values up to fp32 rounding).
    """
    _check(x, matrix)
    return torch.matmul(x.to(torch.float32), matrix.to(torch.float32).t())


def quant_hadamard(x: torch.Tensor, matrix: torch.Tensor, out_scale: Scale) -> torch.Tensor:
    """``q = clamp(round_half_even((x @ M^T) / out_scale), -128, 127)`` as int8.

    Inputs
      x          float [..., n] (the SSM / gated-norm output y).
      matrix     fp32 [n, n] orthonormal M (see ``hadamard``).
      out_scale  fp32 scalar: ``out_proj:input``, calibrated in the transformed domain.
    Output
      int8 [..., n].

    Arithmetic: ``y = hadamard(x, M)`` in fp32, then ``y / out_scale``, round half to even, clamp to
    [-128, 127] (the clamp is mandatory: spec F.12). A kernel that folds the scale into the transform
    (``FWHT(x) * ((1/sqrt(n)) / out_scale)``) differs by fp32 rounding only: int8 outputs agree within
    +-1 LSB.
    """
    if exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(x, matrix, out_scale)
    return quantize_int8(hadamard(x, matrix), f32(out_scale))


# ---- registry record ---------------------------------------------------------------------------


def _node(x: torch.Tensor, out_scale: torch.Tensor, *, size: int, **_: object) -> tuple[torch.Tensor]:
    from ..quant.hadamard import hadamard_matrix

    return (quant_hadamard(x, hadamard_matrix(size, device=x.device), out_scale),)


RECORD = register(OpRecord(
    name="QuantHadamard",
    inputs=(Port("x", "T", "[B, L, n]"), Port("out_scale", "float32", "[]")),
    outputs=(Port("y", "int8", "[B, L, n]"),),
    attrs=(Attr("size", "int", None, "n = 2^k, 12*2^k or 40*2^k; the matrix is the one fused offline"),),
    reason="The online Hadamard transform (fast Walsh-Hadamard for 2^k, a small dense factor for 12/40) "
           "fused with int8 quantization; as a MatMul it would read an n x n matrix per token.",
    reference="quamba_edge.ops.quant_hadamard",
    impl=_node,
    kernel="quant_hadamard.cu",
))


def _emit(x, matrix, out_scale):
    (y,) = emit("QuantHadamard", [x, out_scale], {"size": int(matrix.shape[0])}, shapes=[x.shape])
    return y
