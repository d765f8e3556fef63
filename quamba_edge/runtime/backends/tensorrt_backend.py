"""TensorRT backend (Jetson and any TensorRT machine).

Not available yet: the plugin library and the engine builder (``quamba-edge build``,
``runtime/engine_build.py``) exist, the runtime that executes an engine does not. This module only explains
why the backend cannot run, in one clear message (and never imports torch).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..engine_build import ENGINE_FILE
from .base import BackendUnavailableError

__all__ = ["tensorrt_version", "tensorrt_status", "TensorRTBackend", "ENGINE_FILE"]


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, or None when the ``tensorrt`` module is absent."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception:
        return None
    return str(getattr(tensorrt, "__version__", "?"))


def tensorrt_status(export_dir: Path | None = None) -> tuple[bool, str]:
    """(usable, why) for an export directory."""
    v = tensorrt_version()
    if v is None:
        return False, "tensorrt not installed (it comes with JetPack on a Jetson: python3-libnvinfer)"
    if export_dir is None or not (Path(export_dir) / ENGINE_FILE).is_file():
        return False, (f"tensorrt {v} found but no engine ({ENGINE_FILE}) for this export; build one on this "
                       "device with `quamba-edge build EXPORT_DIR` (and the TensorRT runtime backend, not there yet)")
    return False, (f"tensorrt {v} and an engine found, but this quamba-edge cannot run engines yet (the "
                   "TensorRT runtime backend is the open part of the plugin issue)")


class TensorRTBackend:
    """Placeholder: constructing it raises :class:`BackendUnavailableError` saying why."""

    name = "tensorrt"

    def __init__(self, path: str | Path, **_: object) -> None:
        _, why = tensorrt_status(Path(path) if Path(path).is_dir() else Path(path).parent)
        raise BackendUnavailableError(f"backend 'tensorrt' is not available: {why}; use backend='onnxruntime' "
                                      "(or 'auto')")
