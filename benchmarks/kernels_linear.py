"""Quantized linear cases of the kernel benchmark (``benchmarks/kernels.py`` imports ``cases``).

    python benchmarks/kernels.py --only w8a8_linear w4a8_linear w4a16_linear hadamard_out_proj

Every linear of mamba-2.8b, mamba2-2.7b and mamba2-8b, plus the 4096 x 14336 reference shape both ways, at
M = 1, 4 and 16 token rows (batched decode: the tensor-core GEMV) and M = 1024 and 4096 (prefill: the tiled
GEMM of linear_gemm.cuh). The reference is what users run: cuBLAS fp16 ``F.linear`` at the same shape, with its
fp16 weights rotated over > 2x L2 like ours (a decode step finds its weights in DRAM). ``bytes`` = weight +
scale bytes + activations read + y written. Prefill rows note the tera-operations per second reached
(2 M N K / time). ``hadamard_out_proj`` times the out_proj's online Hadamard + int8 quantization (quant_hadamard)
followed by the linear kernel (the GEMV; the GEMM at M = 1024), as one op would run it, against the bare linear
(``reference`` there = the bare linear kernel).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from kernels import MODELS, l2_sets

DECODE_M = (1, 4, 16)
PREFILL_M = (1024, 4096)


def linear_shapes() -> list[tuple[str, str, int, int]]:
    """(model, layer, N, K) of every linear (the lm_heads: vocab 50280 / 256000, untied in mamba2-8b)."""
    out = []
    m1 = MODELS["mamba-2.8b"]
    d, e, n = m1["d_model"], m1["d_inner"], m1["d_state"]
    r = -(-d // 16)
    out += [("mamba-2.8b", "in_proj", 2 * e, d), ("mamba-2.8b", "x_proj", r + 2 * n, e),
            ("mamba-2.8b", "dt_proj", e, r), ("mamba-2.8b", "out_proj", d, e), ("mamba-2.8b", "lm_head", 50280, d)]
    for model in ("mamba2-2.7b", "mamba2-8b"):
        c = MODELS[model]
        d, e, g, n, h = c["d_model"], c["d_inner"], c["ngroups"], c["d_state"], c["nheads"]
        out += [(model, "in_proj", 2 * e + 2 * g * n + h, d), (model, "out_proj", d, e)]
    out.append(("mamba2-8b", "lm_head", 256000, MODELS["mamba2-8b"]["d_model"]))
    out += [("reference", "4096x14336", 4096, 14336), ("reference", "14336x4096", 14336, 4096)]
    return out


PREFILL_SHAPES = None  # every linear shape (a set of (model, layer) keeps only those)


def _weights(fmt: str, n: int, k: int) -> dict:
    """One weight set in the kernel's format (random values: the time does not depend on them)."""
    dev = "cuda"
    if fmt == "w8a8":
        return dict(w=torch.randint(-128, 128, (n, k), dtype=torch.int8, device=dev),
                    ws=torch.rand(n, device=dev) * 0.01 + 0.001)
    ng = -(-k // 128)
    packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device=dev)
    s = (torch.rand(n, ng, device=dev) * 0.02 + 0.002).to(torch.float16)
    if fmt == "w4a8":
        return dict(w=packed, sg=(torch.rand(n, ng, device=dev) * 15).to(torch.float16),
                    sc=torch.rand(n, device=dev) * 0.01 + 0.001)
    return dict(w=packed, s=s)


def weight_bytes(fmt: str, n: int, k: int) -> int:
    ng = -(-k // 128)
    if fmt == "w8a8":
        return n * k + 4 * n
    return n * k // 2 + 2 * n * ng + (4 * n if fmt == "w4a8" else 0)


def _run(ops: Any, fmt: str, x: torch.Tensor, wt: dict, y: torch.Tensor, xs: torch.Tensor,
         os: torch.Tensor | None) -> None:
    if fmt == "w8a8":
        ops.w8a8_linear(x, xs, wt["w"], wt["ws"], None, os, y)
    elif fmt == "w4a8":
        ops.w4a8_linear(x, xs, wt["w"], wt["sg"], wt["sc"], 128, None, os, y)
    else:
        ops.w4a16_linear(x, wt["w"], wt["s"], 128, None, y)


def _case(ops: Any, fmt: str, model: str, layer: str, n: int, k: int, m: int) -> dict:
    dev = "cuda"
    a8 = fmt != "w4a16"
    int8_out = a8 and layer not in ("out_proj", "lm_head")
    wb = weight_bytes(fmt, n, k)
    act_bytes = m * k * (1 if a8 else 2) + m * n * (1 if int8_out else 2)
    sets = [_weights(fmt, n, k) for _ in range(l2_sets(wb))]
    x = (torch.randint(-128, 128, (m, k), dtype=torch.int8, device=dev) if a8
         else torch.randn(m, k, device=dev).to(torch.float16))
    y = torch.empty(m, n, dtype=torch.int8 if int8_out else torch.float16, device=dev)
    xs = torch.full((), 0.02, device=dev)
    os = torch.rand(n, device=dev) * 0.05 + 0.01 if int8_out else None
    w16 = [torch.randn(n, k, device=dev).to(torch.float16) * 0.02 for _ in range(l2_sets(2 * n * k))]
    x16 = torch.randn(m, k, device=dev).to(torch.float16)

    def kern(i, sets=sets):
        _run(ops, fmt, x, sets[i % len(sets)], y, xs, os)

    def ref(i, w16=w16):
        F.linear(x16, w16[i % len(w16)])

    shape = f"M={m} N={n} K={k} {layer}" + (" (decode)" if m <= 16 else " (prefill)")
    path = ("tensor-core GEMV (weights read once per 16 rows)" if m <= 16
            else f"tiled mma.sync GEMM, {2 * m * n * k / 1e12:.4g} T-ops per call")
    return dict(name=f"{fmt}_linear", model=model, shape=shape, bytes=wb + act_bytes, weight_bytes=wb,
                kernel=kern, reference=ref, reference_kind="cuBLAS fp16 F.linear", flops=2 * m * n * k,
                note=("int8 out" if int8_out else "fp16 out") + "; " + path)


def _keep(name: str, only: list[str] | None) -> bool:
    return not only or any(o in name for o in only)


def gemv_cases(ops: Any, only: list[str] | None = None) -> list[dict]:
    out = []
    for model, layer, n, k in linear_shapes():
        ms = DECODE_M + (PREFILL_M if PREFILL_SHAPES is None or (model, layer) in PREFILL_SHAPES else ())
        for m in ms:
            for fmt in ("w8a8", "w4a8", "w4a16"):
                if (fmt != "w8a8" and k % 32) or not _keep(f"{fmt}_linear", only):
                    continue
                out.append(_case(ops, fmt, model, layer, n, k, m))
    return out


def hadamard_out_proj_cases(ops: Any) -> list[dict]:
    """out_proj with its online Hadamard + int8 quantization (quant_hadamard, then the linear kernel) vs the bare
    linear kernel (the GEMV; the GEMM at M = 1024)."""
    from quamba_edge.quant.hadamard import hadamard_matrix

    out = []
    for model in ("mamba-2.8b", "mamba2-2.7b", "mamba2-8b"):
        d, e = MODELS[model]["d_model"], MODELS[model]["d_inner"]
        base = hadamard_matrix(e, torch.float32, device="cuda")
        for fmt in ("w8a8", "w4a8"):
            for m in (1, 16, 1024):
                wb = weight_bytes(fmt, d, e)
                sets = [_weights(fmt, d, e) for _ in range(l2_sets(wb))]
                yn = torch.randn(m, e, device="cuda").to(torch.float16)
                xq = torch.empty(m, e, dtype=torch.int8, device="cuda")
                y = torch.empty(m, d, dtype=torch.float16, device="cuda")
                xs = torch.full((), 0.02, device="cuda")

                def fused(i, sets=sets, yn=yn, xq=xq, y=y, fmt=fmt, base=base):
                    ops.quant_hadamard(yn, base, 0.02, xq)
                    _run(ops, fmt, xq, sets[i % len(sets)], y, xs, None)

                def bare(i, sets=sets, xq=xq, y=y, fmt=fmt):
                    _run(ops, fmt, xq, sets[i % len(sets)], y, xs, None)

                out.append(dict(name="hadamard_out_proj", model=model, shape=f"M={m} N={d} K={e} {fmt}",
                                bytes=wb + 3 * m * e + 2 * m * d, weight_bytes=wb, kernel=fused, reference=bare,
                                reference_kind="bare linear kernel (no Hadamard)",
                                note="quant_hadamard + linear kernel, two kernels; speedup < 1 = the Hadamard's cost"))
    return out


def cases(ops: Any, only: list[str] | None = None) -> list[dict]:
    return gemv_cases(ops, only) + (hadamard_out_proj_cases(ops) if _keep("hadamard_out_proj", only) else [])
