"""One configuration for Mamba1 and Mamba2 language models.

Two on-disk dialects are read and written:

* Hugging Face ``transformers`` (``config.json`` with ``model_type`` "mamba" or "mamba2"): field names
  ``hidden_size``, ``num_hidden_layers``, ``state_size``, ... and ``vocab_size`` already padded.
* ``mamba_ssm`` (``config.json`` with ``d_model``, ``n_layer``, ``ssm_cfg``): ``vocab_size`` is the
  tokenizer's size and the model pads it up to ``pad_vocab_size_multiple`` when it builds the embedding.

Inside quamba-edge ``vocab_size`` is always the padded size actually used by the embedding, so the two
readers agree on shapes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Arch = Literal["mamba1", "mamba2"]

_INF = float("inf")


def _pad_to_multiple(n: int, multiple: int) -> int:
    if multiple <= 1 or n % multiple == 0:
        return n
    return n + multiple - n % multiple


def _unsupported(field_name: str, value: Any, what_to_do: str) -> ValueError:
    return ValueError(f"unsupported model setting {field_name}={value!r}: {what_to_do}")


@dataclass
class MambaConfig:
    """Architecture of a Mamba1 or Mamba2 LM (no MLP, no attention layers, RMSNorm everywhere).

    Sizes follow shared/spec/quamba.md section A: ``d_model`` = d, ``d_inner`` = E = expand * d,
    ``d_state`` = N, ``d_conv`` = K, ``dt_rank`` = R (Mamba1), ``headdim`` = P, ``nheads`` = H = E / P,
    ``ngroups`` = G (Mamba2).
    """

    arch: Arch = "mamba1"
    d_model: int = 768
    n_layer: int = 24
    vocab_size: int = 50280  # padded size used by the embedding and lm_head
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | Literal["auto"] = "auto"  # Mamba1 only; "auto" = ceil(d_model / 16)
    headdim: int = 64  # Mamba2 only
    ngroups: int = 1  # Mamba2 only
    chunk_size: int = 256  # Mamba2 only (SSD chunk length)
    conv_bias: bool = True
    bias: bool = False  # in_proj / out_proj bias
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    residual_in_fp32: bool = True
    norm_before_gate: bool = False  # Mamba2 gated norm
    dt_limit: tuple[float, float] = (0.0, _INF)  # Mamba2 clamp of softplus(dt + dt_bias)
    pad_vocab_size_multiple: int = 8
    # Token ids carried along so a round trip through either format keeps them (None = unknown).
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.arch not in ("mamba1", "mamba2"):
            raise _unsupported("arch", self.arch, 'use "mamba1" or "mamba2"')
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        self.dt_rank = int(self.dt_rank)
        self.dt_limit = (_as_float(self.dt_limit[0]), _as_float(self.dt_limit[1]))
        for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "headdim",
                     "ngroups", "chunk_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_conv < 2:
            raise _unsupported("d_conv", self.d_conv, "the causal conv needs a width of at least 2")
        if self.arch == "mamba2":
            if self.d_inner % self.headdim != 0:
                raise ValueError(
                    f"d_inner (= expand * d_model = {self.d_inner}) must be a multiple of headdim "
                    f"({self.headdim})")
            if self.nheads % self.ngroups != 0:
                raise ValueError(
                    f"nheads ({self.nheads}) must be a multiple of ngroups ({self.ngroups})")

    # ---- derived sizes -------------------------------------------------------------------------

    @property
    def d_inner(self) -> int:
        """E: width of the SSM branch."""
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        """H (Mamba2): number of SSD heads; for Mamba1 every channel is its own "head" (E)."""
        return self.d_inner // self.headdim if self.arch == "mamba2" else self.d_inner

    @property
    def conv_dim(self) -> int:
        """Channels of the depthwise conv: E (Mamba1) or E + 2GN (Mamba2: x, B and C)."""
        if self.arch == "mamba2":
            return self.d_inner + 2 * self.ngroups * self.d_state
        return self.d_inner

    @property
    def in_proj_dim(self) -> int:
        """Output features of in_proj: [x|z] = 2E (Mamba1), [z|x|B|C|dt] = 2E+2GN+H (Mamba2)."""
        if self.arch == "mamba2":
            return 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads
        return 2 * self.d_inner

    @property
    def group_size(self) -> int:
        """Channels per gated-norm group (Mamba2): E / G."""
        return self.d_inner // self.ngroups

    @property
    def conv_state_shape(self) -> tuple[int, int]:
        """Per-sample conv state [C, K-1] (docs/CONTRACTS.md)."""
        return (self.conv_dim, self.d_conv - 1)

    @property
    def ssm_state_shape(self) -> tuple[int, ...]:
        """Per-sample SSM state: [E, N] (Mamba1) or [H, P, N] (Mamba2)."""
        if self.arch == "mamba2":
            return (self.nheads, self.headdim, self.d_state)
        return (self.d_inner, self.d_state)

    # ---- generic dict I/O ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dt_limit"] = list(self.dt_limit)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MambaConfig":
        """Read any of: HF config.json, mamba_ssm config.json, or our own ``to_dict()``."""
        if "model_type" in d:
            return cls.from_hf_dict(d)
        if "arch" in d:
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(d) - known)
            if unknown:
                raise ValueError(f"unknown MambaConfig fields: {unknown}")
            kw = dict(d)
            if "dt_limit" in kw:
                kw["dt_limit"] = tuple(kw["dt_limit"])
            return cls(**kw)
        if "d_model" in d:
            return cls.from_mamba_ssm_dict(d)
        raise ValueError(
            "cannot tell the config format: expected 'model_type' (transformers), 'd_model' "
            "(mamba_ssm) or 'arch' (quamba-edge)")

    # ---- transformers (config.json of MambaForCausalLM / Mamba2ForCausalLM) ---------------------

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "MambaConfig":
        model_type = d.get("model_type")
        if model_type not in ("mamba", "mamba2"):
            raise _unsupported("model_type", model_type,
                               'only transformers "mamba" and "mamba2" checkpoints are supported')
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise _unsupported("hidden_act", act, "Mamba mixers here use SiLU only")
        if d.get("rms_norm", True) is False:
            raise _unsupported("rms_norm", False, "only RMSNorm models are supported")
        common = dict(
            d_model=int(d["hidden_size"]),
            n_layer=int(d["num_hidden_layers"]),
            vocab_size=int(d["vocab_size"]),
            d_conv=int(d.get("conv_kernel", 4)),
            expand=int(d.get("expand", 2)),
            conv_bias=bool(d.get("use_conv_bias", True)),
            bias=bool(d.get("use_bias", False)),
            rms_norm_eps=float(d.get("layer_norm_epsilon", 1e-5)),
            residual_in_fp32=bool(d.get("residual_in_fp32", True)),
            bos_token_id=_first_id(d.get("bos_token_id")),
            eos_token_id=_first_id(d.get("eos_token_id")),
            pad_token_id=_first_id(d.get("pad_token_id")),
        )
        if model_type == "mamba":
            # transformers' MambaConfig ties by default.
            return cls(
                arch="mamba1",
                d_state=int(d.get("state_size", 16)),
                dt_rank=d.get("time_step_rank", "auto"),
                tie_embeddings=bool(d.get("tie_word_embeddings", True)),
                pad_vocab_size_multiple=int(d.get("pad_vocab_size_multiple", 8)),
                **common,
            )
        # Mamba2: transformers' Mamba2Config does not tie by default.
        headdim = int(d.get("head_dim", 64))
        nheads = d.get("num_heads")
        cfg = cls(
            arch="mamba2",
            d_state=int(d.get("state_size", 128)),
            headdim=headdim,
            ngroups=int(d.get("n_groups", 1)),
            chunk_size=int(d.get("chunk_size", 256)),
            tie_embeddings=bool(d.get("tie_word_embeddings", False)),
            norm_before_gate=bool(d.get("norm_before_gate", False)),
            dt_limit=tuple(d.get("time_step_limit", (0.0, _INF))),
            pad_vocab_size_multiple=int(d.get("pad_vocab_size_multiple", 16)),
            **common,
        )
        if nheads is not None and int(nheads) != cfg.nheads:
            raise ValueError(
                f"num_heads={nheads} does not match hidden_size*expand/head_dim = {cfg.nheads}; "
                "partial-SSM models (d_ssm < d_inner) are not supported")
        return cfg

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json that transformers' MambaConfig / Mamba2Config accepts."""
        d: dict[str, Any] = dict(
            hidden_size=self.d_model,
            num_hidden_layers=self.n_layer,
            vocab_size=self.vocab_size,
            state_size=self.d_state,
            conv_kernel=self.d_conv,
            expand=self.expand,
            use_conv_bias=self.conv_bias,
            use_bias=self.bias,
            hidden_act="silu",
            layer_norm_epsilon=self.rms_norm_eps,
            residual_in_fp32=self.residual_in_fp32,
            tie_word_embeddings=self.tie_embeddings,
            pad_vocab_size_multiple=self.pad_vocab_size_multiple,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )
        if self.arch == "mamba1":
            d.update(model_type="mamba", architectures=["MambaForCausalLM"], time_step_rank=self.dt_rank)
        else:
            d.update(
                model_type="mamba2",
                architectures=["Mamba2ForCausalLM"],
                num_heads=self.nheads,
                head_dim=self.headdim,
                n_groups=self.ngroups,
                chunk_size=self.chunk_size,
                time_step_limit=list(self.dt_limit),
            )
            if self.norm_before_gate:
                # transformers has no such field (it always gates before the norm); keep ours.
                d["norm_before_gate"] = True
        return d

    # ---- mamba_ssm (config.json of MambaLMHeadModel) -------------------------------------------

    @classmethod
    def from_mamba_ssm_dict(cls, d: dict[str, Any]) -> "MambaConfig":
        ssm_cfg = dict(d.get("ssm_cfg") or {})
        layer = ssm_cfg.pop("layer", "Mamba1")
        if layer not in ("Mamba1", "Mamba2"):
            raise _unsupported("ssm_cfg.layer", layer, 'use "Mamba1" or "Mamba2"')
        if int(d.get("d_intermediate", 0) or 0) != 0:
            raise _unsupported("d_intermediate", d["d_intermediate"],
                               "models with an MLP after each mixer are not supported (set 0)")
        if d.get("attn_layer_idx"):
            raise _unsupported("attn_layer_idx", d["attn_layer_idx"],
                               "hybrid models with attention layers are not supported")
        if d.get("rms_norm", True) is False:
            raise _unsupported("rms_norm", False, "only RMSNorm models are supported (LayerNorm is not)")
        if int(ssm_cfg.pop("d_mlp", 0) or 0) != 0:
            raise _unsupported("ssm_cfg.d_mlp", d["ssm_cfg"]["d_mlp"],
                               "set 0; gated-MLP parts of in_proj are not supported")
        if ssm_cfg.get("D_has_hdim", False):
            raise _unsupported("ssm_cfg.D_has_hdim", True,
                               "only one D per head is supported (D_has_hdim=False)")
        if ssm_cfg.get("rmsnorm", True) is False:
            raise _unsupported("ssm_cfg.rmsnorm", False,
                               "Mamba2 without the gated RMSNorm is not supported")
        multiple = int(d.get("pad_vocab_size_multiple", 8))
        d_model = int(d["d_model"])
        expand = int(ssm_cfg.get("expand", 2))
        d_ssm = ssm_cfg.get("d_ssm")
        if d_ssm is not None and int(d_ssm) != expand * d_model:
            raise _unsupported("ssm_cfg.d_ssm", d_ssm,
                               f"partial SSM is not supported; leave it null or set {expand * d_model}")
        common = dict(
            d_model=d_model,
            n_layer=int(d["n_layer"]),
            # mamba_ssm pads the tokenizer vocabulary when it builds the embedding.
            vocab_size=_pad_to_multiple(int(d["vocab_size"]), multiple),
            d_conv=int(ssm_cfg.get("d_conv", 4)),
            expand=expand,
            conv_bias=bool(ssm_cfg.get("conv_bias", True)),
            bias=bool(ssm_cfg.get("bias", False)),
            rms_norm_eps=float(d.get("norm_epsilon", 1e-5)),
            tie_embeddings=bool(d.get("tie_embeddings", True)),
            residual_in_fp32=bool(d.get("residual_in_fp32", True)),
            pad_vocab_size_multiple=multiple,
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=d.get("eos_token_id"),
            pad_token_id=d.get("pad_token_id"),
        )
        if layer == "Mamba1":
            return cls(arch="mamba1", d_state=int(ssm_cfg.get("d_state", 16)),
                       dt_rank=ssm_cfg.get("dt_rank", "auto"), **common)
        dt_limit = ssm_cfg.get("dt_limit", (0.0, _INF))
        return cls(
            arch="mamba2",
            d_state=int(ssm_cfg.get("d_state", 128)),
            headdim=int(ssm_cfg.get("headdim", 64)),
            ngroups=int(ssm_cfg.get("ngroups", 1)),
            chunk_size=int(ssm_cfg.get("chunk_size", 256)),
            norm_before_gate=bool(ssm_cfg.get("norm_before_gate", False)),
            dt_limit=tuple(dt_limit),
            **common,
        )

    def to_mamba_ssm_dict(self) -> dict[str, Any]:
        """A config.json that mamba_ssm's MambaLMHeadModel accepts."""
        multiple = self.pad_vocab_size_multiple
        if self.vocab_size % max(multiple, 1) != 0:
            # mamba_ssm would pad our already-final size again; disable padding to keep the shape.
            multiple = 1
        if self.arch == "mamba1":
            ssm_cfg: dict[str, Any] = dict(layer="Mamba1", d_state=self.d_state, d_conv=self.d_conv,
                                           expand=self.expand, dt_rank=self.dt_rank,
                                           conv_bias=self.conv_bias, bias=self.bias)
        else:
            ssm_cfg = dict(layer="Mamba2", d_state=self.d_state, d_conv=self.d_conv, expand=self.expand,
                           headdim=self.headdim, ngroups=self.ngroups, chunk_size=self.chunk_size,
                           conv_bias=self.conv_bias, bias=self.bias,
                           norm_before_gate=self.norm_before_gate)
            if self.dt_limit != (0.0, _INF):
                # json cannot hold inf; only write a non-default limit.
                ssm_cfg["dt_limit"] = list(self.dt_limit)
        d: dict[str, Any] = dict(
            d_model=self.d_model,
            d_intermediate=0,
            n_layer=self.n_layer,
            vocab_size=self.vocab_size,
            ssm_cfg=ssm_cfg,
            attn_layer_idx=[],
            attn_cfg={},
            rms_norm=True,
            residual_in_fp32=self.residual_in_fp32,
            fused_add_norm=True,
            pad_vocab_size_multiple=multiple,
            tie_embeddings=self.tie_embeddings,
        )
        if self.rms_norm_eps != 1e-5:
            d["norm_epsilon"] = self.rms_norm_eps  # not a mamba_ssm field; kept for our round trip
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


def _as_float(v: Any) -> float:
    """A float from json: a number, "inf"/"Infinity", or transformers 5's {"__float__": "Infinity"}."""
    if isinstance(v, dict) and "__float__" in v:
        v = v["__float__"]
    return float(v)


def _first_id(v: Any) -> int | None:
    """transformers allows a list of eos ids; we keep the first."""
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else None
    return None if v is None else int(v)
