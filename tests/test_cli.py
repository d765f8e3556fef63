"""The `quamba-edge` command line: --help, info, quantize + eval end to end on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from quamba_edge.cli import main
from quamba_edge.models import MambaConfig, MambaLM, save_model
from quamba_edge.tokenizer import bundled_assets_dir

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO / "quamba_edge" / "assets" / "text" / "calib.txt"


def _have_recipes() -> bool:
    try:
        from quamba_edge.quant import qlm, recipes  # noqa: F401
    except ImportError:
        return False
    return hasattr(recipes, "quantize_model")


needs_recipes = pytest.mark.skipif(not _have_recipes(), reason="Q's qlm / recipes not available yet")


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    """A small .txt (blank-line separated documents) cut from the shipped calibration text."""
    docs = TEXT.read_text(encoding="utf-8").split("\n\n")[:6]
    f = tmp_path_factory.mktemp("text") / "tiny.txt"
    f.write_text("\n\n".join(d[:1500] for d in docs) + "\n", encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, text_file) -> Path:
    """The bundled tokenizer when the package ships one, else a tiny byte-level BPE trained here."""
    bundled = bundled_assets_dir() / "tokenizer"
    if (bundled / "tokenizer.json").is_file():
        return bundled
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text_file.read_text(encoding="utf-8")], trainer)
    d = tmp_path_factory.mktemp("tok")
    tok.save(str(d / "tokenizer.json"))
    (d / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return d


def _fp_model_dir(root: Path, tokenizer_dir: Path, arch: str) -> Path:
    from tokenizers import Tokenizer

    n = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()
    torch.manual_seed(0)
    kw = {} if arch == "mamba1" else dict(headdim=8, ngroups=1, d_state=8, chunk_size=16)
    cfg = MambaConfig(arch=arch, d_model=32, n_layer=2, vocab_size=-(-n // 8) * 8, **kw)
    return save_model(MambaLM(cfg).eval(), root / f"fp-{arch}")


@pytest.fixture(scope="module")
def fp_dirs(tmp_path_factory, tokenizer_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {a: _fp_model_dir(root, tokenizer_dir, a) for a in ("mamba1", "mamba2")}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- help / info --------------------------------------------------------------------------------


def test_help_lists_subcommands():
    r = subprocess.run([sys.executable, "-m", "quamba_edge", "--help"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    for cmd in ("info", "quantize", "eval"):
        assert f"    {cmd} " in r.stdout
    for cmd in ("quantize", "eval"):
        r = subprocess.run([sys.executable, "-m", "quamba_edge", cmd, "--help"], capture_output=True,
                           text=True, cwd=REPO, timeout=120)
        assert r.returncode == 0 and f"usage: quamba-edge {cmd}" in r.stdout


def test_info_still_works(capsys, fp_dirs):
    rc, out, err = _run(capsys, "info", fp_dirs["mamba2"])
    assert rc == 0, err
    assert "mamba2" in out and "parameters" in out
    rc, out, _ = _run(capsys, "info", fp_dirs["mamba1"], "--json")
    assert rc == 0 and json.loads(out)["architecture"]["arch"] == "mamba1"


# ---- quantize: argument errors ------------------------------------------------------------------


@pytest.mark.parametrize("recipe,bits,arch,bad", [
    ("quamba", "w4a8", "mamba1", "--recipe quamba --bits w4a8"),
    ("quamba3", "w8a8", "mamba2", "--recipe quamba3 --bits w8a8"),
    ("quamba2", "w2a8", "mamba1", "--recipe quamba2 --bits w2a8"),
])
def test_quantize_bad_combo_one_line_nothing_written(capsys, tmp_path, fp_dirs, text_file, recipe, bits,
                                                     arch, bad):
    out = tmp_path / "art"
    rc, stdout, err = _run(capsys, "quantize", fp_dirs[arch], "--recipe", recipe, "--bits", bits,
                           "--calib", text_file, "--out", out)
    assert rc == 1 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"quamba-edge quantize: error: {bad} is not available for {arch}")
    assert "valid recipe/bits (arch): quamba w8a8 (mamba1)" in lines[0] and "quamba2 w4a16 (mamba2)" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_quantize_refuses_a_non_artifact_out_dir(capsys, tmp_path, fp_dirs, text_file):
    rc, _, err = _run(capsys, "quantize", fp_dirs["mamba1"], "--recipe", "quamba", "--bits", "w8a8",
                      "--calib", text_file, "--out", fp_dirs["mamba1"])
    assert rc == 1 and "is the input model directory" in err
    d = tmp_path / "other"
    d.mkdir()
    (d / "x.txt").write_text("keep")
    rc, _, err = _run(capsys, "quantize", fp_dirs["mamba1"], "--recipe", "quamba", "--bits", "w8a8",
                      "--calib", text_file, "--out", d)
    assert rc == 1 and "refusing to replace it" in err and (d / "x.txt").read_text() == "keep"
    rc, _, err = _run(capsys, "quantize", fp_dirs["mamba1"], "--recipe", "quamba", "--bits", "w8a8",
                      "--calib", tmp_path / "missing.txt", "--out", tmp_path / "a")
    assert rc == 1 and "missing.txt: no such file" in err and not (tmp_path / "a").exists()


# ---- eval ---------------------------------------------------------------------------------------


def test_eval_fp_model_ppl(capsys, fp_dirs, text_file, tokenizer_dir):
    rc, out, err = _run(capsys, "eval", fp_dirs["mamba1"], "--ppl", text_file, "--window", 64,
                        "--max-windows", 3, "--tokenizer", tokenizer_dir, "--device", "cpu")
    assert rc == 0, err
    assert "FP model" in out and "perplexity" in out and "3 window(s) of 64" in out
    rc, out, err = _run(capsys, "eval", fp_dirs["mamba1"], "--ppl", text_file, "--window", 64,
                        "--max-windows", 3, "--tokenizer", tokenizer_dir, "--json", "--device", "cpu")
    assert rc == 0, err
    r = json.loads(out)["perplexity"]
    assert r["windows"] == 3 and r["tokens"] == 3 * 63 and r["ppl"] > 1 and 0 <= r["top1"] <= 1
    # a random tiny model is close to uniform over its vocabulary
    assert r["ppl"] < 3 * MambaConfig.from_dict(json.loads((fp_dirs["mamba1"] / "config.json").read_text())).vocab_size


def test_eval_errors(capsys, fp_dirs, text_file, tokenizer_dir):
    rc, _, err = _run(capsys, "eval", fp_dirs["mamba1"], "--tokenizer", tokenizer_dir)
    assert rc == 1 and "nothing to evaluate" in err
    rc, _, err = _run(capsys, "eval", fp_dirs["mamba1"], "--sqnr", "--calib", text_file)
    assert rc == 1 and "is not an artifact" in err


# ---- quantize + eval end to end -----------------------------------------------------------------


@needs_recipes
@pytest.mark.parametrize("arch,recipe,bits", [("mamba1", "quamba", "w8a8"), ("mamba2", "quamba2", "w4a8")])
def test_quantize_then_eval(capsys, tmp_path, fp_dirs, text_file, tokenizer_dir, arch, recipe, bits):
    out = tmp_path / "art"
    rc, stdout, err = _run(capsys, "quantize", fp_dirs[arch], "--recipe", recipe, "--bits", bits,
                           "--calib", text_file, "--num-samples", 4, "--seq-len", 32,
                           "--gptq-num-samples", 4, "--gptq-seq-len", 32, "--tokenizer", tokenizer_dir,
                           "--out", out, "--device", "cpu")
    assert rc == 0, err
    assert f"with {recipe} {bits}" in stdout and f"wrote {out}" in stdout and "done in" in stdout
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    rc, stdout, err = _run(capsys, "info", out)
    assert rc == 0 and f"recipe          {recipe}" in stdout and "quantized from" in stdout, err

    rc, stdout, err = _run(capsys, "eval", out, "--ppl", text_file, "--window", 64, "--max-windows", 2,
                           "--sqnr", "--calib", text_file, "--num-samples", 2, "--seq-len", 32,
                           "--device", "cpu")
    assert rc == 0, err
    assert f"{recipe} {bits} artifact" in stdout and "perplexity" in stdout
    assert "SQNR dB" in stdout and "worst:" in stdout and "logits" in stdout

    rc, stdout, err = _run(capsys, "eval", out, "--ppl", text_file, "--window", 64, "--max-windows", 2,
                           "--sqnr", "--fp", fp_dirs[arch], "--num-samples", 2, "--seq-len", 32,
                           "--json", "--device", "cpu")
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["model"]["kind"] == "artifact" and res["model"]["recipe"] == recipe
    fp_rc, fp_out, _ = _run(capsys, "eval", fp_dirs[arch], "--ppl", text_file, "--window", 64,
                            "--max-windows", 2, "--tokenizer", tokenizer_dir, "--json", "--device", "cpu")
    fp_ppl = json.loads(fp_out)["perplexity"]["ppl"]
    assert res["perplexity"]["tokens"] == 2 * 63
    assert abs(res["perplexity"]["ppl"] - fp_ppl) / fp_ppl < 0.5  # quantized stays near its FP model
    rows = res["sqnr"]["rows"]
    assert rows and all(isinstance(r["sqnr_db"], (float, str)) for r in rows)
    assert any(r["name"] == "logits" for r in rows)


# ---- quantize: short calibration text -----------------------------------------------------------


@needs_recipes
def test_quantize_calib_defaults_to_the_bundled_text(capsys, tmp_path, fp_dirs):
    out = tmp_path / "art"
    rc, stdout, err = _run(capsys, "quantize", fp_dirs["mamba1"], "--recipe", "quamba", "--bits", "w8a8",
                           "--num-samples", 2, "--seq-len", 32, "--out", out, "--device", "cpu")
    assert rc == 0 and err == "", err  # enough text: no note
    assert f"calibration: 2 samples, 64 tokens from {TEXT}" in stdout
    src = json.loads((out / "config.json").read_text())["source"]
    assert src["calib"] == str(TEXT) and src["num_samples"] == 2


@needs_recipes
def test_quantize_short_text_takes_fewer_samples_and_says_so(capsys, tmp_path, fp_dirs, text_file, tokenizer_dir):
    """Asking for more than the text holds (the defaults on the bundled calib.txt do) gives fewer samples
    of the asked length, for the activation and the GPTQ data, each said in one stderr line; the artifact
    records the counts used."""
    from quamba_edge.quant.calibration import _token_stream, read_documents
    from quamba_edge.tokenizer import load_tokenizer

    n = len(_token_stream(read_documents(text_file)[1], load_tokenizer(tokenizer_dir), False))
    seq = 256
    k, k_gptq = n // seq, (n - seq // 2) // seq  # the GPTQ grid is shifted by half a window
    assert 1 <= k_gptq <= k < 512
    out = tmp_path / "art"
    rc, stdout, err = _run(capsys, "quantize", fp_dirs["mamba2"], "--recipe", "quamba2", "--bits", "w4a8",
                           "--calib", text_file, "--seq-len", seq, "--gptq-seq-len", seq,
                           "--tokenizer", tokenizer_dir, "--out", out, "--device", "cpu")
    assert rc == 0, err
    assert err.splitlines() == [
        f"quamba-edge quantize: calibration text has {n:,} tokens: using {k} samples of {seq} tokens instead "
        f"of 512 x {seq}",
        f"quamba-edge quantize: GPTQ text has {n:,} tokens: using {k_gptq} windows of {seq} tokens instead "
        f"of 128 x {seq}",
    ]
    assert f"calibration: {k} samples" in stdout and f"GPTQ data: {k_gptq} windows" in stdout
    src = json.loads((out / "config.json").read_text())["source"]
    assert src["num_samples"] == k and src["gptq_num_samples"] == k_gptq


def test_quantize_text_shorter_than_one_sample_is_one_line_error(capsys, tmp_path, fp_dirs, text_file):
    out = tmp_path / "art"
    rc, stdout, err = _run(capsys, "quantize", fp_dirs["mamba1"], "--recipe", "quamba", "--bits", "w8a8",
                           "--calib", text_file, "--seq-len", 1_000_000, "--out", out, "--device", "cpu")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, err
    assert lines[0].startswith("quamba-edge quantize: error: calibration source")
    assert "fewer than one window of 1000000 tokens" in lines[0] and "--seq-len" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ---- Ctrl-C -------------------------------------------------------------------------------------


def _interrupt(*_a, **_k):
    raise KeyboardInterrupt


@needs_recipes
@pytest.mark.parametrize("where", ["quantizing", "writing"])
@pytest.mark.parametrize("existing", [False, True])
def test_quantize_interrupted_one_line_exit_130_nothing_written(capsys, monkeypatch, tmp_path, fp_dirs, text_file,
                                                                where, existing):
    """Ctrl-C while quantizing, or inside the atomic writer after the files are in its temp dir: one line,
    exit code 130, no target (or the existing one untouched) and no temp dir left beside it."""
    from quamba_edge.quant import artifact, recipes

    if where == "quantizing":
        monkeypatch.setattr(recipes, "quantize_model", _interrupt)
    else:  # after write(tmp), before the rename
        monkeypatch.setattr(artifact, "apply_umask_permissions", _interrupt)
    out = tmp_path / "art"
    if existing:
        out.mkdir()
    rc, stdout, err = _run(capsys, "quantize", fp_dirs["mamba1"], "--recipe", "quamba", "--bits", "w8a8",
                           "--calib", text_file, "--num-samples", 2, "--seq-len", 32, "--out", out,
                           "--device", "cpu")
    assert rc == 130
    assert err.splitlines() == [f"quamba-edge quantize: interrupted; nothing was written to {out}"], err
    assert "Traceback" not in err + stdout
    if existing:
        assert out.is_dir() and list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == (["art"] if existing else [])  # no .art.tmp-* left


def test_other_commands_interrupted_one_line_exit_130(capsys, monkeypatch, fp_dirs, text_file, tokenizer_dir):
    from quamba_edge.quant import evaluate

    monkeypatch.setattr(evaluate, "perplexity", _interrupt)
    rc, stdout, err = _run(capsys, "eval", fp_dirs["mamba1"], "--ppl", text_file, "--tokenizer", tokenizer_dir,
                           "--device", "cpu")
    assert rc == 130 and err.splitlines()[-1] == "quamba-edge eval: interrupted" and "Traceback" not in err

    from quamba_edge.runtime import EdgeModel

    monkeypatch.setattr(EdgeModel, "load", _interrupt)
    rc, stdout, err = _run(capsys, "generate", fp_dirs["mamba1"], "--prompt", "The")
    assert rc == 130 and err.splitlines() == ["quamba-edge generate: interrupted"]
