#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of the reference LMs and write compact token files.

Input: the corpus built by ``benchmarks/corpus.py`` (``train.txt`` / ``calib.txt`` / ``eval.txt``,
documents separated by one blank line). Output:

* ``quamba_edge/assets/tokenizer/`` (shipped): ``tokenizer.json`` (Hugging Face ``tokenizers``
  format), ``tokenizer_config.json`` and ``special_tokens_map.json`` so that both
  ``tokenizers.Tokenizer.from_file(dir + "/tokenizer.json")`` and
  ``transformers.AutoTokenizer.from_pretrained(dir)`` load it. GPT-2 style byte-level BPE: every
  byte sequence encodes (no unknown token) and decode(encode(text)) == text. Vocabulary 8192
  including the single special token ``<|endoftext|>`` (id 0), used as eos / bos / pad.
* ``benchmarks/data/tokens/{train,calib,eval}.bin`` (git-ignored): flat little-endian uint16
  arrays ``doc0 <eos> doc1 <eos> ...`` for GPU training (``np.fromfile(path, dtype=np.uint16)``),
  plus ``meta.json`` (vocab size, eos id, token/document counts, sha256 of every file).

Usage::

    python benchmarks/train_tokenizer.py --corpus benchmarks/data/corpus
    python benchmarks/train_tokenizer.py --skip-train   # re-encode with the shipped tokenizer
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
EOS = "<|endoftext|>"
SPLITS = ("train", "calib", "eval")
DEFAULT_VOCAB = 8192
DEFAULT_MAX_TRAIN_TOKENS = 30_000_000  # uint16 -> 60 MB: the .bin travels to the GPU machine


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_documents(path: Path) -> list[str]:
    """Documents of a corpus split file (blank-line separated, see benchmarks/corpus.py)."""
    text = Path(path).read_text(encoding="utf-8")
    return [d for d in text.split("\n\n") if d.strip()]


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB):
    """An untrained GPT-2 style byte-level BPE tokenizer + its trainer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())  # no unk token: byte-level covers every input
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes always present
        show_progress=True,
    )
    return tok, trainer


def _batches(docs: Sequence[str], size: int = 1000) -> Iterator[list[str]]:
    for i in range(0, len(docs), size):
        yield list(docs[i:i + size])


def train_tokenizer(train_docs: Sequence[str], vocab_size: int = DEFAULT_VOCAB):
    tok, trainer = build_tokenizer(vocab_size)
    tok.train_from_iterator(_batches(train_docs), trainer=trainer, length=len(train_docs))
    if tok.get_vocab_size() != vocab_size:
        raise SystemExit(f"trained vocabulary has {tok.get_vocab_size()} entries, expected {vocab_size} "
                         "(corpus too small?)")
    if tok.token_to_id(EOS) != 0:
        raise SystemExit(f"{EOS} is not id 0")
    return tok


def save_tokenizer(tok, out_dir: Path, model_max_length: int = 2048) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json (HF layout)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": model_max_length,
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "model_input_names": ["input_ids", "attention_mask"],
        "added_tokens_decoder": {
            "0": {"content": EOS, "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False, "special": True}
        },
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def verify_tokenizer(out_dir: Path, samples: Sequence[str]) -> dict:
    """Reload with `tokenizers` and (if installed) `transformers`; check vocab, eos, round trips."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    report = {"tokenizers_vocab": tok.get_vocab_size(), "eos_id": tok.token_to_id(EOS)}
    probes = list(samples) + ["Hello, world!  Tabs\tand\nnewlines.", "Grüße, naïve café — 日本語 🙂 \x00\x7f"]
    for s in probes:
        ids = tok.encode(s).ids
        if tok.decode(ids, skip_special_tokens=False) != s:
            raise SystemExit(f"tokenizers round trip failed on {s[:60]!r}")
    try:
        import transformers
    except ImportError:
        report["transformers"] = "not installed; skipped"
        return report
    transformers.logging.set_verbosity_error()  # long probe documents exceed model_max_length: fine here
    hf = transformers.AutoTokenizer.from_pretrained(str(out_dir))
    report["transformers"] = transformers.__version__
    report["transformers_class"] = type(hf).__name__
    assert hf.eos_token == EOS and hf.eos_token_id == 0 and hf.pad_token_id == 0 and hf.bos_token_id == 0, \
        "transformers: special tokens not set"
    assert len(hf) == tok.get_vocab_size(), f"transformers vocab {len(hf)} != {tok.get_vocab_size()}"
    for s in probes:
        ids = hf(s, add_special_tokens=True)["input_ids"]
        if ids != tok.encode(s).ids:
            raise SystemExit("transformers and tokenizers encode differently")
        if hf.decode(ids, clean_up_tokenization_spaces=False) != s:
            raise SystemExit(f"transformers round trip failed on {s[:60]!r}")
    return report


def encode_split(tok, docs: Sequence[str], eos_id: int, max_tokens: int | None = None,
                 batch: int = 256) -> tuple[np.ndarray, int]:
    """Concatenate doc tokens, each document followed by eos; stop (at a document boundary) before
    max_tokens. Returns (uint16 array, documents included)."""
    from tqdm import tqdm

    parts: list[np.ndarray] = []
    total = ndocs = 0
    eos = np.array([eos_id], dtype=np.uint16)
    done = False
    for i in tqdm(range(0, len(docs), batch), desc="encode", unit="batch", leave=False):
        for enc in tok.encode_batch(list(docs[i:i + batch]), add_special_tokens=False):
            n = len(enc.ids) + 1
            if max_tokens is not None and total + n > max_tokens:
                done = True
                break
            parts.append(np.asarray(enc.ids, dtype=np.uint16))
            parts.append(eos)
            total += n
            ndocs += 1
        if done:
            break
    arr = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)
    return arr, ndocs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=REPO_ROOT / "benchmarks/data/corpus",
                    help="corpus directory from benchmarks/corpus.py")
    ap.add_argument("--tokenizer-dir", type=Path, default=REPO_ROOT / "quamba_edge/assets/tokenizer")
    ap.add_argument("--tokens-out", type=Path, default=REPO_ROOT / "benchmarks/data/tokens")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB)
    ap.add_argument("--max-train-tokens", type=int, default=DEFAULT_MAX_TRAIN_TOKENS,
                    help="cap on train.bin tokens (uint16: 2 bytes each); whole documents only")
    ap.add_argument("--skip-train", action="store_true",
                    help="do not retrain; encode with the tokenizer already in --tokenizer-dir")
    args = ap.parse_args(argv)

    if args.vocab_size > 65536:
        raise SystemExit("uint16 token files need vocab_size <= 65536")
    missing = [s for s in SPLITS if not (args.corpus / f"{s}.txt").exists()]
    if missing:
        raise SystemExit(f"{args.corpus} lacks {', '.join(s + '.txt' for s in missing)}; "
                         "run `python benchmarks/corpus.py` first")
    docs = {s: read_documents(args.corpus / f"{s}.txt") for s in SPLITS}

    from tokenizers import Tokenizer

    t0 = time.time()
    if args.skip_train:
        tok = Tokenizer.from_file(str(args.tokenizer_dir / "tokenizer.json"))
    else:
        print(f"training byte-level BPE (vocab {args.vocab_size}) on {len(docs['train'])} train documents "
              f"({sum(len(d) for d in docs['train']) / 1e6:.1f} M chars) ...")
        tok = train_tokenizer(docs["train"], args.vocab_size)
        save_tokenizer(tok, args.tokenizer_dir)
    t_train = time.time() - t0
    report = verify_tokenizer(args.tokenizer_dir, docs["eval"][:50])
    print(f"tokenizer in {args.tokenizer_dir}: {report}")
    eos_id = tok.token_to_id(EOS)

    args.tokens_out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "flat little-endian uint16; each document followed by the eos token",
        "dtype": "uint16", "vocab_size": tok.get_vocab_size(), "eos_token": EOS, "eos_id": eos_id,
        "bos_id": eos_id, "pad_id": eos_id,
        "tokenizer_sha256": sha256_file(args.tokenizer_dir / "tokenizer.json"),
        "corpus_manifest_sha256": sha256_file(args.corpus / "manifest.json")
        if (args.corpus / "manifest.json").exists() else None,
        "max_train_tokens": args.max_train_tokens, "splits": {},
    }
    for split in SPLITS:
        cap = args.max_train_tokens if split == "train" else None
        arr, ndocs = encode_split(tok, docs[split], eos_id, cap)
        path = args.tokens_out / f"{split}.bin"
        tmp = path.with_suffix(".bin.tmp")
        arr.astype("<u2").tofile(tmp)
        os.replace(tmp, path)
        nbytes = sum(len(d.encode("utf-8")) for d in docs[split][:ndocs])
        meta["splits"][split] = {
            "tokens": int(arr.size), "documents": ndocs, "documents_in_corpus": len(docs[split]),
            "truncated": ndocs < len(docs[split]), "text_bytes": nbytes,
            "bytes_per_token": round(nbytes / max(1, arr.size - ndocs), 3),
            "file_bytes": path.stat().st_size, "sha256": sha256_file(path),
        }
        s = meta["splits"][split]
        print(f"  {split:5s}: {s['tokens']:>11,} tokens  {s['documents']:>5} docs  {s['file_bytes'] / 1e6:6.1f} MB"
              f"  {s['bytes_per_token']} bytes/token{'  (TRUNCATED at --max-train-tokens)' if s['truncated'] else ''}")
    (args.tokens_out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"token files in {args.tokens_out} (tokenizer training {t_train:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
