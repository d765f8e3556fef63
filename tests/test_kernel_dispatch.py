"""Kernel dispatch (quamba_edge/ops/kernel_dispatch.py) on CPU: which calls of the quantized model go to
the kernels and which stay on the reference. ``FakeKernels`` (tests/kernel_dispatch_helpers.py) stands in
for the CUDA extension: it checks every call against the binding's schema and computes it with the
reference ops, writing y in fp16 as the kernels do. The real kernels: tests/gpu/test_torch_cuda_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_dispatch_helpers import CASE_IDS, CASES, VOCAB, FakeKernels, expected_kernel_ops, tiny_quantized

from quamba_edge import kernels
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
        dispatching, reference = getattr(kd, op), getattr(kd, "_ref_" + op.removeprefix("quant_"))

        def run(*args, **kwargs):
            got, want = dispatching(*args, **kwargs), reference(*args, **kwargs)
            for g, w in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (got, want))):
                assert (g.dtype, g.shape) == (w.dtype, w.shape), op
                if g.is_floating_point():
                    torch.testing.assert_close(g, w, rtol=2**-10, atol=2**-10 * float(w.abs().max()), msg=op)
                else:
                    assert torch.equal(g, w), op
            checked["calls"] += 1
            return got

        monkeypatch.setattr(kd, op, run)

    for op in kd.KERNEL_OPS:
        wrap(op)
    return checked


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


def test_fake_covers_every_binding():
    assert set(FakeKernels().schemas) == set(kd.KERNEL_OPS)


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
def test_exporting_runs_the_reference(cpu_is_kernel_device, arch):
    """While exporting, every op must emit its ONNX node (the reference's export path), never a kernel."""
    model = tiny_quantized("quamba2", "w8a8", arch)
    fake = FakeKernels()
    ids = _ids(length=5)
    with export_dtype(torch.float32):
        ref = model(ids)
    with kd.use_kernels(fake), export_dtype(torch.float32):
        got = model(ids)
    assert not fake.calls and not kd.counts
    assert got.shape == ref.shape


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
    for a, b in zip(ref_state.conv + ref_state.ssm, state.conv + state.ssm):
        assert (a.dtype, a.shape) == (b.dtype, b.shape) and b.is_contiguous()

    fake.calls.clear()
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
    reached = set()
    for case in CASES:
        model = tiny_quantized(*case)
        reached |= expected_kernel_ops(model, decode=False) | expected_kernel_ops(model, decode=True)
    assert reached == set(kd.KERNEL_OPS)


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
