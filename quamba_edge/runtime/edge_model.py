"""``EdgeModel``: load a model on the best available backend and generate text.

>>> from quamba_edge.runtime import EdgeModel
>>> model = EdgeModel.load("out/mamba2-ref-w8a8-onnx")          # backend="auto"
>>> model.backend_name, model.backend_reason
('onnxruntime', 'tensorrt not installed (...); onnxruntime 1.32.0 found')
>>> out = model.generate("The interpreter reads", max_new_tokens=32)
>>> out.text, out.tokens, out.stats.ttft_ms
>>> for piece in model.generate("The interpreter reads", stream=True): print(piece, end="")
>>> more = model.generate(" Then it", state=out.state)   # continues without re-prefilling

What loads where (``backend="auto"``):

* an export directory (``quamba-edge export``: model.onnx + export.json) -> TensorRT when it is installed
  and an engine exists (`quamba-edge build`; the engine runtime is not there yet), else ONNX Runtime;
* a quantized artifact (``quamba-edge quantize``), an FP checkpoint directory or a bundled model name ->
  the torch reference, on CUDA when available (``torch-cuda``), else on CPU (``torch``).

``model.backend_reason`` says why. Generation conventions follow transformers' ``generate``:
``do_sample=False`` is greedy, ``temperature`` / ``top_k`` (default 50) / ``top_p`` / ``repetition_penalty``
as there, ``eos_token_id`` stops a row (the eos token is part of ``tokens``, not of ``text``), ``stop``
strings stop a row once the generated text contains one (the text keeps it, as transformers'
``stop_strings``). Returned ``text`` / ``tokens`` are the new ones only.

Batching: Mamba cannot left-pad a prompt without changing its state, so prompts of equal length are
prefilled together, each length on its own, and the states are concatenated for one batched decode;
a row that finishes leaves the batch. State carry: ``output.state`` holds the recurrent state after every
token of the sequence except the last generated one (fed at the start of the next call), so
``generate(next_prompt, state=output.state)`` equals generating from the whole token history at once,
without prefilling it again. Chunked prefill: a prompt longer than the backend's prefill profile
(``max_prefill_len``) or ``prefill_chunk`` is fed in chunks carrying the state.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .backends.base import BACKEND_NAMES, Backend, BackendUnavailableError
from .detokenize import IncrementalDecoder
from .sampling import SamplingConfig, select_next
from .stats import GenerationStats

__all__ = ["EdgeModel", "GenerationOutput", "GenerationState", "GenerationStream", "BACKEND_NAMES"]

_ARTIFACT_KEY = "quamba_edge_artifact"  # = quant.artifact.FORMAT_KEY (not imported: that module needs torch)
_EXPORT_INFO = "export.json"
_UNSET: Any = object()


# ------------------------------------------------------------------------------------------------
# what a path is
# ------------------------------------------------------------------------------------------------


def classify_model_path(path: str | os.PathLike) -> tuple[str, Path]:
    """``("export" | "artifact" | "fp", folder)``. Raises FileNotFoundError for a path that does not exist
    (and is no bundled model name), ValueError for a path that is no model at all."""
    from quamba_edge.tokenizer import resolve_model_dir

    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix == ".onnx":
            return "export", p.parent
        if p.name in ("config.json", _EXPORT_INFO):
            p = p.parent
        else:
            raise ValueError(f"{path} is a file, not a model: pass an export directory (model.onnx + "
                             "export.json), a quantized artifact directory, an FP checkpoint directory or a "
                             "bundled model name")
    folder = resolve_model_dir(p if p.exists() else path)
    if (folder / _EXPORT_INFO).is_file() or (folder / "model.onnx").is_file():
        return "export", folder
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            d = json.loads(cfg.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot parse {cfg}: {e}") from e
        return ("artifact" if isinstance(d, dict) and _ARTIFACT_KEY in d else "fp"), folder
    raise ValueError(f"{folder} holds no model: expected an export directory (model.onnx + export.json), "
                     "a quantized artifact or an FP checkpoint (config.json)")


_KIND_WORDS = {"export": "an ONNX export", "artifact": "a quantized artifact", "fp": "an FP model"}


def _select_backend(kind: str, folder: Path, backend: str, shown: str | None = None) -> tuple[str, str]:
    """(backend name, reason) for ``backend="auto"`` or a check of an explicit choice. ``shown``: the path
    as the user gave it (for messages)."""
    from .backends.onnxruntime_backend import onnxruntime_version
    from .backends.tensorrt_backend import tensorrt_status

    what = _KIND_WORDS[kind]
    shown = shown or str(folder)
    if kind == "export":
        if backend in ("torch", "torch-cuda"):
            raise ValueError(f"backend {backend!r} runs a quantized artifact or an FP model; {shown} is {what}: "
                             "use backend='onnxruntime' (or 'auto'), or load the artifact it was exported from")
        if backend != "auto":
            return backend, f"asked for {backend}"
        trt_ok, trt_why = tensorrt_status(folder)
        if trt_ok:
            return "tensorrt", trt_why
        ort = onnxruntime_version()
        if ort is None:
            raise BackendUnavailableError(f"no backend can run {shown} ({what}): {trt_why}; onnxruntime not "
                                          "installed (pip install onnxruntime onnxruntime-extensions)")
        return "onnxruntime", f"{trt_why}; onnxruntime {ort} found"
    if backend in ("onnxruntime", "tensorrt"):
        raise ValueError(f"backend {backend!r} runs an exported model (model.onnx + export.json); {shown} is "
                         f"{what}: run `quamba-edge export {shown} --out DIR` first and load DIR "
                         "(or use backend='torch' / 'auto' to run it on the torch reference)")
    if backend != "auto":
        return backend, f"asked for {backend}"
    from .backends.torch_backend import cuda_available, import_torch

    try:
        import_torch()
    except BackendUnavailableError as e:
        raise BackendUnavailableError(f"{shown} is {what}, which runs on the torch reference, but torch is not "
                                      "installed here; export it on the workstation (`quamba-edge export`) and "
                                      "load the export directory") from e
    base = f"{what} (not exported) runs on the torch reference"
    if cuda_available():
        return "torch-cuda", f"{base}; CUDA available"
    return "torch", f"{base}; no CUDA here, so on CPU (export it for onnxruntime / tensorrt)"


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


class GenerationState:
    """Where a (batch of) sequence(s) stands: the backend's recurrent state after every token but the
    ``pending`` ones (the last generated token of each row, fed at the start of the next call), and the
    full token history of each row (``token_ids``: prompts and generated tokens of every call so far).

    Pass it back as ``generate(..., state=...)`` to continue; it belongs to the model that made it.
    Immutable in use: continuing from the same state twice gives the same result."""

    def __init__(self, owner: Backend, backend_state: Any, pending: list[list[int]], token_ids: list[list[int]]):
        self._owner = owner
        self.backend_state = backend_state
        self.pending = pending
        self.token_ids = token_ids

    @property
    def batch_size(self) -> int:
        return len(self.token_ids)

    @property
    def num_tokens(self) -> list[int]:
        return [len(t) for t in self.token_ids]

    def nbytes(self) -> int:
        return self._owner.state_nbytes(self.backend_state) if self.backend_state is not None else 0

    def __repr__(self) -> str:
        return (f"GenerationState(backend={self._owner.name}, batch={self.batch_size}, tokens={self.num_tokens}, "
                f"pending={self.pending})")


@dataclass
class GenerationOutput:
    """``text`` / ``tokens`` / ``finish_reason`` / ``prompt_ids`` are a single value for a single prompt and
    lists (one per prompt) for a list of prompts. ``finish_reason``: "eos", "stop" or "length"."""

    text: str | list[str]
    tokens: list[int] | list[list[int]]
    stats: GenerationStats
    state: GenerationState
    finish_reason: str | list[str]
    prompt_ids: list[int] | list[list[int]] = field(default_factory=list)


class GenerationStream:
    """Iterator of text pieces of a streamed generation (one prompt). After it is exhausted, ``output``
    (and ``text``, ``tokens``, ``stats``, ``state``) hold the full result."""

    def __init__(self, run: "_Run") -> None:
        self._run = run
        self._steps = run.steps()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            pieces = next(self._steps)  # StopIteration ends the stream
            if pieces[0]:
                return pieces[0]

    @property
    def output(self) -> GenerationOutput:
        if self._run.output is None:
            raise RuntimeError("the stream has not finished: iterate it to the end first")
        return self._run.output

    @property
    def text(self) -> str:
        return self.output.text  # type: ignore[return-value]

    @property
    def tokens(self) -> list[int]:
        return self.output.tokens  # type: ignore[return-value]

    @property
    def stats(self) -> GenerationStats:
        return self.output.stats

    @property
    def state(self) -> GenerationState:
        return self.output.state

    def close(self) -> None:
        """Stop early (no output is made)."""
        self._steps.close()


# ------------------------------------------------------------------------------------------------
# EdgeModel
# ------------------------------------------------------------------------------------------------


class EdgeModel:
    """A loaded model + its tokenizer. Make one with :meth:`load` (or :meth:`from_torch`)."""

    def __init__(self, backend: Backend, tokenizer: Any, *, backend_reason: str = "",
                 max_prompt_tokens: int | None = None, prefill_chunk: int | None = None) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.backend_reason = backend_reason
        self.max_prompt_tokens = _check_positive("max_prompt_tokens", max_prompt_tokens)
        self.prefill_chunk = _check_positive("prefill_chunk", prefill_chunk)
        if tokenizer.vocab_size > backend.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's logits have "
                             f"{backend.vocab_size}; pass the model's own tokenizer")
        self.eos_token_id = backend.eos_token_id if backend.eos_token_id is not None else tokenizer.eos_token_id

    # ---- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", *, device: str | None = None,
             dtype: str | None = None, threads: int | None = None, max_prompt_tokens: int | None = None,
             prefill_chunk: int | None = None, tokenizer: Any = None) -> "EdgeModel":
        """Load ``path`` on ``backend``: one of ``auto`` (default: the best available; see the module
        docstring), ``onnxruntime``, ``tensorrt``, ``torch-cuda``, ``torch`` (the torch reference on CPU).

        ``path``: an export directory (or its model.onnx), a quantized artifact directory, an FP checkpoint
        directory or a bundled model name. ``device`` / ``dtype``: torch backends only (e.g. "cuda:1";
        the FP model's compute dtype). ``threads``: intra-op threads (onnxruntime session; torch:
        ``torch.set_num_threads``, process-wide). ``max_prompt_tokens``: reject longer prompts (default: no
        limit). ``prefill_chunk``: feed prompts in chunks of at most this many tokens (default: whole, or
        the backend's profile limit). ``tokenizer``: a folder / tokenizer.json / Tokenizer instead of the
        model's own, or ``False`` for none (token ids in and out, ``text`` is "").

        Raises ValueError for an unknown backend or one that cannot run this kind of model (naming what
        to do), :class:`BackendUnavailableError` (a RuntimeError) when the backend is not installed here,
        FileNotFoundError for a missing path."""
        if not isinstance(backend, str) or backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKEND_NAMES)}")
        _check_positive("threads", threads)
        kind, folder = classify_model_path(path)
        name, reason = _select_backend(kind, folder, backend, str(path))
        if backend == "auto" and name == "torch-cuda" and device is not None and str(device).startswith("cpu"):
            name, reason = "torch", f"{reason}, but device {device!r} was asked for"
        be: Backend
        if name == "onnxruntime":
            from .backends.onnxruntime_backend import OnnxRuntimeBackend

            be = OnnxRuntimeBackend(Path(path) if Path(path).suffix == ".onnx" else folder, threads=threads)
        elif name == "tensorrt":
            from .backends.tensorrt_backend import TensorRTBackend

            be = TensorRTBackend(folder)
        else:
            from .backends.torch_backend import TorchBackend, import_torch

            if threads:
                import_torch().set_num_threads(threads)
            if name == "torch" and device is not None and not str(device).startswith("cpu"):
                raise ValueError(f"backend 'torch' runs on the CPU; for device {device!r} use backend='torch-cuda'")
            be = TorchBackend.load(folder, device=device, dtype=dtype, cuda=(name == "torch-cuda"))
            if be.kernels_note:
                reason = f"{reason}; {be.kernels_note}"
        return cls(be, _load_tok(tokenizer, be), backend_reason=reason, max_prompt_tokens=max_prompt_tokens,
                   prefill_chunk=prefill_chunk)

    @classmethod
    def from_torch(cls, model: Any, tokenizer: Any = None, *, precision: str | None = None,
                   max_prompt_tokens: int | None = None, prefill_chunk: int | None = None) -> "EdgeModel":
        """Wrap an in-memory ``MambaLM`` / ``QuantMambaLM`` (torch backend on the model's device).
        ``tokenizer``: a folder, tokenizer.json or Tokenizer (default: the bundled tokenizer); ``False``: none,
        prompts and outputs are token ids only (``text`` is "")."""
        from quamba_edge.tokenizer import bundled_assets_dir

        from .backends.torch_backend import TorchBackend

        if precision is None:
            qc = getattr(model, "quant_config", None)
            precision = str(getattr(qc, "bits", "fp16")) if qc is not None else "fp16"
        be = TorchBackend(model, tokenizer_dir=bundled_assets_dir() / "tokenizer", precision=precision,
                          description=f"in-memory {type(model).__name__}")
        reason = "an in-memory torch model" + (f"; {be.kernels_note}" if be.kernels_note else "")
        return cls(be, _load_tok(tokenizer, be), backend_reason=reason,
                   max_prompt_tokens=max_prompt_tokens, prefill_chunk=prefill_chunk)

    # ---- properties ----------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size

    def info(self) -> dict[str, Any]:
        b = self.backend
        return {"backend": b.name, "backend_reason": self.backend_reason, "precision": b.precision,
                "compute_dtype": b.compute_dtype, "device": b.device, "path": None if b.path is None else str(b.path),
                "model": b.description, "vocab_size": b.vocab_size, "eos_token_id": self.eos_token_id,
                "max_prefill_len": b.max_prefill_len, "max_prompt_tokens": self.max_prompt_tokens,
                "prefill_chunk": self.prefill_chunk}

    def __repr__(self) -> str:
        return f"EdgeModel({self.backend.description or self.backend.path}, backend={self.backend.name}, " \
               f"precision={self.backend.precision}, device={self.backend.device})"

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "EdgeModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- forward (chunked) ---------------------------------------------------------------------

    def _chunk_limit(self, prefill_chunk: int | None) -> int | None:
        limits = [x for x in (prefill_chunk if prefill_chunk is not None else self.prefill_chunk,
                              self.backend.max_prefill_len) if x]
        return min(limits) if limits else None

    def _forward_chunked(self, ids: np.ndarray, state: Any, limit: int | None,
                         last_only: bool) -> tuple[np.ndarray, Any, int]:
        L = ids.shape[1]
        if limit is None or L <= limit:
            logits, state = self.backend.forward(ids, state, last_only=last_only)
            return logits, state, 1
        outs = []
        n = 0
        for s in range(0, L, limit):
            logits, state = self.backend.forward(ids[:, s:s + limit], state, last_only=last_only)
            n += 1
            if not last_only or s + limit >= L:
                outs.append(logits)
        return (outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)), state, n

    def forward(self, input_ids: Any, state: GenerationState | None = None,
                prefill_chunk: int | None = None) -> tuple[np.ndarray, GenerationState]:
        """Logits of every position: ``input_ids`` ``[B, L]`` (or one sequence ``[L]``) -> (float32 logits
        ``[B, L, V]``, the state after them). Fed in chunks like a prompt; ``state`` continues a sequence
        (its pending tokens are fed first and their logits are included)."""
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.shape[1] == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be integer [B, L] with L >= 1, got shape {ids.shape} ({ids.dtype})")
        rows = [self._check_ids(list(map(int, r)), "input_ids") for r in ids]
        base = None
        hist = [[] for _ in rows]
        if state is not None:
            self._check_state(state, len(rows))
            if len({len(p) for p in state.pending}) > 1:
                raise ValueError("the state's rows have different numbers of pending tokens; use generate()")
            rows = [p + r for p, r in zip(state.pending, rows)]
            base, hist = state.backend_state, state.token_ids
        arr = np.asarray(rows, dtype=np.int64)
        logits, st, _ = self._forward_chunked(arr, base, self._chunk_limit(prefill_chunk), last_only=False)
        new_hist = [h + r for h, r in zip(hist, [list(x) for x in ids.tolist()])]
        return logits, GenerationState(self.backend, st, [[] for _ in rows], new_hist)

    # ---- input checks --------------------------------------------------------------------------

    def _check_ids(self, ids: list[int], what: str) -> list[int]:
        bad = [i for i in ids if not 0 <= i < self.backend.vocab_size]
        if bad:
            raise ValueError(f"{what}: token id(s) {bad[:5]} outside the vocabulary [0, {self.backend.vocab_size})")
        return ids

    def _check_state(self, state: Any, batch: int) -> None:
        if not isinstance(state, GenerationState):
            raise TypeError(f"state must be the GenerationState of an earlier generate(), got {type(state).__name__}")
        if state._owner is not self.backend:
            raise ValueError("state was made by another model/backend; continue a conversation with the model "
                             "that started it")
        if state.batch_size != batch:
            raise ValueError(f"state holds {state.batch_size} sequence(s) but {batch} prompt(s) were given")

    def _encode_prompts(self, prompt: Any, state: GenerationState | None,
                        add_special_tokens: bool) -> tuple[list[list[int]], bool]:
        """(token ids of each new prompt, batched?)"""
        enc = lambda t: self.tokenizer.encode(t, add_special_tokens=add_special_tokens)  # noqa: E731
        if prompt is None or (isinstance(prompt, str) and prompt == ""):
            if state is None:
                raise ValueError("the prompt is empty (0 tokens); give a prompt, or a state to continue from")
            return [[] for _ in range(state.batch_size)], state.batch_size > 1
        if isinstance(prompt, str):
            return [enc(prompt)], False
        if isinstance(prompt, np.ndarray):
            if not np.issubdtype(prompt.dtype, np.integer) or prompt.ndim not in (1, 2):
                raise ValueError(f"token-id arrays must be integer 1-D [L] or 2-D [B, L], got {prompt.dtype} "
                                 f"{prompt.shape}")
            if prompt.ndim == 1:
                return [self._check_ids(prompt.tolist(), "prompt")], False
            return [self._check_ids(r, "prompt") for r in prompt.tolist()], True
        if isinstance(prompt, (list, tuple)):
            if not prompt:
                raise ValueError("empty list of prompts")
            if all(isinstance(p, str) for p in prompt):
                return [enc(p) for p in prompt], True
            if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in prompt):
                return [self._check_ids([int(p) for p in prompt], "prompt")], False
            if all(isinstance(p, (list, tuple, np.ndarray)) for p in prompt):
                rows = []
                for p in prompt:
                    r = list(p)
                    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in r):
                        raise TypeError("a list of token-id lists must hold integers only")
                    rows.append(self._check_ids([int(i) for i in r], "prompt"))
                return rows, True
        raise TypeError("prompt must be a string, a list of strings, token ids (list of int or 1-D array), "
                        f"or a batch of token ids (list of lists or 2-D array); got {type(prompt).__name__}")

    # ---- generate ------------------------------------------------------------------------------

    def generate(self, prompt: Any = None, max_new_tokens: int = 64, *, do_sample: bool = False,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float | None = None, stop: Any = None, eos_token_id: Any = _UNSET,
                 seed: int | None = None, stream: bool = False, state: GenerationState | None = None,
                 prefill_chunk: int | None = None,
                 add_special_tokens: bool = True) -> GenerationOutput | GenerationStream:
        """Generate up to ``max_new_tokens`` tokens after ``prompt``.

        ``prompt``: a string, a list of strings (a batch), token ids (a list of int or 1-D array), a batch
        of token ids (list of lists / 2-D array), or None / "" to continue ``state`` with no new prompt.
        ``do_sample`` False (default) is greedy; ``temperature`` (0 = greedy), ``top_k`` (default 50, 0 =
        off), ``top_p`` (1 = off) apply when sampling; ``repetition_penalty`` (1 = off) always. ``stop``: a
        string, a token id, or a list of them. ``eos_token_id``: default the model's (tokenizer's) eos;
        None disables it; an int or a list. ``seed``: makes sampling reproducible. ``state``: continue
        from an earlier output's state (no re-prefill). ``prefill_chunk``: this call's chunk size.
        ``max_new_tokens=0`` only prefills (handy to feed a system prompt once and keep the state).

        Returns :class:`GenerationOutput`; with ``stream=True`` (one prompt only) a
        :class:`GenerationStream` iterating over text pieces as they are produced."""
        t0 = time.perf_counter()
        if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        _check_positive("prefill_chunk", prefill_chunk)
        cfg = SamplingConfig.make(do_sample, temperature, top_k, top_p, repetition_penalty)
        if state is not None and not isinstance(state, GenerationState):
            raise TypeError(f"state must be the GenerationState of an earlier generate(), got {type(state).__name__}")
        new_ids, batched = self._encode_prompts(prompt, state, add_special_tokens)
        if state is not None:
            self._check_state(state, len(new_ids))
            batched = batched or state.batch_size > 1
        if self.max_prompt_tokens is not None:
            for i, r in enumerate(new_ids):
                if len(r) > self.max_prompt_tokens:
                    which = f"prompt {i}" if batched else "the prompt"
                    raise ValueError(f"{which} has {len(r)} tokens, more than max_prompt_tokens="
                                     f"{self.max_prompt_tokens} allows (EdgeModel.load / --max-prompt-tokens); "
                                     "shorten it or raise the limit")
        for i, r in enumerate(new_ids):
            if not r and (state is None or not state.pending[i]):
                raise ValueError(("prompt %d" % i if batched else "the prompt") + " is empty (0 tokens)")
        if stream and len(new_ids) != 1:
            raise ValueError(f"stream=True takes one prompt, got {len(new_ids)}; generate the batch without stream")
        eos_ids = self._eos_ids(eos_token_id)
        stop_strings, stop_ids = _parse_stop(stop, self.backend.vocab_size)
        if stop_strings and isinstance(self.tokenizer, TokenIdsOnly):
            raise ValueError("stop strings need a tokenizer (this EdgeModel has tokenizer=False); give stop token "
                             "ids instead")
        run = _Run(self, new_ids, state, cfg, int(max_new_tokens), eos_ids, stop_ids, stop_strings,
                   np.random.default_rng(seed), self._chunk_limit(prefill_chunk), batched,
                   tokenize_s=time.perf_counter() - t0)
        if stream:
            return GenerationStream(run)
        for _ in run.steps():
            pass
        assert run.output is not None
        return run.output

    def _eos_ids(self, eos_token_id: Any) -> set[int]:
        if eos_token_id is _UNSET:
            return set() if self.eos_token_id is None else {int(self.eos_token_id)}
        if eos_token_id is None:
            return set()
        ids = [eos_token_id] if isinstance(eos_token_id, (int, np.integer)) else list(eos_token_id)
        return set(self._check_ids([int(i) for i in ids], "eos_token_id"))

    # ---- perplexity ------------------------------------------------------------------------------

    def perplexity(self, text_or_ids: Any, window: int = 512, max_windows: int | None = None,
                   batch_size: int = 1, prefill_chunk: int | None = None) -> dict[str, Any]:
        """Perplexity and next-token top-1 through this backend, with ``quamba-edge eval --ppl``'s protocol:
        the token stream cut into non-overlapping windows of ``window`` tokens (a trailing partial window
        dropped; a stream shorter than one window used whole), each scored from a zero state.
        ``text_or_ids``: text (tokenized as one string), a text file path (``pathlib.Path``), or token ids.

        Returns ``{"ppl", "loss", "top1", "tokens", "windows", "window", "seconds"}``."""
        import math

        t0 = time.perf_counter()
        if isinstance(text_or_ids, Path):
            text_or_ids = text_or_ids.read_text(encoding="utf-8")
        ids = np.asarray(self.tokenizer.encode(text_or_ids) if isinstance(text_or_ids, str) else text_or_ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"token ids must be 1-D integers, got {ids.dtype} {ids.shape}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if max_windows is not None and max_windows < 1:
            raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = ids.size
        if n < 2:
            raise ValueError(f"need at least 2 tokens to score, got {n}")
        self._check_ids(ids.tolist(), "token ids")
        if n < window:
            wins = ids.reshape(1, n)
        else:
            count = n // window if max_windows is None else min(n // window, max_windows)
            wins = ids[: count * window].reshape(count, window)
        limit = self._chunk_limit(prefill_chunk)
        nll, correct, count = 0.0, 0, 0
        for s in range(0, wins.shape[0], batch_size):
            batch = wins[s:s + batch_size].astype(np.int64)
            logits, _, _ = self._forward_chunked(batch, None, limit, last_only=False)
            pred = logits[:, :-1].astype(np.float64)
            target = batch[:, 1:]
            m = pred.max(axis=-1, keepdims=True)
            lse = np.log(np.exp(pred - m).sum(axis=-1)) + m[..., 0]
            tgt = np.take_along_axis(pred, target[..., None], axis=-1)[..., 0]
            nll += float((lse - tgt).sum())
            correct += int((pred.argmax(axis=-1) == target).sum())
            count += target.size
        loss = nll / count
        return {"ppl": math.exp(loss) if loss < 700 else float("inf"), "loss": loss, "top1": correct / count,
                "tokens": count, "windows": int(wins.shape[0]), "window": int(wins.shape[1]),
                "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------------------------------------
# one generate call
# ------------------------------------------------------------------------------------------------


class _Run:
    """The work of one ``generate`` call, as a generator of per-step text pieces (one per row)."""

    def __init__(self, model: EdgeModel, new_ids: list[list[int]], state: GenerationState | None,
                 cfg: SamplingConfig, max_new: int, eos_ids: set[int], stop_ids: set[int], stop_strings: list[str],
                 rng: np.random.Generator, chunk: int | None, batched: bool, tokenize_s: float) -> None:
        self.m, self.new_ids, self.state, self.cfg = model, new_ids, state, cfg
        self.max_new, self.eos_ids, self.stop_ids, self.stop_strings = max_new, eos_ids, stop_ids, stop_strings
        self.rng, self.chunk, self.batched, self.tokenize_s = rng, chunk, batched, tokenize_s
        self.output: GenerationOutput | None = None

    def _prefill(self, inputs: list[list[int]], base: Any) -> tuple[np.ndarray | None, Any, int]:
        """Feed each row's input; rows of equal length go together. (last logits [B, V], state, chunks)."""
        be, B = self.m.backend, len(inputs)
        groups: dict[int, list[int]] = {}
        for r, ids in enumerate(inputs):
            groups.setdefault(len(ids), []).append(r)
        last = None if self.max_new == 0 else np.empty((B, be.vocab_size), dtype=np.float32)
        states, order, chunks = [], [], 0
        for rows in groups.values():
            ids = np.asarray([inputs[r] for r in rows], dtype=np.int64)
            st = None if base is None else (base if len(rows) == B else be.select_state(base, rows))
            logits, st, n = self.m._forward_chunked(ids, st, self.chunk, last_only=True)
            chunks += n
            if last is not None:
                last[rows] = logits[:, -1]
            states.append(st)
            order.extend(rows)
        state = be.concat_states(states)
        if order != list(range(B)):
            state = be.select_state(state, list(np.argsort(order)))
        return last, state, chunks

    def steps(self) -> Iterator[list[str]]:
        m, be, cfg = self.m, self.m.backend, self.cfg
        t0 = time.perf_counter() - self.tokenize_s
        be.reset_peak_memory()
        B = len(self.new_ids)
        prev = self.state
        pending = prev.pending if prev is not None else [[] for _ in range(B)]
        inputs = [p + n for p, n in zip(pending, self.new_ids)]
        history = [list(h) + n for h, n in zip(prev.token_ids, self.new_ids)] if prev is not None \
            else [list(n) for n in self.new_ids]
        logits, state, chunks = self._prefill(inputs, None if prev is None else prev.backend_state)

        tokens: list[list[int]] = [[] for _ in range(B)]
        reasons = ["length"] * B
        decoders = [IncrementalDecoder(m.tokenizer) for _ in range(B)]
        row_state: list[Any] = [None] * B
        active = list(range(B))              # batch position -> original row
        max_stop = max((len(s) for s in self.stop_strings), default=0)
        vocab_limit = m.tokenizer.vocab_size
        t_first = t_last = None
        steps = 0
        for step in range(self.max_new):
            nxt = select_next(logits, cfg, [history[r] for r in active], self.rng, vocab_limit)
            steps += 1
            t_last = time.perf_counter()
            if t_first is None:
                t_first = t_last
            pieces = [""] * B
            done_pos: list[int] = []
            for j, r in enumerate(active):
                tok = int(nxt[j])
                tokens[r].append(tok)
                history[r].append(tok)
                before = len(decoders[r].text)
                pieces[r] = decoders[r].push(tok)
                if tok in self.eos_ids:
                    reasons[r] = "eos"
                elif tok in self.stop_ids:
                    reasons[r] = "stop"
                elif max_stop and pieces[r]:
                    tail = decoders[r].text[max(0, before - max_stop + 1):]
                    if any(s in tail for s in self.stop_strings):
                        reasons[r] = "stop"
                if reasons[r] != "length" or step == self.max_new - 1:
                    done_pos.append(j)
            last_step = len(done_pos) == len(active)
            if last_step:
                for r in active:
                    pieces[r] += decoders[r].flush()
            elif done_pos:
                for j in done_pos:
                    r = active[j]
                    pieces[r] += decoders[r].flush()
                    row_state[r] = be.select_state(state, [j])
            yield pieces
            if last_step:
                break
            if done_pos:
                keep = [j for j in range(len(active)) if j not in set(done_pos)]
                state = be.select_state(state, keep)
                nxt = nxt[keep]
                active = [active[j] for j in keep]
            logits, state = be.decode_step(nxt.reshape(-1, 1).astype(np.int64), state)  # state is donated
            logits = logits[:, -1]
        t_end = time.perf_counter()

        # final state: every row's state before its last generated token, in row order
        if active and len(active) == B and all(row_state[r] is None for r in range(B)):
            final = state if active == list(range(B)) else be.select_state(state, list(np.argsort(active)))
        else:
            for j, r in enumerate(active):
                row_state[r] = be.select_state(state, [j])
            final = be.concat_states([row_state[r] for r in range(B)])
        final = be.detach_state(final)  # the decode loop's state may live in reused buffers
        new_pending = [[t[-1]] if t else [] for t in tokens]
        gstate = GenerationState(be, final, new_pending, history)

        n_new = sum(len(t) for t in tokens)
        total = t_end - t0
        ttft = (t_first - t0) if t_first is not None else total
        tpot = (t_end - t_first) / (steps - 1) if steps > 1 and t_first is not None else 0.0
        after_first = n_new - (B if steps else 0)
        if steps > 1 and t_end > t_first:
            tps = after_first / (t_end - t_first)
        else:
            tps = n_new / total if total > 0 else 0.0
        stats = GenerationStats(
            ttft_ms=1000 * ttft, tpot_ms=1000 * tpot, tokens_per_s=tps,
            prompt_tokens=sum(len(i) for i in inputs), new_tokens=n_new, total_ms=1000 * total, batch_size=B,
            prefill_chunks=chunks, peak_memory_mb=be.peak_memory_mb(), memory_kind=be.memory_kind,
            backend=be.name, precision=be.precision, compute_dtype=be.compute_dtype, device=be.device)
        texts = [m.tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        one = (lambda x: x) if self.batched else (lambda x: x[0])
        self.output = GenerationOutput(text=one(texts), tokens=one(tokens), stats=stats, state=gstate,
                                       finish_reason=one(reasons), prompt_ids=one([list(n) for n in self.new_ids]))


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _check_positive(name: str, v: int | None) -> int | None:
    if v is None:
        return None
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
    return int(v)


def _parse_stop(stop: Any, vocab: int) -> tuple[list[str], set[int]]:
    if stop is None:
        return [], set()
    items = [stop] if isinstance(stop, (str, int, np.integer)) else list(stop)
    strings, ids = [], set()
    for s in items:
        if isinstance(s, str):
            if not s:
                raise ValueError("stop strings must not be empty")
            strings.append(s)
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            if not 0 <= int(s) < vocab:
                raise ValueError(f"stop token id {s} outside the vocabulary [0, {vocab})")
            ids.add(int(s))
        else:
            raise TypeError(f"stop must be strings and/or token ids, got {type(s).__name__}")
    return strings, ids


class TokenIdsOnly:
    """The tokenizer of an EdgeModel made with ``tokenizer=False``: prompts and outputs are token ids only
    (benchmarks, apps that tokenize elsewhere). ``encode`` refuses text; ``decode`` gives ""."""

    eos_token_id = None

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise ValueError("this EdgeModel has no tokenizer (tokenizer=False): give prompts as token ids, or load "
                         "it with a tokenizer to use text")

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return ""


def _load_tok(tokenizer: Any, backend: Backend) -> Any:
    from quamba_edge.tokenizer import Tokenizer, load_tokenizer

    if tokenizer is False:
        return TokenIdsOnly(backend.vocab_size)
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    src = tokenizer if tokenizer is not None else backend.tokenizer_dir
    if src is None or (tokenizer is None and not (Path(src) / "tokenizer.json").is_file()):
        raise ValueError(f"no tokenizer: {backend.path or 'the model'} has no tokenizer.json"
                         + (f" (looked in {src})" if src is not None else "") + "; pass tokenizer=DIR")
    return load_tokenizer(src)
