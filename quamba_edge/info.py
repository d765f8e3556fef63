"""`quamba-edge info`: what a checkpoint is and how big it gets at each precision.

Counts come from instantiating the model on torch's meta device (no weights are read, so `info` is
instant even for an 8B checkpoint), which gives exact parameter counts for any config.
"""

from __future__ import annotations

from typing import Any

import torch

from quamba_edge.models import MambaLM
from quamba_edge.models.loading import read_config, resolve_model_dir

GROUP_SIZE = 128  # W4 group size along the input dimension (Quamba2 recipe)


def _weight_bytes(model: MambaLM) -> dict[str, float]:
    """Bytes of every parameter at fp16, and with matrices (linear + embedding) at 8 and 4 bits.

    Vectors (norms, A_log, D, biases, conv) stay fp16 in every recipe's accounting here; int8 matrices
    carry one fp32 scale each (negligible), int4 matrices one fp16 scale per group of 128 inputs.
    """
    seen: set[int] = set()
    matrix, other, groups = 0, 0, 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:  # a tied lm_head is stored once
            continue
        seen.add(id(p))
        is_matrix = p.dim() == 2 and "conv1d" not in name
        if is_matrix:
            matrix += p.numel()
            rows, cols = p.shape
            groups += rows * -(-cols // GROUP_SIZE)
        else:
            other += p.numel()
    return {
        "fp16": 2.0 * (matrix + other),
        "int8": 1.0 * matrix + 2.0 * other,
        "int4": 0.5 * matrix + 2.0 * groups + 2.0 * other,
    }


def describe_model(path: str) -> dict[str, Any]:
    """Architecture, sizes, parameter count, weight bytes and per-sequence state bytes of a checkpoint."""
    model_dir = resolve_model_dir(path)
    cfg = read_config(model_dir)
    with torch.device("meta"):
        model = MambaLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())  # parameters() de-duplicates tied weights
    state = model.allocate_state(batch_size=1, device="meta", dtype=torch.float16)
    state_elems = sum(t.numel() for t in state.conv) + sum(t.numel() for t in state.ssm)
    arch: dict[str, Any] = {
        "arch": cfg.arch,
        "d_model": cfg.d_model,
        "n_layer": cfg.n_layer,
        "d_inner": cfg.d_inner,
        "d_state": cfg.d_state,
        "d_conv": cfg.d_conv,
        "vocab_size": cfg.vocab_size,
        "tie_embeddings": cfg.tie_embeddings,
    }
    if cfg.arch == "mamba1":
        arch["dt_rank"] = cfg.dt_rank
    else:
        arch.update(headdim=cfg.headdim, nheads=cfg.nheads, ngroups=cfg.ngroups, chunk_size=cfg.chunk_size)
    return {
        "path": str(model_dir),
        "architecture": arch,
        "parameters": n_params,
        "weight_bytes": _weight_bytes(model),
        "state_bytes_per_sequence": {"fp16": 2 * state_elems, "int8": state_elems},
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def format_info(info: dict[str, Any]) -> str:
    a = info["architecture"]
    lines = [f"model       {info['path']}"]
    lines += [f"{k:<15} {v}" for k, v in a.items()]
    lines.append(f"{'parameters':<15} {info['parameters']:,} ({info['parameters'] / 1e6:.2f} M)")
    wb = info["weight_bytes"]
    lines.append(f"{'weights fp16':<15} {_mb(wb['fp16'])}")
    lines.append(f"{'weights 8-bit':<15} {_mb(wb['int8'])}  (matrices int8, vectors fp16)")
    lines.append(f"{'weights 4-bit':<15} {_mb(wb['int4'])}  (matrices int4 + fp16 scale per 128, vectors fp16)")
    sb = info["state_bytes_per_sequence"]
    lines.append(f"{'state / seq':<15} {_mb(sb['fp16'])} fp16, {_mb(sb['int8'])} int8 (conv + SSM, all layers)")
    return "\n".join(lines)
