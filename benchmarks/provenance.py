"""Provenance recorded in every results file (the benchmarks' name for ``quamba_edge._provenance``, which
``quamba-edge bench`` uses too): the git commit and dirty flag, ``QUAMBA_COMMIT`` / ``QUAMBA_DIRTY`` where the
tree's .git is stale or missing (the GPU machine's copy)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when quamba_edge is not installed
from quamba_edge._provenance import ROOT, git_info  # noqa: E402

__all__ = ["ROOT", "git_info"]
