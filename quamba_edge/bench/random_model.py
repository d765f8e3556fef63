"""Models at real shapes with random weights, built directly on the GPU in their final dtype and format.

Latency does not depend on weight values (no kernel of ours branches on data; cuBLAS does not either), so
a benchmark needs the shapes, dtypes and formats of the real model, not its values: no checkpoint, no
calibration, no CPU copy (fp16 mamba2-8b is 16 GB). The FP model is ``MambaLM`` initialised on the device;
a quantized model is the ``QuantMambaLM`` skeleton (the layout an artifact loads into) with its weight codes
drawn at random on the device and its scales left at the skeleton's placeholders.
"""

from __future__ import annotations

import torch
from torch import nn

from quamba_edge.models import MambaLM
from quamba_edge.quant.qlm import QuantMambaLM

from .roofline import model_config, quant_config

__all__ = ["PRECISIONS", "random_model"]

PRECISIONS = ("fp16", "w8a8", "w4a8", "w4a16")


@torch.no_grad()
def randomize_codes_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Draw every int8 weight / uint8 packed-int4 weight code at random, in place, on the model's device."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    for name, t in model.named_buffers():
        if not name.endswith("weight"):
            continue
        if t.dtype == torch.int8:
            t.copy_(torch.randint(-127, 128, t.shape, generator=g, device=t.device, dtype=torch.int8))
        elif t.dtype == torch.uint8:
            t.copy_(torch.randint(0, 256, t.shape, generator=g, device=t.device, dtype=torch.uint8))
    return model


def random_model(name: str, precision: str, device: str | torch.device = "cuda", recipe: str = "quamba2",
                 seed: int = 0) -> nn.Module:
    """``name`` (a shape of :data:`quamba_edge.bench.roofline.MODEL_SHAPES`) in ``precision`` (fp16 / w8a8 /
    w4a8 / w4a16) with random weights, built on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    cfg = model_config(name)
    torch.manual_seed(seed)
    if precision == "fp16":
        return MambaLM(cfg, device=device, dtype=torch.float16).eval()
    model = QuantMambaLM(cfg, quant_config(name, precision, recipe=recipe), device=device)
    return randomize_codes_(model.eval(), seed)
