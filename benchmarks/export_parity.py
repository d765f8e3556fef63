"""ONNX export parity on the bundled models: for every recipe x bits x arch (and the FP models), export to
ONNX (fp32), run it in ONNX Runtime (reference ops as PyOps) and compare with the torch model:
logits at several lengths after a carried state (incl. L = 1 decode and lengths not traced), 64 greedy
tokens, and chunked prefill against one shot. Writes results/export_parity.{json,md}.

    python benchmarks/export_parity.py [--models mamba1-ref mamba2-ref] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_info  # noqa: E402

from quamba_edge.export import export_model, graph_state  # noqa: E402
from quamba_edge.models import load_model  # noqa: E402
from quamba_edge.quant.calibration import load_gptq_samples, load_samples  # noqa: E402
from quamba_edge.quant.recipes import RECIPES, quantize_model  # noqa: E402
from quamba_edge.runtime import ort_ops  # noqa: E402
from quamba_edge.runtime.ort_ops import torch_feeds, torch_state  # noqa: E402
from quamba_edge.tokenizer import bundled_assets_dir, load_tokenizer  # noqa: E402

LENGTHS = (1, 7, 128, 301)


@torch.no_grad()
def compare(model, sess, text_ids: torch.Tensor) -> dict:
    res: dict = {"lengths": {}}
    prefix = text_ids[:, :50]
    st0 = graph_state(model, 1)
    _, st = model(prefix, st0, return_state=True)
    pos = 50
    for length in LENGTHS:
        ids = text_ids[:, pos:pos + length]
        pos += length
        ref, ref_st = model(ids, st, return_state=True)
        outs = sess.run(None, torch_feeds(ids, st))
        r = ref.float().numpy()
        res["lengths"][length] = {
            "max_abs_diff": float(np.abs(outs[0] - r).max()),
            "max_rel_diff": float(np.abs(outs[0] - r).max() / np.abs(r).max()),
            "top1_agree": float((outs[0].argmax(-1) == r.argmax(-1)).mean()),
            "state_max_diff": max(float(np.abs(o.astype(np.float32) - w.float().numpy()).max())
                                  for o, w in zip(outs[1:], [t for p in zip(ref_st.conv, ref_st.ssm) for t in p])),
        }
        st = ref_st
    # 64 greedy tokens, torch vs ONNX Runtime, each carrying its own state
    prompt = text_ids[:, :40]
    logits, t_st = model(prompt, graph_state(model, 1), return_state=True)
    outs = sess.run(None, torch_feeds(prompt, graph_state(model, 1)))
    o_st, o_logits = torch_state(outs), outs[0]
    t_tok, o_tok = [], []
    for _ in range(64):
        tn = int(logits[0, -1].argmax())
        on = int(o_logits[0, -1].argmax())
        t_tok.append(tn)
        o_tok.append(on)
        logits, t_st = model(torch.tensor([[tn]]), t_st, return_state=True)
        outs = sess.run(None, torch_feeds(torch.tensor([[on]]), o_st))
        o_st, o_logits = torch_state(outs), outs[0]
    res["greedy64_identical"] = t_tok == o_tok
    res["greedy64_first_diff"] = next((i for i, (a, b) in enumerate(zip(t_tok, o_tok)) if a != b), None)
    # chunked prefill (chunks of 100) vs one shot, both in ONNX Runtime
    ids = text_ids[:, :333]
    one = sess.run(None, torch_feeds(ids, graph_state(model, 1)))
    st, parts = graph_state(model, 1), []
    for lo in range(0, ids.shape[1], 100):
        outs = sess.run(None, torch_feeds(ids[:, lo:lo + 100], st))
        parts.append(outs[0])
        st = torch_state(outs)
    chunked = np.concatenate(parts, axis=1)
    res["chunked_vs_oneshot_max_rel_diff"] = float(np.abs(chunked - one[0]).max() / np.abs(one[0]).max())
    res["chunked_vs_oneshot_top1_agree"] = float((chunked.argmax(-1) == one[0].argmax(-1)).mean())
    res["ssm_state_dtype"] = str(graph_state(model, 1).ssm[0].dtype).replace("torch.", "")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mamba1-ref", "mamba2-ref"])
    ap.add_argument("--num-samples", type=int, default=32)
    ap.add_argument("--gptq-num-samples", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    assets = bundled_assets_dir()
    calib_txt, eval_txt = assets / "text" / "calib.txt", assets / "text" / "eval.txt"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            fp = load_model(name).eval()
            tok = load_tokenizer(name)
            text_ids = torch.tensor([tok.encode(eval_txt.read_text())[:400]])
            calib = load_samples(calib_txt, tok, args.num_samples, 512)
            gptq = load_gptq_samples(calib_txt, tok, args.gptq_num_samples, 512)
            combos = [("fp", "fp16")] + [(r, b) for r, b, a in RECIPES if a == fp.config.arch]
            for recipe, bits in combos:
                t0 = time.perf_counter()
                model = fp if recipe == "fp" else quantize_model(fp, recipe, bits, calib, gptq_calib=gptq)
                tq = time.perf_counter() - t0
                t0 = time.perf_counter()
                out = export_model(model, Path(tmp) / f"{name}-{recipe}-{bits}", dtype="fp32")
                te = time.perf_counter() - t0
                sess = ort_ops.make_session(out)
                r = compare(model, sess, text_ids)
                r.update(model=name, recipe=recipe, bits=bits, quantize_s=round(tq, 1), export_s=round(te, 1))
                rows.append(r)
                worst = max(v["max_rel_diff"] for v in r["lengths"].values())
                print(f"{name:11s} {recipe:7s} {bits:5s} max rel logit diff {worst:.2e}  greedy64 identical "
                      f"{r['greedy64_identical']}  chunked/one-shot {r['chunked_vs_oneshot_max_rel_diff']:.2e} "
                      f"(state {r['ssm_state_dtype']})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"command": " ".join(["python", "benchmarks/export_parity.py", *sys.argv[1:]]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "device": f"CPU ({platform.processor() or platform.machine()}), onnxruntime CPU EP",
           **git_info(), "lengths": LENGTHS, "results": rows}
    (args.out / "export_parity.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["| model | recipe | bits | max rel logit diff (L=1,7,128,301) | greedy 64 identical | "
             "chunked vs one-shot rel diff | SSM state |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        diffs = ", ".join(f"{v['max_rel_diff']:.1e}" for v in r["lengths"].values())
        lines.append(f"| {r['model']} | {r['recipe']} | {r['bits']} | {diffs} | {r['greedy64_identical']} | "
                     f"{r['chunked_vs_oneshot_max_rel_diff']:.1e} | {r['ssm_state_dtype']} |")
    (args.out / "export_parity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
