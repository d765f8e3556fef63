"""quamba-edge: quantized Mamba / Mamba2 language models on NVIDIA Jetson.

Workstation side: ``quamba_edge.models`` (FP reference), ``quamba_edge.quant`` (Quamba / Quamba2),
``quamba_edge.export`` (ONNX). Device side: ``quamba_edge.runtime`` (EdgeModel) — which needs neither torch
nor transformers.
"""

__version__ = "0.1.0"
