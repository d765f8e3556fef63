"""collect_scales: keys, shapes, and values against statistics computed here from our own hooks
(spec B.2, C.5, C.6, F.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.calibrate import CalibrationPlan, ObserverSpec, collect_scales
from quamba_edge.quant.quantize import MIN_AMAX
from quamba_edge.quant.reorder import reorder_mamba2
from quamba_edge.quant.rotation import HadamardLinear, fuse_norms, rotate_out_proj_input, rotate_residual

VOCAB = 64


def tiny(arch: str, seed: int = 0, **kw) -> MambaLM:
    torch.manual_seed(seed)
    model = MambaLM(MambaConfig(arch=arch, n_layer=2, vocab_size=VOCAB, **kw)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name == "norm_f.weight":
                p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith("in_proj.weight"):
                p.mul_(torch.rand(p.shape[0], 1) * 3 + 0.2)
    return model


def hand_samples(n: int = 4) -> list[torch.Tensor]:
    """Hand-made inputs of different lengths (batch 1)."""
    base = [3, 17, 42, 5, 60, 8, 8, 1, 33, 21, 50, 7, 12, 63, 0, 29, 44, 9, 18, 36]
    return [torch.tensor((base[k:] + base[:k])[: 8 + 3 * k]).reshape(1, -1) for k in range(n)]


def capture(model: MambaLM, smp: list[torch.Tensor], points: list[str]) -> dict[str, list[torch.Tensor]]:
    """Per key, the observed tensor of every sample, from hooks installed here (not collect_scales')."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []

    def hook(key: str, pick):
        seen[key] = []
        return lambda _m, inp, out: seen[key].append(pick(inp, out).detach().clone())

    for i, layer in enumerate(model.layers):
        mx = layer.mixer
        for p in points:
            key = f"layers.{i}.mixer.{p}"
            if p == "dt_proj:output":  # the Δraw the scan receives: wrap the mixer's _ssm
                seen[key] = []
                orig = mx._ssm

                def wrapped(x, dt, *a, _orig=orig, _key=key):
                    seen[_key].append(dt.detach().clone())
                    return _orig(x, dt, *a)

                mx._ssm = wrapped
                handles.append(("ssm", mx))
                continue
            if ":" in p:
                name, side = p.split(":")
                mod = getattr(mx, name)
                mod = mod.linear if isinstance(mod, HadamardLinear) else mod
                pick = (lambda inp, out: inp[0]) if side == "input" else (lambda inp, out: out)
            else:
                mod, pick = getattr(mx, p), (lambda inp, out: out)
            handles.append(mod.register_forward_hook(hook(key, pick)))
    handles.append(model.lm_head.register_forward_hook(hook("lm_head:input", lambda inp, out: inp[0])))
    try:
        with torch.no_grad():
            for s in smp:
                model(s, return_state=True)
    finally:
        for h in handles:
            if isinstance(h, tuple):
                del h[1]._ssm  # back to the class method
            else:
                h.remove()
    return seen


def s_of(amax: torch.Tensor) -> torch.Tensor:
    return amax.float().clamp_min(MIN_AMAX) / 127


def minmax(ts: list[torch.Tensor]) -> torch.Tensor:
    return s_of(torch.stack([t.abs().max() for t in ts]).max())


def percentile(ts: list[torch.Tensor], alpha: float, momentum: float = 0.01) -> torch.Tensor:
    m = None
    for t in ts:
        q = torch.quantile(t.abs().flatten().float(), alpha)
        m = q if m is None else m + momentum * (q - m)
    return s_of(m)


def blocks(info, H: int, P: int):
    """Yield (g, i, j, heads, channels) of every non-empty block, from the group sizes."""
    G, m = info.head_groups.shape
    hpg = H // G
    for g in range(G):
        h0 = g * hpg
        for i in range(m):
            nh = int(info.head_groups[g, i])
            c0 = 0
            for j in range(info.channel_groups.shape[2]):
                nc = int(info.channel_groups[g, i, j])
                if nh and nc:
                    yield g, i, j, slice(h0, h0 + nh), slice(c0, c0 + nc)
                c0 += nc
            h0 += nh


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


# ---- Mamba1 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["v1", "percentile"])
def test_mamba1_values(preset):
    model = tiny("mamba1", d_model=48, d_state=8)
    if preset == "v1":  # paper path: only the out_proj-input Hadamard
        rotate_out_proj_input(model)
        plan, alpha = CalibrationPlan.quamba_v1("mamba1"), 0.99999
    else:
        fuse_norms(model)
        rotate_residual(model)
        rotate_out_proj_input(model)
        plan, alpha = CalibrationPlan.quamba_percentile("mamba1", alpha=0.9), 0.9
    smp = hand_samples()
    scales = collect_scales(model, smp, plan)
    assert no_hooks_left(model)
    assert set(scales) == set(plan.keys(2))
    pts = ["in_proj:input", "in_proj:output", "x_proj:input", "x_proj:output", "dt_proj:output",
           "out_proj:input", "out_proj:output", "ssm_state_act", "ssm_out"]
    seen = capture(model, smp, pts)
    for i in range(2):
        k = f"layers.{i}.mixer."
        for p in ("in_proj:input", "in_proj:output", "x_proj:output", "dt_proj:output", "out_proj:input",
                  "out_proj:output"):
            assert scales[k + p].shape == () and scales[k + p].dtype == torch.float32
            torch.testing.assert_close(scales[k + p], minmax(seen[k + p]), rtol=1e-6, atol=0)
        torch.testing.assert_close(scales[k + "x_proj:input"], percentile(seen[k + "x_proj:input"], alpha))
        assert torch.equal(scales[k + "x_conv_out"], scales[k + "x_proj:input"])
        # out_proj:input is the Hadamard-domain tensor, not the tap before it
        m = model.layers[i].mixer.out_proj.hadamard_matrix
        torch.testing.assert_close(seen[k + "out_proj:input"][0], seen[k + "ssm_out"][0] @ m.T)
        if preset == "v1":
            assert k + "ssm_state_act" not in scales
        else:
            exp = percentile(seen[k + "ssm_state_act"], alpha)
            torch.testing.assert_close(scales[k + "ssm_state_act"], exp)
    torch.testing.assert_close(scales["lm_head:input"], minmax(seen["lm_head:input"]), rtol=1e-6, atol=0)


def test_final_state_is_observed():
    model = tiny("mamba1", d_model=32, d_state=8)
    smp = hand_samples(2)
    plan = CalibrationPlan("mamba1", {"ssm_state_act": ObserverSpec("minmax")}, lm_head_input=None)
    scales = collect_scales(model, smp, plan)
    with torch.no_grad():
        finals = [model(s, return_state=True)[1].ssm[0] for s in smp]
    torch.testing.assert_close(scales["layers.0.mixer.ssm_state_act"], minmax(finals), rtol=1e-6, atol=0)
    assert set(scales) == {"layers.0.mixer.ssm_state_act", "layers.1.mixer.ssm_state_act"}


# ---- Mamba2 -----------------------------------------------------------------------------------

M2 = dict(d_model=48, d_state=8, headdim=8, ngroups=2, chunk_size=8)  # H = 12, 6 heads per SSD group
M2_MINMAX = ["in_proj:input", "in_proj:output", "z_act", "x_conv_in", "B_conv_in", "C_conv_in", "dt_act",
             "ssd_out", "out_proj:input", "out_proj:output"]


def test_mamba2_quamba2_values():
    model = tiny("mamba2", **M2)
    fuse_norms(model)
    rotate_residual(model)
    infos = reorder_mamba2(model, hand_samples(3))
    rotate_out_proj_input(model)
    smp = hand_samples()
    plan = CalibrationPlan.quamba2_mamba2(infos)
    scales = collect_scales(model, smp, plan)
    assert no_hooks_left(model)
    assert set(scales) == set(plan.keys(2))
    seen = capture(model, smp, M2_MINMAX + ["x_conv_out", "B_conv_out", "C_conv_out", "ssm_state_act"])
    H, P, G, N = 12, 8, 2, 8
    for i in range(2):
        k = f"layers.{i}.mixer."
        for p in M2_MINMAX:
            assert scales[k + p].shape == ()
            torch.testing.assert_close(scales[k + p], minmax(seen[k + p]), rtol=1e-6, atol=0)
        for p in ("B_conv_out", "C_conv_out"):  # per SSD group: [G]
            exp = torch.stack([t.reshape(-1, G, N).abs().amax(dim=(0, 2)) for t in seen[k + p]]).amax(0)
            assert scales[k + p].shape == (G,)
            torch.testing.assert_close(scales[k + p], s_of(exp), rtol=1e-6, atol=0)
        x = torch.cat([t.reshape(-1, H, P) for t in seen[k + "x_conv_out"]])  # permuted order
        st = torch.cat(seen[k + "ssm_state_act"])  # [samples, H, P, N]
        exp_x = torch.zeros(G, 4, 4)
        exp_s = torch.zeros(G, 4, 4, N)
        for g, a, b, hs, cs in blocks(infos[i], H, P):
            exp_x[g, a, b] = x[:, hs, cs].abs().max()
            exp_s[g, a, b] = st[:, hs, cs, :].abs().amax(dim=(0, 1, 2))
        assert scales[k + "x_conv_out"].shape == (G, 4, 4)
        assert scales[k + "ssm_state_act"].shape == (G, 4, 4, N)
        torch.testing.assert_close(scales[k + "x_conv_out"], s_of(exp_x), rtol=1e-6, atol=0)
        torch.testing.assert_close(scales[k + "ssm_state_act"], s_of(exp_s), rtol=1e-6, atol=0)
    torch.testing.assert_close(scales["lm_head:input"], minmax(seen["lm_head:input"]), rtol=1e-6, atol=0)


def test_mamba2_percentile_plan():
    model = tiny("mamba2", **M2)
    smp = hand_samples(3)
    plan = CalibrationPlan.quamba_percentile("mamba2", alpha=0.95)
    scales = collect_scales(model, smp, plan)
    seen = capture(model, smp, ["x_conv_out", "ssm_state_act", "B_conv_out"])
    for i in range(2):
        k = f"layers.{i}.mixer."
        torch.testing.assert_close(scales[k + "x_conv_out"], percentile(seen[k + "x_conv_out"], 0.95))
        torch.testing.assert_close(scales[k + "ssm_state_act"], percentile(seen[k + "ssm_state_act"], 0.95))
        exp = minmax(seen[k + "B_conv_out"])
        torch.testing.assert_close(scales[k + "B_conv_out"], exp, rtol=1e-6, atol=0)
    v1 = CalibrationPlan.quamba_v1("mamba2")
    assert v1.points["x_conv_out"].alpha == 0.99999 and "ssm_state_act" not in v1.points


def test_errors_and_hook_cleanup():
    model = tiny("mamba2", **M2)
    with pytest.raises(ValueError, match="mamba1"):
        collect_scales(model, hand_samples(1), CalibrationPlan.quamba_v1("mamba1"))
    bad = CalibrationPlan("mamba2", {"nope": ObserverSpec()})
    with pytest.raises(ValueError, match="not a tap point"):
        collect_scales(model, hand_samples(1), bad)
    grouped = CalibrationPlan("mamba2", {"x_conv_out": ObserverSpec("cross_head")})
    with pytest.raises(ValueError, match="ReorderInfo"):
        collect_scales(model, hand_samples(1), grouped)
    assert no_hooks_left(model)
    plan = CalibrationPlan.quamba_percentile("mamba2")
    with pytest.raises(ValueError, match="batch 1"):  # fails mid-run: hooks must still be removed
        collect_scales(model, [hand_samples(1)[0], torch.zeros(2, 4, dtype=torch.long)], plan)
    assert no_hooks_left(model)
    with pytest.raises(ValueError, match="alpha"):
        ObserverSpec("percentile")
