#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries and the CLI (with its CUDA plugin and shared libraries) here, for a
# lent GPU machine that has nvcc but not this project's
# Debian dependencies (see docs/cuda.md), and copies them into an ignored folder to carry there:
#
#   scripts/gpu-prebuild.sh [dest]       (default dest: .devbin; also writes dest.tar.xz)
#   # then, on the GPU machine, with dest.tar.xz carried (the working tree and what is carried: under 64 MiB):
#   tar xJf .devbin.tar.xz && PREBUILT=1 BUILD=.devbin scripts/gpu-check.sh "$OUT"
#
# Portable host code (-DSLLM_NATIVE=OFF: the GPU machine's CPU need not have this one's AVX-512) and sm_90a device
# code (H100 / H200).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.devbin}
BUILD=${BUILD:-build-gpu}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DSLLM_NATIVE=OFF -DSLLM_TESTS=ON
BINS=(sllm_cuda_tests sllm_cuda_train_tests bench_cuda bench_train streamllm)
cmake --build "$BUILD" -j"$(nproc)" --target "${BINS[@]}" sllm_cuda_plugin
mkdir -p "$DEST/lib"
for b in "${BINS[@]}" libsllm_cuda.so; do cp "$BUILD/$b" "$DEST/"; strip "$DEST/$b"; done
# The shared libraries of the CLI and of the trainer's binaries (HDF5 and what it pulls in, OpenMPI, PCRE2,
# OpenMP, ...) travel with them, except glibc's own and the C++ runtime; gpu-check.sh puts $BUILD/lib on
# LD_LIBRARY_PATH for those binaries (sllm_cuda_tests and bench_cuda need none of them).
for b in streamllm sllm_cuda_train_tests bench_train; do ldd "$BUILD/$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|librt|libpthread|libresolv|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt)\.so' |
  while read -r lib; do cp -L "$lib" "$DEST/lib/"; done
du -sh "$DEST"
# What travels to the device machine (the working tree plus carried paths) must stay under 64 MiB: the binaries
# with their libraries are ~55 MB, so they travel as one xz archive (~12 MB), unpacked there first.
tar cJf "$DEST.tar.xz" "$DEST"
exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
for p in "/$DEST/" "/$DEST.tar.xz"; do grep -qx "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"; done
ls -la "$DEST" "$DEST.tar.xz"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
arch=$(stat -c %s "$DEST.tar.xz")
echo "travels: tree $((tree / 1048576)) MiB + $DEST.tar.xz $((arch / 1048576)) MiB (limit 64 MiB)"
echo "carry $DEST.tar.xz and start the device command with: tar xJf $DEST.tar.xz &&"
echo "the tests find their fixtures at $(pwd) (link the checkout there on the GPU machine)"
