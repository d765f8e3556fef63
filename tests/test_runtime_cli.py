"""`quamba-edge generate`, `export` and `demo` on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quamba_edge.cli import main
from runtime_helpers import exported, fp_dir, have_recipes

REPO = Path(__file__).resolve().parents[1]


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _have_export() -> bool:
    try:
        from quamba_edge.export import export_model  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxruntime_extensions  # noqa: F401
    except ImportError:
        return False
    return have_recipes()


needs_export = pytest.mark.skipif(not _have_export(), reason="ONNX export / onnxruntime not available")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-runtime")


def test_help_lists_runtime_commands():
    r = subprocess.run([sys.executable, "-m", "quamba_edge", "--help"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for cmd in ("export", "generate", "demo"):
        assert f"    {cmd} " in r.stdout


def test_generate_text_json_stream(capsys, root):
    d = fp_dir(root, "mamba2")
    rc, out, err = _run(capsys, "generate", d, "--prompt", "The interpreter reads", "--max-new-tokens", 8, "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["model"]["backend"] in ("torch", "torch-cuda") and "torch reference" in res["model"]["backend_reason"]
    assert len(res["tokens"]) <= 8 and res["stats"]["new_tokens"] == len(res["tokens"])
    assert {"ttft_ms", "tpot_ms", "tokens_per_s", "peak_memory_mb", "backend", "precision"} <= set(res["stats"])
    rc, out, err = _run(capsys, "generate", d, "--prompt", "The interpreter reads", "--max-new-tokens", 8)
    assert rc == 0 and out == res["text"] + "\n"
    assert "torch reference" in err and "TTFT" in err  # backend + why, and the stats, on stderr
    rc, out, err = _run(capsys, "generate", d, "--prompt", "The interpreter reads", "--max-new-tokens", 8, "--stream")
    assert rc == 0 and out == res["text"] + "\n"
    rc, out, err = _run(capsys, "generate", d, "--prompt", "The interpreter reads", "--prompt", "A list",
                        "--max-new-tokens", 4, "--json")
    assert rc == 0 and len(json.loads(out)["text"]) == 2
    rc, out, err = _run(capsys, "generate", d, "--prompt", "The", "--max-new-tokens", 6, "--temperature", 0.9,
                        "--seed", 3, "--json")
    rc2, out2, _ = _run(capsys, "generate", d, "--prompt", "The", "--max-new-tokens", 6, "--temperature", 0.9,
                        "--seed", 3, "--json")
    assert rc == rc2 == 0 and json.loads(out)["tokens"] == json.loads(out2)["tokens"]


def test_generate_errors_one_line(capsys, root, tmp_path):
    d = fp_dir(root, "mamba2")
    cases = [
        (["--backend", "foo"], "error: unknown backend 'foo'; valid backends: auto, onnxruntime"),
        (["--max-prompt-tokens", 2], "error: the prompt has"),
        (["--backend", "onnxruntime"], "run `quamba-edge export"),
        (["--prompt", "two", "--stream"], "error: --stream takes one --prompt"),
    ]
    for extra, msg in cases:
        rc, out, err = _run(capsys, "generate", d, "--prompt", "one two three four", *extra)
        last = err.strip().splitlines()[-1]  # (a load that worked printed the backend line first)
        assert rc == 1 and msg in last and last.startswith("quamba-edge generate: error:") and "Traceback" not in err
    f = tmp_path / "x.txt"
    f.write_text("x")
    rc, _, err = _run(capsys, "generate", f, "--prompt", "x")
    assert rc == 1 and "is a file, not a model" in err


@needs_export
def test_export_then_generate(capsys):
    art, out, printed = exported("mamba1", "w8a8")  # made with `quamba-edge export ART --out DIR`
    assert "exported" in printed and "w8a8" in printed
    assert (out / "model.onnx").is_file() and (out / "export.json").is_file()
    rc, stdout, err = _run(capsys, "generate", out, "--prompt", "The interpreter reads", "--max-new-tokens", 8,
                           "--json")
    assert rc == 0, err
    ort = json.loads(stdout)
    assert ort["model"]["backend"] == "onnxruntime" and ort["stats"]["precision"] == "w8a8"
    rc, stdout, err = _run(capsys, "generate", art, "--prompt", "The interpreter reads", "--max-new-tokens", 8,
                           "--json", "--backend", "torch")
    assert rc == 0 and json.loads(stdout)["tokens"] == ort["tokens"]
    rc, _, err = _run(capsys, "export", art, "--out", out)  # exists: refused without --overwrite
    assert rc == 1 and err.startswith("quamba-edge export: error:") and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(not have_recipes(), reason="quantization recipes not available")
def test_demo_on_a_tiny_model(capsys, root):
    """The demo's flow (quantize -> run each model in its own process -> table) on a tiny model; on the
    torch backend, so that it needs no export (the export -> onnxruntime path is tested above)."""
    model = fp_dir(root, "mamba2", with_tokenizer=True)
    work = root / "demo"
    rc, stdout, err = _run(capsys, "demo", "--model", model, "--bits", "w8a8", "--work", work, "--num-samples", 2,
                           "--seq-len", 32, "--gptq-num-samples", 2, "--gptq-seq-len", 32, "--ppl-windows", 1,
                           "--window", 32, "--max-new-tokens", 4, "--backend", "torch")
    assert rc == 0, err
    assert "backend: torch — asked for torch" in stdout
    assert "precision  backend" in stdout and "\nfp16 " in stdout and "\nW8A8 " in stdout and "done in" in stdout
    rc, stdout, err = _run(capsys, "demo", "--model", model, "--bits", "w8a8", "--work", work, "--num-samples", 2,
                           "--seq-len", 32, "--gptq-num-samples", 2, "--gptq-seq-len", 32, "--ppl-windows", 1,
                           "--window", 32, "--max-new-tokens", 4, "--backend", "torch", "--json")
    assert rc == 0, err
    res = json.loads(stdout)
    assert [r["precision"] for r in res["rows"]] == ["fp16", "w8a8"]
    for r in res["rows"]:
        assert r["backend"] == "torch" and r["perplexity"]["windows"] == 1
        assert r["stats"]["ttft_ms"] > 0 and r["stats"]["peak_memory_mb"] > 0 and r["model_bytes"] > 0
    rc, _, err = _run(capsys, "demo", "--backend", "nope")
    assert rc == 1 and "unknown backend 'nope'" in err


def _fake_row(precision: str, backend: str, device: str, tpot: float) -> dict:
    return {"precision": precision, "backend": backend, "device": device, "backend_reason": f"asked for {backend}",
            "compute_dtype": "float32", "prompt": "The", "text": " x", "model_bytes": 2**20,
            "perplexity": {"ppl": 30.0, "windows": 1, "window": 32},
            "stats": {"ttft_ms": 5.0, "tpot_ms": tpot, "tokens_per_s": 1000 / tpot, "peak_memory_mb": 100.0,
                      "memory_kind": "peak RSS"}}


def test_demo_notes_explain_slow_quantized_rows_on_ort_cpu_only():
    from quamba_edge.cli import ORT_CPU_NOTE, _demo_notes

    assert "Python PyOps" in ORT_CPU_NOTE and "TensorRT plugins (Jetson)" in ORT_CPU_NOTE
    ort = [_fake_row("fp16", "onnxruntime", "cpu", 2.0), _fake_row("w8a8", "onnxruntime", "cpu", 5.0)]
    assert _demo_notes(ort) == [ORT_CPU_NOTE]
    assert _demo_notes(ort[:1]) == []  # fp16 alone: nothing to explain
    assert _demo_notes([_fake_row(p, "torch-cuda", "cuda:0", 1.0) for p in ("fp16", "w8a8")]) == []
    assert _demo_notes([_fake_row(p, "torch", "cpu", 1.0) for p in ("fp16", "w8a8")]) == []
    assert _demo_notes([_fake_row(p, "onnxruntime", "cuda", 1.0) for p in ("fp16", "w8a8")]) == []


@pytest.mark.skipif(not have_recipes(), reason="quantization recipes not available")
@pytest.mark.parametrize("backend,device", [("onnxruntime", "cpu"), ("torch-cuda", "cuda:0")])
def test_demo_table_note_under_the_table_and_in_json(capsys, monkeypatch, root, backend, device):
    """The demo's output around the table, with the export and the per-model measurement faked (cheap):
    the ONNX Runtime CPU note follows the table (and is in --json "notes") only on that backend."""
    from quamba_edge import cli

    monkeypatch.setattr(cli, "_export_api", lambda: ((lambda src, out, **kw: Path(out)), None))
    monkeypatch.setattr(cli, "_demo_measure", lambda path, args, ppl_file, log: _fake_row("x", backend, device, 2.0))
    model = fp_dir(root, "mamba2", with_tokenizer=True)
    argv = ["demo", "--model", model, "--bits", "w8a8", "--work", root / f"demo-{backend}", "--num-samples", 2,
            "--seq-len", 32, "--gptq-num-samples", 2, "--gptq-seq-len", 32, "--backend",
            "onnxruntime" if backend == "onnxruntime" else "auto"]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    table_end = stdout.index("\nW8A8 ")
    after = stdout[table_end + 1:].splitlines()[1:]  # the lines after the W8A8 row
    if backend == "onnxruntime":
        assert after[0] == cli.ORT_CPU_NOTE
    else:
        assert "PyOps" not in stdout and after[0] == ""
    rc, stdout, err = _run(capsys, *argv, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["notes"] == ([cli.ORT_CPU_NOTE] if backend == "onnxruntime" else [])
