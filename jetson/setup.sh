#!/usr/bin/env bash
# quamba-edge on a Jetson (Orin Nano 8G first): detect L4T / JetPack, check CUDA, TensorRT and the tools,
# create the Python environment and build the CUDA kernels + TensorRT plugins for sm_87.
#
#   bash jetson/setup.sh [--venv DIR] [--no-venv] [--skip-build]
#
# JetPack 6.2 (L4T 36.4/36.5: CUDA 12.6, TensorRT 10.3, Python 3.10): TensorRT's Python bindings are a system
# package (python3-libnvinfer), so the venv sees the system site-packages. JetPack 7.2 (L4T 39: CUDA 13.2,
# TensorRT 10.16, Python 3.12): the same layout works. Writes jetson/build/setup.json (what was found).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-jetson
MAKE_VENV=1
BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --venv) VENV=$2; shift 2;;
    --no-venv) MAKE_VENV=0; shift;;
    --skip-build) BUILD=0; shift;;
    -h|--help) sed -n '2,10p' "$0"; exit 0;;
    *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
die() { echo "setup.sh: $*" >&2; exit 1; }
mkdir -p jetson/build

# ---- what this machine is -------------------------------------------------------------------------
L4T=""
if [ -r /etc/nv_tegra_release ]; then
  # "# R36 (release), REVISION: 4.3, ..." -> 36.4.3
  L4T=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' /etc/nv_tegra_release)
fi
[ -n "$L4T" ] || die "this is not a Jetson (no /etc/nv_tegra_release); on a workstation use the README's install"
case ${L4T%%.*} in
  36) JETPACK=6; ARCH_NOTE="JetPack 6.x: CUDA 12.6, TensorRT 10.3";;
  39) JETPACK=7.2; ARCH_NOTE="JetPack 7.2: CUDA 13.2, TensorRT 10.16";;
  *) die "L4T $L4T is not supported (JetPack 6.2 = L4T 36.4+, JetPack 7.2 = L4T 39); upgrade JetPack";;
esac
MODEL=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo unknown)
echo "device: $MODEL, L4T $L4T ($ARCH_NOTE)"

NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] || die "nvcc not found: install the CUDA toolkit (sudo apt install nvidia-jetpack) or add /usr/local/cuda/bin to PATH"
CUDA_VERSION=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
command -v cmake >/dev/null || die "cmake not found: sudo apt install cmake"
PY=python3
TRT_VERSION=$($PY -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)
[ -n "$TRT_VERSION" ] || die "TensorRT's Python bindings are missing: sudo apt install python3-libnvinfer python3-libnvinfer-dev"
TRT_HEADERS=""
for d in "${TENSORRT_ROOT:-/nonexistent}/include" /usr/include/aarch64-linux-gnu /usr/include; do
  if [ -f "$d/NvInferRuntime.h" ]; then TRT_HEADERS=$d; break; fi
done
[ -n "$TRT_HEADERS" ] || die "TensorRT headers (NvInferRuntime.h) not found: sudo apt install libnvinfer-dev, or set TENSORRT_ROOT"
echo "CUDA $CUDA_VERSION, TensorRT $TRT_VERSION (headers $TRT_HEADERS), $($PY --version)"

# ---- Python environment ------------------------------------------------------------------------------
if [ $MAKE_VENV -eq 1 ]; then
  [ -d "$VENV" ] || $PY -m venv --system-site-packages "$VENV"   # system site: tensorrt (and JetPack's torch)
  PY=$VENV/bin/python
  $PY -m pip install -q --upgrade pip
  $PY -m pip install -q -e ".[export]" --no-deps
  $PY -m pip install -q numpy tokenizers safetensors onnx tqdm
  # device memory from Python: cuda-bindings installs everywhere; pycuda only where it builds
  $PY -m pip install -q cuda-python || $PY -m pip install -q pycuda || echo "note: neither cuda-python nor pycuda installed"
  $PY -m pip install -q jetson-stats 2>/dev/null || echo "note: jetson-stats (optional, AGPL) not installed: no power readings"
fi

# ---- kernels + plugins for sm_87 ---------------------------------------------------------------------------
if [ $BUILD -eq 1 ]; then
  cmake -S plugins -B build/plugins -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=87 \
        -DQUAMBA_BUILD_TRT=ON ${TENSORRT_ROOT:+-DTENSORRT_ROOT="$TENSORRT_ROOT"}
  cmake --build build/plugins -j "$(nproc)"
  LIB=$(ls build/plugins/trt/libquamba_trt_plugins.so)
  echo "plugin library: $LIB"
fi

cat > jetson/build/setup.json <<JSON
{"device": "$MODEL", "l4t": "$L4T", "jetpack": "$JETPACK", "cuda": "$CUDA_VERSION", "tensorrt": "$TRT_VERSION",
 "trt_headers": "$TRT_HEADERS", "python": "$PY", "plugins": "${LIB:-not built}"}
JSON
echo "setup done: jetson/build/setup.json; next: bash jetson/verify.sh"
