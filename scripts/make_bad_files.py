#!/usr/bin/env python3
"""Crafted bad files for tests/test_bad_files.cpp, and the seed corpora of the fuzz targets (docs/fuzzing.md).

Writes
  tests/fixtures/bad/<format>/...   one file (or directory) per rule a parser must enforce; test_bad_files.cpp lists
                                    the sllm::Error each must produce (the file name plus the field and the problem)
  tests/fuzz/corpus/<format>/...    small valid files (the committed fixtures where they are small, tiny GGUF and
                                    safetensors files made here) plus the bad files under 4 KiB: the fuzzers start
                                    from both (scripts/fuzz.sh)
  tests/fuzz/<format>.dict          libFuzzer dictionaries: the keys, names and edge numbers each parser looks for

Plain Python 3, no packages, deterministic (same bytes on every run). Run from anywhere:
    python3 scripts/make_bad_files.py
The h5 cases are byte-level corruptions of tests/fuzz/corpus/h5/tiny_llama_f16.h5, a tiny model written by our own
save_h5 (Python without h5py cannot write HDF5). That file is regenerated with
    SLLM_FUZZ_WRITE_TEMPLATE=tests/fuzz/corpus/h5/tiny_llama_f16.h5 build-fuzz/fuzz_h5_fields -runs=0
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join(ROOT, "tests", "fixtures", "bad")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
H5_TEMPLATE = os.path.join(CORPUS, "h5", "tiny_llama_f16.h5")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"))


class Rng:
    """A small LCG so the tensor bytes are the same on every machine and Python version."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return self.s >> 33

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))

    def floats(self, n, scale=0.05):
        return [((self.next() % 2001) - 1000) / 1000.0 * scale for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------------
# safetensors


def safetensors(header, data=b"", hlen=None):
    """header: dict (dumped as JSON) or raw bytes; hlen overrides the length field."""
    h = header if isinstance(header, bytes) else jdump(header).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def f32s(vals):
    return struct.pack("<%df" % len(vals), *vals)


def good_safetensors():
    rng = Rng(1)
    a = f32s(rng.floats(6))                                  # F32 [2, 3]: 24 bytes at [0, 24)
    b = struct.pack("<4e", *rng.floats(4))                   # F16 [4]: 8 bytes at [24, 32)
    c = b"".join(struct.pack("<f", x)[2:] for x in rng.floats(2))  # BF16 [2]: 4 bytes at [32, 36)
    d = struct.pack("<2q", 7, -1)                            # I64 [2]: 16 bytes at [36, 52)
    hdr = {
        "__metadata__": {"format": "pt"},
        "model.a.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "model.b.bias": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]},
        "model.c": {"dtype": "BF16", "shape": [2], "data_offsets": [32, 36]},
        "ids": {"dtype": "I64", "shape": [2], "data_offsets": [36, 52]},
        "empty": {"dtype": "I32", "shape": [0, 4], "data_offsets": [52, 52]},
    }
    return hdr, a + b + c + d


def bad_safetensors():
    out = {}
    hdr, data = good_safetensors()
    one = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    d16 = f32s([1, 2, 3, 4])

    def with_w(**kw):
        e = dict(one["w"])
        e.update(kw)
        return {"w": e}

    out["empty.safetensors"] = b""
    out["truncated_length.safetensors"] = b"\x10\x00\x00\x00"
    out["header_beyond_file.safetensors"] = safetensors(one, d16, hlen=1000)
    out["header_length_huge.safetensors"] = safetensors(one, d16, hlen=1 << 63)
    out["header_not_json.safetensors"] = safetensors(b'{"w": {"dtype": "F32", ', d16)
    out["header_not_object.safetensors"] = safetensors(b"[1, 2, 3]", d16)
    out["truncated_data.safetensors"] = safetensors(hdr, data)[:-10]
    out["huge_shape.safetensors"] = safetensors(with_w(shape=[1 << 40, 1 << 40]), d16)
    out["shape_vs_offsets.safetensors"] = safetensors(with_w(shape=[4, 4]), d16)
    out["overlapping.safetensors"] = safetensors(
        {"w": one["w"], "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, d16)
    out["offsets_past_end.safetensors"] = safetensors(with_w(data_offsets=[0, 1 << 40]), d16)
    out["offsets_reversed.safetensors"] = safetensors(with_w(data_offsets=[16, 0]), d16)
    out["offsets_negative.safetensors"] = safetensors(with_w(data_offsets=[-16, 0]), d16)
    out["wrong_dtype.safetensors"] = safetensors(with_w(dtype="F8_E4M3"), d16)
    out["dtype_not_string.safetensors"] = safetensors(with_w(dtype=4), d16)
    out["negative_dim.safetensors"] = safetensors(with_w(shape=[-2, -2]), d16)
    out["five_dims.safetensors"] = safetensors(with_w(shape=[1, 1, 2, 2, 1]), d16)
    out["missing_offsets.safetensors"] = safetensors({"w": {"dtype": "F32", "shape": [2, 2]}}, d16)
    # A tensor name that is not UTF-8 (JSON must be): the header does not parse.
    out["non_utf8_name.safetensors"] = safetensors(
        b'{"w\xff\xfe": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}', d16)
    # Sharded: an index naming a shard outside the directory, a missing shard, a tensor its shard lacks, a tensor in
    # two shards.
    w_shard = safetensors(one, d16)
    out["sharded_escape/model.safetensors.index.json"] = jdump({"weight_map": {"w": "../model.safetensors"}})
    out["sharded_missing_shard/model.safetensors.index.json"] = jdump({"weight_map": {"w": "model-1.safetensors"}})
    out["sharded_missing_tensor/model.safetensors.index.json"] = jdump(
        {"weight_map": {"w": "model-1.safetensors", "v": "model-1.safetensors"}})
    out["sharded_missing_tensor/model-1.safetensors"] = w_shard
    out["sharded_duplicate/model.safetensors.index.json"] = jdump(
        {"weight_map": {"w": "model-1.safetensors", "x": "model-2.safetensors"}})
    out["sharded_duplicate/model-1.safetensors"] = w_shard
    out["sharded_duplicate/model-2.safetensors"] = w_shard
    return out


# ---------------------------------------------------------------------------------------------------------------
# config.json

LLAMA = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
         "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
NEOX = {"model_type": "gpt_neox", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "rotary_pct": 0.25}
MPT = {"model_type": "mpt", "vocab_size": 256, "d_model": 48, "n_layers": 2, "n_heads": 4,
       "expansion_ratio": 4, "attn_config": {"alibi": True}}


def bad_configs():
    def llama(**kw):
        c = dict(LLAMA)
        c.update(kw)
        return jdump(c)

    out = {
        "not_json.json": '{"model_type": "llama", ',
        "not_object.json": "[1, 2, 3]",
        "missing_model_type.json": jdump({k: v for k, v in LLAMA.items() if k != "model_type"}),
        "unknown_model_type.json": llama(model_type="bert"),
        "model_type_not_string.json": llama(model_type=7),
        "absurd_vocab.json": llama(vocab_size=1 << 40),
        "absurd_hidden.json": llama(hidden_size=1 << 30),
        "absurd_layers.json": llama(num_hidden_layers=100000),
        "zero_heads.json": llama(num_attention_heads=0, num_key_value_heads=0),
        "negative_ffn.json": llama(intermediate_size=-128),
        "hidden_as_string.json": llama(hidden_size="64"),
        "layers_as_float.json": llama(num_hidden_layers=2.5),
        "missing_hidden.json": jdump({k: v for k, v in LLAMA.items() if k != "hidden_size"}),
        "heads_not_dividing.json": llama(num_key_value_heads=3),
        "head_dim_absurd.json": llama(head_dim=1 << 20),
        "rope_theta_negative.json": llama(rope_theta=-1.0),
        "rope_scaling_linear.json": llama(rope_scaling={"type": "linear", "factor": 2.0}),
        "hidden_act_gelu.json": llama(hidden_act="gelu"),
        "hidden_act_not_string.json": llama(hidden_act=["silu"]),
        "tie_not_bool.json": llama(tie_word_embeddings="yes"),
        "mistral_sliding_window.json": llama(model_type="mistral", sliding_window=4096),
        "neox_rotary_odd.json": jdump(dict(NEOX, rotary_pct=0.1875)),  # 3 of 16 dims
        "falcon_alibi.json": jdump({"model_type": "falcon", "vocab_size": 256, "hidden_size": 64,
                                    "num_hidden_layers": 2, "num_attention_heads": 4, "alibi": True}),
        "mpt_attn_config_not_object.json": jdump(dict(MPT, attn_config=[1])),
        "mpt_learned_positions.json": jdump(dict(MPT, attn_config={"alibi": False})),
        # Values that overflow while the config is derived, before validation (docs/fuzzing.md, finding 1).
        "mpt_expansion_ratio_huge.json": jdump(dict(MPT, expansion_ratio=1e300)),
        "neox_rotary_pct_huge.json": jdump(dict(NEOX, rotary_pct=1e300)),
        "neox_hidden_huge_default_ffn.json": jdump(dict({k: v for k, v in NEOX.items() if k != "intermediate_size"},
                                                        hidden_size=1 << 62)),
        # 2000 levels where an integer should be (test_bad_files.cpp adds 200000 in memory).
        "deep_nesting.json": '{"hidden_size": ' + "[" * 2000 + "]" * 2000 + ", " + llama()[1:].replace(
            '"hidden_size":64,', ""),
    }
    return out


# ---------------------------------------------------------------------------------------------------------------
# tokenizer.json


def minimal_tokenizer(model_extra=None, **top):
    model = {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
    model.update(model_extra or {})
    t = {"model": model}
    t.update(top)
    return t


def bad_tokenizers():
    def tk(model_extra=None, **top):
        return jdump(minimal_tokenizer(model_extra, **top))

    deep = {"type": "NFC"}
    for _ in range(40):
        deep = {"type": "Sequence", "normalizers": [deep]}
    gpt2 = open(os.path.join(ROOT, "tests", "fixtures", "tokenizers", "gpt2", "tokenizer.json"), "rb").read()
    out = {
        "empty.json": "",
        "truncated.json": gpt2[: len(gpt2) // 2],
        "not_object.json": "[1, 2]",
        "no_model.json": "{}",
        "model_type_unknown.json": jdump({"model": {"type": "WordPiece", "vocab": {"a": 0}}}),
        "model_type_unigram.json": jdump({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}),
        "merge_unknown_token.json": jdump({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}),
        "merge_result_missing.json": jdump({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}),
        "merge_not_pair.json": tk({"merges": ["a b", "ab"]}),
        "merge_wrong_type.json": tk({"merges": [17]}),
        "merges_not_array.json": tk({"merges": {"a": "b"}}),
        "vocab_not_object.json": tk({"vocab": ["a", "b"]}),
        "vocab_negative_id.json": tk({"vocab": {"a": -3, "b": 1, "ab": 2}}),
        "vocab_huge_id.json": tk({"vocab": {"a": 2000000000, "b": 1, "ab": 2}}),
        "byte_fallback_not_bool.json": tk({"byte_fallback": "yes"}),
        "normalizer_unknown.json": tk(normalizer={"type": "Lowercase"}),
        "pre_tokenizer_unknown.json": tk(pre_tokenizer={"type": "BertPreTokenizer"}),
        "pre_tokenizer_not_object.json": tk(pre_tokenizer=7),
        "decoder_unknown.json": tk(decoder={"type": "WordPiece"}),
        "regex_does_not_compile.json": tk(normalizer={"type": "Replace", "pattern": {"Regex": "(unclosed"},
                                                      "content": ""}),
        "split_behavior_unknown.json": tk(pre_tokenizer={"type": "Split", "pattern": {"Regex": "a"},
                                                         "behavior": "Sideways"}),
        "post_processor_unknown_special.json": tk(post_processor={
            "type": "TemplateProcessing", "special_tokens": {},
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}]}),
        "added_tokens_not_array.json": tk(added_tokens={"content": "x"}),
        "added_token_no_content.json": tk(added_tokens=[{"id": 3}]),
        "deep_sequence.json": tk(normalizer=deep),
        "deep_brackets.json": '{"model": ' + "[" * 2000,
        # Not UTF-8 inside a JSON string (a vocabulary key): refused by the JSON parser.
        "non_utf8_vocab.json": b'{"model": {"type": "BPE", "vocab": {"a\xff": 0}, "merges": []}}',
    }
    return out


# ---------------------------------------------------------------------------------------------------------------
# GGUF (llama.cpp docs/gguf.md)

GT = {"U8": 0, "I8": 1, "U16": 2, "I16": 3, "U32": 4, "I32": 5, "F32": 6, "BOOL": 7, "STRING": 8, "ARRAY": 9,
      "U64": 10, "I64": 11, "F64": 12}
GFMT = {"U8": "B", "I8": "b", "U16": "H", "I16": "h", "U32": "I", "I32": "i", "F32": "f", "BOOL": "B",
        "U64": "Q", "I64": "q", "F64": "d"}
F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30


def g_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def g_val(t, v):
    if t == "STRING":
        return g_str(v)
    if t == "ARRAY":
        et, items = v
        return struct.pack("<IQ", GT[et], len(items)) + b"".join(g_val(et, x) for x in items)
    if isinstance(t, int):  # a raw (invalid) type id: v is the raw bytes
        return v
    return struct.pack("<" + GFMT[t], v)


def gguf(kvs, tensors, version=3, align=32, n_tensors=None, n_kv=None):
    """kvs: [(key, type, value)]; tensors: [dict(name, dims, type, data, offset=None)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                len(kvs) if n_kv is None else n_kv)
    for k, t, v in kvs:
        out += g_str(k) + struct.pack("<I", GT[t] if isinstance(t, str) else t) + g_val(t, v)
    data = bytearray()
    infos = b""
    for t in tensors:
        off = t.get("offset")
        if off is None:
            off = len(data) + (-len(data)) % align
        if off + len(t["data"]) > len(data) and off < (1 << 24):
            data.extend(b"\0" * (off + len(t["data"]) - len(data)))
        if off < (1 << 24):
            data[off:off + len(t["data"])] = t["data"]
        infos += (g_str(t["name"]) + struct.pack("<I", len(t["dims"])) +
                  b"".join(struct.pack("<Q", d) for d in t["dims"]) + struct.pack("<IQ", t["type"], off))
    out += infos
    out += b"\0" * ((-len(out)) % align)
    return out + bytes(data)


def quantize(ty, n, rng):
    """n elements of ggml type ty (arbitrary but well-formed values)."""
    if ty == F32:
        return f32s(rng.floats(n))
    if ty == F16:
        return struct.pack("<%de" % n, *rng.floats(n))
    if ty == BF16:
        return b"".join(struct.pack("<f", x)[2:] for x in rng.floats(n))
    blocks = n // 32
    d = struct.pack("<e", 0.01)
    if ty == Q8_0:
        return b"".join(d + rng.bytes(32) for _ in range(blocks))
    if ty == Q4_0:
        return b"".join(d + rng.bytes(16) for _ in range(blocks))
    if ty == Q4_1:
        return b"".join(d + struct.pack("<e", -0.05) + rng.bytes(16) for _ in range(blocks))
    raise ValueError(ty)


HIDDEN, FFN, HEADS, KV_HEADS = 32, 32, 4, 2


def llama_tensors(vocab, rng, tied=True, types=None):
    """A one-layer llama in llama.cpp's names and dims (ne0 first), mixing every supported type."""
    kv_dim = HIDDEN // HEADS * KV_HEADS
    spec = [("token_embd.weight", [HIDDEN, vocab], Q8_0),
            ("blk.0.attn_norm.weight", [HIDDEN], F32),
            ("blk.0.attn_q.weight", [HIDDEN, HIDDEN], Q4_0),
            ("blk.0.attn_k.weight", [HIDDEN, kv_dim], Q4_1),
            ("blk.0.attn_v.weight", [HIDDEN, kv_dim], F16),
            ("blk.0.attn_output.weight", [HIDDEN, HIDDEN], BF16),
            ("blk.0.ffn_norm.weight", [HIDDEN], F32),
            ("blk.0.ffn_gate.weight", [HIDDEN, FFN], Q8_0),
            ("blk.0.ffn_up.weight", [HIDDEN, FFN], Q8_0),
            ("blk.0.ffn_down.weight", [FFN, HIDDEN], Q4_0),
            ("output_norm.weight", [HIDDEN], F32)]
    if not tied:
        spec.append(("output.weight", [HIDDEN, vocab], Q4_1))
    out = []
    for name, dims, ty in spec:
        if types == "lean":  # smallest: every matrix Q4_0 (the bad-file cases that are about something else)
            ty = Q4_0 if len(dims) == 2 else ty
        else:
            ty = (types or {}).get(name, ty)
        n = 1
        for x in dims:
            n *= x
        out.append({"name": name, "dims": dims, "type": ty, "data": quantize(ty, n, rng)})
    return out


def llama_kvs(vocab_kvs, **over):
    kvs = [("general.architecture", "STRING", "llama"),
           ("general.name", "STRING", "tiny"),
           ("llama.block_count", "U32", 1),
           ("llama.context_length", "U32", 128),
           ("llama.embedding_length", "U32", HIDDEN),
           ("llama.feed_forward_length", "U32", FFN),
           ("llama.attention.head_count", "U32", HEADS),
           ("llama.attention.head_count_kv", "U32", KV_HEADS),
           ("llama.attention.layer_norm_rms_epsilon", "F32", 1e-5),
           ("llama.rope.freq_base", "F32", 10000.0),
           ("llama.rope.dimension_count", "U32", HIDDEN // HEADS)] + vocab_kvs
    kvs = [(k, *over.pop(k)) if k in over else (k, t, v) for k, t, v in kvs]
    kvs += [(k, t, v) for k, (t, v) in over.items() if (t, v) != (None, None)]
    return [(k, t, v) for k, t, v in kvs if t is not None]


def byte_level_chars():
    """GPT-2's bytes_to_unicode: the printable character for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def gpt2_vocab():
    chars = byte_level_chars()
    # A small alphabet keeps the files small: other bytes have no token and are dropped, as HF does without unk.
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chars[b] for b in b" .,!?'0123456789\n"] + \
        [chars[b] for b in range(ord("a"), ord("z") + 1)]
    merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("i", "n"), ("\u0120", "a"), ("e", "r")]
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    kvs = [("tokenizer.ggml.model", "STRING", "gpt2"),
           ("tokenizer.ggml.pre", "STRING", "smollm"),
           ("tokenizer.ggml.tokens", "ARRAY", ("STRING", tokens)),
           ("tokenizer.ggml.token_type", "ARRAY", ("I32", [3, 3, 3] + [1] * (len(tokens) - 3))),
           ("tokenizer.ggml.merges", "ARRAY", ("STRING", [a + " " + b for a, b in merges])),
           ("tokenizer.ggml.bos_token_id", "U32", 1),
           ("tokenizer.ggml.eos_token_id", "U32", 2),
           ("tokenizer.ggml.add_bos_token", "BOOL", 0),
           ("tokenizer.chat_template", "STRING",
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")]
    return tokens, kvs


def spm_vocab():
    words = ["\u2581", "\u2581t", "h", "e", "he", "\u2581the", "a", "\u2581a", "n", "d", "an", "and", "\u2581and"]
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + words
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(words))]
    kvs = [("tokenizer.ggml.model", "STRING", "llama"),
           ("tokenizer.ggml.tokens", "ARRAY", ("STRING", tokens)),
           ("tokenizer.ggml.scores", "ARRAY", ("F32", scores)),
           ("tokenizer.ggml.token_type", "ARRAY", ("I32", [2, 3, 3] + [6] * 256 + [1] * len(words))),
           ("tokenizer.ggml.bos_token_id", "U32", 1),
           ("tokenizer.ggml.eos_token_id", "U32", 2),
           ("tokenizer.ggml.unknown_token_id", "U32", 0),
           ("tokenizer.ggml.add_bos_token", "BOOL", 1)]
    return tokens, kvs


def good_ggufs():
    tok_bpe, kv_bpe = gpt2_vocab()
    tok_spm, kv_spm = spm_vocab()
    return {
        "tiny_bpe.gguf": gguf(llama_kvs(kv_bpe), llama_tensors(len(tok_bpe), Rng(2))),
        "tiny_spm.gguf": gguf(llama_kvs(kv_spm), llama_tensors(len(tok_spm), Rng(3), tied=False)),
        "no_tokenizer.gguf": gguf(llama_kvs([("llama.vocab_size", "U32", 40)]),
                                  llama_tensors(40, Rng(4), types={"token_embd.weight": F16})),
    }


def bad_ggufs():
    tok, kv_bpe = gpt2_vocab()
    V = len(tok)
    rng = Rng(5)
    good = gguf(llama_kvs(kv_bpe), llama_tensors(V, rng, types="lean"))
    name = [("general.name", "STRING", "x")]
    small = [{"name": "w", "dims": [32, 2], "type": F32, "data": f32s([0.0] * 64)}]

    def model(tensors=None, **over):
        return gguf(llama_kvs(kv_bpe, **over), tensors if tensors is not None else lean())

    def lean():
        return llama_tensors(V, Rng(5), types="lean")

    def without(name_):
        return [t for t in lean() if t["name"] != name_]

    def changed(name_, **kw):
        ts = lean()
        for t in ts:
            if t["name"] == name_:
                t.update(kw)
        return ts

    nested = ("ARRAY", [])
    for _ in range(9):
        nested = ("ARRAY", [nested])
    tokens_bad_utf8 = [t.encode() for t in tok]
    tokens_bad_utf8[5] = b"\xff\xfe"
    kv_bad_utf8 = [(k, t, ("STRING", tokens_bad_utf8) if k == "tokenizer.ggml.tokens" else v) for k, t, v in kv_bpe]
    out = {
        # Container (GgufFile::open).
        "empty.gguf": b"",
        "bad_magic.gguf": b"GGML" + good[4:],
        "truncated_header.gguf": good[:12],
        "version1.gguf": gguf(name, [], version=1),
        "big_endian.gguf": b"GGUF" + struct.pack(">I", 3) + good[8:],
        "version_future.gguf": gguf(name, [], version=4),
        "kv_count_huge.gguf": gguf(name, [], n_kv=1 << 60),
        "tensor_count_huge.gguf": gguf(name, [], n_tensors=1 << 60),
        "key_too_long.gguf": b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 70000) + b"k" * 70,
        "key_empty.gguf": gguf([("", "STRING", "x")], []),
        "string_past_end.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + g_str("general.name") +
                                struct.pack("<IQ", GT["STRING"], 1000) + b"tiny",
        "string_length_huge.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + g_str("general.name") +
                                   struct.pack("<IQ", GT["STRING"], (1 << 64) - 1) + b"tiny",
        "array_count_huge.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + g_str("tokenizer.ggml.tokens") +
                                 struct.pack("<IIQ", GT["ARRAY"], GT["STRING"], 1 << 61) + b"\0" * 64,
        "array_nested_too_deep.gguf": gguf([("x", "ARRAY", nested)], []),
        "array_element_type_unknown.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + g_str("x") +
                                           struct.pack("<IIQ", GT["ARRAY"], 77, 1) + b"\0" * 16,
        "value_type_unknown.gguf": gguf([("general.name", 99, b"\0" * 8)], []),
        "bool_not_0_or_1.gguf": gguf([("general.flag", "BOOL", 2)], []),
        "duplicate_key.gguf": gguf(name + name, []),
        "alignment_not_power_of_two.gguf": gguf([("general.alignment", "U32", 48)], small),
        "alignment_wrong_type.gguf": gguf([("general.alignment", "STRING", "32")], small),
        "n_dims_5.gguf": gguf(name, [dict(small[0], dims=[32, 1, 1, 1, 2])]),
        "dim_zero.gguf": gguf(name, [dict(small[0], dims=[32, 0])]),
        "dims_overflow.gguf": gguf(name, [dict(small[0], dims=[1 << 32, 1 << 32])]),
        "type_unsupported.gguf": gguf(name, [dict(small[0], type=12)]),
        "row_not_whole_blocks.gguf": gguf(name, [dict(small[0], dims=[33, 2], type=Q8_0, data=b"\0" * 68)]),
        "offset_misaligned.gguf": gguf(name, [dict(small[0], offset=4)]),
        "offset_past_end.gguf": gguf(name, [dict(small[0], offset=1 << 40)]),
        "duplicate_tensor.gguf": gguf(name, [small[0], dict(small[0])]),
        "overlapping_tensors.gguf": gguf(name, [small[0], dict(small[0], name="v", offset=224)]),
        "name_too_long.gguf": gguf(name, [dict(small[0], name="t" * 64)]),
        "name_empty.gguf": gguf(name, [dict(small[0], name="")]),
        "truncated_data.gguf": good[:-100],
        # Model import (load_gguf: llama.* metadata, weights, tokenizer).
        "architecture_gpt2.gguf": model(**{"general.architecture": ("STRING", "gpt2")}),
        "missing_embedding_length.gguf": model(**{"llama.embedding_length": (None, None)}),
        "embedding_length_huge.gguf": model(**{"llama.embedding_length": ("U64", 1 << 40)}),
        "block_count_string.gguf": model(**{"llama.block_count": ("STRING", "1")}),
        "heads_not_dividing_hidden.gguf": model(**{"llama.attention.head_count": ("U32", 5)}),
        "kv_heads_not_dividing.gguf": model(**{"llama.attention.head_count_kv": ("U32", 3)}),
        "epsilon_wrong_type.gguf": model(**{"llama.attention.layer_norm_rms_epsilon": ("U32", 1)}),
        "vocab_size_disagrees.gguf": model(**{"llama.vocab_size": ("U32", V + 1)}),
        "rope_scaling_yarn.gguf": model(**{"llama.rope.scaling.type": ("STRING", "yarn")}),
        "missing_tensor.gguf": model(without("blk.0.ffn_up.weight")),
        "unexpected_tensor.gguf": model(lean() + [dict(small[0], name="blk.7.attn_q.weight")]),
        "tensor_shape_mismatch.gguf": model(changed("blk.0.attn_q.weight", dims=[32, 16], data=b"\0" * 288)),
        "tokenizer_model_unknown.gguf": model(**{"tokenizer.ggml.model": ("STRING", "bert")}),
        "token_not_utf8.gguf": gguf(llama_kvs(kv_bad_utf8), lean()),
        "token_type_short.gguf": model(**{"tokenizer.ggml.token_type": ("ARRAY", ("I32", [1, 1, 1]))}),
        "merge_not_a_pair.gguf": model(**{"tokenizer.ggml.merges": ("ARRAY", ("STRING", ["he"]))}),
        "pre_tokenizer_missing.gguf": model(**{"tokenizer.ggml.pre": (None, None)}),
        "pre_tokenizer_unknown.gguf": model(**{"tokenizer.ggml.pre": ("STRING", "chameleon")}),
        "bos_out_of_range.gguf": model(**{"tokenizer.ggml.bos_token_id": ("U32", V + 5)}),
    }
    tok_s, kv_spm = spm_vocab()
    scores = [0.0] * len(tok_s)
    scores[7] = float("nan")
    kv_nan = [(k, t, ("F32", scores) if k == "tokenizer.ggml.scores" else v) for k, t, v in kv_spm]
    out["spm_score_nan.gguf"] = gguf(llama_kvs(kv_nan), llama_tensors(len(tok_s), Rng(6), types="lean"))
    kv_short = [(k, t, ("F32", [0.0] * 5) if k == "tokenizer.ggml.scores" else v) for k, t, v in kv_spm]
    out["spm_scores_short.gguf"] = gguf(llama_kvs(kv_short), llama_tensors(len(tok_s), Rng(6), types="lean"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# native .h5 (byte-level damage to a tiny file our save_h5 wrote)


def bad_h5():
    if not os.path.exists(H5_TEMPLATE):
        print("skipping h5 cases: %s is missing" % H5_TEMPLATE)
        return {}
    good = open(H5_TEMPLATE, "rb").read()
    assert good[:8] == b"\x89HDF\r\n\x1a\n", "not an HDF5 file"

    def patched(at, data):
        return good[:at] + data + good[at + len(data):]

    return {
        "empty.h5": b"",
        "signature_only.h5": good[:8],
        "truncated_superblock.h5": good[:40],
        "truncated_half.h5": good[: len(good) // 2],
        "truncated_last_byte.h5": good[:-1],
        "bad_signature.h5": patched(0, b"\x89HDF\r\n\x1a\x00"),
        "superblock_version_9.h5": patched(8, b"\x09"),
        # Superblock v2/v3: the end-of-file address (offset 28, 8 bytes) claims a file 2^40 bytes long.
        "eof_address_huge.h5": patched(28, struct.pack("<Q", 1 << 40)),
        "superblock_checksum.h5": patched(44, b"\x00\x00\x00\x00"),
    }


# ---------------------------------------------------------------------------------------------------------------
# libFuzzer dictionaries (tests/fuzz/<target>.dict): the words each parser looks for, so mutations reach the checks
# behind them (e.g. an "expansion_ratio" of 1e300) in seconds instead of hours.

DICT_WORDS = {
    "config": [
        "model_type", "llama", "mistral", "gpt_neox", "falcon", "RefinedWeb", "mpt", "vocab_size", "hidden_size",
        "d_model", "num_hidden_layers", "n_layer", "n_layers", "num_attention_heads", "n_head", "n_heads",
        "num_key_value_heads", "num_kv_heads", "head_dim", "intermediate_size", "ffn_hidden_size", "expansion_ratio",
        "max_position_embeddings", "max_seq_len", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
        "hidden_act", "activation", "silu", "gelu", "gelu_new", "relu", "rope_theta", "rotary_emb_base",
        "rope_parameters", "rope_scaling", "rope_type", "default", "linear", "rotary_pct", "partial_rotary_factor",
        "tie_word_embeddings", "sliding_window", "use_parallel_residual", "new_decoder_architecture", "multi_query",
        "parallel_attn", "num_ln_in_parallel_attn", "alibi", "attn_config", "alibi_bias_max", "clip_qkv",
        "softmax_scale", "qk_ln", "bos_token_id", "eos_token_id",
        # our native schema (model/config_json.h)
        "config_version", "family", "hidden", "n_kv_heads", "ffn", "max_positions", "norm", "norm_eps", "mlp",
        "parallel_residual", "shared_norm", "qkv", "pos", "rot_dims", "rope_interleaved", "attn_scale", "tied_head",
        "bos_id", "eos_id", "rmsnorm", "layernorm", "swiglu", "gelu_erf", "gelu_tanh", "separate", "grouped",
        "blocked", "rope",
    ],
    "tokenizer": [
        "model", "type", "BPE", "WordPiece", "Unigram", "vocab", "merges", "unk_token", "fuse_unk", "byte_fallback",
        "ignore_merges", "continuing_subword_prefix", "end_of_word_suffix", "dropout", "normalizer", "normalizers",
        "pre_tokenizer", "pretokenizers", "post_processor", "processors", "decoder", "decoders", "added_tokens",
        "Sequence", "Prepend", "prepend", "Replace", "Strip", "NFC", "ByteLevel", "add_prefix_space", "use_regex",
        "trim_offsets", "Split", "pattern", "String", "Regex", "behavior", "Isolated", "Removed", "Contiguous",
        "MergedWithPrevious", "MergedWithNext", "invert", "Digits", "individual_digits", "Metaspace", "replacement",
        "prepend_scheme", "first", "always", "never", "split", "WhitespaceSplit", "TemplateProcessing", "single",
        "special_tokens", "SpecialToken", "id", "ids", "tokens", "type_id", "RobertaProcessing", "BertProcessing",
        "sep", "cls", "ByteFallback", "Fuse", "content", "start", "stop", "strip_left", "strip_right", "lstrip",
        "rstrip", "single_word", "normalized", "special", "<s>", "</s>", "<unk>", "<0x41>", "\u2581", "(?i:",
        "\\p{L}", "\\s+(?!\\S)",
    ],
    "safetensors": ["dtype", "shape", "data_offsets", "__metadata__", "F32", "F16", "BF16", "I32", "I64", "F64",
                    "U8"],
    "gguf": [
        "GGUF", "general.architecture", "general.alignment", "general.name", "llama", "llama.block_count",
        "llama.context_length", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
        "llama.attention.head_count_kv", "llama.attention.key_length", "llama.attention.value_length",
        "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "llama.rope.dimension_count",
        "llama.rope.scaling.type", "llama.rope.scale_linear", "llama.expert_count", "llama.vocab_size",
        "tokenizer.ggml.model", "gpt2", "tokenizer.ggml.pre", "smollm", "llama-bpe", "qwen2", "gpt-2",
        "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores", "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template", "token_embd.weight", "output_norm.weight",
        "output.weight", "rope_freqs.weight", "blk.0.", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
        "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", ".weight", ".bias",
    ],
}


def dict_entry(word):
    # libFuzzer's format: one quoted string per line, non-printable bytes as \xNN.
    return '"' + "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\x%02X" % ord(c)
                         for c in word.encode("utf-8").decode("latin-1")) + '"'


# Numbers at the edges (JSON spellings): the mutators rarely grow a digit string to 19 digits on their own.
JSON_NUMBERS = ["0", "-1", "1e300", "-1e300", "1e-300", "1e39", "0.5", "2147483647", "2147483648", "4294967296",
                "4611686018427387904", "9223372036854775807", "-9223372036854775808", "18446744073709551615",
                "18446744073709551616", "1099511627776"]


def write_dicts():
    for target, words in DICT_WORDS.items():
        lines = ["# libFuzzer dictionary for fuzz_%s, written by scripts/make_bad_files.py" % target]
        if target in ("config", "tokenizer", "safetensors"):
            lines += [dict_entry(n) for n in JSON_NUMBERS]
        for w in words:
            if target in ("config", "tokenizer", "safetensors"):
                lines.append(dict_entry(json.dumps(w, ensure_ascii=False)))  # JSON keys and strings, quoted
            else:
                lines.append(dict_entry(w))
                lines.append(dict_entry(struct.pack("<Q", len(w)).decode("latin-1") + w))  # a GGUF string
        write(os.path.join(ROOT, "tests", "fuzz", target + ".dict"), "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------------------


def main():
    write_dicts()
    cases = {"safetensors": bad_safetensors(), "config": bad_configs(), "tokenizer": bad_tokenizers(),
             "gguf": bad_ggufs(), "h5": bad_h5()}
    shutil.rmtree(BAD, ignore_errors=True)
    for fmt, files in cases.items():
        for rel, data in files.items():
            write(os.path.join(BAD, fmt, rel), data)

    # Seed corpora: a few valid files per format, then the small bad files (the model-level GGUF cases are near
    # copies of the valid seeds; a directory case cannot be a seed).
    seeds = {"safetensors": {}, "config": {}, "tokenizer": {}, "gguf": {}, "h5": {}}
    hdr, data = good_safetensors()
    seeds["safetensors"]["tiny_all_dtypes.safetensors"] = safetensors(hdr, data)
    seeds["safetensors"]["no_tensors.safetensors"] = safetensors({"__metadata__": {"a": "b"}})
    fx = os.path.join(ROOT, "tests", "fixtures")
    for name in ("tiny_bpe.golden.safetensors",):
        seeds["safetensors"][name] = open(os.path.join(fx, "gguf", name), "rb").read()
    for d in sorted(os.listdir(os.path.join(fx, "models"))):
        p = os.path.join(fx, "models", d, "config.json")
        if os.path.exists(p):
            seeds["config"][d + ".json"] = open(p, "rb").read()
    for d in sorted(os.listdir(os.path.join(fx, "tokenizers"))):
        seeds["tokenizer"][d + ".json"] = open(os.path.join(fx, "tokenizers", d, "tokenizer.json"), "rb").read()
    seeds["tokenizer"]["minimal.json"] = jdump(minimal_tokenizer())
    seeds["gguf"].update(good_ggufs())
    for fmt, files in cases.items():
        for rel, blob in files.items():
            if "/" not in rel and len(blob) <= 4096:
                seeds[fmt]["bad_" + rel] = blob
    for fmt, files in seeds.items():
        d = os.path.join(CORPUS, fmt)
        # Keep files this script does not make (the h5 template); replace the ones it does.
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith("bad_") or f in files:
                    os.remove(os.path.join(d, f))
        for rel, blob in files.items():
            if len(blob) > 64 * 1024:
                raise SystemExit("seed %s/%s is %d bytes (limit 64 KiB)" % (fmt, rel, len(blob)))
            write(os.path.join(d, rel), blob)
    n_bad = sum(len(v) for v in cases.values())
    n_seed = sum(len(v) for v in seeds.values())
    print("wrote %d bad files under %s and %d seeds under %s" % (n_bad, os.path.relpath(BAD, ROOT), n_seed,
                                                                 os.path.relpath(CORPUS, ROOT)))


if __name__ == "__main__":
    main()
