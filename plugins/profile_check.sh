#!/usr/bin/env bash
# Nsight Compute evidence for the two measured misses, in one GPU-machine command (~2-3 min on an H200 after
# the JIT build): the chunked SSD prefill (ssdc::chunked_kernel, float `ssd` and int8 `quant_ssd`, mamba2-2.7b
# L = 2048) and the decode GEMV of the three linear formats (mamba2-8b in_proj, M = 1, where the W4 GEMVs
# move 27-39 % of the read bandwidth: benchmarks/results/kernels_linear.json). Per kernel: speed of light,
# occupancy, launch statistics, warp-state (stall) and scheduler statistics, the instruction mix and the
# memory workload; and registers / spills from ptxas. `--clock-control none`: the device's clocks as they are.
# Logs go to $OUT (default ./profile_check_out); results from an earlier run are kept in
# benchmarks/results/ncu_ssd_chunked.txt (commit 515f960).
# Usage: bash plugins/profile_check.sh [--skip-ssd] [--skip-gemv]
set -uo pipefail
CHECK_NAME=profile_check
# shellcheck source=plugins/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh"
SKIP_SSD=0; SKIP_GEMV=0
for a in "$@"; do case $a in
  --skip-ssd) SKIP_SSD=1;; --skip-gemv) SKIP_GEMV=1;;
  *) echo "unknown option $a" >&2; exit 2;; esac; done
command -v ncu >/dev/null || { echo "profile_check: ncu (Nsight Compute) not on PATH" >&2; exit 1; }
SECTIONS=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
          --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
          --section InstructionStats)

step "torch extension (JIT)"
"$PY" -c 'from quamba_edge import kernels; kernels.load(); print("loaded")' >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; fail "extension build"; exit 1; }

step "registers / spills (ptxas, this GPU's arch)"
ARCH=$("$PY" -c 'import torch; a, b = torch.cuda.get_device_capability(); print(f"{a}{b}")')
for f in ssd quant_ssd w4a16_linear w4a8_linear w8a8_linear; do
  nvcc -std=c++17 -O3 -arch="sm_$ARCH" -Iplugins/kernels/include -Xptxas -v -c "plugins/kernels/$f.cu" \
    -o /dev/null >"$OUT/ptxas_$f.log" 2>&1 || fail "ptxas $f"
done
grep -h "registers\|spill" "$OUT"/ptxas_*.log | sort | uniq -c | sort -rn | head -20

if [ "$SKIP_SSD" = 0 ]; then
  for op in ssd quant_ssd; do
    step "ncu: chunked SSD, $op, mamba2-2.7b L = 2048"
    ncu --clock-control none --kernel-name regex:chunked_kernel --launch-skip 1 --launch-count 1 "${SECTIONS[@]}" \
      "$PY" benchmarks/profile_ssd.py --op "$op" --model mamba2-2.7b --seqlen 2048 >"$OUT/ncu_$op.txt" 2>&1 \
      || fail "ncu $op"
    grep -E "Duration|Registers Per|Achieved Occ|Issue Slots Busy|DRAM Throughput" "$OUT/ncu_$op.txt"
  done
fi
if [ "$SKIP_GEMV" = 0 ]; then
  for fmt in w4a16 w4a8 w8a8; do
    step "ncu: GEMV, $fmt, mamba2-8b in_proj (N 18560, K 4096), M = 1"
    ncu --clock-control none --kernel-name regex:gemv --launch-skip 2 --launch-count 1 "${SECTIONS[@]}" \
      "$PY" benchmarks/profile_linear.py --fmt "$fmt" --n 18560 --k 4096 --m 1 >"$OUT/ncu_gemv_$fmt.txt" 2>&1 \
      || fail "ncu gemv $fmt"
    grep -E "Duration|Registers Per|Achieved Occ|Issue Slots Busy|DRAM Throughput" "$OUT/ncu_gemv_$fmt.txt"
  done
fi
echo; echo "profile_check: logs in $OUT; status $status"
exit "$status"
