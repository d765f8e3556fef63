"""Evaluation of FP and quantized LMs: perplexity / next-token top-1, and a per-layer SQNR report.

* :func:`perplexity` — any module with ``forward(input_ids [B, L]) -> logits [B, L, V]`` (a tuple whose
  first item is the logits is accepted too). The token stream is cut into fixed, non-overlapping windows;
  each window is scored on its own (no state carried across windows), every position but the first
  predicts the next token. ``ppl = exp(mean NLL)`` over all predicted tokens (spec E.1's protocol with
  a configurable window; Quamba uses 2048).
* :func:`sqnr_report` — runs an FP model and a quantized model on the same inputs and compares the
  activations at every tap point the two share by name (the FP mixers' ``nn.Identity`` taps; the
  quantized modules keep those names and pass dequantized values through them), plus the logits.
  ``SQNR = 10·log10(Σ x_fp² / Σ (x_q − x_fp)²)`` accumulated over all samples.

Rotation: the quantized model's residual stream is Hadamard-rotated, but every tap is *inside* a mixer
(after in_proj, which absorbs the rotation, and before out_proj's online Hadamard), so taps compare
directly with the un-rotated FP model. Mamba2's sort-and-cluster reorder permutes heads and channels of
x / z / dt / y / the SSM state; where the quantized mixer exposes the permutation (``head_index`` /
``channel_index``) the FP tap is permuted the same way before comparing (see :func:`_align`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["perplexity", "sqnr_report", "format_sqnr_table", "format_perplexity", "sqnr_db",
           "DEFAULT_SQNR_THRESHOLD_DB"]

DEFAULT_SQNR_THRESHOLD_DB = 20.0  # an activation below this is flagged "LOW"


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _logits_of(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    logits = getattr(out, "logits", None)  # transformers-style output objects
    if isinstance(logits, Tensor):
        return logits
    raise TypeError(f"model returned {type(out).__name__}; expected logits [B, L, V]")


# ------------------------------------------------------------------------------------------------
# perplexity
# ------------------------------------------------------------------------------------------------


def make_windows(token_ids: Tensor, window: int, max_windows: int | None = None) -> Tensor:
    """``[n_windows, window]``: consecutive non-overlapping windows; a trailing partial window is
    dropped (as Quamba's ppl_eval does), except that a stream shorter than one window is used whole."""
    ids = torch.as_tensor(token_ids)
    if ids.dim() != 1:
        raise ValueError(f"token_ids must be 1-D, got shape {tuple(ids.shape)}")
    if window < 2:
        raise ValueError(f"window must be >= 2 (one context token and one target), got {window}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    n = ids.numel()
    if n < 2:
        raise ValueError(f"need at least 2 tokens to score, got {n}")
    if n < window:
        return ids.reshape(1, n)
    count = n // window
    if max_windows is not None:
        count = min(count, max_windows)
    return ids[: count * window].reshape(count, window)


def text_token_ids(source: str | Path, tokenizer: Any) -> Tensor:
    """Token ids of a text source for perplexity: the documents (``calibration.read_documents``: .txt
    blank-line separated, .jsonl "text" fields, or a cached HF dataset) joined with blank lines and
    tokenized as one string. ``quamba-edge eval --ppl`` and benchmarks/accuracy.py both score this."""
    from .calibration import read_documents

    _, docs = read_documents(source)
    return torch.tensor(tokenizer.encode("\n\n".join(docs)), dtype=torch.long)


@torch.no_grad()
def perplexity(model: nn.Module, token_ids: Tensor, window: int = 512, max_windows: int | None = None,
               batch_size: int = 1) -> dict[str, float | int]:
    """Perplexity and next-token top-1 accuracy of ``model`` over ``token_ids`` (1-D).

    Returns ``{"ppl", "loss", "top1", "tokens", "windows", "window"}``: ``loss`` is the mean negative
    log-likelihood in nats per predicted token, ``ppl = exp(loss)``, ``top1`` the fraction of predicted
    tokens whose argmax logit is the target, ``tokens`` the number of predicted tokens
    (``windows · (window − 1)``), ``window`` the window length actually used (shorter than asked only
    when the whole stream is shorter than one window).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    wins = make_windows(token_ids, window, max_windows)
    device = _model_device(model)
    total_nll = 0.0  # python float = fp64 accumulation
    correct = 0
    count = 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, wins.shape[0], batch_size):
            batch = wins[start:start + batch_size].to(device=device, dtype=torch.long)
            logits = _logits_of(model(batch))
            if logits.shape[:2] != batch.shape:
                raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for input "
                                 f"{tuple(batch.shape)}; expected [B, L, V]")
            pred = logits[:, :-1].float()
            target = batch[:, 1:]
            nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="sum")
            total_nll += float(nll.double())
            correct += int((pred.argmax(dim=-1) == target).sum())
            count += target.numel()
    finally:
        model.train(was_training)
    loss = total_nll / count
    return {
        "ppl": math.exp(loss) if loss < 700 else float("inf"),
        "loss": loss,
        "top1": correct / count,
        "tokens": count,
        "windows": int(wins.shape[0]),
        "window": int(wins.shape[1]),
    }


def format_perplexity(r: dict[str, Any]) -> str:
    return (f"perplexity {r['ppl']:.4f}  (loss {r['loss']:.4f} nats/token)  top-1 {100 * r['top1']:.2f}%  "
            f"over {r['tokens']:,} predicted tokens in {r['windows']} window(s) of {r['window']}")


# ------------------------------------------------------------------------------------------------
# SQNR
# ------------------------------------------------------------------------------------------------


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10·log10(signal / noise)``; +inf for an exact match, -inf for a zero signal with noise."""
    if noise_power <= 0.0:
        return float("inf")
    if signal_power <= 0.0:
        return float("-inf")
    return 10.0 * math.log10(signal_power / noise_power)


def tap_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.Identity`` tap modules of a model (the FP mixers' calibration points)."""
    return [n for n, m in model.named_modules() if n and type(m) is nn.Identity]


@contextmanager
def _capture(model: nn.Module, names: Iterable[str], store: dict[str, Tensor]) -> Iterator[None]:
    mods = dict(model.named_modules())
    handles = []

    def hook(name: str):
        def fn(_m: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, Tensor):
                store[name] = out.detach()
        return fn

    try:
        for n in names:
            handles.append(mods[n].register_forward_hook(hook(n)))
        yield
    finally:
        for h in handles:
            h.remove()


def _split_name(name: str) -> tuple[int | None, str]:
    """``layers.3.mixer.x_conv_out`` -> (3, "mixer.x_conv_out")."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1]), ".".join(parts[2:])
    return None, name


def _permutation(q_model: nn.Module, layer: int | None, kind: str) -> Tensor | None:
    """The reorder permutation (``channel_index`` over E, ``head_index`` over H) of a quantized mixer,
    if it exposes one (attribute/buffer on the mixer or in its ``reorder`` record)."""
    if layer is None:
        return None
    try:
        mixer = q_model.layers[layer].mixer  # type: ignore[index,union-attr]
    except (AttributeError, IndexError, TypeError):
        return None
    for holder in (mixer, getattr(mixer, "reorder", None), getattr(mixer, "reorder_info", None)):
        if holder is None:
            continue
        v = holder.get(kind) if isinstance(holder, dict) else getattr(holder, kind, None)
        if isinstance(v, Tensor) and v.numel() > 0:
            return v.long()
    return None


_CHANNEL_TAPS = ("z_act", "x_conv_in", "x_conv_out", "ssd_out")  # [..., E], permuted by channel_index
_HEAD_TAPS = ("dt_act",)  # [..., H], permuted by head_index
_STATE_TAPS = ("ssm_state_act",)  # Mamba2 [B, H, P, N]: channel_index over the flattened (H, P)


def _align(fp: Tensor, name: str, q_model: nn.Module) -> Tensor:
    """The FP activation in the quantized model's channel order (Mamba2 sort-and-cluster reorder:
    quantized channel ``j`` holds FP channel ``channel_index[j]``, head ``j`` FP head ``head_index[j]``).

    z / x / y taps take ``channel_index``, dt takes ``head_index``, the Mamba2 SSM state takes
    ``channel_index`` over its flattened (H, P) dims; B and C are not permuted by the reorder."""
    layer, tap = _split_name(name)
    leaf = tap.rsplit(".", 1)[-1]
    if leaf in _CHANNEL_TAPS or (leaf in _STATE_TAPS and fp.dim() == 4):
        ci = _permutation(q_model, layer, "channel_index")
        if ci is None:
            return fp
        ci = ci.to(fp.device)
        if fp.dim() == 4:
            b, h, p, n = fp.shape
            if ci.numel() == h * p:
                return fp.reshape(b, h * p, n)[:, ci].reshape(b, h, p, n)
            return fp
        return fp[..., ci] if fp.shape[-1] == ci.numel() else fp
    if leaf in _HEAD_TAPS:
        hi = _permutation(q_model, layer, "head_index")
        if hi is not None and fp.shape[-1] == hi.numel():
            return fp[..., hi.to(fp.device)]
    return fp


@torch.no_grad()
def sqnr_report(fp_model: nn.Module, q_model: nn.Module, samples: Sequence[Tensor],
                taps: Sequence[str] | None = None, include_logits: bool = True,
                threshold_db: float = DEFAULT_SQNR_THRESHOLD_DB) -> list[dict[str, Any]]:
    """Per-tap SQNR of ``q_model`` against ``fp_model`` on the same ``samples`` (each ``[1, L]`` or
    ``[B, L]`` token ids).

    Both models run end to end on every sample, so a tap's error includes what earlier layers passed
    on. Taps are the ``nn.Identity`` modules present under the same name in both models (``taps``
    restricts them). Returns one dict per tap in model order, then ``logits``: ``{"name", "layer"
    (int or None), "tap", "shape" (per sample, of the last one), "sqnr_db", "signal_power",
    "noise_power" (mean squares), "numel", "low" (sqnr < threshold_db), "worst" (the lowest
    finite-or-not SQNR of the taps)}``.
    """
    if not samples:
        raise ValueError("sqnr_report needs at least one sample")
    fp_taps = tap_names(fp_model)
    q_mods = dict(q_model.named_modules())
    names = [n for n in fp_taps if n in q_mods]
    if taps is not None:
        wanted = set(taps)
        unknown = sorted(wanted - set(names))
        if unknown:
            raise ValueError(f"unknown tap(s) {unknown}; shared taps: {names}")
        names = [n for n in names if n in wanted]
    if not names and not include_logits:
        raise ValueError("the two models share no tap points")
    order = names + (["logits"] if include_logits else [])
    acc = {n: [0.0, 0.0, 0, None] for n in order}  # signal sum², noise sum², numel, shape
    fp_dev, q_dev = _model_device(fp_model), _model_device(q_model)
    fp_train, q_train = fp_model.training, q_model.training
    fp_model.eval()
    q_model.eval()
    try:
        for s in samples:
            ids = torch.as_tensor(s).long()
            if ids.dim() == 1:
                ids = ids.unsqueeze(0)
            fp_out: dict[str, Tensor] = {}
            q_out: dict[str, Tensor] = {}
            with _capture(fp_model, names, fp_out):
                fp_logits = _logits_of(fp_model(ids.to(fp_dev)))
            with _capture(q_model, names, q_out):
                q_logits = _logits_of(q_model(ids.to(q_dev)))
            if include_logits:
                fp_out["logits"], q_out["logits"] = fp_logits, q_logits
            for n in order:
                if n not in fp_out or n not in q_out:
                    continue  # a tap not reached by this forward (e.g. the decode-only path)
                a = fp_out[n].double()
                b = q_out[n].to(device=a.device, dtype=torch.float64)
                a = _align(a, n, q_model)
                if a.shape != b.shape:
                    raise ValueError(f"tap {n}: FP activation {tuple(a.shape)} and quantized activation "
                                     f"{tuple(b.shape)} differ in shape")
                acc[n][0] += float((a * a).sum())
                acc[n][1] += float(((b - a) ** 2).sum())
                acc[n][2] += a.numel()
                acc[n][3] = list(a.shape)
    finally:
        fp_model.train(fp_train)
        q_model.train(q_train)
    rows: list[dict[str, Any]] = []
    for n in order:
        sig, noise, numel, shape = acc[n]
        if numel == 0:
            continue
        layer, tap = _split_name(n)
        db = sqnr_db(sig, noise)
        rows.append({"name": n, "layer": layer, "tap": tap, "shape": shape, "sqnr_db": db,
                     "signal_power": sig / numel, "noise_power": noise / numel, "numel": numel,
                     "low": db < threshold_db, "worst": False})
    tap_rows = [r for r in rows if r["name"] != "logits"]
    if tap_rows:
        min(tap_rows, key=lambda r: r["sqnr_db"])["worst"] = True
    return rows


def _fmt_db(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.2f}"


def format_sqnr_table(rows: Sequence[dict[str, Any]],
                      threshold_db: float = DEFAULT_SQNR_THRESHOLD_DB) -> str:
    """A text table of :func:`sqnr_report` rows, one line per tap, with a bar (longer = better, one
    ``#`` per 2 dB up to 50 dB), ``LOW`` under ``threshold_db`` and ``<- worst`` on the worst tap; a
    summary of the worst tap and each layer's minimum follows."""
    if not rows:
        return "(no tap points compared)"
    name_w = max(len("tap"), *(len(r["tap"]) for r in rows))
    lines = [f"{'layer':>5}  {'tap':<{name_w}}  {'SQNR dB':>8}  {'':<25}  flag",
             f"{'-' * 5}  {'-' * name_w}  {'-' * 8}  {'-' * 25}  ----"]
    for r in rows:
        layer = "-" if r["layer"] is None else str(r["layer"])
        db = r["sqnr_db"]
        bar = "#" * (25 if math.isinf(db) and db > 0 else max(0, min(25, int(db // 2))))
        flags = []
        if db < threshold_db:
            flags.append("LOW")
        if r.get("worst"):
            flags.append("<- worst")
        lines.append(f"{layer:>5}  {r['tap']:<{name_w}}  {_fmt_db(db):>8}  {bar:<25}  {' '.join(flags)}")
    tap_rows = [r for r in rows if r["name"] != "logits"]
    if tap_rows:
        worst = min(tap_rows, key=lambda r: r["sqnr_db"])
        low = [r["name"] for r in tap_rows if r["sqnr_db"] < threshold_db]
        lines.append("")
        lines.append(f"worst: {worst['name']} at {_fmt_db(worst['sqnr_db'])} dB; "
                     f"{len(low)} of {len(tap_rows)} taps below {threshold_db:g} dB")
        per_layer: dict[int, float] = {}
        for r in tap_rows:
            if r["layer"] is not None:
                per_layer[r["layer"]] = min(per_layer.get(r["layer"], float("inf")), r["sqnr_db"])
        if per_layer:
            lines.append("layer minimum: " + ", ".join(f"{k}: {_fmt_db(v)}" for k, v in sorted(per_layer.items())))
    return "\n".join(lines)
