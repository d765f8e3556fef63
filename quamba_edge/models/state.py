"""Per-layer recurrent state of a Mamba LM (docs/CONTRACTS.md).

Mamba1 layer: ``conv [B, E, K-1]``, ``ssm [B, E, N]``. Mamba2 layer: ``conv [B, E+2GN, K-1]``,
``ssm [B, H, P, N]``. The conv state holds the last K-1 conv inputs (pre-activation), oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class ModelState:
    """Recurrent state of every layer: ``conv[i]`` and ``ssm[i]`` belong to layer i. Batch is dim 0."""

    conv: list[Tensor] = field(default_factory=list)
    ssm: list[Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.conv) != len(self.ssm):
            raise ValueError(f"conv has {len(self.conv)} layers but ssm has {len(self.ssm)}")

    @property
    def num_layers(self) -> int:
        return len(self.conv)

    @property
    def batch_size(self) -> int:
        return self.conv[0].shape[0] if self.conv else 0

    @property
    def device(self) -> torch.device | None:
        return self.conv[0].device if self.conv else None

    def nbytes(self) -> int:
        """Bytes held by all state tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.conv, *self.ssm))

    def clone(self) -> "ModelState":
        return ModelState([t.clone() for t in self.conv], [t.clone() for t in self.ssm])

    def detach(self) -> "ModelState":
        return ModelState([t.detach() for t in self.conv], [t.detach() for t in self.ssm])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
           ssm_dtype: torch.dtype | None = None) -> "ModelState":
        """Move/cast. ``dtype`` applies to the conv states and, unless ``ssm_dtype`` is given, to the
        SSM states too."""
        ssm_dtype = ssm_dtype or dtype
        return ModelState([t.to(device=device, dtype=dtype) for t in self.conv],
                          [t.to(device=device, dtype=ssm_dtype) for t in self.ssm])

    def zero_(self) -> "ModelState":
        for t in (*self.conv, *self.ssm):
            t.zero_()
        return self

    # ---- batch helpers ---------------------------------------------------------------------------

    def select(self, index: Tensor | Sequence[int] | slice | int) -> "ModelState":
        """Rows of the batch (keeps the batch dim for an int)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return ModelState([t[index] for t in self.conv], [t[index] for t in self.ssm])

    def split(self) -> list["ModelState"]:
        """One state per batch row."""
        return [self.select(i) for i in range(self.batch_size)]

    def repeat_interleave(self, repeats: int) -> "ModelState":
        """Each row repeated ``repeats`` times (e.g. several samples from one prompt)."""
        return ModelState([t.repeat_interleave(repeats, dim=0) for t in self.conv],
                          [t.repeat_interleave(repeats, dim=0) for t in self.ssm])

    @staticmethod
    def concat(states: Sequence["ModelState"]) -> "ModelState":
        """Stack states of several batches along the batch dim."""
        if not states:
            raise ValueError("concat needs at least one state")
        n = states[0].num_layers
        if any(s.num_layers != n for s in states):
            raise ValueError("all states must have the same number of layers")
        return ModelState([torch.cat([s.conv[i] for s in states]) for i in range(n)],
                          [torch.cat([s.ssm[i] for s in states]) for i in range(n)])
