"""What an export directory holds, read without torch or onnx (the Jetson runtime imports this).

Layout::

    DIR/model.onnx          the graph (weights inline; model.onnx.data beside it past 2 GB)
    DIR/export.json         the metadata below (also stored in the ONNX file's metadata_props)
    DIR/tokenizer/          tokenizer.json (+ configs)

Graph: inputs ``input_ids`` int64 ``[B, L]`` then, per layer i, ``conv_state.{i}`` and ``ssm_state.{i}``;
outputs ``logits`` float32 ``[B, L, V]`` then ``conv_state_out.{i}``, ``ssm_state_out.{i}`` (same order).
B and L are dynamic; one graph serves prefill (L > 1) and decode (L = 1).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_KEY = "quamba_edge_export"
FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
META_FILE = "export.json"
TOKENIZER_DIR = "tokenizer"
PRECISIONS = ("fp16", "w8a8", "w4a8", "w4a16")


class ExportError(ValueError):
    """An export directory or ONNX file that is missing, corrupt, or from another format / registry."""


@dataclass(frozen=True)
class StateSpec:
    input_name: str
    output_name: str
    shape: tuple[int | None, ...]  # batch dim = None
    dtype: str  # numpy dtype name: "int8" | "float16" | "float32"


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    onnx_path: Path
    arch: str
    precision: str
    recipe: str | None
    act_dtype: str  # "float32" (ONNX Runtime) | "float16" (TensorRT)
    model_config: dict[str, Any]
    quant_config: dict[str, Any] | None
    op_registry_version: int
    vocab_size: int
    eos_token_id: int | None
    tokenizer_dir: Path
    states: list[StateSpec] = field(default_factory=list)
    custom_ops: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", *(s.input_name for s in self.states)]

    @property
    def output_names(self) -> list[str]:
        return ["logits", *(s.output_name for s in self.states)]


def export_dir_of(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    return p.parent if p.is_file() else p


def is_export_dir(path: str | os.PathLike) -> bool:
    p = export_dir_of(path)
    f = p / META_FILE
    if not f.is_file():
        return False
    try:
        return FORMAT_KEY in json.loads(f.read_text())
    except (OSError, ValueError):
        return False


def info_from_dict(meta: dict[str, Any], folder: Path) -> ExportInfo:
    """Validate the metadata dict (export.json) and build an :class:`ExportInfo`."""
    if not isinstance(meta, dict) or FORMAT_KEY not in meta:
        raise ExportError(f"{folder}: {META_FILE} is not quamba-edge export metadata (no {FORMAT_KEY!r} key)")
    if meta[FORMAT_KEY] != FORMAT_VERSION:
        raise ExportError(f"{folder}: export format version {meta[FORMAT_KEY]} is not the supported "
                          f"version {FORMAT_VERSION}; re-export with this quamba-edge version")
    try:
        states = [StateSpec(s["input_name"], s["output_name"], tuple(s["shape"]), s["dtype"])
                  for s in meta["states"]]
        return ExportInfo(
            path=folder, onnx_path=folder / meta.get("onnx_file", ONNX_FILE), arch=meta["arch"],
            precision=meta["precision"], recipe=meta.get("recipe"), act_dtype=meta["act_dtype"],
            model_config=meta["model_config"], quant_config=meta.get("quant_config"),
            op_registry_version=int(meta["op_registry_version"]), vocab_size=int(meta["vocab_size"]),
            eos_token_id=meta.get("eos_token_id"), tokenizer_dir=folder / meta.get("tokenizer", TOKENIZER_DIR),
            states=states, custom_ops=list(meta.get("custom_ops", [])), raw=meta)
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{folder}: incomplete export metadata ({type(e).__name__}: {e}); re-export") from e


def read_export_info(path: str | os.PathLike) -> ExportInfo:
    """Read ``DIR/export.json`` (``path`` = the export dir or its model.onnx) and check it."""
    folder = export_dir_of(path)
    f = folder / META_FILE
    if not folder.is_dir():
        raise ExportError(f"{folder} does not exist; export a model with `quamba-edge export ARTIFACT --out DIR`")
    if not f.is_file():
        raise ExportError(f"{folder} is not a quamba-edge export (no {META_FILE}); "
                          "export a model with `quamba-edge export ARTIFACT --out DIR`")
    try:
        meta = json.loads(f.read_text())
    except ValueError as e:
        raise ExportError(f"{f} is not valid JSON ({e}); re-export the model") from e
    info = info_from_dict(meta, folder)
    if not info.onnx_path.is_file():
        raise ExportError(f"{folder}: {info.onnx_path.name} is missing; re-export the model")
    return info
