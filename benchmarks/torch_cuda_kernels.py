"""torch-cuda end to end, with and without the CUDA kernels, on the bundled models (needs a CUDA GPU).

For every bundled model x recipe x bits (quantized here from the bundled calibration text, as
``export_parity.py`` does): ``EdgeModel.from_torch(model)`` on CUDA twice, with the kernels (the backend's
default) and with ``QUAMBA_KERNELS=0`` (the torch reference ops): greedy generations of ``--tokens``
tokens after a warm-up (5 of each, interleaved; TTFT and TPOT of the median-TPOT run), perplexity on the
bundled eval text, whether the two runs' greedy tokens agree (and where they first differ), and the
kernel call counts of the kernels run (proof that the kernels ran, and that nothing fell back to the
reference). Writes results/torch_cuda_kernels.{json,md}.

    python benchmarks/torch_cuda_kernels.py [--models mamba1-ref mamba2-ref] [--tokens 128] [--out DIR]

These are small models (the bundled reference models): per-token time is dominated by kernel launches
and Python, which is what the kernels cut here (one fused kernel instead of several torch ops per op).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_info  # noqa: E402

from quamba_edge.models import load_model  # noqa: E402
from quamba_edge.ops import kernel_dispatch  # noqa: E402
from quamba_edge.quant.calibration import load_gptq_samples, load_samples  # noqa: E402
from quamba_edge.quant.evaluate import text_token_ids  # noqa: E402
from quamba_edge.quant.recipes import RECIPES, quantize_model  # noqa: E402
from quamba_edge.runtime import EdgeModel  # noqa: E402
from quamba_edge.tokenizer import bundled_assets_dir, load_tokenizer  # noqa: E402

PROMPT = "The interpreter reads"


def edge_model(model: torch.nn.Module, kernels: bool) -> EdgeModel:
    """An EdgeModel over ``model`` on CUDA with the kernels on (the default) or off (``QUAMBA_KERNELS=0``
    while the backend is built: it then holds no kernel ops and runs the reference whatever the env)."""
    if not kernels:
        os.environ["QUAMBA_KERNELS"] = "0"
    try:
        return EdgeModel.from_torch(model)
    finally:
        os.environ.pop("QUAMBA_KERNELS", None)


def compare(model: torch.nn.Module, tokens: int, eval_ids: list[int], window: int, windows: int,
            repeats: int = 5) -> dict[str, dict]:
    """Kernels on vs off: warm-up, then ``repeats`` greedy generations of each, interleaved (so drifting
    clocks or caches hit both alike; tiny models are Python-bound and wander), reporting the run of median
    TPOT; kernel calls counted over the first "on" run; perplexity."""
    ems = {"kernels": edge_model(model, True), "reference": edge_model(model, False)}
    runs: dict[str, list] = {k: [] for k in ems}
    counts: dict[str, int] = {}
    for em in ems.values():
        em.generate(PROMPT, max_new_tokens=8)  # warm-up (allocator, first launches)
    for r in range(repeats):
        for key, em in ems.items():
            kernel_dispatch.counts.clear()
            runs[key].append(em.generate(PROMPT, max_new_tokens=tokens))
            if r == 0 and key == "kernels":
                counts = dict(sorted(kernel_dispatch.counts.items()))
    res = {}
    for key, em in ems.items():
        out = sorted(runs[key], key=lambda o: o.stats.tpot_ms)[repeats // 2]
        res[key] = {"backend_reason": em.backend_reason, "stats": out.stats.to_dict(), "tokens": out.tokens,
                    "text": out.text, "tpot_ms_runs": [round(o.stats.tpot_ms, 3) for o in runs[key]],
                    "kernel_calls": counts if key == "kernels" else {},
                    "perplexity": em.perplexity(eval_ids, window=window, max_windows=windows)}
    return res


def render_markdown(doc: dict) -> str:
    """The results table of a results JSON (also ``--render JSON``)."""
    ppl = doc["perplexity_protocol"]
    lines = [f"torch-cuda on {doc['device']} (commit {doc['commit']}), greedy {doc['tokens']} tokens from "
             f"{doc['prompt']!r} after a warm-up: 5 runs each, interleaved, the median-TPOT run shown with the "
             f"spread of the 5; perplexity over {ppl['windows']} x {ppl['window']} tokens of {ppl['file']}. "
             "W4A16 models call no kernel (their SSM runs in floating point; their norms have float outputs): "
             "their two columns run the same code and differ by noise only.", "",
             "| model | recipe | bits | kernel calls | TPOT ms kernels (5 runs) | TPOT ms reference (5 runs) | "
             "speedup | TTFT ms kernels / reference | ppl kernels / reference | greedy identical |",
             "| --- | --- | --- | ---: | --- | --- | ---: | --- | --- | --- |"]
    for r in doc["rows"]:
        k, f = r["kernels"], r["reference"]
        calls = sum(v for n, v in k["kernel_calls"].items() if ":" not in n)
        same = "yes" if r["greedy_identical"] else f"from token {r['greedy_first_diff']}"
        spread = lambda x: f"{x['stats']['tpot_ms']:.2f} ({min(x['tpot_ms_runs']):.1f}-{max(x['tpot_ms_runs']):.1f})"  # noqa: E731
        lines.append(f"| {r['model']} | {r['recipe']} | {r['bits']} | {calls} | {spread(k)} | {spread(f)} | "
                     f"{r['tpot_speedup']:.2f}x | {k['stats']['ttft_ms']:.1f} / {f['stats']['ttft_ms']:.1f} | "
                     f"{k['perplexity']['ppl']:.3f} / {f['perplexity']['ppl']:.3f} | {same} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mamba1-ref", "mamba2-ref"])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--num-samples", type=int, default=32)
    ap.add_argument("--gptq-num-samples", type=int, default=16)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the .md beside a results JSON")
    args = ap.parse_args(argv)
    if args.render is not None:
        args.render.with_suffix(".md").write_text(render_markdown(json.loads(args.render.read_text())))
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/torch_cuda_kernels.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from quamba_edge import kernels

    kernels.load()  # build the extension up front (not inside the first timed load)
    started = dt.datetime.now(dt.timezone.utc)
    assets = bundled_assets_dir()
    calib_txt, eval_txt = assets / "text" / "calib.txt", assets / "text" / "eval.txt"
    rows = []
    for name in args.models:
        fp = load_model(name).eval()
        tok = load_tokenizer(name)
        eval_ids = text_token_ids(eval_txt, tok).tolist()
        calib = load_samples(calib_txt, tok, args.num_samples, 512)
        gptq = load_gptq_samples(calib_txt, tok, args.gptq_num_samples, 512)
        for recipe, bits, arch in RECIPES:
            if arch != fp.config.arch:
                continue
            t0 = time.perf_counter()
            model = quantize_model(fp, recipe, bits, calib, gptq_calib=gptq).to("cuda").eval()
            tq = time.perf_counter() - t0
            res = compare(model, args.tokens, eval_ids, args.window, args.windows)
            on, off = res["kernels"], res["reference"]
            first_diff = next((i for i, (a, b) in enumerate(zip(on["tokens"], off["tokens"])) if a != b), None)
            row = dict(model=name, recipe=recipe, bits=bits, quantize_s=round(tq, 1), kernels=on, reference=off,
                       greedy_identical=on["tokens"] == off["tokens"], greedy_first_diff=first_diff,
                       tpot_speedup=off["stats"]["tpot_ms"] / on["stats"]["tpot_ms"],
                       ttft_speedup=off["stats"]["ttft_ms"] / on["stats"]["ttft_ms"])
            rows.append(row)
            fallbacks = sum(v for k, v in on["kernel_calls"].items() if k.endswith(":reference"))
            print(f"{name:11s} {recipe:7s} {bits:5s} TPOT {on['stats']['tpot_ms']:.2f} ms (kernels) vs "
                  f"{off['stats']['tpot_ms']:.2f} ms (reference) = {row['tpot_speedup']:.2f}x; TTFT "
                  f"{on['stats']['ttft_ms']:.1f} vs {off['stats']['ttft_ms']:.1f} ms; ppl "
                  f"{on['perplexity']['ppl']:.3f} vs {off['perplexity']['ppl']:.3f}; greedy identical "
                  f"{row['greedy_identical']} (first diff {first_diff}); kernel calls "
                  f"{sum(v for k, v in on['kernel_calls'].items() if ':' not in k)}, fallbacks {fallbacks}",
                  flush=True)
    props = torch.cuda.get_device_properties(0)
    doc = {"benchmark": "torch_cuda_kernels", "device": props.name, "torch": torch.__version__,
           "cuda": torch.version.cuda, **git_info(), "date": started.isoformat(timespec="seconds"),
           "command": os.environ.get("QUAMBA_BENCH_COMMAND")
           or shlex.join(["python", "benchmarks/torch_cuda_kernels.py", *sys.argv[1:]]),
           "prompt": PROMPT, "tokens": args.tokens,
           "perplexity_protocol": {"file": eval_txt.name, "window": args.window, "windows": args.windows},
           "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "torch_cuda_kernels.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "torch_cuda_kernels.md").write_text(render_markdown(doc))
    print(f"wrote {args.out / 'torch_cuda_kernels.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
