"""Calibration text → token samples (spec B.2, C.6, pitfalls F.3 and F.4).

Sources (:func:`load_samples`):

* ``*.txt`` — documents separated by one or more blank lines (the shipped ``assets/text/calib.txt``
  format: one paragraph per line). Every document is tokenized on its own (``tokenizer.encode``), the
  token lists are concatenated (with the tokenizer's ``eos_token_id`` between documents when it has
  one), and the stream is cut into DISJOINT windows of exactly ``seq_len`` tokens on the grid
  ``[k·seq_len, (k+1)·seq_len)``. ``num_samples`` windows are chosen with a seeded
  ``torch.randperm`` and returned in that (deterministic) order. Why windows: short text files hold few
  documents, so packing is the only way to get 512 full-length samples.
* ``*.jsonl`` / ``*.jsonl.gz`` — one JSON object per line with a ``"text"`` field, one document per
  line. As upstream's Pile calibration (spec B.2, F.3): the FIRST ``num_samples`` non-empty documents in
  file order, each truncated to ``seq_len`` tokens, shorter ones stay short (no packing, no padding).
  ``seed`` is not used (upstream's shuffle is discarded, F.3).
* any other string — a Hugging Face dataset, ``"name"``, ``"name:config"`` or ``"name:config:split"``
  (split defaults to ``train``), read OFFLINE from the local ``datasets`` cache (nothing is
  downloaded); handled like ``.jsonl`` (field ``text``). Needs the ``datasets`` package.

Every sample is a ``torch.long`` tensor ``[1, l]`` with ``1 <= l <= seq_len`` (batch 1, as upstream).

GPTQ data (F.4: separate from activation calibration): :func:`load_gptq_samples` always packs
(upstream: wikitext-2 train joined, 128 windows of 1024 tokens). Given its own source it cuts windows
from it; otherwise it reuses the calibration source with a window grid shifted by ``seq_len // 2`` and
another seed, so its windows differ from the ones :func:`load_samples` returns (the text may overlap:
a single small file cannot give truly separate data — pass ``gptq_source`` for that).

Text shorter than asked for (``on_short``): by default both loaders raise ``ValueError`` saying how many
tokens / documents there are. Given ``on_short`` (the CLI passes one), they instead return as many
samples as the text holds and call ``on_short(message)`` with one line saying so. The rule keeps the
sample LENGTH and lowers the COUNT: the activation ranges of an SSM (and GPTQ's Hessian) depend on how
far into a sequence the state has accumulated, so full-length samples keep the statistics the recipe
was designed for, while fewer of them only add sampling noise. Text shorter than one sample is still an
error (shortening the samples would change what is measured; the caller picks a shorter ``seq_len``).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
from torch import Tensor

__all__ = ["load_samples", "load_gptq_samples", "read_documents", "GPTQ_SEED_OFFSET", "OnShort"]

#: Added to ``seed`` when GPTQ windows come from the calibration file itself (different windows).
GPTQ_SEED_OFFSET = 1_000_003

# Tokenize with a progress bar only when there is a lot of text (characters).
_PROGRESS_MIN_CHARS = 2_000_000


#: Receives the one-line message when a loader returns fewer samples than asked (see module docstring).
OnShort = Callable[[str], None]


class _Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


# ---- reading documents --------------------------------------------------------------------------


def _is_file_source(source: str | os.PathLike) -> bool:
    p = Path(source)
    return isinstance(source, Path) or p.exists() or p.suffix in (".txt", ".jsonl", ".gz")


def _read_txt(path: Path) -> list[str]:
    """Blank-line separated documents; lines of one document are joined with ``\\n``."""
    docs, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():
                cur.append(line)
            elif cur:
                docs.append("\n".join(cur))
                cur = []
    if cur:
        docs.append("\n".join(cur))
    return docs


def _read_jsonl(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f'{path}:{lineno}: expected an object with a string field "text"')
            if obj["text"].strip():
                docs.append(obj["text"])
    return docs


def _read_hf(source: str) -> list[str]:
    """A locally cached HF dataset, offline. ``name[:config[:split]]``."""
    try:
        import datasets  # noqa: F401
    except ImportError as e:
        raise ValueError(
            f"{source!r} is not an existing .txt/.jsonl file, and reading it as a Hugging Face dataset "
            "needs the 'datasets' package (not installed); pass a local .txt or .jsonl file") from e
    parts = source.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"dataset source must be 'name', 'name:config' or 'name:config:split', "
                         f"got {source!r}")
    name = parts[0]
    config = (parts[1] or None) if len(parts) > 1 else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    prev = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # never download (read at call time by recent versions)
    try:
        if hasattr(datasets, "config") and hasattr(datasets.config, "HF_DATASETS_OFFLINE"):
            datasets.config.HF_DATASETS_OFFLINE = True
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # offline miss, unknown name, ... : one clear message
        raise ValueError(f"cannot load dataset {name!r} (config={config!r}, split={split!r}) from the "
                         f"local Hugging Face cache, offline: {e}") from e
    finally:
        if prev is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = prev
    docs = []
    for i, row in enumerate(ds):
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise ValueError(f'dataset {name!r} row {i} has no string field "text"')
        if text.strip():
            docs.append(text)
    return docs


def read_documents(source: str | os.PathLike) -> tuple[str, list[str]]:
    """``(kind, documents)`` with kind ``"txt"``, ``"jsonl"`` or ``"hf"``; non-empty documents only.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an empty one.
    """
    if _is_file_source(source):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file not found: {path}")
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz")):
            kind, docs = "jsonl", _read_jsonl(path)
        elif name.endswith(".txt"):
            kind, docs = "txt", _read_txt(path)
        else:
            raise ValueError(f"unsupported calibration file {path}: use .txt (blank-line separated "
                             "documents) or .jsonl (one {\"text\": ...} object per line)")
        if not docs:
            raise ValueError(f"calibration file {path} holds no text")
        return kind, docs
    docs = _read_hf(str(source))
    if not docs:
        raise ValueError(f"dataset {source!r} holds no text")
    return "hf", docs


# ---- tokenizing ---------------------------------------------------------------------------------


def _progress(items: Sequence[str], desc: str, progress: bool | None):
    if progress is None:
        progress = sum(len(s) for s in items) >= _PROGRESS_MIN_CHARS
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="doc")


def _token_stream(docs: Sequence[str], tokenizer: _Encoder, progress: bool | None) -> list[int]:
    """All documents tokenized and concatenated, EOS between documents when the tokenizer has one."""
    eos = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for k, doc in enumerate(_progress(docs, "tokenizing", progress)):
        if k and eos is not None:
            stream.append(int(eos))
        stream.extend(tokenizer.encode(doc))
    return stream


def _windows(stream: list[int], num_samples: int, seq_len: int, seed: int, offset: int,
             where: str, on_short: OnShort | None = None, label: str = "calibration text",
             unit: str = "samples") -> list[Tensor]:
    """``num_samples`` disjoint windows on the grid ``offset + k·seq_len``, chosen with ``seed``.

    ``label`` and ``unit`` word the ``on_short`` message ("calibration text ... using K samples").
    """
    avail = max(0, (len(stream) - offset) // seq_len)
    grid = f" (grid offset {offset})" if offset else ""
    if avail == 0:
        raise ValueError(
            f"{where} has {len(stream)} tokens, fewer than one window of {seq_len} tokens{grid}; "
            "use a shorter seq_len (on the command line: --seq-len / --gptq-seq-len) or more text")
    if avail < num_samples:
        if on_short is None:
            raise ValueError(
                f"{where} has {len(stream)} tokens: {avail} window(s) of {seq_len} tokens{grid}, but "
                f"{num_samples} were asked ({num_samples * seq_len} tokens); lower num_samples or seq_len, "
                "or use more text")
        on_short(f"{label} has {len(stream):,} tokens: using {avail} {unit} of {seq_len} tokens instead of "
                 f"{num_samples} x {seq_len}")
        num_samples = avail
    g = torch.Generator().manual_seed(int(seed))
    picks = torch.randperm(avail, generator=g)[:num_samples].tolist()
    t = torch.tensor(stream, dtype=torch.long)
    return [t[offset + k * seq_len: offset + (k + 1) * seq_len].reshape(1, -1).clone() for k in picks]


def _per_document(docs: Sequence[str], tokenizer: _Encoder, num_samples: int, seq_len: int,
                  where: str, progress: bool | None, on_short: OnShort | None = None) -> list[Tensor]:
    """The first ``num_samples`` documents (file order) that tokenize to ≥ 1 token, truncated."""
    out: list[Tensor] = []
    it = _progress(docs, "tokenizing", progress)
    for doc in it:
        ids = tokenizer.encode(doc)[:seq_len]
        if ids:
            out.append(torch.tensor(ids, dtype=torch.long).reshape(1, -1))
            if len(out) == num_samples:
                break
    if hasattr(it, "close"):
        it.close()
    if not out:
        raise ValueError(f"{where} has no document that tokenizes to at least one token")
    if len(out) < num_samples:
        if on_short is None:
            raise ValueError(f"{where} has only {len(out)} non-empty document(s), {num_samples} were asked")
        # One sample per document (as upstream), so fewer documents means fewer samples.
        on_short(f"calibration text has {len(out)} non-empty documents: using {len(out)} samples of "
                 f"<= {seq_len} tokens instead of {num_samples}")
    return out


def _check_sizes(num_samples: int, seq_len: int) -> None:
    if int(num_samples) < 1 or int(seq_len) < 1:
        raise ValueError(f"num_samples and seq_len must be >= 1, got {num_samples} and {seq_len}")


# ---- public API ---------------------------------------------------------------------------------


def load_samples(source: str | Path, tokenizer: _Encoder, num_samples: int, seq_len: int,
                 seed: int = 0, *, progress: bool | None = None,
                 on_short: OnShort | None = None) -> list[Tensor]:
    """Calibration samples (module docstring): ``num_samples`` long tensors ``[1, l]``, ``l <= seq_len``.

    ``progress`` None shows a tqdm bar for large inputs only. Deterministic for a given
    ``(source, tokenizer, num_samples, seq_len, seed)``. Text too short for ``num_samples`` samples
    raises ``ValueError``, unless ``on_short`` is given: then fewer samples (of the same length) are
    returned and ``on_short`` gets one line saying so. Text shorter than one sample always raises.
    """
    _check_sizes(num_samples, seq_len)
    kind, docs = read_documents(source)
    where = f"calibration source {str(source)!r}"
    if kind == "txt":
        return _windows(_token_stream(docs, tokenizer, progress), num_samples, seq_len, seed, 0, where,
                        on_short, label="calibration text", unit="samples")
    return _per_document(docs, tokenizer, num_samples, seq_len, where, progress, on_short)


def load_gptq_samples(calib_source: str | Path, tokenizer: _Encoder, num_samples: int = 128,
                      seq_len: int = 1024, seed: int = 0, *, gptq_source: str | Path | None = None,
                      progress: bool | None = None, on_short: OnShort | None = None) -> list[Tensor]:
    """GPTQ samples (spec C.8, F.4): ``num_samples`` packed windows of exactly ``seq_len`` tokens.

    With ``gptq_source`` the windows come from it (grid offset 0, ``seed``). Without it they come from
    ``calib_source`` on a grid shifted by ``seq_len // 2`` and seed ``seed + GPTQ_SEED_OFFSET``, so they
    are not the windows :func:`load_samples` picks from the same file. ``on_short`` as in
    :func:`load_samples` (fewer windows of the same length).
    """
    _check_sizes(num_samples, seq_len)
    if gptq_source is not None:
        src, offset, s = gptq_source, 0, seed
    else:
        src, offset, s = calib_source, seq_len // 2, seed + GPTQ_SEED_OFFSET
    _, docs = read_documents(src)
    return _windows(_token_stream(docs, tokenizer, progress), num_samples, seq_len, s, offset,
                    f"GPTQ source {str(src)!r}", on_short, label="GPTQ text", unit="windows")
