"""CUDA-graph decode on torch-cuda (quamba_edge/runtime/backends/cuda_graphs.py) against the eager path
(``QUAMBA_CUDA_GRAPHS=0``) on the same GPU: the tiny FP and quantized models of every recipe.

A replay runs the kernels the eager step runs, in the same order, on the same inputs: logits must agree to
fp32 rounding of the copies (we allow 1e-5 of max|logit|, reported) and greedy tokens must be identical,
including over 4096 tokens (no drift from the in-place state), across batch buckets (3 rows run in bucket 4)
and when a generation continues from a returned state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from kernel_dispatch_helpers import CASE_IDS, CASES, VOCAB, tiny_fp, tiny_quantized  # tests/ on sys.path

pytestmark = pytest.mark.gpu

FP_CASES = [("fp", "fp16", a) for a in ("mamba1", "mamba2")]
ALL = FP_CASES + CASES
ALL_IDS = ["fp16-" + c[2] for c in FP_CASES] + CASE_IDS


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """case -> the tiny model on CUDA (quantized ones through an artifact, as users load them)."""
    from quamba_edge.quant.artifact import load_artifact, save_artifact
    from quamba_edge.tokenizer import bundled_assets_dir

    root, cache = tmp_path_factory.mktemp("graph-models"), {}

    def get(case):
        if case not in cache:
            if case[0] == "fp":
                cache[case] = tiny_fp(case[2]).to("cuda", torch.float16).eval()
            else:
                path = root / "-".join(case)
                save_artifact(tiny_quantized(*case), path, tokenizer_dir=bundled_assets_dir() / "tokenizer")
                cache[case] = load_artifact(path, device="cuda")
        return cache[case]

    return get


def _edge(model, graphs: bool, monkeypatch):
    from quamba_edge.runtime import EdgeModel

    if graphs:
        monkeypatch.delenv("QUAMBA_CUDA_GRAPHS", raising=False)
    else:
        monkeypatch.setenv("QUAMBA_CUDA_GRAPHS", "0")
    em = EdgeModel.from_torch(model)
    monkeypatch.delenv("QUAMBA_CUDA_GRAPHS", raising=False)
    assert (em.backend.graphs is not None) == graphs
    return em


def _prompts(batch: int, length: int = 11, seed: int = 0) -> list[list[int]]:
    g = np.random.default_rng(seed)
    return g.integers(0, VOCAB, (batch, length)).tolist()


def _decode_logits(em, prompts, steps: int) -> tuple[np.ndarray, list]:
    """Greedy decode through the backend's decode_step (as generate does): per-step logits [steps, B, V]."""
    be = em.backend
    logits, state = be.forward(np.asarray(prompts, dtype=np.int64), None, last_only=True)
    out, toks = [], []
    for _ in range(steps):
        nxt = logits[:, -1].argmax(-1)
        toks.append(nxt.tolist())
        logits, state = be.decode_step(nxt.reshape(-1, 1).astype(np.int64), state)
        out.append(logits[:, -1])
    return np.stack(out), toks


@pytest.mark.parametrize("case", ALL, ids=ALL_IDS)
def test_graph_equals_eager(models, monkeypatch, case):
    model = models(case)
    eager, graph = _edge(model, False, monkeypatch), _edge(model, True, monkeypatch)
    for batch in (1, 3):
        prompts = _prompts(batch, seed=batch)
        le, te = _decode_logits(eager, prompts, 12)
        lg, tg = _decode_logits(graph, prompts, 12)
        scale = float(np.abs(le).max())
        diff = float(np.abs(lg - le).max())
        print(json.dumps({"case": "-".join(case), "batch": batch, "max_diff": diff, "max_logit": scale}))
        assert tg == te
        assert diff <= 1e-5 * scale, (diff, scale)
    note = graph.backend.graphs_note
    assert "buckets captured: 1, 4" in note and "eager for" not in note, note


@pytest.mark.parametrize("case", [ALL[0], CASES[-1]], ids=[ALL_IDS[0], CASE_IDS[-1]])
def test_generate_graph_equals_eager_and_state_carry(models, monkeypatch, case):
    model = models(case)
    eager, graph = _edge(model, False, monkeypatch), _edge(model, True, monkeypatch)
    prompts = _prompts(3, seed=7)
    kw = dict(max_new_tokens=24, eos_token_id=None)
    oe, og = eager.generate(prompts, **kw), graph.generate(prompts, **kw)
    assert og.tokens == oe.tokens
    # continuing from the returned state equals one longer generation (and the state outlives later steps)
    first = graph.generate(prompts, max_new_tokens=10, eos_token_id=None)
    graph.generate(_prompts(3, seed=8), max_new_tokens=5, eos_token_id=None)  # reuses the bucket's buffers
    rest = graph.generate(None, max_new_tokens=14, eos_token_id=None, state=first.state)
    assert [a + b for a, b in zip(first.tokens, rest.tokens)] == og.tokens
    # rows finishing at different steps (stop ids) leave the bucket and re-enter a smaller one
    stop_tok = og.tokens[1][5]
    ge = eager.generate(prompts, max_new_tokens=24, eos_token_id=None, stop=stop_tok)
    gg = graph.generate(prompts, max_new_tokens=24, eos_token_id=None, stop=stop_tok)
    assert gg.tokens == ge.tokens and gg.finish_reason == ge.finish_reason


def test_long_generation_no_drift(models, monkeypatch):
    """4096 greedy tokens: the graph path's in-place state must not drift from the eager path."""
    model = models(CASES[-1])
    eager, graph = _edge(model, False, monkeypatch), _edge(model, True, monkeypatch)
    prompt = _prompts(1, seed=3)[0]
    oe = eager.generate(prompt, max_new_tokens=4096, eos_token_id=None)
    og = graph.generate(prompt, max_new_tokens=4096, eos_token_id=None)
    first_diff = next((i for i, (a, b) in enumerate(zip(oe.tokens, og.tokens)) if a != b), None)
    print(json.dumps({"case": CASE_IDS[-1], "tokens": len(og.tokens), "first_diff": first_diff,
                      "tpot_ms_eager": oe.stats.tpot_ms, "tpot_ms_graph": og.stats.tpot_ms}))
    assert first_diff is None and len(og.tokens) == 4096


def test_stale_graph_state_raises(models, monkeypatch):
    graph = _edge(models(FP_CASES[1]), True, monkeypatch)
    be = graph.backend
    _, state = be.forward(np.asarray(_prompts(1), dtype=np.int64), None, last_only=True)
    _, s1 = be.decode_step(np.asarray([[1]]), state)
    kept = be.detach_state(s1)
    l2, _ = be.decode_step(np.asarray([[2]]), s1)
    with pytest.raises(RuntimeError, match="overwritten by a later step"):
        be.select_state(s1, [0])
    # the detached copy still holds the state after the first step: the same step from it gives the same logits
    l2b, _ = be.decode_step(np.asarray([[2]]), kept)
    np.testing.assert_allclose(l2b, l2, rtol=0, atol=1e-5 * float(np.abs(l2).max()))
