"""Kernel dispatch (quamba_edge/ops/kernel_dispatch.py) on CPU: which calls of the quantized model go to
the kernels and which stay on the reference. ``FakeKernels`` (tests/kernel_dispatch_helpers.py) stands in
for the CUDA extension: it checks every call against the binding's schema and computes it with the
reference ops, writing y in fp16 as the kernels do. The real kernels: tests/gpu/test_torch_cuda_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_dispatch_helpers import (
    CASE_IDS,
    CASES,
    VOCAB,
    FakeKernels,
    expected_kernel_ops,
    expected_row_ops,
    tiny_quantized,
)

from quamba_edge import kernels, ops
from quamba_edge._tracing import export_dtype
from quamba_edge.ops import kernel_dispatch as kd


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("QUAMBA_KERNELS", raising=False)
    kd.counts.clear()


@pytest.fixture
def cpu_is_kernel_device(monkeypatch):
    """Route CPU tensors to the (fake) kernels, as CUDA tensors are routed on a GPU."""
    monkeypatch.setattr(kd, "_on_kernel_device", lambda t: True)


@pytest.fixture
def op_checks(monkeypatch):
    """Every dispatched call also runs the reference on the same arguments and compares op by op (sharper
    than the logits, where fp16 y rounding flips int8 activations downstream): int8 outputs and states
    equal, float outputs within the fp16 rounding of the kernels' y. Returns the number of checked calls."""
    checked = {"calls": 0}

    def wrap(op: str):
        dispatching, reference = getattr(kd, op), getattr(kd, _reference_name(op))
        # the float SSMs round fp32 inputs to fp16 (kernel_dispatch's policy): a looser bound, still far below
        # the O(1) errors of a mis-mapped argument
        tol = 2**-7 if op in FLOAT_SSM_OPS + FLOAT_CONV_OPS else 2**-10

        def run(*args, **kwargs):
            ref_args = [a.expand() if isinstance(a, kd.RowScales) else a for a in args]  # as the dispatch does
            # the fp16 hand-offs (fp16_y / fp16_out) are the dispatch's: the reference returns fp32
            handoff = bool(kwargs.get("fp16_y") or kwargs.get("fp16_out"))
            ref_kwargs = {k: v.expand() if isinstance(v, kd.RowScales) else v for k, v in kwargs.items()
                          if k not in ("fp16_y", "fp16_out")}
            got, want = dispatching(*args, **kwargs), reference(*ref_args, **ref_kwargs)
            for i, (g, w) in enumerate(zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (got, want)))):
                if handoff and i == 0 and g.dtype == torch.float16:  # the kernel ran (the reference: fp32)
                    g = g.float()
                assert (g.dtype, g.shape) == (w.dtype, w.shape), op
                if g.is_floating_point():
                    torch.testing.assert_close(g, w, rtol=tol, atol=tol * float(w.abs().max()), msg=op)
                else:
                    assert torch.equal(g, w), op
            checked["calls"] += 1
            return got

        monkeypatch.setattr(kd, op, run)

    for op in kd.KERNEL_OPS:
        wrap(op)
    return checked


FLOAT_SSM_OPS = ("ssd", "ssd_state_update", "selective_scan", "selective_state_update")
FLOAT_NORM_OPS = ("add_rms_norm", "gated_rms_norm")
FLOAT_CONV_OPS = ("causal_conv1d",)  # the float conv (reference ssm.causal_conv1d)


def _reference_name(op: str) -> str:
    """kernel_dispatch's name of an op's reference (the float SSMs' and norms': ``_ref_float_<op>``)."""
    return "_ref_float_" + op if op in FLOAT_SSM_OPS + FLOAT_NORM_OPS + FLOAT_CONV_OPS else \
        "_ref_" + op.removeprefix("quant_")


def _ids(batch: int = 2, length: int = 21, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def _close(got: torch.Tensor, ref: torch.Tensor) -> None:
    """The fake kernels differ from the reference only by fp16 y (and the int8 flips that rounding causes
    downstream): a few 1e-3 of the logit range on these models; a mis-mapped argument gives O(1)."""
    scale = float(ref.abs().max())
    err = (got - ref).float()
    assert float(err.pow(2).mean().sqrt()) <= 0.01 * scale, f"rms err {float(err.pow(2).mean().sqrt()):.3g}"
    assert float(err.abs().max()) <= 0.05 * scale, f"max err {float(err.abs().max()):.3g} (|ref| {scale:.3g})"


def _kernel_counts() -> dict[str, int]:
    return {k: v for k, v in kd.counts.items() if ":" not in k}


def _fallbacks() -> dict[str, int]:
    return {k: v for k, v in kd.counts.items() if k.endswith(":reference")}


def _row_counts() -> dict[str, int]:
    """SSD kernel calls that got the compact state-scale table, by op."""
    return {k.removesuffix(":rows"): v for k, v in kd.counts.items() if k.endswith(":rows")}


def test_fake_covers_every_binding():
    assert set(FakeKernels().schemas) == set(kd.KERNEL_OPS) | set(kd.KERNEL_HELPERS)


def test_off_by_default_and_cpu_tensors_run_the_reference():
    model = tiny_quantized("quamba2", "w8a8", "mamba2")
    ids = _ids()
    ref = model(ids)
    fake = FakeKernels()
    assert torch.equal(model(ids), ref) and not kd.counts  # no use_kernels: nothing is even considered
    with kd.use_kernels(fake):
        assert kd.kernel_ops() is fake
        got = model(ids)
    assert kd.kernel_ops() is None
    assert torch.equal(got, ref) and not fake.calls and not _kernel_counts()
    assert set(_fallbacks()) == {f"{op}:reference" for op in expected_kernel_ops(model, decode=False)}


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_env_override_forces_the_reference(monkeypatch, cpu_is_kernel_device, value):
    monkeypatch.setenv("QUAMBA_KERNELS", value)
    model = tiny_quantized("quamba2", "w8a8", "mamba1")
    ids = _ids()
    ref = model(ids)
    fake = FakeKernels()
    with kd.use_kernels(fake):
        assert kd.kernel_ops() is None
        got = model(ids)
    assert torch.equal(got, ref) and not fake.calls and not kd.counts
    assert kd.load_kernels() == (None, "CUDA kernels: off (QUAMBA_KERNELS=0)")


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_exporting_runs_the_reference(monkeypatch, cpu_is_kernel_device, arch):
    """While exporting, every op must emit its ONNX node (the reference's export path), never a kernel; the
    Mamba2 SSD ops get the expanded [H, P, N] state scales, as before RowScales (the same traced graph)."""
    model = tiny_quantized("quamba2", "w8a8", arch)
    seen = _record_state_scales(monkeypatch)
    fake = FakeKernels()
    ids = _ids(length=5)
    with export_dtype(torch.float32):
        ref = model(ids)
    with kd.use_kernels(fake), export_dtype(torch.float32):
        got = model(ids)
    assert not fake.calls and not kd.counts
    assert got.shape == ref.shape
    if arch == "mamba2":
        want = [m.mixer.state_channel_scales() for m in model.layers] * 2
        assert len(seen) == len(want) and all(type(s) is torch.Tensor and torch.equal(s, w)
                                              for s, w in zip(seen, want))


def _record_state_scales(monkeypatch, where: str = "dispatch") -> list:
    """Record the ``state_scale`` the Mamba2 SSD ops get: at the dispatching ops (what the model passes) or
    at the reference ops (what the dispatch hands on)."""
    seen: list = []
    for op in ("quant_ssd", "quant_ssd_state_update"):
        name = op if where == "dispatch" else "_ref_" + op.removeprefix("quant_")
        fn = getattr(kd, name)

        def rec(*args, _fn=fn, **kwargs):
            seen.append(kwargs["state_scale"] if "state_scale" in kwargs else args[-1])
            return _fn(*args, **kwargs)

        monkeypatch.setattr(kd, name, rec)
    return seen


@pytest.mark.parametrize("bits", ["w8a8", "w4a8"])
def test_row_scales_are_the_compact_table(bits):
    """The mixer's RowScales: the [G*m*n, N] view of ssm_state_scale and an int32 [H, P] row index, built
    once per device and kept out of the state dict; expand() is bit-identical to state_channel_scales()."""
    model = tiny_quantized("quamba2", bits, "mamba2")
    keys = set(model.state_dict())
    for layer in model.layers:
        mx = layer.mixer
        rs = mx.state_row_scales()
        G, m, n, N = mx.ssm_state_scale.shape
        assert rs.table.shape == (G * m * n, N) and rs.table.data_ptr() == mx.ssm_state_scale.data_ptr()
        assert rs.rows.dtype == torch.int32 and rs.rows.shape == (mx.nheads, mx.headdim)
        assert torch.equal(rs.rows.long(), (mx._g_idx * m + mx._i_idx) * n + mx._j_idx)
        want = mx.state_channel_scales()
        got = rs.expand()
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)
        assert mx.state_row_scales().rows is rs.rows  # cached
        assert len(set(rs.rows.unique().tolist())) > 1  # a real grouping, not one row
    assert set(model.state_dict()) == keys and not any("state_rows" in k for k in keys)


def test_reference_path_gets_the_expanded_scales(monkeypatch):
    """Kernels off (CPU): the model passes RowScales, the reference ops get expand(), bit-identical to
    state_channel_scales(), and the logits are the reference's own."""
    model = tiny_quantized("quamba2", "w8a8", "mamba2")
    ids = _ids()
    seen = _record_state_scales(monkeypatch, where="dispatch")
    at_ref = _record_state_scales(monkeypatch, where="reference")
    logits, state = model(ids, return_state=True)
    model.step(torch.tensor([5, 7]), state)
    assert all(isinstance(s, kd.RowScales) for s in seen) and len(seen) == 2 * model.config.n_layer
    want = [m.mixer.state_channel_scales() for m in model.layers] * 2
    assert len(at_ref) == len(want)
    assert all(type(s) is torch.Tensor and s.dtype == w.dtype and torch.equal(s, w) for s, w in zip(at_ref, want))


def _ssd_args(decode: bool, b: int = 2, L: int = 5, h: int = 8, p: int = 16, g: int = 2, n: int = 16):
    """Random int8 SSD operands with a compact [16 G, N] state-scale table and a row index into it."""
    gen = torch.Generator().manual_seed(4)
    i8 = lambda *s: torch.randint(-128, 128, s, dtype=torch.int8, generator=gen)  # noqa: E731
    t = () if decode else (L,)
    table = torch.rand(16 * g, n, generator=gen) * 0.05 + 0.01
    rows = torch.randint(0, 16 * g, (h, p), generator=gen, dtype=torch.int32)
    head = (i8(b, *t, h, p), torch.rand(h, p, generator=gen) * 0.02 + 0.005, i8(b, *t, h), 0.02,
            torch.randn(h, generator=gen), i8(h), 0.02, i8(b, *t, g, n), torch.rand(g, generator=gen) * 0.02 + 0.01,
            i8(b, *t, g, n), torch.rand(g, generator=gen) * 0.02 + 0.01, i8(h), 0.01)
    return head, i8(b, h, p, n), kd.RowScales(table, rows)


def _ssd_call(decode: bool, head, state, scale):
    if decode:
        return kd.quant_ssd_state_update(*head, (0.0, float("inf")), state, scale)
    return kd.quant_ssd(*head, 4, (0.0, float("inf")), state, scale)


@pytest.mark.parametrize("decode", [False, True], ids=["quant_ssd", "quant_ssd_state_update"])
def test_row_scales_reach_the_kernel(cpu_is_kernel_device, decode):
    """A RowScales reaches the kernel as the compact table plus state_scale_row (the fake checks them as the
    binding does and indexes the table as the kernel does): the same result as the expanded scales."""
    op = "quant_ssd_state_update" if decode else "quant_ssd"
    head, state, rs = _ssd_args(decode)
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = _ssd_call(decode, head, state, rs)
        assert fake.row_calls == {op: 1} and kd.counts == {op: 1, op + ":rows": 1}
        want = _ssd_call(decode, head, state, rs.expand())
    assert fake.calls == {op: 2} and fake.row_calls == {op: 1} and kd.counts[op] == 2
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and got[1].dtype == torch.int8
    ref = (kd._ref_ssd_state_update(*head, (0.0, float("inf")), state, rs.expand()) if decode
           else kd._ref_ssd(*head, 4, (0.0, float("inf")), state, rs.expand()))
    torch.testing.assert_close(got[0], ref[0], rtol=2**-10, atol=2**-10 * float(ref[0].abs().max()))
    assert torch.equal(got[1], ref[1])


@pytest.mark.parametrize("decode", [False, True], ids=["quant_ssd", "quant_ssd_state_update"])
@pytest.mark.parametrize("bad", ["rows_int64", "rows_negative", "table_strided", "table_fp64"])
def test_bad_row_scales_fall_back(cpu_is_kernel_device, decode, bad):
    """A RowScales the kernels cannot take (or index safely) runs the reference on expand(), counted as a
    fallback, no crash: rows not int32 or outside [0, R) (-1 is a valid index in python, not in the kernel),
    a table that is not contiguous fp32."""
    op = "quant_ssd_state_update" if decode else "quant_ssd"
    head, state, rs = _ssd_args(decode)
    t, r = rs.table, rs.rows
    bad_rs = kd.RowScales(*{
        "rows_int64": (t, r.long()),
        "rows_negative": (t, torch.where(r == r[0, 0], -1, r).to(torch.int32)),
        "table_strided": (torch.stack([t, t], 1).reshape(-1, t.shape[1])[::2], r),
        "table_fp64": (t.double(), r),
    }[bad])
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = _ssd_call(decode, head, state, bad_rs)
    assert not fake.calls and kd.counts == {op + ":reference": 1}
    want = _ssd_call(decode, head, state, bad_rs.expand())  # kernels off
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_state_tap_is_fed_when_observed(cpu_is_kernel_device):
    """The SSM-state tap gets the dequantized state (state_channel_scales) when hooked, on the kernel path
    too; unobserved, its [B, H, P, N] value is not computed."""
    model = tiny_quantized("quamba2", "w8a8", "mamba2")
    mx = model.layers[0].mixer
    calls = {"n": 0}
    orig = type(mx)._dequant_state

    def counting(self, s):
        calls["n"] += 1
        return orig(self, s)

    ids = _ids(length=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(mx), "_dequant_state", counting)
        with kd.use_kernels(FakeKernels()):
            _, state = model(ids, return_state=True)
        assert calls["n"] == 0
        seen = []
        handle = mx.ssm_state_act.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
        try:
            with kd.use_kernels(FakeKernels()):
                _, state = model(ids, return_state=True)
        finally:
            handle.remove()
        assert calls["n"] == 1 and len(seen) == 1
    want = state.ssm[0].float() * mx.state_channel_scales()
    assert torch.equal(seen[0], want)


@pytest.mark.parametrize("recipe,bits,arch", CASES, ids=CASE_IDS)
def test_fake_kernels_match_the_reference(cpu_is_kernel_device, op_checks, recipe, bits, arch):
    """Argument mapping of every op, every recipe: prefill, then decode steps carrying each path's own
    state; the caller's state is never written; states keep the reference's dtypes and shapes."""
    model = tiny_quantized(recipe, bits, arch)
    ids = _ids()
    fake = FakeKernels()
    ref, ref_state = model(ids, return_state=True)
    with kd.use_kernels(fake):
        got, state = model(ids, return_state=True)
    _close(got, ref)
    assert set(fake.calls) == set(_kernel_counts()) == expected_kernel_ops(model, decode=False)
    assert not _fallbacks()
    assert set(fake.row_calls) == set(_row_counts()) == expected_row_ops(model, decode=False)
    for a, b in zip(ref_state.conv + ref_state.ssm, state.conv + state.ssm):
        assert (a.dtype, a.shape) == (b.dtype, b.shape) and b.is_contiguous()

    fake.calls.clear()
    fake.row_calls.clear()
    kd.counts.clear()
    tok = ref[:, -1].argmax(-1)
    for _ in range(3):
        ref_logits, ref_state = model.step(tok, ref_state)
        with kd.use_kernels(fake):
            logits, new_state = model.step(tok, state)
        _close(logits, ref_logits)
        for a, b in zip(ref_state.conv + ref_state.ssm, new_state.conv + new_state.ssm):
            assert (a.dtype, a.shape) == (b.dtype, b.shape)
        state, tok = new_state, ref_logits.argmax(-1)
    assert set(fake.calls) == expected_kernel_ops(model, decode=True) and not _fallbacks()
    assert set(fake.row_calls) == set(_row_counts()) == expected_row_ops(model, decode=True)
    assert op_checks["calls"] > 0


def test_state_is_not_written(cpu_is_kernel_device):
    model = tiny_quantized("quamba2", "w8a8", "mamba2")
    fake = FakeKernels()
    with kd.use_kernels(fake):
        _, state = model(_ids(), return_state=True)
        snapshot = [t.clone() for t in state.conv + state.ssm]
        model.step(torch.tensor([5, 7]), state)
        model(_ids(length=4), state, return_state=True)
    assert all(torch.equal(a, b) for a, b in zip(snapshot, state.conv + state.ssm))


def test_every_kernel_is_reached():
    from kernel_dispatch_helpers import float_norm_ops

    reached = float_norm_ops("mamba1") | float_norm_ops("mamba2")  # the FP models' norms
    for case in CASES:
        model = tiny_quantized(*case)
        reached |= expected_kernel_ops(model, decode=False) | expected_kernel_ops(model, decode=True)
    assert reached == set(kd.KERNEL_OPS) | {"hadamard"}  # the W4A16 models' float Hadamard: a kernel helper


def test_unsupported_shapes_fall_back(cpu_is_kernel_device):
    """d_state 8 is outside the SSD kernels' set: the SSD runs on the reference, the rest on the kernels."""
    from runtime_helpers import tiny_quant

    model = tiny_quant("mamba2", "w8a8")  # d_state 8
    ids = _ids()
    fake = FakeKernels()
    ref = model(ids)
    with kd.use_kernels(fake):
        got = model(ids)
    _close(got, ref)
    assert "quant_ssd" not in fake.calls and kd.counts["quant_ssd:reference"] == model.config.n_layer
    assert {"quant_causal_conv1d", "quant_gated_rms_norm", "quant_hadamard"} <= set(fake.calls)

    # op level: a Hadamard size the kernel lacks (44 = 11 * 4), a per-element Mamba1 state scale
    fake = FakeKernels()
    x = torch.randn(2, 3, 44)
    with kd.use_kernels(fake):
        y = kd.quant_hadamard(x, torch.eye(44), 0.05)
    assert torch.equal(y, kd._ref_hadamard(x, torch.eye(44), 0.05)) and not fake.calls
    e, n = 8, 4
    i8 = lambda *s: torch.randint(-128, 128, s, dtype=torch.int8)  # noqa: E731
    args = (i8(1, 3, e), 0.02, i8(1, 3, e), 0.01, i8(e, n), 0.02, i8(1, 3, n), 0.02, i8(1, 3, n), 0.02, None, None,
            None, None, None, None, i8(1, e, n), torch.full((e, n), 0.05))
    with kd.use_kernels(fake):
        y, s = kd.quant_selective_scan(*args)
    y_ref, s_ref = kd._ref_selective_scan(*args)
    assert torch.equal(y, y_ref) and torch.equal(s, s_ref) and not fake.calls


def test_load_kernels_says_why(monkeypatch):
    monkeypatch.setattr(kernels, "unavailable_reason", lambda: "nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    assert kd.load_kernels() == (None, "CUDA kernels: off (nvcc not found (set CUDA_HOME or put nvcc on PATH))")

    def broken(verbose: bool = False):
        raise kernels.KernelsUnavailable("building the quamba_edge CUDA kernels failed for sm_90: boom\nnvcc log")

    monkeypatch.setattr(kernels, "unavailable_reason", lambda: None)
    monkeypatch.setattr(kernels, "load", broken)
    ops, note = kd.load_kernels()
    assert ops is None and note == "CUDA kernels: off (building the quamba_edge CUDA kernels failed for sm_90: boom)"
    sentinel = object()
    monkeypatch.setattr(kernels, "load", lambda verbose=False: sentinel)
    assert kd.load_kernels() == (sentinel, "CUDA kernels: on")


def test_cpu_backend_has_no_kernels_and_forward_enters_them(cpu_is_kernel_device):
    """The torch backend sets kernels up on CUDA only; its forward runs inside use_kernels when it has them."""
    from quamba_edge.runtime import EdgeModel

    model = tiny_quantized("quamba2", "w8a8", "mamba1")
    em = EdgeModel.from_torch(model)
    assert em.backend.kernels_note is None and "CUDA kernels" not in em.backend_reason
    ids = _ids(1, 6).numpy()
    ref, _ = em.backend.forward(ids, None)
    fake = FakeKernels()
    em.backend.kernel_ops = fake
    got, _ = em.backend.forward(ids, None)
    assert set(fake.calls) == expected_kernel_ops(model, decode=False)
    np.testing.assert_allclose(got, ref, atol=0.05 * np.abs(ref).max())
    assert kd.kernel_ops() is None  # left again after the forward


def _emb_args(bits: int, d: int, v: int = 37, seed: int = 6):
    """A quantized embedding (the stored table: bits 4 packed) and [2, 5] ids."""
    from quamba_edge.quant.qlinear import QuantEmbedding

    gen = torch.Generator().manual_seed(seed)
    emb = QuantEmbedding.from_float(torch.randn(v, d, generator=gen), bits)
    return emb, torch.randint(0, v, (2, 5), generator=gen)


@pytest.mark.parametrize("bits,d", [(8, 7), (8, 64), (4, 1), (4, 7), (4, 64)])
def test_embedding_dispatch(cpu_is_kernel_device, bits, d):
    """QuantEmbedding goes through the dispatch: fp32 [B, L, d] either way, bit-identical to the reference op
    (the fake computes as the kernel does); int32 ids and a strided table (a slice of a wider one) are taken."""
    emb, ids = _emb_args(bits, d)
    want = kd._ref_embedding(ids, emb.weight, emb.row_scale, bits, d)
    assert want.dtype == torch.float32 and want.shape == (2, 5, d)
    assert torch.equal(want, ops.quant_embedding(ids, emb.table(), emb.row_scale, bits))
    got = emb(ids)  # kernels off
    assert got.dtype == torch.float32 and torch.equal(got, want) and not kd.counts
    fake = FakeKernels()
    wide = torch.cat([emb.weight, emb.weight[:, :3]], 1)[:, :emb.weight.shape[1]]
    assert wide.stride(0) > wide.shape[1]
    with kd.use_kernels(fake):
        got = emb(ids)
        got32 = kd.quant_embedding(ids.int(), emb.weight, emb.row_scale, bits, d)
        got_wide = kd.quant_embedding(ids, wide, emb.row_scale, bits, d)
    assert fake.calls == {"quant_embedding": 3} and kd.counts == {"quant_embedding": 3}
    for g in (got, got32, got_wide):
        assert g.dtype == torch.float32 and torch.equal(g, want)


def test_embedding_unsupported_falls_back(cpu_is_kernel_device):
    """fp32 row scales (the kernel reads fp16), a table of the wrong dtype or width, float ids: the reference,
    counted as a fallback."""
    emb, ids = _emb_args(8, 16)
    fake = FakeKernels()
    cases = [(ids, emb.weight, emb.row_scale.float(), 8, 16),
             (ids, emb.weight, emb.row_scale, 4, 32),  # packed bytes must be uint8 (the reference takes int8)
             (ids, emb.weight[:, :8], emb.row_scale, 8, 16),
             (ids.float(), emb.weight, emb.row_scale, 8, 16)]
    with kd.use_kernels(fake):
        got = [kd.quant_embedding(*c) for c in cases]
    assert not fake.calls and kd.counts == {"quant_embedding:reference": 4}
    for g, c in zip(got, cases):
        assert torch.equal(g, kd._ref_embedding(*c))
    assert got[1].shape == (2, 5, 32)


def test_embedding_fake_zero_rows_for_bad_ids():
    """The fake, as the kernel: ids outside [0, V) give rows of zeros (the reference would raise or wrap)."""
    emb, ids = _emb_args(4, 9)
    ids[0, 1], ids[1, 3] = -1, emb.num_embeddings
    out = torch.full((2, 5, 9), float("nan"))
    FakeKernels().quant_embedding(ids, emb.weight, emb.row_scale, 4, out)
    valid = (ids >= 0) & (ids < emb.num_embeddings)
    assert torch.equal(out[~valid], torch.zeros(2, 9))
    assert torch.equal(out[valid], kd._ref_embedding(ids[valid], emb.weight, emb.row_scale, 4, 9))


@pytest.mark.parametrize("bits,arch", [("w8a8", "mamba2"), ("w4a8", "mamba2"), ("w8a8", "mamba1"),
                                       ("w4a8", "mamba1")])
def test_fp16_handoffs_change_no_value(cpu_is_kernel_device, monkeypatch, bits, arch):
    """A8 blocks with the out_proj Hadamard hand fp16 kernel outputs on as they are (no fp32 copy kernels):
    Mamba2 the SSD's y to the gated norm and the gated norm's output to the Hadamard, Mamba1 the scan's y to the
    Hadamard. Logits and states equal those with the fp32 copies, prefill and decode; the Hadamard sees fp16."""
    model = tiny_quantized("quamba2", bits, arch)
    assert model.layers[0].mixer.hadamard
    ids = _ids(length=40)
    seen: list[torch.dtype] = []
    hadamard = kd.quant_hadamard
    monkeypatch.setattr(kd, "quant_hadamard", lambda x, *a, **k: (seen.append(x.dtype), hadamard(x, *a, **k))[1])
    with kd.use_kernels(FakeKernels()):
        got, state = model(ids, return_state=True)
        step, _ = model.step(got[:, -1].argmax(-1), state)
    assert seen and set(seen) == {torch.float16}

    def without_handoff(f):  # the same call with the fp32 copy the hand-off saves
        return lambda *a, **k: f(*a, **{n: (False if n in ("fp16_y", "fp16_out") else v) for n, v in k.items()})

    for name in ("quant_ssd", "quant_ssd_state_update", "quant_gated_rms_norm", "quant_selective_scan",
                 "quant_selective_state_update"):
        monkeypatch.setattr(kd, name, without_handoff(getattr(kd, name)))
    seen.clear()
    with kd.use_kernels(FakeKernels()):
        want, want_state = model(ids, return_state=True)
        want_step, _ = model.step(got[:, -1].argmax(-1), want_state)
    assert set(seen) == {torch.float32}
    assert torch.equal(got, want) and torch.equal(step, want_step)
    assert all(torch.equal(a, b) for a, b in zip(state.conv + state.ssm, want_state.conv + want_state.ssm))


# ---- the float SSMs (FP and W4A16 models) ---------------------------------------------------------------------


def _float_ssm_args(op: str, dtype=torch.float16, b: int = 2, L: int = 5, h: int = 4, p: int = 16, g: int = 2,
                    n: int = 64, e: int = 24, seed: int = 8):
    """Random operands of a float SSM op in its reference's argument order (states fp32)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen).to(dtype)  # noqa: E731
    pos = lambda *s: (torch.rand(*s, generator=gen) * 0.1 + 0.01).to(dtype)  # noqa: E731
    if op == "ssd":
        return (r(b, L, h, p), pos(b, L, h).float(), -torch.rand(h, generator=gen) - 0.5, r(b, L, g, n), r(b, L, g, n),
                4, torch.randn(h, generator=gen), torch.randn(b, h, p, n, generator=gen))
    if op == "ssd_state_update":
        return (torch.randn(b, h, p, n, generator=gen), r(b, h, p), pos(b, h).float(), -torch.rand(h, generator=gen),
                r(b, g, n), r(b, g, n), torch.randn(h, generator=gen))
    A = -torch.rand(e, n, generator=gen) - 0.1
    if op == "selective_scan":
        return (r(b, L, e), r(b, L, e), A, r(b, L, n), r(b, L, n), torch.randn(e, generator=gen), r(b, L, e),
                torch.randn(e, generator=gen), True, torch.randn(b, e, n, generator=gen))
    return (torch.randn(b, e, n, generator=gen), r(b, e), r(b, e), A, r(b, n), r(b, n), torch.randn(e, generator=gen),
            r(b, e), torch.randn(e, generator=gen), True)


def _check_float(got, want, tol: float = 2**-9) -> None:
    for g, w in zip(got, want):
        assert (g.dtype, g.shape) == (w.dtype, w.shape)
        torch.testing.assert_close(g.float(), w.float(), rtol=tol, atol=tol * float(w.float().abs().max()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16], ids=["fp16", "fp32", "bf16"])
@pytest.mark.parametrize("op", FLOAT_SSM_OPS)
def test_float_ssm_ops_dispatch(cpu_is_kernel_device, op, dtype):
    """Each float SSM op reaches its kernel with the reference's arguments (the fake checks the binding's
    dtypes: fp16 activations, contiguous fp32 parameters, fp32 states): y in the input's dtype, the state fp32,
    the caller's state untouched; fp32 / bf16 inputs are rounded to fp16 (the documented policy)."""
    args = _float_ssm_args(op, dtype)
    fn, ref = getattr(kd, op), getattr(kd, _reference_name(op))
    snapshot = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = fn(*args)
    assert fake.calls == {op: 1} and kd.counts == {op: 1}
    want = ref(*args)
    assert got[1].dtype == torch.float32 and got[0].dtype == dtype
    _check_float(got, want, 2**-9 if dtype == torch.float16 else 2**-7)
    assert all(torch.equal(a, s) if isinstance(a, torch.Tensor) else a == s for a, s in zip(args, snapshot))


@pytest.mark.parametrize("op", FLOAT_SSM_OPS)
def test_float_ssm_fallbacks(cpu_is_kernel_device, op):
    """Calls the kernels do not take run the reference unchanged, counted as fallbacks: fp64 inputs (the oracle
    tests), inputs recording gradients (no backward), shapes outside the kernel's set; exporting runs the
    reference without counting."""
    fn, ref = getattr(kd, op), getattr(kd, _reference_name(op))
    bad_shape = {"ssd": dict(n=16), "ssd_state_update": dict(n=8), "selective_scan": dict(n=300),
                 "selective_state_update": dict(n=300)}[op]
    grad = list(_float_ssm_args(op))
    grad[2] = grad[2].clone().requires_grad_(True)  # A (or dt of ssd_state_update)
    cases = [_float_ssm_args(op, torch.float64), tuple(grad), _float_ssm_args(op, **bad_shape)]
    if op == "ssd":
        cases += [_float_ssm_args(op, p=8), _float_ssm_args(op, p=24), _float_ssm_args(op, h=3, g=2)]
    fake = FakeKernels()
    with kd.use_kernels(fake):
        for args in cases:
            if op == "ssd" and args[1].shape[-1] % args[3].shape[-2]:
                with pytest.raises(ValueError):  # the reference's own message
                    fn(*args)
                continue
            got, want = fn(*args), ref(*args)
            assert all(torch.equal(gg.detach(), w.detach()) for gg, w in zip(got, want))
    assert not fake.calls and kd.counts == {op + ":reference": len(cases)}
    kd.counts.clear()
    with kd.use_kernels(fake), export_dtype(torch.float32):
        if op in ("ssd", "selective_scan"):  # the prefill ops emit their ONNX node while exporting
            fn(*_float_ssm_args(op, torch.float32))
    assert not fake.calls and not kd.counts


def test_float_ssd_unsupported_answer_falls_back(cpu_is_kernel_device, monkeypatch):
    """A kernel answer of "not supported" (ssd.h: cudaErrorNotSupported, e.g. a device without the shared
    memory) runs the reference, recounted as a fallback (``ssd:reference`` and ``ssd:unsupported``)."""
    import kernel_dispatch_helpers as kh

    monkeypatch.setitem(kh._IMPLS, "ssd", lambda i, o, opts: False)
    args = _float_ssm_args("ssd")
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = kd.ssd(*args)
    want = kd._ref_float_ssd(*args)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert fake.unsupported == {"ssd": 1} and not fake.calls
    assert kd.counts == {"ssd:reference": 1, "ssd:unsupported": 1}


def test_float_ssd_views_reach_the_kernel(cpu_is_kernel_device):
    """Strided views (x / B / C split out of one [B, L, E + 2GN] activation, as the model passes them; an odd
    element offset that breaks the 16-byte alignment; a strided dt) still reach the kernel: the dispatch copies
    what ssd.h would refuse (the fake answers False for unaligned rows, which would fail this test)."""
    b, L, h, p, g, n = 2, 7, 4, 16, 2, 64
    e, gn = h * p, g * n
    gen = torch.Generator().manual_seed(2)
    for pad in (0, 1):
        xbc = torch.randn(b, L, pad + e + 2 * gn, generator=gen).half()[..., pad:]
        x, B, C = xbc.split([e, gn, gn], dim=-1)
        args = (x.reshape(b, L, h, p), torch.rand(b, L, 2 * h, generator=gen)[..., ::2] * 0.1,
                -torch.rand(h, generator=gen), B.reshape(b, L, g, n), C.reshape(b, L, g, n), 8, None, None)
        fake = FakeKernels()
        kd.counts.clear()
        with kd.use_kernels(fake):
            got = kd.ssd(*args)
        assert fake.calls == {"ssd": 1} and not fake.unsupported and kd.counts == {"ssd": 1}
        _check_float(got, kd._ref_float_ssd(*args))


def _fp_kernel_model(arch: str) -> torch.nn.Module:
    """tiny_fp with shapes every float SSM kernel takes (kernel_config: Mamba2 d_state 64, headdim 16)."""
    from kernel_dispatch_helpers import tiny_fp

    return tiny_fp(arch)


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_fp_model_runs_the_float_kernels(cpu_is_kernel_device, op_checks, arch):
    """The FP model's SSM goes through the dispatch: prefill and decode on the float kernels (the fake), each
    call checked op by op against the reference, logits close; the reference when off; no kernel call while
    exporting."""
    from kernel_dispatch_helpers import float_norm_ops, float_ssm_ops

    model = _fp_kernel_model(arch)
    ids = _ids(length=9)
    with torch.inference_mode():  # as the torch backend (a forward recording gradients keeps the reference)
        ref, ref_state = model(ids, return_state=True)
        fake = FakeKernels()
        with kd.use_kernels(fake):
            got, state = model(ids, return_state=True)
            tok = ref[:, -1].argmax(-1)
            step, _ = model.step(tok, state)
        ref_step, _ = model.step(tok, ref_state)
    _close(got, ref)
    _close(step, ref_step)
    want = float_ssm_ops(arch, False) | float_ssm_ops(arch, True) | float_norm_ops(arch)
    assert set(fake.calls) == want and not _fallbacks()
    n = model.config.n_layer
    assert fake.calls[next(iter(float_ssm_ops(arch, False) - {"causal_conv1d"}))] == n
    assert fake.calls["causal_conv1d"] == 2 * n  # the float conv, prefill and step
    assert fake.calls["add_rms_norm"] == 2 * (n + 1)  # block norms and norm_f, prefill and step
    assert fake.calls["gated_rms_norm"] == (2 * n if arch == "mamba2" else 0)
    # every call (kernels on or off) checked: per forward the conv, the SSM, the block norms, norm_f (and the gated
    # norms)
    assert op_checks["calls"] == 4 * (n + n + n + 1 + (n if arch == "mamba2" else 0))
    kd.counts.clear()
    fake = FakeKernels()
    with torch.inference_mode(), kd.use_kernels(fake), export_dtype(torch.float32):
        model(ids)
    assert not fake.calls and not kd.counts


# ---- the float norms (FP models; W4A16 Mamba2's gated norm) ---------------------------------------------------


def _norm_args(op: str, dtype=torch.float16, wdt=torch.float16, lead=(2, 5), d: int = 48, res=torch.float32,
               z=True, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s, dt=dtype: (torch.randn(*s, generator=gen) * 2).to(dt)  # noqa: E731
    w = (0.5 + torch.rand(d, generator=gen)).to(wdt)
    if op == "add_rms_norm":
        return r(*lead, d), None if res is None else r(*lead, d, dt=res), w, 1e-5
    return r(*lead, d), r(*lead, d) if z else None, w, 1e-5


ADD_NORM_CASES = [  # (hidden, residual or None, weight, residual_in_fp32, prenorm)
    (torch.float16, torch.float32, torch.float16, True, True),     # the fp16 model's blocks
    (torch.float16, None, torch.float16, True, True),              # first block
    (torch.float16, torch.float32, torch.float16, False, False),   # norm_f (stream fp32 + fp16)
    (torch.float16, torch.float16, torch.float16, False, True),    # residual_in_fp32 = False: an fp16 stream
    (torch.float16, torch.float16, torch.float32, False, True),    # fp16 stream, fp32 weight: y via fp16
    (torch.float32, torch.float32, torch.float32, True, True),
    (torch.bfloat16, torch.bfloat16, torch.bfloat16, False, True),
]


@pytest.mark.parametrize("hdt,rdt,wdt,res_fp32,prenorm", ADD_NORM_CASES)
def test_add_rms_norm_dispatch(cpu_is_kernel_device, hdt, rdt, wdt, res_fp32, prenorm):
    """add_rms_norm reaches its kernel (the fake: the binding's argument checks, then the reference) and returns
    exactly the reference's values and dtypes: (out in the weight's dtype, the stream), or out alone."""
    hidden, residual, w, eps = _norm_args("add_rms_norm", hdt, wdt, res=rdt)
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = kd.add_rms_norm(hidden, residual, w, eps, res_fp32, prenorm)
    want = kd._ref_float_add_rms_norm(hidden, residual, w, eps, res_fp32, prenorm)
    assert fake.calls == {"add_rms_norm": 1} and kd.counts == {"add_rms_norm": 1}
    got, want = (got, want) if prenorm else ((got,), (want,))
    for g, wv in zip(got, want):
        assert (g.dtype, g.shape) == (wv.dtype, wv.shape) and torch.equal(g, wv)


@pytest.mark.parametrize("xdt,zdt,wdt", [(torch.float16, torch.float16, torch.float16),
                                         (torch.float32, torch.float32, torch.float16),  # W4A16
                                         (torch.float16, None, torch.float32),
                                         (torch.bfloat16, torch.float32, torch.bfloat16)])
@pytest.mark.parametrize("nbg", [False, True])
def test_gated_rms_norm_dispatch(cpu_is_kernel_device, xdt, zdt, wdt, nbg):
    x, z, w, eps = _norm_args("gated_rms_norm", xdt, wdt)
    if z is not None:
        z = z.to(zdt)
    else:
        z = None if zdt is None else z
    fake = FakeKernels()
    for gs in (None, 12):
        with kd.use_kernels(fake):
            got = kd.gated_rms_norm(x, z, w, eps, gs, nbg)
        want = kd._ref_float_gated_rms_norm(x, z, w, eps, gs, nbg)
        assert (got.dtype, got.shape) == (want.dtype, want.shape) and torch.equal(got, want)
    assert fake.calls == {"gated_rms_norm": 2} and kd.counts == {"gated_rms_norm": 2}


def test_float_norm_views_reach_the_kernel(cpu_is_kernel_device, monkeypatch):
    """z split out of in_proj's output (strided rows) and a token slice reach the kernels as [rows, n] views
    (no copy where the leading dims collapse)."""
    import kernel_dispatch_helpers as kh

    seen = []
    real = kh._IMPLS["gated_rms_norm"]
    monkeypatch.setitem(kh._IMPLS, "gated_rms_norm", lambda i, o, opts: (seen.append(i[1]), real(i, o, opts))[1])
    gen = torch.Generator().manual_seed(5)
    zx = torch.randn(2, 7, 80, generator=gen).half()
    z, x = zx[..., :32], zx[..., 32:64].contiguous()
    w = torch.rand(32, generator=gen).half()
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = kd.gated_rms_norm(x, z, w, 1e-5, 8)
    assert torch.equal(got, kd._ref_float_gated_rms_norm(x, z, w, 1e-5, 8))
    assert seen[0].data_ptr() == z.data_ptr() and seen[0].stride() == (80, 1)
    hidden, residual = torch.randn(3, 9, 32, generator=gen).half(), torch.randn(3, 9, 32, generator=gen)
    with kd.use_kernels(fake):
        got = kd.add_rms_norm(hidden[:, -1:], residual[:, -1:], w, 1e-5, False, False)
    assert torch.equal(got, kd._ref_float_add_rms_norm(hidden[:, -1:], residual[:, -1:], w, 1e-5, False, False))
    assert fake.calls == {"gated_rms_norm": 1, "add_rms_norm": 1}


@pytest.mark.parametrize("op", FLOAT_NORM_OPS)
def test_float_norm_fallbacks(cpu_is_kernel_device, op):
    """The reference, unchanged and counted, for: fp64 (oracle tests), calls recording gradients, d / group
    sizes over 16384, broadcast shapes, an fp16 stream with a bf16 weight (two lossy roundings); exporting runs
    it uncounted."""
    fn, ref = getattr(kd, op), getattr(kd, _reference_name(op))
    grad = list(_norm_args(op))
    grad[2] = grad[2].clone().requires_grad_(True)
    cases = [(_norm_args(op, torch.float64, torch.float64), {}), (tuple(grad), {}),
             (_norm_args(op, d=16400), {})]
    if op == "add_rms_norm":
        h, r, w, eps = _norm_args(op)
        cases += [((h, r[:1], w, eps), {}),  # residual broadcast over the batch
                  ((h, r.half(), w.bfloat16(), eps), dict(residual_in_fp32=False))]
    else:
        x, z, w, eps = _norm_args(op, d=48)
        cases += [((x, z[..., :1].expand_as(z).contiguous()[:1], w, eps), {}),  # z broadcast
                  ((x, z, w, eps, 16400 // 2), {})]  # group size over the kernels' limit (not a divisor either)
    fake = FakeKernels()
    n = 0
    with kd.use_kernels(fake):
        for args, kw in cases:
            try:
                want = ref(*args, **kw)
            except (ValueError, RuntimeError):
                with pytest.raises((ValueError, RuntimeError)):
                    fn(*args, **kw)
                n += 1
                continue
            got = fn(*args, **kw)
            n += 1
            for g, wv in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (got, want))):
                assert g.dtype == wv.dtype and torch.equal(g.detach(), wv.detach())
    assert not fake.calls and kd.counts == {op + ":reference": n}
    kd.counts.clear()
    with kd.use_kernels(fake), export_dtype(torch.float32):
        fn(*_norm_args(op, torch.float32, torch.float32))
    assert not fake.calls and not kd.counts


def test_replaced_or_observed_norms_keep_their_module_call(cpu_is_kernel_device):
    """Block / norm_f fuse only a plain RMSNorm without hooks: a forward hook on a norm (calibration, capture)
    still sees its call, and the logits do not change."""
    from kernel_dispatch_helpers import tiny_fp

    model = tiny_fp("mamba2")
    ids = _ids(length=6)
    seen = []
    with torch.inference_mode():
        ref = model(ids)
        handles = [m.register_forward_hook(lambda _m, i, o: seen.append(o.shape))
                   for m in (model.layers[0].norm, model.norm_f)]
        try:
            fake = FakeKernels()
            with kd.use_kernels(fake):
                got = model(ids)
        finally:
            for h in handles:
                h.remove()
    assert len(seen) == 2
    _close(got, ref)
    assert fake.calls["add_rms_norm"] == model.config.n_layer - 1  # the other blocks' norms still fuse


# ---- the float conv (FP models; the W4A16 mixers' FPConv1d) ----------------------------------------------------


def _conv_args(dtype=torch.float16, b: int = 2, L: int = 5, c: int = 24, k: int = 4, wdt=None, bias=True,
               state="same", strided: bool = False, seed: int = 9):
    """(x, weight, bias, conv_state, activation) in ssm.causal_conv1d's order; ``state`` None, "same" (x's dtype)
    or a dtype; ``strided``: x a column slice of a wider activation (as Mamba2's [x|B|C] out of in_proj)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=gen).to(dt)  # noqa: E731
    x = r(b, L, c + 7)[..., 3:3 + c] if strided else r(b, L, c)
    sdt = dtype if state == "same" else state
    return (x, r(c, k, dt=wdt or dtype), r(c, dt=wdt or dtype) if bias else None,
            None if state is None else r(b, c, k - 1, dt=sdt), "silu")


CONV_CASES = {  # name -> _conv_args keywords
    "fp16-decode": dict(L=1),
    "fp16-prefill": dict(L=9),
    "fp16-no-state-no-bias": dict(state=None, bias=False),
    "fp16-strided-x": dict(strided=True, L=3),
    "fp16-fp32-state": dict(state=torch.float32, L=1),
    "fp32-w4a16": dict(dtype=torch.float32, wdt=torch.float16, state=torch.float16),  # FPConv1d's call
    "fp32-short": dict(dtype=torch.float32, L=2),  # L < K-1: the new state mixes the old one and x
    "k2": dict(k=2, L=4),
    "k1": dict(k=1, L=3),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_causal_conv1d_dispatch(cpu_is_kernel_device, case):
    """The float conv reaches its kernel (the fake checks the binding's dtypes and layouts: x with unit channel
    stride, y and the new state in x's dtype) with the reference's arguments; results in the reference's dtypes
    and shapes, within the kernel's one rounding; the caller's tensors untouched."""
    args = _conv_args(**CONV_CASES[case])
    snapshot = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = kd.causal_conv1d(*args)
    assert fake.calls == {"causal_conv1d": 1} and kd.counts == {"causal_conv1d": 1}
    want = kd._ref_float_causal_conv1d(*args)
    assert got[0].dtype == got[1].dtype == args[0].dtype and got[0].is_contiguous() and got[1].is_contiguous()
    _check_float(got[:1], want[:1], 2**-9)
    assert torch.equal(got[1], want[1])  # the new state holds the inputs (in x's dtype): exact
    assert all(torch.equal(a, s) if isinstance(a, torch.Tensor) else a == s for a, s in zip(args, snapshot))


def test_causal_conv1d_activation_none(cpu_is_kernel_device):
    args = _conv_args(dtype=torch.float32)[:4] + (None,)
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = kd.causal_conv1d(*args)
    assert fake.calls == {"causal_conv1d": 1}
    _check_float(got, kd._ref_float_causal_conv1d(*args), 2**-20)


def test_causal_conv1d_fallbacks(cpu_is_kernel_device):
    """Calls the kernel does not take run the reference unchanged (bit for bit), counted as fallbacks: bf16 / fp64
    activations, an fp64 weight, K = 5, inputs recording gradients; a bad activation raises the reference's
    ValueError; exporting runs the reference uncounted; kernels off: the reference, nothing counted."""
    grad = list(_conv_args())
    grad[1] = grad[1].clone().requires_grad_(True)
    wide = list(_conv_args(dtype=torch.float32))
    wide[1] = wide[1].double()
    cases = [_conv_args(torch.bfloat16), _conv_args(torch.float64), tuple(wide), _conv_args(k=5), tuple(grad)]
    fake = FakeKernels()
    with kd.use_kernels(fake):
        for args in cases:
            got, want = kd.causal_conv1d(*args), kd._ref_float_causal_conv1d(*args)
            assert all(torch.equal(g.detach(), w.detach()) for g, w in zip(got, want))
        with pytest.raises(ValueError):
            kd.causal_conv1d(*_conv_args()[:4], "relu")
    assert not fake.calls and kd.counts == {"causal_conv1d:reference": len(cases) + 1}
    kd.counts.clear()
    with kd.use_kernels(fake), export_dtype(torch.float32):
        kd.causal_conv1d(*_conv_args(torch.float32))
    args = _conv_args(torch.float32, strided=True)
    got, want = kd.causal_conv1d(*args), kd._ref_float_causal_conv1d(*args)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert not fake.calls and not kd.counts


def test_fp_conv_call_sites_reach_the_dispatch(monkeypatch):
    """The FP mixers' conv and the W4A16 FPConv1d call kernel_dispatch.causal_conv1d (kernels off: the reference,
    so CPU results stay bit-identical to calling ssm.causal_conv1d directly)."""
    from quamba_edge.models import ssm
    from quamba_edge.quant.qmamba1 import FPConv1d

    seen = []

    def spy(*args):
        seen.append(args)
        return ssm.causal_conv1d(*args)

    monkeypatch.setattr(kd, "causal_conv1d", spy)
    conv = FPConv1d.from_float(torch.randn(12, 4), torch.randn(12), torch.float16)
    x, st = torch.randn(2, 3, 12), torch.randn(2, 12, 3).half()
    got = conv(x, st)
    want = ssm.causal_conv1d(x, conv.weight.float(), conv.bias.float(), st, "silu")
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and len(seen) == 1
    for arch in ("mamba1", "mamba2"):
        seen.clear()
        _fp_kernel_model(arch)(_ids(length=4))
        assert len(seen) == _fp_kernel_model(arch).config.n_layer


def test_unverified_kernels_stay_off_by_default(cpu_is_kernel_device, monkeypatch):
    """Kernels without a GPU run yet (kd.UNVERIFIED_OPS; causal_conv1d stands in for one here) run the reference
    unless QUAMBA_KERNELS_UNVERIFIED=1 (which tests/conftest.py sets for the suite), counted as unverified
    fallbacks."""
    monkeypatch.delenv("QUAMBA_KERNELS_UNVERIFIED", raising=False)
    monkeypatch.setattr(kd, "UNVERIFIED_OPS", frozenset({"causal_conv1d"}))
    assert not kd.unverified_enabled()
    args = _conv_args()
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got = kd.causal_conv1d(*args)
    want = kd._ref_float_causal_conv1d(*args)
    assert not fake.calls and dict(kd.counts) == {"causal_conv1d:unverified": 1, "causal_conv1d:reference": 1}
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    monkeypatch.setenv("QUAMBA_KERNELS_UNVERIFIED", "1")
    kd.counts.clear()
    with kd.use_kernels(fake):
        kd.causal_conv1d(*args)
    assert fake.calls == {"causal_conv1d": 1} and dict(kd.counts) == {"causal_conv1d": 1}


def test_w4a16_prefill_dequantizes_for_cublas(cpu_is_kernel_device, monkeypatch):
    """From W4A16_CUBLAS_MIN_M token rows the W4A16 linear dequantizes its weight with the kernel (in slices of
    output rows when wide) and multiplies it with a float GEMM (cuBLAS on a GPU); below, the linear kernel.
    y as the reference's within fp16 weight / activation rounding, fp32, shaped [..., N], bias added."""
    from quamba_edge.quant.packing import pack_int4

    g = torch.Generator().manual_seed(3)
    n, k, gs = 300, 64, 32
    codes = torch.randint(0, 16, (n, k), generator=g, dtype=torch.uint8)
    scale = (torch.rand(n, k // gs, generator=g) * 0.02 + 0.002).half()
    bias = torch.randn(n, generator=g)
    x = torch.randn(2, kd.W4A16_CUBLAS_MIN_M // 2, k, generator=g)
    want = ops.w4a16_linear(x, codes, scale, gs, bias)
    bound = 2**-9 * (x.abs() @ ops.w4a16_dequantize(codes, scale, gs).abs().t()) + 2**-10 * want.abs() + 1e-6
    for limit, calls in ((kd._W4A16_DEQUANT_SLICE, 1), (200 * k, 3)):  # whole; slices of 128 rows (128 + 128 + 44)
        monkeypatch.setattr(kd, "_W4A16_DEQUANT_SLICE", limit)
        fake = FakeKernels()
        with kd.use_kernels(fake):
            got = kd.w4a16_linear(x, pack_int4(codes), scale, gs, bias, k)
        assert dict(fake.calls) == {"w4a16_dequantize": calls}
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert bool(((got - want).abs() <= bound).all()), float((got - want).abs().max())
    fake = FakeKernels()
    with kd.use_kernels(fake):
        kd.w4a16_linear(x[:, :3], pack_int4(codes), scale, gs, bias, k)
    assert dict(fake.calls) == {"w4a16_linear": 1}


def test_clear_caches_lets_go_of_the_checked_tensors():
    """The scale / row caches hold what they checked; clear_caches drops it (a released model is freed)."""
    import weakref

    kd._FLOAT_CACHE[(1, 2, 3, 4)] = (t := torch.ones(()), 1.0)
    kd._ROWS_CACHE[(1, 2, 3, 4)] = (r := torch.zeros(3, dtype=torch.int32), True)
    refs = [weakref.ref(t), weakref.ref(r)]
    del t, r
    assert all(w() is not None for w in refs)
    kd.clear_caches()
    assert all(w() is None for w in refs) and not kd._FLOAT_CACHE and not kd._ROWS_CACHE


# ---- the float online Hadamard (kernel helper of the W4A16 out_proj input) ------------------------------------


@pytest.mark.parametrize("n", [1, 12, 64, 768, 2560, 4096, 5120, 8192, 10240, 3072])
def test_float_hadamard_base_is_the_fused_matrix(n):
    """kernel_dispatch passes the binding the b x b base factor built without the n x n matrix: entry for entry
    M[i * 2^k, j * 2^k] of quant.hadamard.hadamard_matrix(n), the matrix fused offline."""
    from quamba_edge.quant.hadamard import hadamard_factors, hadamard_matrix

    b, p = hadamard_factors(n)
    base = kd._kron_base(n, torch.device("cpu"))
    assert base.dtype == torch.float32 and base.shape == (b, b) and base.is_contiguous()
    assert torch.equal(base, hadamard_matrix(n)[::p, ::p])
    assert kd._kron_base(n, torch.device("cpu")) is base  # built once


@pytest.mark.parametrize("fp16_out", [False, True], ids=["fp32_out", "fp16_out"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_float_hadamard_dispatch(cpu_is_kernel_device, dtype, fp16_out):
    """kernel_dispatch.hadamard reaches the binding with x as it is and the base factor (the fake checks it against
    hadamard_matrix(n)); fp32 out, or fp16 with fp16_out; values those of hadamard_kron (fp32 summation order), with
    fp16_out its fp16 rounding."""
    from quamba_edge.quant.hadamard import hadamard_kron

    g = torch.Generator().manual_seed(11)
    for shape in ((3, 5, 768), (2, 4096), (1, 1, 2560), (7, 64)):
        x = (torch.randn(*shape, generator=g) * 3).to(dtype)
        fake = FakeKernels()
        kd.counts.clear()
        with kd.use_kernels(fake):
            got = kd.hadamard(x, fp16_out=fp16_out)
        assert fake.calls == {"hadamard": 1} and dict(kd.counts) == {"hadamard": 1}
        want = hadamard_kron(x)
        assert got.shape == x.shape and got.dtype == (torch.float16 if fp16_out else torch.float32)
        if fp16_out:  # one fp16 rounding of nearly the same fp32 value: within one fp16 step of want.half()
            torch.testing.assert_close(got.float(), want.half().float(), rtol=2**-10, atol=1e-6)
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_float_hadamard_views_reach_the_kernel(cpu_is_kernel_device):
    """A strided x (a slice of wider rows, a transposed view) goes to the binding as it is (the binding copies
    what it cannot take); the result is that of the dense x."""
    from quamba_edge.quant.hadamard import hadamard_kron

    g = torch.Generator().manual_seed(12)
    wide = torch.randn(4, 3, 5120 + 64, generator=g)
    for x in (wide[..., 32:32 + 5120], torch.randn(768, 6, generator=g).t()):
        fake = FakeKernels()
        with kd.use_kernels(fake):
            got = kd.hadamard(x)
        assert fake.calls == {"hadamard": 1}
        want = hadamard_kron(x.contiguous())
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_float_hadamard_fallbacks(cpu_is_kernel_device):
    """hadamard_kron runs (counted as a fallback) for what the kernel or hadamard_matrix lacks: sizes outside
    b * 2^k (44 raises there too), 28 * 2^k (the kernel has it, hadamard_matrix does not), fp64 input; fp32 out
    whatever fp16_out; kernels off or exporting: nothing counted."""
    from quamba_edge.quant.hadamard import hadamard_kron

    fake = FakeKernels()
    x = torch.randn(2, 64, dtype=torch.float64)
    with kd.use_kernels(fake):
        got = kd.hadamard(x, fp16_out=True)
        for n in (44, 28 * 8):
            with pytest.raises(ValueError, match="unsupported Hadamard size"):
                kd.hadamard(torch.randn(3, n))
    assert torch.equal(got, hadamard_kron(x)) and got.dtype == torch.float32
    assert not fake.calls and dict(kd.counts) == {"hadamard:reference": 3}
    kd.counts.clear()
    y = torch.randn(3, 768)
    assert torch.equal(kd.hadamard(y, fp16_out=True), hadamard_kron(y)) and not kd.counts  # kernels off
    with kd.use_kernels(fake), export_dtype(torch.float32):
        assert torch.equal(kd.hadamard(y, fp16_out=True), hadamard_kron(y))
    assert not fake.calls and not kd.counts


def test_float_hadamard_cpu_tensors_stay_on_the_reference():
    from quamba_edge.quant.hadamard import hadamard_kron

    fake = FakeKernels()
    y = torch.randn(3, 768)
    with kd.use_kernels(fake):
        got = kd.hadamard(y, fp16_out=True)
    assert torch.equal(got, hadamard_kron(y)) and not fake.calls and dict(kd.counts) == {"hadamard:reference": 1}


def test_float_hadamard_unverified_stays_off(cpu_is_kernel_device, monkeypatch):
    """While "hadamard" is in UNVERIFIED_OPS (no GPU run yet), only QUAMBA_KERNELS_UNVERIFIED=1 runs its kernel."""
    from quamba_edge.quant.hadamard import hadamard_kron

    monkeypatch.delenv("QUAMBA_KERNELS_UNVERIFIED", raising=False)
    monkeypatch.setattr(kd, "UNVERIFIED_OPS", kd.UNVERIFIED_OPS | {"hadamard"})
    fake = FakeKernels()
    y = torch.randn(2, 768)
    with kd.use_kernels(fake):
        got = kd.hadamard(y, fp16_out=True)
    assert torch.equal(got, hadamard_kron(y)) and not fake.calls
    assert dict(kd.counts) == {"hadamard:unverified": 1, "hadamard:reference": 1}


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_w4a16_hadamard_hands_fp16_to_the_linear(cpu_is_kernel_device, monkeypatch, arch):
    """A W4A16 block's out_proj input: the float Hadamard kernel writes the fp16 the W4A16 linear kernel would
    round it to (fp16_out), so the logits and states equal those of the fp32 hand-off bit for bit, prefill and
    decode; where the linear stays on the reference (here: its weight refused), the Hadamard hands fp32 on and
    the model gives the logits of the old path (hadamard_kron) up to fp32 summation order."""
    model = tiny_quantized("quamba2", "w4a16", arch)
    assert model.layers[0].mixer.hadamard
    ids = _ids(length=40)
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    had = kd.hadamard

    def recording(x, *, fp16_out=False):
        y = had(x, fp16_out=fp16_out)
        seen.append((x.dtype, y.dtype))
        return y

    monkeypatch.setattr(kd, "hadamard", recording)
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got, state = model(ids, return_state=True)
        step, _ = model.step(got[:, -1].argmax(-1), state)
    assert seen and {d for _, d in seen} == {torch.float16} and fake.calls["hadamard"] == len(seen)
    assert "hadamard:reference" not in kd.counts

    seen.clear()
    monkeypatch.setattr(kd, "hadamard", lambda x, *, fp16_out=False: recording(x))  # the fp32 hand-off
    with kd.use_kernels(FakeKernels()):
        want, want_state = model(ids, return_state=True)
        want_step, _ = model.step(got[:, -1].argmax(-1), want_state)
    assert {d for _, d in seen} == {torch.float32}
    assert torch.equal(got, want) and torch.equal(step, want_step)
    assert all(torch.equal(a, b) for a, b in zip(state.conv + state.ssm, want_state.conv + want_state.ssm))

    # the W4A16 linear refuses its weight: it runs the reference on what it gets, so the Hadamard must hand fp32
    seen.clear()
    monkeypatch.setattr(kd, "hadamard", recording)
    monkeypatch.setattr(kd, "_w4_weight_ok", lambda *a, **k: False)
    fake = FakeKernels()
    with kd.use_kernels(fake):
        got_ref_linear = model(ids)
    assert seen and {d for _, d in seen} == {torch.float32} and fake.calls["hadamard"] == len(seen)
    assert "w4a16_linear" not in fake.calls
    monkeypatch.setattr(kd, "hadamard", lambda x, *, fp16_out=False: kd._ref_float_hadamard(x))  # the old path
    with kd.use_kernels(FakeKernels()):
        old = model(ids)
    # the same fp32 values up to summation order (the fake's dense product vs hadamard_kron's two factors)
    torch.testing.assert_close(got_ref_linear, old, rtol=1e-4, atol=1e-4 * float(old.abs().max()))


def test_w4a16_linear_takes_fp16(cpu_is_kernel_device, monkeypatch):
    """The predicate the Hadamard asks: True exactly where w4a16_linear would run a kernel (GEMV / GEMM / cuBLAS
    prefill, all of which round x to fp16), never counted."""
    lin = tiny_quantized("quamba2", "w4a16", "mamba2").layers[0].mixer.out_proj
    x = torch.randn(2, 3, lin.in_features)
    assert not lin.takes_fp16(x)  # kernels off
    with kd.use_kernels(FakeKernels()):
        assert lin.takes_fp16(x) and lin.takes_fp16(x.half()[:, :1])
        assert lin.takes_fp16(torch.randn(2, kd.W4A16_CUBLAS_MIN_M, lin.in_features))  # the cuBLAS prefill
        assert not lin.takes_fp16(x[..., :-1])  # wrong K
        assert not lin.takes_fp16(x.double())
        with export_dtype(torch.float32):
            assert not lin.takes_fp16(x)
    assert not kd.counts
    monkeypatch.setattr(kd, "UNVERIFIED_OPS", frozenset({"w4a16_linear"}))
    monkeypatch.delenv("QUAMBA_KERNELS_UNVERIFIED", raising=False)
    with kd.use_kernels(FakeKernels()):
        assert not lin.takes_fp16(x)
    assert not kd.counts
