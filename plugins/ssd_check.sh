#!/usr/bin/env bash
# The chunked tensor-core quant_ssd (plugins/kernels/quant_ssd.cu, ssdc::chunked_kernel; selected with
# QUAMBA_SSD_CHUNKED=1) on a GPU machine, in one command (~3-4 min on an H200, most of it the JIT build):
#   1. JIT build + load of the torch extension; in the background, registers / spills of the chunked
#      kernels for this GPU (nvcc -Xptxas -v of quant_ssd.cu),
#   2. tests/gpu/test_kernel_quant_ssd_chunked.py (against the reference op, derived bounds, poisoned
#      outputs, dispatch modes and fallbacks, carried state) and tests/gpu/test_kernel_quant_ssd.py (the
#      default sequential path through the changed entry point), one process each,
#   3. compute-sanitizer memcheck + racecheck on test_sanitize_quant_ssd_chunked (small calls),
#   4. benchmarks/kernels.py with QUAMBA_BENCH_SSD_CHUNKED_ONLY=1: chunked vs sequential at mamba2-2.7b /
#      mamba2-8b, L = 1024 / 2048 / 8192, batch 1 / 4 (JSON + plot), and a summary table last.
# Logs and results go to $OUT (default ./ssd_check_out). Exit code 0 only when every step passed.
# Usage: bash plugins/ssd_check.sh [--skip-tests] [--skip-sanitize] [--skip-bench]
set -uo pipefail
CHECK_NAME=ssd_check
# shellcheck source=plugins/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh"
unset QUAMBA_SSD_CHUNKED  # the tests and the benchmark set it per call
SKIP_TESTS=0; SKIP_SAN=0; SKIP_BENCH=0
for a in "$@"; do case $a in
  --skip-tests) SKIP_TESTS=1;; --skip-sanitize) SKIP_SAN=1;; --skip-bench) SKIP_BENCH=1;;
  *) echo "unknown option $a" >&2; exit 2;; esac; done
summary=()
T0=$SECONDS
TESTS="tests/gpu/test_kernel_quant_ssd_chunked.py tests/gpu/test_kernel_quant_ssd.py"

step "device"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader || true
command -v nvcc >/dev/null && nvcc --version | tail -1
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
git rev-parse --short HEAD 2>/dev/null || true

step "torch extension (JIT)"
t0=$SECONDS
if $PY -c 'from quamba_edge import kernels; kernels.load(); print("loaded")' >"$OUT/build.log" 2>&1; then
  echo "extension ok ($((SECONDS - t0)) s)"
else
  tail -60 "$OUT/build.log"; fail "extension build"
fi

# registers / spills in the background (one more compile of quant_ssd.cu), printed at the end
ARCH=$($PY -c 'import torch; m,n=torch.cuda.get_device_capability(); print(f"{m}{n}")')
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
"$NVCC" -c -std=c++17 -O3 -Iplugins/kernels/include -gencode="arch=compute_$ARCH,code=sm_$ARCH" -Xptxas -v \
  plugins/kernels/quant_ssd.cu -o "$OUT/quant_ssd.sm$ARCH.o" >"$OUT/ptxas_quant_ssd.log" 2>&1 &
PTXAS_PID=$!

if [ $SKIP_TESTS -eq 0 ]; then
  step "pytest (quant_ssd GPU tests: chunked, then the default sequential path)"
  for f in $TESTS; do
    log="$OUT/pytest_$(basename "$f" .py).log"
    t0=$SECONDS
    $PY -m pytest -m gpu "$f" -q -p no:cacheprovider -rfE --tb=short --durations=8 >"$log" 2>&1
    rc=$?
    line="$(basename "$f"): $(grep -E "passed|failed|error" "$log" | tail -1) [$((SECONDS - t0)) s wall]"
    echo "$line"; summary+=("$line")
    if [ $rc -ne 0 ]; then
      grep -E "^(FAILED|ERROR)|^E  |Segmentation|Fatal" "$log" | head -40
      fail "$f"
    fi
  done
fi

if [ $SKIP_SAN -eq 0 ]; then
  CUDA_BIN=$(dirname "$NVCC")
  # shellcheck disable=SC2012
  SAN=$(command -v compute-sanitizer || ls "$CUDA_BIN"/compute-sanitizer /usr/local/cuda/bin/compute-sanitizer \
        /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$SAN" ]; then
    for tool in memcheck racecheck; do
      step "compute-sanitizer --tool $tool (test_sanitize_quant_ssd_chunked)"
      t0=$SECONDS
      extra=""; [ $tool = memcheck ] && extra="--leak-check no"
      # shellcheck disable=SC2086
      PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool $tool $extra --error-exitcode 99 \
        $PY plugins/sanitize_driver.py -k "sanitize and chunked" >"$OUT/sanitize_$tool.log" 2>&1
      rc=$?
      line="$tool: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitize_$tool.log" | tail -1) / $(grep -E "passed|failed" "$OUT/sanitize_$tool.log" | tail -1) (rc $rc, $((SECONDS - t0)) s)"
      echo "$line"; summary+=("$line")
      [ $rc -eq 0 ] || { grep -E "Invalid|Race|hazard|ERROR" "$OUT/sanitize_$tool.log" | head -20; fail "compute-sanitizer $tool"; }
    done
  else
    fail "compute-sanitizer not found"
  fi
fi

if [ $SKIP_BENCH -eq 0 ]; then
  step "benchmarks/kernels.py: quant_ssd chunked vs sequential"
  t0=$SECONDS
  QUAMBA_BENCH_SSD_CHUNKED_ONLY=1 $PY benchmarks/kernels.py --only quant_ssd --out "$OUT/kernels_ssd_chunked.json" \
    >"$OUT/bench.log" 2>&1 || { tail -20 "$OUT/bench.log"; fail "benchmark"; }
  echo "benchmark done ($((SECONDS - t0)) s; rows in $OUT/bench.log)"
fi

step "registers / spills (nvcc -Xptxas -v, sm_$ARCH)"
if wait $PTXAS_PID; then
  $PY - "$OUT/ptxas_quant_ssd.log" <<'PYEOF'
import re, sys
name, spill = None, "?"
for line in open(sys.argv[1]):
    m = re.search(r"Compiling entry function '(\S+)'", line)
    if m:
        k = m.group(1)
        c = re.search(r"chunked_kernelILi(\d+)ELi(\d+)E", k)
        name = f"chunked N={c.group(1)} PT={c.group(2)}" if c else None
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m:
        spill = f"stack {m.group(1)} B, spill stores {m.group(2)} B, loads {m.group(3)} B"
    m = re.search(r"Used (\d+) registers", line)
    if m and name:
        print(f"  {name:24s} {m.group(1):>4s} registers, {spill}")
        name = None
PYEOF
else
  tail -30 "$OUT/ptxas_quant_ssd.log"; fail "nvcc quant_ssd.cu"
fi

step "summary ($((SECONDS - T0)) s)"
for l in ${summary[@]+"${summary[@]}"}; do echo "$l"; done
if [ -f "$OUT/kernels_ssd_chunked.json" ]; then
  $PY - "$OUT/kernels_ssd_chunked.json" <<'PYEOF'
import json, sys
res = json.load(open(sys.argv[1]))
rows = [r for r in res["rows"] if r["name"] == "quant_ssd_chunked"]
print(f"quant_ssd prefill on {res['device']} (commit {str(res.get('commit', '?'))[:10]}): chunked (QUAMBA_SSD_CHUNKED=1) "
      "vs the sequential kernel; int8 state, compact state scales")
print("anchor = mamba_ssm fp16 Triton mamba_chunk_scan_combined at the same shape (issue target: x anchor >= 1.2)")
print(f"{'model':12s} {'B':>2s} {'L':>5s} {'chunked us':>11s} {'sequential us':>14s} {'speedup':>8s} {'TFLOP/s':>8s} "
      f"{'x byte floor':>12s} {'anchor us':>10s} {'x anchor':>8s}")
for r in rows:
    f = dict(kv.split("=") for kv in r["shape"].split())
    seq = r.get("fp16_ref_ms")
    an = (f"{r['anchor_ms'] * 1e3:10.1f} {r['speedup_vs_anchor']:8.2f}" if r.get("anchor_ms")
          else f"{'-':>10s} {'-':>8s}")
    print(f"{r['model']:12s} {f['B']:>2s} {f['L']:>5s} {r['kernel_ms'] * 1e3:11.1f} "
          f"{(seq or 0) * 1e3:14.1f} {(r.get('speedup_vs_fp16') or 0):8.2f} {(r.get('tops') or 0):8.1f} "
          f"{r['ratio_to_floor']:12.1f} {an}")
PYEOF
fi
[ $status -eq 0 ] && echo "ssd_check: all steps passed" || echo "ssd_check: some steps FAILED"
exit $status
