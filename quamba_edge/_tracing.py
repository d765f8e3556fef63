"""Whether the ONNX exporter is tracing the model (a leaf module: models/ and ops/ both import it).

``quamba_edge.export`` enters :func:`export_dtype` around ``torch.export``; inside it, every quantized
op and the float SSM scans emit one custom node instead of computing, and the layers take no branch on
the sequence length. ``torch.onnx.is_in_onnx_export()`` is not used because the exporter's capture
strategies do not all set it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

_EXPORT_DTYPE: list[Any] = []


@contextlib.contextmanager
def export_dtype(dtype: Any, model_dtype: Any = None) -> Iterator[None]:
    """Within this context the model is being exported; custom nodes emit float activations as ``dtype``
    and hand them back to the traced torch code as ``model_dtype`` (default ``dtype``): the quantized
    reference computes in fp32 between ops, so its fp16 graph casts around each node."""
    _EXPORT_DTYPE.append((dtype, model_dtype if model_dtype is not None else dtype))
    try:
        yield
    finally:
        _EXPORT_DTYPE.pop()


def exporting() -> bool:
    return bool(_EXPORT_DTYPE)


def act_dtype() -> Any:
    """The activation dtype of the graph being exported (torch.float32 outside an export)."""
    import torch

    return _EXPORT_DTYPE[-1][0] if _EXPORT_DTYPE else torch.float32


def model_dtype() -> Any:
    """The float dtype the traced torch code expects from a custom node."""
    import torch

    return _EXPORT_DTYPE[-1][1] if _EXPORT_DTYPE else torch.float32
