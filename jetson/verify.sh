#!/usr/bin/env bash
# After jetson/setup.sh: verify quamba-edge on this Jetson against the real TensorRT, step by step, and write
# one results file to send us (jetson/results/verify-<host>-<date>.json + the logs beside it).
#
#   bash jetson/verify.sh [--python PY] [--exports DIR] [--skip-bench]
#
# Steps (each is logged and recorded, a failure does not stop the later ones):
#   1. device: model, L4T, CUDA, TensorRT, power mode (nvpmodel), clocks (jetson_clocks --show), EMC rate;
#   2. the plugin harness (tests/gpu/test_trt_plugins.py) against this TensorRT's headers, every plugin;
#   3. fp16 exports of the bundled models (quantized here when torch is installed, else --exports DIR with
#      exports made elsewhere by `quamba-edge export ARTIFACT --dtype fp16`);
#   4. trtexec --dynamicPlugins smoke test per export (parse + build + run with our plugin library);
#   5. quamba-edge build per export, and its CUDA-graph decode against eager decode (the same tokens);
#   6. quamba-edge demo and (with CUDA torch) quamba-edge bench on small shapes.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv-jetson/bin/python
EXPORTS=""
BENCH=1
while [ $# -gt 0 ]; do
  case $1 in
    --python) PY=$2; shift 2;;
    --exports) EXPORTS=$2; shift 2;;
    --skip-bench) BENCH=0; shift;;
    -h|--help) sed -n '2,14p' "$0"; exit 0;;
    *) echo "verify.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
[ -x "$PY" ] || { echo "verify.sh: $PY not found: run bash jetson/setup.sh first (or pass --python)" >&2; exit 1; }
[ -r jetson/build/setup.json ] || { echo "verify.sh: run bash jetson/setup.sh first" >&2; exit 1; }
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=jetson/results/verify-$(hostname)-$STAMP
mkdir -p "$OUT"
LIB=$(ls "$PWD"/build/plugins/trt/libquamba_trt_plugins.so 2>/dev/null || true)
TRTEXEC=$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)
STEPS=()
record() {  # name rc log
  STEPS+=("{\"step\": \"$1\", \"rc\": $2, \"log\": \"$3\"}")
  if [ "$2" -eq 0 ]; then echo "  ok: $1"; else echo "  FAILED ($2): $1 — see $3"; fi
}
run() {  # name cmd...: log to $OUT/<name>.log
  local name=$1; shift
  echo "== $name"
  "$@" >"$OUT/$name.log" 2>&1
  record "$name" $? "$OUT/$name.log"
}

# 1. device
{
  echo "model: $(tr -d '\0' < /proc/device-tree/model 2>/dev/null)"
  cat /etc/nv_tegra_release 2>/dev/null
  nvpmodel -q 2>&1 || echo "nvpmodel: not available"
  sudo -n jetson_clocks --show 2>&1 || echo "jetson_clocks --show: needs sudo (run: sudo jetson_clocks --show)"
  echo "emc rate: $(sudo -n cat /sys/kernel/debug/bpmp/debug/clk/emc/rate 2>/dev/null || echo unreadable)"
  cat jetson/build/setup.json
} >"$OUT/device.txt" 2>&1
record device 0 "$OUT/device.txt"

# 2. plugin harness against this TensorRT
HEADERS=$($PY -c 'import json; print(json.load(open("jetson/build/setup.json"))["trt_headers"])')
run harness env QUAMBA_TRT_HEADERS="$HEADERS" "$PY" -m pytest -m gpu tests/gpu/test_trt_plugins.py -q -rfE

# 3. fp16 exports
if [ -z "$EXPORTS" ]; then
  EXPORTS=jetson/build/exports
  if "$PY" -c 'import torch' 2>/dev/null; then
    mkdir -p "$EXPORTS"
    for bits in w8a8 w4a8 w4a16; do
      run "quantize-$bits" "$PY" -m quamba_edge quantize mamba2-ref --recipe quamba2 --bits "$bits" \
          --num-samples 16 --gptq-num-samples 8 --out "jetson/build/art-$bits"
      run "export-$bits" "$PY" -m quamba_edge export "jetson/build/art-$bits" --dtype fp16 --overwrite \
          --out "$EXPORTS/mamba2-ref-$bits"
    done
  else
    echo "no torch here: pass --exports DIR with fp16 exports made on a workstation" | tee "$OUT/exports.log"
    record exports 1 "$OUT/exports.log"
  fi
fi

# 4 + 5. trtexec smoke test and quamba-edge build per export
for dir in "$EXPORTS"/*/; do
  [ -f "$dir/export.json" ] || continue
  name=$(basename "$dir")
  SHAPES=$("$PY" - "$dir" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1] + "/export.json"))
dims = ["input_ids:1x16"] + [s["input_name"] + ":" + "x".join(str(d) for d in [1, *s["shape"][1:]])
                             for s in meta["states"]]
print(",".join(dims))
PY
)
  if [ -x "$TRTEXEC" ] && [ -n "$LIB" ]; then
    run "trtexec-$name" "$TRTEXEC" --onnx="$dir/model.onnx" --dynamicPlugins="$LIB" --stronglyTyped \
        --shapes="$SHAPES" --iterations=10
  else
    echo "trtexec ($TRTEXEC) or the plugin library missing" >"$OUT/trtexec-$name.log"; record "trtexec-$name" 1 "$OUT/trtexec-$name.log"
  fi
  run "build-$name" "$PY" -m quamba_edge build "$dir" --max-batch 4 --max-seq 1024 --plugins "$LIB" \
      --timing-cache jetson/build/timing.cache
  # the TensorRT backend's CUDA-graph decode against its eager decode: the same tokens
  run "graphs-$name" "$PY" - "$dir" <<'PY'
import os, sys
from quamba_edge.runtime import EdgeModel
tokens = {}
for flag in ("0", "1"):
    os.environ["QUAMBA_CUDA_GRAPHS"] = flag
    em = EdgeModel.load(sys.argv[1], backend="tensorrt")
    out = em.generate([[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11]], max_new_tokens=64, eos_token_id=None)
    tokens[flag] = out.tokens
    print(f"QUAMBA_CUDA_GRAPHS={flag}: {em.backend.graphs_note}; {out.stats}")
assert tokens["0"] == tokens["1"], "CUDA-graph decode differs from eager decode"
print("CUDA-graph decode equals eager decode (2 prompts x 64 tokens)")
PY
done

# 6. demo and bench
run demo "$PY" -m quamba_edge demo --json
if [ $BENCH -eq 1 ] && "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  run bench "$PY" -m quamba_edge bench --models mamba2-130m,mamba2-370m,mamba-130m --precisions fp16,w8a8,w4a8,w4a16 \
      --prompt-lens 128,512 --batches 1,4 --tokens 128 --out "$OUT/bench"
fi

{
  echo "{\"date\": \"$STAMP\", \"host\": \"$(hostname)\", \"setup\": $(cat jetson/build/setup.json),"
  echo " \"steps\": ["
  (IFS=,; echo "  ${STEPS[*]}")
  echo " ]}"
} >"$OUT.json"
echo "results: $OUT.json (+ logs in $OUT/): please send both (see jetson/README.md)"
