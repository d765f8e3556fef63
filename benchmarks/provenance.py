"""Provenance recorded in every results file: the git commit the command ran from (and whether the
tree had uncommitted changes). Returns "unknown" where there is no git checkout (the GPU machine gets a
copy of the working tree without .git)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def git_info(root: Path = ROOT) -> dict[str, Any]:
    def git(*a: str) -> str | None:
        try:
            r = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": head or "unknown", "dirty": bool(status) if status is not None else None}
