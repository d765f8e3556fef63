"""``quamba-edge bench``: TTFT / TPOT / peak memory of models at real shapes on the torch-cuda runtime.

Models are built on the GPU with random weights in their final dtype and format (``random_model``: latency
does not depend on the values), run through :class:`~quamba_edge.runtime.backends.torch_backend.TorchBackend`
exactly as ``EdgeModel`` runs them: prefill eager, decode steps as CUDA-graph replays (one graph per batch
bucket) unless ``graphs=False``. Greedy token choice on the host from the step's logits, as ``generate``.

* TTFT(L): one prefill of ``L`` tokens at batch 1 through the first token's logits on the host.
* TPOT(B): ``tokens`` decode steps after a 16-token prompt at batch ``B``, per step.
* per-op time (``profile``): the eager decode step at batch 1 under ``torch.profiler``, kernel times summed
  per op kind and set against the roofline of :mod:`quamba_edge.bench.roofline`.
* peak memory: ``torch.cuda.max_memory_allocated`` over the model's runs, torch's peak reservation, the
  device memory NVML reports in use after them (discrete GPUs, where pynvml is installed) and the process's
  peak RSS (/proc); on a Jetson with jetson-stats (optional extra, AGPL, imported lazily) the board's RAM and
  power during the TPOT runs too.

Every figure is the median of ``repeats`` runs after ``warmup`` runs, with the min and max.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from quamba_edge._provenance import git_info

__all__ = ["BenchConfig", "run_bench", "write_outputs", "VALUES_NOTE"]

VALUES_NOTE = ("random weights at the real shapes, dtypes and formats: latency does not depend on the "
               "weight values (no kernel branches on data)")
PROMPT_FOR_DECODE = 16


@dataclass
class BenchConfig:
    models: list[str] = field(default_factory=lambda: ["mamba2-2.7b"])
    precisions: list[str] = field(default_factory=lambda: ["fp16", "w8a8", "w4a8", "w4a16"])
    prompt_lens: list[int] = field(default_factory=lambda: [128, 512, 1024, 2048])
    batches: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    tokens: int = 128
    repeats: int = 3
    warmup: int = 1
    graphs: bool = True
    profile: bool = True
    recipe: str = "quamba2"
    device: str = "cuda"
    seed: int = 0


# ---- measurements ------------------------------------------------------------------------------------


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": len(xs)}


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def ttft_ms(backend: Any, length: int, vocab: int, repeats: int, warmup: int, rng: np.random.Generator,
            sync: Callable[[], None]) -> dict[str, float]:
    ids = rng.integers(0, vocab, (1, length), dtype=np.int64)

    def run() -> None:
        logits, _ = backend.forward(ids, None, last_only=True)
        int(logits[0, -1].argmax())

    for _ in range(warmup):
        run()
    return _stats([1000 * _timed(run, sync) for _ in range(repeats)])


def tpot_ms(backend: Any, batch: int, tokens: int, vocab: int, repeats: int, warmup: int,
            rng: np.random.Generator, sync: Callable[[], None], graphs: bool = True) -> dict[str, float]:
    ids = rng.integers(0, vocab, (batch, PROMPT_FOR_DECODE), dtype=np.int64)

    def decode(n: int) -> float:
        logits, state = backend.forward(ids, None, last_only=True)
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            nxt = logits[:, -1].argmax(-1).reshape(-1, 1).astype(np.int64)
            if graphs:
                logits, state = backend.decode_step(nxt, state)
            else:
                logits, state = backend.forward(nxt, state, last_only=True)
        sync()
        return 1000 * (time.perf_counter() - t0) / n

    for _ in range(warmup):
        decode(min(tokens, 8))
    return _stats([decode(tokens) for _ in range(repeats)])


PROFILE_STEPS = 8


def profile_decode_kernels(backend: Any, vocab: int, steps: int = PROFILE_STEPS) -> list[tuple[str, float]]:
    """(kernel name, µs / ``steps``) of every GPU kernel launched by ``steps`` eager decode steps at batch 1:
    summed, the per-step time of each kernel."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    ids = np.zeros((1, PROMPT_FOR_DECODE), dtype=np.int64)
    logits, state = backend.forward(ids, None, last_only=True)
    nxt = np.zeros((1, 1), dtype=np.int64)
    backend.forward(nxt, state, last_only=True)  # warm
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            logits, state = backend.forward(nxt, state, last_only=True)
        torch.cuda.synchronize()
    out = []
    for ev in prof.events():
        dev_us = getattr(ev, "device_time", None)
        if dev_us is None:
            dev_us = getattr(ev, "cuda_time", 0.0)
        if getattr(ev, "device_type", None) is not None and str(ev.device_type).endswith("CUDA") and dev_us:
            out.append((ev.name, float(dev_us) / steps))
    return out


class JetsonMonitor:
    """RAM and power from jetson-stats (``jtop``) on a Jetson; inert elsewhere, or when its service is not
    running (``jtop()`` raises then): ``note`` says which."""

    def __init__(self) -> None:
        self._jtop: Any = None
        self.samples: list[dict[str, float]] = []
        try:
            from jtop import jtop  # optional extra (AGPL), imported lazily

            self._jtop = jtop()
            self._jtop.start()
            self.note = "jetson-stats"
        except Exception as e:  # not installed, not a Jetson, or no jtop service
            self._jtop = None
            self.note = f"jetson-stats not available ({type(e).__name__})"

    def sample(self) -> None:
        if self._jtop is None or not self._jtop.ok():
            return
        s: dict[str, float] = {}
        try:
            s["ram_used_mb"] = float(self._jtop.memory["RAM"]["used"]) / 1024
            s["power_mw"] = float(self._jtop.power["tot"]["power"])
        except Exception:
            return
        self.samples.append(s)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"source": self.note}
        return {"source": self.note, "peak_ram_mb": max(s["ram_used_mb"] for s in self.samples),
                "mean_power_mw": statistics.mean(s["power_mw"] for s in self.samples)}

    def close(self) -> None:
        if self._jtop is not None:
            self._jtop.close()


def _memory_readings(device: str) -> dict[str, Any]:
    """Besides torch's peak allocation: what the driver says the device uses (NVML, where pynvml is installed:
    includes the CUDA context, cuBLAS workspaces and the allocator's cache) and the process's peak RSS from
    /proc (on a Jetson's unified memory, host and GPU allocations both count there)."""
    import torch

    from quamba_edge.runtime.stats import peak_rss_mb

    out: dict[str, Any] = {"torch_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
                           "process_peak_rss_mb": peak_rss_mb()}
    try:
        import pynvml

        pynvml.nvmlInit()
        idx = torch.device(device).index or 0
        out["nvml_used_mb"] = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(idx)).used / 2**20
    except Exception as e:  # no pynvml / no NVML (Jetson): say so
        out["nvml"] = f"not available ({type(e).__name__})"
    return out


def _top_kernels(kernels: list[tuple[str, float]], n: int = 15) -> list[dict[str, Any]]:
    """The ``n`` kernel names that take the most time per step: where the time goes, by name."""
    acc: dict[str, list[float]] = {}
    for name, us in kernels:
        acc.setdefault(name, []).append(us)
    top = sorted(acc.items(), key=lambda kv: -sum(kv[1]))[:n]
    return [{"kernel": k[:160], "calls_per_step": len(v) / PROFILE_STEPS, "us_per_step": sum(v), "kind": _kind(k)}
            for k, v in top]


def _kind(name: str) -> str:
    from .roofline import classify_kernel

    return classify_kernel(name)[0]


# ---- the run -------------------------------------------------------------------------------------------


def _bench_one(name: str, precision: str, cfg: BenchConfig, floors: dict[str, float], tick: Callable[[], None],
               monitor: JetsonMonitor) -> dict[str, Any]:
    import torch

    from quamba_edge.runtime.backends.torch_backend import TorchBackend

    from quamba_edge.ops import kernel_dispatch

    from . import roofline
    from .random_model import random_model

    rng = np.random.default_rng(cfg.seed)
    sync = torch.cuda.synchronize
    # the previous model's backend holds reference cycles (graph runners, closures): without a collection its
    # weights stayed allocated into this model's peak (mamba2-8b w4a16 read 17.0 GB for 4.0 GB of weights)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    row: dict[str, Any] = {"model": name, "precision": precision,
                           "allocated_before_mb": torch.cuda.memory_allocated() / 2**20}
    t0 = time.perf_counter()
    try:
        if Path(name).exists():  # a real checkpoint / artifact: its own weights and precision
            loaded = TorchBackend.load(name, device=cfg.device, cuda=True)
            model, precision = loaded.model, loaded.precision
            row["precision"], row["values"] = precision, "the checkpoint's own weights"
            del loaded
        else:
            model = random_model(name, precision, device=cfg.device, recipe=cfg.recipe, seed=cfg.seed)
    except torch.cuda.OutOfMemoryError as e:
        row["skipped"] = f"out of memory building the model: {str(e).splitlines()[0]}"
        return row
    sync()
    row["build_s"] = time.perf_counter() - t0
    row["weight_bytes"] = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if cfg.graphs:
        os.environ.pop("QUAMBA_CUDA_GRAPHS", None)
    else:
        os.environ["QUAMBA_CUDA_GRAPHS"] = "0"
    be = TorchBackend(model, tokenizer_dir=None, precision=precision, description=f"{name} {precision}")
    vocab = be.vocab_size
    row["kernels"] = be.kernels_note or "fp16 torch ops + cuBLAS (no quantized kernels)"
    try:
        row["ttft_ms"] = {}
        for length in cfg.prompt_lens:
            row["ttft_ms"][str(length)] = ttft_ms(be, length, vocab, cfg.repeats, cfg.warmup, rng, sync)
            tick()
        row["tpot_ms"], row["state_bytes"] = {}, {}
        for batch in cfg.batches:
            row["tpot_ms"][str(batch)] = tpot_ms(be, batch, cfg.tokens, vocab, cfg.repeats, cfg.warmup, rng, sync,
                                                 graphs=cfg.graphs)
            row["state_bytes"][str(batch)] = be.state_nbytes(be.new_state(batch))
            monitor.sample()
            tick()
        row["decode"] = be.graphs_note
        if cfg.graphs and 1 in cfg.batches:  # the same step without the graph: what the graph saves
            row["tpot_eager_ms_b1"] = tpot_ms(be, 1, min(cfg.tokens, 32), vocab, cfg.repeats, 1, rng, sync,
                                              graphs=False)
        qc = getattr(model, "quant_config", None)
        costs = roofline.op_costs(model.config, precision, batch=1, phase="decode", quant_config=qc)
        floor = roofline.floor_us(costs, floors["read_Bps"] / 1e9, floors["read_write_Bps"] / 1e9,
                                  launch_us=floors["launch_us"])
        row["floor"] = {k: v for k, v in floor.to_dict().items() if k != "per_op"}
        measured = None
        if cfg.profile:
            kernels = profile_decode_kernels(be, vocab)
            measured = roofline.attribute_kernels(kernels)
            row["profile_us_per_step"] = measured
            row["profile_kernels_per_step"] = len(kernels) / PROFILE_STEPS
            row["profile_top_kernels"] = _top_kernels(kernels)
            row["roofline_table"] = roofline.roofline_table(costs, measured, floor=floor)
        host = {"read_gbps": floors["read_Bps"] / 1e9, "write_gbps": floors["read_write_Bps"] / 1e9,
                "launch_us": floors["launch_us"]}
        row["orin_projection"] = {}
        for dev in (roofline.ORIN_NANO_8G, roofline.ORIN_NANO_8G_SUPER):
            proj = roofline.project(costs, measured, host, device=dev)
            row["orin_projection"][dev.name] = {"ms_per_token": proj.ms_per_step, "fits": proj.memory.fits,
                                                "memory": proj.memory.describe(),
                                                "assumptions": list(proj.assumptions)}
    except torch.cuda.OutOfMemoryError as e:
        row["skipped"] = f"out of memory: {str(e).splitlines()[0]}"
    finally:
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["memory"] = _memory_readings(cfg.device)
        del be, model
        kernel_dispatch.clear_caches()
        gc.collect()
        torch.cuda.empty_cache()
    return row


def run_bench(cfg: BenchConfig, progress: bool = True,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every model x precision of ``cfg``: a results document (see :func:`write_outputs`); ``on_row(doc)``
    after each model x precision."""
    import torch

    from .random_model import PRECISIONS
    from .roofline import model_config
    from .timing import device_info, kernel_bandwidths, launch_floor_ms

    if not torch.cuda.is_available():
        from quamba_edge.runtime.backends.base import BackendUnavailableError

        raise BackendUnavailableError("quamba-edge bench needs a CUDA GPU (torch sees none); on a Jetson install "
                                      "JetPack's torch, elsewhere a CUDA build of torch")
    for m in cfg.models:
        if not Path(m).exists():
            model_config(m)  # a clear error for a bad name before anything runs
    bad = [p for p in cfg.precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}")
    bw = kernel_bandwidths()
    floors = {"read_Bps": bw["read"], "read_write_Bps": bw["read_write"], "launch_us": 1000 * launch_floor_ms()}
    runs = sum(1 if Path(m).exists() else len(cfg.precisions) for m in cfg.models)
    steps = runs * (len(cfg.prompt_lens) + len(cfg.batches))
    bar = _progress(steps, progress)
    monitor = JetsonMonitor()
    doc = {"device": device_info(cfg.device), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           **git_info(), "command": " ".join(shlex.quote(a) for a in sys.argv), "config": asdict(cfg),
           "values": VALUES_NOTE, "floors": floors, "jetson": monitor.summary(),
           "method": ("TTFT: one prefill at batch 1 through the first token's logits on the host; TPOT: decode "
                      f"steps after a {PROMPT_FOR_DECODE}-token prompt, greedy on the host, per step; median / min / "
                      "max of the repeats after warm-up; floors: best 4 GiB kernel read and read+write rates, "
                      "one-element kernel launch"),
           "rows": []}
    try:
        for name in cfg.models:
            for precision in (cfg.precisions if not Path(name).exists() else ["own"]):
                bar.set_description(f"{name} {precision}")
                doc["rows"].append(_bench_one(name, precision, cfg, floors, lambda: bar.update(1), monitor))
                doc["jetson"] = monitor.summary()
                if on_row is not None:  # e.g. write the outputs so far: a long run cut short keeps its rows
                    on_row(doc)
    finally:
        bar.close()
        monitor.close()
    return doc


def _progress(total: int, on: bool) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(total=total, disable=not on, file=sys.stderr, unit="case")
    except ImportError:  # tqdm is optional: a silent stand-in
        class _Null:
            def update(self, n: int = 1) -> None: ...
            def set_description(self, s: str) -> None: ...
            def close(self) -> None: ...
        return _Null()


# ---- outputs ------------------------------------------------------------------------------------------


def _speedups(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """(model, precision) -> TPOT speed-up vs the model's fp16 row per batch, and TTFT per prompt length."""
    fp = {r["model"]: r for r in rows if r["precision"] == "fp16" and "skipped" not in r}
    out = {}
    for r in rows:
        base = fp.get(r["model"])
        if base is None or "skipped" in r:
            continue
        sp = {f"tpot_b{b}": base["tpot_ms"][b]["median"] / v["median"] for b, v in r.get("tpot_ms", {}).items()
              if b in base.get("tpot_ms", {})}
        sp.update({f"ttft_L{L}": base["ttft_ms"][L]["median"] / v["median"] for L, v in r.get("ttft_ms", {}).items()
                   if L in base.get("ttft_ms", {})})
        out[(r["model"], r["precision"])] = sp
    return out


def markdown(doc: dict[str, Any], per_op: bool = True) -> str:
    """The results as markdown: the main table (TPOT per batch, TTFT per prompt length, the eager step, ratios
    to the byte floor and to fp16, peak memory), the Orin projection and, with ``per_op``, the profiled
    per-op tables."""
    rows, cfg = doc["rows"], doc["config"]
    sp = _speedups(rows)
    lmax = max(cfg["prompt_lens"])
    lines = [f"Device: {doc['device']['name']} · commit {doc['commit'][:10]} · {doc['date']} · {doc['values']}",
             f"Floors: read {doc['floors']['read_Bps'] / 1e9:.0f} GB/s, read+write "
             f"{doc['floors']['read_write_Bps'] / 1e9:.0f} GB/s, launch {doc['floors']['launch_us']:.2f} µs", ""]
    head = ["model", "precision"] + [f"TPOT B={b} ms" for b in cfg["batches"]] + \
        [f"TTFT L={L} ms" for L in cfg["prompt_lens"]] + \
        ["eager TPOT B=1 ms", "TPOT / floor (B=1)", "× fp16 TPOT B=1", f"× fp16 TTFT L={lmax}", "peak MiB"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['precision']} | skipped: {r['skipped']} |")
            continue
        tp = [f"{r['tpot_ms'][str(b)]['median']:.3f}" for b in cfg["batches"]]
        tt = [f"{r['ttft_ms'][str(L)]['median']:.2f}" for L in cfg["prompt_lens"]]
        floor = r.get("floor", {}).get("bytes_us")
        ratio = f"{1000 * r['tpot_ms']['1']['median'] / floor:.2f}" if floor and "1" in r["tpot_ms"] else "—"
        mine = sp.get((r["model"], r["precision"]), {})
        s, st = mine.get("tpot_b1"), mine.get(f"ttft_L{lmax}")
        eager = r.get("tpot_eager_ms_b1", {}).get("median")
        lines.append("| " + " | ".join([r["model"], r["precision"], *tp, *tt, f"{eager:.2f}" if eager else "—",
                                         ratio, f"{s:.2f}" if s else "—", f"{st:.2f}" if st else "—",
                                         f"{r['peak_memory_mb']:.0f}"]) + " |")
    proj = [r for r in rows if r.get("orin_projection")]
    if proj:
        names = list(proj[0]["orin_projection"])
        lines += ["", "PROJECTION (not a measurement): Jetson Orin Nano 8G decode, batch 1 — per-op bytes / FLOPs at "
                  "the Orin's bandwidth and compute, times each op kind's efficiency measured here, plus an "
                  "assumed launch cost per kernel (assumptions in the JSON):", "",
                  "| model | precision | " + " | ".join(f"{n} ms/token" for n in names) + " | fits in 8 GB |",
                  "|---|---|" + "---:|" * len(names) + "---|"]
        for r in proj:
            o = r["orin_projection"]
            lines.append(f"| {r['model']} | {r['precision']} | "
                         + " | ".join(f"{o[n]['ms_per_token']:.1f}" for n in names)
                         + f" | {'yes' if o[names[0]]['fits'] else 'no'} |")
    for r in rows if per_op else ():
        if r.get("roofline_table"):
            lines += ["", f"Per-op decode step (batch 1, eager, profiled) — {r['model']} {r['precision']}:", "",
                      r["roofline_table"]]
    return "\n".join(lines) + "\n"


def write_csv(doc: dict[str, Any], path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "precision", "metric", "x", "median_ms", "min_ms", "max_ms", "runs"])
        for r in doc["rows"]:
            for metric, key in (("tpot", "tpot_ms"), ("ttft", "ttft_ms")):
                for x, v in r.get(key, {}).items():
                    w.writerow([r["model"], r["precision"], metric, x, v["median"], v["min"], v["max"], v["runs"]])


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["rows"] if "skipped" not in r]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(models), 4, figsize=(20, 4 * len(models)), squeeze=False)
    sp = _speedups(rows)
    for i, m in enumerate(models):
        mine = [r for r in rows if r["model"] == m]
        ax = axes[i]
        for r in mine:
            xs = [int(x) for x in r["ttft_ms"]]
            ax[0].plot(xs, [v["median"] for v in r["ttft_ms"].values()], "o-", label=r["precision"])
            bs = [int(b) for b in r["tpot_ms"]]
            ax[1].plot(bs, [v["median"] for v in r["tpot_ms"].values()], "o-", label=r["precision"])
        ax[0].set(title=f"{m}: TTFT vs prompt length", xlabel="prompt tokens", ylabel="ms", xscale="log")
        ax[1].set(title=f"{m}: TPOT vs batch", xlabel="batch", ylabel="ms per step", xscale="log")
        q = [r["precision"] for r in mine if (m, r["precision"]) in sp and r["precision"] != "fp16"]
        for j, key in enumerate(("tpot_b1", "ttft_L1024")):
            vals = [sp[(m, p)].get(key, 0.0) for p in q]
            ax[2].bar(np.arange(len(q)) + 0.4 * j, vals, 0.4, label=key)
        ax[2].axhline(1.0, color="gray", lw=0.8)
        ax[2].set(title=f"{m}: speed-up vs fp16", xticks=np.arange(len(q)) + 0.2, xticklabels=q)
        ax[3].bar([r["precision"] for r in mine], [r["peak_memory_mb"] / 1024 for r in mine])
        ax[3].set(title=f"{m}: peak GPU memory", ylabel="GiB")
        for a in ax[:3]:
            a.legend(fontsize=8)
    fig.suptitle(f"quamba-edge bench · {doc['device']['name']} · {doc['commit'][:10]} · random weights")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_outputs(doc: dict[str, Any], out_dir: str | Path, stem: str = "latency") -> list[Path]:
    """``<stem>.json`` (everything), ``.csv`` (one line per measurement), ``.md`` (tables) and ``.png``
    (TTFT vs prompt length, TPOT vs batch, speed-up bars, memory) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.{ext}" for ext in ("json", "csv", "md", "png")]
    paths[0].write_text(json.dumps(doc, indent=1, default=str) + "\n")
    write_csv(doc, paths[1])
    paths[2].write_text(markdown(doc))
    try:
        plot(doc, paths[3])
    except ImportError:  # matplotlib is optional
        paths.pop()
    return paths


def parse_ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"expected positive integers, got {text!r}")
    return vals


def split_names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def merge_docs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One results document from runs of the same code on the same device that measured different models
    (a grid too long for one process). Refuses runs whose device, commit or settings (other than the models)
    differ: their rows would not compare."""
    if not docs:
        raise ValueError("merge_docs: no results to merge")
    first = docs[0]

    def settings(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d["config"].items() if k != "models"}

    for d in docs[1:]:
        for what, a, b in (("device", first["device"]["name"], d["device"]["name"]),
                           ("commit", first["commit"], d["commit"]), ("dirty", first.get("dirty"), d.get("dirty")),
                           ("settings", settings(first), settings(d))):
            if a != b:
                raise ValueError(f"cannot merge bench results with different {what}: {a!r} vs {b!r}; re-run them "
                                 "with the same code and options")
    seen: set[tuple[str, str]] = set()
    rows = []
    for d in docs:
        for r in d["rows"]:
            key = (r["model"], r["precision"])
            if key in seen:
                raise ValueError(f"{key[0]} {key[1]} is in more than one of the results to merge")
            seen.add(key)
            rows.append(r)
    merged = dict(first)
    merged.update(rows=rows, date=max(d["date"] for d in docs), command=" ; ".join(d["command"] for d in docs),
                  config=dict(first["config"], models=[m for d in docs for m in d["config"]["models"]]))
    return merged
