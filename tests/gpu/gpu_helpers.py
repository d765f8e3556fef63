"""Helpers shared by the GPU kernel tests (importable as ``gpu_helpers`` from tests/gpu)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Sequence

import torch

# Two sentinels per dtype: an output is "written" when running the kernel into buffers poisoned with
# either sentinel gives the same bytes (a deterministic kernel that skips an element leaves the sentinel).
POISON = {
    torch.int8: (0x55, -0x56),
    torch.float16: (float("nan"), -12345.0),
    torch.float32: (float("nan"), -1.2345e30),
    torch.bfloat16: (float("nan"), -12345.0),
}


def rand_int8(*shape: int, device: str = "cuda", gen: torch.Generator | None = None) -> torch.Tensor:
    return torch.randint(-128, 128, shape, dtype=torch.int8, device=device, generator=gen)


def poisoned(like: Sequence[tuple[tuple[int, ...], torch.dtype]], which: int, device: str = "cuda") -> list[torch.Tensor]:
    return [torch.full(shape, POISON[dt][which], dtype=dt, device=device) for shape, dt in like]


def run_poisoned(fn: Callable[..., None], like: Sequence[tuple[tuple[int, ...], torch.dtype]]) -> list[torch.Tensor]:
    """Call ``fn(*outs)`` twice with outputs poisoned by the two sentinels; assert every element written
    (equal results, no NaN sentinel left in float outputs); return the outputs of the first call."""
    runs = []
    for which in (0, 1):
        outs = poisoned(like, which)
        fn(*outs)
        torch.cuda.synchronize()
        runs.append(outs)
    for i, (a, b) in enumerate(zip(*runs)):
        if a.is_floating_point():
            assert not torch.isnan(a).any(), f"output {i}: {int(torch.isnan(a).sum())} elements not written (NaN sentinel)"
            assert torch.equal(a, b), f"output {i}: {int((a != b).sum())} elements differ between sentinels"
        else:
            assert torch.equal(a, b), f"output {i}: {int((a != b).sum())} elements not written (sentinel left)"
    return runs[0]


def assert_calls_raise(op: str, setup: str) -> None:
    """Every call in ``bad`` (a list of argument tuples that ``setup``, Python source, defines after
    ``import torch`` and ``ops = kernels.load()``) of ``torch.ops.quamba_kernels.<op>`` must raise RuntimeError
    with a message. Runs in a subprocess: a crash in a binding must not take the whole test session down."""
    script = (f"import torch\nfrom quamba_edge import kernels\nops = kernels.load()\ndev = 'cuda'\n{setup}\n"
              f"for i, args in enumerate(bad):\n"
              f"    try:\n"
              f"        ops.{op}(*args)\n"
              f"        torch.cuda.synchronize()\n"
              f"    except RuntimeError as e:\n"
              f"        print(i, 'raised:', str(e).splitlines()[0])\n"
              f"    else:\n"
              f"        raise SystemExit(f'case {{i}} did not raise')\n"
              f"print('ok')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stdout, r.stderr[-3000:])


def assert_int8_close(out: torch.Tensor, ref: torch.Tensor, name: str = "", max_lsb: int = 1) -> None:
    """int8 within ±max_lsb; reports the worst difference and the share of inexact elements."""
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} vs {tuple(ref.shape)}"
    d = (out.to(torch.int32) - ref.to(torch.int32)).abs()
    worst = int(d.max()) if d.numel() else 0
    assert worst <= max_lsb, (f"{name}: max |diff| {worst} LSB > {max_lsb} "
                              f"({int((d > max_lsb).sum())} of {d.numel()} elements)")


def assert_fp16_close(out: torch.Tensor, ref: torch.Tensor, name: str = "", rtol: float = 2e-3,
                      atol: float | None = None) -> None:
    """fp16 output vs an fp32 reference: |out - ref| <= atol + rtol |ref| elementwise, where atol defaults
    to 1e-3 of the reference's largest magnitude (fp16 rounding of values near zero is relative to the
    terms that were summed, not to the tiny sum)."""
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} vs {tuple(ref.shape)}"
    o = out.float()
    r = ref.float()
    assert torch.isfinite(o).all(), f"{name}: non-finite values in the output"
    if atol is None:
        atol = 1e-3 * float(r.abs().max()) if r.numel() else 0.0
    err = (o - r).abs()
    bad = err > atol + rtol * r.abs()
    assert not bad.any(), (f"{name}: {int(bad.sum())} of {r.numel()} elements outside tolerance, "
                           f"max abs err {float(err.max()):.3g} (atol {atol:.3g}, rtol {rtol})")


# ---------------------------------------------------------------------------------------------------
# Mamba1 scan inputs (quant_selective_scan / quant_selective_state_update)
# ---------------------------------------------------------------------------------------------------

def make_scan_inputs(bsz: int, seqlen: int, dim: int, dstate: int, gen: torch.Generator, *, z: bool = True,
                     D: bool = True, dt_bias: bool = True, device: str = "cuda") -> dict:
    """Random int8 inputs of quant_selective_scan with realistic scales (delta ~ softplus of -4..2,
    A = -exp(A_log) with A_log ~ log(1..N), |u|, |B|, |C| up to ~2.5)."""
    def i8(*shape):
        return rand_int8(*shape, device=device, gen=gen)

    ar = torch.arange(1, dstate + 1, dtype=torch.float32, device=device)
    a_log = torch.log(ar).repeat(dim, 1) + 0.2 * torch.rand(dim, dstate, device=device, generator=gen)
    a_scale = float(a_log.abs().max()) / 127
    bias = (torch.rand(dim, device=device, generator=gen) * 4 - 3)  # raw dt bias in [-3, 1]
    bias_scale = float(bias.abs().max()) / 127
    return dict(
        u_q=i8(bsz, seqlen, dim), u_scale=0.02,
        dt_q=i8(bsz, seqlen, dim), dt_scale=0.012,
        A_log_q=torch.clamp(torch.round(a_log / a_scale), -128, 127).to(torch.int8), A_log_scale=a_scale,
        B_q=i8(bsz, seqlen, dstate), B_scale=0.018,
        C_q=i8(bsz, seqlen, dstate), C_scale=0.016,
        D_q=i8(dim) if D else None, D_scale=0.01 if D else None,
        z_q=i8(bsz, seqlen, dim) if z else None, z_scale=0.03 if z else None,
        dt_bias_q=torch.clamp(torch.round(bias / bias_scale), -128, 127).to(torch.int8) if dt_bias else None,
        dt_bias_scale=bias_scale if dt_bias else None,
    )


SCAN_ARGS = ("u_q", "u_scale", "dt_q", "dt_scale", "A_log_q", "A_log_scale", "B_q", "B_scale", "C_q",
             "C_scale", "D_q", "D_scale", "z_q", "z_scale", "dt_bias_q", "dt_bias_scale")


def scan_args(p: dict) -> list:
    """The 16 leading positional arguments shared by the scan ops, in the reference order."""
    return [p[k] for k in SCAN_ARGS]


def check_float_ssm(y, st, y_ref, st_ref, my, ms, name: str = "") -> None:
    """The float SSM kernels' bound (ssd, ssd_state_update, selective_scan, selective_state_update; the
    derivation: tests/gpu/test_kernel_ssd.py): |y - ref| <= 2^-10 |ref| + 2^-9 mag + 2^-24 (fp16's absolute
    precision below 2^-14), the state within 2^-9 mag_state (+ 2^-10 |ref| + 2^-24 when stored as fp16).
    mag / mag_state: the reference run on absolute values (a bound of sum |terms|)."""
    err = (y.float() - y_ref).abs()
    bound = 2**-10 * y_ref.abs() + 2**-9 * my + 2**-24
    assert bool((err <= bound).all()), f"{name} y: worst err/bound {float((err / bound).max()):.3g}"
    serr = (st.float() - st_ref).abs()
    sbound = 2**-9 * ms + (2**-10 * st_ref.abs() + 2**-24 if st.dtype == torch.float16 else 0)
    assert bool((serr <= sbound).all()), f"{name} state: worst err/bound {float((serr / sbound).max()):.3g}"
