#!/usr/bin/env bash
# Builds streamllm and runs every test (CUDA tests skip without a GPU). Usage: scripts/test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
bash scripts/install-deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)"
# A short, seeded fuzz run of every parser under ASan + UBSan (clang/libFuzzer; docs/fuzzing.md).
SLLM_FUZZ_SEED=1 bash scripts/fuzz.sh 10 "$BUILD-fuzz"
