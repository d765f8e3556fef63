"""The integer-faithful QuantMambaLM against its fake-quant simulation (quamba_edge.quant.fakequant).

Both hold the same weights and scales; the simulation computes with float matmuls of dequantized
weights and the FP scan / SSD, the quantized model with the integer reference ops. They differ only
by float operation order, which can move an int8 activation by one step when a value sits within fp32
rounding of a quantization boundary. Tolerance: relative L2 error of the logits < 5e-3 and
max |diff| < 2 % of max |logit| (observed on these models: ~1e-7 in most combinations, ~3e-3
where one int8 value flips).
"""

from __future__ import annotations

import pytest
import torch

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.fakequant import fake_quant_model
from quamba_edge.quant.recipes import quantize_model

V = 192


def _ids(seed, shape):
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def _fp(arch):
    torch.manual_seed(3)
    kw = dict(arch=arch, d_model=64, n_layer=2, vocab_size=V, d_state=16)
    if arch == "mamba2":
        kw.update(headdim=16, ngroups=2, chunk_size=8)
    m = MambaLM(MambaConfig(**kw)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def fps():
    return {a: _fp(a) for a in ("mamba1", "mamba2")}


CALIB = [_ids(200 + i, (1, 32)) for i in range(3)]


def _cmp(a, b):
    rel = ((a.double() - b.double()).norm() / b.double().norm()).item()
    mx = ((a - b).abs().max() / b.abs().max()).item()
    return rel, mx


@pytest.mark.parametrize("recipe, bits, arch", [
    ("quamba2", "w8a8", "mamba1"),
    ("quamba2", "w8a8", "mamba2"),
    ("quamba", "w8a8", "mamba1"),
    ("quamba", "w8a8", "mamba2"),
    ("quamba2", "w4a8", "mamba2"),
    ("quamba2", "w4a16", "mamba1"),
])
def test_quantized_matches_fake_quant(recipe, bits, arch, fps):
    q = quantize_model(fps[arch], recipe, bits, CALIB)
    fq = fake_quant_model(q)
    ids = _ids(5, (2, 20))
    lq = q(ids)
    with torch.no_grad():
        lf = fq(ids)
        lfp = fps[arch](ids)
    rel, mx = _cmp(lq, lf)
    print(f"\n{recipe}-{bits}-{arch}: quant vs fake-quant rel {rel:.2e}, max {mx:.2e}; "
          f"vs FP rel {_cmp(lq, lfp)[0]:.3f}")
    assert rel < 5e-3 and mx < 2e-2
    assert _cmp(lf, lfp)[0] > 0.01  # the simulation does quantize (it is not the FP model)


def test_taps_see_the_same_dequantized_values(fps):
    """The quantized model feeds its FP-named taps with dequantized values equal to the simulation's."""
    q = quantize_model(fps["mamba2"], "quamba2", "w8a8", CALIB)
    fq = fake_quant_model(q)
    names = ["layers.0.mixer.x_conv_out", "layers.0.mixer.z_act", "layers.0.mixer.B_conv_out",
             "layers.0.mixer.ssm_state_act", "layers.1.mixer.dt_act"]
    got: dict[str, dict[str, torch.Tensor]] = {"q": {}, "f": {}}

    def grab(tag, model):
        mods = dict(model.named_modules())
        return [mods[n].register_forward_hook(
            lambda _m, _i, out, n=n: got[tag].__setitem__(n, out.detach().float())) for n in names]

    hs = grab("q", q) + grab("f", fq)
    ids = _ids(6, (1, 16))
    q(ids, return_state=True)
    with torch.no_grad():
        fq(ids, return_state=True)
    for h in hs:
        h.remove()
    for n in names:
        a, b = got["q"][n], got["f"][n]
        assert a.shape == b.shape, n
        assert _cmp(a, b)[0] < 1e-3, n
