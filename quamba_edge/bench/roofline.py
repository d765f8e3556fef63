"""Roofline of a Mamba / Mamba2 forward: bytes, FLOPs and launches per op, the floor they imply on the
machine that ran them, and a Jetson Orin Nano projection (labelled as one).

What is counted (``op_costs``), one :class:`OpCost` per op as the model runs it, summed over the layers:

    embedding | per layer: add_rms_norm -> in_proj -> causal_conv1d -> [x_proj -> dt_proj] (Mamba1)
    -> SSM step (selective_state_update / ssd_state_update; selective_scan / ssd for prefill)
    -> [gated_rms_norm] (Mamba2) -> [quant_hadamard | hadamard] (when the recipe rotates) -> out_proj
    | final_norm -> lm_head

* **Weights** come from the model skeleton itself: ``MambaLM(cfg, device="meta", dtype=float16)`` or
  ``QuantMambaLM(cfg, qc, device="meta")``; every parameter / buffer is assigned to the op whose kernel reads
  it (an unknown tensor name raises, so the count cannot drift from the model). The formats are therefore the
  real ones: fp16 weights, W8A8 int8 + fp32 scales, W4A8 packed int4 + fp16 group scales + fp32 row scales,
  W4A16 packed int4 + fp16 group scales, per-row W8/W4 embeddings. The embedding reads one row per token; a
  tied lm_head reads the embedding table again but owns no memory.
* **States** come from the skeleton's ``allocate_state`` (the dtypes the recipe keeps: int8 conv state for
  A8, int8 SSM state for Quamba2 A8, fp16 otherwise; the fp16 reference keeps an fp32 SSM state). Decode
  reads and writes the conv and SSM state once per step; prefill starts from a fresh prompt (no state read)
  and writes the final state.
* **Activations** are counted at the dtypes the kernels read and write them (:data:`_EDGE_BYTES`): each op
  reads its inputs once and writes its outputs once. Casts, copies, concatenations and scale gathers that
  the torch runtime adds between kernels are NOT counted: they are overhead, not the model's traffic, and
  show up as "other" in :func:`attribute_kernels`.
* **Launches**: one kernel per op instance (what an engine or a CUDA graph of our kernels runs).
* **Compute**: ``int_ops`` (int8 tensor-core, 2 per MAC: W8A8 / W4A8 linears), ``tensor_flops`` (fp16
  tensor-core: fp16 / W4A16 linears), ``flops`` (CUDA-core float math: SSM, conv, norms, Hadamard).
* Prefill computes the logits of the last token of each sequence only (final norm and lm_head on B rows).

Units: bytes; bandwidths in GB/s (1e9 B/s); times in microseconds; compute in TOPS / TFLOPS (1e12 /s).
Nothing measured is hard-coded: host bandwidths and launch floors come in as arguments; the Orin constants
are datasheet specs (shared/spec/platform.md) and the Orin launch cost is a stated assumption.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..models.config import MambaConfig

if TYPE_CHECKING:  # torch stays a lazy import: the floors / projection / attribution need only Python
    from ..quant.qconfig import QuantConfig

__all__ = [
    "DEFAULT_ORIN_LAUNCH_US",
    "DEFAULT_RESERVE_BYTES",
    "DeviceSpec",
    "Floor",
    "MODEL_SHAPES",
    "MemoryFit",
    "OP_KINDS",
    "ORIN_NANO_8G",
    "ORIN_NANO_8G_SUPER",
    "OpCost",
    "OpFloor",
    "PRECISIONS",
    "Projection",
    "ProjectedOp",
    "attribute_kernels",
    "classify_kernel",
    "default_quant_config",
    "floor_us",
    "memory_fit",
    "model_config",
    "op_costs",
    "project",
    "quant_config",
    "roofline_table",
    "summarize_by_kind",
    "total",
]

PRECISIONS = ("fp16", "w8a8", "w4a8", "w4a16")
Phase = Literal["decode", "prefill"]

#: Op kinds: the join key between op_costs (model side) and attribute_kernels (profiler side).
OP_KINDS = ("embedding", "norm", "linear", "conv", "ssm", "hadamard", "other")

# ---------------------------------------------------------------------------------------------------------
# model shapes
# ---------------------------------------------------------------------------------------------------------


def _m1(d_model: int, n_layer: int) -> dict[str, Any]:
    # state-spaces/mamba-*: config.json as published (vocab 50277, padded to a multiple of 8 -> 50280)
    return {"d_model": d_model, "n_layer": n_layer, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": True,
            "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
            "tie_embeddings": True}


def _m2(d_model: int, n_layer: int) -> dict[str, Any]:
    # state-spaces/mamba2-*: ssm_cfg {"layer": "Mamba2"} (d_state 128, headdim 64, ngroups 1, expand 2 by
    # mamba_ssm's defaults); vocab 50277 padded to a multiple of 16 -> 50288
    return {"d_model": d_model, "d_intermediate": 0, "n_layer": n_layer, "vocab_size": 50277,
            "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
            "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 16,
            "tie_embeddings": True}


#: mamba_ssm config.json dicts of the published checkpoints (read with MambaConfig.from_mamba_ssm_dict).
MODEL_SHAPES: dict[str, dict[str, Any]] = {
    "mamba-130m": _m1(768, 24),
    "mamba-370m": _m1(1024, 48),
    "mamba-790m": _m1(1536, 48),
    "mamba-1.4b": _m1(2048, 48),
    "mamba-2.8b": _m1(2560, 64),
    "mamba2-130m": _m2(768, 24),
    "mamba2-370m": _m2(1024, 48),
    "mamba2-780m": _m2(1536, 48),
    "mamba2-1.3b": _m2(2048, 48),
    "mamba2-2.7b": _m2(2560, 64),
    # nvidia/mamba2-8b-3t-4k converted to mamba_ssm (the Quamba2 8B): 56 layers, 8 SSD groups, chunk 128,
    # 256k vocabulary, untied lm_head
    "mamba2-8b": {"d_model": 4096, "d_intermediate": 0, "n_layer": 56, "vocab_size": 256000,
                  "ssm_cfg": {"layer": "Mamba2", "d_state": 128, "d_conv": 4, "expand": 2, "headdim": 64,
                              "ngroups": 8, "chunk_size": 128, "rmsnorm": True, "norm_before_gate": False},
                  "rms_norm": True, "residual_in_fp32": False, "fused_add_norm": True,
                  "pad_vocab_size_multiple": 128, "tie_embeddings": False},
}


def model_config(name: str) -> MambaConfig:
    """The MambaConfig of a named shape (:data:`MODEL_SHAPES`)."""
    if name not in MODEL_SHAPES:
        raise ValueError(f"unknown model shape {name!r}; known: {', '.join(MODEL_SHAPES)}")
    return MambaConfig.from_mamba_ssm_dict(json.loads(json.dumps(MODEL_SHAPES[name])))


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def default_quant_config(config: MambaConfig, precision: str, recipe: str = "quamba2") -> QuantConfig | None:
    """A valid QuantConfig for ``config`` (None for fp16). Mamba2 A8 sort-and-cluster gets the trivial
    m = n = 1 group tables: buffer sizes differ from a calibrated model's by a few KB per layer, and latency
    does not depend on the grouping values."""
    _check_precision(precision)
    if precision == "fp16":
        return None
    from ..quant.qconfig import QuantConfig

    qc = QuantConfig(recipe, precision, config.arch)
    if qc.group_heads:
        hg, cg = qc.trivial_groups(config.nheads, config.headdim, config.ngroups)
        qc = QuantConfig(recipe, precision, config.arch, head_groups=[hg] * config.n_layer,
                         channel_groups=[cg] * config.n_layer)
    qc.validate_for(config)
    return qc


def quant_config(name: str, precision: str, recipe: str = "quamba2") -> QuantConfig | None:
    """The QuantConfig of a named shape at ``precision`` (None for fp16)."""
    return default_quant_config(model_config(name), precision, recipe)


# ---------------------------------------------------------------------------------------------------------
# the skeleton: which tensor each op reads
# ---------------------------------------------------------------------------------------------------------

_LAYER = r"^layers\.\d+\."
#: (pattern, slot, read per call). Slots are renamed to op names per arch / phase in op_costs.
_RULES: tuple[tuple[re.Pattern, str, bool], ...] = tuple((re.compile(p), s, r) for p, s, r in (
    (r"^embedding\.", "embedding", True),
    (r"^norm_f\.", "final_norm", True),
    (r"^lm_head\.", "lm_head", True),
    (_LAYER + r"norm\.", "add_rms_norm", True),
    (_LAYER + r"mixer\.in_proj\.", "in_proj", True),
    (_LAYER + r"mixer\.x_proj\.", "x_proj", True),
    (_LAYER + r"mixer\.dt_proj\.", "dt_proj", True),
    (_LAYER + r"mixer\.out_proj\.", "out_proj", True),
    (_LAYER + r"mixer\.(conv1d\.\w+|conv_out_scale|x_out_scale|B_out_scale|C_out_scale)$", "conv", True),
    (_LAYER + r"mixer\.norm\.weight$", "gated_norm", True),
    (_LAYER + r"mixer\.(A_log|D|dt_bias)(_scale)?$", "ssm", True),
    (_LAYER + r"mixer\.ssm_state_scale$", "ssm", True),
    # index tables: resident (device memory) but not read by the kernels each step (sort-and-cluster
    # provenance and the per-channel scale index; the kernels read the compact scale tables)
    (_LAYER + r"mixer\.(_g_idx|_i_idx|_j_idx|channel_index|head_index)$", "ssm", False),
))


@dataclass(frozen=True)
class _Skeleton:
    resident: dict[str, int]  # slot -> bytes of memory
    read: dict[str, int]  # slot -> bytes the slot's kernel reads per call (embedding: the whole table)
    int8_linear: dict[str, bool]  # linear slot -> runs on int8 tensor cores
    conv_state: int  # bytes of the conv state of one sequence, all layers
    ssm_state: int  # bytes of the SSM state of one sequence, all layers


_SKELETONS: dict[str, _Skeleton] = {}


def _slot_of(name: str) -> tuple[str, bool]:
    for pat, slot, read in _RULES:
        if pat.search(name):
            return slot, read
    raise RuntimeError(f"roofline: no op reads model tensor {name!r}; assign it in "
                       "quamba_edge/bench/roofline.py _RULES so the byte counts stay complete")


def _skeleton(config: MambaConfig, qc: QuantConfig | None) -> _Skeleton:
    key = json.dumps([config.to_dict(), None if qc is None else qc.to_dict()], sort_keys=True, default=str)
    hit = _SKELETONS.get(key)
    if hit is not None:
        return hit
    import torch

    from ..quant.qlinear import W4A8Linear, W8A8Linear  # W8A8SegmentLinear is a W8A8Linear

    if qc is None:
        from ..models.lm import MambaLM

        model = MambaLM(config, device="meta", dtype=torch.float16)
    else:
        from ..quant.qlm import QuantMambaLM

        model = QuantMambaLM(config, qc, device="meta")
    resident: dict[str, int] = {}
    read: dict[str, int] = {}
    seen: set[int] = set()
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if id(t) in seen:
            continue
        seen.add(id(t))
        slot, is_read = _slot_of(name)
        nbytes = t.numel() * t.element_size()
        resident[slot] = resident.get(slot, 0) + nbytes
        if is_read:
            read[slot] = read.get(slot, 0) + nbytes
    table = model.embedding.weight
    if getattr(model.lm_head, "weight", None) is table:  # tied: the head reads the table the embedding owns
        read["lm_head"] = read.get("lm_head", 0) + table.numel() * table.element_size()
    int8_linear = {}
    modules = dict(model.named_modules())
    for slot in ("in_proj", "x_proj", "dt_proj", "out_proj", "lm_head"):
        mod = modules.get("lm_head" if slot == "lm_head" else f"layers.0.mixer.{slot}")
        if mod is not None:
            int8_linear[slot] = isinstance(mod, (W8A8Linear, W4A8Linear))
    st = model.allocate_state(1, device="meta")
    conv = sum(t.numel() * t.element_size() for t in st.conv)
    ssm = sum(t.numel() * t.element_size() for t in st.ssm)
    sk = _Skeleton(resident, read, int8_linear, conv, ssm)
    _SKELETONS[key] = sk
    return sk


# ---------------------------------------------------------------------------------------------------------
# op costs
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpCost:
    """Cost of one op of one forward (decode: one step of ``batch`` sequences; prefill: one call on
    ``batch`` x L tokens), summed over its ``count`` instances (n_layer for per-layer ops)."""

    name: str
    kind: str
    count: int
    launches: int
    weight_bytes: int  # resident bytes of its weights / scales (memory)
    weight_read: int  # weight bytes read per call (the embedding: only the rows of the tokens)
    state_read: int
    state_written: int
    state_bytes: int  # resident state (one copy) for the batch
    act_read: int
    act_written: int
    flops: float = 0.0  # CUDA-core float ops
    tensor_flops: float = 0.0  # fp16 tensor-core flops (2 per MAC)
    int_ops: float = 0.0  # int8 tensor-core ops (2 per MAC)
    phase: str = "decode"
    batch: int = 1
    tokens: int = 1  # tokens processed per call (decode: batch; prefill: batch * seq_len)

    @property
    def bytes_read(self) -> int:
        return self.weight_read + self.state_read + self.act_read

    @property
    def bytes_written(self) -> int:
        return self.state_written + self.act_written

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(bytes_read=self.bytes_read, bytes_written=self.bytes_written, bytes=self.bytes)
        return d


#: bytes per element of each activation edge, as the kernels write (and the next kernel reads) it:
#: emb: embedding -> first block norm; hidden: out_proj -> next norm; norm: norm -> in_proj;
#: xz: in_proj output; conv: conv output; dbc: Mamba1 x_proj output; dt: Mamba1 dt_proj output;
#: y: SSM output; g: gated-norm output; h: Hadamard output -> out_proj; fn: final norm -> lm_head; logits.
#: Our linear kernels write float outputs as fp32 and the SSM / gated-norm kernels fp16
#: (ops/kernel_dispatch.py); the W4A16 kernel takes fp16 activations; the fp16 model runs fp16 throughout.
_EDGE_BYTES: dict[str, dict[str, int]] = {
    "fp16": dict(emb=2, hidden=2, norm=2, xz=2, conv=2, dbc=2, dt=2, y=2, g=2, h=2, fn=2, logits=2),
    "a8": dict(emb=4, hidden=4, norm=1, xz=1, conv=1, dbc=1, dt=1, y=2, g=2, h=1, fn=1, logits=4),
    "w4a16": dict(emb=4, hidden=4, norm=2, xz=4, conv=2, dbc=4, dt=4, y=2, g=2, h=2, fn=2, logits=4),
}

# CUDA-core flops per element (order-of-magnitude: they never bound a decode step, they let a projection
# see where prefill becomes compute-bound)
_NORM_FLOPS = 5  # add, square, sum, scale, weight
_GATED_NORM_FLOPS = 10  # SiLU gate + norm
_SILU_FLOPS = 5
_M1_SCAN_FLOPS = 8  # per (token, channel, state): exp(dt A), dt B x, s * dA + ., C s
_M2_SCAN_FLOPS = 5  # per (token, head, p, state): s * dA + dt x B, C s (dA per head)
_INT8_STATE_FLOPS = 2  # dequantize + requantize an int8 state element
_M1_CHANNEL_FLOPS = 10  # per (token, channel): softplus(dt + bias), D skip, SiLU(z) gate
_M2_CHANNEL_FLOPS = 4  # per (token, channel): D skip, dequantization of x


def op_costs(config: MambaConfig, precision: str, batch: int = 1, phase: Phase = "decode", seq_len: int = 1,
             quant_config: QuantConfig | None = None) -> list[OpCost]:
    """Bytes / FLOPs / launches of every op of one forward (module docstring). ``quant_config`` None takes
    :func:`default_quant_config` (Quamba2) for a quantized ``precision``."""
    _check_precision(precision)
    if phase not in ("decode", "prefill"):
        raise ValueError(f"phase must be 'decode' or 'prefill', got {phase!r}")
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if phase == "decode" and seq_len != 1:
        raise ValueError(f"decode processes one token per sequence (seq_len=1), got seq_len={seq_len}; an SSM's "
                         "decode step costs the same at any context length")
    if int(seq_len) < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    qc = quant_config
    if precision == "fp16":
        if qc is not None:
            raise ValueError("precision 'fp16' takes no quant_config")
    elif qc is None:
        qc = default_quant_config(config, precision)
    elif qc.bits != precision or qc.arch != config.arch:
        raise ValueError(f"quant_config is {qc.recipe}/{qc.bits}/{qc.arch}, asked for {precision} on {config.arch}")
    sk = _skeleton(config, qc)
    cfg = config
    B, L = int(batch), int(seq_len)
    T = B * L  # tokens through every per-token op
    rows = B  # rows of the final norm / lm_head (prefill: the last token of each sequence)
    decode = phase == "decode"
    d, E, N, K, V, nl = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.vocab_size, cfg.n_layer
    a8 = qc is not None and qc.act8
    eb = dict(_EDGE_BYTES["fp16" if qc is None else ("a8" if a8 else "w4a16")])
    if a8 and not qc.lm_head_a8:  # a float lm_head (recipe "quamba") takes a float final norm
        eb["fn"] = 2
    res = 4 if cfg.residual_in_fp32 else 2  # the residual stream the block norms carry
    conv_state, ssm_state = sk.conv_state * B, sk.ssm_state * B
    common = dict(phase=phase, batch=B, tokens=T)
    out: list[OpCost] = []

    def linear(name: str, slot: str, k_in: int, n_out: int, e_in: str, e_out: str, m: int = T,
               count: int = nl) -> OpCost:
        macs = 2.0 * m * k_in * n_out * count
        int8 = sk.int8_linear.get(slot, False)
        return OpCost(name, "linear", count, count, sk.resident.get(slot, 0), sk.read.get(slot, 0), 0, 0, 0,
                      count * m * k_in * eb[e_in], count * m * n_out * eb[e_out],
                      int_ops=macs if int8 else 0.0, tensor_flops=0.0 if int8 else macs, **common)

    # embedding: one table row per token (a per-row scale with it for W8 / W4)
    emb_rows = sk.read.get("embedding", 0) * T // V
    out.append(OpCost("embedding", "embedding", 1, 1, sk.resident.get("embedding", 0), emb_rows, 0, 0, 0,
                      T * 8, T * d * eb["emb"], flops=float(T * d) if qc is not None else 0.0, **common))
    # block add + RMSNorm (+ int8 quantization for A8); the first block has no residual to read
    out.append(OpCost("add_rms_norm", "norm", nl, nl, sk.resident.get("add_rms_norm", 0),
                      sk.read.get("add_rms_norm", 0), 0, 0, 0,
                      nl * T * d * eb["hidden"] + (nl - 1) * T * d * res, nl * T * d * (eb["norm"] + res),
                      flops=float(nl * T * d * _NORM_FLOPS), **common))
    out.append(linear("in_proj", "in_proj", d, cfg.in_proj_dim, "norm", "xz"))
    # depthwise causal conv (+ SiLU) over x (Mamba1) or x|B|C (Mamba2), carrying the conv state
    C = cfg.conv_dim
    out.append(OpCost("causal_conv1d", "conv", nl, nl, sk.resident.get("conv", 0), sk.read.get("conv", 0),
                      conv_state if decode else 0, conv_state, conv_state,
                      nl * T * C * eb["xz"], nl * T * C * eb["conv"],
                      flops=float(nl * T * C * (2 * K + _SILU_FLOPS)), **common))
    int8_state = bool(qc is not None and qc.int8_ssm_state)
    if cfg.arch == "mamba1":
        R = cfg.dt_rank
        out.append(linear("x_proj", "x_proj", E, R + 2 * N, "conv", "dbc"))
        out.append(linear("dt_proj", "dt_proj", R, E, "dbc", "dt"))
        elems = nl * T * E * N
        per_elem = _M1_SCAN_FLOPS + (_INT8_STATE_FLOPS if int8_state else 0)
        out.append(OpCost("selective_state_update" if decode else "selective_scan", "ssm", nl, nl,
                          sk.resident.get("ssm", 0), sk.read.get("ssm", 0), ssm_state if decode else 0, ssm_state,
                          ssm_state,
                          # u, dt, z: [T, E]; B, C: [T, N]
                          nl * T * (E * eb["conv"] + E * eb["dt"] + E * eb["xz"] + 2 * N * eb["dbc"]),
                          nl * T * E * eb["y"], flops=float(elems * per_elem + nl * T * E * _M1_CHANNEL_FLOPS), **common))
        y_edge = "y"
    else:
        H, P, G = cfg.nheads, cfg.headdim, cfg.ngroups
        elems = nl * T * H * P * N
        per_elem = _M2_SCAN_FLOPS + (_INT8_STATE_FLOPS if int8_state else 0)
        out.append(OpCost("ssd_state_update" if decode else "ssd", "ssm", nl, nl,
                          sk.resident.get("ssm", 0), sk.read.get("ssm", 0), ssm_state if decode else 0, ssm_state,
                          ssm_state,
                          # x [T, E] and B, C [T, G, N] from the conv; dt [T, H] from in_proj
                          nl * T * ((E + 2 * G * N) * eb["conv"] + H * eb["xz"]),
                          nl * T * E * eb["y"], flops=float(elems * per_elem + nl * T * E * _M2_CHANNEL_FLOPS), **common))
        # gated RMSNorm: y (SSM) and z (in_proj) in, fp16 out
        out.append(OpCost("gated_rms_norm", "norm", nl, nl, sk.resident.get("gated_norm", 0),
                          sk.read.get("gated_norm", 0), 0, 0, 0, nl * T * E * (eb["y"] + eb["xz"]),
                          nl * T * E * eb["g"], flops=float(nl * T * E * _GATED_NORM_FLOPS), **common))
        y_edge = "g"
    out_in = y_edge
    if qc is not None and qc.out_proj_hadamard:
        # online Hadamard of the out_proj input (A8: fused with the int8 quantization)
        out.append(OpCost("quant_hadamard" if a8 else "hadamard", "hadamard", nl, nl, 0, 0, 0, 0, 0,
                          nl * T * E * eb[y_edge], nl * T * E * eb["h"],
                          flops=float(nl * T * E * max(1, math.ceil(math.log2(E)))), **common))
        out_in = "h"
    out.append(linear("out_proj", "out_proj", E, d, out_in, "hidden"))
    out.append(OpCost("final_norm", "norm", 1, 1, sk.resident.get("final_norm", 0), sk.read.get("final_norm", 0),
                      0, 0, 0, rows * d * (eb["hidden"] + res), rows * d * eb["fn"],
                      flops=float(rows * d * _NORM_FLOPS), **common))
    out.append(linear("lm_head", "lm_head", d, V, "fn", "logits", m=rows, count=1))
    return out


def total(costs: Iterable[OpCost], name: str = "total", kind: str = "total") -> OpCost:
    """The sum of ``costs`` as one OpCost (phase / batch / tokens of the first)."""
    costs = list(costs)
    if not costs:
        raise ValueError("no op costs to sum")
    ints = ("count", "launches", "weight_bytes", "weight_read", "state_read", "state_written", "state_bytes",
            "act_read", "act_written")
    floats = ("flops", "tensor_flops", "int_ops")
    kw: dict[str, Any] = {k: sum(getattr(c, k) for c in costs) for k in ints}
    kw.update({k: float(sum(getattr(c, k) for c in costs)) for k in floats})
    first = costs[0]
    return OpCost(name, kind, phase=first.phase, batch=first.batch, tokens=first.tokens, **kw)


def summarize_by_kind(costs: Iterable[OpCost]) -> dict[str, OpCost]:
    """``{kind: summed OpCost}`` in :data:`OP_KINDS` order: the same keys as :func:`attribute_kernels`."""
    groups: dict[str, list[OpCost]] = {}
    for c in costs:
        groups.setdefault(c.kind, []).append(c)
    order = {k: i for i, k in enumerate(OP_KINDS)}
    return {k: total(v, name=k, kind=k) for k, v in sorted(groups.items(), key=lambda kv: order.get(kv[0], 99))}


# ---------------------------------------------------------------------------------------------------------
# floors
# ---------------------------------------------------------------------------------------------------------


def _us(nbytes: float, gbps: float) -> float:
    return nbytes / (gbps * 1e3)  # GB/s = 1e3 bytes per microsecond


@dataclass(frozen=True)
class OpFloor:
    """Floor of one op (or one kind): it can beat neither the bytes it moves, nor its compute, nor the
    minimum duration of its kernels."""

    name: str
    kind: str
    bytes: int
    launches: int
    bytes_us: float
    launch_us: float
    compute_us: float = 0.0

    @property
    def floor_us(self) -> float:
        return max(self.bytes_us, self.launch_us, self.compute_us)


@dataclass(frozen=True)
class Floor:
    """Result of :func:`floor_us`: per-op floors and their sums."""

    per_op: tuple[OpFloor, ...]
    read_gbps: float
    write_gbps: float
    launch_us_per_kernel: float | None

    @property
    def bytes_us(self) -> float:
        """All bytes at the measured rates (the classic roofline floor)."""
        return sum(o.bytes_us for o in self.per_op)

    @property
    def launch_us(self) -> float:
        """Every kernel at the measured per-kernel floor (0 when no launch floor was given)."""
        return sum(o.launch_us for o in self.per_op)

    @property
    def compute_us(self) -> float:
        return sum(o.compute_us for o in self.per_op)

    @property
    def total_us(self) -> float:
        """Sum over ops of max(bytes, compute, launches): kernels run back to back, each bound by its own
        limit."""
        return sum(o.floor_us for o in self.per_op)

    def by_kind(self) -> dict[str, OpFloor]:
        """Per kind: sums of its ops' bytes and times; its floor is the sum of its ops' floors (each op is
        bound by its own limit), not the max of the sums."""
        groups: dict[str, list[OpFloor]] = {}
        for o in self.per_op:
            groups.setdefault(o.kind, []).append(o)
        return {k: _KindFloor(k, k, sum(o.bytes for o in v), sum(o.launches for o in v),
                              sum(o.bytes_us for o in v), sum(o.launch_us for o in v),
                              sum(o.compute_us for o in v), sum(o.floor_us for o in v))
                for k, v in groups.items()}

    def to_dict(self) -> dict[str, Any]:
        return dict(read_gbps=self.read_gbps, write_gbps=self.write_gbps,
                    launch_us_per_kernel=self.launch_us_per_kernel, bytes_us=self.bytes_us,
                    launch_us=self.launch_us, compute_us=self.compute_us, total_us=self.total_us,
                    per_op=[dict(dataclasses.asdict(o), floor_us=o.floor_us) for o in self.per_op])


@dataclass(frozen=True)
class _KindFloor(OpFloor):
    summed_floor_us: float = 0.0

    @property
    def floor_us(self) -> float:
        return self.summed_floor_us


def _compute_us(c: OpCost, int8_tops: float | None, fp16_tflops: float | None, vector_tflops: float | None) -> float:
    us = 0.0
    for ops, rate in ((c.int_ops, int8_tops), (c.tensor_flops, fp16_tflops), (c.flops, vector_tflops)):
        if rate and ops:
            us += ops / (rate * 1e6)  # 1 TOPS = 1e6 ops per microsecond
    return us


def floor_us(costs: Iterable[OpCost], read_gbps: float, write_gbps: float | None = None,
             launch_us: float | None = None, *, int8_tops: float | None = None, fp16_tflops: float | None = None,
             vector_tflops: float | None = None) -> Floor:
    """The floor of ``costs`` on the machine whose rates are given.

    * bytes: ``bytes_read / read_gbps + bytes_written / write_gbps``. ``read_gbps`` is the best rate a
      large (>= 4 GiB) read-only kernel reaches; ``write_gbps`` the rate a large read+write kernel moves
      bytes (read + written) at, which is what written bytes cost. It defaults to ``read_gbps``: on HBM the
      two differ by ~2 % (4.23 vs 4.14 TB/s on the H200, shared/spec/measured.md), and a decode step is
      almost all reads. Never a graph-captured memcpy (copy engines, ~2/3 of the SM rate).
    * launches: ``launches x launch_us``, the measured minimum duration of one kernel back to back
      (omitted: no launch floor).
    * compute (optional): int8 / fp16 tensor-core and CUDA-core rates, for prefill.
    Each op's floor is the max of the three; the total is the sum over ops.
    """
    if not read_gbps or read_gbps <= 0:
        raise ValueError(f"read_gbps must be a positive bandwidth in GB/s, got {read_gbps!r}")
    wg = read_gbps if write_gbps is None else write_gbps
    if wg <= 0:
        raise ValueError(f"write_gbps must be positive, got {write_gbps!r}")
    if launch_us is not None and launch_us < 0:
        raise ValueError(f"launch_us must be >= 0, got {launch_us!r}")
    per = []
    for c in costs:
        per.append(OpFloor(c.name, c.kind, c.bytes, c.launches,
                           _us(c.bytes_read, read_gbps) + _us(c.bytes_written, wg),
                           c.launches * (launch_us or 0.0),
                           _compute_us(c, int8_tops, fp16_tflops, vector_tflops)))
    if not per:
        raise ValueError("no op costs")
    return Floor(tuple(per), float(read_gbps), float(wg), launch_us)


# ---------------------------------------------------------------------------------------------------------
# Jetson Orin Nano projection
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSpec:
    """Datasheet figures of a target device (dense rates: NVIDIA's TOPS figures are 2:4-sparse)."""

    name: str
    mem_gbps: float
    int8_tops: float  # dense int8 tensor-core
    fp16_tflops: float  # dense fp16 tensor-core
    vector_tflops: float  # fp32 CUDA cores (cores x 2 x clock)
    memory_bytes: int
    source: str


# shared/spec/platform.md section 2.1: 8 SMs / 1024 CUDA cores; 68 GB/s, 40 TOPS sparse int8, GPU 625 MHz
# (original); 102 GB/s, 67 TOPS sparse int8, GPU 1.02 GHz ("Super"); 8 GB LPDDR5 shared by CPU and GPU.
# Dense int8 = sparse / 2 (NVIDIA's sparse figures count 2:4 structured sparsity). No official fp16 figure
# exists [inference: dense fp16 = dense int8 / 2, as on every Ampere tensor core].
ORIN_NANO_8G = DeviceSpec(
    "Jetson Orin Nano 8GB (68 GB/s)", 68.0, 20.0, 10.0, 1024 * 2 * 0.625e9 / 1e12, 8 * 2**30,
    "platform.md 2.1: 68 GB/s, 40 TOPS sparse int8, 1024 CUDA cores at 625 MHz, 8 GB LPDDR5 unified")
ORIN_NANO_8G_SUPER = DeviceSpec(
    "Jetson Orin Nano 8GB Super (102 GB/s)", 102.0, 33.5, 16.75, 1024 * 2 * 1.02e9 / 1e12, 8 * 2**30,
    "platform.md 2.1: 102 GB/s, 67 TOPS sparse int8, 1024 CUDA cores at 1.02 GHz, 8 GB LPDDR5 unified")

#: ASSUMPTION: cost of one kernel launch on the Orin (a TensorRT engine or CUDA graph; no Orin measurement
#: exists here). Configurable in :func:`project`.
DEFAULT_ORIN_LAUNCH_US = 5.0
#: ASSUMPTION: memory the OS, the CUDA context and the runtime keep out of the 8 GB (platform.md states
#: none; a headless JetPack with a CUDA context commonly leaves ~6 GB).
DEFAULT_RESERVE_BYTES = 2 * 2**30


@dataclass(frozen=True)
class MemoryFit:
    """Weights + states + activation working set + reserve against the device memory."""

    device: str
    weights: int
    states: int
    activations: int
    reserve: int
    capacity: int
    state_copies: int

    @property
    def needed(self) -> int:
        return self.weights + self.states + self.activations + self.reserve

    @property
    def fits(self) -> bool:
        return self.needed <= self.capacity

    def describe(self) -> str:
        g = 2**30
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"{verdict} in {self.device}: weights {self.weights / g:.2f} GiB + states {self.states / g:.3f} GiB"
                f" (x{self.state_copies} buffers) + activations {self.activations / g:.3f} GiB + reserve "
                f"{self.reserve / g:.2f} GiB (assumed) = {self.needed / g:.2f} of {self.capacity / g:.2f} GiB")

    def to_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), needed=self.needed, fits=self.fits, text=self.describe())


def memory_fit(costs: Iterable[OpCost], device: DeviceSpec = ORIN_NANO_8G,
               reserve_bytes: int = DEFAULT_RESERVE_BYTES, state_copies: int = 2) -> MemoryFit:
    """Does the model of ``costs`` (their batch, phase and length) fit ``device``'s memory? States count
    ``state_copies`` times (the runtime double-buffers them: the kernels write the new state to a second
    buffer); the activation working set is the largest single op instance's inputs + outputs (a runtime
    frees or reuses the others)."""
    costs = list(costs)
    if not costs:
        raise ValueError("no op costs")
    weights = sum(c.weight_bytes for c in costs)
    states = state_copies * sum(c.state_bytes for c in costs)
    acts = max((c.act_read + c.act_written) // max(1, c.count) for c in costs)
    return MemoryFit(device.name, weights, states, acts, int(reserve_bytes), device.memory_bytes, state_copies)


@dataclass(frozen=True)
class ProjectedOp:
    name: str
    kind: str
    bytes: int
    efficiency: float  # host floor / host measured (capped at 1); 1.0 = not measured
    bytes_us: float
    compute_us: float
    launch_us: float

    @property
    def us(self) -> float:
        return max(self.bytes_us, self.compute_us) + self.launch_us


@dataclass(frozen=True)
class Projection:
    """A projected (not measured) time of ``costs`` on ``device``."""

    label: str
    device: DeviceSpec
    phase: str
    batch: int
    tokens: int
    per_op: tuple[ProjectedOp, ...]
    memory: MemoryFit
    assumptions: tuple[str, ...]
    launch_us_per_kernel: float

    @property
    def total_us(self) -> float:
        return sum(o.us for o in self.per_op)

    @property
    def ms_per_step(self) -> float:
        """Decode: ms per step (= per output token of each sequence); prefill: the call's ms (TTFT)."""
        return self.total_us / 1e3

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.total_us / 1e6)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.per_op:
            out[o.kind] = out.get(o.kind, 0.0) + o.us
        return out

    def to_dict(self) -> dict[str, Any]:
        return dict(label=self.label, projection=True, device=dataclasses.asdict(self.device), phase=self.phase,
                    batch=self.batch, tokens=self.tokens, total_us=self.total_us, ms_per_step=self.ms_per_step,
                    tokens_per_s=self.tokens_per_s, launch_us_per_kernel=self.launch_us_per_kernel,
                    assumptions=list(self.assumptions), memory=self.memory.to_dict(),
                    per_op=[dict(dataclasses.asdict(o), us=o.us) for o in self.per_op])

    def to_markdown(self) -> str:
        lines = [f"**{self.label}**", "",
                 "| op | kind | bytes | efficiency (host) | bytes µs | compute µs | launch µs | projected µs |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for o in self.per_op:
            lines.append(f"| {o.name} | {o.kind} | {_fmt_bytes(o.bytes)} | {o.efficiency:.2f} | {o.bytes_us:.1f} | "
                         f"{o.compute_us:.1f} | {o.launch_us:.1f} | {o.us:.1f} |")
        unit = "ms per step" if self.phase == "decode" else "ms (prefill call)"
        lines += [f"| **total** | | | | | | | **{self.total_us:.1f}** |", "",
                  f"Projected {self.ms_per_step:.2f} {unit}, {self.tokens_per_s:.1f} tokens/s "
                  f"(batch {self.batch}). Memory: {self.memory.describe()}.", "", "Assumptions:"]
        lines += [f"- {a}" for a in self.assumptions]
        return "\n".join(lines)


def project(costs: Iterable[OpCost], measured_us_per_op: Mapping[str, float] | None = None,
            host_floor: Mapping[str, float] | None = None, device: DeviceSpec = ORIN_NANO_8G,
            launch_us: float = DEFAULT_ORIN_LAUNCH_US, reserve_bytes: int = DEFAULT_RESERVE_BYTES,
            state_copies: int = 2) -> Projection:
    """Project ``costs`` onto ``device`` (a model, labelled as such, never a measurement).

    Per op: ``max(bytes / (device bandwidth x efficiency), compute / device rate) + launches x launch_us``.
    ``efficiency`` = the op's floor on the host / its measured time on the host, capped at 1: how close our
    kernel gets to the memory system, assumed to carry over. ``measured_us_per_op`` is keyed by op name or by
    op kind (:func:`attribute_kernels` of a profiled, non-graph run); ``host_floor`` needs ``read_gbps`` and
    ``launch_us`` (the host's per-kernel floor: without it a tiny launch-bound kernel would look 100x
    inefficient and its bytes be inflated on the device), optionally ``write_gbps``. Unmeasured ops get
    efficiency 1 (the pure roofline), and the assumptions say so.
    """
    costs = list(costs)
    if not costs:
        raise ValueError("no op costs")
    if launch_us < 0:
        raise ValueError(f"launch_us must be >= 0, got {launch_us}")
    measured = dict(measured_us_per_op or {})
    assumptions = [
        f"PROJECTION from per-op bytes and FLOPs, not a measurement on a Jetson ({device.source}).",
        f"{launch_us:g} µs per kernel launch on the device (ASSUMED; no Orin measurement), "
        f"{sum(c.launches for c in costs)} launches.",
        f"Compute at {device.int8_tops:g} dense int8 TOPS, {device.fp16_tflops:g} dense fp16 TFLOPS "
        f"(inferred: half the int8 rate) and {device.vector_tflops:.2f} fp32 CUDA-core TFLOPS.",
        f"Memory reserve for the OS / CUDA context / runtime: {reserve_bytes / 2**30:.2f} GiB (ASSUMED).",
    ]
    eff: dict[str, float] = {}
    if measured:
        if not host_floor or not host_floor.get("read_gbps") or host_floor.get("launch_us") is None:
            raise ValueError("measured host times need host_floor={'read_gbps': ..., 'launch_us': ...} "
                             "(and optionally 'write_gbps'): the efficiency is host floor / host time")
        hf = floor_us(costs, float(host_floor["read_gbps"]), host_floor.get("write_gbps"),
                      float(host_floor["launch_us"]))
        names = {o.name for o in hf.per_op}
        kinds = hf.by_kind()
        for o in hf.per_op:
            key = o.name if o.name in measured else (o.kind if o.kind in measured else None)
            if key is None:
                continue
            floor_key = o.floor_us if key == o.name else kinds[o.kind].floor_us
            t = float(measured[key])
            if t > 0:
                eff[o.name] = min(1.0, floor_key / t)
        missing = sorted({c.name for c in costs} - set(eff))
        if missing:
            assumptions.append(f"No host measurement for {', '.join(missing)}: efficiency 1 (pure roofline).")
        extra = sorted(k for k in measured if k not in names and k not in kinds)
        if extra:
            extra_us = sum(float(measured[k]) for k in extra)
            assumptions.append(f"Host time in {', '.join(extra)} ({extra_us:.1f} µs: torch copies / casts / "
                               "elementwise between our kernels) is not projected: an engine runs none of it.")
        assumptions.append(f"Efficiency = host floor ({host_floor['read_gbps']:g} GB/s read, "
                           f"{host_floor['launch_us']:g} µs per kernel) / host measured time, capped at 1, "
                           "carried over to the device.")
    else:
        assumptions.append("No host measurement given: every op at efficiency 1 (the pure roofline).")
    per = []
    for c in costs:
        e = eff.get(c.name, 1.0)
        bw = device.mem_gbps * max(e, 1e-6)
        per.append(ProjectedOp(c.name, c.kind, c.bytes, e, _us(c.bytes, bw),
                               _compute_us(c, device.int8_tops, device.fp16_tflops, device.vector_tflops),
                               c.launches * launch_us))
    mem = memory_fit(costs, device, reserve_bytes, state_copies)
    first = costs[0]
    label = (f"PROJECTION (model, not measured): {device.name}, {first.phase}, batch {first.batch}"
             + (f", {first.tokens // first.batch} tokens" if first.phase == "prefill" else ""))
    return Projection(label, device, first.phase, first.batch, first.tokens, tuple(per), mem, tuple(assumptions),
                      float(launch_us))


# ---------------------------------------------------------------------------------------------------------
# profiler attribution
# ---------------------------------------------------------------------------------------------------------

# (substring of the normalised kernel name, kind, label); first match wins, so our kernels come before the
# generic patterns. Names are lower-cased with '_' removed, so demangled ("quamba::lin::gemv_kernel<...W4A8...>")
# and mangled ("_ZN6quamba3lin11gemv_kernel...") names both match.
_KERNEL_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("hadamard", "hadamard", "hadamard"),
    ("gatedrmsnorm", "norm", "gated_rms_norm"),
    ("addrmsnorm", "norm", "add_rms_norm"),
    ("rmsnorm", "norm", "rms_norm"),
    ("layernorm", "norm", "rms_norm"),  # mamba_ssm's Triton (gated) RMSNorm kernels are named layer_norm
    ("ssdstateupdate", "ssm", "ssd_state_update"),
    ("ssdupdaterow", "ssm", "ssd_state_update"),
    ("selectivestateupdate", "ssm", "selective_state_update"),
    ("selectivescanupdate", "ssm", "selective_state_update"),
    ("selectivescan", "ssm", "selective_scan"),
    ("quantssd", "ssm", "ssd"),
    ("chunkscan", "ssm", "ssd"),
    ("chunkstate", "ssm", "ssd"),
    ("chunkcumsum", "ssm", "ssd"),
    ("statepassing", "ssm", "ssd"),
    ("bmmchunk", "ssm", "ssd"),
    ("causalconv1d", "conv", "causal_conv1d"),
    ("conv1d", "conv", "causal_conv1d"),
    ("convolve", "conv", "causal_conv1d"),  # cuDNN convolutions (the torch reference conv)
    ("depthwise", "conv", "causal_conv1d"),  # torch's depthwise conv kernels
    ("w8a8", "linear", "linear (w8a8 kernel)"),
    ("w4a8", "linear", "linear (w4a8 kernel)"),
    ("w4a16", "linear", "linear (w4a16 kernel)"),
    ("gemv", "linear", "linear (cuBLAS)"),
    ("gemm", "linear", "linear (cuBLAS)"),
    ("cublas", "linear", "linear (cuBLAS)"),
    ("cutlass", "linear", "linear (cuBLAS)"),
    ("xmma", "linear", "linear (cuBLAS)"),
    ("nvjet", "linear", "linear (cuBLAS)"),  # cuBLASLt's Hopper kernels
    ("splitkreduce", "linear", "linear (cuBLAS)"),
    ("embedding", "embedding", "embedding"),
    ("indexselect", "embedding", "embedding"),  # F.embedding's gather
)
OTHER_LABEL = "other (torch elementwise / copies)"


def classify_kernel(name: str) -> tuple[str, str]:
    """``(kind, label)`` of a profiler kernel name: kind in :data:`OP_KINDS`, label finer (which linear
    kernel, which norm, ...)."""
    norm = name.lower().replace("_", "")
    for pat, kind, label in _KERNEL_PATTERNS:
        if pat in norm:
            return kind, label
    return "other", OTHER_LABEL


def _events(events: Any) -> Iterable[tuple[str, float]]:
    if isinstance(events, Mapping):
        yield from ((str(k), float(v)) for k, v in events.items())
        return
    for ev in events:
        if isinstance(ev, Mapping):  # a chrome-trace event ({"name", "dur"}) or {"name", "duration_us"}
            dur = ev.get("duration_us", ev.get("dur"))
            if dur is None:
                raise ValueError(f"kernel event without 'duration_us' / 'dur': {ev!r}")
            yield str(ev["name"]), float(dur)
        elif isinstance(ev, (tuple, list)) and len(ev) == 2:
            yield str(ev[0]), float(ev[1])
        else:
            name = getattr(ev, "name", None) or getattr(ev, "key", None)
            dur = getattr(ev, "duration_us", None)
            if name is None or dur is None:
                raise ValueError(f"cannot read a kernel event from {ev!r}: give (name, duration_us) pairs")
            yield str(name), float(dur)


def attribute_kernels(events: Any, by: Literal["kind", "label"] = "kind") -> dict[str, float]:
    """Sum profiler kernel time (µs) per op kind (``by="kind"``: the keys of :func:`summarize_by_kind`) or
    per finer label (``by="label"``: "linear (cuBLAS)", "linear (w4a8 kernel)", "ssd_state_update", ...).

    ``events``: (name, duration_us) pairs, ``{name: us}``, chrome-trace dicts (``name`` / ``dur``) or
    objects with ``name`` and ``duration_us``. Kernels matching none of our op patterns go to "other"
    (torch elementwise / copies / casts)."""
    if by not in ("kind", "label"):
        raise ValueError(f"by must be 'kind' or 'label', got {by!r}")
    out: dict[str, float] = {}
    for name, us in _events(events):
        kind, label = classify_kernel(name)
        key = kind if by == "kind" else label
        out[key] = out.get(key, 0.0) + us
    return out


# ---------------------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def roofline_table(costs: Iterable[OpCost], measured: Mapping[str, float] | None = None,
                   read_gbps: float | None = None, write_gbps: float | None = None,
                   launch_us: float | None = None, *, floor: Floor | None = None, title: str | None = None) -> str:
    """Markdown: op kind | bytes | floor µs | measured µs | x floor | share of total (of the measured time
    when given, else of the floor). The floor is ``floor`` or :func:`floor_us` of ``costs`` at ``read_gbps``
    / ``write_gbps`` / ``launch_us``; ``measured`` is keyed by kind (:func:`attribute_kernels`); measured
    kinds without costs (e.g. "other") get their own row."""
    costs = list(costs)
    if floor is None:
        if read_gbps is None:
            raise ValueError("roofline_table needs floor= or read_gbps=")
        floor = floor_us(costs, read_gbps, write_gbps, launch_us)
    kinds = summarize_by_kind(costs)
    fk = floor.by_kind()
    meas = dict(measured or {})
    keys = list(kinds) + [k for k in meas if k not in kinds]
    tot_floor = floor.total_us
    tot_meas = sum(meas.values()) if meas else 0.0
    lines = [] if title is None else [f"**{title}**", ""]
    lines += ["| op kind | bytes | floor µs | measured µs | × floor | share of total |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k in keys:
        c, f = kinds.get(k), fk.get(k)
        m = meas.get(k)
        fl = f.floor_us if f is not None else None
        ratio = f"{m / fl:.2f}" if (m is not None and fl) else "—"
        share = ((m or 0.0) / tot_meas) if meas else ((fl or 0.0) / tot_floor if tot_floor else 0.0)
        lines.append(f"| {k} | {_fmt_bytes(c.bytes) if c else '—'} | {f'{fl:.2f}' if fl is not None else '—'} | "
                     f"{f'{m:.2f}' if m is not None else '—'} | {ratio} | {share:.1%} |")
    all_bytes = sum(c.bytes for c in costs)
    ratio = f"{tot_meas / tot_floor:.2f}" if (meas and tot_floor) else "—"
    lines.append(f"| **total** | {_fmt_bytes(all_bytes)} | {tot_floor:.2f} | "
                 f"{f'{tot_meas:.2f}' if meas else '—'} | {ratio} | 100.0% |")
    lt = f", {floor.launch_us_per_kernel:g} µs per launch" if floor.launch_us_per_kernel else ""
    lines += ["", f"Floor: bytes at {floor.read_gbps:g} GB/s read / {floor.write_gbps:g} GB/s write{lt}; per op "
              "the max of bytes, compute and launch time."]
    return "\n".join(lines)
