#!/usr/bin/env bash
# One-call GPU check for a lent H100/H200: builds for sm_90a, runs every CUDA test (op-by-op CUDA vs CPU, and the
# whole decoder on the golden fixtures), and prints a short summary last. Full log in $LOG_DIR (default: $OUT or
# ./gpu-check-logs). Usage: scripts/gpu-check.sh [log-dir]
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${1:-${OUT:-gpu-check-logs}}
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu-check.log"
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  nvcc --version | tail -1
} | tee "$LOG"
BUILD=build-gpu
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DSLLM_TESTS=ON &&
       cmake --build "$BUILD" -j"$(nproc)" --target sllm_cuda_tests sllm_tests streamllm; } >>"$LOG" 2>&1; then
  echo "BUILD FAILED (see $LOG)"; tail -30 "$LOG"; exit 1
fi
"$BUILD"/sllm_cuda_tests --gtest_brief=1 >"$LOG_DIR/cuda-tests.log" 2>&1
rc=$?
cat "$LOG_DIR/cuda-tests.log" >>"$LOG"
echo
echo "== summary"
grep -E "^\[  (PASSED|FAILED|SKIPPED) \]" "$LOG_DIR/cuda-tests.log" | sort | uniq -c | head -40
exit $rc
