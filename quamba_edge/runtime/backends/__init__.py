"""Runtime backends. Only :mod:`.base` is imported eagerly; each backend module imports its runtime
(torch, onnxruntime, tensorrt) itself, when it is asked for."""

from .base import BACKEND_NAMES, Backend, BackendUnavailableError

__all__ = ["Backend", "BackendUnavailableError", "BACKEND_NAMES"]
