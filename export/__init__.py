"""ONNX export (installed as ``quamba_edge.export``).

``export_model(source, out_dir, dtype="fp32" | "fp16")`` lowers an artifact or FP model to
``out_dir/model.onnx`` + ``export.json`` + ``tokenizer/``; ``read_export_info(path)`` reads it back
without torch (the Jetson runtime uses only that half).
"""

from .info import ExportError, ExportInfo, StateSpec, is_export_dir, read_export_info

__all__ = ["ExportError", "ExportInfo", "StateSpec", "export_model", "build_onnx", "check_onnx",
           "graph_state", "is_export_dir", "read_export_info"]


def __getattr__(name: str):  # torch / onnx load only when exporting
    if name in ("export_model", "build_onnx", "check_onnx", "graph_state"):
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(name)
