#!/usr/bin/env python
"""Accuracy benchmark of the Quamba / Quamba2 recipes on the bundled reference models (CPU).

For ``mamba1-ref`` and ``mamba2-ref`` (``quamba_edge/assets``): perplexity and next-token top-1 accuracy
on the shipped evaluation slice (``quamba_edge/assets/text/eval.txt``) in non-overlapping windows, for

* ``fp``: the FP model. Its checkpoint stores fp16 weights; we load them into fp32 and compute in fp32
  on the CPU (fp16 matmuls are not a CPU path). "Δppl vs FP" is relative to this row.
* Mamba1: ``quamba`` W8A8 (paper / REPO@v1 style), ``quamba2`` W8A8 / W4A8 / W4A16.
* Mamba2: the Quamba recipe on Mamba2 (Q2-paper's baseline = HEAD's percentile fallback:
  ``quamba2`` W8A8 with ``group_heads=False``, spec F.27), ``quamba2`` W8A8 / W4A8 / W4A16, and the
  W4A8 ablation of Q2-paper Table 8:
  (1) Hadamard only: RTN 4-bit weights (``gptq=False``), per-tensor B/C, no sort-and-cluster;
  (2) + GPTQ; (3) + per-state-group B/C (``bc_per_group=True``); (4) + sort-and-cluster (= the full
  ``quamba2`` W4A8 row, not recomputed).

Quantized models are the integer-faithful ``QuantMambaLM`` (int8 / int4 storage, the kernels' integer
arithmetic simulated with torch ops; kept floating-point tensors in fp16, arithmetic in fp32).

Calibration (fixed seeds): activation scales from ``calib_samples`` disjoint windows of ``calib_len``
tokens of the shipped calibration slice (``calibration.load_samples``), GPTQ from ``gptq_samples``
windows of ``gptq_len`` tokens of the same slice on a grid shifted by ``gptq_len // 2``
(``calibration.load_gptq_samples``; the slice is only ~63k tokens, so the text overlaps the activation
windows: there is no second shipped slice).

Also reported: per-channel activation maxima of the FP models at the SSM input x (tap ``x_conv_out``)
and at the out_proj input (Mamba1: tap ``ssm_out``; Mamba2: the gated-norm output), over the
calibration windows, so a reader sees whether these small models show the channel outliers the papers
describe.

Writes ``<out>/accuracy.json``, ``<out>/accuracy.md`` and ``<out>/accuracy.png``.

    python benchmarks/accuracy.py                      # full run, both models (~15-20 min, 2 cores)
    python benchmarks/accuracy.py --models mamba2-ref  # one model
    python benchmarks/accuracy.py --quick              # smoke run (tiny settings, -> accuracy_quick.*)

The targets (issue: Δppl W8A8 ≤ 1 %, W4A16 ≤ 2 %, W4A8 ≤ 3 %; Quamba2 ahead of the Quamba recipe on
Mamba2; the ablation improves at each step) are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_info  # noqa: E402

TEXT_DIR = ROOT / "quamba_edge" / "assets" / "text"
CALIB_TXT = TEXT_DIR / "calib.txt"
EVAL_TXT = TEXT_DIR / "eval.txt"
MODELS = ("mamba1-ref", "mamba2-ref")

#: Δppl targets (percent) of the issue, by bit width.
PPL_TARGETS = {"w8a8": 1.0, "w4a16": 2.0, "w4a8": 3.0}
#: A channel counts as an outlier when its absmax is at least this many times the median channel's.
OUTLIER_FACTOR = 10.0


@dataclass
class Settings:
    calib_samples: int = 64
    calib_len: int = 512
    gptq_samples: int = 32
    gptq_len: int = 1024
    eval_window: int = 512
    eval_windows: int | None = None  # None: every full window of the slice
    eval_chunk: int = 8  # windows per perplexity() call (batch); chunks give the paired error bars
    seed: int = 0
    threads: int = 2


QUICK = Settings(calib_samples=2, calib_len=64, gptq_samples=2, gptq_len=128, eval_window=64,
                 eval_windows=4, eval_chunk=2)


@dataclass
class RowSpec:
    key: str
    label: str
    recipe: str | None  # None: the FP model
    bits: str | None
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "main"  # "fp" | "main" | "baseline" | "variant" | "ablation"
    same_as: str | None = None  # ablation step identical to another row (not recomputed)
    step: int | None = None


def row_specs(arch: str) -> list[RowSpec]:
    rows = [RowSpec("fp", "FP (fp16 weights, fp32 compute)", None, None, kind="fp")]
    if arch == "mamba1":
        rows.append(RowSpec("quamba-w8a8", "Quamba W8A8", "quamba", "w8a8"))
    else:
        rows.append(RowSpec("quamba-recipe-w8a8", "Quamba recipe on Mamba2, W8A8", "quamba2", "w8a8",
                            {"group_heads": False}, kind="baseline"))
    for bits in ("w8a8", "w4a8", "w4a16"):
        rows.append(RowSpec(f"quamba2-{bits}", f"Quamba2 {bits.upper()}", "quamba2", bits))
    if arch == "mamba2":
        # Q2-paper Table 10 style: W4 blocks with the embedding / lm_head kept in fp16 (not a recipe of
        # its own; shows how much of the W4 loss the 4-bit embedding / lm_head cause on this small model)
        for bits in ("w4a8", "w4a16"):
            rows.append(RowSpec(f"quamba2-{bits}-fp16-head", f"Quamba2 {bits.upper()}, fp16 embedding + lm_head",
                                "quamba2", bits, {"quantize_embedding": False, "quantize_lm_head": False},
                                kind="variant"))
        abl = [
            ("abl1-hadamard", "(1) Hadamard only (RTN W4, per-tensor B/C, no SnC)",
             {"gptq": False, "group_heads": False, "bc_per_group": False}, None),
            ("abl2-gptq", "(2) + GPTQ", {"gptq": True, "group_heads": False, "bc_per_group": False}, None),
            ("abl3-persg", "(3) + per-state-group B/C",
             {"gptq": True, "group_heads": False, "bc_per_group": True}, None),
            ("abl4-snc", "(4) + sort-and-cluster (= Quamba2 W4A8)", {}, "quamba2-w4a8"),
        ]
        for i, (key, label, opts, same) in enumerate(abl, 1):
            rows.append(RowSpec(key, label, "quamba2", "w4a8", opts, kind="ablation", same_as=same, step=i))
    return rows


# ---- environment --------------------------------------------------------------------------------


def _say(msg: str, t0: float | None = None) -> None:
    stamp = f"[{time.perf_counter() - t0:7.1f}s] " if t0 is not None else ""
    print(f"{stamp}{msg}", flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- data -----------------------------------------------------------------------------------------


def evaluate(model, windows, chunk: int) -> dict[str, Any]:
    """``evaluate.perplexity`` over ``windows`` [n, w] in chunks of ``chunk`` windows (one batch each);
    the totals equal one call over all windows, the per-chunk NLL sums give paired error bars."""
    from quamba_edge.quant.evaluate import perplexity

    n, w = windows.shape
    nll, correct, tokens, per_chunk = 0.0, 0, 0, []
    for a in range(0, n, chunk):
        part = windows[a:a + chunk]
        r = perplexity(model, part.reshape(-1), window=w, batch_size=part.shape[0])
        s = r["loss"] * r["tokens"]
        nll += s
        correct += round(r["top1"] * r["tokens"])
        tokens += r["tokens"]
        per_chunk.append((s, r["tokens"]))
    loss = nll / tokens
    return {"ppl": math.exp(loss), "loss": loss, "top1": correct / tokens, "tokens": tokens,
            "windows": n, "window": w, "chunk_nll": per_chunk}


def delta_ppl(q: dict[str, Any], fp: dict[str, Any]) -> dict[str, float]:
    """Relative perplexity change of ``q`` vs ``fp`` (any two evaluations of the same windows, e.g. a
    quantized model vs the FP one) in %, with a 95 % interval from the paired per-chunk mean-loss
    differences (chunks of consecutive windows as independent units)."""
    d = [(sq - sf) / t for (sq, t), (sf, _) in zip(q["chunk_nll"], fp["chunk_nll"])]
    dl = q["loss"] - fp["loss"]
    k = len(d)
    if k > 1:
        mean = sum(d) / k
        se = math.sqrt(sum((x - mean) ** 2 for x in d) / (k - 1) / k)
    else:
        se = float("nan")
    pct = lambda x: 100.0 * (math.exp(x) - 1.0)  # noqa: E731
    return {"dppl_pct": pct(dl), "dppl_ci95_lo": pct(dl - 1.96 * se), "dppl_ci95_hi": pct(dl + 1.96 * se),
            "dloss": dl, "dloss_se": se}


# ---- activation statistics ------------------------------------------------------------------------


def activation_stats(model, samples: Sequence) -> dict[str, Any]:
    """Per-channel absmax (over all tokens of ``samples``) of the SSM input x (tap ``x_conv_out``) and
    of the out_proj input of every layer of an FP model; also of the out_proj input after the online
    Hadamard transform Quamba applies there."""
    import torch

    from quamba_edge.quant.hadamard import hadamard_transform

    n_layer = len(model.layers)
    amax: dict[str, list] = {"x": [None] * n_layer, "out_proj_in": [None] * n_layer,
                             "out_proj_in_hadamard": [None] * n_layer}

    def upd(name, i, t):
        a = t.detach().abs().reshape(-1, t.shape[-1]).amax(0).float()
        cur = amax[name][i]
        amax[name][i] = a if cur is None else torch.maximum(cur, a)

    handles = []
    for i, layer in enumerate(model.layers):
        mix = layer.mixer
        handles.append(mix.x_conv_out.register_forward_hook(lambda _m, _i, out, i=i: upd("x", i, out)))

        def pre(_m, inp, i=i):
            upd("out_proj_in", i, inp[0])
            upd("out_proj_in_hadamard", i, hadamard_transform(inp[0].float()))

        handles.append(mix.out_proj.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            for s in samples:
                model(s)
    finally:
        for h in handles:
            h.remove()

    def summarize(a):
        med = float(a.median())
        top = torch.topk(a, min(5, a.numel()))
        return {"channels": a.numel(), "max": float(a.max()), "median": float(med),
                "max_over_median": float(a.max()) / med if med > 0 else float("inf"),
                "p99_over_median": float(torch.quantile(a, 0.99)) / med if med > 0 else float("inf"),
                "outlier_channels": int((a >= OUTLIER_FACTOR * med).sum()),
                "top5": [[int(c), round(float(v), 4)] for v, c in zip(top.values, top.indices)]}

    return {name: [summarize(a) for a in layers] for name, layers in amax.items()}


# ---- the run ----------------------------------------------------------------------------------------


def run_model(name: str, st: Settings, t0: float, only: Sequence[str] | None = None) -> dict[str, Any]:

    from quamba_edge.models import load_model, load_tokenizer
    from quamba_edge.quant.calibration import load_gptq_samples, load_samples
    from quamba_edge.quant.evaluate import make_windows, text_token_ids
    from quamba_edge.quant.recipes import quantize_model

    fp = load_model(name).eval()
    arch = fp.config.arch
    tok = load_tokenizer(name)
    ids = text_token_ids(EVAL_TXT, tok)
    windows = make_windows(ids, st.eval_window, st.eval_windows)
    calib = load_samples(CALIB_TXT, tok, st.calib_samples, st.calib_len, seed=st.seed)
    gptq = load_gptq_samples(CALIB_TXT, tok, st.gptq_samples, st.gptq_len, seed=st.seed)
    _say(f"{name} ({arch}, {sum(p.numel() for p in fp.parameters()):,} parameters): eval "
         f"{windows.shape[0]} x {windows.shape[1]} tokens of {ids.numel():,}; calib {len(calib)} x "
         f"{st.calib_len}; GPTQ {len(gptq)} x {st.gptq_len}", t0)

    t = time.perf_counter()
    stats = activation_stats(fp, calib)
    _say(f"{name}: activation statistics ({time.perf_counter() - t:.1f}s)", t0)

    rows: list[dict[str, Any]] = []
    fp_res = None
    specs = [s for s in row_specs(arch) if only is None or s.key == "fp" or s.key in only
             or (s.same_as is not None and s.same_as in only)]
    for spec in specs:
        row = {"model": name, "arch": arch, "key": spec.key, "label": spec.label, "kind": spec.kind,
               "recipe": spec.recipe or "fp", "bits": spec.bits or "fp", "options": dict(spec.options),
               "step": spec.step, "same_as": spec.same_as}
        if spec.same_as is not None:
            src = next((r for r in rows if r["key"] == spec.same_as), None)
            if src is None:
                continue
            for k in ("ppl", "loss", "top1", "tokens", "dppl_pct", "dppl_ci95_lo", "dppl_ci95_hi",
                      "dtop1_pp", "quantize_s", "eval_s", "quant_config", "chunk_nll"):
                row[k] = src.get(k)
            rows.append(row)
            continue
        quantize_s = None
        if spec.recipe is None:
            model = fp
        else:
            t = time.perf_counter()
            model = quantize_model(fp, spec.recipe, spec.bits, calib, gptq, **spec.options)
            quantize_s = time.perf_counter() - t
            qc = model.quant_config.to_dict()
            qc.pop("head_groups", None), qc.pop("channel_groups", None), qc.pop("meta", None)
            row["quant_config"] = qc
        t = time.perf_counter()
        res = evaluate(model, windows, st.eval_chunk)
        eval_s = time.perf_counter() - t
        row.update(ppl=res["ppl"], loss=res["loss"], top1=res["top1"], tokens=res["tokens"],
                   chunk_nll=[[round(a, 6), b] for a, b in res["chunk_nll"]],
                   quantize_s=None if quantize_s is None else round(quantize_s, 2), eval_s=round(eval_s, 2))
        if fp_res is None:
            fp_res = res
            row.update(dppl_pct=0.0, dppl_ci95_lo=0.0, dppl_ci95_hi=0.0, dtop1_pp=0.0)
        else:
            d = delta_ppl(res, fp_res)
            row.update(dppl_pct=d["dppl_pct"], dppl_ci95_lo=d["dppl_ci95_lo"], dppl_ci95_hi=d["dppl_ci95_hi"],
                       dtop1_pp=100.0 * (res["top1"] - fp_res["top1"]))
        rows.append(row)
        qs = "" if quantize_s is None else f"quantize {quantize_s:.1f}s, "
        _say(f"{name} {spec.key}: ppl {res['ppl']:.3f} (Δ {row['dppl_pct']:+.2f}%), top-1 "
             f"{100 * res['top1']:.2f}% ({qs}eval {eval_s:.1f}s)", t0)
        if model is not fp:
            del model
    return {"rows": rows, "activation_stats": stats,
            "eval": {"tokens_in_slice": int(ids.numel()), "windows": int(windows.shape[0]),
                     "window": int(windows.shape[1])}}


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    by = {(r["model"], r["key"]): r for r in rows}
    for r in rows:
        if r["kind"] != "main" or r["bits"] not in PPL_TARGETS:
            continue
        lim = PPL_TARGETS[r["bits"]]
        out.append({"target": f"{r['model']} {r['label']}: Δppl ≤ {lim:g} %", "kind": "dppl",
                    "model": r["model"], "key": r["key"], "limit_pct": lim,
                    "value": r["dppl_pct"], "met": r["dppl_pct"] <= lim,
                    "detail": f"Δppl {r['dppl_pct']:+.2f} % (95 % CI {r['dppl_ci95_lo']:+.2f} … "
                              f"{r['dppl_ci95_hi']:+.2f})"})
    models = sorted({r["model"] for r in rows})
    for m in models:
        base, q2 = by.get((m, "quamba-recipe-w8a8")), by.get((m, "quamba2-w8a8"))
        if base and q2:
            c = _change(q2, base)
            out.append({"target": f"{m}: Quamba2 W8A8 ahead of the Quamba recipe (W8A8) on Mamba2",
                        "kind": "q2_vs_quamba", "model": m, "met": q2["ppl"] < base["ppl"], **c,
                        "detail": f"ppl {base['ppl']:.3f} → {q2['ppl']:.3f}, {_change_text(c)}"})
        steps = sorted((r for r in rows if r["model"] == m and r["kind"] == "ablation"),
                       key=lambda r: r["step"])
        for a, b in zip(steps, steps[1:]):
            c = _change(b, a)
            out.append({"target": f"{m}: ablation step {b['step']} better than step {a['step']}",
                        "kind": "ablation", "model": m, "step": b["step"], "met": b["ppl"] < a["ppl"], **c,
                        "detail": f"ppl {a['ppl']:.3f} → {b['ppl']:.3f}, {_change_text(c)}"})
    return out


def _change(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Paired perplexity change from row ``old`` to row ``new`` (%, 95 % CI, CI excludes 0?)."""
    d = delta_ppl({"loss": new["loss"], "chunk_nll": new["chunk_nll"]},
                  {"loss": old["loss"], "chunk_nll": old["chunk_nll"]})
    lo, hi = d["dppl_ci95_lo"], d["dppl_ci95_hi"]
    return {"change_pct": d["dppl_pct"], "change_ci95_lo": lo, "change_ci95_hi": hi,
            "significant": bool(hi < 0 or lo > 0)}


def _change_text(c: dict[str, Any]) -> str:
    sig = "CI excludes 0" if c["significant"] else "CI includes 0: within noise"
    return (f"ppl change {c['change_pct']:+.2f} % (paired 95 % CI {c['change_ci95_lo']:+.2f} … "
            f"{c['change_ci95_hi']:+.2f}; {sig})")


def outlier_verdicts(stats_by_model: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    names = {"x": "SSM input x (`x_conv_out`)", "out_proj_in": "out_proj input",
             "out_proj_in_hadamard": "out_proj input after the online Hadamard"}
    for m, st in stats_by_model.items():
        for tap, layers in st.items():
            ratios = [l["max_over_median"] for l in layers]
            worst = max(range(len(layers)), key=lambda i: ratios[i])
            n_out = sum(l["outlier_channels"] for l in layers)
            pronounced = sum(r >= OUTLIER_FACTOR for r in ratios)
            out.append({"model": m, "tap": tap, "tap_name": names[tap], "layers": len(layers),
                        "max_over_median_median": sorted(ratios)[len(ratios) // 2],
                        "max_over_median_worst": ratios[worst], "worst_layer": worst,
                        "top5_worst_layer": layers[worst]["top5"],
                        "median_worst_layer": layers[worst]["median"],
                        "outlier_channels_total": n_out, "layers_with_outliers": pronounced})
    return out


# ---- reports ---------------------------------------------------------------------------------------


def _fmt_opts(r: dict[str, Any]) -> str:
    if r["same_as"]:
        return f"= {r['same_as']}"
    return ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"


def write_markdown(res: dict[str, Any], path: Path) -> str:
    st = res["settings"]
    ev = next(iter(res["eval"].values()))
    L = []
    L.append("<!-- generated by benchmarks/accuracy.py; do not edit by hand -->")
    L.append(f"Perplexity and next-token top-1 on the shipped eval slice ({ev['windows']} windows × "
             f"{ev['window']} tokens, {ev['windows'] * (ev['window'] - 1):,} predicted tokens). "
             f"Calibration: {st['calib_samples']} × {st['calib_len']} tokens (activations), "
             f"{st['gptq_samples']} × {st['gptq_len']} (GPTQ), shipped calib slice, seed {st['seed']}. "
             f"FP = fp16 checkpoint weights computed in fp32; quantized = integer-faithful "
             f"`QuantMambaLM` on CPU ({res['device']}, {st['threads']} threads). "
             f"Δppl 95 % CI from paired per-chunk losses ({st['eval_chunk']} windows per chunk).")
    L.append("")
    L.append("| model | configuration | bits | ppl | Δppl vs FP (95 % CI) | top-1 | Δtop-1 | quantize |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        if r["kind"] == "ablation":
            continue
        d = ("—" if r["kind"] == "fp"
             else f"{r['dppl_pct']:+.2f} % ({r['dppl_ci95_lo']:+.2f} … {r['dppl_ci95_hi']:+.2f})")
        dt = "—" if r["kind"] == "fp" else f"{r['dtop1_pp']:+.2f} pp"
        qs = "—" if r["quantize_s"] is None else f"{r['quantize_s']:.0f} s"
        L.append(f"| {r['model']} | {r['label']} | {r['bits'].upper() if r['bits'] != 'fp' else 'FP'} | "
                 f"{r['ppl']:.3f} | {d} | {100 * r['top1']:.2f} % | {dt} | {qs} |")
    abl = [r for r in res["rows"] if r["kind"] == "ablation"]
    if abl:
        L.append("")
        L.append("Mamba2 W4A8 ablation (Q2-paper Table 8 order; every step keeps residual rotation, the "
                 "out_proj Hadamard, group-128 W4 weights and the 4-bit embedding / lm_head; steps 1–3 use "
                 "HEAD's percentile path for x and the state, step 4 its grouped absmax scales):")
        L.append("")
        L.append("| step | options | ppl | Δppl vs FP (95 % CI) | top-1 | quantize |")
        L.append("|---|---|---:|---:|---:|---:|")
        for r in abl:
            qs = "—" if r["quantize_s"] is None else f"{r['quantize_s']:.0f} s"
            L.append(f"| {r['label']} | {_fmt_opts(r)} | {r['ppl']:.3f} | {r['dppl_pct']:+.2f} % "
                     f"({r['dppl_ci95_lo']:+.2f} … {r['dppl_ci95_hi']:+.2f}) | {100 * r['top1']:.2f} % | {qs} |")
    L.append("")
    L.append("Targets (from the issue; measured, not asserted):")
    L.append("")
    for t in res["targets"]:
        L.append(f"- **{'MET' if t['met'] else 'NOT MET'}** — {t['target']}: {t['detail']}")
    n_met = sum(t["met"] for t in res["targets"])
    L.append(f"- {n_met} of {len(res['targets'])} targets met.")
    by = {(r["model"], r["key"]): r for r in res["rows"]}
    for r in res["rows"]:
        if r["kind"] != "variant":
            continue
        full = by.get((r["model"], r["key"].replace("-fp16-head", "")))
        lim = PPL_TARGETS[r["bits"]]
        if full is not None:
            L.append(f"- Not a target row: {r['model']} {r['bits'].upper()} with the embedding / lm_head in "
                     f"fp16 has Δppl {r['dppl_pct']:+.2f} % (vs {full['dppl_pct']:+.2f} % with them in 4 bits), "
                     f"{'within' if r['dppl_pct'] <= lim else 'still above'} the ≤ {lim:g} % target.")
    L.append("")
    L.append(f"Per-channel activation absmax of the FP models over the calibration windows "
             f"(outlier channel: absmax ≥ {OUTLIER_FACTOR:g}× the median channel's):")
    L.append("")
    L.append("| model | activation | max/median (median of layers) | max/median (worst layer) | "
             "outlier channels (all layers) | top-5 channels of the worst layer (index: absmax) |")
    L.append("|---|---|---:|---:|---:|---|")
    for v in res["outliers"]:
        top = ", ".join(f"{c}: {a:.2f}" for c, a in v["top5_worst_layer"])
        L.append(f"| {v['model']} | {v['tap_name']} | {v['max_over_median_median']:.1f} | "
                 f"{v['max_over_median_worst']:.1f} (layer {v['worst_layer']}) | "
                 f"{v['outlier_channels_total']} | {top} (median {v['median_worst_layer']:.3f}) |")
    L.append("")
    for m in dict.fromkeys(v["model"] for v in res["outliers"]):
        parts = []
        for v in res["outliers"]:
            if v["model"] != m or v["tap"] == "out_proj_in_hadamard":
                continue
            if v["layers_with_outliers"]:
                parts.append(f"{v['tap_name']}: outlier channels (≥ {OUTLIER_FACTOR:g}× median) in "
                             f"{v['layers_with_outliers']} of {v['layers']} layers")
            else:
                parts.append(f"{v['tap_name']}: no channel reaches {OUTLIER_FACTOR:g}× the median in any "
                             f"layer (worst {v['max_over_median_worst']:.1f}×)")
        L.append(f"- {m}: " + "; ".join(parts) + ".")
    text = "\n".join(L) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def write_plot(res: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = list(dict.fromkeys(r["model"] for r in res["rows"]))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.8), squeeze=False)
    colors = {"main": "#4C72B0", "baseline": "#C44E52", "variant": "#55A868", "ablation": "#8172B2"}
    for ax, m in zip(axes[0], models):
        rows = [r for r in res["rows"] if r["model"] == m and r["kind"] != "fp"]
        xs = range(len(rows))
        vals = [r["dppl_pct"] for r in rows]
        err = [[r["dppl_pct"] - r["dppl_ci95_lo"] for r in rows], [r["dppl_ci95_hi"] - r["dppl_pct"] for r in rows]]
        ax.bar(xs, vals, yerr=err, capsize=3, color=[colors[r["kind"]] for r in rows])
        for lim, style in ((1, ":"), (2, "--"), (3, "-.")):
            ax.axhline(lim, color="grey", lw=0.8, ls=style)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["key"] for r in rows], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("Δ perplexity vs FP (%)")
        fp = next(r for r in res["rows"] if r["model"] == m and r["kind"] == "fp")
        ax.set_title(f"{m} (FP ppl {fp['ppl']:.2f})")
        for x, v, r in zip(xs, vals, rows):
            y = r["dppl_ci95_hi"] if v >= 0 else r["dppl_ci95_lo"]
            ax.annotate(f"{v:+.2f}", (x, y), ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
    fig.suptitle("Perplexity increase vs FP on the eval slice (lines: 1 / 2 / 3 % targets; bars: 95 % CI)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run(models: Sequence[str], st: Settings, out_dir: Path, *, quick: bool = False, plot: bool = True,
        only: Sequence[str] | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``accuracy{_quick}.{json,md,png}`` into ``out_dir``; returns the JSON."""
    import torch

    torch.set_num_threads(st.threads)
    torch.manual_seed(st.seed)
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "accuracy_quick" if quick else "accuracy"
    started = _dt.datetime.now(_dt.timezone.utc)
    rows, stats, evals = [], {}, {}
    for name in models:
        r = run_model(name, st, t0, only)
        rows += r["rows"]
        stats[name] = r["activation_stats"]
        evals[name] = r["eval"]
    res: dict[str, Any] = {
        "benchmark": "accuracy",
        "quick": quick,
        "device": cpu_name(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **git_info(),
        "date": started.isoformat(timespec="seconds"),
        "command": command or shlex.join(["python", "benchmarks/accuracy.py", *sys.argv[1:]]),
        "settings": dataclasses.asdict(st),
        "calibration": {
            "activation": {"source": str(CALIB_TXT.relative_to(ROOT)), "function": "calibration.load_samples",
                           "samples": st.calib_samples, "seq_len": st.calib_len, "seed": st.seed,
                           "note": "disjoint packed windows on the grid k*seq_len, chosen by torch.randperm(seed)"},
            "gptq": {"source": str(CALIB_TXT.relative_to(ROOT)), "function": "calibration.load_gptq_samples",
                     "samples": st.gptq_samples, "seq_len": st.gptq_len, "seed": st.seed,
                     "note": "same slice, window grid shifted by seq_len//2, seed + GPTQ_SEED_OFFSET: "
                             "different windows, overlapping text (only one shipped calibration slice)"},
        },
        "eval": {m: {"source": str(EVAL_TXT.relative_to(ROOT)), **e} for m, e in evals.items()},
        "precision": {"fp": "fp16 checkpoint weights loaded as fp32, fp32 compute (CPU)",
                      "quantized": "QuantMambaLM: int8/int4 storage, integer-faithful ops in torch; "
                                   "kept floating-point tensors stored fp16, fp32 arithmetic"},
        "rows": rows,
        "activation_stats": stats,
        "outliers": outlier_verdicts(stats),
        "outlier_factor": OUTLIER_FACTOR,
    }
    res["targets"] = check_targets(rows)
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    write_markdown(res, out_dir / f"{stem}.md")
    if plot:
        write_plot(res, out_dir / f"{stem}.png")
    _say(f"wrote {out_dir / stem}.{{json,md{',png' if plot else ''}}} in {res['total_seconds']:.0f}s", t0)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), help="bundled model names or checkpoint dirs")
    p.add_argument("--quick", action="store_true", help="smoke run on a few tiny samples (-> accuracy_quick.*)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--rows", nargs="+", default=None, help="only these row keys (plus fp), e.g. quamba2-w4a8")
    p.add_argument("--no-plot", action="store_true")
    d = QUICK if "--quick" in (sys.argv[1:] if argv is None else argv) else Settings()
    for f in dataclasses.fields(Settings):
        p.add_argument("--" + f.name.replace("_", "-"), type=int, default=getattr(d, f.name))
    args = p.parse_args(argv)
    st = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    cmd = shlex.join(["python", "benchmarks/accuracy.py", *(sys.argv[1:] if argv is None else argv)])
    run(args.models, st, args.out_dir, quick=args.quick, plot=not args.no_plot, only=args.rows, command=cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
