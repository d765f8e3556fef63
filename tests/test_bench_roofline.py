"""quamba_edge.bench.roofline: byte counts grounded in the model skeletons, floors, the Orin projection and
kernel attribution (CPU only: the skeletons are built on the meta device)."""

from __future__ import annotations

import math

import pytest
import torch

from quamba_edge.bench import roofline as rl
from quamba_edge.models.config import MambaConfig
from quamba_edge.models.lm import MambaLM
from quamba_edge.quant.qlm import QuantMambaLM

TINY = {
    "mamba1": MambaConfig(arch="mamba1", d_model=256, n_layer=2, vocab_size=1000, d_state=16),
    "mamba2": MambaConfig(arch="mamba2", d_model=256, n_layer=2, vocab_size=1000, d_state=64, headdim=32,
                          ngroups=2, chunk_size=64),
}


def _skeleton_bytes(cfg: MambaConfig, precision: str, recipe: str = "quamba2") -> int:
    """Every unique parameter / buffer of the model as built by the project (independently of roofline)."""
    qc = rl.default_quant_config(cfg, precision, recipe)
    m = (MambaLM(cfg, device="meta", dtype=torch.float16) if qc is None
         else QuantMambaLM(cfg, qc, device="meta"))
    seen, n = set(), 0
    for t in (*m.parameters(), *m.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            n += t.numel() * t.element_size()
    return n


def _by_name(costs):
    return {c.name: c for c in costs}


# ---- shapes ----------------------------------------------------------------------------------------------


def test_model_shapes_match_the_published_configs():
    m1 = {"mamba-130m": (768, 24), "mamba-370m": (1024, 48), "mamba-790m": (1536, 48),
          "mamba-1.4b": (2048, 48), "mamba-2.8b": (2560, 64)}
    for name, (d, nl) in m1.items():
        c = rl.model_config(name)
        assert (c.arch, c.d_model, c.n_layer, c.d_state, c.expand, c.vocab_size, c.tie_embeddings) == \
            ("mamba1", d, nl, 16, 2, 50280, True)
    m2 = {"mamba2-130m": (768, 24), "mamba2-370m": (1024, 48), "mamba2-780m": (1536, 48),
          "mamba2-1.3b": (2048, 48), "mamba2-2.7b": (2560, 64)}
    for name, (d, nl) in m2.items():
        c = rl.model_config(name)
        # vocab 50277 padded to mamba2's pad_vocab_size_multiple 16
        assert (c.arch, c.d_model, c.n_layer, c.d_state, c.headdim, c.ngroups, c.expand, c.vocab_size,
                c.tie_embeddings) == ("mamba2", d, nl, 128, 64, 1, 2, 50288, True)
    c = rl.model_config("mamba2-8b")
    assert (c.d_model, c.n_layer, c.d_state, c.headdim, c.ngroups, c.expand, c.vocab_size, c.tie_embeddings,
            c.chunk_size) == (4096, 56, 128, 64, 8, 2, 256000, False, 128)
    # the shapes benchmarks/kernels.py times
    assert rl.model_config("mamba2-2.7b").nheads == 80 and c.nheads == 128 and c.d_inner == 8192


def test_bad_names_give_clear_errors():
    with pytest.raises(ValueError, match="unknown model shape 'mamba-7b'.*mamba2-8b"):
        rl.model_config("mamba-7b")
    with pytest.raises(ValueError, match="unknown precision 'int3'.*w4a8"):
        rl.op_costs(TINY["mamba1"], "int3")
    with pytest.raises(ValueError, match="unknown precision"):
        rl.quant_config("mamba-130m", "fp8")
    with pytest.raises(ValueError, match="unsupported combination"):
        rl.quant_config("mamba2-130m", "w4a8", recipe="quamba")
    with pytest.raises(ValueError, match="seq_len=1"):
        rl.op_costs(TINY["mamba1"], "fp16", seq_len=8)
    with pytest.raises(ValueError, match="phase"):
        rl.op_costs(TINY["mamba1"], "fp16", phase="train")
    with pytest.raises(ValueError, match="quant_config"):
        rl.op_costs(TINY["mamba1"], "w8a8", quant_config=rl.default_quant_config(TINY["mamba1"], "w4a8"))
    assert rl.quant_config("mamba-130m", "fp16") is None


# ---- bytes grounded in the skeleton ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
@pytest.mark.parametrize("precision", rl.PRECISIONS)
def test_weight_bytes_equal_the_skeleton(arch, precision):
    cfg = TINY[arch]
    costs = rl.op_costs(cfg, precision)
    assert sum(c.weight_bytes for c in costs) == _skeleton_bytes(cfg, precision)


def test_weight_bytes_equal_the_skeleton_quamba_v1_and_named_shapes():
    cfg = TINY["mamba1"]
    qc = rl.default_quant_config(cfg, "w8a8", "quamba")
    assert sum(c.weight_bytes for c in rl.op_costs(cfg, "w8a8", quant_config=qc)) == \
        _skeleton_bytes(cfg, "w8a8", "quamba")
    for name in ("mamba-130m", "mamba2-130m"):
        cfg = rl.model_config(name)
        for p in rl.PRECISIONS:
            assert sum(c.weight_bytes for c in rl.op_costs(cfg, p)) == _skeleton_bytes(cfg, p), (name, p)


def test_linear_formats_by_hand():
    """in_proj of mamba2-130m (K = 768, N = 2E + 2GN + H = 3352, 5 output segments) in each format."""
    cfg = rl.model_config("mamba2-130m")
    k, n, nl, s = cfg.d_model, cfg.in_proj_dim, cfg.n_layer, 5
    assert n == 2 * 1536 + 2 * 128 + 24
    ng = math.ceil(k / 128)
    expect = {
        "fp16": 2 * n * k,
        "w8a8": n * k + 4 * s + 4 + 4 * s,  # int8 weight, fp32 per-segment weight / output scales, input scale
        "w4a8": n * k // 2 + 2 * n * ng + 4 * n + 4 + 4 * s,  # packed int4, fp16 group, fp32 row scales
        "w4a16": n * k // 2 + 2 * n * ng,  # packed int4, fp16 group scales
    }
    for p, per_layer in expect.items():
        ip = _by_name(rl.op_costs(cfg, p))["in_proj"]
        assert ip.weight_bytes == ip.weight_read == nl * per_layer, p
        assert ip.launches == nl and ip.kind == "linear"
        assert (ip.int_ops > 0) == (p in ("w8a8", "w4a8")) and (ip.tensor_flops > 0) == (p in ("fp16", "w4a16"))


@pytest.mark.parametrize("name", ["mamba-2.8b", "mamba2-2.7b", "mamba2-8b"])
def test_w4_reads_fewer_bytes_than_w8_than_fp16(name):
    cfg = rl.model_config(name)
    w = {p: rl.total(rl.op_costs(cfg, p)).weight_read for p in rl.PRECISIONS}
    assert w["w4a8"] < w["w8a8"] < w["fp16"] and w["w4a16"] < w["w8a8"]
    assert w["fp16"] / w["w4a8"] > 3.5


def test_embedding_reads_rows_and_tied_head_reads_the_table():
    cfg = rl.model_config("mamba-130m")
    for p in rl.PRECISIONS:
        c1, c4 = _by_name(rl.op_costs(cfg, p, batch=1)), _by_name(rl.op_costs(cfg, p, batch=4))
        table = c1["embedding"].weight_bytes
        assert c1["embedding"].weight_read == table // cfg.vocab_size
        assert c4["embedding"].weight_read == 4 * (table // cfg.vocab_size)
    fp = _by_name(rl.op_costs(cfg, "fp16"))
    assert fp["lm_head"].weight_bytes == 0  # tied: owns no memory...
    assert fp["lm_head"].weight_read == fp["embedding"].weight_bytes == 2 * cfg.vocab_size * cfg.d_model


def test_batch_scales_state_and_activations_not_weights():
    cfg = rl.model_config("mamba2-370m")
    one, eight = rl.op_costs(cfg, "w4a8", batch=1), rl.op_costs(cfg, "w4a8", batch=8)
    for a, b in zip(one, eight):
        assert a.name == b.name
        assert (b.state_read, b.state_written, b.state_bytes) == (8 * a.state_read, 8 * a.state_written,
                                                                   8 * a.state_bytes)
        assert (b.act_read, b.act_written) == (8 * a.act_read, 8 * a.act_written)
        assert b.weight_bytes == a.weight_bytes
        if a.name != "embedding":
            assert b.weight_read == a.weight_read
    assert rl.total(eight).state_read == 8 * rl.total(one).state_read > 0


def test_state_dtypes_follow_the_recipes():
    cfg = rl.model_config("mamba2-130m")
    elems = cfg.n_layer * cfg.nheads * cfg.headdim * cfg.d_state
    conv = cfg.n_layer * cfg.conv_dim * (cfg.d_conv - 1)
    for p, ssm_b, conv_b in (("w8a8", 1, 1), ("w4a8", 1, 1), ("w4a16", 2, 2), ("fp16", 4, 2)):
        c = _by_name(rl.op_costs(cfg, p, batch=3))
        assert c["ssd_state_update"].state_read == c["ssd_state_update"].state_written == 3 * elems * ssm_b, p
        assert c["causal_conv1d"].state_read == 3 * conv * conv_b, p
    v1 = _by_name(rl.op_costs(TINY["mamba1"], "w8a8",
                              quant_config=rl.default_quant_config(TINY["mamba1"], "w8a8", "quamba")))
    t = TINY["mamba1"]
    assert v1["selective_state_update"].state_bytes == t.n_layer * t.d_inner * t.d_state * 2  # fp16 state


def test_op_list_matches_how_the_model_runs():
    m1 = [c.name for c in rl.op_costs(rl.model_config("mamba-130m"), "w8a8")]
    assert m1 == ["embedding", "add_rms_norm", "in_proj", "causal_conv1d", "x_proj", "dt_proj",
                  "selective_state_update", "quant_hadamard", "out_proj", "final_norm", "lm_head"]
    m2 = [c.name for c in rl.op_costs(rl.model_config("mamba2-130m"), "fp16")]
    assert m2 == ["embedding", "add_rms_norm", "in_proj", "causal_conv1d", "ssd_state_update", "gated_rms_norm",
                  "out_proj", "final_norm", "lm_head"]
    pre = [c.name for c in rl.op_costs(rl.model_config("mamba2-130m"), "w4a16", phase="prefill", seq_len=64)]
    assert "ssd" in pre and "hadamard" in pre
    assert set(rl.summarize_by_kind(rl.op_costs(rl.model_config("mamba2-130m"), "w8a8"))) <= set(rl.OP_KINDS)


def test_prefill_costs():
    cfg = rl.model_config("mamba2-130m")
    c = _by_name(rl.op_costs(cfg, "w8a8", batch=2, phase="prefill", seq_len=128))
    assert c["ssd"].state_read == 0 and c["ssd"].state_written > 0  # a fresh prompt
    assert c["in_proj"].tokens == 256 and c["in_proj"].act_read == cfg.n_layer * 256 * cfg.d_model
    # logits of the last token of each sequence only
    assert c["lm_head"].act_written == 2 * cfg.vocab_size * 4
    assert c["lm_head"].int_ops == 2 * 2 * cfg.d_model * cfg.vocab_size


# ---- floors ----------------------------------------------------------------------------------------------


def test_floor_is_bytes_over_bandwidth_and_launches():
    costs = rl.op_costs(rl.model_config("mamba2-130m"), "w4a8")
    t = rl.total(costs)
    f = rl.floor_us(costs, read_gbps=4000.0, write_gbps=2000.0, launch_us=1.5)
    assert f.bytes_us == pytest.approx(t.bytes_read / 4e6 + t.bytes_written / 2e6)  # GB/s = 1e3 B/us
    assert f.launch_us == pytest.approx(1.5 * t.launches)
    assert f.total_us == pytest.approx(sum(max(o.bytes_us, o.launch_us) for o in f.per_op))
    assert f.total_us >= max(f.bytes_us, f.launch_us)
    kinds = f.by_kind()
    assert sum(k.floor_us for k in kinds.values()) == pytest.approx(f.total_us)
    assert kinds["linear"].bytes == sum(c.bytes for c in costs if c.kind == "linear")
    no_launch = rl.floor_us(costs, 4000.0)
    assert no_launch.launch_us == 0 and no_launch.write_gbps == 4000.0
    assert no_launch.total_us == pytest.approx(no_launch.bytes_us)
    with pytest.raises(ValueError, match="read_gbps"):
        rl.floor_us(costs, 0)


# ---- projection ------------------------------------------------------------------------------------------


def test_projection_is_labelled_and_memory_fit():
    cfg = rl.model_config("mamba2-8b")
    fp16 = rl.project(rl.op_costs(cfg, "fp16"))
    w4a8 = rl.project(rl.op_costs(cfg, "w4a8"))
    assert not fp16.memory.fits and "does NOT fit" in fp16.memory.describe()
    assert w4a8.memory.fits
    assert w4a8.memory.weights == _skeleton_bytes(cfg, "w4a8")
    for p in (fp16, w4a8):
        assert "PROJECTION" in p.label and p.to_dict()["projection"] is True
        md = p.to_markdown()
        assert "PROJECTION" in md and "ASSUMED" in md and "µs per kernel launch" in md
    # the pure roofline (efficiency 1) of W4A8 on the 68 GB/s Orin: bytes / 68 GB/s + 5 us per launch
    t = rl.total(rl.op_costs(cfg, "w4a8"))
    assert w4a8.total_us >= t.bytes / 68e3 + 5.0 * t.launches
    super_ = rl.project(rl.op_costs(cfg, "w4a8"), device=rl.ORIN_NANO_8G_SUPER)
    assert super_.total_us < w4a8.total_us
    no_launch = rl.project(rl.op_costs(cfg, "w4a8"), launch_us=0.0)
    assert w4a8.total_us - no_launch.total_us == pytest.approx(5.0 * t.launches)


def test_projection_uses_host_efficiency():
    costs = rl.op_costs(rl.model_config("mamba2-370m"), "w4a8")
    host = {"read_gbps": 4000.0, "launch_us": 1.0}
    hf = rl.floor_us(costs, 4000.0, launch_us=1.0).by_kind()
    measured = {k: 2.0 * f.floor_us for k, f in hf.items()}  # every kind at half its host floor rate
    measured["other"] = 123.0
    p = rl.project(costs, measured, host)
    assert all(o.efficiency == pytest.approx(0.5) for o in p.per_op)
    base = rl.project(costs)
    for a, b in zip(p.per_op, base.per_op):
        assert a.bytes_us == pytest.approx(2.0 * b.bytes_us)
    assert any("other" in a and "not projected" in a for a in p.assumptions)
    fast = rl.project(costs, {"linear": 1e-3}, host)  # faster than the floor: capped at 1
    assert {o.efficiency for o in fast.per_op} == {1.0}
    by_name = rl.project(costs, {"in_proj": 2.0 * rl.floor_us(costs, 4000.0, launch_us=1.0).per_op[2].floor_us},
                         host)
    assert _by_name(by_name.per_op)["in_proj"].efficiency == pytest.approx(0.5)
    assert _by_name(by_name.per_op)["out_proj"].efficiency == 1.0
    with pytest.raises(ValueError, match="host_floor"):
        rl.project(costs, measured)


# ---- profiler attribution / table ----------------------------------------------------------------------------


def test_attribute_kernels_maps_names_to_op_kinds():
    events = [
        ("void quamba::lin::gemv_kernel<quamba::(anonymous namespace)::W4A8, 2>(quamba::(anonymous namespace)::"
         "W4A8::Params)", 10.0),
        ("void quamba::lin::gemm::gemm_kernel<quamba::(anonymous namespace)::W8A8Gemm>(...)", 1.0),
        ("w4a16_linear", 1.0),
        ("_ZN6quamba12_GLOBAL__N_115ssd_update_rowsILi1ELi8EEEv31QuambaQuantSSDStateUpdateParamsjb", 2.0),
        ("quamba_selective_state_update_kernel", 1.0),
        ("quant_ssd_kernel<128, 16>", 1.0),
        ("quamba_causal_conv1d_kernel<4, 16, true>", 3.0),
        ("void quamba::(anonymous namespace)::quant_hadamard_kernel<40, 8>(QuambaQuantHadamardParams, int)", 4.0),
        ("quant_add_rms_norm_kernel<16>", 5.0),
        ("quant_gated_rms_norm_kernel<32>", 6.0),
        ("gemv2T_kernel_val<int, int, __half, __half, __half, __half, 128, 16, 4, 4, false, false>", 7.0),
        ("nvjet_hsh_128x64_64x6_2x1_v_bz_coopA_NNT", 8.0),
        ("void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::Half, long, unsigned int, 2>", 0.5),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", 9.0),
        ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<...>", 1.0),
    ]
    kinds = rl.attribute_kernels(events)
    assert kinds == pytest.approx({"linear": 27.0, "ssm": 4.0, "conv": 3.0, "hadamard": 4.0, "norm": 11.0,
                                   "embedding": 0.5, "other": 10.0})
    assert set(kinds) <= set(rl.OP_KINDS)
    labels = rl.attribute_kernels(events, by="label")
    assert labels["linear (cuBLAS)"] == 15.0 and labels["linear (w4a8 kernel)"] == 10.0
    assert labels["ssd_state_update"] == 2.0 and labels["other (torch elementwise / copies)"] == 10.0
    # other input forms: a {name: us} dict and chrome-trace events
    assert rl.attribute_kernels({"quant_add_rms_norm_kernel": 2.0, "foo": 1.0}) == {"norm": 2.0, "other": 1.0}
    assert rl.attribute_kernels([{"name": "w8a8_linear", "dur": 3.0}]) == {"linear": 3.0}
    with pytest.raises(ValueError):
        rl.attribute_kernels([("only a name",)])


def test_roofline_table_joins_costs_and_measurements():
    costs = rl.op_costs(rl.model_config("mamba2-130m"), "w8a8")
    measured = {"linear": 40.0, "ssm": 5.0, "norm": 9.0, "conv": 3.0, "hadamard": 3.0, "embedding": 1.0,
                "other": 20.0}
    md = rl.roofline_table(costs, measured, read_gbps=4000.0, launch_us=1.0)
    lines = md.splitlines()
    assert lines[0] == "| op kind | bytes | floor µs | measured µs | × floor | share of total |"
    assert any(line.startswith("| other | — | — | 20.00 |") for line in lines)
    assert any(line.startswith("| **total** |") and "81.00" in line for line in lines)
    f = rl.floor_us(costs, 4000.0, launch_us=1.0)
    assert rl.roofline_table(costs, measured, floor=f) == md
    no_meas = rl.roofline_table(costs, floor=f)
    assert "| linear |" in no_meas and "100.0%" in no_meas
    with pytest.raises(ValueError, match="read_gbps"):
        rl.roofline_table(costs)
