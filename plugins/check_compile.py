#!/usr/bin/env python3
"""CI compile check: build every plugins/kernels/*.cu with nvcc (compile only, no GPU needed).

    python plugins/check_compile.py [--arch 87 90] [--jobs N] [FILE.cu ...]

Each kernel is compiled once per architecture with ``nvcc -c -std=c++17 -O3`` (no fast-math) into a
temporary directory; all failures are printed with nvcc's full output and the exit code is 1. A missing
nvcc is a failure (exit 2), not a skip.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = HERE / "kernels"
INCLUDE = KERNELS / "include"


def find_nvcc() -> str | None:
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def compile_one(nvcc: str, src: Path, arch: str, outdir: Path) -> tuple[Path, str, int, str, float]:
    obj = outdir / f"{src.stem}.sm{arch}.o"
    cmd = [nvcc, "-c", "-std=c++17", "-O3", "-lineinfo", f"-I{INCLUDE}",
           f"-gencode=arch=compute_{arch},code=sm_{arch}", "-Xcompiler=-Wall",
           str(src), "-o", str(obj)]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    return src, arch, r.returncode, (" ".join(cmd) + "\n" + r.stdout + r.stderr).strip(), time.time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["87", "90"], help="SM architectures (default: 87 90)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("files", nargs="*", type=Path, help="kernels to compile (default: all)")
    args = ap.parse_args(argv)
    # `--arch 90 some.cu`: argparse's nargs="+" swallows the file names; give them back
    args.files += [Path(a) for a in args.arch if not a.isdigit()]
    args.arch = [a for a in args.arch if a.isdigit()] or ["87", "90"]

    nvcc = find_nvcc()
    if nvcc is None:
        print("check_compile: nvcc not found (set NVCC or put it on PATH)", file=sys.stderr)
        return 2
    srcs = [f.resolve() for f in args.files] or sorted(KERNELS.glob("*.cu"))
    if not srcs:
        print(f"check_compile: no .cu files under {KERNELS}", file=sys.stderr)
        return 1
    ver = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    print(f"check_compile: {nvcc} ({ver[-1] if ver else '?'}), {len(srcs)} kernel(s) x sm_{' sm_'.join(args.arch)}")
    failures = []
    with tempfile.TemporaryDirectory(prefix="quamba_cc_") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futs = [pool.submit(compile_one, nvcc, s, a, Path(tmp)) for s in srcs for a in args.arch]
        for f in futs:
            src, arch, rc, out, dt = f.result()
            print(f"  {'ok  ' if rc == 0 else 'FAIL'} {src.name} sm_{arch} ({dt:.1f} s)")
            if rc != 0:
                failures.append((src, arch, out))
    for src, arch, out in failures:
        print(f"\n===== {src.name} sm_{arch} failed =====\n{out}", file=sys.stderr)
    if failures:
        print(f"check_compile: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("check_compile: all kernels compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
