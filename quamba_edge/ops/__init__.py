"""The custom-op registry of quamba-edge: integer-faithful reference implementations.

One module per op (file name = the op name in snake_case). Each op is a small pure torch function whose
docstring is its contract: inputs and outputs with dtypes and shapes, the meaning of every scale, the
exact order of floating-point operations, rounding (half to even) and clamping. These functions are the
oracle for the CUDA kernels / TensorRT plugins (int8 outputs within +-1 LSB) and the implementation used
by the quantized torch model and by ONNX Runtime.

Common numerics (docs/CONTRACTS.md): activations [B, L, C]; symmetric int8 ``clamp(round(x / s), -128,
127)`` with round half to even, always clamped; scales fp32; integer products exact (float64 or int64,
never fp32); float math in fp32.

| op                         | function                       | module                          |
| -------------------------- | ------------------------------ | ------------------------------- |
| QuantAddRMSNorm            | quant_add_rms_norm             | quant_add_rms_norm.py           |
| W8A8Linear                 | w8a8_linear                    | w8a8_linear.py                  |
| W4A8Linear                 | w4a8_linear                    | w4a8_linear.py                  |
| W4A16Linear                | w4a16_linear                   | w4a16_linear.py                 |
| QuantHadamard (+ float)    | quant_hadamard, hadamard       | quant_hadamard.py               |
| QuantEmbedding             | quant_embedding                | quant_embedding.py              |
| QuantCausalConv1d          | quant_causal_conv1d            | quant_causal_conv1d.py          |
| QuantSelectiveScan         | quant_selective_scan           | quant_selective_scan.py         |
| QuantSelectiveStateUpdate  | quant_selective_state_update   | quant_selective_state_update.py |
| QuantSSD                   | quant_ssd                      | quant_ssd.py                    |
| QuantSSDStateUpdate        | quant_ssd_state_update         | quant_ssd_state_update.py       |
| QuantGatedRMSNorm          | quant_gated_rms_norm           | quant_gated_rms_norm.py         |

Float SSM nodes for the fp16 baseline and W4A16 models: ``SelectiveScan`` (selective_scan.py) and ``SSD``
(ssd.py), whose references are the FP model's own ``quamba_edge.models.ssm`` functions.

Every ONNX custom op has a ``RECORD`` (``registry.OpRecord``) at the end of its module: node name,
inputs/outputs with dtypes and shape rules, attributes, plugin version, why it is custom, and the node
implementation ONNX Runtime runs. ``registry.render_markdown()`` renders plugins/OPS.md from them.

``kernel_dispatch`` is what the quantized model calls for the 8 ops that have CUDA kernels: the same
signatures, the kernel on CUDA tensors while the torch-cuda backend has them on, else these references.

``scales`` expands the compact Quamba2 scale tables (G x 4 x 4 head/channel groups, G SSD groups,
per-segment scales) to the per-channel vectors these ops take.
"""

from . import registry, scales, selective_scan, ssd  # noqa: F401  (selective_scan, ssd register their records)
from .quant_add_rms_norm import quant_add_rms_norm
from .quant_causal_conv1d import quant_causal_conv1d
from .quant_embedding import quant_embedding
from .quant_gated_rms_norm import quant_gated_rms_norm
from .quant_hadamard import hadamard, quant_hadamard
from .quant_selective_scan import quant_selective_scan
from .quant_selective_state_update import quant_selective_state_update
from .quant_ssd import quant_ssd
from .quant_ssd_state_update import quant_ssd_state_update
from .scales import (
    conv_channel_scales,
    expand_head_channel_scales,
    expand_head_channel_state_scales,
    expand_segment_scales,
    expand_ssd_group_scales,
)
from .w4a8_linear import w4a8_int8_weight, w4a8_linear
from .w4a16_linear import w4a16_dequantize, w4a16_linear
from .w8a8_linear import w8a8_linear

__all__ = [
    "conv_channel_scales",
    "expand_head_channel_scales",
    "expand_head_channel_state_scales",
    "expand_segment_scales",
    "expand_ssd_group_scales",
    "hadamard",
    "quant_add_rms_norm",
    "quant_causal_conv1d",
    "quant_embedding",
    "quant_gated_rms_norm",
    "quant_hadamard",
    "quant_selective_scan",
    "quant_selective_state_update",
    "quant_ssd",
    "quant_ssd_state_update",
    "registry",
    "scales",
    "w4a8_int8_weight",
    "w4a8_linear",
    "w4a16_dequantize",
    "w4a16_linear",
    "w8a8_linear",
]
