"""Kernel dispatch: the models' calls of the kernel-backed ops go to the CUDA kernels when on.

The quantized model (``quamba_edge/quant/q*.py``) calls these ops through this module; the float SSM ops
(:func:`ssd`, :func:`ssd_state_update`, :func:`selective_scan`, :func:`selective_state_update`, and the float
conv :func:`causal_conv1d`, reference ``quamba_edge.models.ssm``) are called by the FP models
(``quamba_edge/models/mamba*.py``) and the W4A16
mixers, as are the float norms (:func:`add_rms_norm`: the FP Block's residual add + RMSNorm and norm_f, FP
models only; :func:`gated_rms_norm`, reference ``ssm.gated_rms_norm``: FP and W4A16 Mamba2). Each function has
its reference op's signature and returns what the reference returns (shapes and dtypes: the kernels' fp16
``y`` is handed back as fp32). It runs the kernel (``torch.ops.quamba_kernels``, see
``quamba_edge.kernels``) only when

* kernels are on: inside :func:`use_kernels` (the torch-cuda backend enters it around every forward),
  unless the environment sets ``QUAMBA_KERNELS=0``;
* the model is not being exported (export traces the reference ops, which emit the ONNX nodes);
* every tensor argument is on one CUDA device and the shapes are ones the kernel takes (e.g. the SSD
  kernels take d_state 16/32/64/128/256).

Otherwise the reference op runs unchanged. States keep the reference's dtypes and layouts (an fp16 float
state comes back fp32, as from the reference), so a state from either path continues on the other.
Outputs are freshly allocated: the model never writes the ``state`` it is given (``generate(state=...)``
and chunked prefill reuse it).

Kernel helpers (:data:`KERNEL_HELPERS`) serve the models without being registry ops of their own:
``w4a16_dequantize`` (inside :func:`w4a16_linear`) and :func:`hadamard`, the float online Hadamard of the W4A16
out_proj input (reference ``quant.hadamard.hadamard_kron``; the ONNX graph keeps its MatMul).

The float SSM kernels take fp16 activations (x / B / C, u / delta / z) and compute in fp32: inputs that
are not fp16 (the W4A16 mixers' fp32 activations, bf16) are ROUNDED to fp16 first (as :func:`w4a16_linear`
does), within the fp16 tolerance of the kernels' y; fp64 inputs (oracle tests) stay on the reference.
(:func:`causal_conv1d` is the exception: its kernel takes fp16 and fp32 x as they are; bf16 stays on the
reference.) dt of
the SSD goes as fp16 or fp32 as it is (the model's ``mamba2_dt`` is fp32); A, D and the biases as fp32.
y comes back in the input's dtype and the state in fp32, as from the reference.

``counts`` records, per op, kernel calls (``"quant_ssd"``) and fallbacks to the reference while kernels
are on (``"quant_ssd:reference"``), so tests can prove the kernels ran; ``"quant_ssd:rows"`` counts the
SSD kernel calls that got a compact :class:`RowScales` state-scale table.

The SSD ops' ``state_scale`` may be a :class:`RowScales` (a compact ``[R, N]`` table and an int32 ``[H, P]``
row index, e.g. the Quamba2 G x 4 x 4 x N table): the kernels read the table through the index; the
reference gets ``RowScales.expand()``, the ``[H, P, N]`` tensor it always took.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from .._tracing import exporting
from ..models import ssm as _ssm
from ._common import Scale
from .quant_add_rms_norm import quant_add_rms_norm as _ref_add_rms_norm
from .quant_causal_conv1d import quant_causal_conv1d as _ref_causal_conv1d
from .quant_embedding import quant_embedding_stored as _ref_embedding
from .quant_gated_rms_norm import quant_gated_rms_norm as _ref_gated_rms_norm
from .quant_hadamard import quant_hadamard as _ref_hadamard
from .quant_selective_scan import quant_selective_scan as _ref_selective_scan
from .quant_selective_state_update import quant_selective_state_update as _ref_selective_state_update
from .quant_ssd import quant_ssd as _ref_ssd
from .quant_ssd_state_update import quant_ssd_state_update as _ref_ssd_state_update
from .w4a8_linear import w4a8_linear as _op_w4a8_linear
from .w4a16_linear import w4a16_linear as _op_w4a16_linear
from .w8a8_linear import w8a8_linear as _ref_w8a8_linear

__all__ = [
    "KERNEL_HELPERS",
    "KERNEL_OPS",
    "RowScales",
    "clear_caches",
    "add_rms_norm",
    "causal_conv1d",
    "counts",
    "env_disabled",
    "gated_rms_norm",
    "hadamard",
    "kernel_ops",
    "load_kernels",
    "use_kernels",
    "quant_add_rms_norm",
    "quant_causal_conv1d",
    "quant_embedding",
    "quant_gated_rms_norm",
    "quant_hadamard",
    "quant_selective_scan",
    "quant_selective_state_update",
    "quant_ssd",
    "quant_ssd_state_update",
    "selective_scan",
    "selective_state_update",
    "ssd",
    "ssd_state_update",
    "w4a8_linear",
    "w4a16_linear",
    "w4a16_linear_takes_fp16",
    "w8a8_linear",
]

KERNEL_OPS = ("add_rms_norm", "causal_conv1d", "gated_rms_norm", "quant_add_rms_norm", "quant_causal_conv1d", "quant_embedding", "quant_gated_rms_norm",
              "quant_hadamard", "quant_selective_scan", "quant_selective_state_update", "quant_ssd",
              "quant_ssd_state_update", "selective_scan", "selective_state_update", "ssd", "ssd_state_update",
              "w4a8_linear", "w4a16_linear", "w8a8_linear")
# bindings that serve the models rather than being registry ops of their own (w4a16_linear's prefill weight; the
# float online Hadamard before the W4A16 out_proj, whose ONNX form is a plain MatMul)
KERNEL_HELPERS = ("w4a16_dequantize", "hadamard")
SSD_D_STATES = (16, 32, 64, 128, 256)  # quant_ssd.cu / quant_ssd_state_update.cu dispatch_n
FLOAT_SSD_D_STATES = (64, 128, 256)  # quamba_kernels/ssd.h (the float prefill): cudaErrorNotSupported otherwise

# the float SSM references (module globals, so tests can wrap them)
_ref_float_ssd = _ssm.ssd_chunked
_ref_float_ssd_state_update = _ssm.ssd_state_update
_ref_float_selective_scan = _ssm.selective_scan
_ref_float_selective_state_update = _ssm.selective_state_update
_ref_float_causal_conv1d = _ssm.causal_conv1d
_ref_float_gated_rms_norm = _ssm.gated_rms_norm  # the float norms' (add_rms_norm's: _float_add_rms_norm, below)
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)

_ACTIVE: ContextVar[Any] = ContextVar("quamba_kernel_ops", default=None)
counts: Counter[str] = Counter()


@dataclass(frozen=True, eq=False)
class RowScales:
    """SSM state scales in compact form: channel (h, p) uses row ``rows[h, p]`` of ``table``.

    ``table``: fp32 ``[R, N]`` (the Quamba2 ``[G, m, n, N]`` scales viewed as ``[G*m*n, N]``); ``rows``: int32
    ``[H, P]`` in ``[0, R)``. The SSD kernels take this form directly (``state_scale_row``), so the model need
    not build the ``[H, P, N]`` copy (as many bytes as the int8 state) on every call."""

    table: torch.Tensor
    rows: torch.Tensor

    def expand(self) -> torch.Tensor:
        """The per-(head, channel, state) ``[H, P, N]`` scales the reference ops take (``table``'s dtype)."""
        return self.table[self.rows.long()]


def _expanded(s: Any) -> Any:
    """A state scale as the reference ops take it."""
    return s.expand() if isinstance(s, RowScales) else s


def _scale_parts(s: Any) -> tuple[Any, ...]:
    """The tensors of a state scale, for the device checks."""
    return (s.table, s.rows) if isinstance(s, RowScales) else (s,)


# ---- on / off --------------------------------------------------------------------------------------


# Kernels that landed without a GPU run (compile- and CPU-checked only): the dispatch keeps the reference for them
# (counted as "<op>:unverified" and "<op>:reference") unless QUAMBA_KERNELS_UNVERIFIED=1 (the test suite sets it, so
# the GPU tests verify them); a GPU run that passes their tests takes them out of this set. Empty: the float norms
# and conv (add_rms_norm, gated_rms_norm, causal_conv1d) and the float Hadamard helper (hadamard) passed theirs on the
# H200.
UNVERIFIED_OPS: frozenset[str] = frozenset()


def unverified_enabled() -> bool:
    """True when ``QUAMBA_KERNELS_UNVERIFIED`` is 1 / true / on / yes: :data:`UNVERIFIED_OPS` run their kernels."""
    return os.environ.get("QUAMBA_KERNELS_UNVERIFIED", "").strip().lower() in ("1", "true", "on", "yes")


def env_disabled() -> bool:
    """True when ``QUAMBA_KERNELS`` is 0 / false / off / no: the reference ops run everywhere."""
    return os.environ.get("QUAMBA_KERNELS", "").strip().lower() in ("0", "false", "off", "no")


@contextlib.contextmanager
def use_kernels(ops: Any | None) -> Iterator[None]:
    """Within this context the dispatching ops run ``ops`` (``quamba_edge.kernels.load()``) where they can;
    ``None`` (or ``QUAMBA_KERNELS=0``) keeps the reference. Per thread / async context (a ContextVar)."""
    token = _ACTIVE.set(None if env_disabled() else ops)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def kernel_ops() -> Any | None:
    """The kernel ops object in effect here, or None."""
    return _ACTIVE.get()


def load_kernels() -> tuple[Any | None, str]:
    """For the torch-cuda backend: (``torch.ops.quamba_kernels`` or None, ``"CUDA kernels: on"`` or
    ``"CUDA kernels: off (<why>)"``). Builds the extension on first use (a minute or two)."""
    from .. import kernels

    if env_disabled():
        return None, "CUDA kernels: off (QUAMBA_KERNELS=0)"
    why = kernels.unavailable_reason()
    if why is not None:
        return None, f"CUDA kernels: off ({why})"
    try:
        ops = kernels.load()
    except kernels.KernelsUnavailable as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"CUDA kernels: off ({first[:300]})"
    return ops, "CUDA kernels: on"


# ---- decisions -------------------------------------------------------------------------------------


def _on_kernel_device(t: torch.Tensor) -> bool:
    """Where the kernels run (the CPU tests patch this to route CPU tensors to a fake ops object)."""
    return t.is_cuda


def _decide(op: str, tensors: tuple[Any, ...], supported: Callable[[], bool]) -> tuple[Any | None, tuple[str, ...]]:
    """(the kernel ops for this call or None for the reference, the ``counts`` keys of that decision); no side
    effects."""
    if exporting():  # checked first: the export trace must see the reference ops only
        return None, ()
    ops = _ACTIVE.get()
    if ops is None:
        return None, ()
    if op in UNVERIFIED_OPS and not unverified_enabled():
        return None, (op + ":unverified", op + ":reference")
    dev = None
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        if not _on_kernel_device(t) or (dev is not None and t.device != dev):
            return None, (op + ":reference",)
        dev = t.device
    if dev is None or not supported():
        return None, (op + ":reference",)
    return ops, (op,)


def _kernels_for(op: str, tensors: tuple[Any, ...], supported: Callable[[], bool]) -> Any | None:
    """The kernel ops for this call, or None for the reference (counted as a fallback when kernels are on)."""
    ops, keys = _decide(op, tensors, supported)
    for key in keys:
        counts[key] += 1
    return ops


def _scalar(s: Any) -> bool:
    """A per-tensor scale the kernels take as a float."""
    return s is not None and (not isinstance(s, torch.Tensor) or s.numel() == 1)


def _opt_scalar(s: Any) -> bool:
    return s is None or _scalar(s)


def _numel_in(s: Any, *sizes: int) -> bool:
    return not isinstance(s, torch.Tensor) or s.numel() in (1, *sizes)


def _channel_param(q: torch.Tensor | None, s: Any, c: int) -> bool:
    """An optional int8 [C] parameter (D, dt_bias) that comes with a per-tensor scale."""
    return q is None or (q.dtype == torch.int8 and tuple(q.shape) == (c,) and _scalar(s))


def _one_token(t: torch.Tensor | None, b: int, *tail: int) -> bool:
    """[B, *tail] or [B, 1, *tail] int8."""
    if t is None or t.dtype != torch.int8:
        return False
    shape = tuple(t.shape)
    return shape == (b, *tail) or shape == (b, 1, *tail)


def _state_dtype_ok(state: torch.Tensor, state_scale: Any) -> bool:
    """int8 with a state scale, else a float state (as the reference requires)."""
    return state.dtype == torch.int8 if state_scale is not None else state.is_floating_point()


def _conv_scale(s: Any, c: int) -> bool:
    """A conv scale as the reference takes it: a scalar or [C]."""
    return not isinstance(s, torch.Tensor) or s.dim() == 0 or tuple(s.shape) == (c,)


_ROWS_CACHE: dict[tuple, tuple[torch.Tensor, bool]] = {}


def _rows_in_range(rows: torch.Tensor, r: int) -> bool:
    """All of ``rows`` in [0, r) (the kernels trust the index). Reading the range syncs the device, so the
    answer is cached as in :func:`_f`: by (address, layout, version, r), holding the tensor; inference
    tensors (no version counter) are read every time."""
    def check() -> bool:
        if rows.numel() == 0:
            return True
        lo, hi = torch.aminmax(rows)
        lo, hi = torch.stack((lo, hi)).tolist()
        return lo >= 0 and hi < r

    try:
        key = (rows.data_ptr(), rows.device, rows.dtype, tuple(rows.shape), rows.stride(), rows._version, r)
    except RuntimeError:  # an inference tensor
        return check()
    hit = _ROWS_CACHE.get(key)
    if hit is None:
        if len(_ROWS_CACHE) >= 1024:
            _ROWS_CACHE.clear()
        hit = _ROWS_CACHE[key] = (rows, check())
    return hit[1]


def _state_scale_ok(s: Any, h: int, p: int, n: int) -> bool:
    """None, [H, P, N] (or one value), or a RowScales the kernels can index: table fp32 [R, N] contiguous,
    rows int32 [H, P] in [0, R) (checked last: it may sync the device)."""
    if s is None:
        return True
    if not isinstance(s, RowScales):
        return _numel_in(s, h * p * n)
    t, rows = s.table, s.rows
    return (isinstance(t, torch.Tensor) and isinstance(rows, torch.Tensor) and t.dtype == torch.float32
            and t.dim() == 2 and t.shape[0] >= 1 and t.shape[1] == n and t.is_contiguous()
            and rows.dtype == torch.int32 and tuple(rows.shape) == (h, p) and _rows_in_range(rows, t.shape[0]))


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _hadamard_size(n: int) -> bool:
    """Sizes the Hadamard kernel takes: b * 2^k for b in 1, 12, 20, 28, 40, n <= 32768."""
    return n <= 32768 and any(n % b == 0 and _pow2(n // b) for b in (1, 12, 20, 28, 40))


# ---- argument conversion ---------------------------------------------------------------------------

_FLOAT_CACHE: dict[tuple, tuple[torch.Tensor, float]] = {}


def _f(s: Scale) -> float:
    """A scale as a python float. A CUDA scalar costs a device sync, once per op call and scale; so values
    of persistent tensors (buffers and their views) are cached by (address, dtype, version): the cache
    holds the tensor, so the address cannot be reused by another tensor, and any in-place write bumps the
    version. Tensors made in inference mode have no version counter and are read every time."""
    if not isinstance(s, torch.Tensor):
        return float(s)
    if not s.is_cuda:
        return float(s)
    try:
        key = (s.data_ptr(), s.dtype, s.device, s._version)
    except RuntimeError:  # an inference tensor
        return float(s)
    hit = _FLOAT_CACHE.get(key)
    if hit is None:
        if len(_FLOAT_CACHE) >= 4096:
            _FLOAT_CACHE.clear()
        hit = _FLOAT_CACHE[key] = (s, float(s))
    return hit[1]


def clear_caches() -> None:
    """Drop the validated-argument caches (:func:`_f`, :func:`_rows_in_range`). They hold the tensors they
    checked (pinning their addresses), and a view holds its whole storage: a model dropped by the caller stays
    partly allocated until they are cleared (``quamba-edge bench`` clears them between models)."""
    _FLOAT_CACHE.clear()
    _ROWS_CACHE.clear()


def _opt_f(s: Scale | None) -> float | None:
    return None if s is None else _f(s)


def _converted(t: torch.Tensor, key: str, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``make(t)`` for a persistent parameter, made once: a decode step converted the same fp16 norm weights,
    dt_bias and Hadamard factor on every call (4 copy kernels per layer and token, ~10 us of a W8A8 mamba2
    layer's ~70). Kept on the tensor itself (its lifetime, so a captured CUDA graph never reads a freed copy)
    and valid for its current version; inference tensors (no version) and calls under stream capture are
    converted every time, as before."""
    try:
        ver = t._version
    except RuntimeError:  # an inference tensor
        return make(t)
    cache = t.__dict__.get("_quamba_converted")
    hit = None if cache is None else cache.get(key)
    if hit is not None and hit[0] == ver:
        return hit[1]
    out = make(t)
    if not (t.is_cuda and torch.cuda.is_current_stream_capturing()):
        if cache is None:
            cache = t.__dict__["_quamba_converted"] = {}
        cache[key] = (ver, out)
    return out


def _param_f32(t: torch.Tensor | None) -> torch.Tensor | None:
    """A float parameter as the bindings read it (contiguous fp32), converted once (:func:`_converted`)."""
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t
    return _converted(t, "f32", lambda u: u.to(torch.float32).contiguous())


def _hadamard_base(matrix: torch.Tensor, n: int) -> torch.Tensor:
    """The b x b base factor of the Kronecker Hadamard ``matrix`` [n, n] (entries at stride n / b, the 1/sqrt(n)
    included), as the quant_hadamard binding extracts it; b in the binding's order (base_of: 12, 40, a power of
    two, 20, 28). Taken once per matrix (:func:`_converted`)."""
    b = next(b for b in (12, 40, 1, 20, 28) if n % b == 0 and _pow2(n // b))
    pw = n // b
    return _converted(matrix, f"base{n}", lambda m: m[::pw, ::pw].contiguous())


def _scale_tensor(s: Scale, device: torch.device) -> torch.Tensor:
    """A scale the kernels take as a tensor (one value or per channel): contiguous fp32 on ``device``."""
    if not isinstance(s, torch.Tensor):
        return torch.full((), float(s), dtype=torch.float32, device=device)
    return s.to(device=device, dtype=torch.float32).contiguous()


def _last_dense(t: torch.Tensor | None) -> torch.Tensor | None:
    """The kernels need unit stride in the last dim (other strides are passed through)."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _float_state(t: torch.Tensor | None) -> torch.Tensor | None:
    """A float state as the kernels take it and the reference returns it: contiguous fp32."""
    return None if t is None else t.to(torch.float32).contiguous()


def _kernel_state_scale(op: str, s: Any, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(state_scale, state_scale_row) as the SSD bindings take them: a RowScales goes as its compact table
    and row index (counted as ``op:rows``), anything else as the fp32 [H, P, N] / one-value tensor."""
    if s is None:
        return None, None
    if isinstance(s, RowScales):
        counts[op + ":rows"] += 1
        return s.table, s.rows
    return _scale_tensor(s, device), None


def _empty(shape: Any, dtype: torch.dtype, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device=like.device)


# ---- the ops ---------------------------------------------------------------------------------------


def quant_add_rms_norm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None,
                       eps: float, out_scale: Scale | None,
                       residual_in_fp32: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``ops.quant_add_rms_norm``: the kernel for the int8 output (the A8 blocks). The float output (W4A16
    blocks, every model's final norm) always runs the reference, not counted as a fallback: there is
    nothing to quantize, the kernel would round y to fp16, and on the bundled models it measured slower
    end to end (benchmarks/torch_cuda_kernels.py: W4A16 TPOT 0.78-0.99x with it)."""
    if out_scale is None:
        return _ref_add_rms_norm(hidden, residual, weight, eps, out_scale, residual_in_fp32)

    def supported() -> bool:
        d = hidden.shape[-1] if hidden.dim() >= 1 else 0
        return (hidden.dtype in _FLOATS and 1 <= d <= 16384 and _scalar(out_scale)
                and (residual is None or (residual.dtype in _FLOATS and residual.shape == hidden.shape))
                and (weight is None or (weight.is_floating_point() and weight.numel() == d)))

    k = _kernels_for("quant_add_rms_norm", (hidden, residual, weight, out_scale), supported)
    if k is None:
        return _ref_add_rms_norm(hidden, residual, weight, eps, out_scale, residual_in_fp32)
    y = _empty(hidden.shape, torch.int8, hidden)
    res = _empty(hidden.shape, torch.float32 if residual_in_fp32 else hidden.dtype, hidden)
    k.quant_add_rms_norm(hidden, residual, _param_f32(weight), float(eps), _f(out_scale), y, res)
    return y, res


def quant_gated_rms_norm(y: torch.Tensor, z_q: torch.Tensor, z_scale: Scale, weight: torch.Tensor, eps: float,
                         group_size: int, norm_before_gate: bool = False, *, fp16_out: bool = False) -> torch.Tensor:
    """``ops.quant_gated_rms_norm`` (the kernel's fp16 output comes back fp32; with ``fp16_out`` as it is, for
    a consumer that reads it as fp32 anyway -- the Hadamard -- saving a copy kernel per layer and step)."""
    def supported() -> bool:
        e = y.shape[-1] if y.dim() >= 1 else 0
        return (y.dtype in _FLOATS and z_q.dtype == torch.int8 and z_q.shape == y.shape and _scalar(z_scale)
                and 1 <= group_size <= 16384 and e % group_size == 0
                and weight.is_floating_point() and weight.numel() == e)

    k = _kernels_for("quant_gated_rms_norm", (y, z_q, z_scale, weight), supported)
    if k is None:
        return _ref_gated_rms_norm(y, z_q, z_scale, weight, eps, group_size, norm_before_gate)
    out = _empty(y.shape, torch.float16, y)
    k.quant_gated_rms_norm(y, z_q, _f(z_scale), _param_f32(weight), float(eps), int(group_size),
                           bool(norm_before_gate), out)
    return out if fp16_out else out.float()


def quant_hadamard(x: torch.Tensor, matrix: torch.Tensor, out_scale: Scale) -> torch.Tensor:
    """``ops.quant_hadamard``. The kernel reads the base factor of ``matrix`` (the Kronecker-structured
    ``quant.hadamard.hadamard_matrix``, the only matrix the model passes)."""
    def supported() -> bool:
        n = x.shape[-1] if x.dim() >= 1 else 0
        return (x.dtype in _FLOATS and _hadamard_size(n) and matrix.dtype == torch.float32
                and tuple(matrix.shape) == (n, n) and _scalar(out_scale))

    k = _kernels_for("quant_hadamard", (x, matrix, out_scale), supported)
    if k is None:
        return _ref_hadamard(x, matrix, out_scale)
    y = _empty(x.shape, torch.int8, x)
    k.quant_hadamard(x, _hadamard_base(matrix, x.shape[-1]), _f(out_scale), y)
    return y


_KRON_BASE_CACHE: dict[tuple[int, torch.device], torch.Tensor | None] = {}


def _kron_base(n: int, device: torch.device) -> torch.Tensor | None:
    """The b x b base factor ``M[i * 2^k, j * 2^k] = H_b[i, j] * fl(1/sqrt(n))`` of
    ``quant.hadamard.hadamard_matrix(n)`` (entry for entry the matrix fused offline, built without the n x n
    matrix: 256 MiB at n = 8192), contiguous fp32 on ``device``, once per (n, device) (the CUDA-graph warm-up
    fills it before a capture); None for sizes outside hadamard_matrix's families (20 / 28 * 2^k), which the
    reference refuses too."""
    key = (n, device)
    if key not in _KRON_BASE_CACHE:
        from ..quant.hadamard import base_hadamard, hadamard_factors  # quant imports this module

        try:
            b, _ = hadamard_factors(n)
        except ValueError:
            base = None
        else:  # as _hadamard_matrix_cached scales kron(H_b, H_p): the same fp32 product, H_p[0, 0] = 1
            base = (base_hadamard(b, torch.float32) * (1.0 / math.sqrt(n))).contiguous().to(device)
        if len(_KRON_BASE_CACHE) >= 16:
            _KRON_BASE_CACHE.clear()
        _KRON_BASE_CACHE[key] = base
    return _KRON_BASE_CACHE[key]


def _ref_float_hadamard(x: torch.Tensor) -> torch.Tensor:
    """:func:`hadamard`'s reference, ``quant.hadamard.hadamard_kron`` (imported here: quant imports this module)."""
    from ..quant.hadamard import hadamard_kron

    return hadamard_kron(x)


def hadamard(x: torch.Tensor, *, fp16_out: bool = False) -> torch.Tensor:
    """The float online transform ``x @ M^T`` over the last dim, ``M = quant.hadamard.hadamard_matrix(n)``: the
    W4A16 out_proj input's rotation (a kernel helper: the ONNX graph keeps its MatMul). Reference
    ``quant.hadamard.hadamard_kron`` (its signature; fp32 ``[..., n]``); the kernel (quamba_kernels/hadamard.h)
    gives the same values up to fp32 summation order. With ``fp16_out`` the kernel writes fp16 of its fp32 result
    (one rounding, as ``.half()`` of the reference's), for a consumer that rounds its input to fp16 anyway (the
    W4A16 linear kernels: :func:`w4a16_linear_takes_fp16`), saving that conversion; the reference path returns
    fp32 either way, as :func:`quant_gated_rms_norm`'s ``fp16_out``."""
    def supported() -> bool:
        n = x.shape[-1] if x.dim() >= 1 else 0
        return (x.dtype in _FLOATS and _hadamard_size(n) and x.numel() // n < 2**31
                and _kron_base(n, x.device) is not None)

    k = _kernels_for("hadamard", (x,), supported)
    if k is None:
        return _ref_float_hadamard(x)
    y = _empty(x.shape, torch.float16 if fp16_out else torch.float32, x)
    k.hadamard(x, _kron_base(x.shape[-1], x.device), y)
    return y


def quant_embedding(ids: torch.Tensor, table: torch.Tensor, row_scale: torch.Tensor, bits: int,
                    embedding_dim: int) -> torch.Tensor:
    """``ops.quant_embedding`` on the STORED table: int8 ``[V, d]`` (bits 8) or packed uint8 ``[V, ceil(d/2)]``
    (bits 4); fp32 ``[*ids.shape, d]`` like the reference. Bit-exact: with fp16 row scales the kernel's fp32
    product is the reference's (exact in fp32), written as fp32. fp32 row scales stay on the reference (the
    kernel reads fp16). Ids outside [0, V) give zero rows on the kernel (the reference raises or wraps
    negative ids): the model's token ids are always in range, so no device-syncing range check here."""
    def supported() -> bool:
        d = int(embedding_dim)
        if bits not in (8, 4) or table.dim() != 2 or d < 1:
            return False
        row_bytes = d if bits == 8 else (d + 1) // 2
        v = table.shape[0]
        return (ids.dtype in (torch.int32, torch.int64) and ids.numel() < 2**31
                and table.dtype == (torch.int8 if bits == 8 else torch.uint8) and table.shape[1] == row_bytes
                and v >= 1 and table.stride(1) == 1 and (v == 1 or table.stride(0) >= row_bytes)
                and row_scale.dtype == torch.float16 and tuple(row_scale.shape) == (v,))

    k = _kernels_for("quant_embedding", (ids, table, row_scale), supported)
    if k is None:
        return _ref_embedding(ids, table, row_scale, bits, embedding_dim)
    out = _empty((*ids.shape, int(embedding_dim)), torch.float32, ids)
    k.quant_embedding(ids, table, row_scale, int(bits), out)
    return out


def quant_causal_conv1d(x_q: torch.Tensor, x_scale: Scale, w_q: torch.Tensor, w_scale: Scale,
                        b_q: torch.Tensor | None, b_scale: Scale | None, out_scale: Scale,
                        conv_state: torch.Tensor | None = None,
                        silu: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``ops.quant_causal_conv1d``."""
    def supported() -> bool:
        if x_q.dtype != torch.int8 or x_q.dim() != 3 or w_q.dtype != torch.int8 or w_q.dim() != 2:
            return False
        b, L, c = x_q.shape
        kw = w_q.shape[1]
        return (w_q.shape[0] == c and 1 <= kw <= 8 and 1 <= b <= 65535 and 1 <= L and -(-L // 16) <= 65535
                and all(_conv_scale(s, c) for s in (x_scale, w_scale, out_scale))
                and (conv_state is None or (conv_state.dtype == torch.int8
                                            and tuple(conv_state.shape) == (b, c, kw - 1)))
                and (b_q is None or (b_q.dtype == torch.int8 and tuple(b_q.shape) == (c,)
                                     and b_scale is not None and _conv_scale(b_scale, c))))

    k = _kernels_for("quant_causal_conv1d",
                     (x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale, conv_state), supported)
    if k is None:
        return _ref_causal_conv1d(x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale, conv_state, silu)
    b, L, c = x_q.shape
    dev = x_q.device
    y_q = _empty((b, L, c), torch.int8, x_q)
    new_state = _empty((b, c, w_q.shape[1] - 1), torch.int8, x_q)
    k.quant_causal_conv1d(_last_dense(x_q), _scale_tensor(x_scale, dev), w_q.contiguous(),
                          _scale_tensor(w_scale, dev), None if b_q is None else b_q.contiguous(),
                          None if b_q is None else _scale_tensor(b_scale, dev),
                          _scale_tensor(out_scale, dev), conv_state, bool(silu), y_q, new_state)
    return y_q, new_state


def _scan_supported(u_q, A_log_q, dt_q, B_q, C_q, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale,
                    scales, state, state_scale, decode: bool) -> bool:
    """Shared checks of the Mamba1 scan kernels (prefill: [B, L, ...]; decode: one token)."""
    if A_log_q.dtype != torch.int8 or A_log_q.dim() != 2 or u_q.dtype != torch.int8:
        return False
    e, n = A_log_q.shape
    if not (1 <= n <= 256 and all(_scalar(s) for s in scales) and _opt_scalar(state_scale)):
        return False
    if decode:
        b = u_q.shape[0]
        acts = (_one_token(t, b, c) for t, c in ((u_q, e), (dt_q, e), (B_q, n), (C_q, n)))
        gate = z_q is None or _one_token(z_q, b, e)
        size_ok = 1 <= b <= 65535 and b * e * 32 < 2**31
    else:
        if u_q.dim() != 3:
            return False
        b, L, _ = u_q.shape
        acts = (t.dtype == torch.int8 and tuple(t.shape) == s
                for t, s in ((u_q, (b, L, e)), (dt_q, (b, L, e)), (B_q, (b, L, n)), (C_q, (b, L, n))))
        gate = z_q is None or (z_q.dtype == torch.int8 and tuple(z_q.shape) == (b, L, e))
        size_ok = 1 <= b <= 65535 and L >= 1
    if state is not None and (tuple(state.shape) != (b, e, n) or not _state_dtype_ok(state, state_scale)):
        return False
    return (size_ok and all(acts) and gate and (z_q is None or _scalar(z_scale))
            and _channel_param(D_q, D_scale, e) and _channel_param(dt_bias_q, dt_bias_scale, e))


def quant_selective_scan(u_q: torch.Tensor, u_scale: Scale, dt_q: torch.Tensor, dt_scale: Scale,
                         A_log_q: torch.Tensor, A_log_scale: Scale, B_q: torch.Tensor, B_scale: Scale,
                         C_q: torch.Tensor, C_scale: Scale, D_q: torch.Tensor | None, D_scale: Scale | None,
                         z_q: torch.Tensor | None, z_scale: Scale | None, dt_bias_q: torch.Tensor | None,
                         dt_bias_scale: Scale | None, state_in: torch.Tensor | None = None,
                         state_scale: Scale | None = None,
                         chunk_size: int = 16, *, fp16_y: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``ops.quant_selective_scan`` (y fp32; the state int8, or fp32 for a float state); ``fp16_y`` as in
    :func:`quant_ssd`."""
    args = (u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, z_q,
            z_scale, dt_bias_q, dt_bias_scale)
    k = _kernels_for("quant_selective_scan", (*args, state_in, state_scale), lambda: _scan_supported(
        u_q, A_log_q, dt_q, B_q, C_q, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale,
        (u_scale, dt_scale, A_log_scale, B_scale, C_scale), state_in, state_scale, decode=False))
    if k is None:
        return _ref_selective_scan(*args, state_in, state_scale, chunk_size)
    b, L, e = u_q.shape
    n = A_log_q.shape[1]
    int8_state = state_scale is not None
    y = _empty((b, L, e), torch.float16, u_q)
    state_out = _empty((b, e, n), torch.int8 if int8_state else torch.float32, u_q)
    st = state_in.contiguous() if int8_state and state_in is not None else _float_state(state_in)
    k.quant_selective_scan(_last_dense(u_q), _f(u_scale), _last_dense(dt_q), _f(dt_scale), A_log_q.contiguous(),
                           _f(A_log_scale), _last_dense(B_q), _f(B_scale), _last_dense(C_q), _f(C_scale),
                           None if D_q is None else D_q.contiguous(), _opt_f(D_scale) if D_q is not None else None,
                           _last_dense(z_q), _opt_f(z_scale) if z_q is not None else None,
                           None if dt_bias_q is None else dt_bias_q.contiguous(),
                           _opt_f(dt_bias_scale) if dt_bias_q is not None else None,
                           st, _opt_f(state_scale), y, state_out)
    return (y if fp16_y else y.float()), state_out


def quant_selective_state_update(u_q: torch.Tensor, u_scale: Scale, dt_q: torch.Tensor, dt_scale: Scale,
                                 A_log_q: torch.Tensor, A_log_scale: Scale, B_q: torch.Tensor, B_scale: Scale,
                                 C_q: torch.Tensor, C_scale: Scale, D_q: torch.Tensor | None,
                                 D_scale: Scale | None, z_q: torch.Tensor | None, z_scale: Scale | None,
                                 dt_bias_q: torch.Tensor | None, dt_bias_scale: Scale | None,
                                 state: torch.Tensor,
                                 state_scale: Scale | None, *,
                                 fp16_y: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``ops.quant_selective_state_update`` (y fp32 shaped like ``u_q``; a new state, ``state`` untouched);
    ``fp16_y`` as in :func:`quant_ssd`."""
    args = (u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, z_q,
            z_scale, dt_bias_q, dt_bias_scale)
    k = _kernels_for("quant_selective_state_update", (*args, state, state_scale), lambda: state is not None
                     and u_q.dim() in (2, 3) and _scan_supported(
                         u_q, A_log_q, dt_q, B_q, C_q, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale,
                         (u_scale, dt_scale, A_log_scale, B_scale, C_scale), state, state_scale, decode=True))
    if k is None:
        return _ref_selective_state_update(*args, state, state_scale)
    e, n = A_log_q.shape
    b = u_q.shape[0]
    int8_state = state_scale is not None
    y = _empty(u_q.shape, torch.float16, u_q)
    new_state = _empty((b, e, n), torch.int8 if int8_state else torch.float32, u_q)
    st = state.contiguous() if int8_state else _float_state(state)
    k.quant_selective_state_update(
        _last_dense(u_q), _f(u_scale), _last_dense(dt_q), _f(dt_scale), A_log_q.contiguous(), _f(A_log_scale),
        _last_dense(B_q), _f(B_scale), _last_dense(C_q), _f(C_scale), None if D_q is None else D_q.contiguous(),
        _opt_f(D_scale) if D_q is not None else None, _last_dense(z_q),
        _opt_f(z_scale) if z_q is not None else None, None if dt_bias_q is None else dt_bias_q.contiguous(),
        _opt_f(dt_bias_scale) if dt_bias_q is not None else None, st, _opt_f(state_scale), y, new_state)
    return (y if fp16_y else y.float()), new_state


def _ssd_supported(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q,
                   D_scale, state, state_scale, decode: bool) -> bool:
    """Shared checks of the Mamba2 SSD kernels (prefill: [B, L, ...]; decode: one token)."""
    if A_log_q.dtype != torch.int8 or A_log_q.dim() != 1 or x_q.dtype != torch.int8:
        return False
    h = A_log_q.shape[0]
    if decode:
        if x_q.dim() not in (3, 4) or B_q.dim() not in (3, 4):
            return False
        b, p, g, n = x_q.shape[0], x_q.shape[-1], B_q.shape[-2], B_q.shape[-1]
        acts = (_one_token(x_q, b, h, p), _one_token(dt_q, b, h), _one_token(B_q, b, g, n),
                _one_token(C_q, b, g, n))
    else:
        if x_q.dim() != 4 or B_q.dim() != 4:
            return False
        b, L, _, p = x_q.shape
        g, n = B_q.shape[-2:]
        acts = (t.dtype == torch.int8 and tuple(t.shape) == s for t, s in (
            (x_q, (b, L, h, p)), (dt_q, (b, L, h)), (B_q, (b, L, g, n)), (C_q, (b, L, g, n))))
    if not (n in SSD_D_STATES and g >= 1 and h % g == 0 and 1 <= b <= 65535 and h <= 65535 and all(acts)):
        return False
    if state is not None and (tuple(state.shape) != (b, h, p, n) or not _state_dtype_ok(state, state_scale)):
        return False
    return (_numel_in(x_scale, h * p) and _numel_in(B_scale, g) and _numel_in(C_scale, g)
            and _scalar(dt_scale) and _scalar(A_log_scale) and dt_bias.is_floating_point() and dt_bias.numel() == h
            and (D_q is None or (D_q.dtype == torch.int8 and tuple(D_q.shape) == (h,) and _scalar(D_scale)))
            and _state_scale_ok(state_scale, h, p, n))


def quant_ssd(x_q: torch.Tensor, x_scale: Scale, dt_q: torch.Tensor, dt_scale: Scale, dt_bias: torch.Tensor,
              A_log_q: torch.Tensor, A_log_scale: Scale, B_q: torch.Tensor, B_scale: Scale, C_q: torch.Tensor,
              C_scale: Scale, D_q: torch.Tensor | None, D_scale: Scale | None, chunk_size: int,
              dt_limit: tuple[float, float] = (0.0, float("inf")), state_in: torch.Tensor | None = None,
              state_scale: Scale | RowScales | None = None, *,
              fp16_y: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``ops.quant_ssd`` (y fp32; the state int8, or fp32 for a float state). ``state_scale`` may be a
    :class:`RowScales`. ``fp16_y``: hand on the kernel's fp16 y as it is (no fp32 copy: a consumer that reads
    it as fp32 gets the same values); the reference path still returns fp32."""
    args = (x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale)
    k = _kernels_for("quant_ssd", (*args, state_in, *_scale_parts(state_scale)), lambda: int(chunk_size) >= 1
                     and _ssd_supported(*args, state_in, state_scale, decode=False))
    if k is None:
        return _ref_ssd(*args, chunk_size, dt_limit, state_in, _expanded(state_scale))
    b, L, h, p = x_q.shape
    n = B_q.shape[-1]
    dev = x_q.device
    int8_state = state_scale is not None
    y = _empty((b, L, h, p), torch.float16, x_q)
    state_out = _empty((b, h, p, n), torch.int8 if int8_state else torch.float32, x_q)
    st = state_in.contiguous() if int8_state and state_in is not None else _float_state(state_in)
    ss, rows = _kernel_state_scale("quant_ssd", state_scale, dev)
    k.quant_ssd(x_q, _scale_tensor(x_scale, dev), dt_q, _f(dt_scale), _param_f32(dt_bias), A_log_q,
                _f(A_log_scale), B_q, _scale_tensor(B_scale, dev), C_q, _scale_tensor(C_scale, dev), D_q,
                _f(D_scale) if D_q is not None else 0.0, int(chunk_size), float(dt_limit[0]), float(dt_limit[1]),
                st, ss, y, state_out, *(() if rows is None else (0, rows)))  # p_tile 0 = default
    return (y if fp16_y else y.float()), state_out


def quant_ssd_state_update(x_q: torch.Tensor, x_scale: Scale, dt_q: torch.Tensor, dt_scale: Scale,
                           dt_bias: torch.Tensor, A_log_q: torch.Tensor, A_log_scale: Scale, B_q: torch.Tensor,
                           B_scale: Scale, C_q: torch.Tensor, C_scale: Scale, D_q: torch.Tensor | None,
                           D_scale: Scale | None, dt_limit: tuple[float, float], state: torch.Tensor,
                           state_scale: Scale | RowScales | None, *,
                           fp16_y: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``ops.quant_ssd_state_update`` (y fp32 shaped like ``x_q``; a new state, ``state`` untouched).
    ``state_scale`` may be a :class:`RowScales`; ``fp16_y`` as in :func:`quant_ssd`."""
    args = (x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale)
    k = _kernels_for("quant_ssd_state_update", (*args, state, *_scale_parts(state_scale)), lambda: state is not None
                     and _ssd_supported(*args, state, state_scale, decode=True))
    if k is None:
        return _ref_ssd_state_update(*args, dt_limit, state, _expanded(state_scale))
    b, h, p, n = state.shape
    dev = x_q.device
    int8_state = state_scale is not None
    y = _empty(x_q.shape, torch.float16, x_q)
    new_state = _empty((b, h, p, n), torch.int8 if int8_state else torch.float32, x_q)
    st = state.contiguous() if int8_state else _float_state(state)
    ss, rows = _kernel_state_scale("quant_ssd_state_update", state_scale, dev)
    k.quant_ssd_state_update(x_q, _scale_tensor(x_scale, dev), dt_q, _f(dt_scale), _param_f32(dt_bias),
                             A_log_q, _f(A_log_scale), B_q, _scale_tensor(B_scale, dev), C_q,
                             _scale_tensor(C_scale, dev), D_q, _f(D_scale) if D_q is not None else 0.0,
                             float(dt_limit[0]), float(dt_limit[1]), st, ss, y, new_state,
                             *(() if rows is None else (rows,)))
    return (y if fp16_y else y.float()), new_state


# ---- float SSMs (fp16 baseline and W4A16 models) ------------------------------------------------------------
# fp16 activations (other float dtypes rounded to fp16: see the module docstring), fp32 parameters, fp32 math;
# y back in the input's dtype, the state fp32 (the reference's). The caller's state is never written.

_SSM_FLOATS = (torch.float16, torch.float32, torch.bfloat16)  # fp64 (oracle tests) stays on the reference


def _fl(t: Any, *shape: int) -> bool:
    """A float activation of ``shape`` the float SSM kernels take (fp16, or rounded to it)."""
    return isinstance(t, torch.Tensor) and t.dtype in _SSM_FLOATS and tuple(t.shape) == shape


def _param(t: Any, *shape: int, optional: bool = False) -> bool:
    """A float parameter (A, D, biases) of ``shape`` (any layout: the dispatch hands it on as contiguous fp32)."""
    if t is None:
        return optional
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.numel() == \
        _prod(shape) and (t.dim() == len(shape) or t.dim() <= 1)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _no_grad_needed(*ts: Any) -> bool:
    """The kernels have no backward: calls that record gradients stay on the reference."""
    return not torch.is_grad_enabled() or not any(isinstance(t, torch.Tensor) and t.requires_grad for t in ts)


def _f16(t: torch.Tensor | None) -> torch.Tensor | None:
    """An activation as the kernels read it: fp16 (rounded when it is not; fp16 passes as it is)."""
    return t if t is None or t.dtype == torch.float16 else t.to(torch.float16)


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    """A parameter as the kernels read it: contiguous fp32 (no copy when it already is)."""
    return None if t is None else t.to(torch.float32).contiguous()


def _aligned_rows(t: torch.Tensor, dense: int) -> torch.Tensor:
    """``t`` (fp16) with its trailing ``dense`` dims packed and its base and other strides 16-byte aligned, as
    the float SSD prefill requires (ssd.h); a copy when it is not (a fresh tensor is aligned)."""
    nd = t.dim()
    packed, expect = True, 1
    for i in range(nd - 1, nd - 1 - dense, -1):
        if t.shape[i] != 1 and t.stride(i) != expect:
            packed = False
        expect *= t.shape[i]
    if packed and t.data_ptr() % 16 == 0 and all((t.stride(i) * 2) % 16 == 0 for i in range(nd - dense)):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _dt_tensor(dt: torch.Tensor) -> torch.Tensor:
    """The SSD's dt as the kernels take it: fp16 or fp32 as it is (other dtypes as fp32), unit head stride."""
    if dt.dtype not in (torch.float16, torch.float32):
        dt = dt.to(torch.float32)
    return _last_dense(dt)


def _uncount(op: str) -> None:
    """A kernel call that answered "not supported" (nothing written): recounted as a fallback."""
    counts[op] -= 1
    if counts[op] <= 0:
        del counts[op]
    counts[op + ":reference"] += 1
    counts[op + ":unsupported"] += 1


def _y_as(y16: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return y16 if like.dtype == torch.float16 else y16.to(like.dtype)


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``ssm.ssd_chunked`` (the float Mamba2 SSD prefill; y in ``x.dtype``, the final state fp32). The kernel
    (quamba_kernels/ssd.h) takes d_state 64 / 128 / 256, headdim % 16 == 0, nheads % ngroups == 0 (checked
    here, so it is called only where it works); x / B / C rows that are not 16-byte aligned (or not packed)
    are copied first. Should it still answer "not supported" (a device without the shared memory, sm < 80),
    the reference runs, counted as ``ssd:reference`` and ``ssd:unsupported``. Non-fp16 x / B / C are rounded
    to fp16; chunk_size only changes the reference's rounding."""
    def supported() -> bool:
        if x.dim() != 4 or B.dim() != 4:
            return False
        b, L, h, p = x.shape
        g, n = B.shape[-2:]
        return (int(chunk_size) >= 1 and 1 <= b <= 65535 and L >= 1 and 1 <= h <= 65535 and p % 16 == 0 and p >= 16
                and n in FLOAT_SSD_D_STATES and g >= 1 and h % g == 0
                and _fl(x, b, L, h, p) and _fl(B, b, L, g, n) and _fl(C, b, L, g, n) and _fl(dt, b, L, h)
                and _param(A, h) and _param(D, h, optional=True)
                and (initial_state is None or (_fl(initial_state, b, h, p, n)))
                and _no_grad_needed(x, dt, A, B, C, D, initial_state))

    k = _kernels_for("ssd", (x, dt, A, B, C, D, initial_state), supported)
    if k is None:
        return _ref_float_ssd(x, dt, A, B, C, chunk_size, D, initial_state)
    b, L, h, p = x.shape
    n = B.shape[-1]
    y = _empty((b, L, h, p), torch.float16, x)
    state_out = _empty((b, h, p, n), torch.float32, x)
    ran = k.ssd(_aligned_rows(_f16(x), 2), _dt_tensor(dt), _fp32(A), _aligned_rows(_f16(B), 2),
                _aligned_rows(_f16(C), 2), int(chunk_size), _fp32(D), _float_state(initial_state), y, state_out)
    if not ran:  # cudaErrorNotSupported: nothing written
        _uncount("ssd")
        return _ref_float_ssd(x, dt, A, B, C, chunk_size, D, initial_state)
    return _y_as(y, x), state_out


def ssd_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                     C: torch.Tensor, D: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``ssm.ssd_state_update`` (one Mamba2 token: y ``[B, H, P]`` in ``x.dtype``, a new fp32 state; ``state``
    untouched). Any headdim, d_state a multiple of 16 in 16..256."""
    def supported() -> bool:
        if state is None or state.dim() != 4 or B.dim() != 3:
            return False
        b, h, p, n = state.shape
        g = B.shape[1]
        return (1 <= b <= 65535 and 1 <= h <= 65535 and p >= 1 and 16 <= n <= 256 and n % 16 == 0 and g >= 1
                and h % g == 0 and _fl(state, b, h, p, n) and _fl(x, b, h, p) and _fl(dt, b, h)
                and _fl(B, b, g, n) and _fl(C, b, g, n) and _param(A, h) and _param(D, h, optional=True)
                and _no_grad_needed(state, x, dt, A, B, C, D))

    k = _kernels_for("ssd_state_update", (state, x, dt, A, B, C, D), supported)
    if k is None:
        return _ref_float_ssd_state_update(state, x, dt, A, B, C, D)
    y = _empty(x.shape, torch.float16, x)
    new_state = _empty(state.shape, torch.float32, x)
    k.ssd_state_update(_float_state(state), _f16(x), _dt_tensor(dt), _fp32(A), _f16(B), _f16(C), _fp32(D), y,
                       new_state)
    return _y_as(y, x), new_state


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = True,
                   initial_state: torch.Tensor | None = None, chunk_size: int | None = None,
                   checkpoint_chunks: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``ssm.selective_scan`` (the float Mamba1 scan: y in ``u.dtype``, the final state fp32). d_state <= 256;
    non-fp16 u / delta / B / C / z are rounded to fp16 (delta before its bias and softplus, as the kernel
    reads it); chunk_size / checkpoint_chunks only concern the reference (a call that records gradients runs
    it)."""
    def supported() -> bool:
        if u.dim() != 3 or A.dim() != 2:
            return False
        b, L, e = u.shape
        n = A.shape[1]
        return (1 <= b <= 65535 and L >= 1 and e >= 1 and 1 <= n <= 256 and A.shape[0] == e
                and _fl(u, b, L, e) and _fl(delta, b, L, e) and _fl(B, b, L, n) and _fl(C, b, L, n)
                and (z is None or _fl(z, b, L, e)) and _param(A, e, n) and _param(D, e, optional=True)
                and _param(delta_bias, e, optional=True)
                and (initial_state is None or _fl(initial_state, b, e, n))
                and _no_grad_needed(u, delta, A, B, C, D, z, delta_bias, initial_state))

    k = _kernels_for("selective_scan", (u, delta, A, B, C, D, z, delta_bias, initial_state), supported)
    if k is None:
        return _ref_float_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                         chunk_size, checkpoint_chunks)
    b, L, e = u.shape
    y = _empty((b, L, e), torch.float16, u)
    state_out = _empty((b, e, A.shape[1]), torch.float32, u)
    k.selective_scan(_last_dense(_f16(u)), _last_dense(_f16(delta)), _fp32(A), _last_dense(_f16(B)),
                     _last_dense(_f16(C)), _fp32(D), _last_dense(_f16(z)), _fp32(delta_bias), bool(delta_softplus),
                     _float_state(initial_state), y, state_out)
    return _y_as(y, u), state_out


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``ssm.selective_state_update`` (one Mamba1 token: y ``[B, E]`` in ``x.dtype``, a new fp32 state;
    ``state`` untouched). d_state <= 256."""
    def supported() -> bool:
        if state is None or state.dim() != 3:
            return False
        b, e, n = state.shape
        return (1 <= b <= 65535 and e >= 1 and 1 <= n <= 256 and _fl(state, b, e, n) and _fl(x, b, e)
                and _fl(dt, b, e) and _fl(B, b, n) and _fl(C, b, n) and (z is None or _fl(z, b, e))
                and _param(A, e, n) and _param(D, e, optional=True) and _param(dt_bias, e, optional=True)
                and _no_grad_needed(state, x, dt, A, B, C, D, z, dt_bias))

    k = _kernels_for("selective_state_update", (state, x, dt, A, B, C, D, z, dt_bias), supported)
    if k is None:
        return _ref_float_selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    y = _empty(x.shape, torch.float16, x)
    new_state = _empty(state.shape, torch.float32, x)
    k.selective_state_update(_float_state(state), _last_dense(_f16(x)), _last_dense(_f16(dt)), _fp32(A),
                             _last_dense(_f16(B)), _last_dense(_f16(C)), _fp32(D), _last_dense(_f16(z)),
                             _fp32(dt_bias), bool(dt_softplus), y, new_state)
    return _y_as(y, x), new_state


_CONV_FLOATS = (torch.float16, torch.float32)  # quamba_kernels/causal_conv1d.h: x / weight / bias / state dtypes
CONV_MAX_WIDTH = 4  # causal_conv1d.h: 1 <= K <= 4 (Mamba: 4)


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  conv_state: torch.Tensor | None = None,
                  activation: str | None = "silu") -> tuple[torch.Tensor, torch.Tensor]:
    """``ssm.causal_conv1d`` (the float conv of the FP / W4A16 mixers, prefill and decode): y ``[B, L, C]`` and the
    new state ``[B, C, K-1]`` in ``x.dtype``, as the reference. Unlike the SSM kernels this one takes fp16 AND fp32
    x natively (nothing rounded first: the W4A16 mixers' fp32 activations keep fp32), weight / bias / state fp16 or
    fp32 as they are (not rounded to x's dtype as the reference does: fp32 math, one rounding of y); 1 <= K <= 4.
    bf16 / fp64 inputs, other widths and calls recording gradients run the reference (counted as fallbacks).
    x may be a strided view (unit channel stride; other strides are passed through)."""
    def supported() -> bool:
        if activation not in (None, "silu", "swish") or x.dim() != 3 or weight.dim() not in (2, 3):
            return False
        b, L, c = x.shape
        kw = weight.shape[-1]
        return (1 <= b <= 65535 and L >= 1 and -(-L // 16) <= 65535 and c >= 1 and 1 <= kw <= CONV_MAX_WIDTH
                and x.dtype in _CONV_FLOATS and weight.dtype in _CONV_FLOATS and weight.numel() == c * kw
                and weight.shape[0] == c
                and (bias is None or (bias.dtype in _CONV_FLOATS and tuple(bias.shape) == (c,)))
                and (conv_state is None or (conv_state.dtype in _CONV_FLOATS
                                            and tuple(conv_state.shape) == (b, c, kw - 1)))
                and _no_grad_needed(x, weight, bias, conv_state))

    k = _kernels_for("causal_conv1d", (x, weight, bias, conv_state), supported)
    if k is None:
        return _ref_float_causal_conv1d(x, weight, bias, conv_state, activation)
    b, L, c = x.shape
    kw = weight.shape[-1]
    y = _empty((b, L, c), x.dtype, x)
    new_state = _empty((b, c, kw - 1), x.dtype, x)
    k.causal_conv1d(_last_dense(x), weight.reshape(c, kw), bias, conv_state, activation is not None, y, new_state)
    return y, new_state


# ---- the float norms (FP models: every block norm, norm_f, Mamba2's gated norm; W4A16 Mamba2's gated norm) ---------

_NORM_FLOATS = (torch.float16, torch.float32, torch.bfloat16)  # fp64 (oracle tests) stays on the reference


def _float_add_rms_norm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                        residual_in_fp32: bool = True, prenorm: bool = True) -> Any:
    """The FP Block's add + norm (``models.lm.Block`` / ``RMSNorm``, mamba_ssm's fused add_rms_norm): residual =
    hidden + residual (hidden alone without one), fp32 when ``residual_in_fp32``; out = ``rms_norm(residual)`` in
    the weight's dtype. Returns (out, residual), or out alone when not ``prenorm`` (norm_f)."""
    residual = hidden if residual is None else residual + hidden
    if residual_in_fp32:
        residual = residual.float()
    out = _ssm.rms_norm(residual, weight, eps).to(weight.dtype)
    return (out, residual) if prenorm else out


_ref_float_add_rms_norm = _float_add_rms_norm


def _stream_dtype(hidden: torch.Tensor, residual: torch.Tensor | None, residual_in_fp32: bool) -> torch.dtype:
    """The residual stream's dtype after the add (what the reference's ``residual`` has)."""
    if residual_in_fp32:
        return torch.float32
    return hidden.dtype if residual is None else torch.promote_types(residual.dtype, hidden.dtype)


def _norm_out_dtype(stream: torch.dtype, wdt: torch.dtype) -> torch.dtype | None:
    """The dtype the kernel writes the norm in so that ``.to(wdt)`` gives the reference's value: the reference
    rounds to the stream's dtype (rms_norm's output), then to the weight's. None: two lossy roundings (fp16 /
    bf16 mixed), left to the reference."""
    if stream == wdt or stream == torch.float32:
        return wdt
    return stream if wdt == torch.float32 else None


def _rows(t: torch.Tensor | None) -> torch.Tensor | None:
    """``[..., n]`` as the 2-D ``[rows, n]`` the norm bindings take: a view where the leading dims collapse (the
    strided rows of a split or a token slice), a copy otherwise."""
    if t is None:
        return None
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def add_rms_norm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                 residual_in_fp32: bool = True, prenorm: bool = True) -> Any:
    """The FP model's residual add + RMSNorm (:func:`_float_add_rms_norm`: Block with ``prenorm``, norm_f
    without): (out in ``weight.dtype``, the residual stream), or out alone. The kernel (quamba_kernels/
    add_rms_norm.h) rounds the fp32 sum to the stream's dtype before the norm, as the reference stores it, and
    writes the norm in the dtype the reference rounds it to; fp16 / fp32 / bf16, d <= 16384, equal shapes."""
    stream = _stream_dtype(hidden, residual, residual_in_fp32)
    ydt = _norm_out_dtype(stream, weight.dtype)

    def supported() -> bool:
        d = hidden.shape[-1] if hidden.dim() >= 1 else 0
        return (hidden.dtype in _NORM_FLOATS and 1 <= d <= 16384 and 1 <= hidden.numel() // d < 2**31
                and (residual is None or (residual.dtype in _NORM_FLOATS and residual.shape == hidden.shape))
                and weight.dtype in _NORM_FLOATS and weight.dim() == 1 and weight.numel() == d and ydt is not None
                and _no_grad_needed(hidden, residual, weight))

    k = _kernels_for("add_rms_norm", (hidden, residual, weight), supported)
    if k is None:
        return _ref_float_add_rms_norm(hidden, residual, weight, eps, residual_in_fp32, prenorm)
    y = _empty(hidden.shape, ydt, hidden)
    res = _empty(hidden.shape, stream, hidden) if prenorm else None
    k.add_rms_norm(_rows(hidden), _rows(residual), weight, float(eps), bool(residual_in_fp32), _rows(y), _rows(res))
    y = y.to(weight.dtype)
    return (y, res) if prenorm else y


def gated_rms_norm(x: torch.Tensor, z: torch.Tensor | None, weight: torch.Tensor, eps: float,
                   group_size: int | None = None, norm_before_gate: bool = False) -> torch.Tensor:
    """``ssm.gated_rms_norm`` (Mamba2's gated group-wise RMSNorm; out in ``x.dtype``): the kernel (quamba_kernels/
    gated_rms_norm.h) for fp16 / fp32 / bf16 x, z and weight, group_size <= 16384."""
    def supported() -> bool:
        e = x.shape[-1] if x.dim() >= 1 else 0
        gs = e if group_size is None else int(group_size)
        return (x.dtype in _NORM_FLOATS and e >= 1 and 1 <= gs <= 16384 and e % gs == 0
                and 1 <= x.numel() // e and (x.numel() // e) * (e // gs) < 2**31
                and (z is None or (z.dtype in _NORM_FLOATS and z.shape == x.shape))
                and weight.dtype in _NORM_FLOATS and weight.dim() == 1 and weight.numel() == e
                and _no_grad_needed(x, z, weight))

    k = _kernels_for("gated_rms_norm", (x, z, weight), supported)
    if k is None:
        return _ref_float_gated_rms_norm(x, z, weight, eps, group_size, norm_before_gate)
    e = x.shape[-1]
    out = _empty(x.shape, x.dtype, x)
    k.gated_rms_norm(_rows(x), _rows(z), weight, float(eps), int(e if group_size is None else group_size),
                     bool(norm_before_gate), _rows(out))
    return out


# ---- quantized linears ---------------------------------------------------------------------------------
# Every M goes to the kernel: the C entry point itself runs the tensor-core GEMV for M <= 16 token rows and the
# tiled GEMM (linear_gemm.cuh) for M > 16 (W8A8 with K % 16 != 0 or unaligned rows: the GEMV for every M).


def _rows_aligned(x: torch.Tensor, k: int, elem_bytes: int) -> bool:
    """The activation rows as the linear bindings see them are 16-byte aligned: a contiguous tensor (or a
    2-D one with unit element stride) needs an aligned start and row stride; others are copied (aligned)."""
    if x.dim() == 0 or x.shape[-1] != k:
        return False
    if x.is_contiguous():
        return x.data_ptr() % 16 == 0 and (k * elem_bytes) % 16 == 0
    if x.dim() == 2 and x.stride(1) == 1:
        return x.data_ptr() % 16 == 0 and (x.stride(0) * elem_bytes) % 16 == 0
    return (k * elem_bytes) % 16 == 0


def _row_values(s: Any, n: int) -> bool:
    """A per-row scale the linear kernels read from the device: one value or [N] (a python float is made a
    tensor)."""
    return s is not None and _numel_in(s, n)


def _dev_scale(s: Scale, like: torch.Tensor) -> torch.Tensor:
    """A scale as the linear bindings take it: a tensor on ``like``'s device (no host sync)."""
    return s if isinstance(s, torch.Tensor) else torch.full((), float(s), dtype=torch.float32, device=like.device)


def _effective_group(group_size: int, k: int) -> int:
    return k if group_size <= 0 or group_size >= k else group_size


def _linear_out(x: torch.Tensor, n: int, int8_out: bool) -> torch.Tensor:
    """The reference's output: int8 with an output scale, else fp32."""
    return _empty((*x.shape[:-1], n), torch.int8 if int8_out else torch.float32, x)


def w8a8_linear(x_q: torch.Tensor, x_scale: Scale, w_q: torch.Tensor, w_scale: Scale,
                bias: torch.Tensor | None = None, out_scale: Scale | None = None) -> torch.Tensor:
    """``ops.w8a8_linear`` (bit-exact: the kernel repeats the reference's integer sum and fp32 epilogue). The
    kernel runs a tensor-core GEMV for M <= 16 token rows and a tiled GEMM for prefill (M > 16)."""
    def supported() -> bool:
        if x_q.dtype != torch.int8 or w_q.dtype != torch.int8 or w_q.dim() != 2 or w_q.stride(1) != 1:
            return False
        n, k = w_q.shape  # any K: unaligned or K % 16 != 0 take the kernel's byte-wise loads
        return (1 <= k <= 65536 and x_q.dim() >= 1 and x_q.shape[-1] == k and _scalar(x_scale)
                and _row_values(w_scale, n)
                and (out_scale is None or _row_values(out_scale, n)) and (bias is None or bias.numel() == n))

    k = _kernels_for("w8a8_linear", (x_q, x_scale, w_q, w_scale, bias, out_scale), supported)
    if k is None:
        return _ref_w8a8_linear(x_q, x_scale, w_q, w_scale, bias, out_scale)
    y = _linear_out(x_q, w_q.shape[0], out_scale is not None)
    k.w8a8_linear(x_q, _dev_scale(x_scale, x_q), w_q, _dev_scale(w_scale, x_q), bias,
                  None if out_scale is None else _dev_scale(out_scale, x_q), y)
    return y


def _w4_weight_ok(qweight: torch.Tensor, scales: torch.Tensor, k: int, group_size: int, min_group: int) -> bool:
    """Packed uint8 [N, K/2] weight and fp16 [N, groups] scales the W4 kernels take."""
    gs = _effective_group(group_size, k)
    return (32 <= k <= 65536 and k % 32 == 0 and (gs >= k or gs % min_group == 0)
            and qweight.dtype == torch.uint8 and qweight.dim() == 2 and qweight.shape[1] == k // 2
            and qweight.stride(1) == 1 and qweight.data_ptr() % 16 == 0 and qweight.stride(0) % 16 == 0
            and scales.dtype == torch.float16 and scales.dim() == 2 and scales.stride(1) == 1
            and tuple(scales.shape) == (qweight.shape[0], -(-k // gs)))


def _ref_w4a8_linear(x_q: torch.Tensor, x_scale: Scale, qweight: torch.Tensor, s_group: torch.Tensor,
                     s_channel: torch.Tensor, group_size: int, out_scale: Scale | None, bias: torch.Tensor | None,
                     in_features: int) -> torch.Tensor:
    """The reference op on the packed weight (unpacked here: the op takes codes)."""
    from ..quant.packing import unpack_int4

    return _op_w4a8_linear(x_q, x_scale, unpack_int4(qweight, in_features), s_group, s_channel, group_size,
                           out_scale, bias)


def _ref_w4a16_linear(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, group_size: int,
                      bias: torch.Tensor | None, in_features: int) -> torch.Tensor:
    """The reference op on the packed weight."""
    from ..quant.packing import unpack_int4

    return _op_w4a16_linear(x, unpack_int4(qweight, in_features), scale, group_size, bias)


def w4a8_linear(x_q: torch.Tensor, x_scale: Scale, qweight: torch.Tensor, s_group: torch.Tensor,
                s_channel: torch.Tensor, group_size: int, out_scale: Scale | None, bias: torch.Tensor | None,
                in_features: int) -> torch.Tensor:
    """``ops.w4a8_linear`` taking the PACKED weight (``quant.packing.pack_int4``; the reference gets the
    unpacked codes). Bit-exact."""
    def supported() -> bool:
        n = qweight.shape[0] if qweight.dim() == 2 else 0
        return (x_q.dtype == torch.int8 and _rows_aligned(x_q, in_features, 1)
                and _w4_weight_ok(qweight, s_group, in_features, group_size, 32) and _scalar(x_scale)
                and s_channel.numel() == n and (out_scale is None or _row_values(out_scale, n))
                and (bias is None or bias.numel() == n))

    k = _kernels_for("w4a8_linear", (x_q, x_scale, qweight, s_group, s_channel, bias, out_scale), supported)
    if k is None:
        return _ref_w4a8_linear(x_q, x_scale, qweight, s_group, s_channel, group_size, out_scale, bias, in_features)
    y = _linear_out(x_q, qweight.shape[0], out_scale is not None)
    k.w4a8_linear(x_q, _dev_scale(x_scale, x_q), qweight, s_group, s_channel, int(group_size), bias,
                  None if out_scale is None else _dev_scale(out_scale, x_q), y)
    return y


def w4a16_linear(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, group_size: int,
                 bias: torch.Tensor | None, in_features: int) -> torch.Tensor:
    """``ops.w4a16_linear`` taking the PACKED weight. The kernel takes fp16 activations: fp32 / bf16 inputs are
    rounded to fp16 first (within the op's float tolerance); y comes back fp32 like the reference's."""
    k = _kernels_for("w4a16_linear", (x, qweight, scale, bias),
                     lambda: _w4a16_supported(x, qweight, scale, group_size, bias, in_features, fresh=False))
    if k is None:
        return _ref_w4a16_linear(x, qweight, scale, group_size, bias, in_features)
    if x.numel() // in_features >= W4A16_CUBLAS_MIN_M:
        return _w4a16_cublas(k, x, qweight, scale, int(group_size), bias, in_features)
    y = _linear_out(x, qweight.shape[0], False)
    k.w4a16_linear(x.to(torch.float16), qweight, scale, int(group_size), bias, y)
    return y


def _w4a16_supported(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, group_size: int,
                     bias: torch.Tensor | None, in_features: int, fresh: bool) -> bool:
    """The shapes the W4A16 kernels take; ``fresh``: for a newly allocated fp16 x of x's shape (its rows are
    16-byte aligned: K % 32 == 0 is required anyway)."""
    n = qweight.shape[0] if qweight.dim() == 2 else 0
    return (x.dtype in _FLOATS and x.dim() >= 1 and x.shape[-1] == in_features
            and _w4_weight_ok(qweight, scale, in_features, group_size, 32)
            and (fresh or x.dtype != torch.float16 or _rows_aligned(x, in_features, 2))
            and (bias is None or bias.numel() == n))


def w4a16_linear_takes_fp16(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, group_size: int,
                            bias: torch.Tensor | None, in_features: int) -> bool:
    """True when :func:`w4a16_linear` would run a kernel (the GEMV / GEMM, or the cuBLAS prefill: all round x to
    fp16 first) for a freshly allocated fp16 input of ``x``'s shape and device: the producer of x may then hand
    it over as fp16 (:func:`hadamard`'s ``fp16_out``) and no value changes. Not counted."""
    ops, _ = _decide("w4a16_linear", (x, qweight, scale, bias),
                     lambda: _w4a16_supported(x, qweight, scale, group_size, bias, in_features, fresh=True))
    return ops is not None


# W4A16 prefill from this many token rows up: the weight dequantized to fp16 by our kernel (w4a16_dequantize,
# 2.5 bytes per weight) and multiplied by cuBLAS fp16 with fp32 output; below it, our tensor-core GEMV / GEMM.
# Each weight is then fp16((c - 8) * s) (2^-11 relative, the GEMM's rounding for group sizes that are not
# multiples of 64). The dequantized weight is a transient buffer of at most _W4A16_DEQUANT_SLICE elements, not a
# second copy of the model: wider layers (the big lm_heads) are done in slices of a multiple of 128 output rows
# (unaligned slices sent cuBLAS down a slow path, 3-8x; each slice's y is copied into place, ~800 / K of the
# GEMM's time, hence slices that hold every other layer whole). The threshold: the w4a16_linear_cublas rows of
# benchmarks/kernels.py beside the GEMM at M = 32 ... 256 (benchmarks/results/kernels_w4a16_cublas.json).
W4A16_CUBLAS_MIN_M = 128
_W4A16_DEQUANT_SLICE = 1 << 27  # 128 Mi weights = 256 MiB of fp16 (mamba2-8b's in_proj: 76 Mi)


_MM_OUT_DTYPE_REFUSED: set[str] = set()  # device types whose torch.mm refused out_dtype once: not asked again


def _mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """fp16 ``a @ b`` with an fp32 result: cuBLAS's fp32 output (``out_dtype``, torch >= 2.8 on CUDA), else the
    fp16 product widened (older torch, e.g. JetPack 6.2's, and CPU: found out once per device type, so a prefill
    does not raise and catch an error per linear)."""
    if a.device.type not in _MM_OUT_DTYPE_REFUSED:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except torch.cuda.OutOfMemoryError:  # not a refusal of out_dtype
            raise
        except (TypeError, RuntimeError, NotImplementedError):
            _MM_OUT_DTYPE_REFUSED.add(a.device.type)
    return torch.mm(a, b).float()


def _w4a16_cublas(k: Any, x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, group_size: int,
                  bias: torch.Tensor | None, in_features: int) -> torch.Tensor:
    """W4A16 prefill as dequantize (our kernel) + cuBLAS fp16 GEMM; fp32 y [..., N] as the reference's."""
    n = qweight.shape[0]
    x2 = x.reshape(-1, in_features).to(torch.float16)
    step = max(128, _W4A16_DEQUANT_SLICE // in_features // 128 * 128)
    w16 = torch.empty(min(n, step), in_features, dtype=torch.float16, device=x.device)
    if n <= step:
        k.w4a16_dequantize(qweight, scale, in_features, group_size, w16)
        y = _mm_f32(x2, w16.t())
    else:
        y = torch.empty(x2.shape[0], n, dtype=torch.float32, device=x.device)
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            w = w16[: n1 - n0]
            k.w4a16_dequantize(qweight[n0:n1], scale[n0:n1], in_features, group_size, w)
            y[:, n0:n1] = _mm_f32(x2, w.t())
    if bias is not None:
        y.add_(bias.to(torch.float32))
    return y.reshape(*x.shape[:-1], n)
