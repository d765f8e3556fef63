#!/usr/bin/env python3
"""CI check of the TensorRT plugins: compile and link them against TensorRT's own public headers.

    python3 plugins/check_trt_compile.py [--headers DIR ...] [--arch 87] [--out build/trt-check] [--jobs N]

No GPU and no TensorRT library is needed. For each TensorRT header set (default: TensorRT 10.3 and 10.16, the
TensorRT of JetPack 6.2 and 7.2, from ../shared/third_party next to the checkout, or the include folders
listed in $QUAMBA_TRT_HEADERS, separated by ':'), this

1. compiles every plugins/trt/*.cpp with g++ (C++17, -Wall -Wextra -Werror; TensorRT and CUDA headers as
   system headers) and the plugins' own .cu files plus every kernel (plugins/kernels/*.cu) with nvcc for one
   architecture (sm_87 by default: compiled once, shared by the header sets);
2. links libquamba_trt_plugins.so with -Wl,--no-undefined against libcudart only (the dynamically loaded
   library needs nothing from libnvinfer) and the export map plugins/trt/exports.map;
3. checks with `nm -D` that it exports exactly getCreators and setLoggerFinder, and with `readelf -d` that
   it needs no TensorRT library;
4. builds the plugin harness (plugins/trt/harness, exports qth_run / qth_list) the same way, loads it with
   ctypes and lists the library's creators: each op of plugins/trt/generated/fields.h must be there with its
   version, namespace "quamba" and fields;
5. links the plugins once more over a recording stand-in of the kernels (libquamba_trt_plugins_fake.so, no
   CUDA at all), which tests/test_trt_plugins_cpu.py uses to check what enqueue hands each kernel.

Objects are cached under --out by a hash of their command line and inputs, so a re-run (or the CPU test
tests/test_trt_plugins_cpu.py, which reuses them) only recompiles what changed. A missing header set, nvcc or
libcudart is a failure (exit 2), not a skip.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KERNELS = HERE / "kernels"
TRT = HERE / "trt"
HARNESS = TRT / "harness"
FIELDS_H = TRT / "generated" / "fields.h"
DEFAULT_HEADER_SETS = ("tensorrt-10.3", "tensorrt-10.16")
PLUGIN_EXPORTS = {"getCreators", "setLoggerFinder"}
HARNESS_EXPORTS = {"qth_run", "qth_list"}
CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
            "-Wall", "-Wextra", "-Werror"]


class CheckError(RuntimeError):
    pass


# ---- locating the tools ---------------------------------------------------------------------------------------


def find_nvcc() -> str | None:
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def cuda_dirs(nvcc: str) -> tuple[Path, Path]:
    """(include dir with cuda_runtime.h, lib dir with libcudart.so) of the toolkit nvcc belongs to."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), str(Path(os.path.realpath(nvcc)).parents[1]),
             "/usr/local/cuda"]
    out = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                         capture_output=True, text=True)
    m = re.search(r"TOP=(\S+)", out.stdout + out.stderr)  # a wrapper script's real toolkit
    if m:
        roots.insert(0, m.group(1))
    for r in roots:
        if not r:
            continue
        root = Path(r)
        inc = root / "include"
        if not (inc / "cuda_runtime.h").is_file():
            continue
        for lib in [root / "lib64", root / "lib", *sorted(root.glob("targets/*/lib"))]:
            if (lib / "libcudart.so").exists():
                return inc, lib
    raise CheckError(f"no CUDA toolkit with include/cuda_runtime.h and libcudart.so found for {nvcc} "
                     "(set CUDA_HOME)")


def header_sets(given: list[str] | None) -> list[Path]:
    """The TensorRT include folders to check against; a clear error when none is there."""
    if given:
        dirs = [Path(d) for d in given]
    elif os.environ.get("QUAMBA_TRT_HEADERS"):
        dirs = [Path(d) for d in os.environ["QUAMBA_TRT_HEADERS"].split(os.pathsep) if d]
    else:
        dirs = [REPO.parent / "shared" / "third_party" / s / "include" for s in DEFAULT_HEADER_SETS]
    missing = [d for d in dirs if not (d / "NvInferRuntime.h").is_file()]
    if missing:
        raise CheckError(
            "TensorRT headers not found: " + ", ".join(str(d) for d in missing) + ".\n"
            "The plugins are checked against TensorRT's public headers (Apache-2.0; ../shared/third_party next to "
            "the checkout holds those of TensorRT 10.3 and 10.16). Point QUAMBA_TRT_HEADERS at one or more include "
            "folders (':'-separated), e.g. QUAMBA_TRT_HEADERS=/usr/include/aarch64-linux-gnu on a Jetson.")
    return dirs


def trt_version(include: Path) -> str:
    text = (include / "NvInferVersion.h").read_text(errors="replace")
    nums = {}
    for key in ("MAJOR", "MINOR", "PATCH"):
        m = (re.search(rf"#define\s+TRT_{key}_ENTERPRISE\s+(\d+)", text)
             or re.search(rf"#define\s+NV_TENSORRT_{key}\s+(\d+)", text))
        nums[key] = m.group(1) if m else "?"
    return f"{nums['MAJOR']}.{nums['MINOR']}.{nums['PATCH']}"


# ---- cached compilation ---------------------------------------------------------------------------------------


def _digest(cmd: list[str], inputs: list[Path]) -> str:
    h = hashlib.sha256("\0".join(cmd).encode())
    for p in inputs:
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _headers_of(dirs: list[Path]) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*") if p.suffix in (".h", ".cuh", ".hpp") and p.is_file())


def run_cached(cmd: list[str], output: Path, inputs: list[Path]) -> tuple[bool, str, float]:
    """Run `cmd` (which writes `output`) unless a stamp says the same command already built it from the same
    inputs. Returns (ok, log, seconds)."""
    stamp = output.with_name(output.name + ".stamp")
    key = _digest(cmd, inputs)
    if output.is_file() and stamp.is_file() and stamp.read_text() == key:
        return True, "(cached)", 0.0
    output.parent.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode == 0:
        stamp.write_text(key)
    return r.returncode == 0, (" ".join(cmd) + "\n" + r.stdout + r.stderr).strip(), time.time() - t0


@dataclass
class Built:
    label: str  # TensorRT version of the header set
    include: Path
    plugins: Path  # libquamba_trt_plugins.so
    harness: Path  # libquamba_trt_harness.so
    fake: Path  # libquamba_trt_plugins_fake.so: the plugins over recording kernels (CPU tests)


def _parallel(jobs: int, tasks: list[tuple[str, list[str], Path, list[Path]]], say) -> None:
    failures = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futs = [(name, pool.submit(run_cached, cmd, out, ins)) for name, cmd, out, ins in tasks]
        for name, f in futs:
            ok, log, dt = f.result()
            say(f"  {'ok  ' if ok else 'FAIL'} {name}" + ("" if log != "(cached)" else " (cached)")
                + (f" ({dt:.1f} s)" if dt else ""))
            if not ok:
                failures.append((name, log))
    if failures:
        raise CheckError("\n".join(f"===== {n} failed =====\n{log}" for n, log in failures))


def build(includes: list[Path], out: Path, arch: str = "87", jobs: int = 2, say=print) -> list[Built]:
    """Compile the kernels once for `arch` and, per TensorRT include folder, the plugin library and the harness."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise CheckError("nvcc not found (set NVCC or put it on PATH): the kernels are linked into the plugin library")
    cuda_inc, cuda_lib = cuda_dirs(nvcc)
    kernel_headers = _headers_of([KERNELS / "include"])
    trt_own_headers = _headers_of([TRT])
    out = out.resolve()

    # 1. device code: every kernel + the plugins' own .cu files, once for this architecture
    objs_dir = out / f"cuda-sm{arch}"
    cu_sources = sorted(KERNELS.glob("*.cu")) + sorted(TRT.glob("*.cu"))
    cu_tasks = []
    for src in cu_sources:
        obj = objs_dir / f"{src.parent.name}_{src.stem}.o"
        cmd = [nvcc, "-c", "-std=c++17", "-O3", f"-I{KERNELS / 'include'}", f"-gencode=arch=compute_{arch},code=sm_{arch}",
               "-Xcompiler=-fPIC,-fvisibility=hidden,-Wall", str(src), "-o", str(obj)]
        cu_tasks.append((f"{src.relative_to(HERE)} sm_{arch} (nvcc)", cmd, obj, [src, *kernel_headers, *trt_own_headers]))
    say(f"check_trt_compile: nvcc {nvcc}, {len(cu_sources)} CUDA source(s) for sm_{arch}")
    _parallel(jobs, cu_tasks, say)
    cu_objs = [t[2] for t in cu_tasks]

    results = []
    for inc in includes:
        label = trt_version(inc)
        bdir = out / f"trt-{label}"
        trt_headers = _headers_of([inc])
        flags = [*CXXFLAGS, "-isystem", str(inc), "-isystem", str(cuda_inc), f"-I{KERNELS / 'include'}", f"-I{TRT}"]
        tasks = []
        for src in sorted(TRT.glob("*.cpp")) + sorted(HARNESS.glob("*.cpp")):
            obj = bdir / f"{src.parent.name}_{src.stem}.o"
            tasks.append((f"{src.relative_to(HERE)} TensorRT {label} (g++)", ["g++", *flags, "-c", str(src), "-o", str(obj)],
                          obj, [src, *kernel_headers, *trt_own_headers, *trt_headers]))
        # the static-registration variant (QUAMBA_TRT_STATIC_REGISTRATION, CMake option): compiled, not linked
        # here, since it calls libnvinfer's getPluginRegistry()
        common = TRT / "plugin_common.cpp"
        static_obj = bdir / "static-registration" / "trt_plugin_common.o"
        tasks.append((f"{common.relative_to(HERE)} -DQUAMBA_TRT_STATIC_REGISTRATION TensorRT {label} (g++)",
                      ["g++", *flags, "-DQUAMBA_TRT_STATIC_REGISTRATION=1", "-c", str(common), "-o", str(static_obj)],
                      static_obj, [common, *kernel_headers, *trt_own_headers, *trt_headers]))
        say(f"check_trt_compile: TensorRT {label} headers ({inc})")
        _parallel(jobs, tasks, say)
        plugin_objs = [o for _, _, o, _ in tasks if o.name.startswith("trt_") and o != static_obj]
        harness_objs = [bdir / "harness_harness.o"]
        fake_objs = [bdir / "harness_fake_kernels.o"]
        lib = bdir / "libquamba_trt_plugins.so"
        harness = bdir / "libquamba_trt_harness.so"
        fake = bdir / "libquamba_trt_plugins_fake.so"
        link = ["-Wl,--no-undefined", f"-L{cuda_lib}", f"-Wl,-rpath,{cuda_lib}"]
        links = [
            ("libquamba_trt_plugins.so (--no-undefined, cudart only)",
             ["g++", "-shared", "-o", str(lib), *map(str, plugin_objs), *map(str, cu_objs),
              f"-Wl,--version-script={TRT / 'exports.map'}", *link, "-lcudart"],
             lib, [*plugin_objs, *cu_objs, TRT / "exports.map"]),
            ("libquamba_trt_harness.so",
             ["g++", "-shared", "-o", str(harness), *map(str, harness_objs),
              f"-Wl,--version-script={HARNESS / 'exports.map'}", *link, "-lcudart", "-ldl"],
             harness, [*harness_objs, HARNESS / "exports.map"]),
            # the plugins over a recording stand-in of the kernels and the CUDA calls (CPU tests of enqueue):
            # no libcudart, so --no-undefined also proves the stand-in covers every call the plugins make
            ("libquamba_trt_plugins_fake.so (recording kernels, no CUDA)",
             ["g++", "-shared", "-o", str(fake), *map(str, plugin_objs), *map(str, fake_objs),
              f"-Wl,--version-script={HARNESS / 'fake_exports.map'}", "-Wl,--no-undefined"],
             fake, [*plugin_objs, *fake_objs, HARNESS / "fake_exports.map"]),
        ]
        _parallel(1, links, say)
        results.append(Built(label, inc, lib, harness, fake))
    return results


# ---- checks of the linked libraries ----------------------------------------------------------------------------


def exported(lib: Path) -> set[str]:
    r = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True)
    names = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "TtWwDdBbRrVviu":
            names.add(parts[2].split("@")[0])
    return names


def needed(lib: Path) -> list[str]:
    r = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def expected_ops() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """name -> (version, [(field, kind)]) from the generated header."""
    text = FIELDS_H.read_text()
    ops = {}
    for block in re.split(r"\n// ---- ", text)[1:]:
        name = re.search(r'kName\[\] = "(\w+)"', block)
        ver = re.search(r'kVersion\[\] = "([^"]+)"', block)
        if not (name and ver):
            continue
        fields = re.findall(r'\{"(\w+)", FieldKind::(k\w+), FieldSource', block)
        ops[name.group(1)] = (ver.group(1), fields)
    return ops


FIELD_TYPE_CODE = {"kINT32": "5", "kFLOAT32": "1", "kCHAR": "6"}  # nvinfer1::PluginFieldType values


def check_libraries(b: Built, say=print) -> None:
    exp = exported(b.plugins)
    if exp != PLUGIN_EXPORTS:
        raise CheckError(f"{b.plugins} exports {sorted(exp)}, expected exactly {sorted(PLUGIN_EXPORTS)}")
    trt_libs = [n for n in needed(b.plugins) if "nvinfer" in n or "nvonnxparser" in n]
    if trt_libs:
        raise CheckError(f"{b.plugins} needs {trt_libs}: the dynamically loaded library must not link TensorRT")
    hexp = exported(b.harness)
    if hexp != HARNESS_EXPORTS:
        raise CheckError(f"{b.harness} exports {sorted(hexp)}, expected exactly {sorted(HARNESS_EXPORTS)}")
    say(f"  ok   nm -D: libquamba_trt_plugins.so exports exactly {', '.join(sorted(exp))}; "
        f"NEEDED: {', '.join(needed(b.plugins))}")

    h = ctypes.CDLL(str(b.harness))
    h.qth_list.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32]
    h.qth_list.restype = ctypes.c_int32
    buf = ctypes.create_string_buffer(1 << 16)
    if h.qth_list(str(b.plugins).encode(), buf, len(buf)) != 0:
        raise CheckError(f"the harness could not list the creators: {buf.value.decode()}")
    got = {}
    for line in buf.value.decode().splitlines():
        parts = line.split(" ")
        if len(parts) != 4:
            raise CheckError(f"unexpected creator line {line!r}")
        name, ver, ns, fields = parts
        got[name] = (ver, ns, [tuple(f.split(":")) for f in fields.split(",") if f])
    want = expected_ops()
    if sorted(got) != sorted(want):
        raise CheckError(f"getCreators gives {sorted(got)}, the registry's plugin ops are {sorted(want)}")
    for name, (ver, fields) in want.items():
        gver, gns, gfields = got[name]
        wfields = [(f, FIELD_TYPE_CODE[k]) for f, k in fields]
        if gver != ver or gns != "quamba" or gfields != wfields:
            raise CheckError(f"creator {name}: version {gver}, namespace {gns}, fields {gfields}; expected "
                             f"{ver}, quamba, {wfields}")
    say(f"  ok   getCreators (loaded through the harness): {len(got)} IPluginCreatorV3One, namespace quamba: "
        + ", ".join(f"{n} v{got[n][0]} ({len(got[n][2])} fields)" for n in sorted(got)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--headers", nargs="+", help="TensorRT include folders (default: $QUAMBA_TRT_HEADERS, else "
                                                  "../shared/third_party/tensorrt-{10.3,10.16}/include)")
    ap.add_argument("--arch", default="87", help="SM architecture of the kernel objects (default 87, the Orin)")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "trt-check", help="build folder (cached objects)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        includes = header_sets(args.headers)
        built = build(includes, args.out, args.arch, args.jobs)
        for b in built:
            say = print
            say(f"check_trt_compile: TensorRT {b.label}: checking {b.plugins.relative_to(args.out.resolve().parent)}")
            check_libraries(b, say)
    except CheckError as e:
        print(f"check_trt_compile: FAILED\n{e}", file=sys.stderr)
        return 2 if "not found" in str(e) else 1
    print(f"check_trt_compile: plugins compile and link against TensorRT "
          f"{' and '.join(b.label for b in built)} headers ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
