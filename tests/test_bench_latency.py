"""``quamba-edge bench`` without a GPU: the random-weight models' formats, the outputs written from a results
document, the option checks and the clear refusal where torch sees no CUDA device. The measurement itself
runs on the GPU (tests/gpu/test_bench_gpu.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from quamba_edge.bench import latency
from quamba_edge.bench.random_model import random_model
from quamba_edge.cli import main


def _doc() -> dict:
    def st(v: float) -> dict:
        return {"median": v, "min": 0.9 * v, "max": 1.1 * v, "runs": 3}

    rows = []
    for prec, f in (("fp16", 1.0), ("w4a8", 0.4)):
        rows.append({"model": "mamba2-130m", "precision": prec, "peak_memory_mb": 300 * f,
                     "ttft_ms": {"128": st(5 * f), "1024": st(20 * f)}, "tpot_ms": {"1": st(2 * f), "4": st(2.2 * f)},
                     "floor": {"bytes_us": 500 * f}, "roofline_table": "| op kind |",
                     "orin_projection": {"Orin": {"ms_per_token": 9.0 * f, "fits": True}}})
    rows.append({"model": "mamba2-8b", "precision": "fp16", "skipped": "out of memory building the model: ..."})
    return {"device": {"name": "Fake GPU"}, "commit": "0123456789abcdef", "date": "2026-12-02",
            "values": latency.VALUES_NOTE, "floors": {"read_Bps": 4.2e12, "read_write_Bps": 3.4e12, "launch_us": 1.5},
            "config": {"batches": [1, 4], "prompt_lens": [128, 1024]}, "rows": rows}


def test_outputs_from_a_results_document(tmp_path):
    paths = latency.write_outputs(_doc(), tmp_path)
    want = [".json", ".csv", ".md"] + ([".png"] if importlib.util.find_spec("matplotlib") else [])  # optional extra
    assert [p.suffix for p in paths] == want and all(p.stat().st_size for p in paths)
    md = (tmp_path / "latency.md").read_text()
    # TPOT B=1 / 4, TTFT L=128 / 1024, eager TPOT, TPOT / bytes floor (0.8 ms / 200 µs), x fp16 TPOT / TTFT, MiB
    assert "| mamba2-130m | w4a8 | 0.800 | 0.880 | 2.00 | 8.00 | — | 4.00 | 2.50 | 2.50 | 120 |" in md
    assert "skipped: out of memory" in md and "PROJECTION (not a measurement)" in md
    csv = (tmp_path / "latency.csv").read_text().splitlines()
    assert csv[0].startswith("model,precision,metric") and len(csv) == 1 + 2 * 4
    assert json.loads((tmp_path / "latency.json").read_text())["rows"][1]["precision"] == "w4a8"


def _part(models: list[str], date: str, **over) -> dict:
    d = _doc()
    d.update(command=f"latency.py --models {','.join(models)}", date=date, dirty=0,
             config=dict(d["config"], models=models, tokens=128))
    d["rows"] = [dict(r, model=models[0]) for r in d["rows"][:2]]
    d.update(over)
    return d


def test_merge_joins_per_model_runs(tmp_path):
    merged = latency.merge_docs([_part(["mamba2-8b"], "2026-12-02T11:39"), _part(["mamba2-2.7b"], "2026-12-02T11:46")])
    assert [(r["model"], r["precision"]) for r in merged["rows"]] == [
        ("mamba2-8b", "fp16"), ("mamba2-8b", "w4a8"), ("mamba2-2.7b", "fp16"), ("mamba2-2.7b", "w4a8")]
    assert merged["config"]["models"] == ["mamba2-8b", "mamba2-2.7b"] and merged["date"] == "2026-12-02T11:46"
    assert merged["command"] == "latency.py --models mamba2-8b ; latency.py --models mamba2-2.7b"
    latency.write_outputs(merged, tmp_path)
    assert "| mamba2-2.7b | w4a8 |" in (tmp_path / "latency.md").read_text()


@pytest.mark.parametrize("over,match", [({"commit": "fedcba"}, "different commit"),
                                        ({"device": {"name": "Other GPU"}}, "different device"),
                                        ({"dirty": 1}, "different dirty")])
def test_merge_refuses_runs_that_do_not_compare(over, match):
    with pytest.raises(ValueError, match=match):
        latency.merge_docs([_part(["mamba2-8b"], "d1"), _part(["mamba2-2.7b"], "d2", **over)])
    other = _part(["mamba2-2.7b"], "d2")
    other["config"]["tokens"] = 64
    with pytest.raises(ValueError, match="different settings"):
        latency.merge_docs([_part(["mamba2-8b"], "d1"), other])
    with pytest.raises(ValueError, match="more than one"):
        latency.merge_docs([_part(["mamba2-8b"], "d1"), _part(["mamba2-8b"], "d2")])


@pytest.mark.parametrize("precision,want", [("w8a8", torch.int8), ("w4a8", torch.uint8), ("w4a16", torch.uint8)])
def test_random_model_final_format(precision, want):
    m = random_model("mamba2-130m", precision, device="cpu")
    lin = m.layers[0].mixer.in_proj
    codes = lin.weight if precision == "w8a8" else lin.qweight
    assert codes.dtype == want and codes.device.type == "cpu"
    assert codes.float().std() > 10  # drawn at random, not the skeleton's constant placeholder
    assert m.quant_config.bits == precision and m.config.d_model == 768


def test_random_model_fp16_and_bad_names():
    assert random_model("mamba-130m", "fp16", device="cpu").dtype == torch.float16
    with pytest.raises(ValueError, match="unknown precision"):
        random_model("mamba-130m", "int3", device="cpu")
    with pytest.raises(ValueError, match="mamba2-8b"):  # the message lists the known shapes
        random_model("mamba-9b", "fp16", device="cpu")


def test_option_parsing():
    assert latency.parse_ints("1, 4,16") == [1, 4, 16]
    for bad in ("", "1,x", "0,4"):
        with pytest.raises(ValueError):
            latency.parse_ints(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is present")
def test_bench_without_gpu_says_so(tmp_path, capsys):
    assert main(["bench", "--models", "mamba2-130m", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and not (tmp_path / "o").exists()


def test_bench_bad_options(tmp_path, capsys):
    assert main(["bench", "--batches", "0", "--out", str(tmp_path)]) == 1
    assert "positive integers" in capsys.readouterr().err
    assert main(["bench", "--models", "mamba-9b", "--out", str(tmp_path)]) == 1
