#!/usr/bin/env bash
# The trainer benchmark with its baseline measured in the same run: llm.c's CPU trainer (train_gpt2.c, GPT-2 124M,
# B=4, T=64) first, then ours on the same shape (bench_train), which prints the table with the ratio.
#
# Usage: bench/train_vs_llmc.sh /path/to/llm.c [BUILD_DIR] [llm.c steps]
#   llm.c is not vendored: give a checkout (e.g. `git clone https://github.com/karpathy/llm.c`). It is not modified
#   (bench/llmc_baseline.sh builds a copy in a temp dir). BUILD_DIR defaults to build/ (bench_train must exist).
set -euo pipefail
LLMC=${1:?usage: bench/train_vs_llmc.sh /path/to/llm.c [BUILD_DIR] [steps]}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${2:-$HERE/../build}
STEPS=${3:-10}
[ -x "$BUILD/bench_train" ] || { echo "train_vs_llmc: $BUILD/bench_train not found (build first)" >&2; exit 1; }
echo "== llm.c (train_gpt2, OMP_NUM_THREADS=${LLMC_THREADS:-2}) =="
LINE=$("$HERE/llmc_baseline.sh" "$LLMC" "$STEPS" | tee /dev/stderr | tail -n 1)
TOKS=$(echo "$LINE" | sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p')
[ -n "$TOKS" ] || { echo "train_vs_llmc: could not read llm.c's tokens/s from: $LINE" >&2; exit 1; }
echo
echo "== streamllm (bench_train) =="
"$BUILD/bench_train" --steps 5 --llmc "$TOKS"
