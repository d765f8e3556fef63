"""The torch reference as a runtime backend: ``torch`` (CPU) and ``torch-cuda`` (a CUDA device).

Runs a quantized artifact (``QuantMambaLM``, the integer-faithful reference ops) or an FP model
(``MambaLM``: a checkpoint directory or a bundled model name) with
``model.forward(ids, state, return_state=True)``. torch is imported here only, and this module is
imported only when a torch backend is asked for (the Jetson runtime has no torch).

The FP model runs in float32 on CPU (its fp16 weights upcast) and in float16 on CUDA; the quantized
reference computes its floating-point parts in float32 on both. On CUDA a quantized model runs its
quantized SSM / conv / norm / Hadamard ops on the CUDA kernels (``quamba_edge.ops.kernel_dispatch``) when
they build here and ``QUAMBA_KERNELS=0`` is not set; ``kernels_note`` says which.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Backend, BackendUnavailableError

__all__ = ["TorchBackend", "import_torch"]


def import_torch():
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailableError(
            "the torch backends need PyTorch, which is not installed here; install it "
            "(pip install 'quamba-edge[quant]') or export the model (`quamba-edge export`) and run it with "
            "backend='onnxruntime'") from e
    return torch


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class TorchBackend(Backend):
    """``name`` is ``"torch"`` on CPU, ``"torch-cuda"`` on a CUDA device."""

    def __init__(self, model: Any, *, tokenizer_dir: Path | None, precision: str, path: Path | None = None,
                 description: str = "", eos_token_id: int | None = None) -> None:
        torch = import_torch()
        self._torch = torch
        self.model = model.eval()
        dev = model.device if hasattr(model, "device") else next(model.parameters()).device
        self._device = torch.device(dev)
        self.name = "torch-cuda" if self._device.type == "cuda" else "torch"
        if self._device.type == "cuda":
            idx = self._device.index if self._device.index is not None else torch.cuda.current_device()
            self.device = f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
            self.memory_kind = "CUDA max allocated"
        else:
            self.device = "cpu"
        self.precision = precision
        self.compute_dtype = str(getattr(model, "dtype", torch.float32)).replace("torch.", "")
        self.vocab_size = int(model.config.vocab_size)
        self.tokenizer_dir = tokenizer_dir
        self.eos_token_id = eos_token_id
        self.path = path
        self.max_prefill_len = None
        # CUDA kernels ("CUDA kernels: on" / "... off (why)") for a quantized model on CUDA, and for an fp16 FP
        # model (its SSM scans: kernel_dispatch.ssd / selective_scan ...; an fp32 / bf16 FP model keeps the
        # reference, which the kernels would round to fp16); None otherwise
        self.kernel_ops: Any = None
        self.kernels_note: str | None = None
        if self._device.type == "cuda" and (getattr(model, "quant_config", None) is not None
                                            or getattr(model, "dtype", None) == torch.float16):
            from quamba_edge.ops import kernel_dispatch

            self.kernel_ops, self.kernels_note = kernel_dispatch.load_kernels()
            description = f"{description}; {self.kernels_note}" if description else self.kernels_note
        # decode steps as CUDA graphs (cuda_graphs.py) unless QUAMBA_CUDA_GRAPHS=0
        self.graphs: Any = None
        if self._device.type == "cuda":
            from .cuda_graphs import CudaGraphDecoder, graphs_disabled

            if graphs_disabled():
                description = f"{description}; decode eager (QUAMBA_CUDA_GRAPHS=0)"
            else:
                self.graphs = CudaGraphDecoder(self.model, self._context)
                description = f"{description}; CUDA-graph decode"
        self.description = description

    # ---- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, dtype: str | None = None,
             cuda: bool = False) -> "TorchBackend":
        """An artifact directory or an FP checkpoint directory / bundled model name."""
        torch = import_torch()
        from quamba_edge.quant.artifact import is_artifact, load_artifact, read_artifact_config
        from quamba_edge.tokenizer import bundled_assets_dir, resolve_model_dir, tokenizer_dir

        if device is None:
            device = "cuda" if cuda else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("backend 'torch-cuda': CUDA is not available here (torch "
                                          f"{torch.__version__}); use backend='torch' or 'onnxruntime'")
        folder = resolve_model_dir(path)
        tok_dir = tokenizer_dir(folder)
        if not (tok_dir / "tokenizer.json").is_file():
            tok_dir = bundled_assets_dir() / "tokenizer"
        if is_artifact(folder):
            acfg = read_artifact_config(folder)
            model = load_artifact(folder, device=dev)
            precision = str(acfg.get("bits"))
            desc = f"quantized artifact ({acfg.get('recipe')} {acfg.get('bits')}, {model.config.arch})"
        else:
            from quamba_edge.models import load_model

            if dtype is None:
                dtype = "float16" if dev.type == "cuda" else "float32"
            model = load_model(folder, dtype=dtype, device=dev)
            precision = "fp16"
            desc = f"FP model ({model.config.arch}, {dtype} compute)"
        return cls(model, tokenizer_dir=tok_dir, precision=precision, path=folder, description=desc)

    # ---- Backend ---------------------------------------------------------------------------------

    def forward(self, input_ids: np.ndarray, state: Any | None, last_only: bool = False) -> tuple[np.ndarray, Any]:
        torch = self._torch
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self._device)
        with self._context():
            logits, new_state = self.model(ids, self._own(state), return_state=True,
                                           num_last_tokens=1 if last_only else 0)
            out = logits.float().cpu().numpy()
        return out, new_state

    def decode_step(self, input_ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """A donated decode step as a CUDA-graph replay (batch bucket's graph captured on first use), else
        eagerly (graphs off, batch > 64, a capture that failed: ``graphs_note`` says why)."""
        if self.graphs is not None and state is not None and input_ids.shape[1] == 1:
            ids = self._torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64))
            got = self.graphs.step(ids, state)
            if got is not None:
                logits, new_state = got
                return logits.cpu().numpy(), new_state
        return self.forward(input_ids, state, last_only=True)

    def detach_state(self, state: Any) -> Any:
        return self.graphs.detach(state) if self.graphs is not None else state

    @property
    def graphs_note(self) -> str:
        """Decode execution in one line: graphs (buckets captured, failures) or eager."""
        return self.graphs.note() if self.graphs is not None else "eager decode"

    def _own(self, state: Any) -> Any:
        """A ModelState (views of a graph's buffers for a state the decode graphs returned)."""
        return state.model_state() if self.graphs is not None and hasattr(state, "model_state") else state

    @contextlib.contextmanager
    def _context(self) -> Any:
        """Inference mode and, when on, the CUDA kernels (forward, graph warm-up and capture)."""
        with self._torch.inference_mode(), self._kernels():
            yield

    def _kernels(self) -> Any:
        """The CUDA kernels for this forward when they are on, else a no-op context."""
        if self.kernel_ops is None:
            return contextlib.nullcontext()
        from quamba_edge.ops import kernel_dispatch

        return kernel_dispatch.use_kernels(self.kernel_ops)

    def new_state(self, batch_size: int) -> Any:
        return self.model.allocate_state(batch_size)

    def concat_states(self, states: Sequence[Any]) -> Any:
        from quamba_edge.models.state import ModelState

        return states[0] if len(states) == 1 else ModelState.concat([self._own(s) for s in states])

    def select_state(self, state: Any, rows: Sequence[int]) -> Any:
        return self._own(state).select(list(rows))

    def state_batch_size(self, state: Any) -> int:
        return int(state.batch_size)

    def state_nbytes(self, state: Any) -> int:
        return int(self._own(state).nbytes())

    def reset_peak_memory(self) -> None:
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)
            self._torch.cuda.reset_peak_memory_stats(self._device)
        else:
            super().reset_peak_memory()

    def peak_memory_mb(self) -> float | None:
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)
            return self._torch.cuda.max_memory_allocated(self._device) / 2**20
        return super().peak_memory_mb()
