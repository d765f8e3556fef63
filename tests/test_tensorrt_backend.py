"""The TensorRT backend of EdgeModel against a fake ``tensorrt`` (tests/fake_tensorrt.py) whose "engine" runs
the exported graph with ONNX Runtime, over a fake device memory. What this proves: the backend's sidecar
checks, profile choice (prefill L >= 2 / decode L = 1), shapes and addresses, host <-> device copies, the
device-resident double-buffered decode state, chunked prefill within the profile, batch limits, and that
generation through it equals the ONNX Runtime backend token for token. What it cannot: anything TensorRT
itself does (our plugins under the real runtime, fp16 numerics of the engine, speed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import fake_tensorrt  # noqa: E402  (tests/ on sys.path)
from runtime_helpers import exported, fp16_export, have_recipes  # noqa: E402

from quamba_edge.runtime import EdgeModel  # noqa: E402
from quamba_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from quamba_edge.runtime.backends.tensorrt_backend import TensorRTBackend  # noqa: E402
from quamba_edge.runtime.engine_build import EngineError, build_engine  # noqa: E402

pytestmark = pytest.mark.skipif(not have_recipes(), reason="needs the quantization recipes")
VOCAB = 8192


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(TensorRT backend on the fp16 export with a fake engine, ONNX Runtime backend on the fp32 export of the
    same artifact: the fake engine executes through it)."""
    fp16 = fp16_export("mamba2", "w8a8", tag="trt-backend")  # its own: the engine is built into it
    lib = tmp_path_factory.mktemp("lib") / "libquamba_trt_plugins.so"
    lib.write_bytes(b"fake plugin library")
    fake_tensorrt.reset()
    build_engine(fp16, max_batch=4, max_seq=16, plugins=lib, progress=False, trt=fake_tensorrt)
    _, fp32, _ = exported("mamba2", "w8a8")
    ort = OnnxRuntimeBackend(fp32)
    names = ort._out_names
    fake_tensorrt.executor = lambda feeds: dict(zip(names, ort.session.run(names, feeds)))
    fake_tensorrt.memory = fake_tensorrt.FakeDeviceMemory()
    be = TensorRTBackend(fp16, plugins=lib, trt=fake_tensorrt, memory=fake_tensorrt.memory)
    return be, ort, lib, fp16


def _ids(b, length, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, (b, length)).astype(np.int64)


def test_forward_and_donated_decode_equal_onnxruntime(setup):
    be, ort, _, _ = setup
    ids = _ids(3, 11)
    lt, st = be.forward(ids, None, last_only=True)
    lo, so = ort.forward(ids, None, last_only=True)
    np.testing.assert_array_equal(lt, lo)
    assert all(np.array_equal(a, b) for a, b in zip(st, so))
    fake_tensorrt.calls.clear()
    for step in range(6):  # the decode loop donates its state: it stays on the device between steps
        nxt = lo[:, -1].argmax(-1).reshape(-1, 1)
        lt, st = be.decode_step(nxt, st)
        lo, so = ort.forward(nxt, so, last_only=True)
        np.testing.assert_array_equal(lt, lo)
    assert [c[1] for c in fake_tensorrt.calls if c[0] == "profile"] == [1] * 6  # the decode profile
    kept = be.detach_state(st)
    assert all(np.array_equal(a, b) for a, b in zip(kept, so))
    be.decode_step(np.zeros((3, 1), np.int64), st)
    with pytest.raises(RuntimeError, match="overwritten by a later step"):
        be.select_state(st, [0])


def test_generate_equals_onnxruntime_with_chunked_prefill(setup):
    be, ort, _, fp16 = setup
    trt_em = EdgeModel(be, _tok(fp16))
    ort_em = EdgeModel(ort, _tok(fp16))
    prompts = [_ids(1, 37, 1)[0].tolist(), _ids(1, 5, 2)[0].tolist()]  # 37 > max_seq 16: fed in chunks
    a = trt_em.generate(prompts, max_new_tokens=12, eos_token_id=None)
    b = ort_em.generate(prompts, max_new_tokens=12, eos_token_id=None)
    assert a.tokens == b.tokens and a.stats.prefill_chunks > 2
    more_a = trt_em.generate(None, max_new_tokens=4, eos_token_id=None, state=a.state)
    more_b = ort_em.generate(None, max_new_tokens=4, eos_token_id=None, state=b.state)
    assert more_a.tokens == more_b.tokens


def test_limits_and_mismatches(setup, tmp_path):
    be, _, lib, fp16 = setup
    with pytest.raises(EngineError, match="batch 5 is larger"):
        be.forward(_ids(5, 3), None)
    with pytest.raises(EngineError, match="feed them in chunks"):
        be.forward(_ids(1, 17), None)
    other = tmp_path / "libquamba_trt_plugins.so"
    other.write_bytes(b"a different build")
    with pytest.raises(EngineError, match="another plugin library"):
        TensorRTBackend(fp16, plugins=other, trt=fake_tensorrt, memory=fake_tensorrt.FakeDeviceMemory())


def _tok(export_dir):
    from quamba_edge.tokenizer import load_tokenizer

    return load_tokenizer(export_dir / "tokenizer")


def test_auto_picks_tensorrt_for_an_export_with_an_engine(setup, monkeypatch):
    import sys

    from quamba_edge.runtime.edge_model import _select_backend

    _, _, _, fp16 = setup
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object() if name == "tensorrt" else None)
    name, why = _select_backend("export", fp16, "auto")
    assert name == "tensorrt" and "engine found" in why


@pytest.fixture
def own_backend(setup, monkeypatch):
    """A fresh backend on the same engine over a device memory of the test's choosing (the fake context reads
    and writes the module's ``memory``: swapped for the test, restored after)."""
    _, ort, lib, fp16 = setup
    made = []

    def make(mem):
        monkeypatch.setattr(fake_tensorrt, "memory", mem)
        be = TensorRTBackend(fp16, plugins=lib, trt=fake_tensorrt, memory=mem)
        made.append(be)
        return be

    yield make, ort
    for be in made:
        be.close()


def _decode_against_onnxruntime(be, ort, batch, steps, seed):
    """Prefill then ``steps`` donated decode steps on both backends; every step's logits equal."""
    lo, so = ort.forward(_ids(batch, 5, seed), None, last_only=True)
    _, st = be.forward(_ids(batch, 5, seed), None, last_only=True)
    for _ in range(steps):
        nxt = lo[:, -1].argmax(-1).reshape(-1, 1)
        lt, st = be.decode_step(nxt, st)
        lo, so = ort.forward(nxt, so, last_only=True)
        np.testing.assert_array_equal(lt, lo)
    assert all(np.array_equal(a, b) for a, b in zip(be.detach_state(st), so))


def test_decode_replays_cuda_graphs_per_batch_and_slot(own_backend):
    """The first step of each (batch, state slot) runs eagerly and is captured; later steps replay the graph
    (nothing executes outside it), re-bound before each replay; a prefill between decodes changes nothing."""
    make, ort = own_backend
    be = make(fake_tensorrt.FakeDeviceMemory())
    fake_tensorrt.calls.clear()
    _decode_against_onnxruntime(be, ort, batch=3, steps=6, seed=4)
    kinds = [c[0] for c in fake_tensorrt.calls if c[0] in ("execute", "capture", "graph")]
    # prefill, 2 x (eager + capture), then 4 replays (each replay executes the recorded work once)
    assert kinds == ["execute", "execute", "capture", "execute", "capture"] + ["graph", "execute"] * 4
    assert [c[1] for c in fake_tensorrt.calls if c[0] == "profile"][-4:] == [1] * 4
    _decode_against_onnxruntime(be, ort, batch=2, steps=3, seed=5)  # another batch: its own graphs
    _decode_against_onnxruntime(be, ort, batch=3, steps=3, seed=6)  # back: replays from the first step
    assert "CUDA-graph decode (4 captured: B=2/slot 0, B=2/slot 1, B=3/slot 0, B=3/slot 1)" == be.graphs_note


def test_a_refused_capture_leaves_decode_eager(own_backend):
    make, ort = own_backend
    mem = fake_tensorrt.FakeDeviceMemory()
    mem.fail_capture = True
    be = make(mem)
    _decode_against_onnxruntime(be, ort, batch=2, steps=4, seed=7)
    assert be.graphs_note.startswith("eager decode: capture failed (RuntimeError: CUDA error 901")
    assert mem.capturing is None


@pytest.mark.parametrize("why", ["env", "memory"])
def test_graphs_off_by_env_or_without_stream_capture(own_backend, monkeypatch, why):
    make, ort = own_backend
    if why == "env":
        monkeypatch.setenv("QUAMBA_CUDA_GRAPHS", "0")
    be = make(fake_tensorrt.FakeDeviceMemory() if why == "env" else fake_tensorrt.FakeDeviceMemoryNoCapture())
    fake_tensorrt.calls.clear()
    _decode_against_onnxruntime(be, ort, batch=2, steps=3, seed=8)
    assert not [c for c in fake_tensorrt.calls if c[0] in ("capture", "graph")]
    assert be.graphs_note == ("eager decode: QUAMBA_CUDA_GRAPHS=0" if why == "env" else
                              "eager decode: fake-device-memory-without-capture offers no stream capture "
                              "(cuda-bindings does)")
