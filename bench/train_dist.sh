#!/usr/bin/env bash
# Data-parallel training on one machine, with its baseline in the same run: the same training run (same options,
# --accum R micro-batches per step) as one process with R threads and as R MPI ranks with one thread each,
# alternating for a few rounds. Prints the tokens/s of each round and a median table, and checks that every
# training loss of the two runs is the same to the last printed digit (the data-parallel promise, train/comm.h).
#
# Usage: bench/train_dist.sh [BUILD_DIR] [RANKS] [ROUNDS]       (environment: HIDDEN LAYERS SEQ BATCH STEPS)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$HERE/..
BUILD=${1:-$ROOT/build}
R=${2:-2}
ROUNDS=${3:-3}
B=$BUILD/streamllm
[ -x "$B" ] || { echo "train_dist: $B not found (build first)" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "train_dist: mpirun not found (scripts/install-deps.sh installs OpenMPI)" >&2; exit 1; }
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# A 1024-token BPE and token shards from this repository's documentation (no download).
"$B" tokenizer train --vocab 1024 --no-progress -o "$W/tok.json" "$ROOT"/README.md "$ROOT"/docs/*.md > /dev/null
"$B" data --no-progress --tokenizer "$W/tok.json" -o "$W/data" --val-fraction 0.1 "$ROOT"/README.md "$ROOT"/docs/*.md \
  > /dev/null
OPTS=(train --data "$W/data" --hidden "${HIDDEN:-256}" --layers "${LAYERS:-4}" --heads 4 --seq-len "${SEQ:-128}"
      --batch "${BATCH:-8}" --accum "$R" --steps "${STEPS:-12}" --warmup 2 --eval-every 0 --eval-tokens 4096
      --save-every 0 --quiet)
tps() { sed -n 's/.*, \([0-9.]*\) tok\/s, .*/\1/p' "$1"; }
losses() { grep -o '"loss":[^,]*' "$1/metrics.jsonl"; }
echo "== $(nproc) cores; model: hidden ${HIDDEN:-256}, ${LAYERS:-4} layers, seq ${SEQ:-128}, batch ${BATCH:-8} x accum $R =="
printf '| round | 1 process x %d threads | %d ranks x 1 thread | ratio |\n|---|---|---|---|\n' "$R" "$R"
one=() dp=()
for i in $(seq 1 "$ROUNDS"); do
  rm -rf "$W/one" "$W/dp"
  "$B" "${OPTS[@]}" --threads "$R" --out "$W/one" > "$W/one.log"
  mpirun -np "$R" "$B" "${OPTS[@]}" --threads 1 --out "$W/dp" > "$W/dp.log"
  a=$(tps "$W/one.log") b=$(tps "$W/dp.log")
  [ -n "$a" ] && [ -n "$b" ] || { echo "train_dist: could not read tokens/s"; cat "$W/one.log" "$W/dp.log"; exit 1; }
  if ! diff <(losses "$W/one") <(losses "$W/dp") > /dev/null; then
    echo "train_dist: the training losses differ between the two runs" >&2
    exit 1
  fi
  one+=("$a") dp+=("$b")
  printf '| %d | %s | %s | %.2fx |\n' "$i" "$a" "$b" "$(awk -v x="$b" -v y="$a" 'BEGIN {print x / y}')"
done
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(med "${one[@]}") mb=$(med "${dp[@]}")
printf '| median | %s | %s | %.2fx |\n' "$ma" "$mb" "$(awk -v x="$mb" -v y="$ma" 'BEGIN {print x / y}')"
echo "(tokens/s of the whole run, as the trainer's summary prints it; losses identical in every round)"
