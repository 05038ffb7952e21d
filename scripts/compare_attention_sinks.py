"""streamllm's streaming perplexity against attention-sinks, the HF-based reference implementation of the
StreamingLLM cache (PyPI attention_sinks 0.4.0 on transformers 4.34.0), token by token on the same model and text.

attention-sinks keeps the first S tokens and the last W in a transformers KV cache and re-rotates the cached keys at
their positions inside the cache (the paper's scheme); streamllm stores keys rotated once and uses a second query
rotation for the sinks (runtime/kv_cache.h), which gives the same scores. This script feeds the text one token at
a time to attention-sinks, records -log p(next token) for every position, times each step, and compares with the
per-token NLLs of `streamllm ppl --csv` (same model directory, same tokens, same S + W).

Setup (outside the source tree; nothing here is committed but this script):
    /work/venv/bin/pip install --target /work/peer-sinks/site --no-deps transformers==4.34.0 attention_sinks==0.4.0 \
        "tokenizers>=0.14,<0.15" "huggingface_hub>=0.16.4,<0.18" einops
    # an HF Llama directory, e.g. SmolLM2-135M converted from the GGUF of scripts/fetch-smollm2.sh with the newer
    # transformers of /work/venv (see docs/benchmarks.md); add "rope_theta" to its config.json for transformers 4.34
    build/streamllm ppl -m MODEL -f TEXT --max-tokens N --cache streaming --sinks 4 --window 252 --csv ours.csv
    PYTHONPATH=/work/peer-sinks/site /work/venv/bin/python scripts/compare_attention_sinks.py MODEL TEXT \
        --tokens N --sinks 4 --window 252 --ours ours.csv
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time


def tokenize(tokenizer_json, text_file):
    """The text's ids from the model's tokenizer.json (the file streamllm reads), with the `tokenizers` of the
    interpreter's own environment: the 0.14 that transformers 4.34 pins (first on PYTHONPATH) cannot read the
    tokenizer.json files of current releases."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import json, sys; from tokenizers import Tokenizer; "
            "t = Tokenizer.from_file(sys.argv[1]); "
            "print(json.dumps(t.encode(open(sys.argv[2], encoding='utf-8').read(), add_special_tokens=False).ids))")
    out = subprocess.run([sys.executable, "-c", code, tokenizer_json, text_file], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"compare_attention_sinks: cannot tokenize {text_file} with {tokenizer_json}: "
                 f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="HF model directory (a family attention-sinks supports: Llama, Mistral, ...)")
    ap.add_argument("text", help="text file to stream")
    ap.add_argument("--tokens", type=int, default=2000, help="tokens scored (as streamllm ppl --max-tokens)")
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--window", type=int, default=252)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours", help="streamllm ppl --csv output to compare with")
    ap.add_argument("--csv", help="write attention-sinks' per-token NLL here")
    a = ap.parse_args()

    import torch
    import transformers
    from attention_sinks import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    ids = tokenize(f"{a.model}/tokenizer.json", a.text)[: a.tokens + 1]
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32,
                                                 attention_sink_size=a.sinks, attention_sink_window_size=a.window)
    model.eval()
    nll, times = [], []
    past = None
    with torch.no_grad():
        for i in range(len(ids) - 1):
            s = time.perf_counter()
            out = model(input_ids=torch.tensor([[ids[i]]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logp = torch.log_softmax(out.logits[0, -1].double(), dim=-1)
            times.append(time.perf_counter() - s)
            nll.append(-float(logp[ids[i + 1]]))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "token", "nll"])
            for i, v in enumerate(nll):
                w.writerow([i + 1, ids[i + 1], f"{v:.6f}"])
    med = sorted(times)[len(times) // 2]
    print(f"attention-sinks (transformers {transformers.__version__}, torch {torch.__version__}, {a.threads} threads): "
          f"{len(nll)} tokens, cache {a.sinks}+{a.window}, ppl {math.exp(sum(nll) / len(nll)):.4f}, "
          f"median {1e3 * med:.1f} ms per token ({1 / med:.1f} tok/s)")
    if not a.ours:
        return
    with open(a.ours) as f:
        rows = list(csv.reader(f))
    col = next((j for j, h in enumerate(rows[0]) if h.startswith("nll_streaming")), None)
    if col is None:
        sys.exit(f"compare_attention_sinks: {a.ours} has no nll_streaming column")
    ours = [(int(r[1]), float(r[col])) for r in rows[1:]]
    n = min(len(ours), len(nll))
    if [t for t, _ in ours[:n]] != ids[1: n + 1]:
        sys.exit("compare_attention_sinks: the two runs scored different tokens (tokenizer or text differ)")
    d = [abs(ours[i][1] - nll[i]) for i in range(n)]
    evicting = [d[i] for i in range(n) if i + 1 > a.sinks + a.window]
    ppl_ours = math.exp(sum(v for _, v in ours[:n]) / n)
    ppl_theirs = math.exp(sum(nll[:n]) / n)
    print(f"over the same {n} tokens: ppl {ppl_theirs:.4f} (attention-sinks) vs {ppl_ours:.4f} (streamllm)")
    print(f"|NLL difference| per token: max {max(d):.2e}, mean {sum(d) / n:.2e}; "
          f"while evicting (token > S + W): max {max(evicting) if evicting else 0:.2e} over {len(evicting)} tokens")


if __name__ == "__main__":
    main()
