"""QuantConfig: everything needed to rebuild a quantized model's skeleton (module classes, buffer shapes,
state dtypes) from the configuration alone, plus a JSON-able ``to_dict`` / ``from_dict``.

Recipes (shared/spec/quamba.md B, C):

* ``"quamba"`` (paper / REPO@v1, B.0 item 1): W8A8 only; no residual rotation (block norm weights kept,
  not fused), Hadamard on the out_proj input only, percentile alpha 0.99999 on the SSM input x, fp16 SSM
  state cache, fp16 embedding and lm_head (and fp final norm). Defined for ``mamba1``; on ``mamba2`` it
  is the same v1-style pipeline (per-tensor x scale, no sort-and-cluster, fp16 state).
* ``"quamba2"`` (REPO@HEAD, C.1): residual rotation + norm fusion, out_proj-input Hadamard, W8A8 / W4A8 /
  W4A16, GPTQ for W4, W8/W4 per-row embedding and quantized lm_head (H2T), int8 SSM state for A8.
  Mamba2 A8 uses sort-and-cluster (``group_heads=True``); ``group_heads=False`` is HEAD's fallback to the
  percentile path, i.e. the "Quamba on Mamba2" baseline of Q2-paper (spec F.27).

Mamba2 group tables: for every layer ``head_groups[layer]`` ``[G][m]`` and ``channel_groups[layer]``
``[G][m][n]`` (sizes, quamba_edge.quant.groups conventions). Without sort-and-cluster the tables are the
trivial ``m = n = 1`` ones (one block per SSD group: a per-tensor x scale is stored as G equal entries),
so one buffer layout serves both paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["QuantConfig", "VALID_COMBOS", "RECIPE_NAMES", "BITS_NAMES", "ARCH_NAMES"]

RECIPE_NAMES = ("quamba", "quamba2")
BITS_NAMES = ("w8a8", "w4a8", "w4a16")
ARCH_NAMES = ("mamba1", "mamba2")

#: Valid (recipe, bits, arch) combinations.
VALID_COMBOS: tuple[tuple[str, str, str], ...] = (
    ("quamba", "w8a8", "mamba1"),
    ("quamba", "w8a8", "mamba2"),
    ("quamba2", "w8a8", "mamba1"),
    ("quamba2", "w4a8", "mamba1"),
    ("quamba2", "w4a16", "mamba1"),
    ("quamba2", "w8a8", "mamba2"),
    ("quamba2", "w4a8", "mamba2"),
    ("quamba2", "w4a16", "mamba2"),
)

_FORMAT_VERSION = 1


def _combos_text() -> str:
    return ", ".join(f"{r}/{b}/{a}" for r, b, a in VALID_COMBOS)


@dataclass
class QuantConfig:
    """Quantization recipe, bit widths and options. ``None`` options take the recipe's default in
    ``__post_init__`` (so ``QuantConfig("quamba2", "w4a8", "mamba2")`` is the canonical Quamba2 W4A8)."""

    recipe: str = "quamba2"
    bits: str = "w8a8"
    arch: str = "mamba1"
    #: percentile of |x| for the SSM input x (and the SSM state on the percentile path); None = recipe
    #: default (quamba 0.99999, quamba2 0.9995; spec B.2, C.6).
    percentile_alpha: float | None = None
    group_size: int = 128  # W4 group size along the input dim (layers with K <= group_size: per channel)
    gptq: bool | None = None  # W4 weights by GPTQ (True) or RTN (False); default True for W4
    gptq_damp: float = 0.01
    quantize_embedding: bool | None = None  # default: quamba2 True, quamba False
    quantize_lm_head: bool | None = None  # default: quamba2 True, quamba False
    ssm_state_bits: int | None = None  # 8 (int8 state) or 16 (fp16); default: A8 quamba2 8, else 16
    residual_rotation: bool | None = None  # default: quamba2 True, quamba False
    out_proj_hadamard: bool = True  # online Hadamard on the out_proj input (both recipes)
    group_heads: bool | None = None  # Mamba2 A8 sort-and-cluster; default True for quamba2/mamba2/A8
    #: Mamba2 A8: B / C after the conv (SSM inputs) with one scale per SSD group (spec C.5, True) or one
    #: per-tensor scale (False). None = ``group_heads`` (Quamba2's grouped calibration uses per-group
    #: B/C; HEAD's percentile path, group_heads=False, per-tensor). Ablation knob (Q2-paper Table 8).
    bc_per_group: bool | None = None
    nhead_groups: int = 4
    ndim_groups: int = 4
    fp_dtype: str = "float16"  # storage dtype of every tensor kept in floating point
    #: Mamba2 per-layer group tables (see module docstring); None for Mamba1.
    head_groups: list[list[list[int]]] | None = None
    channel_groups: list[list[list[list[int]]]] | None = None
    #: free-form provenance (calibration data, seeds, ...); not used to build the model.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPE_NAMES:
            raise ValueError(f"unknown recipe {self.recipe!r}; valid recipes: {', '.join(RECIPE_NAMES)} "
                             f"(valid recipe/bits/arch: {_combos_text()})")
        if self.bits not in BITS_NAMES:
            raise ValueError(f"unknown bits {self.bits!r}; valid: {', '.join(BITS_NAMES)} "
                             f"(valid recipe/bits/arch: {_combos_text()})")
        if self.arch not in ARCH_NAMES:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(ARCH_NAMES)}")
        if (self.recipe, self.bits, self.arch) not in VALID_COMBOS:
            raise ValueError(f"unsupported combination recipe={self.recipe!r}, bits={self.bits!r}, "
                             f"arch={self.arch!r}; valid recipe/bits/arch: {_combos_text()}")
        v1 = self.recipe == "quamba"
        if self.percentile_alpha is None:
            self.percentile_alpha = 0.99999 if v1 else 0.9995
        if not 0.0 < float(self.percentile_alpha) <= 1.0:
            raise ValueError(f"percentile_alpha must be in (0, 1], got {self.percentile_alpha}")
        self.percentile_alpha = float(self.percentile_alpha)
        if self.gptq is None:
            self.gptq = self.w_bits == 4
        if self.quantize_embedding is None:
            self.quantize_embedding = not v1
        if self.quantize_lm_head is None:
            self.quantize_lm_head = not v1
        if self.residual_rotation is None:
            self.residual_rotation = not v1
        if self.ssm_state_bits is None:
            self.ssm_state_bits = 8 if (self.a_bits == 8 and not v1) else 16
        if self.ssm_state_bits not in (8, 16):
            raise ValueError(f"ssm_state_bits must be 8 or 16, got {self.ssm_state_bits}")
        if self.ssm_state_bits == 8 and self.a_bits != 8:
            raise ValueError("an int8 SSM state (ssm_state_bits=8) needs 8-bit activations (w8a8/w4a8)")
        if self.group_heads is None:
            self.group_heads = self.arch == "mamba2" and self.a_bits == 8 and not v1
        if self.group_heads and (self.arch != "mamba2" or self.a_bits != 8):
            raise ValueError("group_heads (sort-and-cluster) applies to mamba2 with 8-bit activations only")
        if self.group_heads and v1:
            raise ValueError("recipe 'quamba' has no sort-and-cluster; use recipe 'quamba2' with "
                             "group_heads=True")
        if self.bc_per_group is None:
            self.bc_per_group = bool(self.group_heads)
        self.bc_per_group = bool(self.bc_per_group)
        if self.bc_per_group and (self.arch != "mamba2" or self.a_bits != 8):
            raise ValueError("bc_per_group (per-SSD-group B/C scales) applies to mamba2 with 8-bit "
                             "activations only")
        if self.group_size != -1 and self.group_size <= 0:
            raise ValueError(f"group_size must be positive or -1, got {self.group_size}")
        if self.nhead_groups < 1 or self.ndim_groups < 1:
            raise ValueError("nhead_groups and ndim_groups must be >= 1")
        if self.fp_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"fp_dtype must be float16, bfloat16 or float32, got {self.fp_dtype!r}")
        if self.arch == "mamba1" and (self.head_groups is not None or self.channel_groups is not None):
            raise ValueError("head_groups / channel_groups are Mamba2-only")
        if (self.head_groups is None) != (self.channel_groups is None):
            raise ValueError("give both head_groups and channel_groups, or neither")
        if self.head_groups is not None:
            self.head_groups = [[[int(v) for v in row] for row in layer] for layer in self.head_groups]
            self.channel_groups = [[[[int(v) for v in r] for r in g] for g in layer]
                                   for layer in self.channel_groups]
            if len(self.head_groups) != len(self.channel_groups):
                raise ValueError("head_groups and channel_groups must have one entry per layer")

    # ---- derived ---------------------------------------------------------------------------------

    @property
    def w_bits(self) -> int:
        return 4 if self.bits.startswith("w4") else 8

    @property
    def a_bits(self) -> int:
        return 16 if self.bits.endswith("a16") else 8

    @property
    def act8(self) -> bool:
        """True for 8-bit activations (W8A8, W4A8)."""
        return self.a_bits == 8

    @property
    def int8_ssm_state(self) -> bool:
        return self.ssm_state_bits == 8

    @property
    def lm_head_a8(self) -> bool:
        """The final norm emits int8 into an A8 lm_head (spec F.11)."""
        return bool(self.quantize_lm_head) and self.a_bits == 8

    @property
    def torch_fp_dtype(self):
        import torch

        return getattr(torch, self.fp_dtype)

    def trivial_groups(self, nheads: int, headdim: int, ngroups: int) -> tuple[list, list]:
        """The m = n = 1 tables of one layer (one x / state block per SSD group)."""
        return ([[nheads // ngroups] for _ in range(ngroups)], [[[headdim]] for _ in range(ngroups)])

    def layer_groups(self, layer_idx: int, nheads: int, headdim: int, ngroups: int) -> tuple[list, list]:
        """``(head_groups [G][m], channel_groups [G][m][n])`` of one Mamba2 layer."""
        if not self.group_heads:
            return self.trivial_groups(nheads, headdim, ngroups)
        if self.head_groups is None:
            raise ValueError("group_heads=True needs the per-layer head_groups / channel_groups tables "
                             "(filled in by the quantization recipe after sort-and-cluster)")
        if layer_idx >= len(self.head_groups):
            raise ValueError(f"no group table for layer {layer_idx} ({len(self.head_groups)} layers given)")
        return self.head_groups[layer_idx], self.channel_groups[layer_idx]

    def validate_for(self, model_config) -> None:
        """Check against a MambaConfig (arch and, for Mamba2, the group tables)."""
        if model_config.arch != self.arch:
            raise ValueError(f"quant config is for {self.arch}, model is {model_config.arch}")
        if self.arch == "mamba2" and self.group_heads:
            from .groups import validate_groups
            import torch

            if self.head_groups is None or len(self.head_groups) != model_config.n_layer:
                raise ValueError(f"group_heads=True needs {model_config.n_layer} per-layer group tables")
            if len(self.channel_groups) != model_config.n_layer:
                raise ValueError(f"group_heads=True needs {model_config.n_layer} per-layer group tables")
            with torch.device("cpu"):  # plain data checks, also when a skeleton is built on "meta"
                for hg, cg in zip(self.head_groups, self.channel_groups):
                    validate_groups(torch.tensor(hg), torch.tensor(cg), model_config.nheads,
                                    model_config.headdim)

    # ---- dict I/O --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format_version"] = _FORMAT_VERSION
        d["w_bits"], d["a_bits"] = self.w_bits, self.a_bits  # informative; recomputed on load
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QuantConfig":
        d = dict(d)
        version = d.pop("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise ValueError(f"QuantConfig format_version {version} is not supported (this code reads "
                             f"{_FORMAT_VERSION})")
        w_bits, a_bits = d.pop("w_bits", None), d.pop("a_bits", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown QuantConfig fields: {unknown}")
        cfg = cls(**d)
        if (w_bits is not None and w_bits != cfg.w_bits) or (a_bits is not None and a_bits != cfg.a_bits):
            raise ValueError(f"w_bits/a_bits ({w_bits}/{a_bits}) disagree with bits={cfg.bits!r}")
        return cfg
