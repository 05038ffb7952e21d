#!/usr/bin/env bash
# The main job on an embedded default (no download): builds streamllm, streams a long public-domain text through a
# small committed model under the dense, window and StreamingLLM caches, and prints the perplexity / speed / memory
# table; then the decode benchmark on a SmolLM2-135M-shaped model (random weights) prints tokens/s and resident
# memory versus stream length. Until the ablation issue ships a trained sink-token demo model, the committed model
# is the tiny random Llama golden fixture read through a byte-level tokenizer: its perplexities are those of a
# random model; the speed, memory and flatness are the point.
# Usage: scripts/demo.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
bash scripts/install-deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target streamllm bench_decode
TEXT=$(mktemp /tmp/streamllm-demo.XXXXXX.txt)
trap 'rm -f "$TEXT"' EXIT
cat /usr/share/common-licenses/* > "$TEXT"   # ~200 KB of English on every Debian machine
MODEL=tests/fixtures/models/llama
TOK=data/tokenizers/bytes/tokenizer.json
echo
echo "== streamllm info"
"$BUILD"/streamllm info -m "$MODEL" --tokenizer "$TOK"
echo
echo "== 16K tokens of text, trained context 128: dense vs window vs StreamingLLM (4 sinks + 252 recent)"
"$BUILD"/streamllm ppl -m "$MODEL" --tokenizer "$TOK" -f "$TEXT" --max-tokens 16384 \
  --cache dense,window,streaming --sinks 4 --window 252
echo
echo "== the whole text ($(wc -c < "$TEXT") tokens) through the StreamingLLM cache: constant memory"
"$BUILD"/streamllm ppl -m "$MODEL" --tokenizer "$TOK" -f "$TEXT" --cache streaming --sinks 4 --window 252
echo
echo "== decode benchmark, SmolLM2-135M shape (random weights), f32: time and memory vs stream length"
"$BUILD"/bench_decode --quick --dtypes f32 --long 100000
