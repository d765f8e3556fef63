"""The ONNX Runtime backend against the torch quantized model: 64 greedy tokens identical for tiny
Mamba1 / Mamba2 W8A8 and W4A16 artifacts exported to ONNX; batching, streaming, state carry and
chunked prefill through ONNX Runtime; backend auto-selection for an export directory."""

from __future__ import annotations

import numpy as np
import pytest

from runtime_helpers import exported, have_recipes

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")
export = pytest.importorskip("quamba_edge.export")
if not hasattr(export, "export_model") or not have_recipes():
    pytest.skip("ONNX export or the quantization recipes are not available", allow_module_level=True)

from quamba_edge.runtime import EdgeModel  # noqa: E402

CASES = [("mamba1", "w8a8"), ("mamba2", "w8a8"), ("mamba1", "w4a16"), ("mamba2", "w4a16")]
PROMPT = "The interpreter reads"


@pytest.fixture(scope="module")
def pairs():
    """(arch, bits) -> (EdgeModel on onnxruntime from the export, EdgeModel on torch from the artifact)."""
    out = {}
    for arch, bits in CASES:
        art, exp, _ = exported(arch, bits)
        out[(arch, bits)] = (EdgeModel.load(exp, threads=1), EdgeModel.load(art, backend="torch"))
    return out


@pytest.mark.parametrize("arch,bits", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_greedy_64_tokens_identical_to_torch(pairs, arch, bits):
    ort_m, torch_m = pairs[(arch, bits)]
    assert ort_m.backend_name == "onnxruntime" and ort_m.precision == bits == torch_m.precision
    a = ort_m.generate(PROMPT, max_new_tokens=64, eos_token_id=None)
    b = torch_m.generate(PROMPT, max_new_tokens=64, eos_token_id=None)
    assert len(a.tokens) == 64
    assert a.tokens == b.tokens
    assert a.text == b.text
    assert a.stats.backend == "onnxruntime" and a.stats.precision == bits and a.stats.device == "cpu"


def test_auto_picks_onnxruntime_and_says_why(pairs):
    ort_m, _ = pairs[("mamba2", "w8a8")]
    assert "onnxruntime" in ort_m.backend_reason and "tensorrt" in ort_m.backend_reason
    with pytest.raises(ValueError, match="use backend='onnxruntime'"):
        EdgeModel.load(ort_m.backend.path, backend="torch")
    assert EdgeModel.load(ort_m.backend.path / "model.onnx").backend_name == "onnxruntime"


def test_ort_batch_stream_state_chunks(pairs):
    ort_m, torch_m = pairs[("mamba2", "w8a8")]
    prompts = ["The interpreter reads", "A list", "The interpreter writes"]
    batch = ort_m.generate(prompts, max_new_tokens=8, eos_token_id=None)
    for i, p in enumerate(prompts):
        assert batch.tokens[i] == ort_m.generate(p, max_new_tokens=8, eos_token_id=None).tokens
    s = ort_m.generate(PROMPT, max_new_tokens=8, eos_token_id=None, stream=True)
    assert "".join(s) == s.text == batch.text[0]
    # state carry: continuing equals one shot; and equals the torch model's continuation
    tok = ort_m.tokenizer
    cont = ort_m.generate(" then", max_new_tokens=8, state=s.state, eos_token_id=None)
    one = ort_m.generate(tok.encode(PROMPT) + s.tokens + tok.encode(" then"), max_new_tokens=8, eos_token_id=None)
    assert cont.tokens == one.tokens
    t_first = torch_m.generate(PROMPT, max_new_tokens=8, eos_token_id=None)
    assert torch_m.generate(" then", max_new_tokens=8, state=t_first.state, eos_token_id=None).tokens == cont.tokens
    # chunked prefill through ONNX Runtime: the same logits as the torch model chunked the same way
    ids = np.array([tok.encode(" ".join(prompts) * 3)])
    lo, st_o = ort_m.forward(ids, prefill_chunk=8)
    lt, _ = torch_m.forward(ids, prefill_chunk=8)
    np.testing.assert_allclose(lo, lt, rtol=1e-4, atol=1e-4)
    assert st_o.backend_state[0].dtype == np.int8  # W8A8 conv state
    # and the backend profile limit chunks too
    ort_m.backend.max_prefill_len = 8
    try:
        c = ort_m.generate(ids[0], max_new_tokens=4, eos_token_id=None)
    finally:
        ort_m.backend.max_prefill_len = None
    assert c.stats.prefill_chunks == -(-ids.shape[1] // 8)
    assert c.tokens == torch_m.generate(ids[0], max_new_tokens=4, eos_token_id=None, prefill_chunk=8).tokens


def test_ort_perplexity_matches_torch(pairs):
    ort_m, torch_m = pairs[("mamba1", "w8a8")]
    ids = np.array(ort_m.tokenizer.encode("The interpreter reads a list of words. " * 8))
    a = ort_m.perplexity(ids, window=32, max_windows=2)
    b = torch_m.perplexity(ids, window=32, max_windows=2)
    assert a["tokens"] == b["tokens"] == 62 and a["ppl"] == pytest.approx(b["ppl"], rel=1e-4)
