"""EdgeModel.load / generate: bad inputs give clear errors; the runtime imports no torch; auto picks a
backend and says why."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from quamba_edge.runtime import BACKEND_NAMES, BackendUnavailableError, EdgeModel
from runtime_helpers import artifact_dir, fp_dir, have_recipes, tiny_fp

needs_recipes = pytest.mark.skipif(not have_recipes(), reason="quantization recipes not available")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime-models")


@pytest.fixture(scope="module")
def m2():
    return EdgeModel.from_torch(tiny_fp("mamba2"))


def test_runtime_imports_no_torch():
    code = ("import sys, quamba_edge.runtime, quamba_edge.runtime.measure, "
            "quamba_edge.runtime.backends.onnxruntime_backend, quamba_edge.runtime.backends.tensorrt_backend; "
            "from quamba_edge.runtime.edge_model import classify_model_path; "
            "classify_model_path('mamba2-ref'); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_unknown_backend_lists_valid_ones(root):
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; valid backends: auto, onnxruntime, "
                                         "tensorrt, torch-cuda, torch"):
        EdgeModel.load(root / "does-not-matter", backend="tensorflow")
    assert BACKEND_NAMES == ("auto", "onnxruntime", "tensorrt", "torch-cuda", "torch")


def test_wrong_path_types(root, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(ValueError, match="is a file, not a model"):
        EdgeModel.load(f)
    with pytest.raises(ValueError, match="holds no model"):
        EdgeModel.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither an existing path nor a bundled model"):
        EdgeModel.load(tmp_path / "missing")


def test_auto_picks_torch_and_says_why(root):
    m = EdgeModel.load(fp_dir(root, "mamba1"))
    assert m.backend_name == ("torch-cuda" if torch.cuda.is_available() else "torch")
    assert "FP model (not exported) runs on the torch reference" in m.backend_reason
    if not torch.cuda.is_available():
        assert "no CUDA here" in m.backend_reason
        with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
            EdgeModel.load(fp_dir(root, "mamba1"), backend="torch-cuda")
    assert m.precision == "fp16"
    assert m.info()["compute_dtype"] == ("float16" if torch.cuda.is_available() else "float32")
    assert m.generate("The", max_new_tokens=3).stats.new_tokens <= 3


def test_backend_that_cannot_run_this_kind_of_model(root, tmp_path):
    d = fp_dir(root, "mamba1")
    for b in ("onnxruntime", "tensorrt"):
        with pytest.raises(ValueError, match=r"runs an exported model .* run `quamba-edge export .* --out DIR` first"):
            EdgeModel.load(d, backend=b)
    fake = tmp_path / "exp"
    fake.mkdir()
    (fake / "export.json").write_text("{}")
    (fake / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="use backend='onnxruntime'"):
        EdgeModel.load(fake, backend="torch")
    with pytest.raises(BackendUnavailableError, match="backend 'tensorrt' is not available: TensorRT is not installed"):
        EdgeModel.load(fake, backend="tensorrt")


@needs_recipes
def test_artifact_loads_on_torch_and_refuses_onnxruntime(root):
    art = artifact_dir(root, "mamba2", "w8a8")
    m = EdgeModel.load(art, backend="torch")
    assert m.precision == "w8a8" and "quantized artifact" in m.backend.description
    with pytest.raises(ValueError, match="is a quantized artifact: run `quamba-edge export"):
        EdgeModel.load(art, backend="onnxruntime")


def test_prompt_longer_than_allowed(root, m2):
    m = EdgeModel.load(fp_dir(root, "mamba2"), max_prompt_tokens=4)
    with pytest.raises(ValueError, match=r"the prompt has \d+ tokens, more than max_prompt_tokens=4"):
        m.generate("one two three four five six seven")
    with pytest.raises(ValueError, match=r"prompt 1 has \d+ tokens, more than max_prompt_tokens=4"):
        m.generate(["one", "one two three four five six seven"])
    assert m.generate("one two", max_new_tokens=2).stats.new_tokens <= 2
    with pytest.raises(ValueError, match="max_prompt_tokens must be a positive integer"):
        EdgeModel.from_torch(tiny_fp("mamba2"), max_prompt_tokens=0)


def test_bad_generate_arguments(m2):
    other = EdgeModel.from_torch(tiny_fp("mamba1"))
    st = m2.generate("The", max_new_tokens=2).state
    cases = [
        (dict(prompt=""), ValueError, "the prompt is empty"),
        (dict(prompt=[]), ValueError, "empty list of prompts"),
        (dict(prompt=[1, 99999]), ValueError, r"token id\(s\) \[99999\] outside the vocabulary"),
        (dict(prompt=3.5), TypeError, "prompt must be a string"),
        (dict(prompt=["a", "b"], stream=True), ValueError, "stream=True takes one prompt"),
        (dict(prompt="a", max_new_tokens=-1), ValueError, "max_new_tokens must be an integer >= 0"),
        (dict(prompt="a", do_sample=True, top_p=2.0), ValueError, "top_p must be in"),
        (dict(prompt="a", stop=[""]), ValueError, "stop strings must not be empty"),
        (dict(prompt=["a", "b"], state=st), ValueError, "state holds 1 sequence"),
        (dict(prompt="a", state="nope"), TypeError, "state must be the GenerationState"),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            m2.generate(**kw)
    with pytest.raises(ValueError, match="state was made by another model"):
        other.generate("a", state=st)


def test_classify_reads_only_config(tmp_path):
    from quamba_edge.runtime.edge_model import classify_model_path

    (tmp_path / "config.json").write_text(json.dumps({"quamba_edge_artifact": 1}))
    assert classify_model_path(tmp_path) == ("artifact", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    assert classify_model_path(tmp_path)[0] == "fp"
    assert classify_model_path("mamba2-ref")[0] == "fp"
