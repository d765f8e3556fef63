"""Next-token selection in numpy, following transformers' ``generate`` conventions.

* ``do_sample=False`` (the default) is greedy: argmax of the (processed) logits. ``temperature == 0``
  is greedy too.
* The order is transformers': repetition penalty on the raw logits, then temperature, top-k, top-p, then
  a draw from the softmax.
* Repetition penalty (CTRL / transformers' ``RepetitionPenaltyLogitsProcessor``): for every token id
  already in the sequence (prompt and generated tokens, earlier turns of a carried state included), a
  positive logit is divided by the penalty and a negative one multiplied by it. It applies in greedy
  mode too, as in transformers.
* ``top_k`` (default 50, as transformers; 0 disables) keeps the k largest logits; ``top_p`` (nucleus,
  default 1.0 = off) keeps the smallest set of most likely tokens whose probability reaches ``top_p``
  (transformers' rule: drop tokens whose ascending cumulative probability is <= 1 - top_p; at least
  one token stays).
* Draws use a ``numpy.random.Generator``, so a seed makes sampling reproducible.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["SamplingConfig", "apply_repetition_penalty", "top_k_filter", "top_p_filter", "select_next"]

_NEG_INF = -np.inf


@dataclass(frozen=True)
class SamplingConfig:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        t, k, p, r = self.temperature, self.top_k, self.top_p, self.repetition_penalty
        if not (isinstance(t, (int, float)) and np.isfinite(t) and t >= 0):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {k!r}")
        if not (isinstance(p, (int, float)) and 0.0 < p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {p!r}")
        if not (isinstance(r, (int, float)) and np.isfinite(r) and r > 0):
            raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = off), got {r!r}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    @classmethod
    def make(cls, do_sample: bool | None, temperature: float | None, top_k: int | None, top_p: float | None,
             repetition_penalty: float | None) -> "SamplingConfig":
        """From ``generate``'s keyword arguments (None = default). Like transformers, sampling options given
        without ``do_sample=True`` are ignored with a warning."""
        cfg = cls(do_sample=bool(do_sample),
                  temperature=cls.temperature if temperature is None else temperature,
                  top_k=cls.top_k if top_k is None else top_k,
                  top_p=cls.top_p if top_p is None else top_p,
                  repetition_penalty=cls.repetition_penalty if repetition_penalty is None else repetition_penalty)
        if not do_sample:
            ignored = [f"{n}={v}" for n, v, d in (("temperature", temperature, 1.0), ("top_k", top_k, 50),
                                                    ("top_p", top_p, 1.0))
                       if v is not None and v != d and not (n == "temperature" and v == 0)]
            if ignored:
                warnings.warn(f"do_sample is False (greedy decoding), so {', '.join(ignored)} "
                              "has no effect; pass do_sample=True to sample", UserWarning, stacklevel=3)
        return cfg


def apply_repetition_penalty(logits: np.ndarray, histories: Sequence[Sequence[int]], penalty: float) -> np.ndarray:
    """``logits [B, V]`` (modified in place and returned): for each row, the logits of the ids in its
    history are divided by ``penalty`` where positive and multiplied where negative."""
    if penalty == 1.0:
        return logits
    V = logits.shape[-1]
    for b, hist in enumerate(histories):
        if not len(hist):
            continue
        ids = np.unique(np.asarray(hist, dtype=np.int64))
        ids = ids[(ids >= 0) & (ids < V)]
        s = logits[b, ids]
        logits[b, ids] = np.where(s > 0, s / penalty, s * penalty)
    return logits


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Logits below the k-th largest of their row set to -inf (in place). ``k <= 0`` or ``k >= V``: none."""
    V = logits.shape[-1]
    if k <= 0 or k >= V:
        return logits
    kth = np.partition(logits, V - k, axis=-1)[:, V - k][:, None]
    logits[logits < kth] = _NEG_INF
    return logits


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filtering with transformers' rule (in place): sort ascending, drop tokens whose cumulative
    probability is <= 1 - p; the most likely token always stays."""
    if p >= 1.0:
        return logits
    order = np.argsort(logits, axis=-1, kind="stable")          # ascending
    sorted_logits = np.take_along_axis(logits, order, axis=-1)
    cum = np.cumsum(_softmax(sorted_logits), axis=-1)
    remove_sorted = cum <= (1.0 - p)
    remove_sorted[:, -1] = False                                  # min_tokens_to_keep = 1
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    logits[remove] = _NEG_INF
    return logits


def select_next(logits: np.ndarray, cfg: SamplingConfig, histories: Sequence[Sequence[int]],
                rng: np.random.Generator | None, vocab_limit: int | None = None) -> np.ndarray:
    """Next token id of each row (int64 ``[B]``) from the last-position ``logits [B, V]``.

    ``vocab_limit``: ids >= it (padding rows of the embedding the tokenizer cannot decode) are never
    chosen."""
    x = np.array(logits, dtype=np.float32, copy=True)
    if vocab_limit is not None and vocab_limit < x.shape[-1]:
        x[:, vocab_limit:] = _NEG_INF
    apply_repetition_penalty(x, histories, cfg.repetition_penalty)
    if cfg.greedy:
        return np.argmax(x, axis=-1).astype(np.int64)
    x /= np.float32(cfg.temperature)
    top_k_filter(x, int(cfg.top_k))
    top_p_filter(x, float(cfg.top_p))
    probs = _softmax(x)
    if rng is None:
        rng = np.random.default_rng()
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(x.shape[0]) * cdf[:, -1]
    out = np.array([np.searchsorted(cdf[b], u[b], side="right") for b in range(x.shape[0])], dtype=np.int64)
    return np.minimum(out, x.shape[-1] - 1)
