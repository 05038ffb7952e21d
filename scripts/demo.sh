#!/usr/bin/env bash
# The main job on an embedded default (no model download): builds streamllm, then takes the committed demo model
# (data/models/kjv-sink-demo.h5: a 1.3M-parameter Pythia-style model with one learnable sink token, trained by our
# own trainer on the KJV Bible with a 128-token context; scripts/train-demo-model.sh reproduces it) and
#   1. continues a verse of the held-out text live, for 8x its training length, through a 1 + 127 token cache;
#   2. streams ~16K held-out tokens under the dense, window (0+128) and StreamingLLM (1 sink + 127) caches and
#      prints perplexity, tokens/s and peak memory, plus an SVG of log-perplexity versus tokens streamed.
# The text is the KJV's held-out tail (Debian's bible-kjv package, installed with apt-get) or, when that cannot be
# installed, the license texts every Debian machine has. About 3 minutes on 2 cores, most of it the build.
# Usage: scripts/demo.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
bash scripts/install-deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target streamllm
B="$BUILD/streamllm"
MODEL=data/models/kjv-sink-demo.h5
OUT=runs/demo
mkdir -p "$OUT"
TEXT="$OUT/heldout.txt"
if scripts/kjv-text.sh "$OUT/kjv.txt" >/dev/null 2>&1; then
  # The model was trained on all but the last 5.13% of the text (the `data` split); stream that tail.
  tail -c 212000 "$OUT/kjv.txt" | sed 1d > "$TEXT"
  WHAT="the held-out end of the KJV Bible (never seen in training)"
else
  cat /usr/share/common-licenses/* > "$TEXT"
  WHAT="Debian's license texts (the KJV package could not be installed; out-of-domain text for this model)"
fi
echo
echo "== the model"
"$B" info -m "$MODEL"
echo
echo "== live: continuing a verse for 1024 tokens (8x the training length) with 1 sink + 127 recent tokens"
PROMPT=$(head -n 1 "$TEXT")
"$B" generate -m "$MODEL" -p "$PROMPT" -n 1024 --ignore-eos --window 127 --temp 0.8 --top-p 0.95 --seed 1
echo
echo "== streaming 16K tokens of $WHAT: dense vs window vs StreamingLLM"
"$B" ppl -m "$MODEL" -f "$TEXT" --max-tokens 16384 --cache dense,window,streaming --window 127 \
  --plot "$OUT/logppl_vs_tokens.svg" --no-progress
