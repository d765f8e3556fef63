"""Norm fusion and Hadamard rotations leave the FP model's function unchanged (spec C.1, C.2, F.9, F.10)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.hadamard import hadamard_matrix
from quamba_edge.quant.rotation import (
    HadamardLinear,
    fuse_norms,
    rotate_out_proj_input,
    rotate_residual,
    untie_lm_head,
)


TOL = 1e-5
VOCAB = 64

# d_model and d_inner of the 12·2^k family (48 → 96) and of the 2^k family (32 → 64).
CASES = {
    "m1_d48": dict(arch="mamba1", d_model=48, d_state=8),
    "m1_d32_bias_untied": dict(arch="mamba1", d_model=32, d_state=8, bias=True, tie_embeddings=False),
    "m2_d48_g2": dict(arch="mamba2", d_model=48, d_state=8, headdim=8, ngroups=2, chunk_size=16),
    "m2_d32_g2_bias": dict(arch="mamba2", d_model=32, d_state=8, headdim=8, ngroups=2, chunk_size=8,
                           bias=True),
}


def tiny_model(seed: int = 0, **kw) -> MambaLM:
    """Random tiny fp32 MambaLM whose norm weights and biases are not trivial (so fusion matters)."""
    torch.manual_seed(seed)
    cfg = MambaConfig(n_layer=2, vocab_size=VOCAB, **kw)
    model = MambaLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name == "norm_f.weight":
                p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith("proj.bias") and "dt_proj" not in name:
                p.copy_(torch.randn_like(p) * 0.1)
    return model


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def run_all_paths(model: MambaLM, ids: torch.Tensor) -> list[torch.Tensor]:
    """Logits of: a full prefill, a prefill continued from a carried state, and two decode steps."""
    with torch.no_grad():
        full = model(ids)
        _, st = model(ids[:, :11], return_state=True)
        cont, st = model(ids[:, 11:], st, return_state=True)
        s1, st = model.step(ids[:, 0], st)
        s2, _ = model.step(ids[:, 1], st)
    return [full, cont, s1, s2]


def assert_same(model: MambaLM, ids: torch.Tensor, refs: list[torch.Tensor]) -> None:
    for got, ref in zip(run_all_paths(model, ids), refs):
        assert rel(got, ref) < TOL


def sample_ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("steps", [("fuse", "res", "had"), ("had", "fuse", "res")])
def test_transforms_keep_logits(name, steps):
    """Each transform, checked after every step: so fuse alone, had alone, and the compositions."""
    model, ids = tiny_model(**CASES[name]), sample_ids()
    refs = run_all_paths(model, ids)
    fns = {"fuse": fuse_norms, "res": rotate_residual, "had": rotate_out_proj_input}
    for s in steps:
        assert fns[s](model) is model
        assert_same(model, ids, refs)


@pytest.fixture(params=sorted(CASES))
def case(request):
    kw = CASES[request.param]
    return kw, tiny_model(**kw)


def test_fuse_norms_sets_unit_weights_and_keeps_gated_norm(case):
    kw, model = case
    gated = [l.mixer.norm.weight.clone() for l in model.layers] if kw["arch"] == "mamba2" else []
    w_in = model.layers[0].mixer.in_proj.weight.clone()
    gamma = model.layers[0].norm.weight.clone()
    fuse_norms(model)
    for layer in model.layers:
        assert torch.equal(layer.norm.weight, torch.ones_like(layer.norm.weight))
    assert torch.equal(model.norm_f.weight, torch.ones_like(model.norm_f.weight))
    torch.testing.assert_close(model.layers[0].mixer.in_proj.weight, w_in * gamma[None, :])
    for layer, g in zip(model.layers, gated):  # F.10: the gated-norm weight stays in the op
        assert torch.equal(layer.mixer.norm.weight, g)
    w_fused = model.layers[0].mixer.in_proj.weight.clone()
    fuse_norms(model)  # idempotent
    assert torch.equal(model.layers[0].mixer.in_proj.weight, w_fused)


def test_untie_protects_embedding():
    model = tiny_model(arch="mamba1", d_model=48, d_state=8)
    cfg = model.config
    assert model.lm_head.weight is model.embedding.weight
    emb = model.embedding.weight.clone()
    fuse_norms(model)  # unties by itself
    assert model.lm_head.weight is not model.embedding.weight
    assert torch.equal(model.embedding.weight, emb)
    assert model.config.tie_embeddings is False and cfg.tie_embeddings is True
    model.tie_weights()  # must not re-tie
    assert model.lm_head.weight is not model.embedding.weight
    untie_lm_head(model)  # no-op now


def test_rotate_residual_needs_unit_norms():
    model = tiny_model(arch="mamba2", d_model=32, d_state=8, headdim=8, ngroups=2)
    with pytest.raises(ValueError, match="fuse_norms"):
        rotate_residual(model)


def test_rotate_residual_products():
    """Orientation: embedding rows E·Mᵀ, in_proj W·Mᵀ, out_proj M·W (bias b·Mᵀ), lm_head W·Mᵀ.
    d = 48 = 12·4, so M is not symmetric and a transposed product would show."""
    model = tiny_model(arch="mamba1", d_model=48, d_state=8, bias=True, tie_embeddings=False)
    fuse_norms(model)
    old = {k: v.clone().double() for k, v in model.state_dict().items()}
    rotate_residual(model)
    m = hadamard_matrix(48, torch.float64)
    assert not torch.equal(m, m.T)
    new = {k: v.double() for k, v in model.state_dict().items()}
    close = torch.testing.assert_close
    close(new["embedding.weight"], old["embedding.weight"] @ m.T)
    close(new["lm_head.weight"], old["lm_head.weight"] @ m.T)
    close(new["layers.1.mixer.in_proj.weight"], old["layers.1.mixer.in_proj.weight"] @ m.T)
    close(new["layers.1.mixer.out_proj.weight"], m @ old["layers.1.mixer.out_proj.weight"])
    close(new["layers.1.mixer.out_proj.bias"], old["layers.1.mixer.out_proj.bias"] @ m.T)


def test_hadamard_linear_module(case):
    kw, model = case
    e = model.config.d_inner
    w0 = model.layers[1].mixer.out_proj.weight.detach().double().clone()
    rotate_out_proj_input(model)
    op = model.layers[1].mixer.out_proj
    assert isinstance(op, HadamardLinear) and isinstance(op.linear, nn.Linear)
    m = hadamard_matrix(e, torch.float32)
    assert torch.equal(op.hadamard_matrix, m)
    assert "layers.1.mixer.out_proj.hadamard_matrix" not in model.state_dict()
    torch.testing.assert_close(op.linear.weight.double(), w0 @ m.double().T, rtol=1e-6, atol=1e-7)
    y = torch.randn(3, 5, e)
    seen = []
    h = op.linear.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    out = op(y)
    h.remove()
    torch.testing.assert_close(seen[0], y @ m.T)  # hooks on .linear see the Hadamard domain
    torch.testing.assert_close(out, op.linear(y @ m.T))
    with pytest.raises(ValueError, match="already"):
        rotate_out_proj_input(model)


def test_float64_is_exact_to_double_rounding():
    model = tiny_model(**CASES["m2_d48_g2"], residual_in_fp32=False).double()  # fp32 residual would round
    ids = sample_ids(3)
    with torch.no_grad():
        ref = model(ids)
        fuse_norms(model)
        rotate_residual(model)
        rotate_out_proj_input(model)
        assert rel(model(ids), ref) < 1e-12
