#!/usr/bin/env bash
# On a GPU machine (the device tool's H100/H200, or any CUDA box with torch, nvcc, cmake, ninja):
#   1. CMake build of plugins/ for this GPU's architecture (proves the CMake project),
#   2. JIT build + load of the torch extension,
#   3. every GPU test (python -m pytest -m gpu tests/gpu),
#   4. compute-sanitizer memcheck + racecheck on the small representative calls (plugins/sanitize_driver.py),
#   5. benchmarks/kernels.py (results JSON + plot).
# Logs go to $OUT (default ./gpu_check_out). Globs everywhere: new kernels, tests and bench cases join.
# Usage: bash plugins/gpu_check.sh [--skip-bench] [--skip-sanitize] [--only-bench]
set -uo pipefail
CHECK_NAME=gpu_check
# shellcheck source=plugins/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh"
SKIP_BENCH=0; SKIP_SAN=0; ONLY_BENCH=0
for a in "$@"; do case $a in
  --skip-bench) SKIP_BENCH=1;; --skip-sanitize) SKIP_SAN=1;; --only-bench) ONLY_BENCH=1;;
  *) echo "unknown option $a" >&2; exit 2;; esac; done

CUDA_BIN=$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
SAN=$(command -v compute-sanitizer || ls "$CUDA_BIN"/compute-sanitizer /usr/local/cuda/bin/compute-sanitizer \
      /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
ARCH=$($PY -c 'import torch; m,n=torch.cuda.get_device_capability(); print(f"{m}{n}")')

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'

if [ $ONLY_BENCH -eq 0 ]; then
  step "cmake build (sm_$ARCH)"
  t0=$SECONDS
  if cmake -S plugins -B /tmp/quamba_cmake -G Ninja -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$OUT/build.log" 2>&1 \
     && cmake --build /tmp/quamba_cmake -j "$(nproc)" >>"$OUT/build.log" 2>&1; then
    ls -l /tmp/quamba_cmake/libquamba_kernels.* ; echo "cmake ok ($((SECONDS - t0)) s)"
  else
    tail -50 "$OUT/build.log"; fail "cmake build"
  fi

  step "torch extension (JIT)"
  t0=$SECONDS
  if $PY -c 'from quamba_edge import kernels; import torch; kernels.load(); print("loaded", sorted({s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("quamba_kernels::")}))' >>"$OUT/build.log" 2>&1; then
    tail -1 "$OUT/build.log"; echo "extension ok ($((SECONDS - t0)) s)"
  else
    tail -80 "$OUT/build.log"; fail "extension build"
  fi

  step "pytest -m gpu tests/gpu"
  # one pytest process per file: a crash in one op's binding cannot hide the other ops' results
  : >"$OUT/pytest_gpu.log"
  for f in tests/gpu/test_*.py; do
    $PY -m pytest -m gpu "$f" -q -p no:cacheprovider -rfE --tb=short >/tmp/pytest_one.log 2>&1
    rc=$?
    { echo "--- $f (rc $rc)"; cat /tmp/pytest_one.log; } >>"$OUT/pytest_gpu.log"
    if [ $rc -eq 0 ]; then echo "$f: $(tail -1 /tmp/pytest_one.log)"; else
      echo "$f: rc $rc"; grep -E "^(FAILED|ERROR)|Segmentation|Fatal|passed|failed" /tmp/pytest_one.log | tail -12
      fail "gpu tests in $f"; fi
  done

  if [ $SKIP_SAN -eq 0 ]; then
    if [ -n "$SAN" ]; then
      for tool in memcheck racecheck; do
        step "compute-sanitizer --tool $tool"
        extra=""; [ $tool = memcheck ] && extra="--leak-check no"
        PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool $tool $extra --error-exitcode 99 \
          $PY plugins/sanitize_driver.py >"$OUT/sanitize_$tool.log" 2>&1
        rc=$?
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed|error" "$OUT/sanitize_$tool.log" | tail -8
        [ $rc -eq 0 ] || fail "compute-sanitizer $tool (rc $rc)"
      done
    else
      fail "compute-sanitizer not found"
    fi
  fi
fi

if [ $SKIP_BENCH -eq 0 ]; then
  step "benchmarks/kernels.py"
  $PY benchmarks/kernels.py --out "$OUT/kernels.json" 2>&1 | tail -80 || fail "benchmark"
fi

step "summary"
[ $status -eq 0 ] && echo "gpu_check: all steps passed" || echo "gpu_check: some steps FAILED"
exit $status
