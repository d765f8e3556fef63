"""Small filesystem helpers shared by the checkpoint and artifact writers (no torch)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def apply_umask_permissions(folder: Path) -> None:
    """Give ``folder`` and the files in it the permissions a plain ``open``/``mkdir`` would have.

    Atomic writers build their output in ``tempfile.mkdtemp`` (mode 0700) and safetensors writes its
    files 0600; renamed into place unchanged, a model exported by one user would be unreadable by the
    account that runs the app on the device. Called on the temp folder just before the rename.
    """
    mask = os.umask(0)
    os.umask(mask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)
    folder.chmod(0o777 & ~mask)
