"""The backend interface :class:`~quamba_edge.runtime.EdgeModel` drives.

A backend runs one graph for prefill and decode: ``forward(input_ids [B, L], state) -> (logits, state)``
(architecture.md §3). Everything else in the runtime (tokenization, chunked prefill, batching, sampling,
streaming, stats) is backend-independent numpy code. A backend's state is opaque to the runtime: it is
only created, passed back, concatenated along the batch and row-selected, through the methods below.

No torch here: the Jetson runtime imports this module without torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["Backend", "BackendUnavailableError", "BACKEND_NAMES"]

# Valid values of EdgeModel.load(backend=...). "torch" is the CPU torch reference; "auto" picks.
BACKEND_NAMES = ("auto", "onnxruntime", "tensorrt", "torch-cuda", "torch")


class BackendUnavailableError(RuntimeError):
    """A backend that cannot run here or cannot run this model (not installed, no GPU, wrong model
    format); the message says what to do instead."""


class Backend(ABC):
    """One loaded model on one runtime.

    Attributes every backend sets:

    * ``name`` — ``"onnxruntime"``, ``"torch"``, ``"torch-cuda"``, ``"tensorrt"``;
    * ``precision`` — ``"fp16"`` (the unquantized model), ``"w8a8"``, ``"w4a8"``, ``"w4a16"``;
    * ``compute_dtype`` — dtype of the floating-point activations (``"float32"`` / ``"float16"``);
    * ``device`` — where it runs, in words (``"cpu"``, ``"cuda:0 (NVIDIA H100)"``, ...);
    * ``vocab_size`` — rows of the logits; ``eos_token_id`` — or None; ``tokenizer_dir`` — a folder
      holding tokenizer.json;
    * ``max_prefill_len`` — the longest ``L`` one ``forward`` call accepts (an engine's prefill
      profile), or None for any length; longer prompts are fed in chunks by the runtime;
    * ``path`` — what was loaded; ``description`` — one line for logs (recipe, format).
    """

    name: str = "?"
    precision: str = "?"
    compute_dtype: str = "float32"
    device: str = "cpu"
    vocab_size: int = 0
    eos_token_id: int | None = None
    tokenizer_dir: Path | None = None
    max_prefill_len: int | None = None
    path: Path | None = None
    description: str = ""

    @abstractmethod
    def forward(self, input_ids: np.ndarray, state: Any | None,
                last_only: bool = False) -> tuple[np.ndarray, Any]:
        """``input_ids`` int64 ``[B, L]`` (``1 <= L <= max_prefill_len``) and the state after the tokens
        before them (None = start of the sequence) -> (float32 logits ``[B, L, V]``, or ``[B, 1, V]`` for
        the last position only when ``last_only``, and the state after them). The input state is not
        modified."""

    def decode_step(self, input_ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One decode step (``input_ids`` ``[B, 1]``) whose input ``state`` the caller *donates*: it will not
        be used again, so a backend may run the step in place (torch-cuda: a CUDA graph over static
        buffers). The returned state may only be valid until the next ``decode_step``: pass it to
        :meth:`detach_state` to keep it. Default: ``forward(..., last_only=True)``."""
        return self.forward(input_ids, state, last_only=True)

    def detach_state(self, state: Any) -> Any:
        """A state the caller may keep indefinitely (a copy of one that lives in reused buffers)."""
        return state

    @abstractmethod
    def new_state(self, batch_size: int) -> Any:
        """The zero state (= the start of a sequence) of ``batch_size`` rows."""

    @abstractmethod
    def concat_states(self, states: Sequence[Any]) -> Any:
        """States of several batches stacked along the batch (in the given order)."""

    @abstractmethod
    def select_state(self, state: Any, rows: Sequence[int]) -> Any:
        """The given batch rows of ``state`` (in the given order), as a new state."""

    @abstractmethod
    def state_batch_size(self, state: Any) -> int:
        """Number of rows of ``state``."""

    def state_nbytes(self, state: Any) -> int:
        """Bytes held by ``state`` (0 when unknown)."""
        return 0

    # ---- memory ----------------------------------------------------------------------------------

    memory_kind: str = "process peak RSS"

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement (default: the process peak RSS, where the OS allows)."""
        from ..stats import reset_peak_rss

        reset_peak_rss()

    def peak_memory_mb(self) -> float | None:
        """Peak memory since :meth:`reset_peak_memory`, in MiB (default: process peak RSS)."""
        from ..stats import peak_rss_mb

        return peak_rss_mb()

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the backend holds (sessions, GPU memory). Optional."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.precision}, {self.device}, path={self.path})"
