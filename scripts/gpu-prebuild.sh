#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries here, for a lent GPU machine that has nvcc but not this project's
# Debian dependencies (see docs/cuda.md), and copies them into an ignored folder to carry there:
#
#   scripts/gpu-prebuild.sh [dest]       (default dest: .devbin)
#   # then, on the GPU machine, with dest carried:
#   PREBUILT=1 BUILD=.devbin scripts/gpu-check.sh "$OUT"
#
# Portable host code (-DSLLM_NATIVE=OFF: the GPU machine's CPU need not have this one's AVX-512) and sm_90a device
# code (H100 / H200).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.devbin}
BUILD=${BUILD:-build-gpu}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DSLLM_NATIVE=OFF -DSLLM_TESTS=ON
cmake --build "$BUILD" -j"$(nproc)" --target sllm_cuda_tests bench_cuda
mkdir -p "$DEST"
cp "$BUILD"/sllm_cuda_tests "$BUILD"/bench_cuda "$DEST"/
strip "$DEST"/sllm_cuda_tests "$DEST"/bench_cuda
exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx "/$DEST/" "$exclude" 2>/dev/null || echo "/$DEST/" >>"$exclude"
ls -la "$DEST"
echo "carry $DEST; the tests find their fixtures at $(pwd) (link the checkout there on the GPU machine)"
