"""Quantization primitives of quamba-edge (Quamba / Quamba2, spec shared/spec/quamba.md).

Plain-tensor reference functions; they are the numeric oracle for the CUDA kernels, the TensorRT
plugins and the ONNX Runtime ops, and do not depend on the model classes.

Modules:

* :mod:`.quantize` — symmetric int quantization (round half to even, clamp, fp32 scales), per-tensor /
  per-channel / per-group / per-segment weight quantizers, the W4 grid, embedding W8/W4.
* :mod:`.hadamard` — Hadamard matrices (2^k, 12·2^k, 40·2^k), FWHT, online transform, fusion helpers.
* :mod:`.packing` — int4 nibble packing (our format), W4A8 two-level scales, W4A16, W8.
* :mod:`.observers` — calibration observers (min-max, percentile EMA, per-SSD-group, sort-and-cluster
  statistic, cross-head block min-max, grouped SSM-state scales).
* :mod:`.groups` — head-group / channel-group block bookkeeping.
* :mod:`.sort_cluster` — Quamba2 sort-and-cluster (imports scikit-learn lazily).
* :mod:`.gptq` — GPTQ for one linear layer, RTN with the same grids.
"""

from .gptq import GPTQ, GPTQResult, gptq_quantize, rtn_quantize
from .groups import block_index_map, expand_block_scales, validate_groups
from .hadamard import (
    fuse_input_rotation,
    fuse_output_rotation,
    fwht,
    hadamard_factors,
    hadamard_matrix,
    hadamard_transform,
    quant_hadamard,
)
from .observers import (
    CrossHeadMinMaxObserver,
    MinMaxObserver,
    PercentileObserver,
    PerGroupObserver,
    SortClusterStatObserver,
    StateGroupObserver,
    StatePerTensorObserver,
    exact_quantile,
)
from .packing import (
    PackedW4A8,
    PackedW4A16,
    PackedW8,
    pack_int4,
    unpack_int4,
    w4a8_dequantize,
    w4a8_effective_int8,
    w4a8_pack,
    w4a8_two_level_scales,
    w4a16_dequantize,
    w4a16_pack,
    w8_dequantize,
    w8_pack_per_segment,
    w8_pack_per_tensor,
)
from .quantize import (
    MIN_AMAX,
    absmax_scale,
    dequantize,
    embedding_quantize_w4,
    embedding_quantize_w8,
    fake_quant,
    quantize_per_channel,
    quantize_per_group,
    quantize_per_segment,
    quantize_per_tensor,
    quantize_sym,
    scale_from_amax,
    w4_dequantize,
    w4_quantize,
)
from .sort_cluster import SortClusterResult, group_wise_sort_indices, invert_permutation

__all__ = [
    "GPTQ", "GPTQResult", "gptq_quantize", "rtn_quantize",
    "block_index_map", "expand_block_scales", "validate_groups",
    "fuse_input_rotation", "fuse_output_rotation", "fwht", "hadamard_factors", "hadamard_matrix",
    "hadamard_transform", "quant_hadamard",
    "CrossHeadMinMaxObserver", "MinMaxObserver", "PercentileObserver", "PerGroupObserver",
    "SortClusterStatObserver", "StateGroupObserver", "StatePerTensorObserver", "exact_quantile",
    "PackedW4A8", "PackedW4A16", "PackedW8", "pack_int4", "unpack_int4", "w4a8_dequantize",
    "w4a8_effective_int8", "w4a8_pack", "w4a8_two_level_scales", "w4a16_dequantize", "w4a16_pack",
    "w8_dequantize", "w8_pack_per_segment", "w8_pack_per_tensor",
    "MIN_AMAX", "absmax_scale", "dequantize", "embedding_quantize_w4", "embedding_quantize_w8",
    "fake_quant", "quantize_per_channel", "quantize_per_group", "quantize_per_segment",
    "quantize_per_tensor", "quantize_sym", "scale_from_amax", "w4_dequantize", "w4_quantize",
    "SortClusterResult", "group_wise_sort_indices", "invert_permutation",
]
