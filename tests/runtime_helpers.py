"""Tiny random models for the runtime tests (imported by tests/test_runtime_*.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from quamba_edge.models import MambaConfig, MambaLM, save_model
from quamba_edge.tokenizer import bundled_assets_dir, load_tokenizer

TOKENIZER_DIR = bundled_assets_dir() / "tokenizer"
VOCAB = load_tokenizer(TOKENIZER_DIR).vocab_size  # 8192: the tiny models use the bundled tokenizer


def have_recipes() -> bool:
    try:
        from quamba_edge.quant import recipes  # noqa: F401
    except ImportError:
        return False
    return hasattr(recipes, "quantize_model")


def tiny_config(arch: str) -> MambaConfig:
    kw = {} if arch == "mamba1" else dict(headdim=8, ngroups=1, d_state=8, chunk_size=16)
    return MambaConfig(arch=arch, d_model=32, n_layer=2, vocab_size=VOCAB, **kw)


def scaled_random_lm(config: MambaConfig) -> MambaLM:
    """A random FP model whose embedding is scaled up so its next-token distribution is far from
    uniform (clear greedy choices)."""
    torch.manual_seed(0)
    m = MambaLM(config).eval()
    with torch.no_grad():
        m.embedding.weight.mul_(25.0)
    return m


@functools.lru_cache(maxsize=None)
def tiny_fp(arch: str) -> MambaLM:
    return scaled_random_lm(tiny_config(arch))


@functools.lru_cache(maxsize=None)
def tiny_quant(arch: str, bits: str):
    """The tiny FP model quantized with quamba2 at ``bits`` (a few short calibration samples)."""
    from quamba_edge.quant.recipes import quantize_model

    g = torch.Generator().manual_seed(1)
    calib = [torch.randint(0, VOCAB, (1, 32), generator=g) for _ in range(4)]
    return quantize_model(tiny_fp(arch), "quamba2", bits, calib, gptq_calib=calib).eval()


def fp_dir(root: Path, arch: str, with_tokenizer: bool = False) -> Path:
    """tiny_fp saved as a checkpoint directory; without a tokenizer (the runtime then uses the bundled
    one) unless ``with_tokenizer``."""
    import shutil

    out = root / (f"fp-{arch}" + ("-tok" if with_tokenizer else ""))
    if not out.exists():
        save_model(tiny_fp(arch), out)
        if with_tokenizer:
            for f in TOKENIZER_DIR.iterdir():
                shutil.copy(f, out / f.name)
    return out


def artifact_dir(root: Path, arch: str, bits: str) -> Path:
    from quamba_edge.quant.artifact import save_artifact

    out = root / f"art-{arch}-{bits}"
    if not out.exists():
        save_artifact(tiny_quant(arch, bits), out, tokenizer_dir=TOKENIZER_DIR)
    return out


# ---- one export per (arch, bits) per test process (exporting is the slow step) -----------------------

_ROOT: Path | None = None


def session_root() -> Path:
    """A temporary folder for this test process (removed at exit)."""
    global _ROOT
    if _ROOT is None:
        import atexit
        import shutil
        import tempfile

        _ROOT = Path(tempfile.mkdtemp(prefix="qe-runtime-tests-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


@functools.lru_cache(maxsize=None)
def exported(arch: str, bits: str) -> tuple[Path, Path, str]:
    """(artifact dir, export dir, what `quamba-edge export` printed): the tiny quantized model saved as an
    artifact and exported (fp32) through the command line, once per process."""
    import contextlib
    import io

    from quamba_edge.cli import main

    art = artifact_dir(session_root(), arch, bits)
    out = session_root() / f"onnx-{arch}-{bits}"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", str(art), "--out", str(out)])
    if rc != 0:
        raise RuntimeError(f"quamba-edge export {art} failed (rc {rc}): {buf.getvalue()}")
    return art, out, buf.getvalue()


def fp16_export(arch: str, bits: str, tag: str = "trt-export") -> Path:
    """The tiny quantized model's fp16 export (what TensorRT parses), once per process and ``tag``: tests that
    write an engine into it take a tag of their own."""
    from quamba_edge.export import export_model

    out = session_root() / f"{tag}-{arch}-{bits}"
    if not out.exists():
        export_model(artifact_dir(session_root(), arch, bits), out, dtype="fp16")
    return out
