"""Calibration text → token samples (spec B.2, F.3, F.4)."""

from __future__ import annotations

import gzip
import json
import os
import sys
import types

import pytest
import torch

from quamba_edge.quant.calibration import load_gptq_samples, load_samples, read_documents
from quamba_edge.tokenizer import Tokenizer, bundled_assets_dir


class CharTok:
    """Deterministic stand-in tokenizer: one id per character."""

    eos_token_id = None

    def encode(self, text: str) -> list[int]:
        return [1 + ord(c) % 97 for c in text]


class CharTokEos(CharTok):
    eos_token_id = 0


def _words(seed: int, n: int) -> str:
    g = torch.Generator().manual_seed(seed)
    return " ".join("".join(chr(97 + int(c)) for c in torch.randint(0, 26, (int(k),), generator=g))
                    for k in torch.randint(1, 8, (n,), generator=g))


# Non-periodic text, so distinct windows have distinct contents.
DOCS = ["alpha beta gamma\nsecond line of doc one", _words(1, 40), "third document, short", _words(2, 30)]


@pytest.fixture
def txt(tmp_path):
    p = tmp_path / "calib.txt"
    # several blank lines and CRLF between documents
    p.write_text("\n\n".join(DOCS[:2]) + "\r\n\r\n\n" + "\n\n".join(DOCS[2:]) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def jsonl(tmp_path):
    p = tmp_path / "calib.jsonl"
    lines = [json.dumps({"text": d, "meta": k}) for k, d in enumerate(DOCS)]
    lines.insert(1, json.dumps({"text": "   "}))  # empty documents are skipped
    lines.insert(2, "")
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _stream(tok) -> list[int]:
    out: list[int] = []
    for k, d in enumerate(DOCS):
        if k and tok.eos_token_id is not None:
            out.append(tok.eos_token_id)
        out += tok.encode(d)
    return out


def test_read_txt_documents(txt):
    kind, docs = read_documents(txt)
    assert kind == "txt" and docs == DOCS


@pytest.mark.parametrize("tok", [CharTok(), CharTokEos()])
def test_txt_windows_are_disjoint_seeded_slices(txt, tok):
    stream = _stream(tok)
    seq = 32
    got = load_samples(txt, tok, num_samples=5, seq_len=seq, seed=0)
    assert len(got) == 5
    starts = []
    for s in got:
        assert s.dtype == torch.long and s.shape == (1, seq)
        hits = [k for k in range(len(stream) // seq) if stream[k * seq:(k + 1) * seq] == s[0].tolist()]
        assert hits
        starts.append(hits[0])
    assert len(set(starts)) == 5  # distinct grid windows
    again = load_samples(txt, tok, num_samples=5, seq_len=seq, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(got, again))  # deterministic
    other = load_samples(txt, tok, num_samples=5, seq_len=seq, seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(got, other))


def test_txt_too_few_tokens_says_how_many(txt):
    n = len(_stream(CharTok()))
    with pytest.raises(ValueError, match=f"has {n} tokens"):
        load_samples(txt, CharTok(), num_samples=100, seq_len=64)


def test_txt_too_few_tokens_with_on_short_gives_fewer_full_length_samples(txt):
    """on_short (the CLI's path): as many windows as the text holds, same length, one message."""
    tok = CharTok()
    n = len(_stream(tok))
    seq = 64
    avail = n // seq
    assert 1 <= avail < 100
    msgs: list[str] = []
    got = load_samples(txt, tok, num_samples=100, seq_len=seq, on_short=msgs.append)
    assert len(got) == avail and all(s.shape == (1, seq) for s in got)
    assert msgs == [f"calibration text has {n:,} tokens: using {avail} samples of {seq} tokens instead of "
                    f"100 x {seq}"]
    # enough text: no message, the same samples as without on_short
    msgs.clear()
    few = load_samples(txt, tok, num_samples=2, seq_len=seq, on_short=msgs.append)
    assert msgs == [] and all(torch.equal(a, b) for a, b in zip(few, load_samples(txt, tok, 2, seq)))
    # shorter than ONE sample: an error either way, saying what to change
    for kw in ({}, {"on_short": msgs.append}):
        with pytest.raises(ValueError, match=f"has {n} tokens, fewer than one window of {n + 1} tokens.*seq_len"):
            load_samples(txt, tok, num_samples=1, seq_len=n + 1, **kw)
    assert msgs == []


def test_gptq_and_jsonl_on_short(txt, jsonl):
    tok = CharTok()
    n = len(_stream(tok))
    seq = 64
    avail = (n - seq // 2) // seq  # the GPTQ grid is shifted by seq_len // 2
    msgs: list[str] = []
    got = load_gptq_samples(txt, tok, num_samples=100, seq_len=seq, on_short=msgs.append)
    assert len(got) == avail and all(s.shape == (1, seq) for s in got)
    assert msgs == [f"GPTQ text has {n:,} tokens: using {avail} windows of {seq} tokens instead of 100 x {seq}"]
    with pytest.raises(ValueError, match="window"):
        load_gptq_samples(txt, tok, num_samples=100, seq_len=seq)
    msgs.clear()
    docs = load_samples(jsonl, tok, num_samples=10, seq_len=40, on_short=msgs.append)
    assert len(docs) == 4 and msgs == ["calibration text has 4 non-empty documents: using 4 samples of <= 40 "
                                       "tokens instead of 10"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_samples(tmp_path / "nope.txt", CharTok(), 1, 8)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(ValueError, match="no text"):
        load_samples(empty, CharTok(), 1, 8)
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(ValueError, match="no text"):
        load_samples(tmp_path / "e.jsonl", CharTok(), 1, 8)
    with pytest.raises(ValueError, match=">= 1"):
        load_samples(tmp_path / "e.jsonl", CharTok(), 0, 8)


def test_jsonl_first_documents_truncated(jsonl, tmp_path):
    tok = CharTok()
    got = load_samples(jsonl, tok, num_samples=3, seq_len=40)
    exp = [tok.encode(d)[:40] for d in DOCS[:3]]
    assert [g[0].tolist() for g in got] == exp
    assert got[2].shape == (1, len(DOCS[2]))  # shorter documents stay short
    with pytest.raises(ValueError, match="only 4 non-empty"):
        load_samples(jsonl, tok, num_samples=5, seq_len=40)
    gz = tmp_path / "calib.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(jsonl.read_text())
    assert all(torch.equal(a, b) for a, b in zip(load_samples(gz, tok, 3, 40), got))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_samples(bad, tok, 1, 8)


def test_gptq_windows_differ_from_calibration(txt, tmp_path):
    tok = CharTok()
    calib = load_samples(txt, tok, num_samples=4, seq_len=32)
    gptq = load_gptq_samples(txt, tok, num_samples=4, seq_len=32)
    assert all(g.shape == (1, 32) for g in gptq)
    assert not any(torch.equal(c, g) for c in calib for g in gptq)
    assert all(torch.equal(a, b) for a, b in zip(gptq, load_gptq_samples(txt, tok, 4, 32)))
    other = tmp_path / "other.txt"
    other.write_text("zzzz " * 100)
    sep = load_gptq_samples(txt, tok, num_samples=2, seq_len=16, gptq_source=other)
    assert all(set(s[0].tolist()) <= set(tok.encode("z ")) for s in sep)


def test_hf_dataset_offline(monkeypatch):
    calls = {}

    def load_dataset(name, config=None, split=None):
        calls.update(name=name, config=config, split=split, offline=os.environ.get("HF_DATASETS_OFFLINE"))
        return [{"text": d} for d in DOCS]

    fake = types.ModuleType("datasets")
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    got = load_samples("org/pile-like:cfg:validation", CharTok(), num_samples=2, seq_len=10)
    assert calls == dict(name="org/pile-like", config="cfg", split="validation", offline="1")
    assert "HF_DATASETS_OFFLINE" not in os.environ  # restored
    assert [g[0].tolist() for g in got] == [CharTok().encode(d)[:10] for d in DOCS[:2]]

    def missing(*a, **k):
        raise FileNotFoundError("not in cache")

    fake.load_dataset = missing
    with pytest.raises(ValueError, match="local Hugging Face cache"):
        load_samples("org/other", CharTok(), 1, 8)
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(ValueError, match="'datasets' package"):
        load_samples("org/other", CharTok(), 1, 8)


def test_shipped_calib_text_with_real_tokenizer():
    """The package's calib.txt through quamba_edge.tokenizer.Tokenizer (a word-level test vocabulary)."""
    tokenizers = pytest.importorskip("tokenizers")
    path = bundled_assets_dir() / "text" / "calib.txt"
    words = sorted(set(path.read_text(encoding="utf-8").split()))[:5000]
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok = Tokenizer(backend)
    got = load_samples(path, tok, num_samples=16, seq_len=128, seed=0)
    assert len(got) == 16 and all(s.shape == (1, 128) for s in got)
    assert len({tuple(s[0].tolist()) for s in got}) == 16
