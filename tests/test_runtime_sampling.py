"""Sampling rules against transformers' logits processors, and incremental detokenization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quamba_edge.runtime.detokenize import IncrementalDecoder
from quamba_edge.runtime.sampling import (SamplingConfig, apply_repetition_penalty, select_next, top_k_filter,
                                          top_p_filter)
from quamba_edge.tokenizer import load_tokenizer
from runtime_helpers import TOKENIZER_DIR

transformers_gen = pytest.importorskip("transformers.generation.logits_process")


def _logits(b: int = 3, v: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, (b, v)).astype(np.float32)


def _same_mask(ours: np.ndarray, theirs: torch.Tensor) -> None:
    t = theirs.numpy()
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(t))
    keep = ~np.isneginf(ours)
    np.testing.assert_allclose(ours[keep], t[keep], rtol=1e-6)


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_matches_transformers(penalty):
    x = _logits()
    hist = [[1, 5, 5, 9], [], [63, 0]]
    ours = apply_repetition_penalty(x.copy(), hist, penalty)
    proc = transformers_gen.RepetitionPenaltyLogitsProcessor(penalty)
    for b, h in enumerate(hist):
        if not h:
            np.testing.assert_array_equal(ours[b], x[b])
            continue
        theirs = proc(torch.tensor([h]), torch.from_numpy(x[b:b + 1].copy()))
        np.testing.assert_allclose(ours[b], theirs[0].numpy(), rtol=1e-6)
    # the rule itself: positive logits divided, negative multiplied
    i = 1
    assert ours[0, i] == pytest.approx(x[0, i] / penalty if x[0, i] > 0 else x[0, i] * penalty)


@pytest.mark.parametrize("k", [1, 5, 63])
def test_top_k_matches_transformers(k):
    x = _logits()
    theirs = transformers_gen.TopKLogitsWarper(k)(None, torch.from_numpy(x.copy()))
    _same_mask(top_k_filter(x.copy(), k), theirs)
    np.testing.assert_array_equal(top_k_filter(x.copy(), 0), x)  # 0 = off


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_matches_transformers(p):
    x = _logits(v=200, seed=1)
    theirs = transformers_gen.TopPLogitsWarper(p)(None, torch.from_numpy(x.copy()))
    ours = top_p_filter(x.copy(), p)
    _same_mask(ours, theirs)
    assert (~np.isneginf(ours)).sum(-1).min() >= 1


def test_greedy_conventions_and_validation():
    x = _logits()
    rng = np.random.default_rng(0)
    greedy = x.argmax(-1)
    np.testing.assert_array_equal(select_next(x, SamplingConfig(), [[]] * 3, rng), greedy)
    np.testing.assert_array_equal(select_next(x, SamplingConfig(do_sample=True, temperature=0), [[]] * 3, rng), greedy)
    np.testing.assert_array_equal(select_next(x, SamplingConfig(do_sample=True, top_k=1), [[]] * 3, rng), greedy)
    # a padded vocabulary row is never chosen
    y = x.copy()
    y[:, -1] = 100.0
    assert (select_next(y, SamplingConfig(), [[]] * 3, rng, vocab_limit=63) < 63).all()
    for bad in (dict(temperature=-1.0), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5),
                dict(repetition_penalty=0.0)):
        with pytest.raises(ValueError):
            SamplingConfig(do_sample=True, **bad)


def test_sampling_distribution_and_seed():
    x = np.log(np.array([[0.5, 0.3, 0.2, 1e-9]], dtype=np.float32))
    cfg = SamplingConfig(do_sample=True, top_k=0)
    rng = np.random.default_rng(123)
    draws = np.array([select_next(x, cfg, [[]], rng)[0] for _ in range(4000)])
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq[:3], [0.5, 0.3, 0.2], atol=0.03)
    a = [select_next(x, cfg, [[]], np.random.default_rng(5))[0] for _ in range(3)]
    b = [select_next(x, cfg, [[]], np.random.default_rng(5))[0] for _ in range(3)]
    assert a == b
    # top_p = 0.6 keeps {0.5, 0.3}
    draws = {int(select_next(x, SamplingConfig(do_sample=True, top_k=0, top_p=0.6), [[]], rng)[0]) for _ in range(300)}
    assert draws == {0, 1}


def test_incremental_decoder_multibyte():
    tok = load_tokenizer(TOKENIZER_DIR)
    text = "Héllo wörld — 日本語のテキスト 🎉🐍 naïve café\n\tend"
    ids = tok.encode(text)
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # characters really are split across tokens
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    assert "".join(pieces) == tok.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)
    assert sum(1 for p in pieces if p) > 10  # it does stream
    # special tokens are skipped, as in the final text
    dec = IncrementalDecoder(tok)
    eos = tok.eos_token_id
    out = "".join(dec.push(i) for i in [*ids[:3], eos, *ids[3:6]]) + dec.flush()
    assert out == tok.decode([*ids[:3], eos, *ids[3:6]], skip_special_tokens=True)
