# Sourced by the GPU-machine check scripts (gpu_check.sh, gemm_check.sh): the repo root as the working
# directory, $OUT (default ./${CHECK_NAME}_out), the environment the extension build and the tests need,
# and the step / fail helpers (fail sets status=1: the script's exit code).
# shellcheck shell=bash disable=SC2034  # OUT, PY, status are for the scripts that source this
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT=${OUT:-$PWD/${CHECK_NAME:-gpu_check}_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# quamba_edge.export is export/ only through the install's package-dir mapping (pyproject.toml); the GPU
# machine runs the plain tree, so give it the same mapping as a link (git-ignored) for the tests that export
[ -e quamba_edge/export ] || ln -s ../export quamba_edge/export
export PYTHONUNBUFFERED=1
export QUAMBA_KERNELS_BUILD_DIR=${QUAMBA_KERNELS_BUILD_DIR:-/tmp/quamba_kernels_build}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
PY=${PY:-python3}
status=0
step() { echo; echo "===== $* ====="; }
fail() { echo "FAILED: $*"; status=1; }
