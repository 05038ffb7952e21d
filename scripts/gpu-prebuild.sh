#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries and the CLI (with its CUDA plugin and shared libraries) here, for a
# lent GPU machine that has nvcc but not this project's
# Debian dependencies (see docs/cuda.md), and copies them into an ignored folder to carry there:
#
#   scripts/gpu-prebuild.sh [dest]       (default dest: .devbin)
#   #   # then, on the GPU machine, with dest carried (under 64 MiB):
#   PREBUILT=1 BUILD=.devbin scripts/gpu-check.sh "$OUT"
#
# Portable host code (-DSLLM_NATIVE=OFF: the GPU machine's CPU need not have this one's AVX-512) and sm_90a device
# code (H100 / H200).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.devbin}
BUILD=${BUILD:-build-gpu}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DSLLM_NATIVE=OFF -DSLLM_TESTS=ON
cmake --build "$BUILD" -j"$(nproc)" --target sllm_cuda_tests bench_cuda streamllm sllm_cuda_plugin
mkdir -p "$DEST/lib"
cp "$BUILD"/sllm_cuda_tests "$BUILD"/bench_cuda "$BUILD"/streamllm "$BUILD"/libsllm_cuda.so "$DEST"/
strip "$DEST"/sllm_cuda_tests "$DEST"/bench_cuda "$DEST"/streamllm "$DEST"/libsllm_cuda.so
# The CLI's shared libraries (HDF5 and what it pulls in, PCRE2, OpenMP, ...) travel with it, except glibc's own
# and the C++ runtime the test binaries already rely on; gpu-check.sh puts $BUILD/lib on LD_LIBRARY_PATH.
ldd "$BUILD"/streamllm | awk '$3 ~ /^\// {print $3}' |
  grep -vE '/(libc|libm|libdl|librt|libpthread|libresolv|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' |
  while read -r lib; do cp -L "$lib" "$DEST/lib/"; done
du -sh "$DEST"
exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx "/$DEST/" "$exclude" 2>/dev/null || echo "/$DEST/" >>"$exclude"
ls -la "$DEST"
echo "carry $DEST; the tests find their fixtures at $(pwd) (link the checkout there on the GPU machine)"
