"""The device-side runtime: :class:`EdgeModel` (load a model on the best available backend, generate,
stream, batch, carry state, measure), its backends (onnxruntime, torch / torch-cuda, tensorrt) and
:class:`GenerationStats`.

Needs numpy and tokenizers only; each backend imports its own runtime (torch, onnxruntime, tensorrt)
when it is asked for, so ``import quamba_edge.runtime`` works on a Jetson without torch.
"""

from .backends.base import BACKEND_NAMES, Backend, BackendUnavailableError
from .edge_model import EdgeModel, GenerationOutput, GenerationState, GenerationStream
from .sampling import SamplingConfig
from .stats import GenerationStats

__all__ = ["EdgeModel", "GenerationOutput", "GenerationState", "GenerationStream", "GenerationStats",
           "SamplingConfig", "Backend", "BackendUnavailableError", "BACKEND_NAMES"]
