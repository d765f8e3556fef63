"""EdgeModel.generate on tiny random models through the torch backend: greedy = the argmax loop,
streaming = non-streaming, batched = individual, state carry = one shot, chunked prefill = one shot,
stop / eos, stats; the same rules hold for every backend (the ONNX Runtime tests reuse them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quamba_edge.runtime import EdgeModel, GenerationStats, GenerationStream
from runtime_helpers import have_recipes, tiny_fp, tiny_quant

PROMPTS = ["The interpreter reads", "A list", "The interpreter writes", "Héllo 日本語 🎉 wörld"]


def _models():
    out = [pytest.param(("mamba1", None), id="mamba1-fp"), pytest.param(("mamba2", None), id="mamba2-fp")]
    if have_recipes():
        out += [pytest.param(("mamba2", "w8a8"), id="mamba2-w8a8"),
                pytest.param(("mamba1", "w4a16"), id="mamba1-w4a16")]
    return out


@pytest.fixture(scope="module", params=_models())
def model(request) -> EdgeModel:
    arch, bits = request.param
    return EdgeModel.from_torch(tiny_fp(arch) if bits is None else tiny_quant(arch, bits))


@pytest.fixture(scope="module")
def m2() -> EdgeModel:
    return EdgeModel.from_torch(tiny_fp("mamba2"))


def _argmax_loop(torch_model, ids: list[int], n: int) -> list[int]:
    """Greedy decoding written directly against the torch model (prefill, then step)."""
    with torch.no_grad():
        logits, state = torch_model(torch.tensor([ids]), return_state=True)
        nxt = int(logits[0, -1].argmax())
        out = [nxt]
        for _ in range(n - 1):
            logits, state = torch_model.step(torch.tensor([nxt]), state)
            nxt = int(logits[0].argmax())
            out.append(nxt)
    return out


# ---- greedy, streaming, batching ----------------------------------------------------------------


def test_greedy_equals_argmax_loop(model):
    ids = model.tokenizer.encode(PROMPTS[0])
    out = model.generate(PROMPTS[0], max_new_tokens=12, eos_token_id=None)
    assert out.tokens == _argmax_loop(model.backend.model, ids, 12)
    assert out.prompt_ids == ids and out.finish_reason == "length"
    assert out.text == model.tokenizer.decode(out.tokens, skip_special_tokens=True)
    # token ids in, same result
    assert model.generate(ids, max_new_tokens=12, eos_token_id=None).tokens == out.tokens
    assert model.generate(np.array(ids), max_new_tokens=12, eos_token_id=None).tokens == out.tokens


def test_token_ids_without_a_tokenizer(m2):
    """tokenizer=False: token ids in and out (benchmarks, apps that tokenize elsewhere); text is refused."""
    bare = EdgeModel.from_torch(m2.backend.model, tokenizer=False)
    ids = m2.tokenizer.encode(PROMPTS[0])
    out = bare.generate(ids, max_new_tokens=10, eos_token_id=None)
    assert out.tokens == m2.generate(ids, max_new_tokens=10, eos_token_id=None).tokens and out.text == ""
    batch = bare.generate([ids, ids[:3]], max_new_tokens=4, eos_token_id=None, stop=[out.tokens[2]])
    assert batch.tokens[0] == out.tokens[:3] and batch.finish_reason[0] == "stop"
    with pytest.raises(ValueError, match="no tokenizer"):
        bare.generate("text", max_new_tokens=2)
    with pytest.raises(ValueError, match="stop strings need a tokenizer"):
        bare.generate(ids, max_new_tokens=2, stop="x")


def test_stream_equals_non_stream(model):
    for prompt, kw in ((PROMPTS[3], {}), (PROMPTS[0], dict(do_sample=True, temperature=1.3, top_k=0, seed=7))):
        full = model.generate(prompt, max_new_tokens=16, eos_token_id=None, **kw)
        s = model.generate(prompt, max_new_tokens=16, eos_token_id=None, stream=True, **kw)
        assert isinstance(s, GenerationStream)
        with pytest.raises(RuntimeError, match="iterate it to the end"):
            _ = s.output
        pieces = list(s)
        assert all(pieces)  # (a random model may emit invalid UTF-8: see test_runtime_sampling for clean text)
        assert "".join(pieces) == full.text == s.text
        assert s.tokens == full.tokens and s.stats.new_tokens == 16


def test_batched_equals_individual(model):
    prompts = PROMPTS[:3]  # lengths 3, 2, 3: two prefill groups, one batched decode
    batch = model.generate(prompts, max_new_tokens=10, eos_token_id=None)
    assert isinstance(batch.text, list) and len(batch.text) == 3
    for i, p in enumerate(prompts):
        one = model.generate(p, max_new_tokens=10, eos_token_id=None)
        assert batch.tokens[i] == one.tokens, p
        assert batch.text[i] == one.text
    assert batch.stats.batch_size == 3 and batch.stats.new_tokens == 30
    assert batch.stats.prefill_chunks == 2  # one forward per prompt length


def test_batched_rows_finish_independently(m2):
    prompts = PROMPTS[:3]
    ref = [m2.generate(p, max_new_tokens=8, eos_token_id=None).tokens for p in prompts]
    eos = ref[1][2]  # the third token of row 1 ends row 1 (and any row that produces it)
    out = m2.generate(prompts, max_new_tokens=8, eos_token_id=eos)
    for i in range(3):
        cut = ref[i].index(eos) + 1 if eos in ref[i] else 8
        assert out.tokens[i] == ref[i][:cut]
        assert out.finish_reason[i] == ("eos" if eos in ref[i] else "length")
    # the state of a row that finished early continues like that row alone
    nxt = m2.generate(["!", "!", "!"], max_new_tokens=4, state=out.state, eos_token_id=None)
    for i in range(3):
        alone = m2.generate(out.state.token_ids[i] + m2.tokenizer.encode("!"), max_new_tokens=4, eos_token_id=None)
        assert nxt.tokens[i] == alone.tokens


# ---- state carry and chunked prefill ------------------------------------------------------------


def test_state_carry_equals_one_shot(model):
    tok = model.tokenizer
    first = model.generate(PROMPTS[0], max_new_tokens=6, eos_token_id=None)
    assert first.state.token_ids[0] == tok.encode(PROMPTS[0]) + first.tokens
    assert first.state.pending == [[first.tokens[-1]]]
    cont = model.generate(" and then", max_new_tokens=8, state=first.state, eos_token_id=None)
    one_shot = model.generate(tok.encode(PROMPTS[0]) + first.tokens + tok.encode(" and then"), max_new_tokens=8,
                              eos_token_id=None)
    assert cont.tokens == one_shot.tokens
    # the prefill of the continuation covered only the pending token and the new prompt
    assert cont.stats.prompt_tokens == 1 + len(tok.encode(" and then"))
    # a state can be continued from twice (it is not consumed), and with no new prompt
    again = model.generate(" and then", max_new_tokens=8, state=first.state, eos_token_id=None)
    assert again.tokens == cont.tokens
    bare = model.generate(None, max_new_tokens=5, state=first.state, eos_token_id=None)
    assert bare.tokens == model.generate(tok.encode(PROMPTS[0]), max_new_tokens=11, eos_token_id=None).tokens[6:]


def test_prefill_only_then_continue(m2):
    tok = m2.tokenizer
    sys_out = m2.generate("You are a helpful manual.", max_new_tokens=0)
    assert sys_out.tokens == [] and sys_out.text == "" and sys_out.state.pending == [[]]
    cont = m2.generate(" Question:", max_new_tokens=6, state=sys_out.state, eos_token_id=None)
    ref = m2.generate(tok.encode("You are a helpful manual.") + tok.encode(" Question:"), max_new_tokens=6,
                      eos_token_id=None)
    assert cont.tokens == ref.tokens


def _int8_state(model: EdgeModel) -> bool:
    st = model.backend.model.allocate_state(1)
    return any(t.dtype == torch.int8 for t in st.ssm)


def _manual_chain(torch_model, ids: np.ndarray, chunk: int) -> np.ndarray:
    """Logits of ``ids`` fed ``chunk`` tokens at a time straight through the torch model."""
    out, state = [], None
    with torch.no_grad():
        for s in range(0, ids.shape[1], chunk):
            logits, state = torch_model(torch.from_numpy(ids[:, s:s + chunk]), state, return_state=True)
            out.append(logits.float().numpy())
    return np.concatenate(out, axis=1)


def test_chunked_prefill_equals_one_shot(model):
    """Chunked prefill carries the state between chunks. For an FP model (fp32 state) it equals one-shot
    prefill to float rounding. A quantized model carries its state in the recipe's state dtype (fp16 for
    W4A16, int8 for W8A8 / W4A8, as in decode), so there each chunk boundary adds one rounding of the
    state: chunked prefill equals chaining the model's own calls exactly, and one-shot prefill up to
    that rounding."""
    tok = model.tokenizer
    ids = np.array([tok.encode(" ".join(PROMPTS) * 2)])
    assert ids.shape[1] > 40
    whole, st_whole = model.forward(ids)
    chunked, st_chunked = model.forward(ids, prefill_chunk=7)
    np.testing.assert_array_equal(chunked, _manual_chain(model.backend.model, ids, 7))
    exact = model.precision == "fp16"
    if exact:
        np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-4)
    elif not _int8_state(model):
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=2e-2 * whole.std())
    else:  # one int8 rounding of the SSM state per boundary
        assert np.abs(chunked - whole).max() < 0.25 * whole.std()
        assert (chunked.argmax(-1) == whole.argmax(-1)).mean() > 0.9
    np.testing.assert_allclose(chunked[:, :7], whole[:, :7], rtol=1e-4, atol=1e-4)  # same before the first boundary
    # generate with a prefill chunk (per call, per model, or the backend's profile limit)
    ref = model.generate(ids[0], max_new_tokens=8, eos_token_id=None, prefill_chunk=None if exact else 5)
    c1 = model.generate(ids[0], max_new_tokens=8, eos_token_id=None, prefill_chunk=5)
    assert c1.tokens == ref.tokens and c1.stats.prefill_chunks == -(-ids.shape[1] // 5)
    old = model.backend.max_prefill_len
    model.backend.max_prefill_len = 16
    try:
        c2 = model.generate(ids[0], max_new_tokens=8, eos_token_id=None)
        c3 = model.generate(ids[0], max_new_tokens=8, eos_token_id=None, prefill_chunk=64)  # profile still wins
    finally:
        model.backend.max_prefill_len = old
    assert c2.stats.prefill_chunks == c3.stats.prefill_chunks == -(-ids.shape[1] // 16)
    assert c2.tokens == c3.tokens
    if exact:
        assert c2.tokens == ref.tokens
        a = model.generate("!", max_new_tokens=8, state=st_whole, eos_token_id=None)
        b = model.generate("!", max_new_tokens=8, state=st_chunked, eos_token_id=None)
        assert a.tokens == b.tokens


def test_edge_perplexity_matches_eval(model):
    from quamba_edge.quant.evaluate import perplexity

    ids = torch.tensor(model.tokenizer.encode(" ".join(PROMPTS) * 6))
    ref = perplexity(model.backend.model, ids, window=24, max_windows=3)
    chunk = 10 if model.precision == "fp16" else None  # (chunking a quantized model rounds its state)
    got = model.perplexity(ids.numpy(), window=24, max_windows=3, prefill_chunk=chunk)
    assert got["windows"] == ref["windows"] == 3 and got["tokens"] == ref["tokens"]
    assert got["ppl"] == pytest.approx(ref["ppl"], rel=1e-4)
    assert got["top1"] == pytest.approx(ref["top1"], abs=1.5 / ref["tokens"])


# ---- stop, eos, sampling, stats -----------------------------------------------------------------


def test_eos_and_stop(m2):
    tok = m2.tokenizer
    ref = m2.generate(PROMPTS[0], max_new_tokens=12, eos_token_id=None)
    out = m2.generate(PROMPTS[0], max_new_tokens=12, eos_token_id=ref.tokens[3])
    assert out.finish_reason == "eos" and out.tokens == ref.tokens[:ref.tokens.index(ref.tokens[3]) + 1]
    out = m2.generate(PROMPTS[0], max_new_tokens=12, eos_token_id=None, stop=[ref.tokens[4]])
    assert out.finish_reason == "stop" and out.tokens[-1] == ref.tokens[4]
    # a stop string spanning two tokens; the text keeps it (transformers' stop_strings)
    pieces = [tok.decode([t]) for t in ref.tokens]
    target = next(i for i in range(2, 11) if pieces[i].strip() and pieces[i + 1].strip())
    stop = pieces[target][-1] + pieces[target + 1][:1]
    out = m2.generate(PROMPTS[0], max_new_tokens=12, eos_token_id=None, stop=["\x00never", stop])
    assert out.finish_reason == "stop" and stop in out.text
    assert out.tokens == ref.tokens[:len(out.tokens)] and len(out.tokens) <= target + 2
    # the default eos is the tokenizer's
    assert m2.eos_token_id == tok.eos_token_id


def test_sampling_is_seeded(m2):
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.5, top_k=0, eos_token_id=None)
    a = m2.generate(PROMPTS[0], seed=3, **kw)
    assert a.tokens == m2.generate(PROMPTS[0], seed=3, **kw).tokens
    assert a.tokens != m2.generate(PROMPTS[0], seed=4, **kw).tokens
    greedy = m2.generate(PROMPTS[0], max_new_tokens=12, eos_token_id=None)
    assert m2.generate(PROMPTS[0], max_new_tokens=12, do_sample=True, temperature=0, eos_token_id=None).tokens \
        == greedy.tokens
    assert m2.generate(PROMPTS[0], max_new_tokens=12, do_sample=True, top_k=1, seed=9, eos_token_id=None).tokens \
        == greedy.tokens
    with pytest.warns(UserWarning, match="do_sample is False"):
        m2.generate(PROMPTS[0], max_new_tokens=2, temperature=0.7)


def test_stats_fields(m2):
    out = m2.generate(PROMPTS[:2], max_new_tokens=5, eos_token_id=None)
    s = out.stats
    assert isinstance(s, GenerationStats)
    assert s.ttft_ms > 0 and s.tpot_ms > 0 and s.tokens_per_s > 0 and s.total_ms >= s.ttft_ms
    assert s.prompt_tokens == sum(len(m2.tokenizer.encode(p)) for p in PROMPTS[:2]) and s.new_tokens == 10
    assert s.backend == "torch" and s.precision == "fp16" and s.device == "cpu" and s.compute_dtype == "float32"
    assert s.peak_memory_mb is not None and s.peak_memory_mb > 10 and s.memory_kind == "process peak RSS"
    d = s.to_dict()
    assert {"ttft_ms", "tpot_ms", "tokens_per_s", "peak_memory_mb", "backend", "precision"} <= set(d)
    assert "TTFT" in s.summary()
