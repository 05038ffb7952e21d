#!/usr/bin/env python3
"""Make the GGUF test fixtures and reference numbers under tests/fixtures/gguf/ (run by hand; CI needs no Python).

    /work/venv/bin/pip install -r scripts/requirements-fixtures.txt gguf==0.19.0 accelerate==1.15.0
    scripts/fetch-smollm2.sh                               # optional: the real model, for the smollm2 reference
    /work/venv/bin/python scripts/make_gguf_reference.py   # tiny fixtures (+ smollm2 reference when the model is there)

(transformers needs `gguf` to read GGUF files and `accelerate` to load a model from one.)

What it writes (all small; see tests/fixtures/gguf/README.md):

1. Two tiny random Llama models written as GGUF with the PyPI `gguf` package (the library llama.cpp's own converter
   uses), laid out exactly as llama.cpp's HF->GGUF converter lays them out: Q and K rows permuted for
   interleaved-pair RoPE, GGML dims fastest-first, every supported tensor type (F32, F16, BF16, Q8_0, Q4_0, Q4_1):
     tiny_spm.gguf  SentencePiece-style vocab ("llama": tokens + scores + token types, byte tokens <0xXX>, no merges),
                    untied head, add_bos_token, GQA 4/2 heads.
     tiny_bpe.gguf  byte-level BPE vocab ("gpt2": tokens + merges, pre "smollm"), tied head (no output.weight).
   The vocabularies are the small trained tokenizers of tests/fixtures/tokenizers/{llama2,smollm2}.
2. For each, <name>.golden.json (token ids of ~40 varied strings and two longer ones, with and without special tokens,
   and their HF decodes; see DIGIT_PRE below for the one place where the ids come from HF `tokenizers` with the
   model's own pre-tokenizer rather than from transformers' GGUF tokenizer) and <name>.golden.safetensors (float32
   logits of a short prompt, plus the dequantised, un-permuted q_proj / k_proj of layer 0), all from transformers
   loading the GGUF itself (AutoTokenizer / AutoModelForCausalLM.from_pretrained(dir, gguf_file=...), float32, eager
   attention).
3. When models/SmolLM2-135M-Instruct.Q4_1.gguf exists: smollm2.reference.json with HF's token ids for the same
   strings and, for a short prompt, the logits at a fixed set of token ids per position, the log-sum-exp and argmax
   of every position, and a few exact dequantised weight values (q_proj / k_proj rows of layer 0, un-permuted).

Before writing, the script checks that transformers' dequantisation of the tiny fixtures equals the values it
quantised from (up to the quantisation error) and that its un-permuted Q/K equal the HF-order weights it started
from, so the fixtures are known to describe the intended model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

import gguf
from gguf import GGMLQuantizationType as QT

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "gguf"
TOK_DIR = REPO / "tests" / "fixtures" / "tokenizers"
SMOL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

TEXTS = [
    "Hello world",
    "The capital of France is",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "Hello\nworld\n\nnew  lines\ttab",
    "don't won't I'm we'll they've she'd it's",
    "DON'T SHOUT, it's LOUD!!!",
    "Numbers: 0 7 42 123 4567 89012 3.14159 1,000,000",
    "2024-11-27 12:34:56",
    "Prices: $5.99, €3,50, ¥100",
    "café naïve résumé façade coöperate",
    "Ünïcödé ÀÉÎÕÜ ß ø æ",
    "中文字符测试，还有日本語のテキスト",
    "Русский текст и ελληνικά",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧",
    "def f(x):\n    return x**2  # square",
    "if (a && b || !c) { return; }",
    "<html><body class=\"x\">hi</body></html>",
    "https://example.com/path?q=1&r=two#frag",
    "user@example.com",
    "a" * 40,
    "ab " * 15,
    "    indented\n        more",
    "\n\n\n",
    " ",
    "",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "<s>text</s>",
    "text <extra_id> more",
    "Mixed CASE and camelCaseWords and snake_case_words",
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "¿Qué tal? ¡Muy bien!",
    "tab\tseparated\tvalues",
    "zero\u200bwidth and nbsp\u00a0here",
    "\u0301combining first",
    "line\r\nwindows",
    "Total:   42 items\n\n  7 days,\t3 hours  2024",
]


def _long_texts() -> list[str]:
    """Two longer strings: the Zen of Python, and 600 seeded random characters from many scripts."""
    import codecs
    import random

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this  # noqa: F401  (its text is stored rot13-encoded in this.s)

    rng = random.Random(3)
    ranges = [(32, 126), (0xA0, 0x2FF), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F)]
    chars = []
    for _ in range(600):
        lo, hi = rng.choice(ranges + [(10, 10), (32, 32), (9, 9), (48, 57)])
        chars.append(chr(rng.randint(lo, hi)))
    return [codecs.decode(this.s, "rot13"), "".join(chars)]


TEXTS += _long_texts()

# llama.cpp's `tokenizer.ggml.pre` values whose regex set splits every digit off first (llama-vocab.cpp), which the
# models' own tokenizer.json files write as Digits(individual_digits) + ByteLevel. transformers' GGUF loader does not
# know these names and falls back to GPT-2's regex alone, which differs on whitespace before a digit ("   3" gives
# "ĠĠ" "Ġ3" instead of "ĠĠĠ" "3"). Our reference ids use the models' own pre-tokenizer; the texts on which
# transformers' GGUF tokenizer differs are listed in the golden files.
DIGIT_PRE = {"smollm", "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "command-r"}

# --------------------------------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------------------------------

HIDDEN, N_LAYERS, N_HEADS, N_KV, FFN, CTX = 32, 2, 4, 2, 64, 128
HEAD_DIM = HIDDEN // N_HEADS

# Tensor types per layer: every supported type appears in both layers and in both positions of a row layout.
LAYER_TYPES = [
    dict(attn_q=QT.Q4_0, attn_k=QT.Q4_1, attn_v=QT.F16, attn_output=QT.BF16, ffn_gate=QT.Q8_0, ffn_up=QT.Q4_1,
         ffn_down=QT.Q4_0),
    dict(attn_q=QT.Q8_0, attn_k=QT.Q4_0, attn_v=QT.Q4_1, attn_output=QT.F16, ffn_gate=QT.BF16, ffn_up=QT.F32,
         ffn_down=QT.Q8_0),
]


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py's LlamaModel.permute (HF rotate-half rows -> interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_weights(vocab: int, tied: bool, seed: int) -> dict[str, np.ndarray]:
    """Random weights in HF names and HF (out, in) layout."""
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}

    def mat(name, rows, cols, std=0.25):
        w[name] = (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def norm(name):
        w[name] = (1.0 + 0.2 * rng.standard_normal(HIDDEN)).astype(np.float32)

    mat("model.embed_tokens.weight", vocab, HIDDEN, 0.5)
    for i in range(N_LAYERS):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm.weight")
        mat(p + "self_attn.q_proj.weight", N_HEADS * HEAD_DIM, HIDDEN)
        mat(p + "self_attn.k_proj.weight", N_KV * HEAD_DIM, HIDDEN)
        mat(p + "self_attn.v_proj.weight", N_KV * HEAD_DIM, HIDDEN)
        mat(p + "self_attn.o_proj.weight", HIDDEN, N_HEADS * HEAD_DIM)
        norm(p + "post_attention_layernorm.weight")
        mat(p + "mlp.gate_proj.weight", FFN, HIDDEN)
        mat(p + "mlp.up_proj.weight", FFN, HIDDEN)
        mat(p + "mlp.down_proj.weight", HIDDEN, FFN, 0.18)
    norm("model.norm.weight")
    if not tied:
        mat("lm_head.weight", vocab, HIDDEN, 0.5)
    return w


GGUF_NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    module = ".".join(parts[3:-1])
    return f"blk.{parts[2]}.{GGUF_NAMES[module]}.weight"


def add_tensor(wr: gguf.GGUFWriter, name: str, w: np.ndarray, qt: QT) -> None:
    if qt == QT.F32:
        wr.add_tensor(name, w.astype(np.float32))
    elif qt == QT.F16:
        wr.add_tensor(name, w.astype(np.float16))
    else:  # BF16 and block types: raw bytes (the writer derives the element shape)
        wr.add_tensor(name, gguf.quants.quantize(w, qt), raw_dtype=qt)


def write_tiny(path: Path, vocab_kind: str, seed: int) -> dict[str, np.ndarray]:
    tok = json.loads((TOK_DIR / ("llama2" if vocab_kind == "spm" else "smollm2") / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    assert all(t is not None for t in tokens)
    tied = vocab_kind == "bpe"
    w = hf_weights(len(tokens) + (1 if vocab_kind == "spm" else 0), tied, seed)

    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_name(f"tiny-{vocab_kind}")
    wr.add_block_count(N_LAYERS)
    wr.add_context_length(CTX)
    wr.add_embedding_length(HIDDEN)
    wr.add_feed_forward_length(FFN)
    wr.add_head_count(N_HEADS)
    wr.add_head_count_kv(N_KV)
    wr.add_layer_norm_rms_eps(1e-5 if vocab_kind == "spm" else 1e-6)
    wr.add_rope_freq_base(10000.0 if vocab_kind == "spm" else 50000.0)
    wr.add_rope_dimension_count(HEAD_DIM)
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)

    if vocab_kind == "spm":
        # SentencePiece-BPE style: a score per token, higher merges first. The merged piece of merge k scores -k;
        # every other token scores below all merges; control / byte tokens score 0 as in Llama-2's files.
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in tok["model"]["merges"]]
        merged = {a + b: k for k, (a, b) in enumerate(merges)}
        tokens.append("<extra_id>")  # a user-defined token (type 4)
        scores, types = [], []
        for i, t in enumerate(tokens):
            if t == "<unk>":
                types.append(2); scores.append(0.0)
            elif t in ("<s>", "</s>"):
                types.append(3); scores.append(0.0)
            elif t == "<extra_id>":
                types.append(4); scores.append(0.0)
            elif t.startswith("<0x") and t.endswith(">") and len(t) == 6:
                types.append(6); scores.append(0.0)
            else:
                types.append(1); scores.append(float(-merged[t]) if t in merged else float(-1000 - i))
        wr.add_tokenizer_model("llama")
        wr.add_token_list(tokens)
        wr.add_token_scores(scores)
        wr.add_token_types(types)
        wr.add_bos_token_id(1)
        wr.add_eos_token_id(2)
        wr.add_unk_token_id(0)
        wr.add_add_bos_token(True)
        wr.add_add_eos_token(False)
        wr.add_chat_template("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    else:
        types = [3 if i < 3 else 1 for i in range(len(tokens))]
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("smollm")
        wr.add_token_list(tokens)
        wr.add_token_types(types)
        wr.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
        wr.add_bos_token_id(1)
        wr.add_eos_token_id(2)
        wr.add_add_bos_token(False)
        wr.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}")

    for hf, arr in w.items():
        name = gguf_name(hf)
        qt = QT.F32
        if hf == "model.embed_tokens.weight":
            qt = QT.Q8_0
        elif hf == "lm_head.weight":
            qt = QT.Q4_1
        elif ".layers." in hf and arr.ndim == 2:
            qt = LAYER_TYPES[int(hf.split(".")[2])][GGUF_NAMES[".".join(hf.split(".")[3:-1])]]
        if "q_proj" in hf:
            arr = permute(arr, N_HEADS, N_HEADS)
        elif "k_proj" in hf:
            arr = permute(arr, N_HEADS, N_KV)
        add_tensor(wr, name, arr, qt)

    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return w


# --------------------------------------------------------------------------------------------------------------------
# References from transformers
# --------------------------------------------------------------------------------------------------------------------


def hf_load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = str(path.parent), path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return tok, model


def gguf_pre(path: Path) -> str | None:
    f = gguf.GGUFReader(str(path)).fields.get("tokenizer.ggml.pre")
    return None if f is None else bytes(f.parts[f.data[0]]).decode()


def use_own_pre_tokenizer(tok, path: Path) -> list[int]:
    """For a digit-splitting `pre`, give `tok` the model's own pre-tokenizer; returns the indices of TEXTS whose ids
    change (where transformers' GGUF tokenizer differs from the model's)."""
    from tokenizers import pre_tokenizers

    if gguf_pre(path) not in DIGIT_PRE:
        return []
    before = [tok.encode(t, add_special_tokens=False) for t in TEXTS]
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return [i for i, t in enumerate(TEXTS) if tok.encode(t, add_special_tokens=False) != before[i]]


def token_golden(tok, full: bool = True) -> list[dict]:
    """Ids with and without special tokens and both decodes; only the ids when not `full` (a smaller file)."""
    out = []
    for t in TEXTS:
        ids = tok.encode(t, add_special_tokens=False)
        if not full:
            out.append(dict(text=t, ids=ids))
            continue
        ids_sp = tok.encode(t, add_special_tokens=True)
        out.append(dict(text=t, ids=ids, ids_special=ids_sp,
                        decode=tok.decode(ids, skip_special_tokens=False),
                        decode_skip=tok.decode(ids_sp, skip_special_tokens=True)))
    return out


def logits_of(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def write_json(path: Path, obj: dict) -> None:
    """One line per entry (and per token case): small files with readable diffs."""
    lines = []
    for k, v in obj.items():
        if k == "tokens":
            inner = ",\n".join(json.dumps(c, ensure_ascii=False) for c in v)
            lines.append(f"{json.dumps(k)}: [\n{inner}\n]")
        else:
            lines.append(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}")
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def make_tiny(name: str, kind: str, seed: int) -> None:
    path = OUT / f"{name}.gguf"
    w = write_tiny(path, kind, seed)
    tok, model = hf_load(path)
    differs = use_own_pre_tokenizer(tok, path)
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    # Sanity: transformers' dequantised weights are the ones we wrote, up to the quantisation error, and its
    # un-permuted Q/K are in HF order (so the GGUF really holds the converter's permuted layout).
    for k, ref in w.items():
        got = sd[k]
        err = float(np.abs(got - ref).max())
        assert err < 0.15, (k, err)
    for k in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"):
        permuted = permute(w[k], N_HEADS, N_KV if "k_proj" in k else None)
        assert np.abs(sd[k] - w[k]).max() < np.abs(sd[k] - permuted).max(), k
    prompt = tok.encode("The quick brown fox jumps over the lazy dog", add_special_tokens=True)[:12]
    logits = logits_of(model, prompt)
    golden = dict(
        source=f"transformers GGUF load of {path.name}",
        prompt_ids=prompt,
        add_bos=bool(getattr(tok, "add_bos_token", False)),
        bos_id=tok.bos_token_id, eos_id=tok.eos_token_id,
        tokens=token_golden(tok),
        transformers_gguf_differs=differs,
        vocab_size=len(tok),
    )
    write_json(OUT / f"{name}.golden.json", golden)
    save_file({
        "logits": np.ascontiguousarray(logits, dtype=np.float32),
        "q_proj0": np.ascontiguousarray(sd["model.layers.0.self_attn.q_proj.weight"]),
        "k_proj0": np.ascontiguousarray(sd["model.layers.0.self_attn.k_proj.weight"]),
    }, str(OUT / f"{name}.golden.safetensors"))
    print(f"{name}: {path.stat().st_size} bytes, vocab {len(tok)}, prompt {len(prompt)} tokens, "
          f"logit range [{logits.min():.3f}, {logits.max():.3f}]")


def make_smollm2() -> None:
    if not SMOL.exists():
        print(f"{SMOL} not found: skipping the SmolLM2 reference (scripts/fetch-smollm2.sh fetches it)")
        return
    # transformers wants a directory; link the file into a temporary one so nothing is written next to it.
    with tempfile.TemporaryDirectory() as d:
        link = Path(d) / SMOL.name
        os.symlink(SMOL, link)
        tok, model = hf_load(link)
        differs = use_own_pre_tokenizer(tok, link)
        prompt = tok.encode("The capital of France is Paris. The capital of Germany is", add_special_tokens=True)
        logits = logits_of(model, prompt)
        sd = model.state_dict()
        q = sd["model.layers.0.self_attn.q_proj.weight"].float().numpy()
        k = sd["model.layers.0.self_attn.k_proj.weight"].float().numpy()
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    rng = np.random.default_rng(0)
    probe = sorted(set(rng.choice(logits.shape[1], 24, replace=False).tolist()) |
                   set(np.argsort(-logits, axis=1)[:, :4].reshape(-1).tolist()))
    ref = dict(
        source=f"transformers GGUF load of {SMOL.name} (float32, eager attention)",
        prompt_ids=prompt,
        probe_ids=probe,
        # Rounded to 1e-5 (the test's tolerance is 2e-3).
        logits_at_probe=[[round(float(logits[t, i]), 5) for i in probe] for t in range(len(prompt))],
        logsumexp=[round(float(x), 5) for x in lse],
        argmax=[int(x) for x in logits.argmax(-1)],
        # Exact dequantised values (rows 0..2 and the first 8 columns, un-permuted to HF order).
        q_proj0_rows={str(r): [float(x) for x in q[r, :8]] for r in (0, 1, 31, 32, 33, 63, 64, 575)},
        k_proj0_rows={str(r): [float(x) for x in k[r, :8]] for r in (0, 1, 31, 32, 33, 63, 64, 191)},
        add_bos=bool(getattr(tok, "add_bos_token", False)),
        tokens=token_golden(tok, full=False),
        transformers_gguf_differs=differs,
    )
    write_json(OUT / "smollm2.reference.json", ref)
    print(f"smollm2: prompt {len(prompt)} tokens, {len(probe)} probe ids, argmax {ref['argmax']}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    which = set(sys.argv[1:]) or {"tiny", "smollm2"}
    if "tiny" in which:
        make_tiny("tiny_spm", "spm", 1)
        make_tiny("tiny_bpe", "bpe", 2)
    if "smollm2" in which:
        make_smollm2()


if __name__ == "__main__":
    main()
