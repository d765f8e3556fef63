"""Builds (once per source hash) and loads the CPU emulator of the chunked SSD kernel (emu.cpp beside this file)
for tests/test_quant_ssd_chunked_emu.py and tests/test_ssd_chunked_emu.py."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EMU = REPO / "tests" / "ssd_chunked_emu" / "emu.cpp"
KERNELS = [REPO / "plugins" / "kernels" / "quant_ssd.cu", REPO / "plugins" / "kernels" / "ssd.cu"]
INCLUDE = REPO / "plugins" / "kernels" / "include"


def _cuda_include() -> Path | None:
    for d in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if d and (Path(d) / "include" / "cuda_fp16.h").is_file():
            return Path(d) / "include"
    return None


def load_emulator() -> ctypes.CDLL:
    """The emulator library (pytest.skip without g++ or the CUDA headers)."""
    gxx, inc = shutil.which("g++"), _cuda_include()
    if gxx is None or inc is None:
        pytest.skip("needs g++ and the CUDA headers (cuda_fp16.h)")
    src = EMU.read_bytes() + b"".join(k.read_bytes() for k in KERNELS)
    src += b"".join(p.read_bytes() for p in sorted(INCLUDE.rglob("*.*h")))
    out = REPO / "build" / "ssd_chunked_emu" / f"emu_{hashlib.sha256(src).hexdigest()[:16]}.so"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        cmd = [gxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off", "-Wall", "-Wno-unknown-pragmas",
               f"-I{inc}", f"-I{INCLUDE}", str(EMU), "-o", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        tmp.replace(out)
    lib = ctypes.CDLL(str(out))
    lib.emu_error.restype = ctypes.c_char_p
    return lib


def check_layout(lib_fn, struct: type[ctypes.Structure]) -> None:
    """The ctypes mirror's field offsets and size equal the C struct's (lib_fn: an emu_*_params_layout)."""
    buf = (ctypes.c_longlong * 64)()
    n = lib_fn(buf, 64)
    offs = [getattr(struct, f).offset for f, _ in struct._fields_] + [ctypes.sizeof(struct)]
    assert list(buf[:n]) == offs, f"the ctypes mirror {struct.__name__} is stale"
