"""CUDA-graph decode for the torch-cuda backend: one graph per batch-size bucket replays a whole decode step.

A decode step of a Mamba LM is a few hundred small kernels; launched one by one from Python, each costs
more host time than the GPU needs for it (shared spec/measured.md: 46-230x the weight-read floor). A graph
replays the step with no Python in between. Per bucket (batch 1, 2, 4, ... 64; a smaller batch runs in the
next larger bucket, the extra rows computing on whatever they hold and being dropped):

* static inputs: token ids ``[Bb, 1]`` and the recurrent state (``model.allocate_state(Bb)``);
* the graph runs ``model(ids, state, return_state=True)`` (every op as it runs eagerly: our kernels where
  they are on, torch ops otherwise) and copies the new state over the static one, so the next replay
  continues from it with nothing copied in;
* static output: the last position's logits as float32 ``[Bb, 1, V]``.

The state a replay returns is a :class:`GraphState`: a view of the bucket's static buffers, valid until that
bucket runs again. Only a caller that *donates* its input state (the decode loop, which never reuses it) gets
one; every other use of a stale view raises instead of reading overwritten data, and
:meth:`CudaGraphDecoder.detach` turns a view into an ordinary state the caller may keep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from quamba_edge.models.state import ModelState

__all__ = ["BUCKETS", "CudaGraphDecoder", "GraphState", "graphs_disabled"]

BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_WARMUP = 2  # eager runs before capture: lazy caches (row scales, range checks) and cuBLAS workspaces fill here


def graphs_disabled() -> bool:
    """True when ``QUAMBA_CUDA_GRAPHS`` is 0 / false / off / no: decode steps run eagerly."""
    return os.environ.get("QUAMBA_CUDA_GRAPHS", "").strip().lower() in ("0", "false", "off", "no")


class _BucketGraph:
    """The captured step of one batch bucket and its static buffers."""

    def __init__(self, model: Any, bucket: int, pool: Any, context: Callable[[], Any]) -> None:
        self.bucket = bucket
        self.generation = 0
        dev = model.device
        self.ids = torch.zeros(bucket, 1, dtype=torch.int64, device=dev)
        self.state: ModelState = model.allocate_state(bucket)
        self.graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with context(), torch.cuda.stream(side):
            for _ in range(_WARMUP):
                model(self.ids, self.state, return_state=True, num_last_tokens=1)
        torch.cuda.current_stream(dev).wait_stream(side)
        with context(), torch.cuda.graph(self.graph, pool=pool):
            logits, new = model(self.ids, self.state, return_state=True, num_last_tokens=1)
            for dst, src in zip((*self.state.conv, *self.state.ssm), (*new.conv, *new.ssm)):
                dst.copy_(src)
            self.logits = logits.float()
        torch.cuda.synchronize(dev)

    def rows(self, batch: int) -> ModelState:
        """The first ``batch`` rows of the static state (views)."""
        return ModelState([t[:batch] for t in self.state.conv], [t[:batch] for t in self.state.ssm])


@dataclass(eq=False)
class GraphState:
    """Rows ``[:batch]`` of a bucket graph's static state after replay ``generation`` of that graph."""

    owner: _BucketGraph
    generation: int
    batch: int

    @property
    def valid(self) -> bool:
        return self.generation == self.owner.generation

    def model_state(self) -> ModelState:
        """The rows as a ModelState of views; raises when the graph has run again since."""
        if not self.valid:
            raise RuntimeError("this decode state lived in a CUDA graph's buffers and was overwritten by a later "
                               "step; keep a state with backend.detach_state(state) before stepping on")
        return self.owner.rows(self.batch)

    @property
    def batch_size(self) -> int:
        return self.batch


class CudaGraphDecoder:
    """Lazily captured decode graphs of ``model`` per batch bucket (module docstring). ``context`` is entered
    around warm-up and capture (inference mode, the kernel dispatch)."""

    def __init__(self, model: Any, context: Callable[[], Any]) -> None:
        self.model = model
        self.context = context
        self.graphs: dict[int, _BucketGraph] = {}
        self.failed: dict[int, str] = {}
        self.pool = torch.cuda.graph_pool_handle()  # one pool: buckets never run concurrently
        self.replays = 0

    @staticmethod
    def bucket_of(batch: int) -> int | None:
        return next((b for b in BUCKETS if b >= batch), None)

    def graph_for(self, batch: int) -> _BucketGraph | None:
        """The bucket graph for ``batch`` rows (captured on first use), or None (too large, capture failed)."""
        b = self.bucket_of(batch)
        if b is None or b in self.failed:
            return None
        g = self.graphs.get(b)
        if g is None:
            try:
                g = self.graphs[b] = _BucketGraph(self.model, b, self.pool, self.context)
            except RuntimeError as e:  # an op that cannot be captured: this bucket runs eagerly, with the reason
                torch.cuda.synchronize()
                self.failed[b] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                return None
        return g

    def step(self, ids: torch.Tensor, state: ModelState | GraphState) -> tuple[torch.Tensor, GraphState] | None:
        """One donated decode step: ``ids`` int64 ``[B, 1]`` (any device), ``state`` the state before it
        (not used again by the caller). Returns (float32 logits ``[B, 1, V]`` on the GPU, the new state as a
        GraphState), or None when no graph can run this batch (the caller runs it eagerly)."""
        batch = int(ids.shape[0])
        g = self.graph_for(batch)
        if g is None:
            return None
        if isinstance(state, GraphState) and state.owner is g and state.valid and state.batch == batch:
            pass  # the state already sits in this graph's buffers
        else:
            src = state.model_state() if isinstance(state, GraphState) else state
            for dst, s in zip((*g.state.conv, *g.state.ssm), (*src.conv, *src.ssm)):
                dst[:batch].copy_(s)
        g.ids[:batch].copy_(ids)
        g.graph.replay()
        g.generation += 1
        self.replays += 1
        return g.logits[:batch], GraphState(g, g.generation, batch)

    def detach(self, state: Any) -> Any:
        """A state the caller may keep: a GraphState copied out of the graph's buffers; others unchanged."""
        return state.model_state().clone() if isinstance(state, GraphState) else state

    def note(self) -> str:
        """One line for logs: which buckets were captured, and why any could not be."""
        got = ", ".join(str(b) for b in sorted(self.graphs)) or "none yet"
        txt = f"CUDA-graph decode (batch buckets captured: {got})"
        if self.failed:
            txt += "; eager for " + "; ".join(f"bucket {b}: {why}" for b, why in sorted(self.failed.items()))
        return txt
