#!/usr/bin/env bash
# Baseline for the trainer benchmark: time karpathy/llm.c's CPU trainer (train_gpt2.c) on a
# GPT-2-124M-shaped model at its hard-coded B=4, T=64, with OMP_NUM_THREADS=2.
#
# Usage: bench/llmc_baseline.sh /path/to/llm.c [steps]
#   steps   number of timed training steps to average (default 12); LLMC_WARMUP (default 2) more
#           steps are run first and discarded (step 0 also page-faults in the grad/AdamW buffers).
# Env:    PYTHON (interpreter with numpy; default: first of $VIRTUAL_ENV/bin/python, python3, python,
#         /work/venv/bin/python that imports numpy), CC (default: make's cc),
#         LLMC_THREADS (default 2), LLMC_KEEP=1 keeps the temp dir (its path is printed).
#
# The given checkout is not modified: Makefile, train_gpt2.c and llmc/ are copied to a temp dir,
# where the only source change is main()'s loop bound ("step <= 40" -> "step < warmup+steps").
# Validation (5 forward passes every 10 steps) and sampling (every 20 steps) stay as upstream has
# them; they run outside the timed region of each step. Inputs are stand-ins written by
# bench/llmc_make_inputs.py (random N(0,0.02) checkpoint in llm.c's format, random tokens, dummy
# tokenizer): the real GPT-2 weights are not needed, as step time does not depend on values.
#
# Output: llm.c's log, a summary, and as the last line:
#   llmc tokens_per_s=<x> ms_per_step=<y> steps=<n> B=4 T=64
# FLOP accounting (same as llm.c's own gpt2_estimate_mfu in train_gpt2.cu), per trained token:
#   6*N + 6*L*T*C, N = num_parameters as llm.c prints it (incl. padded wte, wpe, LN, biases);
#   6*L*T*C is the causal attention QK^T and att@V matmuls, fwd+bwd (llm.c computes only t2<=t).
set -euo pipefail

LLMC=${1:?usage: bench/llmc_baseline.sh /path/to/llm.c [steps]}
STEPS=${2:-12}
WARMUP=${LLMC_WARMUP:-2}
THREADS=${LLMC_THREADS:-2}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LLMC=$(cd "$LLMC" && pwd)
[[ -f $LLMC/train_gpt2.c && -f $LLMC/Makefile && -d $LLMC/llmc ]] || { echo "not an llm.c checkout: $LLMC" >&2; exit 2; }
[[ $STEPS =~ ^[0-9]+$ && $STEPS -ge 1 ]] || { echo "steps must be a positive integer" >&2; exit 2; }

if [[ -z ${PYTHON:-} ]]; then
  for p in ${VIRTUAL_ENV:+"$VIRTUAL_ENV/bin/python"} python3 python /work/venv/bin/python; do
    if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
[[ -n ${PYTHON:-} ]] || { echo "need a python with numpy: set PYTHON=/path/to/python" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llmc_baseline.XXXXXX")
if [[ ${LLMC_KEEP:-0} == 1 ]]; then echo "keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

COMMIT=$(git -C "$LLMC" rev-parse HEAD 2>/dev/null || echo unknown)
cp -r "$LLMC/Makefile" "$LLMC/train_gpt2.c" "$LLMC/llmc" "$WORK/"

TOTAL=$((WARMUP + STEPS))
grep -q 'for (int step = 0; step <= 40; step++)' "$WORK/train_gpt2.c" ||
  { echo "train_gpt2.c main() loop not as expected (step <= 40); update this script" >&2; exit 3; }
sed -i "s/for (int step = 0; step <= 40; step++)/for (int step = 0; step < $TOTAL; step++)/" "$WORK/train_gpt2.c"
B=$(sed -nE 's/^ *int B = ([0-9]+);.*/\1/p' "$WORK/train_gpt2.c" | head -1)
T=$(sed -nE 's/^ *int T = ([0-9]+);.*/\1/p' "$WORK/train_gpt2.c" | head -1)

echo "== llm.c $COMMIT ($LLMC), B=$B T=$T, OMP_NUM_THREADS=$THREADS, $WARMUP warm-up + $STEPS timed steps"
echo "== cpu: $(lscpu 2>/dev/null | sed -nE 's/^Model name: *//p' | head -1), $(nproc) cpus"
echo "== build"
( cd "$WORK" && make train_gpt2 ${CC:+CC="$CC"} 2>&1 ) | tee "$WORK/build.log" | grep -E 'train_gpt2\.c|OpenMP|error' || true
[[ -x $WORK/train_gpt2 ]] || { echo "build failed; see above" >&2; cat "$WORK/build.log" >&2; exit 4; }

echo "== inputs"
"$PYTHON" "$HERE/llmc_make_inputs.py" "$WORK"

echo "== run (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
TIMEFORMAT='%R %U %S'
{ time (cd "$WORK" && OMP_NUM_THREADS=$THREADS ./train_gpt2 2>&1 | tee run.log | grep -vE '^(<[0-9]+>)+' || true); } 2> "$WORK/time.txt"
read -r REAL USR SYS < "$WORK/time.txt"
# CPU time used by train_gpt2 over wall time x threads (whole run incl. validation): well below 1
# means other load on the machine (or serial parts of llm.c); compare runs only at similar values.
awk -v r="$REAL" -v u="$USR" -v s="$SYS" -v th="$THREADS" -v la="$(cut -d' ' -f1 /proc/loadavg)" \
  'BEGIN { printf "== run wall %.1f s, cpu %.1f s, cpu/(wall*%d threads) = %.2f; load average after: %s\n", r, u + s, th, (u + s) / (r * th), la
          if ((u + s) / (r * th) < 0.75) print "== WARNING: train_gpt2 got well under " th " cores: the machine looks loaded, timings are not representative" }'
grep -q "^step $((TOTAL - 1)): " "$WORK/run.log" || { echo "run did not finish" >&2; exit 5; }

# per-step ms of the timed steps, then the summary
awk -v w="$WARMUP" -v B="$B" -v T="$T" -v steps="$STEPS" '
  /^num_parameters:/ { N = $2 }
  /^num_layers:/     { L = $2 }
  /^channels:/       { C = $2 }
  /^step [0-9]+: train loss/ {
    s = $2; sub(":", "", s); ms = $(NF-1)
    if (s + 0 >= w) { n++; x[n] = ms; sum += ms }
  }
  END {
    if (n != steps) { print "expected " steps " timed steps, got " n > "/dev/stderr"; exit 1 }
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
    med = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    mean = sum / n; tok = B * T
    f6n = 6 * N; fatt = 6 * L * T * C; fpt = f6n + fatt
    printf "== timed steps: %d, ms/step mean %.1f median %.1f min %.1f max %.1f\n", n, mean, med, x[1], x[n]
    printf "== N=%d L=%d C=%d; FLOP/token = 6N + 6LTC = %.4g + %.4g = %.4g\n", N, L, C, f6n, fatt, fpt
    printf "llmc_flops gflops_per_s=%.2f gflops_per_s_6N=%.2f flop_per_token=%.0f n_params=%d\n", \
      fpt * tok / (mean / 1000) / 1e9, f6n * tok / (mean / 1000) / 1e9, fpt, N
    printf "llmc tokens_per_s=%.2f ms_per_step=%.1f steps=%d B=%d T=%d\n", tok / (mean / 1000), mean, n, B, T
  }' "$WORK/run.log"
