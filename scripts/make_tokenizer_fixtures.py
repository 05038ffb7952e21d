#!/usr/bin/env python3
"""Make the tokenizer test fixtures under tests/fixtures/tokenizers/ with the HF `tokenizers` library.

The HF hub is not reachable from our machines, so instead of downloading GPT-2 / Llama tokenizers we TRAIN small
ones (vocab ~500-1000) configured exactly like the real families, save their tokenizer.json, and record what HF
`tokenizers` does with them (golden.json): encode ids with and without add_special_tokens, and decode with and
without skip_special_tokens, for ~50 tricky strings and a set of random id sequences. The C++ tests
(tests/test_tokenizer.cpp) read only these committed outputs.

Fixtures (one directory each):
  gpt2              ByteLevel(regex, add_prefix_space=false), legacy "a b" merges, <|endoftext|>, an lstrip <mask>
                    and a single_word added token.
  neox              Like Pythia/GPT-NeoX-20B: NFC normalizer, added whitespace-run tokens (normalized=true).
  roberta           ByteLevel(add_prefix_space=true) + RobertaProcessing, <mask> with lstrip.
  llama3            Split(Llama-3 regex) + ByteLevel(use_regex=false), ignore_merges, Sequence[ByteLevel,
                    TemplateProcessing(<|begin_of_text|> $A)], <|im_start|>/<|im_end|>.
  smollm2           Sequence[Digits(individual), ByteLevel(regex)] like SmolLM2's tokenizer.json.
  llama2            SentencePiece-style BPE with byte_fallback: normalizer Prepend("▁")+Replace(" ","▁"), <0x00>..<0xFF>
                    in the vocab, TemplateProcessing(<s> $A), decoder Replace/ByteFallback/Fuse/Strip; legacy merges.
  llama2_metaspace  Same model with the newer Metaspace(prepend_scheme=first, split=false) pre-tokenizer.

It also writes src/tokenizer/nfc_tables.inc, the Unicode canonical decomposition / combining class tables that
the C++ NFC normalizer (GPT-NeoX, Pythia, Qwen use {"type": "NFC"}) needs, from Python's unicodedata.

Run by hand from the repository root:  /work/venv/bin/python scripts/make_tokenizer_fixtures.py
"""
import glob
import json
import os
import random
import sys

import unicodedata

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


# ----------------------------------------------------------------------------------------------------------------
# Training corpus: generated multilingual text + the system's license files (plain English prose).

def corpus():
    rng = random.Random(1234)
    words = ("the quick brown fox jumps over lazy dog streaming attention sink cache token model layer "
             "hello world people government language system program number because through between "
             "running walked talking played it's don't won't they'll we're you've I'm she'd").split()
    multi = ["日本語のテキストです。", "中文文本处理。", "한국어 텍스트입니다.", "Привет, как дела?", "Γειά σου Κόσμε",
             "naïve café résumé façade", "Übergrößenträger straße", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
             "¿Qué tal? ¡Muy bien!", "😀 😃 👍 🎉", "Ünïcödé ÀÉÎÕÜ"]
    lines = []
    for _ in range(3000):
        n = rng.randint(3, 15)
        s = " ".join(rng.choice(words) for _ in range(n))
        r = rng.random()
        if r < 0.2:
            s = s.capitalize() + "."
        elif r < 0.3:
            s += " " + str(rng.randint(0, 10 ** rng.randint(1, 8)))
        elif r < 0.4:
            s += " " + rng.choice(multi)
        elif r < 0.45:
            s = "    def f(x):\n        return x * " + str(rng.randint(1, 99)) + "  # " + s
        elif r < 0.5:
            s = s.upper()
        lines.append(s)
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                lines.extend(f.read().splitlines())
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Test strings. Every fixture encodes all of them (special tokens of other families are just text there).

def test_strings():
    s = [
        "", " ", "  ", "\n", "\t\t", "\r\n", "a",
        "Hello", "Hello world", " Hello world", "   leading spaces", "trailing spaces   ", "ends with space ",
        "Hello,   world!  \n\n  New paragraph.\tTab\there.\n",
        "x\u00a0y\u2003z\u3000w\u1680v\u180eu\u200bt\ufeffs\x1cr\x0bq\x0cp\x85o\u2028n\u2029m",
        "I'm sure they'll say it's 'fine' - we've heard THEY'LL and IT'S and You'RE and 'S 's 'll 'LL 'd 'D",
        "1234567 12 123 1,000,000 3.14159 \u0663\u0664\u0665 \u00b9\u00b2\u00b3 \u216b 0007 99999999999",
        "naïve café résumé façade", "e\u0301 a\u0300 n\u0303 \u212b \u1e9b\u0323 \u1100\u1161\u11a8 \u0344 Å",
        "日本語のテキスト、中文文本，한국어 텍스트", "Привет, мир! Γειά σου Κόσμε", "مرحبا بالعالم שלום עולם",
        "नमस्ते दुनिया สวัสดีชาวโลก", "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇩🇪 😀😁", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \U0010fffd",
        "def f(x):\n    return x**2  # comment\n\n\n", "if (a != b && c <= d) { return -1; } // done",
        "URL: https://example.com/path?q=1&r=2#frag email@domain.org",
        "ALL CAPS SHOUTING and MiXeD CaSe", "a" * 40, "x" * 300, "!!!???...,,,;;;~~~```",
        "\u2019curly\u2019 quotes \u201cdouble\u201d \u2014 dash \u2026", "\x00 null \x01 ctrl \x7f del",
        "\u01c4 \u01c5 \u01c6 ß ẞ İ ı \ufb01 ligature \u017ft", "  \n  \n\t \t", "\n\n\nhi\n\n\n",
        "Hello<|endoftext|>world", "<|endoftext|><|endoftext|>", " <|endoftext|> spaced ",
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", "<|begin_of_text|>Hi <|eot|>",
        "<s>Hello</s>", " <s> spaced </s> ", "<unk>", "<mask> and   <mask>x<mask>  ",
        "wordtok wordtoks xwordtok wordtok. (wordtok)", "two  spaces   three    four     five      six",
        "<extra_id> a<extra_id>b", "<0x41> <0xE4>", "tabs\tand\u00a0nbsp",
        # U+180E is \s for PCRE2 but not for Oniguruma; \x1c is whitespace for Python but not for Rust.
        "a   \u180e b ^\u180e's \x1c\x1c  x",
        # single_word neighbours: letters, marks, digits and underscore are word characters.
        "éwordtok wordtok日 _wordtok 1wordtok wordtok\u0301 -wordtok- \u00a0wordtok\u3000",
        # NFC: reordering of marks, singletons, composition exclusions, Hangul LV+T.
        "a\u0301\u0328 a\u0328\u0301 q\u0307\u0323 \u1e0b\u0323 \u2126 \u0958 \uac00\u11a8 \u0344\u0308",
    ]
    with open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8") as f:
        s.append(f.read()[:2500])
    return s


# ----------------------------------------------------------------------------------------------------------------

def train_bytelevel(pre_tokenizer, specials, vocab_size=800):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=tr)
    tok.decoder = decoders.ByteLevel()
    return json.loads(tok.to_str())


def train_sentencepiece_like():
    """A Llama-2-like model: BPE over ▁-words, small alphabet so that rare characters go through byte fallback."""
    lines = corpus()
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", "merged_with_next")
    tr = trainers.BpeTrainer(vocab_size=900, special_tokens=[], show_progress=False)
    tok.train_from_iterator(lines, trainer=tr)
    trained = json.loads(tok.to_str())["model"]
    # Keep a small alphabet (the trainer's limit_alphabet breaks ties nondeterministically): the most frequent
    # characters plus a couple of multi-byte ones; drop every token and merge that needs another character.
    counts = {}
    for line in lines:
        for ch in line.replace(" ", "▁"):
            counts[ch] = counts.get(ch, 0) + 1
    alphabet = set(sorted(counts, key=lambda c: (-counts[c], c))[:85]) | {"▁", "é", "本"}
    ok = lambda t: all(ch in alphabet for ch in t)
    merges = [m if isinstance(m, list) else m.split(" ") for m in trained["merges"]]
    merges = [" ".join(m) for m in merges if ok(m[0]) and ok(m[1])]
    # Llama-2 layout: <unk> <s> </s>, then the 256 byte tokens, then the learned pieces.
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab and ok(t):
            vocab[t] = len(vocab)
    return vocab, merges


def added(id_, content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def legacy_merges(model):
    model["merges"] = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]


def template(bos):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [0], "tokens": [bos]}}}


def append_added(j, content, **kw):
    """Add a token that is not in the model vocab, at the next free id (what HF itself would assign)."""
    nid = max([v for v in j["model"]["vocab"].values()] + [t["id"] for t in j["added_tokens"]]) + 1
    j["added_tokens"].append(added(nid, content, **kw))
    return nid


def make_configs():
    cfg = {}

    # (a) GPT-2: the original byte-level BPE.
    j = train_bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), ["<|endoftext|>"])
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    legacy_merges(j["model"])
    append_added(j, "<mask>", special=True, lstrip=True)
    append_added(j, "wordtok", special=False, normalized=True, single_word=True)
    cfg["gpt2"] = j

    # GPT-NeoX / Pythia: NFC normalizer, runs of spaces as added (normalized, non-special) tokens.
    j = train_bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                        ["<|endoftext|>", "<|padding|>"])
    j["normalizer"] = {"type": "NFC"}
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    for n in (4, 3, 2):   # deliberately not in length order: matching must still be longest-first
        append_added(j, " " * n, special=False, normalized=True)
    append_added(j, "\t\t", special=False, normalized=False, rstrip=True)
    cfg["neox"] = j

    # RoBERTa-style: add_prefix_space + RobertaProcessing (<s> A </s>).
    j = train_bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
                        ["<s>", "<pad>", "</s>", "<unk>"])
    j["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                           "trim_offsets": True, "add_prefix_space": True}
    append_added(j, "<mask>", special=True, lstrip=True)
    cfg["roberta"] = j

    # (b) Llama-3: Split with the Llama-3 regex, then ByteLevel without its own regex; ignore_merges.
    j = train_bytelevel(pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(LLAMA3_REGEX), "isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]),
        ["<|begin_of_text|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    j["model"]["ignore_merges"] = True
    tp = template("<|begin_of_text|>")
    tp["special_tokens"]["<|begin_of_text|>"]["ids"] = [j["model"]["vocab"]["<|begin_of_text|>"]]
    j["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}, tp]}
    append_added(j, "<|eot|>", special=True, rstrip=True)
    cfg["llama3"] = j

    # SmolLM2: Digits(individual_digits) then the GPT-2 ByteLevel regex.
    j = train_bytelevel(pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    cfg["smollm2"] = j

    # (c) Llama-2: SentencePiece-style BPE with byte fallback.
    vocab, merges = train_sentencepiece_like()
    base = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": template("<s>"),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    base["post_processor"]["special_tokens"]["<s>"]["ids"] = [1]
    j = json.loads(json.dumps(base))
    append_added(j, "<extra_id>", special=False, normalized=True)
    cfg["llama2"] = j

    j = json.loads(json.dumps(base))
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    j["model"]["merges"] = [m.split(" ") for m in merges]
    cfg["llama2_metaspace"] = j
    return cfg


def random_id_cases(tok, rng, n_vocab):
    """Random id sequences (incl. specials, byte tokens, ids past the vocab) to check decode on odd input."""
    cases = []
    for i in range(40):
        n = rng.randint(1, 14)
        ids = []
        for _ in range(n):
            r = rng.random()
            if r < 0.15:
                ids.append(rng.randint(0, 6))            # specials live at the start
            elif r < 0.45:
                ids.append(rng.randint(0, min(300, n_vocab - 1)))   # byte tokens / single bytes
            elif r < 0.97:
                ids.append(rng.randint(0, n_vocab - 1))
            else:
                ids.append(n_vocab + 100)                # unknown id: HF skips it
        cases.append(ids)
    return cases


def write_nfc_tables(path):
    """Canonical decompositions (one level; `compose` marks primary composites) and non-zero combining classes."""
    dec, ccc = [], []
    for cp in range(0x110000):
        ch = chr(cp)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            assert len(parts) in (1, 2)
            compose = len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch
            dec.append((cp, parts[0], parts[1] if len(parts) == 2 else 0, int(compose)))
        c = unicodedata.combining(ch)
        if c:
            if ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == c:
                ccc[-1][1] = cp
            else:
                ccc.append([cp, cp, c])
    with open(path, "w") as f:
        f.write("// Generated by scripts/make_tokenizer_fixtures.py from Python's unicodedata (Unicode %s).\n"
                % unicodedata.unidata_version)
        f.write("// Do not edit. Canonical decompositions {cp, first, second (0 = singleton), is_primary_composite}\n")
        f.write("// sorted by cp (Hangul syllables are algorithmic and not listed), then combining-class ranges.\n")
        f.write("static constexpr NfcDecomp kNfcDecomp[] = {\n")
        for i in range(0, len(dec), 4):
            f.write("  " + " ".join("{0x%X,0x%X,0x%X,%d}," % e for e in dec[i:i + 4]) + "\n")
        f.write("};\nstatic constexpr NfcClass kNfcClass[] = {\n")
        for i in range(0, len(ccc), 5):
            f.write("  " + " ".join("{0x%X,0x%X,%d}," % tuple(e) for e in ccc[i:i + 5]) + "\n")
        f.write("};\n")
    print("nfc tables: %d decompositions, %d combining-class ranges -> %s" % (len(dec), len(ccc), path))


def main():
    write_nfc_tables(os.path.join(ROOT, "src", "tokenizer", "nfc_tables.inc"))
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(42)
    texts = test_strings()
    for name, j in make_configs().items():
        s = json.dumps(j, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_str(s)          # HF must accept exactly what we commit
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(s)
        n_vocab = tok.get_vocab_size(with_added_tokens=True)
        cases = []
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            ids_sp = tok.encode(t, add_special_tokens=True).ids
            cases.append({"text": t, "ids": ids, "ids_special": ids_sp,
                          "decoded": tok.decode(ids_sp, skip_special_tokens=False),
                          "decoded_skip": tok.decode(ids_sp, skip_special_tokens=True)})
        dcases = []
        for ids in random_id_cases(tok, rng, n_vocab):
            dcases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                           "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
        golden = {"tokenizer": name, "hf_tokenizers_version": tokenizers.__version__,
                  "vocab_size_with_added": n_vocab, "encode": cases, "decode": dcases}
        with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False, indent=None, separators=(",", ":"))
            f.write("\n")
        print("%-18s vocab %4d  tokenizer.json %6d B  golden.json %6d B" % (
            name, n_vocab, os.path.getsize(os.path.join(d, "tokenizer.json")),
            os.path.getsize(os.path.join(d, "golden.json"))))


if __name__ == "__main__":
    sys.exit(main())
