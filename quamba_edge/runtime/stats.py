"""Generation statistics and memory measurement (no torch).

Times are wall-clock (``time.perf_counter``) around the whole ``generate`` call:

* ``ttft_ms`` — time to first token: from the start of ``generate`` (tokenization included) until the
  first new token of every row is sampled (prefill + one sampling step);
* ``tpot_ms`` — time per output token after the first: ``(t_end - t_first) / (steps - 1)`` where a step
  produces one token for every row still running (0 when only one step ran);
* ``tokens_per_s`` — decode throughput: new tokens after the first step, over all rows, per second of
  decode time (falls back to all new tokens over the total time when there was only one step);
* ``peak_memory_mb`` — CUDA ``max_memory_allocated`` for torch-cuda, otherwise the process peak resident
  set size (VmHWM, reset at the start of ``generate`` where Linux allows it, so it covers this call; where
  it cannot be reset it is the process lifetime peak) — ``memory_kind`` says which.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GenerationStats", "reset_peak_rss", "peak_rss_mb", "current_rss_mb"]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_reset_ok: bool | None = None


def reset_peak_rss() -> bool:
    """Reset the process peak RSS (Linux: ``echo 5 > /proc/self/clear_refs``). True when it was reset."""
    global _reset_ok
    if _reset_ok is False:
        return False
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        _reset_ok = True
    except OSError:
        _reset_ok = False
    return _reset_ok


def _status_kb(key: str) -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB (since the last reset where supported)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2**20 if sys.platform == "darwin" else r / 1024.0  # bytes on macOS, KiB elsewhere
    except (ImportError, OSError):
        return None


def current_rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


@dataclass
class GenerationStats:
    """Measurements of one ``generate`` call (see the module docstring for the definitions)."""

    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    tokens_per_s: float = 0.0
    prompt_tokens: int = 0          # tokens prefilled in this call, all rows (carried pending tokens included)
    new_tokens: int = 0             # tokens generated, all rows
    total_ms: float = 0.0
    batch_size: int = 1
    prefill_chunks: int = 0         # forward calls spent on prefill
    peak_memory_mb: float | None = None
    memory_kind: str = "process peak RSS"
    backend: str = ""
    precision: str = ""
    compute_dtype: str = ""
    device: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("ttft_ms", "tpot_ms", "tokens_per_s", "total_ms", "peak_memory_mb"):
            if isinstance(d[k], float):
                d[k] = round(d[k], 3)
        return d

    def summary(self) -> str:
        mem = "n/a" if self.peak_memory_mb is None else f"{self.peak_memory_mb:,.1f} MB ({self.memory_kind})"
        return (f"{self.backend} {self.precision} on {self.device}: TTFT {self.ttft_ms:.1f} ms, "
                f"TPOT {self.tpot_ms:.2f} ms, {self.tokens_per_s:.1f} tokens/s, {self.prompt_tokens} prompt + "
                f"{self.new_tokens} new tokens, peak memory {mem}")

