"""Hadamard matrices and transforms (spec B.3, C.2, pitfall 9).

Families and size selection (spec B.3, exactly in this order):

1. ``n % 12 == 0`` and ``n // 12`` a power of two → ``12·2^k``;
2. else ``n % 40 == 0`` and ``n // 40`` a power of two → ``40·2^k``;
3. else ``n`` a power of two → Sylvester ``2^k``;
4. else ``ValueError``.

With ``extended=True`` two more families are tried after (1)-(3): ``20·2^k`` and ``28·2^k``. They are
not part of the spec's selection and are off by default.

Base matrices (±1 entries, all computed here, none pasted):

* ``H12``: Paley construction I over GF(11) (q = 11 ≡ 3 mod 4).
* ``H20``: Paley construction I over GF(19).
* ``H40``: Sylvester doubling of ``H20``: ``[[H20, H20], [H20, −H20]]`` (= ``H2 ⊗ H20``).
* ``H28``: Paley construction II over GF(13) (q = 13 ≡ 1 mod 4, order 2(q+1)).
* ``H_{2^k}``: Sylvester, natural (Hadamard) order, ``H_{2m} = [[H_m, H_m], [H_m, −H_m]]``; symmetric.

Paley I: with the quadratic character χ of GF(q) and the Jacobsthal matrix ``Q[i, j] = χ(j − i)``,
``S = [[0, 1ᵀ], [−1, Q]]`` and ``H = I + S``. Paley II: ``C = [[0, 1ᵀ], [1, Q]]`` (symmetric) and
``H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]``. Both are checked (``H Hᵀ = n I``) when built.

Composite matrix for ``n = b·2^k``: ``H_n = H_b ⊗ H_{2^k}`` — the base factor acts on the OUTER (slow)
index: reading ``x`` (length n) as a row-major ``[b, 2^k]`` array ``X``, ``H_n x = vec(H_b · X · H_{2^k})``
(a Walsh–Hadamard transform of each contiguous length-``2^k`` chunk, then the ``b×b`` matrix across the
chunks). Kernels implementing 12N/40N transforms must use this order.

Orthonormal matrix and row/column convention (used everywhere in the SDK):

* ``M = H_n / √n`` (``M Mᵀ = I``; ``M`` is NOT symmetric for the 12/20/28/40 families).
* Activations are row vectors: the online transform is ``y = x · Mᵀ`` (i.e. ``y = M x`` for a column
  vector), see :func:`hadamard_transform`; :func:`hadamard_matrix` returns ``M``.
* Fusing into a linear layer ``out = x Wᵀ`` whose INPUT arrives rotated (``x' = x Mᵀ``):
  ``W' = W Mᵀ`` (= ``hadamard_transform(W)``, each row transformed), since ``x' W'ᵀ = x Mᵀ M Wᵀ = x Wᵀ``.
  See :func:`fuse_input_rotation`.
* Fusing a rotation of the OUTPUT (``out' = out Mᵀ``): ``W' = M W`` and ``b' = b Mᵀ``. See
  :func:`fuse_output_rotation`.
* A row table (embedding) producing rotated rows: ``E' = E Mᵀ`` = ``hadamard_transform(E)``.

Offline fusion and the online transform must use the same ``M`` (pitfall 9): :func:`hadamard_matrix`
materialises one cached matrix per ``(n, dtype)``; :func:`hadamard_transform` computes the same product
with a butterfly and the small base matrix and agrees with ``x @ M.T`` to fp32 rounding. Exporters that
need the dense matrix should export ``hadamard_matrix(n)`` itself.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .quantize import quantize_sym

__all__ = [
    "SUPPORTED_FAMILIES",
    "is_power_of_two",
    "paley1",
    "paley2",
    "sylvester",
    "base_hadamard",
    "hadamard_factors",
    "hadamard_matrix",
    "hadamard_transform",
    "fwht",
    "fuse_input_rotation",
    "fuse_output_rotation",
    "quant_hadamard",
]

SUPPORTED_FAMILIES = "12·2^k, 40·2^k, 2^k"


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(math.isqrt(q)) + 1))


def _jacobsthal(q: int) -> Tensor:
    """``Q[i, j] = χ(j − i)`` over GF(q), q prime; χ the quadratic character (0, +1, −1)."""
    if not _is_prime(q):
        raise ValueError(f"Paley construction implemented for prime q only, got {q}")
    residues = {(x * x) % q for x in range(1, q)}
    chi = torch.tensor([0] + [1 if a in residues else -1 for a in range(1, q)], dtype=torch.int64)
    idx = (torch.arange(q)[None, :] - torch.arange(q)[:, None]) % q
    return chi[idx]


def _check_hadamard(h: Tensor) -> Tensor:
    n = h.shape[0]
    hh = h.to(torch.int64)
    if not torch.equal(hh @ hh.T, n * torch.eye(n, dtype=torch.int64)):
        raise AssertionError(f"internal error: constructed {n}x{n} matrix is not Hadamard")
    return h


def paley1(q: int) -> Tensor:
    """Paley construction I, order ``q + 1`` for a prime ``q ≡ 3 (mod 4)``; int8 ±1 entries."""
    if q % 4 != 3:
        raise ValueError(f"Paley I needs q ≡ 3 mod 4, got {q}")
    Q = _jacobsthal(q)
    n = q + 1
    S = torch.zeros(n, n, dtype=torch.int64)
    S[0, 1:] = 1
    S[1:, 0] = -1
    S[1:, 1:] = Q
    return _check_hadamard((torch.eye(n, dtype=torch.int64) + S).to(torch.int8))


def paley2(q: int) -> Tensor:
    """Paley construction II, order ``2(q + 1)`` for a prime ``q ≡ 1 (mod 4)``; int8 ±1 entries."""
    if q % 4 != 1:
        raise ValueError(f"Paley II needs q ≡ 1 mod 4, got {q}")
    Q = _jacobsthal(q)
    m = q + 1
    C = torch.zeros(m, m, dtype=torch.int64)
    C[0, 1:] = 1
    C[1:, 0] = 1
    C[1:, 1:] = Q
    A = torch.tensor([[1, 1], [1, -1]], dtype=torch.int64)
    B = torch.tensor([[1, -1], [-1, -1]], dtype=torch.int64)
    H = torch.kron(C, A) + torch.kron(torch.eye(m, dtype=torch.int64), B)
    return _check_hadamard(H.to(torch.int8))


def sylvester(n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sylvester Hadamard matrix of order ``n = 2^k`` (natural order, symmetric), ±1 in ``dtype``."""
    if not is_power_of_two(n):
        raise ValueError(f"Sylvester construction needs a power of two, got {n}")
    h = torch.ones(1, 1, dtype=dtype)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@functools.lru_cache(maxsize=None)
def _base_int8(b: int) -> Tensor:
    if b == 1:
        return torch.ones(1, 1, dtype=torch.int8)
    if b == 12:
        return paley1(11)
    if b == 20:
        return paley1(19)
    if b == 40:
        h20 = paley1(19)
        return _check_hadamard(torch.cat([torch.cat([h20, h20], 1), torch.cat([h20, -h20], 1)], 0))
    if b == 28:
        return paley2(13)
    raise ValueError(f"no base Hadamard matrix of order {b}")


def base_hadamard(b: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unnormalised ±1 base matrix of order ``b ∈ {1, 12, 20, 28, 40}`` (a fresh copy)."""
    return _base_int8(b).to(dtype)


def hadamard_factors(n: int, extended: bool = False) -> tuple[int, int]:
    """``n → (b, 2^k)`` with ``n = b·2^k`` following the spec's selection order (module docstring).

    ``b == 1`` means pure Sylvester. Raises ``ValueError`` naming ``n`` and the supported families.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"unsupported Hadamard size {n!r}: must be a positive int of the form "
                         f"{SUPPORTED_FAMILIES}")
    if n % 12 == 0 and is_power_of_two(n // 12):
        return 12, n // 12
    if n % 40 == 0 and is_power_of_two(n // 40):
        return 40, n // 40
    if is_power_of_two(n):
        return 1, n
    if extended:
        for b in (20, 28):
            if n % b == 0 and is_power_of_two(n // b):
                return b, n // b
    fams = SUPPORTED_FAMILIES + (", 20·2^k, 28·2^k" if extended else "")
    raise ValueError(f"unsupported Hadamard size {n}: supported sizes are {fams} "
                     f"(e.g. 768 = 12·64, 2560 = 40·64, 4096 = 2^12)")


@functools.lru_cache(maxsize=16)
def _hadamard_matrix_cached(n: int, dtype: torch.dtype, extended: bool) -> Tensor:
    b, p = hadamard_factors(n, extended)
    hb = base_hadamard(b, dtype)
    hp = sylvester(p, dtype)
    m = torch.kron(hb, hp) if b > 1 else hp
    m = m * (1.0 / math.sqrt(n))
    m.requires_grad_(False)
    return m


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                    *, extended: bool = False) -> Tensor:
    """The orthonormal matrix ``M = H_n / √n`` (entries ``±fl(1/√n)`` in ``dtype``).

    Cached (LRU, 16 entries) per ``(n, dtype)`` on CPU: repeated calls return the SAME tensor object, so
    offline fusion and exported online transforms use bit-identical matrices. Do not modify it in place.
    With ``device`` the cached matrix is copied there (``.to(device)``).
    """
    m = _hadamard_matrix_cached(n, dtype, extended)
    return m if device is None else m.to(device)


def fwht(x: Tensor, normalize: bool = False) -> Tensor:
    """Fast Walsh–Hadamard transform along the last dim (length a power of two), natural order.

    ``log2 n`` butterfly stages, no ``n×n`` matrix. Computes ``x · H_nᵀ`` (= ``x · H_n``, Sylvester is
    symmetric); multiplied by ``1/√n`` if ``normalize``. Works in ``x``'s dtype.
    """
    n = x.shape[-1]
    if not is_power_of_two(n):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    lead = x.shape[:-1]
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.reshape(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    y = y.reshape(*lead, n)
    if normalize:
        y = y * (1.0 / math.sqrt(n))
    return y


def hadamard_transform(x: Tensor, dim: int = -1, *, extended: bool = False) -> Tensor:
    """Online orthonormal Hadamard transform along ``dim``: ``y = x · Mᵀ`` with ``M = hadamard_matrix(n)``.

    Implementation: butterfly FWHT over the contiguous ``2^k`` factor, then the ±1 base matrix across
    the ``b`` chunks, then one multiplication by ``1/√n``. Computed in fp32 (float64 for float64 input)
    and returned in ``x.dtype``. Equals ``x @ hadamard_matrix(n).T`` up to fp32 rounding.
    """
    n = x.shape[dim]
    b, p = hadamard_factors(n, extended)
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    xm = x.movedim(dim, -1).to(cd)
    lead = xm.shape[:-1]
    y = fwht(xm.reshape(*lead, b, p))  # [..., b, p]: WHT of every contiguous chunk
    if b > 1:
        y = torch.matmul(base_hadamard(b, cd).to(y.device), y)  # mix across chunks with H_b
    y = y.reshape(*lead, n) * (1.0 / math.sqrt(n))
    return y.to(x.dtype).movedim(-1, dim)


@functools.lru_cache(maxsize=32)
def _kron_factors(n: int, device: str) -> tuple[Tensor, Tensor]:
    """±1 fp32 ``(A, B)`` with ``kron(A, B) = √n · hadamard_matrix(n)``: ``(H_b, H_p)``, and for ``n = 2^k``
    two Sylvester halves (natural-order Sylvester is ``kron(H_2^a, H_2^c)`` for ``a + c = k``)."""
    b, p = hadamard_factors(n)
    if b == 1:
        r = 2 ** (int(math.log2(p)) // 2)
        a, bm = sylvester(r), sylvester(p // r)
    else:
        a, bm = base_hadamard(b), sylvester(p)
    return a.to(device), bm.to(device)


def hadamard_kron(x: Tensor) -> Tensor:
    """``x · Mᵀ`` over the last dim (``M = hadamard_matrix(n)``) as ``A · X · Bᵀ / √n`` on ``x`` viewed as
    ``[..., r, c]`` with ``M = kron(A, B) / √n``: two small matmuls (``r² + c²`` matrix entries) instead of
    reading the ``n x n`` matrix (256 MB in fp32 at n = 8192: that read dominated a W4A16 decode step).
    fp32 out; equals ``ops.hadamard(x, M)`` up to fp32 summation order."""
    n = x.shape[-1]
    a, b = _kron_factors(n, str(x.device))
    xm = x.to(torch.float32).reshape(*x.shape[:-1], a.shape[0], b.shape[0])
    y = torch.matmul(torch.matmul(a, xm), b.t())
    return y.reshape(x.shape) * (1.0 / math.sqrt(n))


def fuse_input_rotation(weight: Tensor, *, extended: bool = False) -> Tensor:
    """``W' = W · Mᵀ`` for a linear layer whose input arrives rotated as ``x' = x · Mᵀ`` (in_features = n).

    Computed with the materialised matrix (fp64 product of the fp64 ``M``, cast back to ``W``'s dtype).
    """
    n = weight.shape[-1]
    m = hadamard_matrix(n, torch.float64, extended=extended).to(weight.device)
    return (weight.to(torch.float64) @ m.T).to(weight.dtype)


def fuse_output_rotation(weight: Tensor, bias: Tensor | None = None, *, extended: bool = False
                         ) -> tuple[Tensor, Tensor | None]:
    """``W' = M · W`` (and ``b' = b · Mᵀ``) so the layer emits ``out · Mᵀ`` (out_features = n)."""
    n = weight.shape[0]
    m = hadamard_matrix(n, torch.float64, extended=extended).to(weight.device)
    w = (m @ weight.to(torch.float64)).to(weight.dtype)
    b = None if bias is None else (bias.to(torch.float64) @ m.T).to(bias.dtype)
    return w, b


def quant_hadamard(x: Tensor, scale: Tensor | float, bits: int = 8, dim: int = -1) -> Tensor:
    """Oracle of the fused ``QuantHadamard`` op (spec B.3/D.1): ``clamp(round_half_even((x·Mᵀ)/s))``.

    Unlike the upstream kernel, this clamps (pitfall 12). The transform is done in fp32 first and the
    division by ``s`` second; a kernel that folds ``(1/√n)/s`` into one multiplier may differ by ±1 LSB
    on rounding ties (pitfall 13).
    """
    y = hadamard_transform(x.float() if x.dtype != torch.float64 else x, dim=dim)
    return quantize_sym(y, scale, bits)
