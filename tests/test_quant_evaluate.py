"""quamba_edge.quant.evaluate: perplexity / top-1 against hand-computed values, SQNR report."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.evaluate import (
    format_perplexity,
    format_sqnr_table,
    make_windows,
    perplexity,
    sqnr_db,
    sqnr_report,
    tap_names,
)


class FixedDist(nn.Module):
    """Logits = log p for every position, whatever the input."""

    def __init__(self, p: list[float]) -> None:
        super().__init__()
        self.register_buffer("logp", torch.tensor(p, dtype=torch.float64).log().float())
        self.calls: list[tuple[int, ...]] = []

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(input_ids.shape))
        return self.logp.expand(*input_ids.shape, -1).clone()


class NextIsPlusOne(nn.Module):
    """Puts probability q on (token + 1) mod V, the rest uniform: input-dependent logits."""

    def __init__(self, vocab: int, q: float) -> None:
        super().__init__()
        self.vocab, self.q = vocab, q
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor):
        rest = (1 - self.q) / (self.vocab - 1)
        p = torch.full((*input_ids.shape, self.vocab), rest, dtype=torch.float64)
        p.scatter_(-1, ((input_ids + 1) % self.vocab).unsqueeze(-1), self.q)
        return (p.log().float(), "extra")  # a tuple: logits first


def _hand_ppl(ids: list[int], window: int, p_of) -> tuple[float, float, int]:
    """(loss, top1, tokens) computed the slow way over non-overlapping windows."""
    nll, hit, n = 0.0, 0, 0
    for s in range(0, len(ids) - window + 1, window):
        w = ids[s:s + window]
        for t in range(1, window):
            probs = p_of(w[t - 1])
            nll -= math.log(probs[w[t]])
            hit += int(max(range(len(probs)), key=lambda k: probs[k]) == w[t])
            n += 1
    return nll / n, hit / n, n


def test_perplexity_fixed_logprobs():
    p = [0.1, 0.2, 0.3, 0.4]
    ids = [0, 3, 3, 1, 2, 3, 0, 0, 3, 2, 1, 3, 3]  # 13 tokens: 3 windows of 4, 1 token dropped
    model = FixedDist(p)
    r = perplexity(model, torch.tensor(ids), window=4, batch_size=2)
    loss, top1, n = _hand_ppl(ids, 4, lambda _prev: p)
    assert r["tokens"] == n == 9 and r["windows"] == 3 and r["window"] == 4
    assert r["loss"] == pytest.approx(loss, rel=1e-6)
    assert r["ppl"] == pytest.approx(math.exp(loss), rel=1e-6)
    assert r["top1"] == pytest.approx(top1)  # argmax is token 3
    # explicit: targets are ids[1:4], ids[5:8], ids[9:12]
    targets = ids[1:4] + ids[5:8] + ids[9:12]
    assert r["loss"] == pytest.approx(-sum(math.log(p[t]) for t in targets) / 9, rel=1e-6)
    assert r["top1"] == pytest.approx(sum(t == 3 for t in targets) / 9)
    assert model.calls == [(2, 4), (1, 4)]  # batched windows


def test_perplexity_input_dependent_and_options():
    torch.manual_seed(0)
    V, q = 7, 0.6
    ids = torch.randint(0, V, (50,))
    ids[10:20] = torch.arange(10) % V  # a stretch the model predicts right
    model = NextIsPlusOne(V, q)

    def p_of(prev: int) -> list[float]:
        probs = [(1 - q) / (V - 1)] * V
        probs[(prev + 1) % V] = q
        return probs

    r1 = perplexity(model, ids, window=8, batch_size=1)
    r3 = perplexity(model, ids, window=8, batch_size=3)
    loss, top1, n = _hand_ppl(ids.tolist(), 8, p_of)
    for r in (r1, r3):
        assert r["tokens"] == n == 6 * 7
        assert r["loss"] == pytest.approx(loss, rel=1e-6)
        assert r["top1"] == pytest.approx(top1)
    assert r1["ppl"] == pytest.approx(r3["ppl"], rel=1e-6)
    r = perplexity(model, ids, window=8, max_windows=2)
    assert r["windows"] == 2 and r["tokens"] == 14
    assert r["loss"] == pytest.approx(_hand_ppl(ids[:16].tolist(), 8, p_of)[0], rel=1e-6)
    # a stream shorter than one window is scored whole
    r = perplexity(model, ids[:5], window=512)
    assert (r["windows"], r["window"], r["tokens"]) == (1, 5, 4)
    assert "perplexity" in format_perplexity(r)


def test_windows_and_errors():
    assert make_windows(torch.arange(10), 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(ValueError, match="1-D"):
        make_windows(torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="window must be >= 2"):
        make_windows(torch.arange(10), 1)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        make_windows(torch.arange(1), 4)
    with pytest.raises(ValueError, match="batch_size"):
        perplexity(FixedDist([0.5, 0.5]), torch.arange(2) % 2, window=2, batch_size=0)


def test_perplexity_of_a_real_model_matches_cross_entropy():
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(arch="mamba1", d_model=16, n_layer=2, vocab_size=32)).eval()
    ids = torch.randint(0, 32, (40,))
    r = perplexity(model, ids, window=10)
    with torch.no_grad():
        logits = model(ids.reshape(4, 10))
    ref = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 32), ids.reshape(4, 10)[:, 1:].reshape(-1))
    assert r["loss"] == pytest.approx(float(ref), rel=1e-5)
    assert r["ppl"] == pytest.approx(math.exp(float(ref)), rel=1e-5)


# ---- SQNR ---------------------------------------------------------------------------------------


class Scale(nn.Module):
    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


def _tiny(arch: str) -> MambaLM:
    torch.manual_seed(0)
    kw = {} if arch == "mamba1" else dict(headdim=4, ngroups=2, d_state=8, chunk_size=8)
    return MambaLM(MambaConfig(arch=arch, d_model=16, n_layer=2, vocab_size=40, **kw)).eval()


def test_sqnr_db():
    assert sqnr_db(1.0, 0.01) == pytest.approx(20.0)
    assert sqnr_db(1.0, 0.0) == float("inf")
    assert sqnr_db(0.0, 1.0) == float("-inf")


def test_sqnr_report_known_noise():
    fp = _tiny("mamba1")
    q = copy.deepcopy(fp)
    q.layers[1].mixer.ssm_out = Scale(1.1)  # noise = 0.01·signal at this tap -> exactly 20 dB
    samples = [torch.randint(0, 40, (1, 12)) for _ in range(3)]
    rows = sqnr_report(fp, q, samples, threshold_db=10.0)
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == tap_names(fp) + ["logits"]
    assert by["layers.1.mixer.ssm_out"]["sqnr_db"] == pytest.approx(20.0, abs=1e-4)  # fp32 rounding of x·1.1
    for n in ("layers.0.mixer.x_conv_out", "layers.0.mixer.ssm_out", "layers.1.mixer.x_conv_out"):
        assert by[n]["sqnr_db"] == float("inf")  # upstream of the noise: identical
    assert math.isfinite(by["logits"]["sqnr_db"])
    assert by["layers.1.mixer.ssm_out"]["worst"] and by["layers.1.mixer.ssm_out"]["low"] is False
    assert by["layers.1.mixer.ssm_out"]["layer"] == 1 and by["layers.1.mixer.ssm_out"]["tap"] == "mixer.ssm_out"
    low = {r["name"]: r["low"] for r in sqnr_report(fp, q, samples, threshold_db=25.0)}
    assert low["layers.1.mixer.ssm_out"] and not low["layers.0.mixer.ssm_out"]
    table = format_sqnr_table(rows, threshold_db=25.0)
    line = next(ln for ln in table.splitlines() if "mixer.ssm_out" in ln and "20.00" in ln)
    assert "LOW" in line and "<- worst" in line
    assert "worst: layers.1.mixer.ssm_out at 20.00 dB" in table
    # restricting taps
    rows = sqnr_report(fp, q, samples, taps=["layers.1.mixer.ssm_out"], include_logits=False)
    assert [r["name"] for r in rows] == ["layers.1.mixer.ssm_out"]
    with pytest.raises(ValueError, match="unknown tap"):
        sqnr_report(fp, q, samples, taps=["nope"])


def test_sqnr_undoes_mamba2_reorder():
    """A reordered (permuted) Mamba2 computes the same function; with the permutation exposed on the
    mixer, every tap compares equal; without it the permuted taps do not."""
    from quamba_edge.quant.reorder import reorder_mamba2

    fp = _tiny("mamba2")
    q = copy.deepcopy(fp)
    g = torch.Generator().manual_seed(1)
    stats = [torch.rand(fp.config.d_inner, generator=g) for _ in range(fp.config.n_layer)]
    infos = reorder_mamba2(q, stats, nhead_groups=2, ndim_groups=2)
    assert any(not torch.equal(i.channel_index, torch.arange(i.channel_index.numel())) for i in infos)
    samples = [torch.randint(0, 40, (1, 16), generator=g) for _ in range(2)]
    raw = {r["name"]: r["sqnr_db"] for r in sqnr_report(fp, q, samples)}
    assert raw["logits"] > 100  # compute invariance
    assert raw["layers.0.mixer.x_conv_out"] < 10  # permuted, not aligned
    for layer, info in zip(q.layers, infos):
        layer.mixer.reorder_info = info
    aligned = {r["name"]: r["sqnr_db"] for r in sqnr_report(fp, q, samples)}
    for name, db in aligned.items():
        assert db > 100, (name, db)


def test_sqnr_on_a_quantized_mamba2_with_reorder():
    """Q's quamba2 W8A8 Mamba2 (rotated residual, sort-and-cluster): the mixer taps line up with the
    un-rotated, un-permuted FP model through the recorded channel_index / head_index."""
    recipes = pytest.importorskip("quamba_edge.quant.recipes")
    torch.manual_seed(0)
    fp = MambaLM(MambaConfig(arch="mamba2", d_model=32, n_layer=2, vocab_size=64, headdim=8, d_state=8,
                             chunk_size=16)).eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randint(0, 64, (1, 32), generator=g) for _ in range(8)]
    q = recipes.quantize_model(fp, "quamba2", "w8a8", calib)
    perms = [layer.mixer.channel_index for layer in q.layers]
    assert any(not torch.equal(p, torch.arange(p.numel())) for p in perms)
    rows = {r["name"]: r["sqnr_db"] for r in sqnr_report(fp, q, calib[:3])}
    assert all(db > 15 for db in rows.values()), rows  # W8A8 on a tiny random model
    for layer in q.layers:  # forget the permutation: the permuted taps stop matching
        layer.mixer.channel_index.copy_(torch.arange(layer.mixer.channel_index.numel()))
    broken = {r["name"]: r["sqnr_db"] for r in sqnr_report(fp, q, calib[:3])}
    assert min(broken["layers.0.mixer.x_conv_out"], broken["layers.1.mixer.x_conv_out"]) < 10
