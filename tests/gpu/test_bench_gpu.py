"""``quamba-edge bench`` on the GPU, small: two shapes x fp16 / w4a8, every output and field it promises."""

from __future__ import annotations

import json

import pytest

from quamba_edge.cli import main

pytestmark = pytest.mark.gpu


def test_bench_small(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(["bench", "--models", "mamba-130m,mamba2-130m", "--precisions", "fp16,w4a8", "--prompt-lens", "64,128",
               "--batches", "1,3", "--tokens", "16", "--repeats", "2", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "latency.json").read_text())
    assert doc["floors"]["read_Bps"] > 1e11 and doc["floors"]["launch_us"] > 0 and "random weights" in doc["values"]
    assert len(doc["rows"]) == 4
    for r in doc["rows"]:
        print(json.dumps({k: r.get(k) for k in ("model", "precision", "tpot_ms", "tpot_eager_ms_b1", "decode")}))
        assert "skipped" not in r, r.get("skipped")
        assert all(v["median"] > 0 and v["runs"] == 2 for v in (*r["tpot_ms"].values(), *r["ttft_ms"].values()))
        assert "batch buckets captured: 1, 4" in r["decode"] and "eager for" not in r["decode"]
        assert r["profile_us_per_step"] and r["floor"]["bytes_us"] > 0 and r["peak_memory_mb"] > 0
        # each model's peak is its own: nothing of the previous model is still allocated when it starts
        assert r["allocated_before_mb"] < 256, r["allocated_before_mb"]  # cuBLAS workspaces may stay
        assert r["peak_memory_mb"] < 4 * r["weight_bytes"] / 2**20 + 256, (r["peak_memory_mb"], r["weight_bytes"])
        mem = r["memory"]
        assert mem["torch_reserved_mb"] >= r["peak_memory_mb"] and mem["process_peak_rss_mb"] > 0
        assert mem.get("nvml_used_mb", 1) > 0 and ("nvml_used_mb" in mem or "not available" in mem["nvml"])
        assert set(r["orin_projection"]) and all(p["ms_per_token"] > 0 for p in r["orin_projection"].values())
        if r["precision"] == "w4a8":  # the quantized step runs our linear kernels
            assert "CUDA kernels: on" in r["kernels"] and r["profile_us_per_step"].get("linear", 0) > 0
    assert (out / "latency.md").read_text().count("| mamba") >= 4 and (out / "latency.csv").exists()
