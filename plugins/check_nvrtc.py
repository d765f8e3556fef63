#!/usr/bin/env python3
"""Device-code check of every kernel with the CUDA releases of the Jetson targets, through their NVRTC.

    python plugins/check_nvrtc.py [--cuda 12.6 13.2] [--arch 87 90] [FILE.cu ...]

Why: the kernels must build with CUDA 12.6 (JetPack 6.2) and 13.2 (JetPack 7.2), but only one nvcc (13.0)
exists here, and PyPI's CUDA 12 compiler wheel has no nvcc driver. PyPI does carry each release's NVRTC
(``nvidia-cuda-nvrtc-cu12`` / ``nvidia-cuda-nvrtc``): the same C++ front end and code generator as that
release's nvcc, minus the host compiler. So each ``.cu`` is compiled whole by that NVRTC to an sm_XX cubin:

- ``-default-device`` makes the host launch code device code, so its ``<<<...>>>`` launches (device-side
  launches under ``-rdc``) instantiate every kernel template the dispatch uses: all kernels are compiled;
- host-only runtime calls that the device runtime lacks (``cudaFuncSetAttribute``) get device stubs from a
  pre-included header written here; nothing of them reaches a product build;
- a file whose cubin holds no kernel (no ``.nv.constant0.<kernel>`` parameter bank) fails: nothing compiled
  proves nothing.

The host side is plain C++17 plus long-stable runtime API calls (checked with nvcc by check_compile.py).
Wheels are downloaded once with pip into ``$QUAMBA_NVRTC_CACHE`` (default ~/.cache/quamba_edge/nvrtc).
Compile-only: no GPU or driver is needed. Exit code 1 on any failure, 2 when a release cannot be fetched.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = HERE / "kernels"
INCLUDE = KERNELS / "include"

# release -> (NVRTC wheel, runtime-headers wheel, libnvrtc path and include dir inside the unpacked wheels)
RELEASES = {
    "12.6": ("nvidia-cuda-nvrtc-cu12==12.6.77", "nvidia-cuda-runtime-cu12==12.6.77",
             "nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "nvidia/cuda_runtime/include"),
    "13.2": ("nvidia-cuda-nvrtc==13.2.51", "nvidia-cuda-runtime==13.2.51",
             "nvidia/cu13/lib/libnvrtc.so.13", "nvidia/cu13/include"),
}
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux1_x86_64"]

# NVRTC has no C / C++ library headers: what the kernel files use of them, for the device-side check only
# (the host code's own use of these headers is compiled by nvcc in check_compile.py).
STDINT_H = """#pragma once
typedef signed char int8_t; typedef unsigned char uint8_t; typedef short int16_t; typedef unsigned short uint16_t;
typedef int int32_t; typedef unsigned int uint32_t; typedef long long int64_t; typedef unsigned long long uint64_t;
typedef long long intptr_t; typedef unsigned long long uintptr_t;
#define INT8_MIN (-128)
#define INT8_MAX 127
#define INT32_MIN (-2147483647 - 1)
#define INT32_MAX 2147483647
#define INT64_MAX 9223372036854775807LL
#define UINT32_MAX 4294967295U
"""
ATOMIC_H = """#pragma once
// the host-side per-device caches of the launch code (std::atomic<int> load / store)
namespace std {
enum memory_order { memory_order_relaxed, memory_order_acquire, memory_order_release, memory_order_seq_cst };
template <class T> struct atomic {
  T v;
  T load(memory_order = memory_order_seq_cst) const { return v; }
  void store(T x, memory_order = memory_order_seq_cst) { v = x; }
};
}  // namespace std
"""
HOST_STUBS_H = """#pragma once
#include <cuda_runtime.h>
// Host-only runtime calls, as device stubs, so that the launch code type-checks under -default-device.
template <class T>
__device__ inline cudaError_t cudaFuncSetAttribute(T*, cudaFuncAttribute, int) { return cudaSuccess; }
// declared by the device runtime header, defined only in libcudadevrt (not linked here)
template <typename T>
static __inline__ __device__ cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, T, int, size_t) {
  *n = 1;
  return cudaSuccess;
}
"""


def fetch(release: str, cache: Path) -> tuple[Path, Path]:
    """The release's libnvrtc and CUDA include dir, downloading + unpacking the wheels on first use."""
    nvrtc_spec, rt_spec, lib_rel, inc_rel = RELEASES[release]
    root = cache / release
    lib, inc = root / lib_rel, root / inc_rel
    if lib.is_file() and inc.is_dir():
        return lib, inc
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
           "--python-version", "3.11", "--implementation", "cp"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    r = subprocess.run(cmd + [nvrtc_spec, rt_spec], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"pip could not fetch {nvrtc_spec} / {rt_spec}:\n{r.stdout}{r.stderr}")
    for whl in wheels.glob("*.whl"):
        with zipfile.ZipFile(whl) as z:
            z.extractall(root)
    if not (lib.is_file() and inc.is_dir()):
        raise RuntimeError(f"{lib_rel} or {inc_rel} missing from the {release} wheels in {root}")
    return lib, inc


class Nvrtc:
    def __init__(self, lib: Path) -> None:
        self.lib = ctypes.CDLL(str(lib))
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"

    def _text(self, prog: ctypes.c_void_p, size_fn: str, get_fn: str) -> str:
        n = ctypes.c_size_t()
        if getattr(self.lib, size_fn)(prog, ctypes.byref(n)) != 0:
            return ""
        buf = ctypes.create_string_buffer(n.value)
        getattr(self.lib, get_fn)(prog, buf)
        return buf.raw[: n.value].decode(errors="replace").rstrip("\0")

    def compile(self, src: Path, opts: list[str]) -> tuple[bool, str, int, int]:
        """(ok, log, cubin bytes, kernels in the cubin)."""
        prog = ctypes.c_void_p()
        self.lib.nvrtcCreateProgram(ctypes.byref(prog), src.read_bytes(), str(src).encode(), 0, None, None)
        try:
            arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            rc = self.lib.nvrtcCompileProgram(prog, len(opts), arr)
            log = self._text(prog, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog")
            if rc != 0:
                return False, log, 0, 0
            n = ctypes.c_size_t()
            self.lib.nvrtcGetCUBINSize(prog, ctypes.byref(n))
            cubin = ctypes.create_string_buffer(n.value)
            self.lib.nvrtcGetCUBIN(prog, cubin)
            # every __global__ function has its own parameter bank section, named after it
            kernels = set(re.findall(rb"\.nv\.constant0\.([^\0]+)\0", cubin.raw))
            return True, log, n.value, len(kernels)
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuda", nargs="+", default=sorted(RELEASES), choices=sorted(RELEASES))
    ap.add_argument("--arch", nargs="+", default=["87"], help="SM architectures (default: 87, the Orin)")
    ap.add_argument("--cache", type=Path,
                    default=Path(os.environ.get("QUAMBA_NVRTC_CACHE", Path.home() / ".cache/quamba_edge/nvrtc")))
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("files", nargs="*", type=Path, help="kernels to compile (default: all)")
    args = ap.parse_args(argv)
    args.files += [Path(a) for a in args.arch if not a.isdigit()]
    args.arch = [a for a in args.arch if a.isdigit()] or ["87"]
    srcs = [f.resolve() for f in args.files] or sorted(KERNELS.glob("*.cu"))

    failures = 0
    with tempfile.TemporaryDirectory(prefix="quamba_nvrtc_") as tmp:
        shim = Path(tmp)
        (shim / "stdint.h").write_text(STDINT_H)
        (shim / "atomic").write_text(ATOMIC_H)
        (shim / "quamba_nvrtc_host_stubs.h").write_text(HOST_STUBS_H)
        for release in args.cuda:
            try:
                lib, inc = fetch(release, args.cache)
            except RuntimeError as e:
                print(f"check_nvrtc: CUDA {release}: {e}", file=sys.stderr)
                return 2
            nvrtc = Nvrtc(lib)
            print(f"check_nvrtc: CUDA {release} (NVRTC {nvrtc.version}, {lib}), {len(srcs)} kernel file(s) x "
                  f"sm_{' sm_'.join(args.arch)}")
            opts = ["-std=c++17", "-default-device", "-rdc=true",
                    "-diag-suppress=1097",  # __attribute__((visibility)) of the C ABI: host-only
                    f"-I{shim}", f"-I{inc}", f"-I{INCLUDE}", "-include", "quamba_nvrtc_host_stubs.h"]

            def one(job: tuple[Path, str], nvrtc: Nvrtc = nvrtc, opts: list[str] = opts):
                t0 = time.time()
                return (*job, *nvrtc.compile(job[0], [f"-arch=sm_{job[1]}", *opts]), time.time() - t0)

            # NVRTC programs are independent and ctypes drops the GIL during the call: threads run in parallel
            with ThreadPoolExecutor(args.jobs) as pool:
                for src, arch, ok, log, cubin, kernels, dt in pool.map(one, [(s, a) for s in srcs for a in args.arch]):
                    ok = ok and cubin > 0 and kernels > 0
                    print(f"  {'ok  ' if ok else 'FAIL'} {src.name} sm_{arch}: {kernels} kernel(s), "
                          f"cubin {cubin} B ({dt:.1f} s)", flush=True)
                    if not ok:
                        failures += 1
                        print(f"===== {src.name} sm_{arch} with CUDA {release} =====\n{log or 'no kernel compiled'}",
                              file=sys.stderr)
    if failures:
        print(f"check_nvrtc: {failures} failure(s)", file=sys.stderr)
        return 1
    print("check_nvrtc: all kernels compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
