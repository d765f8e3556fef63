"""Load and save Mamba1/Mamba2 checkpoints in the Hugging Face and mamba_ssm formats.

HF format: ``config.json`` (``model_type`` "mamba"/"mamba2") + ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``); keys ``backbone.embeddings.weight``,
``backbone.layers.{i}.{norm,mixer}.*``, ``backbone.norm_f.weight``, ``lm_head.weight``.
mamba_ssm format: ``config.json`` (``d_model``, ``ssm_cfg``, ...) + ``pytorch_model.bin``; the same keys
but ``backbone.embedding.weight`` (singular).

Weights are read only through safetensors or ``torch.load(weights_only=True)``: never arbitrary pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Literal, Mapping

import torch
from torch import Tensor

from .._fs import apply_umask_permissions
from ..tokenizer import resolve_model_dir
from .config import MambaConfig
from .lm import MambaLM

__all__ = ["CheckpointError", "load_model", "save_model", "read_config", "read_checkpoint",
           "checkpoint_state_dict", "resolve_model_dir", "FP32_PARAMS"]

Format = Literal["hf", "mamba_ssm"]

# SSM parameters kept in fp32 whatever the model dtype (as in the mamba_ssm checkpoints): A = -exp(A_log)
# and the dt bias lose too much in fp16/bf16.
FP32_PARAMS = ("A_log", "D", "dt_bias")

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_LIST_LIMIT = 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unreadable, unsafe, or not matching its config."""


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError / OSError on a short or garbled file
        raise CheckpointError(f"corrupt or truncated safetensors file {path}: {e}") from e


def _read_torch_bin(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} is not a weights-only checkpoint (it pickles objects other than tensors and plain "
            "containers); refusing to unpickle it. Re-save it as a plain state dict or as safetensors. "
            f"Details: {str(e).splitlines()[0]}") from e
    except Exception as e:  # zip reader errors, EOF, ...
        raise CheckpointError(f"corrupt or truncated checkpoint file {path}: {e}") from e
    if isinstance(obj, Mapping) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model"):
        obj = next(iter(obj.values()))  # a wrapped state dict
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return dict(obj)


def _read_index(path: Path, reader) -> dict[str, Tensor]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"cannot read shard index {path}: {e}") from e
    tensors: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"shard {shard} listed in {path.name} is missing from {path.parent}")
        tensors.update(reader(shard_path))
    return tensors


def _read_config(path: str | os.PathLike) -> tuple[Path, MambaConfig, Format]:
    folder = resolve_model_dir(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a directory; pass the checkpoint directory")
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"no config.json in {folder}")
    try:
        raw = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise CheckpointError(f"cannot parse {cfg_file}: {e}") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{cfg_file} does not hold a JSON object")
    fmt: Format = "hf" if "model_type" in raw else "mamba_ssm"
    return folder, MambaConfig.from_dict(raw), fmt


def read_config(path: str | os.PathLike) -> MambaConfig:
    """The :class:`MambaConfig` of a checkpoint directory or bundled model name (no weights are read).
    Unsupported settings raise ValueError; a missing/unparsable config.json raises CheckpointError."""
    return _read_config(path)[1]


def read_checkpoint(path: str | os.PathLike) -> tuple[MambaConfig, dict[str, Tensor], Format]:
    """Config, raw tensors (checkpoint key names) and format of a checkpoint directory."""
    folder, config, fmt = _read_config(path)

    if (folder / "model.safetensors.index.json").is_file():
        tensors = _read_index(folder / "model.safetensors.index.json", _read_safetensors)
    elif (folder / "model.safetensors").is_file():
        tensors = _read_safetensors(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin.index.json").is_file():
        tensors = _read_index(folder / "pytorch_model.bin.index.json", _read_torch_bin)
    elif (folder / "pytorch_model.bin").is_file():
        tensors = _read_torch_bin(folder / "pytorch_model.bin")
    else:
        raise CheckpointError(f"no weights in {folder}: expected one of {', '.join(_WEIGHT_FILES)}")
    return config, tensors, fmt


def _internal_key(key: str) -> str:
    """Checkpoint key (either format) -> MambaLM parameter name."""
    if key.startswith("backbone."):
        key = key[len("backbone."):]
    if key.startswith("embeddings."):  # transformers' plural
        key = "embedding." + key[len("embeddings."):]
    return key


def _external_key(key: str, fmt: Format) -> str:
    """MambaLM parameter name -> checkpoint key in ``fmt``."""
    if key.startswith("lm_head."):
        return key
    if fmt == "hf" and key.startswith("embedding."):
        return "backbone.embeddings." + key[len("embedding."):]
    return "backbone." + key


def _fmt_list(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def _cast(name: str, t: Tensor, dtype: torch.dtype | None) -> Tensor:
    if dtype is None or not t.is_floating_point():
        return t
    if name.rsplit(".", 1)[-1] in FP32_PARAMS:
        return t.to(torch.float32)
    return t.to(dtype)


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    d = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(d, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return d


def load_model(path: str | os.PathLike, dtype: torch.dtype | str = torch.float32,
               device: torch.device | str = "cpu") -> MambaLM:
    """Build a :class:`MambaLM` from a checkpoint directory (HF or mamba_ssm format) or the name of a
    bundled model (``quamba_edge/assets/<name>/``).

    Floating-point weights are cast to ``dtype``, except ``A_log``, ``D`` and ``dt_bias`` which stay fp32.
    Raises :class:`CheckpointError` listing missing, unexpected and mis-shaped tensors, or naming a
    corrupt/truncated/unsafe file. A tied ``lm_head.weight`` may be absent.
    """
    dtype = _as_dtype(dtype)
    config, raw, fmt = read_checkpoint(path)
    tensors: dict[str, Tensor] = {}
    orig: dict[str, str] = {}  # internal name -> key in the file, for error messages
    for k, v in raw.items():
        ik = _internal_key(k)
        if ik in tensors:
            raise CheckpointError(f"checkpoint holds two tensors for {ik!r}: {orig[ik]!r} and {k!r}")
        tensors[ik], orig[ik] = v, k

    with torch.device("meta"):
        model = MambaLM(config)  # shapes only, no memory
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = config.tie_embeddings
    missing = sorted(_external_key(k, fmt) for k in expected
                     if k not in tensors and not (tied and k == "lm_head.weight"))
    unexpected = sorted(orig[k] for k in tensors if k not in expected)
    misshaped = sorted(f"{orig[k]} (expected {list(expected[k])}, got {list(tensors[k].shape)})"
                       for k in tensors if k in expected and tuple(tensors[k].shape) != expected[k])
    if missing or unexpected or misshaped:
        parts = [f"checkpoint {path} does not match its config ({config.arch}, d_model={config.d_model}, "
                 f"n_layer={config.n_layer}, vocab_size={config.vocab_size}):"]
        if missing:
            parts.append(f"missing tensors: {_fmt_list(missing)}")
        if unexpected:
            parts.append(f"unexpected tensors: {_fmt_list(unexpected)}")
        if misshaped:
            parts.append(f"mis-shaped tensors: {_fmt_list(misshaped)}")
        raise CheckpointError("\n  ".join(parts))
    if tied and "lm_head.weight" in tensors:
        head = tensors.pop("lm_head.weight")
        if not torch.equal(head.to(tensors["embedding.weight"].dtype), tensors["embedding.weight"]):
            raise CheckpointError(
                "lm_head.weight differs from the embedding but the config ties them; set "
                "tie_word_embeddings/tie_embeddings to false in config.json if the head is separate")

    state = {k: _cast(k, v, dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=False, assign=True)  # lm_head may be left for tie_weights
    model.tie_weights()
    bad = [n for n, p in model.named_parameters() if p.is_meta]
    if bad:  # cannot happen after the checks above; guards against a config/model mismatch
        raise CheckpointError(f"parameters left uninitialised: {_fmt_list(bad)}")
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------


def checkpoint_state_dict(model: MambaLM, format: Format = "hf",
                          dtype: torch.dtype | str | None = None) -> dict[str, Tensor]:
    """The model's tensors under the checkpoint key names of ``format`` (CPU, contiguous).

    HF omits a tied lm_head (safetensors cannot hold shared tensors; transformers re-ties it);
    mamba_ssm always has ``lm_head.weight`` (its loader is strict)."""
    if format not in ("hf", "mamba_ssm"):
        raise ValueError(f"format must be 'hf' or 'mamba_ssm', got {format!r}")
    dtype = _as_dtype(dtype)
    tied = model.config.tie_embeddings
    out: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and tied and format == "hf":
            continue
        key = _external_key(k, format)
        t = _cast(k, v.detach(), dtype).to("cpu").contiguous()
        if tied and k == "lm_head.weight":
            t = t.clone()  # a private copy, so the file does not depend on storage sharing
        out[key] = t
    return out


def _write_atomically(target: Path, write) -> None:
    """Write the files into a temp dir beside ``target``, then move them in.

    A new target directory appears in one rename. An existing one keeps its other files (tokenizer,
    README); each checkpoint file is replaced with an atomic rename and weight files of another layout
    left from an earlier save are removed so the loader cannot pick a stale one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        apply_umask_permissions(tmp)
        if not target.exists():
            os.replace(tmp, target)
            return
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a directory")
        written = {p.name for p in tmp.iterdir()}
        for p in tmp.iterdir():
            os.replace(p, target / p.name)
        for p in target.iterdir():
            stale = p.name in _WEIGHT_FILES or (p.name.startswith("model-") and p.suffix == ".safetensors")
            if stale and p.name not in written and p.is_file():
                p.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_model(model: MambaLM, path: str | os.PathLike, format: Format = "hf",
               dtype: torch.dtype | str | None = None) -> Path:
    """Write ``model`` as a checkpoint directory.

    ``format="hf"``: config.json (transformers MambaConfig/Mamba2Config) + model.safetensors.
    ``format="mamba_ssm"``: config.json (mamba_ssm MambaConfig) + pytorch_model.bin (``torch.save`` of a
    plain state dict). ``dtype`` casts floating weights (``A_log``, ``D``, ``dt_bias`` stay fp32).
    Returns the directory.
    """
    from safetensors.torch import save_file

    sd = checkpoint_state_dict(model, format, dtype)
    cfg = model.config
    if format == "hf":
        config = cfg.to_hf_dict()
        wdt = _as_dtype(dtype) or model.dtype
        config["dtype"] = str(wdt).replace("torch.", "")
    else:
        config = cfg.to_mamba_ssm_dict()

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if format == "hf":
            save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            torch.save(sd, str(tmp / "pytorch_model.bin"))

    target = Path(path).expanduser()
    _write_atomically(target, write)
    return target
