#!/usr/bin/env bash
# One-call GPU check for an H100/H200 (sm_90): builds for the card, runs every CUDA test (each op CUDA vs CPU on
# fresh random inputs with poisoned outputs, the decode graph, sampling, the whole decoder on the golden
# fixtures), the CUDA benchmark, the trainer's CUDA tests and training throughput, the CLI with --device cuda
# against the CPU, and prints a short summary last.
# Under 8 minutes on one H100.
#
# Usage: scripts/gpu-check.sh [log-dir]          (log-dir default: $OUT, else ./gpu-check-logs)
# Environment:
#   BUILD=dir      build folder (default build-gpu)
#   PREBUILT=1     skip the build: $BUILD already holds sllm_cuda_tests and bench_cuda, built elsewhere for sm_90a
#                  (a lent GPU machine without this project's Debian dependencies; see docs/cuda.md)
#   BENCH_ARGS=..  arguments for bench_cuda (default: the full run; "--quick" for a smoke run)
#   SANITIZE=0     skip the compute-sanitizer pass over the attention and decoder tests
#   TRAIN=0        skip the trainer's CUDA tests and training benchmark (run last, 60 s + 60 s at most)
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${1:-${OUT:-gpu-check-logs}}
BUILD=${BUILD:-build-gpu}
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu-check.log"
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader || true
  command -v nvcc >/dev/null && nvcc --version | tail -1
} | tee "$LOG"

if [ "${PREBUILT:-0}" != 1 ]; then
  echo "== build ($BUILD, sm_90a)" | tee -a "$LOG"
  if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DSLLM_TESTS=ON &&
         cmake --build "$BUILD" -j"$(nproc)" --target sllm_cuda_tests sllm_cuda_train_tests bench_cuda bench_train \
           streamllm sllm_cuda_plugin; } \
       >>"$LOG" 2>&1; then
    echo "BUILD FAILED (see $LOG)"; tail -30 "$LOG"; exit 1
  fi
fi
for b in sllm_cuda_tests bench_cuda; do
  [ -x "$BUILD/$b" ] || { echo "missing $BUILD/$b"; exit 1; }
done

echo "== CUDA tests" | tee -a "$LOG"
SECONDS=0
timeout "${TEST_TIMEOUT:-120}" "$BUILD"/sllm_cuda_tests --gtest_brief=1 >"$LOG_DIR/cuda-tests.log" 2>&1
test_rc=$?
test_s=$SECONDS
cat "$LOG_DIR/cuda-tests.log" >>"$LOG"
tail -40 "$LOG_DIR/cuda-tests.log"

# A failing test: re-run just the failed tests with each optimisation switched off (no rebuild), to name the piece
# in this same call, and run the benchmark and the CLI with every switch that made them pass.
iso_env=()
if [ "$test_rc" != 0 ]; then
  failed=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$LOG_DIR/cuda-tests.log" | awk '{print $4}' | tr -d ',' | sort -u |
    paste -sd: -)
  if [ -n "$failed" ]; then
    echo "== isolating the failed tests: $failed" | tee -a "$LOG"
    for sw in SLLM_CUDA_ATTN_VEC SLLM_CUDA_GEMV_WAVE SLLM_CUDA_FOLD_NORM SLLM_CUDA_PDL; do
      if env "$sw=0" timeout 30 "$BUILD"/sllm_cuda_tests --gtest_brief=1 --gtest_filter="$failed" \
        >"$LOG_DIR/isolate-$sw.log" 2>&1; then
        echo "  $sw=0: they pass" | tee -a "$LOG"
        iso_env+=("$sw=0")
      else
        echo "  $sw=0: $(grep -cE '^\[  FAILED  \] [A-Za-z]' "$LOG_DIR/isolate-$sw.log") still fail" | tee -a "$LOG"
      fi
    done
    [ ${#iso_env[@]} -gt 0 ] && echo "  the benchmark and the CLI run with: ${iso_env[*]}" | tee -a "$LOG"
  fi
fi

# The benchmark right after the tests: on a short GPU slot its numbers matter most. A stage that hangs costs its
# timeout only (worst case well under the 600 s of one device call with the defaults below).
echo "== bench_cuda ${BENCH_ARGS:-}" | tee -a "$LOG"
SECONDS=0
# shellcheck disable=SC2086
timeout "${BENCH_TIMEOUT:-240}" env "${iso_env[@]}" "$BUILD"/bench_cuda ${BENCH_ARGS:-} >"$LOG_DIR/bench.md" \
  2>"$LOG_DIR/bench.err"
bench_rc=$?
bench_s=$SECONDS
cat "$LOG_DIR/bench.md" "$LOG_DIR/bench.err" >>"$LOG"

san_rc=skipped
if [ "${SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  echo "== compute-sanitizer (memcheck) over the attention, KV-store and graph tests" | tee -a "$LOG"
  timeout "${SANITIZE_TIMEOUT:-90}" compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD"/sllm_cuda_tests --gtest_brief=1 \
    --gtest_filter='*Attention*:*KvStore*:*Graph*:*Sampl*' >"$LOG_DIR/sanitizer.log" 2>&1
  san_rc=$?
  tail -15 "$LOG_DIR/sanitizer.log" | tee -a "$LOG"
fi

# The CLI on the device, when this build has it: greedy generation and streaming perplexity of a golden fixture
# on the CPU and with --device cuda (the same tokens, the same table up to rounding), and a long generation.
cli_rc=skipped
if [ -x "$BUILD/streamllm" ]; then
  echo "== CLI: streamllm generate / ppl --device cuda" | tee -a "$LOG"
  # The carried libraries are for streamllm alone: the rest of this script keeps the machine's own.
  cli=(env "${iso_env[@]}" LD_LIBRARY_PATH="$(cd "$BUILD" && pwd)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$BUILD"/streamllm)
  fx=tests/fixtures/models/llama
  tok=data/tokenizers/bytes/tokenizer.json
  cli_rc=0
  for dev in cpu cuda; do
    timeout 20 "${cli[@]}" generate -m "$fx" --tokenizer "$tok" -p "Hello" -n 64 --temp 0 --ignore-eos --sinks 2 \
      --window 16 --device "$dev" -q >"$LOG_DIR/generate-$dev.txt" 2>"$LOG_DIR/generate-$dev.err" || cli_rc=1
    timeout 20 "${cli[@]}" ppl -m "$fx" --tokenizer "$tok" -f README.md --max-tokens 3000 \
      --cache dense,window,streaming --sinks 4 --window 60 --device "$dev" >"$LOG_DIR/ppl-$dev.txt" 2>&1 || cli_rc=1
  done
  # Block-format weights reach the GPU widened to f16 (docs/quantization.md): a Q4_0 model runs there.
  timeout 20 "${cli[@]}" generate -m "$fx" --tokenizer "$tok" --dtype q4_0 -p "Hello" -n 32 --temp 0 --ignore-eos \
    --device cuda -q >"$LOG_DIR/generate-q4_0.txt" 2>"$LOG_DIR/generate-q4_0.err" || cli_rc=1
  timeout 45 "${cli[@]}" generate -m "$fx" --tokenizer "$tok" -p "Hello" -n 20000 --temp 0.8 --seed 1 \
    --ignore-eos --sinks 4 --window 252 --device cuda -q >/dev/null 2>"$LOG_DIR/generate-long.err" || cli_rc=1
  if cmp -s "$LOG_DIR/generate-cpu.txt" "$LOG_DIR/generate-cuda.txt"; then
    echo "generate: the same 64 greedy tokens on cpu and cuda" | tee -a "$LOG"
  else
    echo "generate: cpu and cuda DIFFER (a near-tie can flip a greedy token; see generate-*.txt)" | tee -a "$LOG"
  fi
  cat "$LOG_DIR/generate-cuda.err" "$LOG_DIR/generate-q4_0.err" "$LOG_DIR/ppl-cpu.txt" "$LOG_DIR/ppl-cuda.txt" "$LOG_DIR/generate-long.err" |
    tee -a "$LOG"
fi


# The trainer's CUDA backend (not yet run on a GPU before this check was written): its tests against the CPU
# backend, then training throughput of the GPT-2-124M / Pythia-160M shapes. These binaries link the trainer's
# libraries (HDF5, OpenMPI), carried in $BUILD/lib.
train_rc=skipped
if [ -x "$BUILD/sllm_cuda_train_tests" ] && [ "${TRAIN:-1}" != 0 ]; then
  echo "== CUDA trainer tests, then bench_train --device cuda" | tee -a "$LOG"
  libenv=(env LD_LIBRARY_PATH="$(cd "$BUILD" && pwd)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  timeout "${TRAIN_TEST_TIMEOUT:-60}" "${libenv[@]}" "$BUILD"/sllm_cuda_train_tests --gtest_brief=1 \
    >"$LOG_DIR/cuda-train-tests.log" 2>&1
  train_rc=$?
  tail -15 "$LOG_DIR/cuda-train-tests.log" | tee -a "$LOG"
  if [ -x "$BUILD/bench_train" ]; then
    timeout "${TRAIN_BENCH_TIMEOUT:-60}" "${libenv[@]}" "$BUILD"/bench_train --device cuda --batch 8 --seq 512 \
      --steps 3 >"$LOG_DIR/train-bench.md" 2>&1 || train_rc=${train_rc/#0/bench}
    tee -a "$LOG" <"$LOG_DIR/train-bench.md"
  fi
fi

echo
echo "== summary"
grep -E "^\[  (PASSED|FAILED|SKIPPED) \]|^\[  FAILED  \]" "$LOG_DIR/cuda-tests.log" | head -40
echo "tests: rc $test_rc in ${test_s}s; sanitizer: rc $san_rc; cli: rc $cli_rc; bench: rc $bench_rc in ${bench_s}s;" \
  "trainer: rc $train_rc"
[ "$test_rc" != 0 ] && grep -E "^  SLLM_CUDA_" "$LOG" | sed "s/^ */isolation: /"
tail -5 "$LOG_DIR/bench.err"
cat "$LOG_DIR/bench.md"
[ -f "$LOG_DIR/train-bench.md" ] && grep "^|" "$LOG_DIR/train-bench.md"
[ -f "$LOG_DIR/cuda-train-tests.log" ] && grep -E "^\[  FAILED  \] [A-Za-z]" "$LOG_DIR/cuda-train-tests.log" | head -20
[ "$test_rc" = 0 ] && [ "$bench_rc" = 0 ] && { [ "$san_rc" = 0 ] || [ "$san_rc" = skipped ]; } &&
  { [ "$cli_rc" = 0 ] || [ "$cli_rc" = skipped ]; } && { [ "$train_rc" = 0 ] || [ "$train_rc" = skipped ]; }
