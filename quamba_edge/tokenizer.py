"""Offline tokenizer for the runtime (no torch import: this module runs on the Jetson).

Wraps ``tokenizers.Tokenizer`` loaded from a local ``tokenizer.json``; special-token ids come from
``tokenizer_config.json`` / ``special_tokens_map.json`` (and, failing those, ``config.json``) when present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = ["Tokenizer", "load_tokenizer", "resolve_model_dir", "bundled_assets_dir", "tokenizer_dir"]


def bundled_assets_dir() -> Path:
    """``quamba_edge/assets``: the models and tokenizer shipped with the package."""
    return Path(__file__).resolve().parent / "assets"


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """An existing path as is; otherwise a bare name of a bundled model (``quamba_edge/assets/<name>/``).

    Raises FileNotFoundError naming the bundled models when neither exists. Never downloads.
    """
    p = Path(path).expanduser()
    if p.exists():
        return p
    name = str(path)
    if name and os.sep not in name and "/" not in name:
        cand = bundled_assets_dir() / name
        if cand.is_dir():
            return cand
    bundled = sorted(d.name for d in bundled_assets_dir().iterdir() if d.is_dir()) \
        if bundled_assets_dir().is_dir() else []
    raise FileNotFoundError(
        f"{str(path)!r} is neither an existing path nor a bundled model "
        f"(bundled: {', '.join(bundled) or 'none'}); nothing is downloaded, pass a local directory")


def _token_content(v: Any) -> str | None:
    """A special token in tokenizer_config.json is either "text" or {"content": "text", ...}."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def _read_json(p: Path) -> dict[str, Any]:
    try:
        with open(p, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {p}: {e}") from e
    return d if isinstance(d, dict) else {}


class Tokenizer:
    """Text <-> token ids. ``encode`` follows the tokenizer.json post-processor (special tokens the
    model was trained with are added when ``add_special_tokens``), ``decode`` keeps special tokens unless
    asked otherwise, as transformers does."""

    def __init__(self, tokenizer: Any, bos_token: str | None = None, eos_token: str | None = None,
                 pad_token: str | None = None, *, bos_token_id: int | None = None,
                 eos_token_id: int | None = None, pad_token_id: int | None = None) -> None:
        self._tok = tokenizer

        def pick(tok: str | None, fallback: int | None) -> int | None:
            i = tokenizer.token_to_id(tok) if tok is not None else None
            return i if i is not None else fallback

        self.bos_token_id: int | None = pick(bos_token, bos_token_id)
        self.eos_token_id: int | None = pick(eos_token, eos_token_id)
        self.pad_token_id: int | None = pick(pad_token, pad_token_id)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """Load a directory holding tokenizer.json (plus optional configs) or a tokenizer.json file."""
        return load_tokenizer(path)

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer can produce (added tokens included). The model's embedding
        may be larger (padded)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def backend(self) -> Any:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = True) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(int(i))

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_token_id}, "
                f"eos={self.eos_token_id}, pad={self.pad_token_id})")


def tokenizer_dir(model_dir: Path) -> Path:
    """The folder holding a model directory's tokenizer: the directory itself, or, for a bundled model
    without its own copy, the shared ``assets/tokenizer`` (kept once to stay inside the asset budget)."""
    shared = bundled_assets_dir() / "tokenizer"
    if (not (model_dir / "tokenizer.json").is_file() and model_dir.parent == bundled_assets_dir()
            and (shared / "tokenizer.json").is_file()):
        return shared
    return model_dir


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load the tokenizer of a local model directory, a tokenizer.json file, or a bundled model name.

    Offline only. Raises FileNotFoundError when there is no tokenizer.json.
    """
    from tokenizers import Tokenizer as _HFTokenizer  # deferred: keeps `import quamba_edge` light

    p = resolve_model_dir(path)
    if p.is_file():
        tok_file, folder = p, p.parent
    else:
        folder = tokenizer_dir(p)
        tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise FileNotFoundError(
            f"no tokenizer.json in {folder}; save one there (e.g. transformers' "
            "tokenizer.save_pretrained(dir) or tokenizers' Tokenizer.save('tokenizer.json'))")
    try:
        tok = _HFTokenizer.from_file(str(tok_file))
    except Exception as e:  # the Rust side raises a plain Exception on a malformed file
        raise ValueError(f"cannot parse {tok_file}: {e}") from e

    specials: dict[str, str | None] = {"bos_token": None, "eos_token": None, "pad_token": None}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):  # later file wins
        f = folder / fname
        if f.is_file():
            d = _read_json(f)
            for k in specials:
                v = _token_content(d.get(k))
                if v is not None:
                    specials[k] = v
    ids: dict[str, int | None] = {}
    cfg = folder / "config.json"
    if cfg.is_file():  # model config may carry ids (transformers and our mamba_ssm writer do)
        d = _read_json(cfg)
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            v = d.get(k)
            if isinstance(v, list):
                v = v[0] if v else None
            ids[k] = v if isinstance(v, int) else None
    return Tokenizer(tok, **specials, **ids)
