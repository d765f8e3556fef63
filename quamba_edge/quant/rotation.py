"""Norm fusion and Hadamard rotations of an FP MambaLM (spec C.1 step 1, C.2, B.3; pitfalls F.9, F.10).

All transforms are exact in real arithmetic; products are computed in float64 and cast back to each
weight's dtype, so an fp32 model's logits move only by fp32 rounding. Keep the model in fp32 (or
float64) while transforming and calibrating. Every function edits the model in place and returns it.

Orientation (row-vector activations, ``out = x Wᵀ``; ``M = hadamard_matrix(n)``, ``M Mᵀ = I``, M is not
symmetric for the 12·2^k / 40·2^k families) — the convention of :mod:`quamba_edge.quant.hadamard`:

* Rotated residual stream: ``r' = r · M_dᵀ`` (= ``hadamard_transform(r)``: every row Hadamard-transformed,
  upstream's ``had_transform`` on the last dim). RMSNorm with unit weight commutes with it (the RMS of a
  row is invariant under an orthonormal map), so the block norms and norm_f pass it through.
* embedding rows:          ``E' = E · M_dᵀ``                   (emits rotated rows)
* in_proj (input side):    ``W' = W · M_dᵀ``                   (``r' W'ᵀ = r Mᵀ M Wᵀ = r Wᵀ``)
* out_proj (output side):  ``W' = M_d · W``, ``b' = b · M_dᵀ``  (emits ``out · M_dᵀ``, stays rotated)
* lm_head (input side):    ``W' = W · M_dᵀ``
* out_proj input (online): ``out_proj(y) = linear(y · M_Eᵀ)`` with ``linear.weight = W · M_Eᵀ``
  (``y Mᵀ (W Mᵀ)ᵀ = y Mᵀ M Wᵀ = y Wᵀ``); :class:`HadamardLinear`.

The spec writes these as "·M" / "Mᵀ·W" for a generic orthonormal M; with ``M := M_dᵀ`` they are the
same products. What matters (F.9) is that the online transform and the fused weight use the same
matrix: :class:`HadamardLinear` stores that matrix as its ``hadamard_matrix`` buffer.

Pipeline order (F.5): ``fuse_norms`` → ``rotate_residual`` → (Mamba2 A8: ``reorder.reorder_mamba2``) →
``rotate_out_proj_input`` → ``calibrate.collect_scales``. The out_proj-input Hadamard must come after the
reorder (a column permutation of ``W·Mᵀ`` is not a permutation of ``W``); ``reorder_mamba2`` refuses a
model that already has it. The residual rotation commutes with the reorder (it touches in_proj columns
and out_proj rows, the reorder in_proj rows and out_proj columns).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..models.lm import MambaLM
from .hadamard import hadamard_matrix

__all__ = [
    "HadamardLinear",
    "untie_lm_head",
    "fuse_norms",
    "rotate_residual",
    "rotate_out_proj_input",
    "is_tied",
]


def _online_matrix(n: int, like: Tensor) -> Tensor:
    """The online ``M_n`` buffer: fp32 (float64 for a float64 model), a copy of the cached matrix."""
    dt = torch.float64 if like.dtype == torch.float64 else torch.float32
    return hadamard_matrix(n, dt).to(like.device).clone()


def _f64(t: Tensor) -> Tensor:
    return t.detach().to(torch.float64)


def _rot(n: int, device: torch.device) -> Tensor:
    """float64 ``M_n`` (orthonormal, the cached matrix of :func:`hadamard_matrix`)."""
    return hadamard_matrix(n, torch.float64).to(device)


@torch.no_grad()
def _set(param: Tensor, value: Tensor) -> None:
    param.copy_(value.to(param.dtype))


class HadamardLinear(nn.Module):
    """``out_proj`` with an online Hadamard on its input (spec B.3, C.2).

    ``forward(y) = linear(y · Mᵀ)``, ``M = hadamard_matrix`` (buffer ``[E, E]``), ``linear.weight = W · Mᵀ``
    for the original weight ``W``. Calibration hooks on ``.linear`` see the Hadamard-domain input (the
    ``out_proj:input`` scale, spec B.2). The product ``y · Mᵀ`` is computed in fp32 (float64 for float64
    inputs) and cast back to ``y``'s dtype. The buffer is not persistent (it is ``hadamard_matrix(E)``,
    rebuilt on demand), so it does not enter state dicts.
    """

    def __init__(self, linear: nn.Linear, matrix: Tensor) -> None:
        super().__init__()
        n = linear.in_features
        if tuple(matrix.shape) != (n, n):
            raise ValueError(f"Hadamard matrix must be [{n}, {n}], got {tuple(matrix.shape)}")
        self.linear = linear
        self.register_buffer("hadamard_matrix", matrix, persistent=False)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, matrix: Tensor | None = None) -> "HadamardLinear":
        """Wrap ``linear`` (weight ``W``), fusing ``W · Mᵀ`` in float64 into a new ``nn.Linear``."""
        n = linear.in_features
        w = linear.weight
        m = matrix if matrix is not None else _online_matrix(n, w)
        fused = nn.Linear(n, linear.out_features, bias=linear.bias is not None, device=w.device,
                          dtype=w.dtype)
        _set(fused.weight, _f64(w) @ _rot(n, w.device).T)
        if linear.bias is not None:
            fused.bias.copy_(linear.bias)
        return cls(fused, m)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def forward(self, y: Tensor) -> Tensor:
        cd = torch.float64 if y.dtype == torch.float64 else torch.float32
        yh = torch.matmul(y.to(cd), self.hadamard_matrix.to(cd).T).to(y.dtype)
        return self.linear(yh)

    def extra_repr(self) -> str:
        return f"hadamard={self.in_features}"


# ---- norm fusion --------------------------------------------------------------------------------


def is_tied(model: MambaLM) -> bool:
    return model.lm_head.weight is model.embedding.weight


@torch.no_grad()
def untie_lm_head(model: MambaLM) -> MambaLM:
    """Give lm_head its own copy of the embedding matrix (F.10: fusing norm_f into a tied head would
    corrupt the embedding). ``model.config`` is replaced by a copy with ``tie_embeddings=False`` (the
    mixers' shared config object is left alone) so ``tie_weights`` will not tie it again."""
    if is_tied(model):
        model.lm_head.weight = nn.Parameter(model.embedding.weight.detach().clone())
    if model.config.tie_embeddings:
        model.config = dataclasses.replace(model.config, tie_embeddings=False)
    return model


@torch.no_grad()
def fuse_norms(model: MambaLM) -> MambaLM:
    """Fold RMSNorm weights into the next linear and set them to 1 (spec C.1 step 1, F.10).

    Block norm: ``in_proj.weight ← W · diag(γ)`` (columns scaled). norm_f: ``lm_head.weight ← W_lm ·
    diag(γ_f)`` after :func:`untie_lm_head`. The Mamba2 gated-norm weight is NOT fused (it stays in
    the gated-norm op, spec C.7). Idempotent.
    """
    untie_lm_head(model)
    for layer in model.layers:
        lin = _linear(layer.mixer.in_proj)
        _fold_norm(layer.norm.weight, lin)
    _fold_norm(model.norm_f.weight, model.lm_head)
    return model


def _fold_norm(gamma: nn.Parameter, lin: nn.Linear) -> None:
    _set(lin.weight, _f64(lin.weight) * _f64(gamma)[None, :])
    gamma.fill_(1.0)


def _linear(m: nn.Module) -> nn.Linear:
    return m.linear if isinstance(m, HadamardLinear) else m


# ---- residual rotation --------------------------------------------------------------------------


def _check_unit_norms(model: MambaLM) -> None:
    norms = [(f"layers.{i}.norm", l.norm.weight) for i, l in enumerate(model.layers)]
    norms.append(("norm_f", model.norm_f.weight))
    bad = [name for name, w in norms if not bool((w == 1).all())]
    if bad:
        raise ValueError(f"rotate_residual needs unit RMSNorm weights (a weighted RMSNorm does not "
                         f"commute with the rotation); call fuse_norms first. Non-unit: {bad[:4]}"
                         f"{' ...' if len(bad) > 4 else ''}")


@torch.no_grad()
def rotate_residual(model: MambaLM) -> MambaLM:
    """Rotate the residual stream by ``M_d`` (module docstring): embedding ``E·M_dᵀ``, every in_proj
    ``W·M_dᵀ``, every out_proj ``M_d·W`` (bias ``b·M_dᵀ``), lm_head ``W·M_dᵀ``. Needs unit norm weights
    (:func:`fuse_norms` first). Works before or after :func:`rotate_out_proj_input`. Not idempotent:
    calling it twice rotates twice (still exact, but not what the recipes expect)."""
    _check_unit_norms(model)
    d = model.config.d_model
    m = _rot(d, model.embedding.weight.device)
    tied = is_tied(model)
    _set(model.embedding.weight, _f64(model.embedding.weight) @ m.T)
    for layer in model.layers:
        inp = _linear(layer.mixer.in_proj)
        _set(inp.weight, _f64(inp.weight) @ m.T)
        out = _linear(layer.mixer.out_proj)
        _set(out.weight, m @ _f64(out.weight))
        if out.bias is not None:
            _set(out.bias, _f64(out.bias) @ m.T)
    if not tied:  # a tied head already got E·Mᵀ through the shared matrix
        _set(model.lm_head.weight, _f64(model.lm_head.weight) @ m.T)
    return model


# ---- out_proj input Hadamard --------------------------------------------------------------------


@torch.no_grad()
def rotate_out_proj_input(model: MambaLM) -> MambaLM:
    """Replace every ``mixer.out_proj`` by a :class:`HadamardLinear` (spec B.3, C.2): fused weight
    ``W·M_Eᵀ``, online ``y·M_Eᵀ``. One ``[E, E]`` matrix (fp32; float64 for a float64 model) is shared
    by all layers until a later ``.to()`` copies buffers per module (E² per layer: mind it for 8B).
    Raises if an out_proj is already a HadamardLinear."""
    m = _online_matrix(model.config.d_inner, model.embedding.weight)
    for i, layer in enumerate(model.layers):
        op = layer.mixer.out_proj
        if isinstance(op, HadamardLinear):
            raise ValueError(f"layers.{i}.mixer.out_proj already has the input Hadamard")
        if not isinstance(op, nn.Linear):
            raise TypeError(f"layers.{i}.mixer.out_proj is a {type(op).__name__}, expected nn.Linear")
        layer.mixer.out_proj = HadamardLinear.from_linear(op, m)
    return model
