"""Mamba2 sort-and-cluster reorder: statistics, permutation scope, compute invariance
(spec C.3, C.4, F.5-F.8)."""

from __future__ import annotations

import copy

import pytest
import torch

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.reorder import (
    ReorderInfo,
    apply_reorder,
    collect_sort_cluster_stats,
    permute_state,
    reorder_mamba2,
)
from quamba_edge.quant.rotation import fuse_norms, rotate_out_proj_input, rotate_residual


VOCAB = 64
TOL = 1e-5

CASES = {
    "d48_g2": dict(d_model=48, d_state=8, headdim=8, ngroups=2, chunk_size=16),  # H=12, 6 heads/group
    "d32_g2_bias": dict(d_model=32, d_state=8, headdim=8, ngroups=2, chunk_size=8, bias=True),  # H=8
    "d32_g1": dict(d_model=32, d_state=8, headdim=8, ngroups=1, chunk_size=8),
}


def tiny_mamba2(seed: int = 0, **kw) -> MambaLM:
    torch.manual_seed(seed)
    model = MambaLM(MambaConfig(arch="mamba2", n_layer=2, vocab_size=VOCAB, **kw)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name == "norm_f.weight":
                p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith(("proj.bias", "conv1d.bias", ".D")):
                p.copy_(torch.randn_like(p) * 0.3)
            elif name.endswith("in_proj.weight"):  # uneven channel magnitudes: a non-trivial sort
                p.mul_(torch.rand(p.shape[0], 1) * 3 + 0.2)
    return model


def samples(n: int = 3, seed: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (1, 12 + 5 * k), generator=g) for k in range(n)]


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


@pytest.fixture(params=sorted(CASES))
def reordered(request):
    kw = CASES[request.param]
    ref = tiny_mamba2(**kw)
    model = copy.deepcopy(ref)
    infos = reorder_mamba2(model, samples())
    return ref, model, infos


def test_logits_and_states_unchanged(reordered):
    ref, model, infos = reordered
    ids = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert rel(model(ids), ref(ids)) < TOL
        lr, st_r = ref(ids[:, :13], return_state=True)
        lm, st_m = model(ids[:, :13], return_state=True)
        assert rel(lm, lr) < TOL
        moved = permute_state(st_r, infos, ref.config.d_inner)  # the reordered model's state order
        for a, b in zip(moved.conv + moved.ssm, st_m.conv + st_m.ssm):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        cr, st_r = ref(ids[:, 13:], st_r, return_state=True)
        cm, st_m = model(ids[:, 13:], st_m, return_state=True)
        assert rel(cm, cr) < TOL
        sr, _ = ref.step(ids[:, 0], st_r)
        sm, _ = model.step(ids[:, 0], st_m)
        assert rel(sm, sr) < TOL


def test_permutation_scope_and_shapes(reordered):
    ref, model, infos = reordered
    cfg = ref.config
    H, P, G = cfg.nheads, cfg.headdim, cfg.ngroups
    assert len(infos) == cfg.n_layer
    nontrivial = False
    for info in infos:
        info.validate()
        assert info.head_groups.shape == (G, 4) and info.channel_groups.shape == (G, 4, 4)
        assert info.channel_index.shape == (H * P,) and info.head_index.shape == (H,)
        hi, ci = info.head_index, info.channel_index
        assert torch.equal(hi // (H // G), torch.arange(H) // (H // G))  # heads stay in their SSD group
        assert torch.equal(ci.reshape(H, P) // P, hi[:, None].expand(H, P))  # channels stay in their head
        nontrivial |= not torch.equal(ci, torch.arange(H * P))
    assert nontrivial, "test model should produce a non-identity permutation"


def test_weight_table(reordered):
    """Spec C.4: z/x rows by ci, dt rows by hi, B/C rows and conv channels kept, out_proj columns by ci."""
    ref, model, infos = reordered
    cfg = ref.config
    e, gn = cfg.d_inner, cfg.ngroups * cfg.d_state
    a, b = ref.layers[1].mixer, model.layers[1].mixer
    ci, hi = infos[1].channel_index, infos[1].head_index
    w0, w1 = a.in_proj.weight, b.in_proj.weight
    assert torch.equal(w1[:e], w0[:e][ci])
    assert torch.equal(w1[e:2 * e], w0[e:2 * e][ci])
    assert torch.equal(w1[2 * e:2 * e + 2 * gn], w0[2 * e:2 * e + 2 * gn])
    assert torch.equal(w1[2 * e + 2 * gn:], w0[2 * e + 2 * gn:][hi])
    assert torch.equal(b.conv1d.weight[:e], a.conv1d.weight[:e][ci])
    assert torch.equal(b.conv1d.weight[e:], a.conv1d.weight[e:])
    assert torch.equal(b.conv1d.bias[:e], a.conv1d.bias[:e][ci])
    for name in ("A_log", "D", "dt_bias"):
        assert torch.equal(getattr(b, name), getattr(a, name)[hi])
    assert torch.equal(b.norm.weight, a.norm.weight[ci])
    assert torch.equal(b.out_proj.weight, a.out_proj.weight[:, ci])


def test_stats_match_manual_hook():
    model = tiny_mamba2(**CASES["d48_g2"])
    smp = samples()
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    hs = [model.layers[i].mixer.x_conv_out.register_forward_hook(
        lambda _m, _i, out, i=i: seen[i].append(out.detach().clone())) for i in range(2)]
    with torch.no_grad():
        for s in smp:
            model(s)
    for h in hs:
        h.remove()
    stats = collect_sort_cluster_stats(model, smp)
    for i in range(2):
        manual = torch.stack([x[0].abs().mean(0) for x in seen[i]]).amax(0)
        torch.testing.assert_close(stats[i], manual)
    # precomputed statistics give the same reorder as samples
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    i1, i2 = reorder_mamba2(m1, smp), reorder_mamba2(m2, stats)
    for a, b in zip(i1, i2):
        assert all(torch.equal(a.to_dict()[k], b.to_dict()[k]) for k in a.to_dict())


def test_saved_infos_reapply(reordered):
    ref, model, infos = reordered
    saved = [{k: v.clone() for k, v in info.to_dict().items()} for info in infos]
    again = copy.deepcopy(ref)
    apply_reorder(again, [ReorderInfo.from_dict(d) for d in saved])
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_reorder_after_rotations_and_refusals():
    ref = tiny_mamba2(**CASES["d32_g2_bias"])
    model = copy.deepcopy(ref)
    fuse_norms(model)
    rotate_residual(model)
    reorder_mamba2(model, samples())  # F.5: after the residual rotation is fine
    rotate_out_proj_input(model)
    ids = samples(1, seed=11)[0]
    with torch.no_grad():
        assert rel(model(ids), ref(ids)) < TOL
    with pytest.raises(ValueError, match="F.5"):  # permutation must come before the Hadamard fusion
        reorder_mamba2(model, samples())
    m1 = MambaLM(MambaConfig(arch="mamba1", d_model=32, n_layer=1, vocab_size=VOCAB, d_state=8))
    with pytest.raises(ValueError, match="Mamba2 only"):
        reorder_mamba2(m1, samples())
    with pytest.raises(ValueError, match="batch 1"):
        collect_sort_cluster_stats(ref, [torch.zeros(2, 5, dtype=torch.long)])
