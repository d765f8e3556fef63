"""``quamba-edge build`` against a fake ``tensorrt`` module (tests/fake_tensorrt.py says what the fake proves
and what it cannot): the call sequence (strongly typed network, plugin library loaded before parsing), the
prefill / decode profiles of every real input of the exported graph, the atomic engine + sidecar, the timing
cache, and the refusals (no TensorRT, fp32 export, no plugin library, an engine that does not fit)."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("onnx")

import fake_tensorrt  # noqa: E402  (tests/ on sys.path)
from runtime_helpers import fp16_export, have_recipes  # noqa: E402

from quamba_edge.cli import main  # noqa: E402
from quamba_edge.runtime.backends.base import BackendUnavailableError  # noqa: E402
from quamba_edge.runtime.engine_build import (  # noqa: E402
    ENGINE_FILE,
    SIDECAR_FILE,
    EngineError,
    build_engine,
    check_engine,
)

pytestmark = pytest.mark.skipif(not have_recipes(), reason="needs the quantization recipes")


@pytest.fixture(scope="module", name="fp16_export")
def _fp16_export():
    return fp16_export("mamba2", "w8a8")


@pytest.fixture()
def lib(tmp_path):
    p = tmp_path / "libquamba_trt_plugins.so"
    p.write_bytes(b"\x7fELF fake plugin library")
    return p


@pytest.fixture(autouse=True)
def _fresh():
    fake_tensorrt.reset()
    yield
    fake_tensorrt.reset()


def _clean(export_dir):
    for f in (ENGINE_FILE, SIDECAR_FILE):
        (export_dir / f).unlink(missing_ok=True)


def test_build_sequence_profiles_and_sidecar(fp16_export, lib, tmp_path):
    _clean(fp16_export)
    cache = tmp_path / "timing.cache"
    out = build_engine(fp16_export, max_batch=4, max_seq=256, plugins=lib, workspace_mb=512,
                       timing_cache=cache, progress=False, trt=fake_tensorrt)
    assert out == fp16_export / ENGINE_FILE and out.read_bytes().startswith(b"FAKE-ENGINE")
    names = [c[0] for c in fake_tensorrt.calls]
    assert names.index("load_library") < names.index("parse_from_file") < names.index("build_serialized_network")
    assert ("create_network", 1 << 1) in fake_tensorrt.calls  # STRONGLY_TYPED
    side = json.loads((fp16_export / SIDECAR_FILE).read_text())
    assert side["max_batch"] == 4 and side["max_seq"] == 256 and side["tensorrt"] == fake_tensorrt.__version__
    prefill, decode = side["profiles"]
    assert prefill["input_ids"] == [[1, 2], [1, 256], [4, 256]] and decode["input_ids"] == [[1, 1], [4, 1], [4, 1]]
    assert len(prefill) == 1 + 2 * 2  # input_ids + conv / ssm state of both layers of the tiny model
    assert cache.read_bytes() == b"fake-timing-cache"
    assert check_engine(fp16_export, batch=4, seq_len=256, plugins=lib)["precision"] == "w8a8"


def test_engine_that_does_not_fit_is_refused(fp16_export, lib, tmp_path):
    _clean(fp16_export)
    with pytest.raises(EngineError, match="has no engine"):
        check_engine(fp16_export, plugins=lib)
    build_engine(fp16_export, max_batch=2, max_seq=64, plugins=lib, progress=False, trt=fake_tensorrt)
    with pytest.raises(EngineError, match="batch 3 is larger"):
        check_engine(fp16_export, batch=3, plugins=lib)
    with pytest.raises(EngineError, match="prefill_chunk"):
        check_engine(fp16_export, seq_len=65, plugins=lib)
    with pytest.raises(EngineError, match="TensorRT 10.3"):
        check_engine(fp16_export, plugins=lib, trt_version="10.3")
    other = tmp_path / "other" / "libquamba_trt_plugins.so"
    other.parent.mkdir()
    other.write_bytes(b"another build")
    with pytest.raises(EngineError, match="another plugin library"):
        check_engine(fp16_export, plugins=other)


def test_refusals(fp16_export, lib, tmp_path, monkeypatch):
    from runtime_helpers import exported

    _, fp32_export, _ = exported("mamba2", "w8a8")
    with pytest.raises(ValueError, match="--dtype fp16"):
        build_engine(fp32_export, plugins=lib, trt=fake_tensorrt)
    monkeypatch.delenv("QUAMBA_TRT_PLUGINS", raising=False)
    with pytest.raises(FileNotFoundError, match="QUAMBA_BUILD_TRT=ON"):
        build_engine(fp16_export, plugins=tmp_path / "missing.so", trt=fake_tensorrt)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as where TensorRT is absent
    with pytest.raises(BackendUnavailableError, match="JetPack"):
        build_engine(fp16_export, plugins=lib)


def test_unprepared_graph_would_be_refused(fp16_export, lib, monkeypatch):
    """Without ops.trt_fields.prepare_trt_graph the plugins miss their host-scale fields: the builder prepares."""
    import quamba_edge.runtime.engine_build as eb

    monkeypatch.setattr(eb, "_prepared_graph", lambda info, folder: info.onnx_path)
    with pytest.raises(EngineError, match="missing fields"):
        build_engine(fp16_export, plugins=lib, progress=False, trt=fake_tensorrt)


def test_parser_error_names_the_plugin_problem(fp16_export, lib, monkeypatch):
    monkeypatch.setattr(fake_tensorrt._Registry, "load_library", lambda self, path: None)  # loads nothing
    with pytest.raises(EngineError, match="Plugin not found"):
        build_engine(fp16_export, plugins=lib, progress=False, trt=fake_tensorrt)


def test_cli_build(fp16_export, lib, monkeypatch, capsys):
    _clean(fp16_export)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setenv("QUAMBA_TRT_PLUGINS", str(lib))
    assert main(["build", str(fp16_export), "--max-batch", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(fp16_export / ENGINE_FILE)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["build", str(fp16_export)]) == 1
    assert "TensorRT is not installed" in capsys.readouterr().err
