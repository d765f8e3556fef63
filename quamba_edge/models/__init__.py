"""Floating-point reference Mamba1/Mamba2 language models and checkpoint I/O (HF and mamba_ssm formats)."""

from ..tokenizer import Tokenizer, load_tokenizer
from .config import MambaConfig
from .lm import Block, MambaLM, RMSNorm
from .loading import (CheckpointError, checkpoint_state_dict, load_model, read_checkpoint, read_config,
                      save_model)
from .mamba1 import Mamba1Mixer
from .mamba2 import GatedRMSNorm, Mamba2Mixer
from .state import ModelState

__all__ = [
    "MambaConfig",
    "MambaLM",
    "Block",
    "RMSNorm",
    "Mamba1Mixer",
    "Mamba2Mixer",
    "GatedRMSNorm",
    "ModelState",
    "load_model",
    "save_model",
    "read_config",
    "read_checkpoint",
    "checkpoint_state_dict",
    "CheckpointError",
    "Tokenizer",
    "load_tokenizer",
]
