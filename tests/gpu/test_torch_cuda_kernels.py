"""The torch-cuda backend on the CUDA kernels: tiny quantized models of every recipe, kernels on vs the
reference on the same GPU (prefill, decode with carried state, greedy generation), every kernel-backed op
really dispatched to the kernel, fallbacks where a kernel lacks a shape, and EdgeModel's backend_reason.

Three paths run each model: ``ref`` (the reference ops), ``fake`` (``FakeKernels``: the reference ops
behind the bindings' argument lists, writing y in fp16 as the kernels do) and ``kernel``. Tolerance: the
kernels are specified as the reference numerics with fp16 y outputs, int8 outputs within +-1 LSB.
``fake - ref`` is the effect of the fp16 y alone: it flips int8 activations by one LSB downstream (e.g. at
the Hadamard quantizer of the out_proj input), and those flips, not the 2^-11 relative rounding itself,
move the logits. The kernels' own fp32 summation order adds only rarer one-LSB flips of the same kind, so
their deviation from the reference may be at most twice what the fp16 y causes on the same model, pooled
over prefill and decode (a 1e-4 / 1e-3 of max|logit| floor covers models where fp16 flips nothing):
  rms(kernel - ref) <= 2 rms(fake - ref) + 1e-4 max|ref|;  max|kernel - ref| <= 2 max|fake - ref| + 1e-3 max|ref|
the rms pooled, the max in every phase (prefill, a decode step from the reference's state, 8 decode steps
on carried states).
Greedy generation: the kernel path may leave the reference's tokens only at a near tie, where the
reference's margin between the two tokens is within twice the max deviation allowed above.
Metrics are printed as JSON lines (run with -s to see them)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from kernel_dispatch_helpers import (  # tests/ (on sys.path through tests/conftest.py)
    CASE_IDS,
    CASES,
    VOCAB,
    FakeKernels,
    binding_schemas,
    expected_kernel_ops,
    expected_row_ops,
    tiny_fp,
    tiny_quantized,
)

from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu

PROMPT = "The interpreter reads"


class CountingOps:
    """Forwards to the real ``torch.ops.quamba_kernels`` and counts the calls per op; ``rows`` counts the
    calls given a ``state_scale_row`` (the compact Quamba2 state-scale table)."""

    def __init__(self, ops) -> None:
        self._ops, self.calls, self.rows = ops, Counter(), Counter()

    def __getattr__(self, name: str):
        fn = getattr(self._ops, name)
        names = [a.name for a in binding_schemas()[name].arguments]
        at = names.index("state_scale_row") if "state_scale_row" in names else None

        def call(*args):
            self.calls[name] += 1
            if at is not None and len(args) > at and args[at] is not None:
                assert args[at].dtype == torch.int32 and args[at].device == args[0].device
                self.rows[name] += 1
            return fn(*args)

        return call


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """(recipe, bits, arch) -> artifact directory of the tiny quantized model (quantized on CPU once)."""
    from quamba_edge.quant.artifact import save_artifact
    from quamba_edge.tokenizer import bundled_assets_dir

    root, cache = tmp_path_factory.mktemp("kernel-artifacts"), {}

    def get(case):
        if case not in cache:
            cache[case] = root / "-".join(case)
            save_artifact(tiny_quantized(*case), cache[case], tokenizer_dir=bundled_assets_dir() / "tokenizer")
        return cache[case]

    return get


def _cuda_model(artifacts, case):
    from quamba_edge.quant.artifact import load_artifact

    return load_artifact(artifacts(case), device="cuda")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("QUAMBA_KERNELS", raising=False)
    kd.counts.clear()


def _run(ops, fn):
    with torch.inference_mode(), kd.use_kernels(ops):
        return fn()


def _rms(t: torch.Tensor) -> float:
    return float(t.float().pow(2).mean().sqrt())


def _metrics(ref, fake, ker) -> dict:
    return {"rms_kr": _rms(ker - ref), "rms_fr": _rms(fake - ref), "rms_kf": _rms(ker - fake),
            "max_kr": float((ker - ref).abs().max()), "max_fr": float((fake - ref).abs().max()),
            "max_kf": float((ker - fake).abs().max()), "ref_max": float(ref.abs().max())}


def _allowed(pooled: dict) -> tuple[float, float]:
    """(rms, max) deviation of the kernels from the reference allowed on this model (module docstring)."""
    s = pooled["ref_max"]
    return 2 * pooled["rms_fr"] + 1e-4 * s, 2 * pooled["max_fr"] + 1e-3 * s


def _kernel_calls() -> dict:
    return {k: v for k, v in kd.counts.items() if ":" not in k}


def _fallbacks() -> dict:
    return {k: v for k, v in kd.counts.items() if k.endswith(":reference")}


def _row_calls() -> set:
    """The SSD ops the dispatch gave the compact state-scale table (RowScales)."""
    return {k.removesuffix(":rows") for k in kd.counts if k.endswith(":rows")}


def _same_layout(a, b) -> None:
    for x, y in zip(a.conv + a.ssm, b.conv + b.ssm):
        assert (x.dtype, x.shape, x.device) == (y.dtype, y.shape, y.device) and y.is_contiguous()


@pytest.mark.parametrize("recipe,bits,arch", CASES, ids=CASE_IDS)
def test_kernels_match_reference(kernels, artifacts, recipe, bits, arch):
    model = _cuda_model(artifacts, (recipe, bits, arch))
    counting, fake = CountingOps(kernels), FakeKernels()
    paths = {"ref": None, "fake": fake, "kernel": counting}
    ids = torch.randint(0, VOCAB, (2, 37), generator=torch.Generator().manual_seed(5)).cuda()

    # prefill; every expected op reached the kernel (counted at the dispatch and at torch.ops), no fallback
    out = {}
    for name, ops in paths.items():
        kd.counts.clear()
        out[name] = _run(ops, lambda: model(ids, return_state=True))
    assert set(_kernel_calls()) == set(counting.calls) == expected_kernel_ops(model, decode=False)
    assert dict(counting.calls) == _kernel_calls() and not _fallbacks(), dict(kd.counts)
    # the Quamba2 Mamba2 state scales reach the kernel as the compact table (no [H, P, N] copy)
    assert set(counting.rows) == _row_calls() == set(fake.row_calls) == expected_row_ops(model, decode=False)
    _same_layout(out["ref"][1], out["kernel"][1])

    # decode: one step from the reference's state on every path (a state carried across paths), then
    # 8 teacher-forced steps, each path carrying its own state; the states passed in are never written
    tokens = [out["ref"][0][:, -1].argmax(-1)]
    cross = {n: _run(ops, lambda: model.step(tokens[0], out["ref"][1]))[0] for n, ops in paths.items()}
    states = {n: out[n][1] for n in paths}
    snapshot = [t.clone() for t in states["kernel"].conv + states["kernel"].ssm]
    prefill_kernel_state = states["kernel"]
    steps = {n: [] for n in paths}
    counting.calls.clear()
    counting.rows.clear()
    for _ in range(8):
        for n, ops in paths.items():
            kd.counts.clear()
            logits, states[n] = _run(ops, lambda: model.step(tokens[-1], states[n]))
            steps[n].append(logits)
            if n == "kernel":
                assert set(_kernel_calls()) == expected_kernel_ops(model, decode=True) and not _fallbacks()
                assert _row_calls() == expected_row_ops(model, decode=True)
        tokens.append(steps["ref"][-1].argmax(-1))
    assert set(counting.calls) == expected_kernel_ops(model, decode=True)
    assert set(counting.rows) == expected_row_ops(model, decode=True)
    _same_layout(states["ref"], states["kernel"])
    assert all(torch.equal(a, b) for a, b in zip(snapshot, prefill_kernel_state.conv + prefill_kernel_state.ssm))

    phases = {"prefill": [out[n][0].reshape(-1, VOCAB) for n in paths],
              "decode_from_ref_state": [cross[n] for n in paths],
              "decode": [torch.cat(steps[n]) for n in paths]}
    record = {"case": "-".join((recipe, bits, arch))}
    record.update({k: _metrics(*v) for k, v in phases.items()})
    record["pooled"] = pooled = _metrics(*(torch.cat(t) for t in zip(*phases.values())))
    tol_rms, tol_max = _allowed(pooled)
    record["allowed"] = {"rms": tol_rms, "max": tol_max}

    # greedy generation, 32 tokens from a 16-token prompt, reference vs kernels
    gen = {}
    for n in ("ref", "kernel"):
        logits, st = _run(paths[n], lambda: model(ids[:1, :16], return_state=True))
        seq, per_step, last = [], [], logits[:, -1]
        for _ in range(32):
            per_step.append(last[0])
            seq.append(int(last[0].argmax()))
            last, st = _run(paths[n], lambda: model.step(torch.tensor([seq[-1]], device="cuda"), st))
        gen[n] = (seq, per_step)
    (ref_seq, ref_logits), (ker_seq, ker_logits) = gen["ref"], gen["kernel"]
    first = next((i for i, (a, b) in enumerate(zip(ref_seq, ker_seq)) if a != b), None)
    record["greedy"] = {"agreement": sum(a == b for a, b in zip(ref_seq, ker_seq)) / len(ref_seq),
                        "first_divergence": first}
    margin = 0.0
    if first is not None:  # the same prefix up to here: the reference's margin between the two tokens
        a, b, lr, lk = ref_seq[first], ker_seq[first], ref_logits[first], ker_logits[first]
        margin = float(lr[a] - lr[b])
        record["greedy"].update(margin=margin, kernel_margin=float(lk[b] - lk[a]))
    print(json.dumps(record))

    for phase in phases:
        assert record[phase]["max_kr"] <= tol_max, (phase, record)
    assert pooled["rms_kr"] <= tol_rms, record
    assert margin <= 2 * tol_max, record  # a divergence only at a near tie


@pytest.mark.parametrize("recipe,bits,arch", CASES, ids=CASE_IDS)
def test_edge_model_torch_cuda_runs_the_kernels(kernels, artifacts, monkeypatch, recipe, bits, arch):
    from quamba_edge.runtime import EdgeModel

    art = artifacts((recipe, bits, arch))
    em = EdgeModel.load(art, backend="torch-cuda")
    assert em.backend_name == "torch-cuda" and em.backend_reason.endswith("; CUDA kernels: on"), em.backend_reason
    assert "CUDA kernels: on" in em.info()["model"]
    kd.counts.clear()
    out = em.generate(PROMPT, max_new_tokens=32, eos_token_id=None)
    model = em.backend.model
    want = expected_kernel_ops(model, decode=False) | expected_kernel_ops(model, decode=True)
    assert set(_kernel_calls()) == want and not _fallbacks(), dict(kd.counts)
    assert _row_calls() == expected_row_ops(model, decode=False) | expected_row_ops(model, decode=True)
    more = em.generate(" Then it", max_new_tokens=8, state=out.state, eos_token_id=None)  # carried state

    monkeypatch.setenv("QUAMBA_KERNELS", "0")
    em0 = EdgeModel.load(art, backend="torch-cuda")
    assert em0.backend_reason.endswith("; CUDA kernels: off (QUAMBA_KERNELS=0)"), em0.backend_reason
    kd.counts.clear()
    out0 = em0.generate(PROMPT, max_new_tokens=32, eos_token_id=None)
    more0 = em0.generate(" Then it", max_new_tokens=8, state=out0.state, eos_token_id=None)
    assert not kd.counts
    monkeypatch.delenv("QUAMBA_KERNELS")
    assert len(out.tokens) == len(out0.tokens) == 32 and len(more.tokens) == 8
    record = {"case": "-".join((recipe, bits, arch)),
              "edge_model_greedy_agreement": sum(a == b for a, b in zip(out.tokens, out0.tokens)) / 32,
              "continued_agreement": sum(a == b for a, b in zip(more.tokens, more0.tokens)) / 8}
    first = next((i for i, (a, b) in enumerate(zip(out.tokens, out0.tokens)) if a != b), None)
    margin = tol_max = 0.0
    if first is not None:  # a near tie? the reference's margin between the two tokens after the common prefix
        prefix = torch.tensor([list(out0.prompt_ids) + list(out0.tokens[:first])], device="cuda")
        ref, fake, ker = (_run(ops, lambda: model(prefix)[0]) for ops in (None, FakeKernels(), kernels))
        _, tol_max = _allowed(_metrics(ref, fake, ker))
        margin = float(ref[-1, out0.tokens[first]] - ref[-1, out.tokens[first]])
        record.update(first_divergence=first, margin=margin, allowed=2 * tol_max)
    print(json.dumps(record))
    assert margin <= 2 * tol_max, record


@pytest.mark.parametrize("decode", [False, True], ids=["quant_ssd", "quant_ssd_state_update"])
def test_compact_state_scales_equal_expanded(kernels, artifacts, decode):
    """On the real kernels, a Quamba2 mixer's RowScales (compact table + row index) gives exactly what its
    expanded [H, P, N] state scales give, prefill and decode; rows out of range fall back, no launch."""
    mx = _cuda_model(artifacts, ("quamba2", "w8a8", "mamba2")).layers[0].mixer
    h, p, g, n = mx.nheads, mx.headdim, mx.ngroups, mx.d_state
    gen = torch.Generator(device="cuda").manual_seed(7)
    i8 = lambda *s: torch.randint(-128, 128, s, dtype=torch.int8, device="cuda", generator=gen)  # noqa: E731
    t = () if decode else (33,)
    head = (i8(3, *t, h, p), mx.x_channel_scales(), i8(3, *t, h), 0.02, mx.dt_bias, mx.A_log, mx.A_log_scale,
            i8(3, *t, g, n), mx.B_out_scale, i8(3, *t, g, n), mx.C_out_scale, mx.D, mx.D_scale)
    state = i8(3, h, p, n)

    def call(scale):
        if decode:
            return kd.quant_ssd_state_update(*head, mx.dt_limit, state, scale)
        return kd.quant_ssd(*head, mx.chunk_size, mx.dt_limit, state, scale)

    op = "quant_ssd_state_update" if decode else "quant_ssd"
    rs = mx.state_row_scales()
    with torch.inference_mode(), kd.use_kernels(kernels):
        compact, expanded = call(rs), call(mx.state_channel_scales())
        assert kd.counts == {op: 2, op + ":rows": 1}, dict(kd.counts)
        # row -1: a valid python index (the reference's expand() wraps it), out of range for the kernel
        bad = kd.RowScales(rs.table, torch.full_like(rs.rows, -1))
        kd.counts.clear()
        got = call(bad)
        assert kd.counts == {op + ":reference": 1}, dict(kd.counts)
    with torch.inference_mode():
        want = call(bad.expand())  # kernels off: the reference
    assert torch.equal(compact[0], expanded[0]) and torch.equal(compact[1], expanded[1])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_fp_model_runs_only_the_float_kernels(kernels, tmp_path):
    """An FP model loaded for torch-cuda: an fp16 one runs its SSM and norms on the float kernels and nothing quantized;
    any other dtype keeps the reference (kernels off)."""
    from quamba_edge.models import save_model
    from quamba_edge.runtime import EdgeModel

    save_model(tiny_fp("mamba2"), tmp_path / "fp")
    em = EdgeModel.load(tmp_path / "fp", backend="torch-cuda")
    em.generate(PROMPT, max_new_tokens=4)
    if em.backend.model.dtype == torch.float16:
        from kernel_dispatch_helpers import float_norm_ops, float_ssm_ops

        assert em.backend.kernels_note == "CUDA kernels: on", em.backend.kernels_note
        want = float_ssm_ops("mamba2", False) | float_ssm_ops("mamba2", True) | float_norm_ops("mamba2")
        assert set(_kernel_calls()) == want and not _fallbacks(), dict(kd.counts)
    else:
        assert em.backend.kernel_ops is None and not kd.counts, dict(kd.counts)


def test_unsupported_d_state_falls_back_on_cuda(kernels, tmp_path):
    """Mamba2 with d_state 8 (outside the SSD kernels' set): the SSD runs on the reference, the rest on the
    kernels, no crash; logits as close as the prefill criterion allows."""
    from runtime_helpers import tiny_quant

    from quamba_edge.quant.artifact import load_artifact, save_artifact

    save_artifact(tiny_quant("mamba2", "w8a8"), tmp_path / "a")
    model = load_artifact(tmp_path / "a", device="cuda")
    ids = torch.randint(0, VOCAB, (2, 19), generator=torch.Generator().manual_seed(2)).cuda()
    ref = _run(None, lambda: model(ids))
    fake = _run(FakeKernels(), lambda: model(ids))
    kd.counts.clear()
    ker = _run(kernels, lambda: model(ids))
    assert kd.counts["quant_ssd:reference"] == model.config.n_layer and "quant_ssd" not in kd.counts
    assert {"quant_causal_conv1d", "quant_gated_rms_norm", "quant_hadamard", "quant_add_rms_norm"} <= set(kd.counts)
    m = _metrics(ref.reshape(-1, VOCAB), fake.reshape(-1, VOCAB), ker.reshape(-1, VOCAB))
    print(json.dumps({"case": "mamba2 d_state 8, SSD on the reference", **m}))
    tol_rms, tol_max = _allowed(m)
    assert m["rms_kr"] <= tol_rms and m["max_kr"] <= tol_max, m


def test_scale_cache_sees_in_place_writes():
    """kernel_dispatch._f caches CUDA scalars by (address, version): an in-place write must be seen."""
    buf = torch.tensor([0.5, 0.25], device="cuda")
    assert kd._f(buf[0]) == 0.5 and kd._f(buf[1].reshape(())) == 0.25
    buf.mul_(2)
    assert kd._f(buf[0]) == 1.0 and kd._f(buf[1].reshape(())) == 0.5
    with torch.inference_mode():
        t = torch.tensor(0.125, device="cuda")  # an inference tensor: no version counter, read each time
        assert kd._f(t) == 0.125
        t.fill_(0.75)
        assert kd._f(t) == 0.75


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_fp16_model_runs_the_float_ssm_kernels(kernels, arch):
    """The fp16 FP model on torch-cuda: the backend turns the kernels on for it, and its SSM (prefill and
    decode) runs the float kernels (ssd / ssd_state_update, selective_scan / selective_state_update; the norms on
    add_rms_norm / gated_rms_norm: counted at the dispatch and at torch.ops, no fallback); logits close to the reference path (the same fp16 model, its
    SSM on the reference: the kernels differ by their fp16 y rounding only)."""
    import copy

    from kernel_dispatch_helpers import float_norm_ops, float_ssm_ops

    from quamba_edge.runtime.backends.torch_backend import TorchBackend

    model = copy.deepcopy(tiny_fp(arch)).to("cuda", torch.float16).eval()
    backend = TorchBackend(model, tokenizer_dir=None, precision="fp16")
    assert backend.kernels_note == "CUDA kernels: on", backend.kernels_note
    counting = CountingOps(kernels)
    ids = torch.randint(0, VOCAB, (2, 37), generator=torch.Generator().manual_seed(5)).cuda()
    out = {}
    for name, ops in (("ref", None), ("kernel", counting)):
        kd.counts.clear()
        logits, st = _run(ops, lambda: model(ids, return_state=True))
        steps = []
        tok = logits[:, -1].argmax(-1)
        for _ in range(4):
            lg, st = _run(ops, lambda: model.step(tok, st))
            steps.append(lg)
            tok = lg.argmax(-1)
        out[name] = torch.cat([logits.reshape(-1, VOCAB), *steps]).float()
        if ops is not None:
            want = float_ssm_ops(arch, False) | float_ssm_ops(arch, True) | float_norm_ops(arch)
            assert set(_kernel_calls()) == set(counting.calls) == want and not _fallbacks(), dict(kd.counts)
    ref, ker = out["ref"], out["kernel"]
    scale = float(ref.abs().max())
    print(json.dumps({"case": f"fp16-{arch}", "rms": _rms(ker - ref), "max": float((ker - ref).abs().max()),
                      "ref_max": scale}))
    assert _rms(ker - ref) <= 5e-3 * scale and float((ker - ref).abs().max()) <= 3e-2 * scale
    # the backend's own forward enters the kernels
    kd.counts.clear()
    backend.forward(ids[:1, :9].cpu().numpy(), None)
    assert set(_kernel_calls()) == float_ssm_ops(arch, False) | float_norm_ops(arch)
