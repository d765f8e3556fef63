"""Provenance recorded in every results file: the git commit the command ran from and whether the tree
had uncommitted changes ("unknown" / None where there is no git checkout). ``QUAMBA_COMMIT`` (and
``QUAMBA_DIRTY=1``) override both: the GPU machine's copy of the tree carries a stale or no .git. No torch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def git_info(root: Path = ROOT) -> dict[str, Any]:
    if os.environ.get("QUAMBA_COMMIT"):
        return {"commit": os.environ["QUAMBA_COMMIT"], "dirty": os.environ.get("QUAMBA_DIRTY", "unknown") == "1"}

    def git(*a: str) -> str | None:
        try:
            r = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": head or "unknown", "dirty": bool(status) if status is not None else None}
