"""Loader of the CUDA kernels (plugins/kernels) through the thin torch extension (plugins/torch).

    from quamba_edge import kernels
    if kernels.available():
        ops = kernels.load()          # torch.ops.quamba_kernels
        ops.quant_selective_scan(<inputs as the reference op>, y, state_out)  # out-variant: returns None

The extension is JIT-built with ``torch.utils.cpp_extension.load`` from a source checkout (every
``plugins/torch/*.cpp`` and ``plugins/kernels/*.cu``) for the current GPU's architecture only, into a cache
directory (``$QUAMBA_KERNELS_BUILD_DIR``, else ``$XDG_CACHE_HOME/quamba_edge/kernels/<sm>``). This module
imports on CPU-only machines (torch CPU builds included): only ``load`` needs CUDA.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
EXT_NAME = "quamba_kernels_ext"

_loaded: Any = None


class KernelsUnavailable(RuntimeError):
    """The CUDA kernels cannot be built or loaded here (the message says why)."""


def _nvcc() -> str | None:
    cands = [os.environ.get("NVCC")]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            cands.append(os.path.join(os.environ[env], "bin", "nvcc"))
    cands += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def unavailable_reason() -> str | None:
    """None when ``load`` can work here, else a sentence saying what is missing."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (the kernels need a CUDA build of torch)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    if not (PLUGINS / "kernels").is_dir() or not any((PLUGINS / "torch").glob("*.cpp")):
        return f"no source checkout of the plugins at {PLUGINS} (install from a git checkout to build the kernels)"
    if _nvcc() is None:
        return "nvcc not found (set CUDA_HOME or put nvcc on PATH)"
    return None


def available() -> bool:
    """True when a CUDA build of torch, a CUDA device, nvcc and the plugin sources are all present."""
    return unavailable_reason() is None


def sources() -> list[Path]:
    """The extension's sources: every torch binding and every kernel (sorted; globbed, so new ops join)."""
    return sorted((PLUGINS / "torch").glob("*.cpp")) + sorted((PLUGINS / "kernels").glob("*.cu"))


def build_dir(arch: str) -> Path:
    env = os.environ.get("QUAMBA_KERNELS_BUILD_DIR")
    if env:
        d = Path(env)
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        d = cache / "quamba_edge" / "kernels" / f"sm{arch.replace('.', '')}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def load(verbose: bool = False) -> Any:
    """Build (first call, or after a source change) and load the extension; return ``torch.ops.quamba_kernels``."""
    global _loaded
    if _loaded is not None:
        return _loaded
    why = unavailable_reason()
    if why is not None:
        raise KernelsUnavailable(f"quamba_edge CUDA kernels unavailable: {why}")
    import torch
    from torch.utils import cpp_extension

    major, minor = torch.cuda.get_device_capability()
    arch = f"{major}.{minor}"
    nvcc = _nvcc()
    if not os.environ.get("CUDA_HOME") and nvcc:
        os.environ["CUDA_HOME"] = str(Path(nvcc).resolve().parents[1])
    old_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    try:
        cpp_extension.load(
            name=EXT_NAME,
            sources=[str(s) for s in sources()],
            extra_include_paths=[str(PLUGINS / "kernels" / "include")],
            extra_cflags=["-O3"],  # host C++ standard: torch's own (its headers may need C++20)
            extra_cuda_cflags=["-O3", "-std=c++17", "-lineinfo"],
            build_directory=str(build_dir(arch)),
            is_python_module=False,
            verbose=verbose,
        )
    except Exception as e:  # the compiler output is in the exception / on stderr
        raise KernelsUnavailable(f"building the quamba_edge CUDA kernels failed for sm_{major}{minor}: {e}") from e
    finally:
        if old_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old_arch
    _loaded = torch.ops.quamba_kernels
    return _loaded
