#!/usr/bin/env python
"""Kernel benchmark (GPU): each CUDA kernel against the fp16 torch reference and against its byte floor.

    python benchmarks/kernels.py [--out benchmarks/results/kernels.json] [--only SUBSTR ...] [--quick]

For every case: the kernel's time, the time of an fp16 reference (``reference_kind``: our FP torch model code,
``quamba_edge/models/ssm.py``, run with fp16 tensors, for the SSM kernels; cuBLAS ``F.linear`` for the
linears), the speedup, and the byte floor = the fewest bytes the kernel must move (every input read once,
every output written once) over the best bandwidth a KERNEL reaches on the spot: the larger of a 4 GiB
read-only reduction (fp16 ``sum``) and a 4 GiB elementwise read + write (in-place ``bitwise_not_``). A
``copy_`` captured in a CUDA graph becomes a memcpy node on the copy engines (2.77 TB/s on the H200 against
4.2 TB/s for a kernel), so it is recorded (``graph_memcpy_GBps``) but never used as the floor. Writes the
JSON (device, torch/CUDA versions, commit, date, command, bandwidths, one row per case) and a plot beside it
(``.png``).

Timing: CUDA events around CUDA-graph replays of ``reps`` back-to-back calls (so launch gaps of the Python
dispatcher stay out; falls back to an eager loop when a callable cannot be captured), median of several
replays, after warm-up. Decode-size inputs fit in L2, so decode cases rotate among enough input sets to
exceed twice the L2 size (a decode step in a real model finds its state in DRAM, not in L2).
``launch_floor_us`` is the same measurement of a one-element kernel: no kernel can take less.

Case interface (what ``benchmarks/kernels_mamba2.py`` provides through ``cases(ops) -> list``; ``ops`` is
``torch.ops.quamba_kernels``). Each case is a dict (or an object with these attributes):

    name       str   the op, e.g. "quant_ssd"
    model      str   "mamba-2.8b" | "mamba2-2.7b" | "mamba2-8b" (free text)
    shape      str   short shape description, e.g. "B=1 L=1024 H=80 P=64 N=128"
    bytes      int   the kernel's minimal DRAM traffic in bytes (inputs read once + outputs written once)
    kernel     callable(i: int) -> None   one kernel call; ``i`` counts calls, use it to rotate input
               sets (``i % n``) when one set fits in L2 (``l2_sets(bytes)`` says how many), else ignore it
    reference  callable(i: int) -> None, or None   the fp16 torch reference of the same computation
    state_bytes int (optional, decode cases)   size of the state the step reads and writes in place. Then
               ``state_pass_ms`` is one in-place torch elementwise pass over that many bytes (rotated over
               > 2x L2 like the kernels' inputs): it touches the state once and does nothing else, so its
               time is what reaching those bytes costs on this GPU, DRAM latency and launch included. At
               batch 1 that latency, not bandwidth, bounds a decode step (``ratio_to_state_pass``).
    note       str (optional)
    flops      int (optional)   arithmetic operations of one call (2 M N K for a GEMM): the row gets
               ``tops`` (tera-operations per second) too
    anchor     (callable(i), kind) or None (optional)   what users run today for the same work (mamba_ssm's
               fp16 Triton kernels, ``benchmarks/anchors.py``, when importable): the row gets ``anchor_ms``,
               ``anchor_kind`` and ``speedup_vs_anchor`` (anchor time / ours)

Callables that take no argument are accepted too. Build all tensors when ``cases`` is called (not inside
the callables); the callables must only launch work on the current stream (no host synchronisation) so
they can be captured in a CUDA graph.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import anchors  # noqa: E402
from provenance import git_info  # noqa: E402

if __name__ == "__main__":  # kernels_mamba2 does `from kernels import ...`: give it this module, not a copy
    sys.modules.setdefault("kernels", sys.modules[__name__])

import torch  # noqa: E402

from quamba_edge.bench.timing import kernel_bandwidths, launch_floor_ms, time_ms  # noqa: E402

MODELS = {
    # name: d_model, d_inner, d_state, d_conv (+ Mamba2: headdim, nheads, ngroups, chunk)
    "mamba-2.8b": dict(d_model=2560, d_inner=5120, d_state=16, d_conv=4),
    "mamba2-2.7b": dict(d_model=2560, d_inner=5120, d_state=128, d_conv=4, headdim=64, nheads=80, ngroups=1,
                        chunk=256),
    "mamba2-8b": dict(d_model=4096, d_inner=8192, d_state=128, d_conv=4, headdim=64, nheads=128, ngroups=8,
                      chunk=128),
}
PREFILL_LENS = (1024, 2048)

_L2_BYTES: int | None = None


def l2_sets(nbytes: int) -> int:
    """How many input sets of ``nbytes`` to rotate so that one pass over them exceeds twice the L2."""
    l2 = _L2_BYTES or 50 * 2**20
    # up to 512 sets: a CUDA graph of up to 500 calls (time_ms) then still sweeps > 2x L2 for a 200 KB step
    return max(1, min(512, -(-2 * l2 // max(1, nbytes))))


def _get(case: Any, key: str, default: Any = None) -> Any:
    if isinstance(case, dict):
        return case.get(key, default)
    return getattr(case, key, default)


def copy_bandwidth(nbytes: int = 2**30) -> float:
    """A graph-captured device-to-device ``copy_`` in bytes/s (read + written). Inside a CUDA graph it runs as a
    memcpy node on the copy engines, well below what a kernel reaches: recorded, never used as a floor."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms, _ = time_ms(lambda i: dst.copy_(src), target_ms=50.0)
    del src, dst
    return 2 * nbytes / (ms * 1e-3)


def state_pass_ms(nbytes: int) -> float:
    """One in-place elementwise pass over ``nbytes`` (read + write), rotated over > 2x L2."""
    sets = [torch.zeros(nbytes, dtype=torch.uint8, device="cuda") for _ in range(l2_sets(nbytes))]
    ms, _ = time_ms(lambda i: sets[i % len(sets)].bitwise_not_())
    del sets
    return ms


# ---------------------------------------------------------------------------------------------------
# Mamba1 cases (quant_causal_conv1d and the float causal_conv1d also at the Mamba2 shapes: one kernel serves both)
# ---------------------------------------------------------------------------------------------------

def _i8(*shape: int) -> torch.Tensor:
    return torch.randint(-128, 128, shape, dtype=torch.int8, device="cuda")


def conv_cases(ops: Any) -> list[dict]:
    from quamba_edge.models import ssm

    out = []
    for model, cfg in MODELS.items():
        c = cfg["d_inner"] + 2 * cfg.get("ngroups", 0) * cfg["d_state"] if "headdim" in cfg else cfg["d_inner"]
        k = cfg["d_conv"]
        for seqlen in (1,) + PREFILL_LENS:
            bsz = 1
            nbytes = 2 * bsz * seqlen * c + 2 * bsz * c * (k - 1) + c * k + c + 4 * 4 * c
            nsets = l2_sets(nbytes)
            sets = []
            for _ in range(nsets):
                sets.append(dict(x=_i8(bsz, seqlen, c), st=_i8(bsz, c, k - 1), y=torch.empty(bsz, seqlen, c, dtype=torch.int8, device="cuda"),
                                 nst=torch.empty(bsz, c, k - 1, dtype=torch.int8, device="cuda")))
            w, b = _i8(c, k), _i8(c)
            xs, ws, bs, os_ = (torch.rand(c, device="cuda") * 0.01 + 0.01 for _ in range(4))

            def kern(i, sets=sets, w=w, b=b, xs=xs, ws=ws, bs=bs, os_=os_):
                s = sets[i % len(sets)]
                ops.quant_causal_conv1d(s["x"], xs, w, ws, b, bs, os_, s["st"], True, s["y"], s["nst"])

            rsets = [dict(x=torch.randn(bsz, seqlen, c, device="cuda", dtype=torch.float16),
                          st=torch.randn(bsz, c, k - 1, device="cuda", dtype=torch.float16)) for _ in range(nsets)]
            wf, bf = torch.randn(c, k, device="cuda", dtype=torch.float16), torch.randn(c, device="cuda", dtype=torch.float16)

            def ref(i, rsets=rsets, wf=wf, bf=bf):
                s = rsets[i % len(rsets)]
                ssm.causal_conv1d(s["x"], wf, bf, conv_state=s["st"], activation="silu")

            out.append(dict(name="quant_causal_conv1d", model=model,
                            shape=f"B={bsz} L={seqlen} C={c} K={k}" + (" (decode)" if seqlen == 1 else ""),
                            bytes=nbytes, kernel=kern, reference=ref))
            # the float conv (fp16 baseline / W4A16 models) on the reference's own fp16 inputs: fp16 x, weight,
            # bias, state in; fp16 y and new state out
            fbytes = 2 * (2 * bsz * seqlen * c + 2 * bsz * c * (k - 1) + c * k + c)
            fsets = [dict(s, y=torch.empty(bsz, seqlen, c, dtype=torch.float16, device="cuda"),
                          nst=torch.empty(bsz, c, k - 1, dtype=torch.float16, device="cuda")) for s in rsets]

            def fkern(i, fsets=fsets, wf=wf, bf=bf):
                s = fsets[i % len(fsets)]
                ops.causal_conv1d(s["x"], wf, bf, s["st"], True, s["y"], s["nst"])

            out.append(dict(name="causal_conv1d", model=model,
                            shape=f"B={bsz} L={seqlen} C={c} K={k}" + (" (decode)" if seqlen == 1 else ""),
                            bytes=fbytes, kernel=fkern, reference=ref, note="fp16 in/out, fp16 state"))
    return out


def scan_cases(ops: Any, decode_batches: tuple[int, ...] = (1, 64)) -> list[dict]:
    from quamba_edge.models import ssm

    cfg = MODELS["mamba-2.8b"]
    e, n = cfg["d_inner"], cfg["d_state"]
    out = []
    a_log = _i8(e, n).abs()
    d_q, bias_q = _i8(e), _i8(e)
    a_f = -torch.rand(e, n, device="cuda") * 8
    d_f, bias_f = torch.randn(e, device="cuda", dtype=torch.float16), torch.randn(e, device="cuda", dtype=torch.float16)
    scales = dict(u_scale=0.02, dt_scale=0.012, A_log_scale=0.02, B_scale=0.018, C_scale=0.016, D_scale=0.01,
                  z_scale=0.03, dt_bias_scale=0.02)
    # prefill
    for seqlen in PREFILL_LENS:
        bsz = 1
        u, dt, z = _i8(bsz, seqlen, e), _i8(bsz, seqlen, e), _i8(bsz, seqlen, e)
        bm, cm = _i8(bsz, seqlen, n), _i8(bsz, seqlen, n)
        st_in, st_out = _i8(bsz, e, n), torch.empty(bsz, e, n, dtype=torch.int8, device="cuda")
        y = torch.empty(bsz, seqlen, e, dtype=torch.float16, device="cuda")
        nbytes = 3 * bsz * seqlen * e + 2 * bsz * seqlen * n + 2 * bsz * seqlen * e + 2 * bsz * e * n + e * n + 2 * e

        def kern(i, u=u, dt=dt, z=z, bm=bm, cm=cm, st_in=st_in, st_out=st_out, y=y):
            s = scales
            ops.quant_selective_scan(u, s["u_scale"], dt, s["dt_scale"], a_log, s["A_log_scale"], bm, s["B_scale"],
                                     cm, s["C_scale"], d_q, s["D_scale"], z, s["z_scale"], bias_q,
                                     s["dt_bias_scale"], st_in, 0.02, y, st_out)

        h = lambda *sh: torch.randn(*sh, device="cuda", dtype=torch.float16)  # noqa: E731
        uf, dtf, zf, bf, cf, h0 = h(bsz, seqlen, e), h(bsz, seqlen, e), h(bsz, seqlen, e), h(bsz, seqlen, n), \
            h(bsz, seqlen, n), h(bsz, e, n)

        def ref(i, uf=uf, dtf=dtf, zf=zf, bf=bf, cf=cf, h0=h0):
            ssm.selective_scan(uf, dtf, a_f, bf, cf, D=d_f, z=zf, delta_bias=bias_f, delta_softplus=True,
                               initial_state=h0)

        out.append(dict(name="quant_selective_scan", model="mamba-2.8b",
                        shape=f"B={bsz} L={seqlen} E={e} N={n}", bytes=nbytes, kernel=kern, reference=ref,
                        note="int8 state in/out"))
        # the float scan (fp16 baseline / W4A16 models) on the same fp16 inputs as the reference (no Triton anchor:
        # mamba_ssm's Mamba1 prefill is a CUDA extension, not in the anchor package)
        h0f, yf = h0.float(), torch.empty_like(y)
        fst = torch.empty(bsz, e, n, device="cuda")
        fbytes = 2 * 3 * bsz * seqlen * e + 2 * 2 * bsz * seqlen * n + 2 * bsz * seqlen * e + 2 * 4 * bsz * e * n \
            + 4 * e * n + 8 * e

        def fkern(i, uf=uf, dtf=dtf, zf=zf, bf=bf, cf=cf, h0f=h0f, yf=yf, fst=fst, d32=d_f.float(),
                  bias32=bias_f.float()):
            ops.selective_scan(uf, dtf, a_f, bf, cf, d32, zf, bias32, True, h0f, yf, fst)

        out.append(dict(name="selective_scan", model="mamba-2.8b", shape=f"B={bsz} L={seqlen} E={e} N={n}",
                        bytes=fbytes, kernel=fkern, reference=ref, note="fp16 in/out, fp32 state in/out"))
    # decode
    for bsz in decode_batches:
        nbytes = 2 * bsz * e * n + e * n + 3 * bsz * e + 2 * bsz * n + 2 * bsz * e + 2 * e
        nsets = l2_sets(nbytes)
        sets = [dict(u=_i8(bsz, e), dt=_i8(bsz, e), z=_i8(bsz, e), b=_i8(bsz, n), c=_i8(bsz, n), st=_i8(bsz, e, n),
                     y=torch.empty(bsz, e, dtype=torch.float16, device="cuda")) for _ in range(nsets)]

        def kern(i, sets=sets):
            s, sc = sets[i % len(sets)], scales
            ops.quant_selective_state_update(s["u"], sc["u_scale"], s["dt"], sc["dt_scale"], a_log, sc["A_log_scale"],
                                             s["b"], sc["B_scale"], s["c"], sc["C_scale"], d_q, sc["D_scale"], s["z"],
                                             sc["z_scale"], bias_q, sc["dt_bias_scale"], s["st"], 0.02, s["y"], s["st"])

        h = lambda *sh: torch.randn(*sh, device="cuda", dtype=torch.float16)  # noqa: E731
        rsets = [dict(u=h(bsz, e), dt=h(bsz, e), z=h(bsz, e), b=h(bsz, n), c=h(bsz, n), st=h(bsz, e, n))
                 for _ in range(nsets)]

        def ref(i, rsets=rsets):
            s = rsets[i % len(rsets)]
            ssm.selective_state_update(s["st"], s["u"], s["dt"], a_f, s["b"], s["c"], D=d_f, z=s["z"], dt_bias=bias_f,
                                       dt_softplus=True)

        out.append(dict(name="quant_selective_state_update", model="mamba-2.8b",
                        shape=f"B={bsz} E={e} N={n} (decode)", bytes=nbytes, kernel=kern, reference=ref,
                        anchor=anchors.scan_decode(bsz, e, n, nsets),
                        state_bytes=bsz * e * n, note="int8 state updated in place"))
    # float decode (fp16 baseline / W4A16 models): selective_state_update, fp16 activations, fp32 state in place
    for bsz in decode_batches:
        nbytes = 2 * 4 * bsz * e * n + 4 * e * n + 2 * 3 * bsz * e + 2 * 2 * bsz * n + 2 * bsz * e + 8 * e
        nsets = l2_sets(nbytes)
        h = lambda *sh: torch.randn(*sh, device="cuda", dtype=torch.float16)  # noqa: E731
        d32, bias32 = d_f.float(), bias_f.float()
        fsets = [dict(u=h(bsz, e), dt=h(bsz, e), z=h(bsz, e), b=h(bsz, n), c=h(bsz, n),
                      st=torch.randn(bsz, e, n, device="cuda"), y=torch.empty(bsz, e, dtype=torch.float16, device="cuda"))
                 for _ in range(nsets)]
        rsets = [dict(u=h(bsz, e), dt=h(bsz, e), z=h(bsz, e), b=h(bsz, n), c=h(bsz, n), st=h(bsz, e, n))
                 for _ in range(nsets)]

        def fkern(i, sets=fsets, d32=d32, bias32=bias32):
            s = sets[i % len(sets)]
            ops.selective_state_update(s["st"], s["u"], s["dt"], a_f, s["b"], s["c"], d32, s["z"], bias32, True,
                                       s["y"], s["st"])

        def fref(i, rsets=rsets):
            s = rsets[i % len(rsets)]
            ssm.selective_state_update(s["st"], s["u"], s["dt"], a_f, s["b"], s["c"], D=d_f, z=s["z"], dt_bias=bias_f,
                                       dt_softplus=True)

        out.append(dict(name="selective_state_update", model="mamba-2.8b",
                        shape=f"B={bsz} E={e} N={n} (decode)", bytes=nbytes, kernel=fkern, reference=fref,
                        anchor=anchors.scan_decode(bsz, e, n, nsets),
                        state_bytes=4 * bsz * e * n, note="fp16 in/out, fp32 state updated in place "
                                                          "(the anchor's state is fp16)"))
    return out


# op names of each case builder, so that --only builds (and allocates) only what it keeps
_GROUPS = {
    "conv": ("quant_causal_conv1d", "causal_conv1d"),
    "scan": ("quant_selective_scan", "quant_selective_state_update", "selective_scan", "selective_state_update"),
    "mamba2": ("quant_ssd", "quant_ssd_state_update", "ssd", "ssd_state_update", "quant_hadamard", "quant_add_rms_norm", "quant_gated_rms_norm",
               "quant_embedding"),
    "linear": ("w8a8_linear", "w4a8_linear", "w4a16_linear", "w8a8_linear_intmm", "w4a8_linear_intmm",
               "w4a16_linear_cublas", "hadamard_out_proj"),
}


def all_cases(ops: Any, only: list[str] | None = None) -> list:
    def wanted(group: str) -> bool:
        return not only or any(o in name for o in only for name in _GROUPS[group])

    cases = (conv_cases(ops) if wanted("conv") else []) + (scan_cases(ops) if wanted("scan") else [])
    if wanted("mamba2"):
        import kernels_mamba2  # noqa: WPS433

        cases += list(kernels_mamba2.cases(ops))
    if wanted("linear"):
        import kernels_linear  # noqa: WPS433

        cases += list(kernels_linear.cases(ops, only))
    return cases


# ---------------------------------------------------------------------------------------------------

def plot(rows: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(r: dict) -> str:
        extra = f" [{r['note']}]" if r.get("note") and "p_tile" in r.get("note", "") else ""
        return f"{r['name']}\n{r['model']} {r['shape']}{extra}"

    labels = [label(r) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(15, 0.42 * len(rows) + 1.8), sharey=True)
    ys = list(range(len(rows)))
    sp = [r["speedup_vs_fp16"] or 0 for r in rows]
    axes[0].barh(ys, sp, color="tab:blue")
    axes[0].axvline(1.0, color="k", lw=0.8)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("speedup vs fp16 torch reference (×, log; no bar = no reference timed)")
    axes[1].barh(ys, [r["ratio_to_floor"] for r in rows], color="moccasin", label="time / byte floor")
    axes[1].barh(ys, [r["ratio_to_floor_with_launch"] for r in rows], height=0.4, color="tab:orange",
                 label="time / max(byte floor, launch floor)")
    axes[1].axvline(1.0, color="k", lw=0.8)
    axes[1].axvline(2.0, color="r", lw=0.8, ls="--")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("kernel time / floor (×, log; dashed = 2×)")
    axes[1].legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(labels, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(f"quamba-edge kernels on {device}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    global _L2_BYTES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kernels.json")
    ap.add_argument("--only", nargs="*", default=None, help="keep cases whose name contains one of these")
    ap.add_argument("--no-reference", action="store_true", help="skip the fp16 reference timings")
    ap.add_argument("--replot", type=Path, default=None, help="only redraw the plot of an existing results JSON")
    args = ap.parse_args(argv)
    if args.replot is not None:
        res = json.loads(args.replot.read_text())
        plot(res["rows"], args.replot.with_suffix(".png"), res["device"])
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from quamba_edge import kernels

    ops = kernels.load()
    props = torch.cuda.get_device_properties(0)
    _L2_BYTES = int(getattr(props, "L2_cache_size", 50 * 2**20))
    started = _dt.datetime.now(_dt.timezone.utc)
    kbw = kernel_bandwidths()
    memcpy_bw = copy_bandwidth()
    bw = max(kbw.values())  # the floor's bandwidth: the best a kernel reaches
    lf = launch_floor_ms()
    print(f"device {props.name}: kernel read {kbw['read'] / 1e9:.0f} GB/s, read+write {kbw['read_write'] / 1e9:.0f} GB/s "
          f"(floor: {bw / 1e9:.0f} GB/s); graph memcpy {memcpy_bw / 1e9:.0f} GB/s (not a floor); "
          f"launch floor {lf * 1e3:.2f} us")
    cases = all_cases(ops, args.only)
    if args.only:
        cases = [c for c in cases if any(s in _get(c, "name") for s in args.only)]
    rows = []
    hdr = f"{'kernel':30s} {'model':12s} {'shape':34s} {'kernel ms':>10s} {'fp16 ms':>9s} {'speedup':>8s} {'floor ms':>9s} {'x floor':>8s} {'x max(floor,launch)':>20s} {'x state pass':>13s} {'anchor ms':>10s} {'x anchor':>8s}"
    print(f"anchor (mamba_ssm fp16 Triton): {'found' if anchors.available() else 'not importable: no anchor columns'}")
    print(hdr)
    for c in cases:
        k_ms, k_how = time_ms(_get(c, "kernel"))
        r_ms = r_how = None
        if _get(c, "reference") is not None and not args.no_reference:
            r_ms, r_how = time_ms(_get(c, "reference"))
        anchor = _get(c, "anchor")
        a_ms = time_ms(anchor[0])[0] if anchor is not None else None
        nbytes = int(_get(c, "bytes"))
        floor = nbytes / bw * 1e3
        sp_ms = state_pass_ms(int(_get(c, "state_bytes"))) if _get(c, "state_bytes") else None
        row = dict(name=_get(c, "name"), model=_get(c, "model"), shape=_get(c, "shape"), bytes=nbytes,
                   kernel_ms=k_ms, kernel_timing=k_how, fp16_ref_ms=r_ms, fp16_ref_timing=r_how,
                   reference_kind=_get(c, "reference_kind", "our fp16 torch model code"),
                   achieved_GBps=nbytes / (k_ms * 1e-3) / 1e9, bandwidth_fraction=nbytes / (k_ms * 1e-3) / bw,
                   speedup_vs_fp16=(r_ms / k_ms) if r_ms else None, floor_ms=floor, ratio_to_floor=k_ms / floor,
                   ratio_to_floor_with_launch=k_ms / max(floor, lf), state_pass_ms=sp_ms,
                   ratio_to_state_pass=(k_ms / sp_ms) if sp_ms else None, note=_get(c, "note", ""))
        if anchor is not None:
            row.update(anchor_ms=a_ms, anchor_kind=anchor[1], speedup_vs_anchor=a_ms / k_ms)
        if _get(c, "flops"):
            row.update(flops=int(_get(c, "flops")), tops=_get(c, "flops") / (k_ms * 1e-3) / 1e12,
                       fp16_ref_tops=(_get(c, "flops") / (r_ms * 1e-3) / 1e12) if r_ms else None)
        rows.append(row)
        sp = f"{row['speedup_vs_fp16']:8.2f}" if r_ms else f"{'-':>8s}"
        rms = f"{r_ms:9.4f}" if r_ms else f"{'-':>9s}"
        xsp = f"{k_ms / sp_ms:13.2f}" if sp_ms else f"{'-':>13s}"
        xan = f"{a_ms:10.4f} {a_ms / k_ms:8.2f}" if a_ms else f"{'-':>10s} {'-':>8s}"
        print(f"{row['name'][:30]:30s} {row['model'][:12]:12s} {row['shape'][:34]:34s} {k_ms:10.4f} {rms} {sp} "
              f"{floor:9.4f} {row['ratio_to_floor']:8.2f} {row['ratio_to_floor_with_launch']:20.2f} {xsp} {xan}", flush=True)
        torch.cuda.empty_cache()
    result = dict(
        benchmark="kernels", device=props.name, sm=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
        l2_bytes=_L2_BYTES, torch=torch.__version__, cuda=torch.version.cuda,
        **git_info(),
        date=started.isoformat(timespec="seconds"),
        command=os.environ.get("QUAMBA_BENCH_COMMAND") or shlex.join(["python", "benchmarks/kernels.py", *sys.argv[1:]]),
        floor_bandwidth_GBps=bw / 1e9, kernel_read_GBps=kbw["read"] / 1e9, kernel_read_write_GBps=kbw["read_write"] / 1e9,
        graph_memcpy_GBps=memcpy_bw / 1e9, launch_floor_us=lf * 1e3,
        method=("CUDA events around CUDA-graph replays of back-to-back calls, median of 7 replays; decode inputs and "
                "weights rotated over > 2x L2; byte floor = minimal bytes / the best kernel bandwidth (max of a 4 GiB "
                "fp16 sum and a 4 GiB in-place bitwise_not, read + write); state pass = an in-place torch elementwise "
                "pass over as many bytes as the step's state, rotated likewise"),
        rows=rows,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"), props.name)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
