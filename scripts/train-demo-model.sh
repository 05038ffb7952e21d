#!/usr/bin/env bash
# Trains the demo model from scratch with our own trainer and writes data/models/kjv-sink-demo.h5 (f16): the KJV
# text (scripts/kjv-text.sh), a 2048-token byte-level BPE, shards with a 5% held-out tail, then
# configs/demo-kjv.toml. Deterministic: the same build on the same machine gives the same file.
# Usage: [THREADS=N] scripts/train-demo-model.sh [build-dir] [work-dir]   (THREADS=1 on a busy machine)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
WORK=${2:-runs/demo-model}
B="$BUILD/streamllm"
mkdir -p "$WORK" data/models
scripts/kjv-text.sh "$WORK/kjv.txt"
"$B" tokenizer train --vocab 2048 -o "$WORK/tokenizer.json" "$WORK/kjv.txt"
"$B" data --tokenizer "$WORK/tokenizer.json" -o "$WORK/data" --force "$WORK/kjv.txt"
rm -rf "$WORK/run"
"$B" train --config configs/demo-kjv.toml --data "$WORK/data" --out "$WORK/run" --log-every 50 --threads "${THREADS:-0}"
"$B" convert -m "$WORK/run/model.h5" -o data/models/kjv-sink-demo.h5 --dtype f16 --force
"$B" info -m data/models/kjv-sink-demo.h5
