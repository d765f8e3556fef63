"""Mamba2 / Hadamard / norm cases of the kernel benchmark (``benchmarks/kernels.py`` imports ``cases``).

    python benchmarks/kernels.py --only quant_ssd quant_hadamard rms_norm

Shapes: mamba2-2.7b (d_model 2560, d_inner 5120, headdim 64, 80 heads, d_state 128, 1 group, chunk 256) and
mamba2-8b (d_model 4096, d_inner 8192, headdim 64, 128 heads, d_state 128, 8 groups, chunk 128), batch 1,
L in {1, 1024, 2048} (decode: one token; the quant_ssd rows run the default path: the chunked kernel from
L = 32, the p_tile / staging variants the sequential one); quant_ssd_chunked rows: the chunked tensor-core
quant_ssd (QUAMBA_SSD_CHUNKED=1) against the sequential kernel (=0), L in {1024, 2048, 8192}, batch 1 and 4.
quant_embedding rows: one decode token at mamba2-8b's vocabulary (256000 x 4096, W8 and packed W4).
The fp16 references are our FP model code run with fp16 tensors: ``ssm.mamba2_dt`` + ``ssm.ssd_chunked`` /
``ssm.ssd_state_update``, ``ssm.gated_rms_norm``, ``ssm.rms_norm``
(after the fp16 residual add), and ``quant.hadamard.hadamard_transform`` (the float online transform of the
W4A16 path). ``bytes`` counts every input read once and every output written once.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anchors
import torch
from kernels import MODELS, PREFILL_LENS, l2_sets

SEQLENS = (1,) + PREFILL_LENS


def _i8(*shape: int) -> torch.Tensor:
    return torch.randint(-128, 128, shape, dtype=torch.int8, device="cuda")


def _h(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, device="cuda") * scale).to(torch.float16)


def _compact_rows(h: int, p: int, g: int) -> torch.Tensor:
    """Row of the G x 4 x 4 state-scale table for each (head, channel): even head / channel groups."""
    hh = torch.arange(h, device="cuda")[:, None]
    pp = torch.arange(p, device="cuda")[None, :]
    hpg = h // g
    gi, ii, ji = hh // hpg, (hh % hpg) * 4 // hpg, pp * 4 // p
    return ((gi * 4 + ii) * 4 + ji).to(torch.int32).expand(h, p).contiguous()


def ssd_cases(ops: Any) -> list[dict]:
    return [c for model in ("mamba2-2.7b", "mamba2-8b") for c in _ssd_model(ops, model)]


def _ssd_model(ops: Any, model: str) -> list[dict]:
    from quamba_edge.models import ssm

    out = []
    cfg = MODELS[model]
    h, p, g, n, chunk = cfg["nheads"], cfg["headdim"], cfg["ngroups"], cfg["d_state"], cfg["chunk"]
    bsz = 1
    x_scale = torch.rand(h, p, device="cuda") * 0.02 + 0.005
    dt_bias = torch.rand(h, device="cuda") * 4 - 4
    a_log, d_q = _i8(h), _i8(h)
    bc_scale = torch.rand(g, device="cuda") * 0.03 + 0.01
    table = torch.rand(16 * g, n, device="cuda") * 0.1 + 0.02
    rows = _compact_rows(h, p, g)
    expanded = table[rows.long()].contiguous()  # [H, P, N]
    a16, bias16, d16 = -torch.rand(h, device="cuda").half() * 4, _h(h), _h(h)
    # ---- prefill
    for seqlen in SEQLENS:
        nbytes = (bsz * seqlen * (h * p + h + 2 * g * n) + 2 * bsz * seqlen * h * p + 2 * bsz * h * p * n
                  + 4 * 16 * g * n + 4 * h * p + 4 * h * p + 12 * h + 8 * g)
        nsets = l2_sets(nbytes)
        sets = [dict(x=_i8(bsz, seqlen, h, p), dt=_i8(bsz, seqlen, h), B=_i8(bsz, seqlen, g, n),
                     C=_i8(bsz, seqlen, g, n), st=_i8(bsz, h, p, n),
                     y=torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda"),
                     st_out=torch.empty(bsz, h, p, n, dtype=torch.int8, device="cuda")) for _ in range(nsets)]
        rsets = [dict(x=_h(bsz, seqlen, h, p), dt=_h(bsz, seqlen, h), B=_h(bsz, seqlen, g, n),
                      C=_h(bsz, seqlen, g, n), st=_h(bsz, h, p, n)) for _ in range(nsets)]

        def ref(i, rsets=rsets, chunk=chunk):
            s = rsets[i % len(rsets)]
            dt = ssm.mamba2_dt(s["dt"], bias16)
            ssm.ssd_chunked(s["x"], dt, a16, s["B"], s["C"], chunk, D=d16, initial_state=s["st"])

        # (p_tile, staging): the default, then at L = 2048 the tuning alternatives
        variants = ((0, 0), (8, 0), (16, 0), (0, 1)) if seqlen == 2048 else ((0, 0),)
        for tile, staging in variants:
            def kern(i, sets=sets, tile=tile, staging=staging, chunk=chunk):
                s = sets[i % len(sets)]
                ops.quant_ssd(s["x"], x_scale, s["dt"], 0.03, dt_bias, a_log, 0.02, s["B"], bc_scale, s["C"],
                              bc_scale, d_q, 0.01, chunk, 0.0, float("inf"), s["st"], table, s["y"], s["st_out"],
                              tile, rows, staging)

            default = tile == 0 and staging == 0
            out.append(dict(name="quant_ssd", model=model,
                            shape=f"B={bsz} L={seqlen} H={h} P={p} G={g} N={n}",
                            bytes=nbytes, kernel=kern, reference=ref if default else None,
                            anchor=anchors.ssd_prefill(bsz, seqlen, h, p, g, n, chunk, nsets)
                            if default and seqlen > 1 else None,
                            note="int8 state in/out" + ("" if default else f"; variant p_tile={tile} staging={staging}")))
    # ---- decode (batch 1; batch 16 shows the streaming rate once there are enough bytes to move)
    for bsz, compact in ((1, True), (1, False), (16, True)):
        nbytes = (2 * bsz * h * p * n + (4 * 16 * g * n + 4 * h * p if compact else 4 * h * p * n)
                  + bsz * (h * p + h + 2 * g * n) + 2 * bsz * h * p + 4 * h * p + 12 * h + 8 * g)
        nsets = l2_sets(nbytes)
        sets = []
        for _ in range(nsets):
            sets.append(dict(x=_i8(bsz, h, p), dt=_i8(bsz, h), B=_i8(bsz, g, n), C=_i8(bsz, g, n),
                             st=_i8(bsz, h, p, n), y=torch.empty(bsz, h, p, dtype=torch.float16, device="cuda"),
                             sc=table.clone() if compact else expanded.clone()))
        rsets = [dict(x=_h(bsz, h, p), dt=_h(bsz, h), B=_h(bsz, g, n), C=_h(bsz, g, n), st=_h(bsz, h, p, n))
                 for _ in range(nsets)]

        def kern(i, sets=sets, compact=compact, rows=rows):
            s = sets[i % len(sets)]
            ops.quant_ssd_state_update(s["x"], x_scale, s["dt"], 0.03, dt_bias, a_log, 0.02, s["B"], bc_scale,
                                       s["C"], bc_scale, d_q, 0.01, 0.0, float("inf"), s["st"], s["sc"], s["y"],
                                       s["st"], rows if compact else None)

        def ref(i, rsets=rsets):
            s = rsets[i % len(rsets)]
            dt = ssm.mamba2_dt(s["dt"], bias16)
            ssm.ssd_state_update(s["st"], s["x"], dt, a16, s["B"], s["C"], D=d16)

        out.append(dict(name="quant_ssd_state_update", model=model, shape=f"B={bsz} H={h} P={p} G={g} N={n} (decode)",
                        bytes=nbytes, kernel=kern, reference=ref,
                        anchor=anchors.ssd_decode(bsz, h, p, g, n, nsets) if compact else None,
                        state_bytes=bsz * h * p * n,
                        note="int8 state in place; " + ("compact G x 16 x N state scales + [H, P] row index"
                                                         if compact else "expanded [H, P, N] fp32 state scales")))
    return out


def hadamard_cases(ops: Any) -> list[dict]:
    from quamba_edge.quant.hadamard import (
        hadamard_factors,
        hadamard_matrix,
        hadamard_transform,
    )

    out = []
    for model in ("mamba2-2.7b", "mamba2-8b"):
        n = MODELS[model]["d_inner"]
        _, pw = hadamard_factors(n)
        base = hadamard_matrix(n, device="cuda")[::pw, ::pw].contiguous()  # what a deployment keeps
        for seqlen in SEQLENS:
            nbytes = 3 * seqlen * n
            nsets = l2_sets(nbytes)
            sets = [dict(x=_h(1, seqlen, n), y=torch.empty(1, seqlen, n, dtype=torch.int8, device="cuda"))
                    for _ in range(nsets)]

            def kern(i, sets=sets, base=base):
                s = sets[i % len(sets)]
                ops.quant_hadamard(s["x"], base, 0.05, s["y"])

            def ref(i, sets=sets):
                hadamard_transform(sets[i % len(sets)]["x"])

            out.append(dict(name="quant_hadamard", model=model, shape=f"L={seqlen} n={n}", bytes=nbytes,
                            kernel=kern, reference=ref,
                            note="fp16 in, int8 out; reference: the float butterfly transform (hadamard_transform)"))
    return out


def norm_cases(ops: Any) -> list[dict]:
    return [c for model in ("mamba2-2.7b", "mamba2-8b") for c in _norm_model(ops, model)]


def _norm_model(ops: Any, model: str) -> list[dict]:
    from quamba_edge.models import ssm

    out = []
    cfg = MODELS[model]
    d, e, g = cfg["d_model"], cfg["d_inner"], cfg["ngroups"]
    w16_d, w16_e = _h(d), _h(e)
    w32_e = w16_e.float()
    for seqlen in SEQLENS:
        # fused residual add + RMSNorm + int8 (fp16 hidden, fp32 residual stream, unit weight: fused offline)
        nbytes = 11 * seqlen * d
        nsets = l2_sets(nbytes)
        sets = [dict(hid=_h(1, seqlen, d), res=torch.randn(1, seqlen, d, device="cuda"),
                     y=torch.empty(1, seqlen, d, dtype=torch.int8, device="cuda"),
                     ro=torch.empty(1, seqlen, d, device="cuda")) for _ in range(nsets)]
        rsets = [dict(hid=_h(1, seqlen, d), res=_h(1, seqlen, d)) for _ in range(nsets)]

        def kern(i, sets=sets):
            s = sets[i % len(sets)]
            ops.quant_add_rms_norm(s["hid"], s["res"], None, 1e-5, 0.05, s["y"], s["ro"])

        def ref(i, rsets=rsets, w=w16_d):
            s = rsets[i % len(rsets)]
            ssm.rms_norm(s["hid"] + s["res"], w, 1e-5)

        out.append(dict(name="quant_add_rms_norm", model=model, shape=f"L={seqlen} d={d}", bytes=nbytes,
                        kernel=kern, reference=ref,
                        note="fp16 hidden + fp32 residual -> int8 + fp32 residual_out; ref: fp16 add + rms_norm"))
        # gated group RMSNorm
        nbytes = 5 * seqlen * e + 4 * e
        nsets = l2_sets(nbytes)
        sets = [dict(y=_h(1, seqlen, e), z=_i8(1, seqlen, e),
                     o=torch.empty(1, seqlen, e, dtype=torch.float16, device="cuda")) for _ in range(nsets)]
        rsets = [dict(y=_h(1, seqlen, e), z=_h(1, seqlen, e)) for _ in range(nsets)]

        def kern(i, sets=sets, g=g, e=e):
            s = sets[i % len(sets)]
            ops.quant_gated_rms_norm(s["y"], s["z"], 0.04, w32_e, 1e-5, e // g, False, s["o"])

        def ref(i, rsets=rsets, g=g, e=e):
            s = rsets[i % len(rsets)]
            ssm.gated_rms_norm(s["y"], s["z"], w16_e, 1e-5, e // g)

        out.append(dict(name="quant_gated_rms_norm", model=model, shape=f"L={seqlen} E={e} G={g}", bytes=nbytes,
                        kernel=kern, reference=ref, note="fp16 y + int8 z -> fp16"))
        out += _float_norm_rows(ops, model, seqlen, d, e, g, w16_d, w16_e)
    return out


def _float_norm_rows(ops: Any, model: str, seqlen: int, d: int, e: int, g: int, w16_d, w16_e) -> list[dict]:
    """The fp16 model's norms (add_rms_norm / gated_rms_norm, the float twins), same shapes as the int8 rows;
    reference: the torch ops the FP model ran before (kernel_dispatch._float_add_rms_norm, ssm.gated_rms_norm)."""
    from quamba_edge.models import ssm
    from quamba_edge.ops import kernel_dispatch as kd

    out = []
    # fp16 hidden + fp32 residual stream -> fp16 y + fp32 residual_out (the FP Block, residual_in_fp32), fp16 weight
    nbytes = 12 * seqlen * d + 2 * d
    nsets = l2_sets(nbytes)
    sets = [dict(hid=_h(1, seqlen, d), res=torch.randn(1, seqlen, d, device="cuda"),
                 y=torch.empty(1, seqlen, d, dtype=torch.float16, device="cuda"),
                 ro=torch.empty(1, seqlen, d, device="cuda")) for _ in range(nsets)]

    def kern(i, sets=sets, w=w16_d):
        s = sets[i % len(sets)]
        ops.add_rms_norm(s["hid"], s["res"], w, 1e-5, True, s["y"], s["ro"])

    def ref(i, sets=sets, w=w16_d):
        s = sets[i % len(sets)]
        kd._float_add_rms_norm(s["hid"], s["res"], w, 1e-5, True)

    out.append(dict(name="add_rms_norm", model=model, shape=f"L={seqlen} d={d}", bytes=nbytes,
                    kernel=kern, reference=ref,
                    note="fp16 hidden + fp32 residual -> fp16 + fp32 residual_out; ref: the FP Block's torch ops"))
    # gated group RMSNorm, fp16 x and z (the fp16 model's mixer)
    nbytes = 6 * seqlen * e + 2 * e
    nsets = l2_sets(nbytes)
    sets = [dict(y=_h(1, seqlen, e), z=_h(1, seqlen, e),
                 o=torch.empty(1, seqlen, e, dtype=torch.float16, device="cuda")) for _ in range(nsets)]

    def kern(i, sets=sets, g=g, e=e, w=w16_e):
        s = sets[i % len(sets)]
        ops.gated_rms_norm(s["y"], s["z"], w, 1e-5, e // g, False, s["o"])

    def ref(i, sets=sets, g=g, e=e, w=w16_e):
        s = sets[i % len(sets)]
        ssm.gated_rms_norm(s["y"], s["z"], w, 1e-5, e // g)

    out.append(dict(name="gated_rms_norm", model=model, shape=f"L={seqlen} E={e} G={g}", bytes=nbytes,
                    kernel=kern, reference=ref, note="fp16 y + fp16 z -> fp16; ref: ssm.gated_rms_norm"))
    return out


def embedding_cases(ops: Any) -> list[dict]:
    """Decode (one token) at mamba2-8b (vocab 256000, d 4096), W8 and W4: fp32 rows, as the model takes them."""
    from quamba_edge.ops.quant_embedding import quant_embedding_stored

    out = []
    v, d = 256000, MODELS["mamba2-8b"]["d_model"]
    for bits in (8, 4):
        rb = d if bits == 8 else d // 2
        table = torch.randint(0, 256, (v, rb), dtype=torch.uint8, device="cuda")
        table = table.view(torch.int8) if bits == 8 else table
        scale = (torch.rand(v, device="cuda") * 0.02).to(torch.float16)
        nbytes = 8 + rb + 2 + 4 * d
        # random ids in a table far larger than L2: each set reads its row from DRAM
        sets = [dict(ids=torch.randint(0, v, (1, 1), device="cuda"), o=torch.empty(1, 1, d, device="cuda"))
                for _ in range(l2_sets(nbytes))]

        def kern(i, sets=sets, table=table, scale=scale, bits=bits):
            s = sets[i % len(sets)]
            ops.quant_embedding(s["ids"], table, scale, bits, s["o"])

        def ref(i, sets=sets, table=table, scale=scale, bits=bits):
            quant_embedding_stored(sets[i % len(sets)]["ids"], table, scale, bits, d)

        out.append(dict(name="quant_embedding", model="mamba2-8b", shape=f"L=1 V={v} d={d} W{bits}", bytes=nbytes,
                        kernel=kern, reference=ref,
                        note="fp32 out; reference: the torch gather + (unpack +) multiply of ops.quant_embedding"))
    return out


@contextlib.contextmanager
def _ssd_kernel_env(chunked: bool):
    """QUAMBA_SSD_CHUNKED=1 (the chunked tensor-core quant_ssd, also the default) or 0 (the sequential kernel)
    around one call: the C entry point reads it on every call, also while a CUDA graph is captured."""
    old = os.environ.get("QUAMBA_SSD_CHUNKED")
    os.environ["QUAMBA_SSD_CHUNKED"] = "1" if chunked else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("QUAMBA_SSD_CHUNKED", None)
        else:
            os.environ["QUAMBA_SSD_CHUNKED"] = old


CHUNKED_SEQLENS = (1024, 2048, 8192)


def ssd_chunked_cases(ops: Any) -> list[dict]:
    """quant_ssd prefill, chunked tensor-core kernel (QUAMBA_SSD_CHUNKED=1) against the sequential kernel at the
    same shapes: mamba2-2.7b / mamba2-8b, L = 1024 / 2048 / 8192, batch 1 / 4, int8 state in / out with the
    compact G x 4 x 4 x N scales. The row's reference is the sequential kernel, so its speedup column is
    sequential / chunked (reference_kind says so); the anchor column is mamba_ssm's fp16 Triton SSD (the
    issue's target: >= 1.2x faster than it) when it is importable."""
    out = []
    for model in ("mamba2-2.7b", "mamba2-8b"):
        cfg = MODELS[model]
        h, p, g, n, chunk = cfg["nheads"], cfg["headdim"], cfg["ngroups"], cfg["d_state"], cfg["chunk"]
        x_scale = torch.rand(h, p, device="cuda") * 0.02 + 0.005
        dt_bias = torch.rand(h, device="cuda") * 4 - 4
        a_log, d_q = _i8(h), _i8(h)
        bc_scale = torch.rand(g, device="cuda") * 0.03 + 0.01
        table = torch.rand(16 * g, n, device="cuda") * 0.1 + 0.02
        rows = _compact_rows(h, p, g)
        for seqlen in CHUNKED_SEQLENS:
            for bsz in (1, 4):
                nbytes = (bsz * seqlen * (h * p + h + 2 * g * n) + 2 * bsz * seqlen * h * p + 2 * bsz * h * p * n
                          + 4 * 16 * g * n + 4 * h * p + 4 * h * p + 12 * h + 8 * g)
                nsets = l2_sets(nbytes)
                sets = [dict(x=_i8(bsz, seqlen, h, p), dt=_i8(bsz, seqlen, h), B=_i8(bsz, seqlen, g, n),
                             C=_i8(bsz, seqlen, g, n), st=_i8(bsz, h, p, n),
                             y=torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda"),
                             st_out=torch.empty(bsz, h, p, n, dtype=torch.int8, device="cuda"))
                        for _ in range(nsets)]

                # every per-model tensor bound now: a free name would be the last model's by call time
                def call(i, chunked, sets=sets, chunk=chunk, w=(x_scale, dt_bias, a_log, bc_scale, d_q, table, rows)):
                    s = sets[i % len(sets)]
                    x_scale, dt_bias, a_log, bc_scale, d_q, table, rows = w
                    with _ssd_kernel_env(chunked):
                        ops.quant_ssd(s["x"], x_scale, s["dt"], 0.03, dt_bias, a_log, 0.02, s["B"], bc_scale, s["C"],
                                      bc_scale, d_q, 0.01, chunk, 0.0, float("inf"), s["st"], table, s["y"],
                                      s["st_out"], 0, rows)

                # useful matmul work per token and head: C B^T over the causal half of a 64-token chunk
                # (32 N), Y_diag (32 P), Y_off and the state update (2 N P); not counted: the hi / lo second
                # fp16 mmas and C B^T recomputed per 32-channel tile
                flops = 2 * bsz * seqlen * h * (64 * n // 2 + 64 * p // 2 + 2 * n * p)
                out.append(dict(name="quant_ssd_chunked", model=model,
                                shape=f"B={bsz} L={seqlen} H={h} P={p} G={g} N={n}", bytes=nbytes,
                                kernel=lambda i, call=call: call(i, True),
                                reference=lambda i, call=call: call(i, False),
                                reference_kind="the sequential quant_ssd kernel (speedup = sequential / chunked)",
                                anchor=anchors.ssd_prefill(bsz, seqlen, h, p, g, n, chunk, nsets),
                                flops=flops,
                                note="QUAMBA_SSD_CHUNKED=1; int8 state in/out, compact G x 16 x N state scales"))
    return out


def float_ssd_cases(ops: Any) -> list[dict]:
    """The float SSD of the fp16 baseline / W4A16 models (``ops.ssd``, ``ops.ssd_state_update``): prefill at the
    quant_ssd_chunked shapes (mamba2-2.7b / 8b, L = 1024 / 2048 / 8192, batch 1 / 4; fp16 x / B / C, fp32 dt
    as ``ssm.mamba2_dt`` gives it, fp32 state in / out) with the same anchor (mamba_ssm's fp16 Triton
    mamba_chunk_scan_combined, which also does dt's bias + softplus), and decode steps (batch 1 / 16, fp32 state
    in place; anchor: mamba_ssm's selective_state_update on an fp16 state). Reference: ``ssm.ssd_chunked`` /
    ``ssm.ssd_state_update`` on fp16 tensors."""
    from quamba_edge.models import ssm

    out = []
    for model in ("mamba2-2.7b", "mamba2-8b"):
        cfg = MODELS[model]
        h, p, g, n, chunk = cfg["nheads"], cfg["headdim"], cfg["ngroups"], cfg["d_state"], cfg["chunk"]
        a32, d32 = -torch.rand(h, device="cuda") * 4, torch.randn(h, device="cuda")
        a16, d16 = a32.half(), d32.half()
        for seqlen in CHUNKED_SEQLENS:
            for bsz in (1, 4):
                nbytes = (2 * bsz * seqlen * (2 * h * p + 2 * g * n) + 4 * bsz * seqlen * h + 2 * 4 * bsz * h * p * n
                          + 8 * h)
                nsets = l2_sets(nbytes)
                sets = [dict(x=_h(bsz, seqlen, h, p), dt=torch.rand(bsz, seqlen, h, device="cuda") * 0.1,
                             B=_h(bsz, seqlen, g, n), C=_h(bsz, seqlen, g, n),
                             st=torch.randn(bsz, h, p, n, device="cuda"),
                             y=torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda"),
                             st_out=torch.empty(bsz, h, p, n, device="cuda")) for _ in range(nsets)]

                def kern(i, sets=sets, chunk=chunk, a32=a32, d32=d32):
                    s = sets[i % len(sets)]
                    ops.ssd(s["x"], s["dt"], a32, s["B"], s["C"], chunk, d32, s["st"], s["y"], s["st_out"])

                rsets = [dict(x=s["x"], dt=s["dt"].half(), B=s["B"], C=s["C"], st=s["st"].half()) for s in sets]

                def ref(i, rsets=rsets, chunk=chunk, a16=a16, d16=d16):
                    s = rsets[i % len(rsets)]
                    ssm.ssd_chunked(s["x"], s["dt"], a16, s["B"], s["C"], chunk, D=d16, initial_state=s["st"])

                flops = 2 * bsz * seqlen * h * (chunk * n // 2 + chunk * p // 2 + 2 * n * p)
                out.append(dict(name="ssd", model=model, shape=f"B={bsz} L={seqlen} H={h} P={p} G={g} N={n}",
                                bytes=nbytes, kernel=kern, reference=ref,
                                anchor=anchors.ssd_prefill(bsz, seqlen, h, p, g, n, chunk, nsets), flops=flops,
                                note="fp16 x / B / C / y, fp32 dt (softplus'ed) and state in/out"))
        for bsz in (1, 16):
            nbytes = 2 * 4 * bsz * h * p * n + 2 * 2 * bsz * h * p + 4 * bsz * h + 2 * 2 * bsz * g * n + 8 * h
            nsets = l2_sets(nbytes)
            sets = [dict(x=_h(bsz, h, p), dt=torch.rand(bsz, h, device="cuda") * 0.1, B=_h(bsz, g, n),
                         C=_h(bsz, g, n), st=torch.randn(bsz, h, p, n, device="cuda"),
                         y=torch.empty(bsz, h, p, dtype=torch.float16, device="cuda")) for _ in range(nsets)]
            rsets = [dict(x=_h(bsz, h, p), dt=_h(bsz, h), B=_h(bsz, g, n), C=_h(bsz, g, n), st=_h(bsz, h, p, n))
                     for _ in range(nsets)]

            def dkern(i, sets=sets, a32=a32, d32=d32):
                s = sets[i % len(sets)]
                ops.ssd_state_update(s["st"], s["x"], s["dt"], a32, s["B"], s["C"], d32, s["y"], s["st"])

            def dref(i, rsets=rsets, a16=a16, d16=d16):
                s = rsets[i % len(rsets)]
                ssm.ssd_state_update(s["st"], s["x"], s["dt"], a16, s["B"], s["C"], D=d16)

            out.append(dict(name="ssd_state_update", model=model, shape=f"B={bsz} H={h} P={p} G={g} N={n} (decode)",
                            bytes=nbytes, kernel=dkern, reference=dref,
                            anchor=anchors.ssd_decode(bsz, h, p, g, n, nsets), state_bytes=4 * bsz * h * p * n,
                            note="fp16 in/out, fp32 state in place (the anchor's state is fp16)"))
    return out


def cases(ops: Any) -> list[dict]:
    """Every Mamba2 case; QUAMBA_BENCH_SSD_CHUNKED_ONLY=1: only the chunked-vs-sequential quant_ssd rows
    (plugins/ssd_check.sh)."""
    if os.environ.get("QUAMBA_BENCH_SSD_CHUNKED_ONLY") == "1":
        return ssd_chunked_cases(ops)
    return (ssd_cases(ops) + ssd_chunked_cases(ops) + float_ssd_cases(ops) + hadamard_cases(ops) + norm_cases(ops)
            + embedding_cases(ops))
