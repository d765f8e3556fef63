"""ONNX Runtime backend: runs an export directory (``quamba-edge export``) on CPU or, with
onnxruntime-gpu, on what ``ort_ops.make_session`` chooses.

The exported graph is one graph for prefill and decode (architecture.md §3): inputs ``input_ids``
int64 ``[B, L]`` then per layer ``conv_state.{i}``, ``ssm_state.{i}``; outputs ``logits`` float32
``[B, L, V]`` then the new states in the same order. The state is a tuple of numpy arrays in
``ExportInfo.states`` order. Any ``L`` works (no prefill profile).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Backend, BackendUnavailableError

__all__ = ["OnnxRuntimeBackend", "onnxruntime_version"]


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, or None (without importing it when it is absent)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        import onnxruntime
    except Exception:  # a broken install counts as absent
        return None
    return str(onnxruntime.__version__)


def _import_export_api():
    try:
        from quamba_edge.export import read_export_info  # noqa: F401
        from quamba_edge.runtime import ort_ops  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError(
            f"backend 'onnxruntime' cannot load exports here: {e}. Install the export extra "
            "(pip install 'quamba-edge[export]')") from e
    return read_export_info, ort_ops


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        if onnxruntime_version() is None:
            raise BackendUnavailableError(
                "backend 'onnxruntime': onnxruntime is not installed; pip install onnxruntime "
                "(or onnxruntime-gpu) onnxruntime-extensions, or pip install 'quamba-edge[export]'")
        read_export_info, ort_ops = _import_export_api()
        info = read_export_info(path)
        self.info = info
        self.session = ort_ops.make_session(info, threads=threads)
        self.path = Path(info.path)
        self.precision = str(info.precision)
        self.compute_dtype = str(info.act_dtype)
        self.vocab_size = int(info.vocab_size)
        self.eos_token_id = info.eos_token_id
        self.tokenizer_dir = Path(info.tokenizer_dir)
        self.max_prefill_len = None
        providers = list(self.session.get_providers())
        first = providers[0] if providers else "CPUExecutionProvider"
        self.device = "cpu" if first == "CPUExecutionProvider" else first.replace("ExecutionProvider", "").lower()
        self.providers = providers
        self.description = (f"ONNX export ({info.arch}, {info.precision}"
                            + (f", {info.recipe}" if info.recipe else "") + f", {info.act_dtype} activations)")
        self._specs = list(info.states)
        self._in_names = ["input_ids"] + [s.input_name for s in self._specs]
        self._out_names = ["logits"] + [s.output_name for s in self._specs]
        graph_inputs = {i.name for i in self.session.get_inputs()}
        missing = [n for n in self._in_names if n not in graph_inputs]
        if missing:
            raise ValueError(f"{info.onnx_path}: the graph lacks the inputs {missing} that export.json "
                             "describes; re-export the model")

    def forward(self, input_ids: np.ndarray, state: Any | None, last_only: bool = False) -> tuple[np.ndarray, Any]:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        if state is None:
            state = self.new_state(ids.shape[0])
        feeds = {"input_ids": ids}
        for name, arr in zip(self._in_names[1:], state):
            feeds[name] = arr
        outs = self.session.run(self._out_names, feeds)
        logits = np.asarray(outs[0], dtype=np.float32)
        if last_only:
            logits = logits[:, -1:]
        return logits, tuple(outs[1:])

    def new_state(self, batch_size: int) -> Any:
        return tuple(np.zeros((batch_size, *tuple(s.shape)[1:]), dtype=np.dtype(s.dtype)) for s in self._specs)

    def concat_states(self, states: Sequence[Any]) -> Any:
        if len(states) == 1:
            return states[0]
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*states))

    def select_state(self, state: Any, rows: Sequence[int]) -> Any:
        idx = np.asarray(list(rows), dtype=np.int64)
        return tuple(np.ascontiguousarray(a[idx]) for a in state)

    def state_batch_size(self, state: Any) -> int:
        return int(state[0].shape[0]) if state else 0

    def state_nbytes(self, state: Any) -> int:
        return int(sum(a.nbytes for a in state))

    def close(self) -> None:
        self.session = None
