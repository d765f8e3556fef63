"""Lower a quantized artifact (or an FP model) to one ONNX graph with quamba custom ops.

The dynamo exporter traces the model's own forward: while exporting, every quantized op and the two
float SSM scans emit one custom node (``quamba_edge.ops.registry.emit``; records in quamba_edge/ops),
and the layer code takes no branch on the sequence length (the scan/SSD nodes handle L = 1 too), so
the graph is dynamic in batch and length. Everything else (reshapes, splits, residual adds, float
norms, float linears) is standard ONNX.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..models import MambaLM, ModelState
from ..ops import registry
from .info import (
    FORMAT_KEY,
    FORMAT_VERSION,
    META_FILE,
    ONNX_FILE,
    TOKENIZER_DIR,
    ExportError,
    info_from_dict,
    is_export_dir,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
OPSET = 18
EXTERNAL_DATA_BYTES = 1_800_000_000  # past this, weights go to model.onnx.data (protobuf's 2 GB limit)
_EXAMPLE_BATCH, _EXAMPLE_LEN = 2, 5  # neither 1 nor a multiple of any chunk size: nothing specialises


class _Graph(nn.Module):
    """``forward(input_ids, *states) -> (logits fp32, *states)``; states interleaved conv/ssm per layer."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        st = ModelState(list(states[0::2]), list(states[1::2]))
        logits, new = self.model(input_ids, st, return_state=True)
        out: list[torch.Tensor] = [logits.to(torch.float32)]
        for conv, ssm, c_in, s_in in zip(new.conv, new.ssm, st.conv, st.ssm):
            out += [conv.to(c_in.dtype), ssm.to(s_in.dtype)]
        return tuple(out)


def _load_source(source: Any) -> tuple[nn.Module, Path | None]:
    """(model, tokenizer folder or None) from a path / bundled name / model instance."""
    from ..quant.artifact import is_artifact, load_artifact
    from ..quant.qlm import QuantMambaLM
    from ..tokenizer import resolve_model_dir, tokenizer_dir

    if isinstance(source, (QuantMambaLM, MambaLM)):
        return source, None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"cannot export a {type(source).__name__}: pass an artifact directory, an FP model "
                        "directory, a bundled model name, a QuantMambaLM or a MambaLM")
    if is_export_dir(source):
        raise ExportError(f"{source} is already an ONNX export; pass the quantized artifact it came from")
    folder = resolve_model_dir(source)
    if is_artifact(folder):
        return load_artifact(folder), tokenizer_dir(folder)
    from ..models import load_model

    return load_model(folder), tokenizer_dir(folder)


def _precision(model: nn.Module) -> tuple[str, str | None, dict[str, Any] | None]:
    qc = getattr(model, "quant_config", None)
    if qc is None:
        return "fp16", None, None
    return qc.bits, qc.recipe, qc.to_dict()


def graph_state(model: nn.Module, batch: int, act: torch.dtype = torch.float32) -> ModelState:
    """A zero state (CPU) with the dtypes the exported graph of ``model`` takes: the quantized model's own
    (int8 / fp16 per recipe); for an FP model the conv state in the activation dtype and the SSM state
    in fp32 (the recurrence runs in fp32)."""
    if isinstance(model, MambaLM):
        return model.allocate_state(batch, device="cpu", dtype=act, ssm_dtype=torch.float32)
    return model.allocate_state(batch, device="cpu")


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def build_onnx(model: nn.Module, dtype: str = "fp32") -> tuple[Any, list[dict[str, Any]]]:
    """Trace ``model`` into an ONNX ModelProto; returns (proto, state specs)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    act = DTYPES[dtype]
    want = act if isinstance(model, MambaLM) else None
    params = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in params) or (want is not None and any(
            t.is_floating_point() and t.dtype != want for t in model.parameters())):
        model = copy.deepcopy(model).to("cpu")  # never move or cast the caller's model in place
        if want is not None:
            model = model.to(want)
    training = model.training
    try:
        return _trace(model.eval(), act)
    finally:
        model.train(training)


def _trace(model: nn.Module, act: torch.dtype) -> tuple[Any, list[dict[str, Any]]]:
    state = graph_state(model, _EXAMPLE_BATCH, act)
    ids = torch.zeros(_EXAMPLE_BATCH, _EXAMPLE_LEN, dtype=torch.int64)
    flat: list[torch.Tensor] = []
    specs = []
    for i, (conv, ssm) in enumerate(zip(state.conv, state.ssm)):
        flat += [conv, ssm]
        for kind, t in (("conv", conv), ("ssm", ssm)):
            specs.append({"input_name": f"{kind}_state.{i}", "output_name": f"{kind}_state_out.{i}",
                          "shape": [None, *t.shape[1:]], "dtype": _dtype_name(t)})
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=1 << 20)
    dyn = ({0: batch, 1: seq}, tuple({0: batch} for _ in flat))  # (input_ids, *states)
    graph = _Graph(model).eval()
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision notes
    torch_side = act if isinstance(model, MambaLM) else torch.float32  # the quantized reference is fp32
    with registry.export_dtype(act, torch_side), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, UserWarning))  # exporter-internal notices
        prog = torch.onnx.export(
            graph, (ids, *flat), dynamo=True, dynamic_shapes=dyn, opset_version=OPSET,
            input_names=["input_ids", *(s["input_name"] for s in specs)],
            output_names=["logits", *(s["output_name"] for s in specs)], verbose=False, report=False)
    return prog.model_proto, specs


def export_model(source: Any, out_dir: str | os.PathLike, *, dtype: str = "fp32", overwrite: bool = False,
                 tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """Export ``source`` (artifact dir, FP model dir, bundled name, QuantMambaLM or MambaLM) to
    ``out_dir`` (model.onnx + export.json + tokenizer/), atomically. ``dtype``: "fp32" (ONNX Runtime)
    or "fp16" (TensorRT). An existing ``out_dir`` is replaced only with ``overwrite`` and only when it
    is an empty directory or an earlier export."""
    import onnx

    from ..quant.artifact import TOKENIZER_FILES, write_dir_atomically

    target = Path(out_dir).expanduser().absolute()
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    model, tok = _load_source(source)
    tok = Path(tokenizer_dir) if tokenizer_dir is not None else tok
    precision, recipe, qconf = _precision(model)
    t0 = time.perf_counter()
    proto, specs = build_onnx(model, dtype)
    custom = sorted({n.op_type for n in proto.graph.node if n.domain == registry.DOMAIN})
    cfg = model.config
    meta = {
        FORMAT_KEY: FORMAT_VERSION, "quamba_edge_version": __version__,
        "op_registry_version": registry.REGISTRY_VERSION, "op_domain": registry.DOMAIN,
        "plugin_namespace": registry.PLUGIN_NAMESPACE, "custom_ops": custom,
        "arch": cfg.arch, "precision": precision, "recipe": recipe,
        "act_dtype": str(DTYPES[dtype]).replace("torch.", ""),
        "model_config": json.loads(json.dumps(cfg.to_dict(), default=str)), "quant_config": qconf,
        "vocab_size": cfg.vocab_size, "eos_token_id": cfg.eos_token_id, "states": specs,
        "onnx_file": ONNX_FILE, "tokenizer": TOKENIZER_DIR, "opset": OPSET,
        "export_seconds": round(time.perf_counter() - t0, 2),
    }
    info_from_dict(meta, target)  # the metadata we write must read back
    entry = proto.metadata_props.add()
    entry.key, entry.value = "quamba_edge", json.dumps(meta, sort_keys=True)
    external = proto.ByteSize() > EXTERNAL_DATA_BYTES

    def write(tmp: Path) -> None:
        onnx_path = tmp / ONNX_FILE
        onnx.save_model(proto, str(onnx_path), save_as_external_data=external, all_tensors_to_one_file=True,
                        location=ONNX_FILE + ".data")
        check_onnx(onnx_path)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        if tok is not None:
            (tmp / TOKENIZER_DIR).mkdir()
            for name in TOKENIZER_FILES:
                if (tok / name).is_file():
                    shutil.copyfile(tok / name, tmp / TOKENIZER_DIR / name)

    return write_dir_atomically(target, write, replaceable=is_export_dir, what="quamba-edge export")


def check_onnx(path: str | os.PathLike) -> None:
    """``onnx.checker`` full check and strict shape inference (custom nodes keep the types the exporter
    declared); raises ExportError."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        with tempfile.TemporaryDirectory() as d:
            onnx.shape_inference.infer_shapes_path(str(path), str(Path(d) / "inferred.onnx"), check_type=True,
                                                   strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"the exported graph {path} fails the ONNX checker: {e}") from e
