"""The quantized artifact: one directory a quantized model is saved to and loaded from.

Layout::

    <dir>/config.json        {"quamba_edge_artifact": FORMAT_VERSION, "recipe", "bits", "model_config",
                              "quant_config", "tensors": {name: {"dtype", "shape"}}, "weights": {"file",
                              "bytes", "sha256"}, "tokenizer_files", "source", ...}
    <dir>/model.safetensors  QuantMambaLM.state_dict(): packed weights, scales, fp tensors
    <dir>/tokenizer.json     (+ tokenizer_config.json, special_tokens_map.json, ... when given)

Saving is atomic: everything is written and fsync'ed in a temp dir beside the target, which then
replaces the target with renames, so an interrupted save leaves either the old artifact or the new one,
never a half-written directory. Loading checks, in this order, the format version, the size and sha256
of model.safetensors (truncation / corruption), the safetensors header against config.json's tensor
table, and config.json's table against the tensors ``QuantMambaLM(model_config, quant_config)``
expects (dtype and shape, every mismatch named), then ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from quamba_edge import __version__
from quamba_edge._fs import apply_umask_permissions, file_sha256
from quamba_edge.models.config import MambaConfig
from quamba_edge.models.loading import CheckpointError
from quamba_edge.tokenizer import resolve_model_dir

__all__ = ["ArtifactError", "FORMAT_KEY", "FORMAT_VERSION", "WEIGHTS_FILE", "CONFIG_FILE",
           "TOKENIZER_FILES", "save_artifact", "load_artifact", "is_artifact", "read_artifact_config",
           "tensor_table", "file_sha256", "check_output_dir", "write_dir_atomically",
           "describe_artifact", "format_artifact_info"]

FORMAT_KEY = "quamba_edge_artifact"  # its value is the format version; its presence marks an artifact
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Files copied from a tokenizer directory when present (tokenizer.json is required when one is given).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json")
_LIST_LIMIT = 20


class ArtifactError(CheckpointError):
    """An artifact that cannot be loaded (or written): wrong format version, truncated or corrupt
    weights, or tensors that do not match config.json / the model. A ValueError."""


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _fmt_list(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def _fsync(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tensor_table(tensors: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype": "int8", "shape": [..]}}`` in name order."""
    return {k: {"dtype": _dtype_name(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())}


def _state_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict as private, contiguous CPU tensors (safetensors refuses shared storage,
    e.g. a tied head, so a tensor sharing memory with an earlier one is cloned)."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        if t.numel():
            st = t.untyped_storage()
            if st.data_ptr() in seen or st.nbytes() != t.numel() * t.element_size():
                t = t.clone()  # shared with another entry, or a view into a larger buffer
            seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def _finite_json(obj: Any) -> Any:
    """Non-finite floats as "inf" / "-inf" strings (strict JSON; MambaConfig reads them back, e.g. the
    default Mamba2 ``dt_limit`` (0, inf))."""
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def _quant_config_of(qmodel: nn.Module) -> Any:
    qc = getattr(qmodel, "quant_config", None)
    if qc is None:
        raise TypeError(f"{type(qmodel).__name__} has no quant_config; save_artifact takes a QuantMambaLM")
    return qc


def _quant_config_dict(qc: Any) -> dict[str, Any]:
    d = qc.to_dict() if hasattr(qc, "to_dict") else dict(qc)
    json.dumps(d)  # fail early (before anything is written) on a non-JSON value
    return d


def _model_classes() -> tuple[type, type]:
    """(QuantMambaLM, QuantConfig), imported lazily (Q's modules)."""
    from quamba_edge.quant.qconfig import QuantConfig
    from quamba_edge.quant.qlm import QuantMambaLM

    return QuantMambaLM, QuantConfig


# ------------------------------------------------------------------------------------------------
# atomic directory writer
# ------------------------------------------------------------------------------------------------


def check_output_dir(target: Path, replaceable: Callable[[Path], bool] | None = None,
                     what: str = "quamba-edge artifact") -> None:
    """An existing target may be replaced only if it is an empty directory or ``replaceable`` (default:
    an artifact): never a user's FP checkpoint or any other directory by mistake."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir() or target.is_symlink():
        raise FileExistsError(f"{target} exists and is not a directory; choose another --out")
    if any(target.iterdir()) and not (replaceable or is_artifact)(target):
        raise FileExistsError(
            f"{target} exists and is not a {what}; refusing to replace it "
            "(choose another output directory or remove it)")


def write_dir_atomically(target: str | os.PathLike, write: Callable[[Path], None],
                         replaceable: Callable[[Path], bool] | None = None,
                         what: str = "quamba-edge artifact") -> Path:
    """Create ``target`` as a directory whose files ``write(tmp_dir)`` produces, atomically.

    The files go into a temp dir ``.<name>.tmp-*`` beside the target and are fsync'ed (files, then the
    dir). A new target appears with one rename. An existing target (empty, or an artifact) is first
    renamed aside, the new dir renamed in, and the old one deleted, so the target is replaced only
    after the new content is complete. On any error the temp dir is removed and an existing target is
    left as it was. Returns the target path.
    """
    target = Path(target).expanduser().absolute()
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(target, replaceable, what)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        write(tmp)
        apply_umask_permissions(tmp)
        for p in tmp.rglob("*"):
            if p.is_file():
                _fsync(p)
        _fsync(tmp)
        if target.exists():
            check_output_dir(target, replaceable, what)
            old = parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)  # put the previous artifact back
                raise
            _fsync(parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------------
# save
# ------------------------------------------------------------------------------------------------


def _tokenizer_sources(tokenizer_dir: str | os.PathLike | None) -> list[Path]:
    if tokenizer_dir is None:
        return []
    p = Path(tokenizer_dir).expanduser()
    if p.is_file():
        if p.name != "tokenizer.json":
            raise FileNotFoundError(f"{p} is not a tokenizer.json")
        folder = p.parent
    else:
        folder = p
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {folder}")
    return [folder / n for n in TOKENIZER_FILES if (folder / n).is_file()]


def save_artifact(qmodel: nn.Module, out_dir: str | os.PathLike,
                  tokenizer_dir: str | os.PathLike | None = None,
                  metadata: Mapping[str, Any] | None = None) -> Path:
    """Save a quantized model (``QuantMambaLM``: ``.config``, ``.quant_config``, ``state_dict()``) as an
    artifact directory, atomically. ``tokenizer_dir`` (a directory with tokenizer.json, or the file)
    has its tokenizer files copied in. ``metadata`` (JSON-serialisable: source model, calibration
    settings, timings) is stored under ``"source"`` in config.json. Returns the directory."""
    from safetensors.torch import save_file

    cfg = getattr(qmodel, "config", None)
    if not isinstance(cfg, MambaConfig):
        raise TypeError(f"{type(qmodel).__name__}.config is not a MambaConfig")
    qc = _quant_config_of(qmodel)
    qc_dict = _quant_config_dict(qc)
    tensors = _state_tensors(qmodel)
    tok_files = _tokenizer_sources(tokenizer_dir)
    meta = dict(metadata or {})
    json.dumps(meta)

    header: dict[str, Any] = {
        FORMAT_KEY: FORMAT_VERSION,
        "quamba_edge_version": __version__,
        "recipe": qc_dict.get("recipe", getattr(qc, "recipe", None)),
        "bits": qc_dict.get("bits", getattr(qc, "bits", None)),
        "model_config": _finite_json(cfg.to_dict()),
        "quant_config": qc_dict,
    }
    # Top-level token ids: quamba_edge.tokenizer.load_tokenizer reads them from config.json.
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(cfg, k) is not None:
            header[k] = getattr(cfg, k)

    def write(tmp: Path) -> None:
        wpath = tmp / WEIGHTS_FILE
        save_file(tensors, str(wpath), metadata={"format": "pt", FORMAT_KEY: str(FORMAT_VERSION)})
        body = dict(header)
        body["weights"] = {"file": WEIGHTS_FILE, "bytes": wpath.stat().st_size, "sha256": file_sha256(wpath)}
        body["tensors"] = tensor_table(tensors)
        body["tokenizer_files"] = [p.name for p in tok_files]
        body["source"] = meta
        for p in tok_files:
            shutil.copyfile(p, tmp / p.name)
        (tmp / CONFIG_FILE).write_text(json.dumps(body, indent=1, allow_nan=False) + "\n")

    return write_dir_atomically(out_dir, write)


# ------------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------------


def _artifact_dir(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if p.is_file() and p.name == CONFIG_FILE:
        p = p.parent
    return p if p.exists() else resolve_model_dir(path)


def is_artifact(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory whose config.json carries the artifact format key."""
    p = Path(path).expanduser()
    f = p / CONFIG_FILE if p.is_dir() else p
    if not f.is_file() or f.name != CONFIG_FILE:
        return False
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and FORMAT_KEY in d


def read_artifact_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of an artifact, after checking that it is one and that its format version is ours."""
    folder = _artifact_dir(path)
    f = folder / CONFIG_FILE
    if not f.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {folder}: not a quamba-edge artifact")
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot parse {f}: {e}") from e
    if not isinstance(d, dict) or FORMAT_KEY not in d:
        raise ArtifactError(
            f"{folder} is not a quamba-edge artifact ({CONFIG_FILE} has no {FORMAT_KEY!r} key); "
            "an FP checkpoint loads with quamba_edge.models.load_model")
    version = d[FORMAT_KEY]
    if version != FORMAT_VERSION:
        by = d.get("quamba_edge_version")
        raise ArtifactError(
            f"artifact {folder} has format version {version!r}"
            + (f" (written by quamba-edge {by})" if by else "")
            + f", but this quamba-edge {__version__} reads format version {FORMAT_VERSION} only; "
            "re-create it with `quamba-edge quantize` or use the quamba-edge release that wrote it")
    for key in ("model_config", "quant_config", "tensors", "weights"):
        if key not in d:
            raise ArtifactError(f"{f} lacks {key!r}: the artifact is incomplete")
    return d


def _verify_weights_file(folder: Path, cfg: Mapping[str, Any]) -> Path:
    w = cfg["weights"]
    wpath = folder / str(w.get("file", WEIGHTS_FILE))
    if not wpath.is_file():
        raise ArtifactError(f"artifact {folder} has no {wpath.name}")
    size = wpath.stat().st_size
    want = w.get("bytes")
    if want is not None and size != int(want):
        kind = "truncated" if size < int(want) else "longer than written"
        raise ArtifactError(f"{wpath} is {size:,} bytes but config.json records {int(want):,}: the file is "
                            f"{kind} (an interrupted copy?); copy or re-create the artifact")
    digest = w.get("sha256")
    if digest:
        got = file_sha256(wpath)
        if got != digest:
            raise ArtifactError(f"{wpath} is corrupt: sha256 {got} does not match config.json's {digest}")
    return wpath


def _compare_tables(expected: Mapping[str, Mapping[str, Any]], got: Mapping[str, Mapping[str, Any]],
                    what_expected: str, what_got: str, folder: Path) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = []
    for k in sorted(set(expected) & set(got)):
        e, g = expected[k], got[k]
        if e["dtype"] != g["dtype"] or list(e["shape"]) != list(g["shape"]):
            wrong.append(f"{k} ({what_expected}: {e['dtype']}{list(e['shape'])}, "
                         f"{what_got}: {g['dtype']}{list(g['shape'])})")
    if missing or unexpected or wrong:
        parts = [f"artifact {folder}: {what_got} does not match {what_expected}:"]
        if missing:
            parts.append(f"missing tensors: {_fmt_list(missing)}")
        if unexpected:
            parts.append(f"unexpected tensors: {_fmt_list(unexpected)}")
        if wrong:
            parts.append(f"wrong dtype/shape: {_fmt_list(wrong)}")
        raise ArtifactError("\n  ".join(parts))


def _header_table(wpath: Path) -> dict[str, dict[str, Any]]:
    """Names, dtypes and shapes from the safetensors header (no tensor data is read)."""
    from safetensors import safe_open

    out: dict[str, dict[str, Any]] = {}
    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                dt = getattr(torch, _SAFETENSORS_DTYPES.get(sl.get_dtype(), sl.get_dtype().lower()), None)
                out[k] = {"dtype": _dtype_name(dt) if isinstance(dt, torch.dtype) else sl.get_dtype(),
                          "shape": list(sl.get_shape())}
    except Exception as e:  # SafetensorError on a garbled header
        raise ArtifactError(f"corrupt or truncated safetensors file {wpath}: {e}") from e
    return out


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                       "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def describe_artifact(path: str | os.PathLike) -> dict[str, Any]:
    """What an artifact holds, from config.json and file sizes only (nothing is loaded or hashed)."""
    folder = _artifact_dir(path)
    cfg = read_artifact_config(folder)
    mc = cfg["model_config"]
    by_dtype: dict[str, int] = {}
    for t in cfg["tensors"].values():
        n = 1
        for s in t["shape"]:
            n *= int(s)
        by_dtype[t["dtype"]] = by_dtype.get(t["dtype"], 0) + n
    return {
        "path": str(folder),
        "format_version": cfg[FORMAT_KEY],
        "written_by": cfg.get("quamba_edge_version"),
        "recipe": cfg.get("recipe"),
        "bits": cfg.get("bits"),
        "arch": mc.get("arch"),
        "d_model": mc.get("d_model"),
        "n_layer": mc.get("n_layer"),
        "vocab_size": mc.get("vocab_size"),
        "tensors": len(cfg["tensors"]),
        "elements_by_dtype": dict(sorted(by_dtype.items())),
        "weights_bytes": cfg["weights"].get("bytes"),
        "tokenizer_files": cfg.get("tokenizer_files", []),
        "source": cfg.get("source", {}),
    }


def format_artifact_info(info: Mapping[str, Any]) -> str:
    lines = [f"artifact    {info['path']}"]
    for k in ("recipe", "bits", "arch", "d_model", "n_layer", "vocab_size", "tensors"):
        lines.append(f"{k:<15} {info[k]}")
    lines.append(f"{'weights':<15} {info['weights_bytes'] / 2**20:,.2f} MiB (model.safetensors)")
    lines.append(f"{'elements':<15} " + ", ".join(f"{k} {v:,}" for k, v in info["elements_by_dtype"].items()))
    lines.append(f"{'tokenizer':<15} {', '.join(info['tokenizer_files']) or 'none'}")
    src = info.get("source") or {}
    if src.get("model"):
        lines.append(f"{'quantized from':<15} {src['model']}")
    lines.append(f"{'format':<15} version {info['format_version']} (quamba-edge {info['written_by']})")
    return "\n".join(lines)


def load_artifact(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Load an artifact directory as a ``QuantMambaLM`` (eval mode, on ``device``).

    Raises :class:`ArtifactError` (a ValueError) for another format version (naming both), truncated or
    corrupt weights (size / sha256), and any tensor whose name, dtype or shape differs between
    model.safetensors, config.json and the model built from the configs (naming the tensors);
    FileNotFoundError when there is no artifact at ``path``."""
    from safetensors.torch import load_file

    folder = _artifact_dir(path)
    cfg = read_artifact_config(folder)
    wpath = _verify_weights_file(folder, cfg)
    table = {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in cfg["tensors"].items()}
    _compare_tables(table, _header_table(wpath), "config.json", WEIGHTS_FILE, folder)

    QuantMambaLM, QuantConfig = _model_classes()
    try:
        model_config = MambaConfig.from_dict(cfg["model_config"])
        quant_config = QuantConfig.from_dict(cfg["quant_config"])
    except (TypeError, KeyError, ValueError) as e:
        raise ArtifactError(f"artifact {folder}: invalid model_config/quant_config in config.json: {e}") from e
    try:
        model = QuantMambaLM(model_config, quant_config)
    except ValueError as e:
        raise ArtifactError(f"artifact {folder}: cannot build the quantized model from config.json: {e}") from e
    expected = tensor_table(model.state_dict())
    _compare_tables(expected, table, f"the model built from its configs ({model_config.arch}, "
                    f"{cfg.get('recipe')} {cfg.get('bits')})", "config.json", folder)
    try:
        tensors = load_file(str(wpath), device="cpu")
    except Exception as e:
        raise ArtifactError(f"corrupt or truncated safetensors file {wpath}: {e}") from e
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()
