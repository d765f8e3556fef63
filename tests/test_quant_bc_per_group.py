"""QuantConfig.bc_per_group: Mamba2 B / C (after the conv) with one scale per SSD group or one
per-tensor scale, independently of sort-and-cluster (the Q2-paper Table 8 ablation step "+ PerSG").

Tiny random Mamba2 (2 SSD groups, B/C of group 1 scaled up so the two groups' ranges differ).
"""

from __future__ import annotations

import json

import pytest
import torch

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.calibrate import collect_scales
from quamba_edge.quant.qconfig import QuantConfig
from quamba_edge.quant.qlm import QuantMambaLM
from quamba_edge.quant.recipes import calibration_plan, prepare_fp_model, quantize_model

V, N, G = 256, 16, 2


@pytest.fixture(scope="module")
def fp_model():
    torch.manual_seed(3)
    m = MambaLM(MambaConfig(arch="mamba2", d_model=96, n_layer=2, vocab_size=V, d_state=N, headdim=16,
                            ngroups=G, chunk_size=8)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for layer in m.layers:  # B and C rows of SSD group 1 x4: per-group absmax differ clearly
            mix = layer.mixer
            e = mix.d_inner
            for base in (2 * e, 2 * e + G * N):  # in_proj rows [z | x | B | C | dt]
                mix.in_proj.weight[base + N: base + 2 * N] *= 4.0
    return m


@pytest.fixture(scope="module")
def calib():
    return [torch.randint(0, V, (1, 32), generator=torch.Generator().manual_seed(50 + i)) for i in range(3)]


def test_defaults_follow_group_heads():
    assert QuantConfig("quamba2", "w4a8", "mamba2").bc_per_group is True
    assert QuantConfig("quamba2", "w8a8", "mamba2", group_heads=False).bc_per_group is False
    assert QuantConfig("quamba", "w8a8", "mamba2").bc_per_group is False
    assert QuantConfig("quamba2", "w4a16", "mamba2").bc_per_group is False
    assert QuantConfig("quamba2", "w8a8", "mamba1").bc_per_group is False
    assert QuantConfig("quamba2", "w4a8", "mamba2", group_heads=False, bc_per_group=True).bc_per_group
    assert not QuantConfig("quamba2", "w4a8", "mamba2", bc_per_group=False).bc_per_group


@pytest.mark.parametrize("kw", [dict(bits="w8a8", arch="mamba1"), dict(bits="w4a16", arch="mamba2")])
def test_invalid_combinations_raise(kw):
    with pytest.raises(ValueError, match="bc_per_group"):
        QuantConfig("quamba2", bc_per_group=True, **kw)


def test_dict_round_trip_and_old_dicts():
    qc = QuantConfig("quamba2", "w4a8", "mamba2", group_heads=False, bc_per_group=True)
    back = QuantConfig.from_dict(json.loads(json.dumps(qc.to_dict())))
    assert back.bc_per_group is True and back.group_heads is False
    old = QuantConfig("quamba2", "w8a8", "mamba2", group_heads=False).to_dict()
    del old["bc_per_group"]  # a config written before the option existed keeps its meaning
    assert QuantConfig.from_dict(old).bc_per_group is False


@pytest.mark.parametrize("group_heads", [False, True])
@pytest.mark.parametrize("bc_per_group", [False, True])
def test_plan_and_scales(fp_model, calib, group_heads, bc_per_group):
    qc = QuantConfig("quamba2", "w8a8", "mamba2", group_heads=group_heads, bc_per_group=bc_per_group)
    m, infos = prepare_fp_model(fp_model, qc, calib)
    plan = calibration_plan(qc, infos)
    kind = "per_ssd_group" if bc_per_group else "minmax"
    assert plan.points["B_conv_out"].kind == kind and plan.points["C_conv_out"].kind == kind
    # x / state observers are untouched by the option
    assert plan.points["x_conv_out"].kind == ("cross_head" if group_heads else "percentile")
    scales = collect_scales(m, calib, plan)
    q = QuantMambaLM.from_fp(m, qc, scales, None, reorder_infos=infos)
    for i, layer in enumerate(q.layers):
        for name in ("B", "C"):
            s = scales[f"layers.{i}.mixer.{name}_conv_out"]
            buf = getattr(layer.mixer, f"{name}_out_scale")
            assert buf.shape == (G,)
            if bc_per_group:
                assert s.shape == (G,)
                assert torch.equal(buf, s)
                assert buf[1] > 2 * buf[0]  # group 1 was scaled up
            else:
                assert s.dim() == 0
                assert torch.equal(buf, s.expand(G))


def test_quantize_model_option_and_group_scale_is_per_group_max(fp_model, calib):
    per_t = quantize_model(fp_model, "quamba2", "w4a8", calib, gptq=False, group_heads=False)
    per_g = quantize_model(fp_model, "quamba2", "w4a8", calib, gptq=False, group_heads=False,
                           bc_per_group=True)
    assert per_g.quant_config.bc_per_group and not per_t.quant_config.bc_per_group
    for lt, lg in zip(per_t.layers, per_g.layers):
        for name in ("B_out_scale", "C_out_scale"):
            t, g = getattr(lt.mixer, name), getattr(lg.mixer, name)
            assert torch.allclose(t, g.max().expand(G))  # per-tensor absmax = max of the group absmaxes
            assert g.min() < t.min()
    ids = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref = fp_model(ids)
    err = lambda q: ((q(ids).double() - ref.double()).norm() / ref.double().norm()).item()  # noqa: E731
    assert torch.isfinite(per_g(ids)).all()
    assert err(per_g) < 0.6 and err(per_t) < 0.6
    # the skeleton built from the saved config alone takes the state dict
    qc = QuantConfig.from_dict(json.loads(json.dumps(per_g.quant_config.to_dict())))
    sk = QuantMambaLM(per_g.config, qc)
    sk.load_state_dict(per_g.state_dict(), strict=True)
    assert torch.equal(sk(ids), per_g(ids))
