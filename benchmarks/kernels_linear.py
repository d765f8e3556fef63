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

``w8a8_linear_intmm`` / ``w4a8_linear_intmm`` (prefill rows only, measurement only): the same W8A8 / W4A8 op built
from cuBLASLt int8 GEMM (``torch._int_mm``: int8 [M, K] x int8 [K, N] -> int32, M > 16, K and N multiples of 8)
and a torch epilogue (``intmm_epilogue``: fp16 y = fp32(acc) * x_scale * w_scale, alpha precomputed per weight);
W4A8 first unpacks its packed int4 weight to int8 with torch ops (``w4a8_weight_int8``), timed with the GEMM.
Against the same cuBLAS fp16 ``F.linear``: do M > 16 prefills gain from routing the torch-cuda backend through
cuBLASLt int8?

``w4a16_linear_cublas`` (prefill rows, and M = 32 ... 256 beside the W4A16 GEMM on three shapes: the threshold
kernel_dispatch.W4A16_CUBLAS_MIN_M): the torch-cuda backend's W4A16 prefill, the weight dequantized by
w4a16_dequantize and multiplied by cuBLAS fp16 (fp32 out).
"""

from __future__ import annotations

from collections.abc import Callable
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


def _fp16_reference(n: int, k: int, m: int) -> Callable[[int], None]:
    """cuBLAS fp16 ``F.linear`` at [M, K] x [N, K]^T, its fp16 weights rotated over > 2x L2."""
    w16 = [torch.randn(n, k, device="cuda").to(torch.float16) * 0.02 for _ in range(l2_sets(2 * n * k))]
    x16 = torch.randn(m, k, device="cuda").to(torch.float16)

    def ref(i, w16=w16):
        F.linear(x16, w16[i % len(w16)])

    return ref


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
    ref = _fp16_reference(n, k, m)

    def kern(i, sets=sets):
        _run(ops, fmt, x, sets[i % len(sets)], y, xs, os)

    shape = f"M={m} N={n} K={k} {layer}" + (" (decode)" if m <= 16 else " (prefill)")
    path = ("tensor-core GEMV (weights read once per 16 rows)" if m <= 16
            else f"tiled mma.sync GEMM, {2 * m * n * k / 1e12:.4g} T-ops per call")
    return dict(name=f"{fmt}_linear", model=model, shape=shape, bytes=wb + act_bytes, weight_bytes=wb,
                kernel=kern, reference=ref, reference_kind="cuBLAS fp16 F.linear", flops=2 * m * n * k,
                note=("int8 out" if int8_out else "fp16 out") + "; " + path)


# ---- alternative prefill path (measurement only): cuBLASLt int8 GEMM via torch._int_mm + torch epilogue ----------

IntMM = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def intmm_epilogue(acc: torch.Tensor, alpha: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """fp16 ``y = fp16(fp32(acc) * alpha)``: the W8A8 / W4A8 ops' fp32 epilogue (``alpha`` fp32 [N] =
    x_scale * weight scale per output row) rounded once to fp16. One torch call computing in fp32 (int -> fp32
    round to nearest, fp32 multiply); TensorIterator writes an fp16 ``out`` through an fp32 temporary and a cast
    (a second pass), part of what the measurement includes."""
    if out is None:
        out = torch.empty(acc.shape, dtype=torch.float16, device=acc.device)
    return torch.mul(acc, alpha, out=out)


def w4a8_weight_int8(packed: torch.Tensor, s_group: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """Packed int4 weight (uint8 [N, K/2], low nibble first) -> the int8 [N, K] weight of
    ``ops.w4a8_linear.w4a8_int8_weight``: ``clamp(round_half_even(fp16(fp16(q - 8) * fp16(s_group))), -128, 127)``.
    The rounding is done in fp16 (exact: the product rounded to fp16 has an fp16 integer nearest to it)."""
    n, k = packed.shape[0], 2 * packed.shape[1]
    codes = torch.stack((packed & 15, packed >> 4), dim=-1).view(n, k)
    g = k if group_size <= 0 or group_size >= k else group_size
    sg = s_group.to(torch.float16)
    w16 = codes.to(torch.float16).sub_(8.0)
    if k % g == 0:  # broadcast the group scales over [N, K/g, g]
        w16.view(n, k // g, g).mul_(sg.unsqueeze(-1))
    else:
        w16.mul_(sg.repeat_interleave(g, dim=1)[:, :k])
    return w16.round_().clamp_(-128, 127).to(torch.int8)


def w8a8_linear_intmm(x: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor, out: torch.Tensor | None = None,
                      mm: IntMM = torch._int_mm) -> torch.Tensor:
    """W8A8 prefill through ``mm`` (cuBLASLt int8 ``torch._int_mm``; a CPU emulation in the tests) + the epilogue."""
    return intmm_epilogue(mm(x, w.t()), alpha, out)


def w4a8_linear_intmm(x: torch.Tensor, packed: torch.Tensor, s_group: torch.Tensor, alpha: torch.Tensor,
                      group_size: int = 128, out: torch.Tensor | None = None,
                      mm: IntMM = torch._int_mm) -> torch.Tensor:
    """W4A8 prefill: int4 -> int8 weight unpack with torch ops, then ``w8a8_linear_intmm``'s GEMM + epilogue."""
    return intmm_epilogue(mm(x, w4a8_weight_int8(packed, s_group, group_size).t()), alpha, out)


def _intmm_case(fmt: str, model: str, layer: str, n: int, k: int, m: int) -> dict:
    """``{fmt}_linear_intmm`` at one prefill shape (fp16 out on every layer), against cuBLAS fp16 F.linear."""
    dev = "cuda"
    wb = weight_bytes(fmt, n, k)
    sets = [_weights(fmt, n, k) for _ in range(l2_sets(wb))]
    xs = torch.full((), 0.02, device=dev)
    for s in sets:  # alpha = x_scale * w_scale per output row, precomputed (static scales: a backend would at load)
        s["alpha"] = xs * (s["ws"] if fmt == "w8a8" else s["sc"])
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, device=dev)
    y = torch.empty(m, n, dtype=torch.float16, device=dev)

    def kern(i, sets=sets):
        s = sets[i % len(sets)]
        if fmt == "w8a8":
            w8a8_linear_intmm(x, s["w"], s["alpha"], y)
        else:
            w4a8_linear_intmm(x, s["w"], s["sg"], s["alpha"], 128, y)

    what = "int4 -> int8 unpack (torch ops) + " if fmt == "w4a8" else ""
    return dict(name=f"{fmt}_linear_intmm", model=model, shape=f"M={m} N={n} K={k} {layer} (prefill)",
                bytes=wb + m * k + 2 * m * n, weight_bytes=wb, kernel=kern, reference=_fp16_reference(n, k, m),
                reference_kind="cuBLAS fp16 F.linear", flops=2 * m * n * k,
                note=f"measurement only: cuBLASLt int8 via torch._int_mm + torch epilogue; fp16 out; {what}"
                     f"int32 [M, N] round trip; {2 * m * n * k / 1e12:.4g} T-ops per call")


def _cublas_case(ops: Any, model: str, layer: str, n: int, k: int, m: int) -> dict:
    """``w4a16_linear_cublas``: the torch-cuda backend's W4A16 prefill from kernel_dispatch.W4A16_CUBLAS_MIN_M rows
    (w4a16_dequantize into a transient fp16 weight, then cuBLAS fp16 with fp32 output), against F.linear fp16."""
    from quamba_edge.ops import kernel_dispatch as kd

    wb = weight_bytes("w4a16", n, k)
    sets = [_weights("w4a16", n, k) for _ in range(l2_sets(wb))]
    x = torch.randn(m, k, device="cuda").to(torch.float16)

    def kern(i, sets=sets):
        s = sets[i % len(sets)]
        kd._w4a16_cublas(ops, x, s["w"], s["s"], 128, None, k)

    return dict(name="w4a16_linear_cublas", model=model, shape=f"M={m} N={n} K={k} {layer} (prefill)",
                bytes=wb + 2 * m * k + 4 * m * n, weight_bytes=wb, kernel=kern, reference=_fp16_reference(n, k, m),
                reference_kind="cuBLAS fp16 F.linear", flops=2 * m * n * k,
                note=f"w4a16_dequantize (2.5 B per weight) + cuBLAS fp16, fp32 out; {2 * m * n * k / 1e12:.4g} "
                     "T-ops per call")


# M below PREFILL_M where the W4A16 GEMM and the dequantize + cuBLAS path are both timed (the dispatch threshold)
SWEEP_M = (32, 64, 128, 256)
SWEEP_SHAPES = {("mamba2-2.7b", "in_proj"), ("mamba2-8b", "out_proj"), ("reference", "4096x14336")}


def _intmm_ok(fmt: str, n: int, k: int, m: int) -> bool:
    """torch._int_mm needs M > 16 and K, N multiples of 8 (W4A8 also K % 32 == 0, like its kernel rows)."""
    return m > 16 and k % 8 == 0 and n % 8 == 0 and not (fmt == "w4a8" and k % 32)


def _keep(name: str, only: list[str] | None) -> bool:
    return not only or any(o in name for o in only)


def gemv_cases(ops: Any, only: list[str] | None = None) -> list[dict]:
    out = []
    for model, layer, n, k in linear_shapes():
        ms = DECODE_M + (PREFILL_M if PREFILL_SHAPES is None or (model, layer) in PREFILL_SHAPES else ())
        sweep = SWEEP_M if (model, layer) in SWEEP_SHAPES else ()
        for m in ms + sweep:
            for fmt in ("w8a8", "w4a8", "w4a16"):
                if (fmt != "w8a8" and k % 32) or not _keep(f"{fmt}_linear", only) or (m in sweep and fmt != "w4a16"):
                    continue
                out.append(_case(ops, fmt, model, layer, n, k, m))
            if m > 16 and k % 32 == 0 and _keep("w4a16_linear_cublas", only):
                out.append(_cublas_case(ops, model, layer, n, k, m))
            for fmt in ("w8a8", "w4a8"):  # the cuBLASLt int8 rows beside the prefill rows
                if m in PREFILL_M and _intmm_ok(fmt, n, k, m) and _keep(f"{fmt}_linear_intmm", only):
                    out.append(_intmm_case(fmt, model, layer, n, k, m))
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
