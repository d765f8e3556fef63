"""Measure one model through the runtime: load, warm up, generate, perplexity -> one JSON record.

``quamba-edge demo`` runs this in a fresh process per model (``python -m quamba_edge.runtime.measure``)
so each model's peak memory is its own, not the demo's (which holds torch and the quantizer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["measure", "model_file_bytes", "main"]

_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt", "added_tokens.json"}


def model_file_bytes(path: str | Path) -> int | None:
    """Bytes of a model directory's weight / graph files (tokenizer and json metadata excluded)."""
    p = Path(path)
    if not p.is_dir():
        return None
    total = 0
    for f in p.rglob("*"):
        if f.is_file() and f.name not in _TOKENIZER_FILES and f.suffix != ".json" and "tokenizer" not in f.parts:
            total += f.stat().st_size
    return total


def measure(path: str | Path, *, backend: str = "auto", prompt: str = "The interpreter reads",
            max_new_tokens: int = 32, ppl_ids: Sequence[int] | None = None, window: int = 512,
            max_windows: int | None = 4, threads: int | None = None, warmup_tokens: int = 4) -> dict[str, Any]:
    """Load ``path`` with :class:`EdgeModel`, run a short warm-up generation, then a greedy generation of
    ``max_new_tokens`` from ``prompt`` (its stats are the measurement) and, when ``ppl_ids`` is given,
    the perplexity over the first ``max_windows`` windows of ``window`` tokens."""
    from .edge_model import EdgeModel

    t = time.perf_counter()
    model = EdgeModel.load(path, backend=backend, threads=threads)
    load_s = time.perf_counter() - t
    if warmup_tokens:
        model.generate(prompt, max_new_tokens=warmup_tokens)
    out = model.generate(prompt, max_new_tokens=max_new_tokens)
    rec: dict[str, Any] = {"path": str(path), **model.info(), "load_seconds": round(load_s, 3),
                           "prompt": prompt, "text": out.text, "tokens": out.tokens,
                           "finish_reason": out.finish_reason, "stats": out.stats.to_dict(),
                           "model_bytes": model_file_bytes(model.backend.path or path)}
    if ppl_ids is not None:
        rec["perplexity"] = model.perplexity(list(ppl_ids), window=window, max_windows=max_windows)
    model.close()
    return rec


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quamba_edge.runtime.measure", description=__doc__)
    p.add_argument("model")
    p.add_argument("--backend", default="auto")
    p.add_argument("--prompt", default="The interpreter reads")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--ppl-ids", metavar="FILE.npy", help="token ids (1-D .npy) to score")
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=4)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    ids = None
    if args.ppl_ids:
        import numpy as np

        ids = np.load(args.ppl_ids).tolist()
    try:
        rec = measure(args.model, backend=args.backend, prompt=args.prompt, max_new_tokens=args.max_new_tokens,
                      ppl_ids=ids, window=args.window, max_windows=args.max_windows, threads=args.threads)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
