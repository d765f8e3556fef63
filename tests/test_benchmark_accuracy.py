"""Smoke test of benchmarks/accuracy.py: the --quick path on the bundled mamba2-ref (every Mamba2 row,
ablation included, on a few tiny windows), then the shape of the JSON / markdown it writes."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accuracy.py"

pytest.importorskip("torch")


def _load():
    if "bench_accuracy" in sys.modules:
        return sys.modules["bench_accuracy"]
    spec = importlib.util.spec_from_file_location("bench_accuracy", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_accuracy"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("acc")
    mod = _load()
    threads = torch.get_num_threads()
    try:
        rc = mod.main(["--quick", "--models", "mamba2-ref", "--out-dir", str(out), "--no-plot"])
    finally:
        torch.set_num_threads(threads)  # run() sets 2 threads
    assert rc == 0
    return mod, out


def test_json_shape(quick_run):
    mod, out = quick_run
    res = json.loads((out / "accuracy_quick.json").read_text())
    for k in ("device", "commit", "dirty", "date", "command", "settings", "calibration", "eval", "rows",
              "targets", "activation_stats", "outliers", "precision"):
        assert k in res, k
    assert res["quick"] is True and "--quick" in res["command"]
    assert res["settings"]["calib_samples"] == mod.QUICK.calib_samples
    keys = [r["key"] for r in res["rows"]]
    assert keys == [s.key for s in mod.row_specs("mamba2")]
    assert {"fp", "quamba-recipe-w8a8", "quamba2-w8a8", "quamba2-w4a8", "quamba2-w4a16",
            "quamba2-w4a8-fp16-head", "quamba2-w4a16-fp16-head",
            "abl1-hadamard", "abl2-gptq", "abl3-persg", "abl4-snc"} == set(keys)
    by = {r["key"]: r for r in res["rows"]}
    for r in res["rows"]:
        for k in ("model", "recipe", "bits", "options", "ppl", "top1", "dppl_pct", "quantize_s"):
            assert k in r, (r["key"], k)
        assert r["model"] == "mamba2-ref"
        assert math.isfinite(r["ppl"]) and r["ppl"] > 1 and 0 <= r["top1"] <= 1
    assert by["fp"]["quantize_s"] is None and by["fp"]["dppl_pct"] == 0.0
    assert by["quamba2-w4a8"]["quantize_s"] > 0
    # the baseline really is the percentile path, the ablation switches what it says
    assert by["quamba-recipe-w8a8"]["quant_config"]["group_heads"] is False
    assert by["abl1-hadamard"]["quant_config"]["gptq"] is False
    assert by["abl2-gptq"]["quant_config"]["bc_per_group"] is False
    assert by["abl3-persg"]["quant_config"]["bc_per_group"] is True
    assert by["abl3-persg"]["quant_config"]["group_heads"] is False
    assert by["quamba2-w4a8"]["quant_config"]["group_heads"] is True
    assert by["quamba2-w4a16-fp16-head"]["quant_config"]["quantize_embedding"] is False
    assert by["quamba2-w4a16"]["quant_config"]["quantize_embedding"] is True
    assert len(by["fp"]["chunk_nll"]) == 2  # 4 windows in chunks of 2
    assert by["abl4-snc"]["ppl"] == by["quamba2-w4a8"]["ppl"] and by["abl4-snc"]["same_as"] == "quamba2-w4a8"
    # Δppl is consistent with the ppl values
    fp = by["fp"]["ppl"]
    assert by["quamba2-w8a8"]["dppl_pct"] == pytest.approx(100 * (by["quamba2-w8a8"]["ppl"] / fp - 1), rel=1e-6)
    kinds = [t["kind"] for t in res["targets"]]
    assert kinds.count("dppl") == 3 and kinds.count("q2_vs_quamba") == 1 and kinds.count("ablation") == 3
    assert all(isinstance(t["met"], bool) for t in res["targets"])
    for t in res["targets"]:
        if t["kind"] != "dppl":
            assert t["change_ci95_lo"] <= t["change_pct"] <= t["change_ci95_hi"]
            assert isinstance(t["significant"], bool)
    st = res["activation_stats"]["mamba2-ref"]
    assert set(st) == {"x", "out_proj_in", "out_proj_in_hadamard"}
    assert len(st["x"]) == 5 and len(st["x"][0]["top5"]) == 5
    assert st["x"][0]["channels"] == 512


def test_markdown(quick_run):
    _, out = quick_run
    md = (out / "accuracy_quick.md").read_text()
    assert "| model | configuration |" in md and "ablation" in md
    assert md.count("MET") >= 7  # one verdict per target
    assert "max/median" in md


def test_evaluate_chunks_equal_one_call():
    """Chunked evaluation (for the error bars) gives exactly the totals of one perplexity() call."""
    import torch

    from quamba_edge.models import MambaConfig, MambaLM
    from quamba_edge.quant.evaluate import make_windows, perplexity

    mod = _load()
    torch.manual_seed(0)
    m = MambaLM(MambaConfig(arch="mamba2", d_model=64, n_layer=1, vocab_size=64, d_state=16, headdim=16,
                            chunk_size=8)).eval()
    ids = torch.randint(0, 64, (5 * 24 + 7,), generator=torch.Generator().manual_seed(1))
    wins = make_windows(ids, 24)
    r = mod.evaluate(m, wins, chunk=2)
    ref = perplexity(m, ids, window=24)
    assert r["tokens"] == ref["tokens"] and r["windows"] == 5
    assert r["loss"] == pytest.approx(ref["loss"], rel=1e-9) and r["top1"] == pytest.approx(ref["top1"])
    d = mod.delta_ppl(r, r)
    assert d["dppl_pct"] == 0.0 and d["dppl_ci95_lo"] == 0.0
