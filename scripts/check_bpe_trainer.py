"""Checks streamllm's byte-level BPE trainer against HF `tokenizers` and writes the golden ids the C++ test uses.

1. Trains a tokenizer with our CLI (`streamllm tokenizer train --vocab 600`) on the committed corpus
   tests/fixtures/bpe/corpus.txt.
2. Loads the tokenizer.json with HF `tokenizers` (it must load), checks the vocabulary size, the <|endoftext|> id
   and that decode(encode(text)) == text for every test string.
3. Writes tests/fixtures/bpe/expected.json: the tokenizer's FNV-1a id (so the C++ test can tell that retraining
   gives the identical file) and HF's ids for each test string. tests/test_bpe_trainer.cpp retrains with the same
   input and checks that our own encoder gives the same ids.
4. Trains HF's own BpeTrainer on the same corpus (same pre-tokenizer, same vocabulary size), prints how many
   merges the two trainers share, and stores HF's merges in expected.json: the C++ test checks that ours are the
   same list (our tie rule is HF's id order; see train/bpe_trainer.h).
   `--compare FILE --vocab N` runs only this comparison, on any text file, and writes nothing.

Run by hand after building (the venv from scripts/requirements-fixtures.txt has tokenizers 0.23.3):
    /work/venv/bin/python scripts/check_bpe_trainer.py --bin build/streamllm
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "bpe")
VOCAB = 600

CASES = [
    "",
    "Hello, world!",
    "In the beginning God created the heaven and the earth.",
    "And God said, Let there be light: and there was light.\nAnd God saw the light, that it was good.\n",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\r\n\n\n  indented line\n",
    "numbers 12345 and 3.14159, -17, 1e-9, 0xFF",
    "it's we're they've I'm you'll he'd IT'S",
    "naïve café — “quotes” … ünïcödé Straße",
    "日本語のテキストと中文句子",
    "emoji 😀🚀 and a ZWJ sequence 👩‍💻 and flags 🇫🇷",
    "<|endoftext|>between<|endoftext|> documents <|endoftext|>",
    "control \x00\x01\x1b[31m\x7f characters",
    "no\u00a0break\u3000ideographic\u2028line separator",
    "streamllm ppl -m MODEL -f long.txt --cache dense,window,streaming --sinks 4 --window 1020",
    "unseen words: zyzzyva quixotic xylophone Ωμέγα",
]


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def hf_trainer_merges(text, vocab=VOCAB):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Our trainer reads a text file as one sequence and cuts out <|endoftext|> (encoding matches it as a special
    # token); HF's trainer does not, so give it the pieces between the special tokens.
    tok.train_from_iterator(text.split("<|endoftext|>"), trainer)
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(tok.to_str())["model"]["merges"]]


def compare(args):
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "tokenizer.json")
        subprocess.run([args.bin, "tokenizer", "train", "--vocab", str(args.vocab), "-o", out, "--no-progress",
                        args.compare], check=True)
        with open(out, encoding="utf-8") as f:
            mine = [tuple(m) for m in json.load(f)["model"]["merges"]]
    with open(args.compare, encoding="utf-8") as f:
        hf = hf_trainer_merges(f.read(), args.vocab)
    same_prefix = next((i for i, (a, b) in enumerate(zip(mine, hf)) if a != b), min(len(mine), len(hf)))
    print(f"merges: ours {len(mine)}, HF BpeTrainer {len(hf)}; identical first {same_prefix}; "
          f"shared {len(set(mine) & set(hf))} of {len(mine)}")
    return 0 if mine == hf else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "streamllm"), help="the streamllm executable")
    ap.add_argument("--compare", metavar="TEXT_FILE",
                    help="only compare our merges with HF's BpeTrainer on this file (with --vocab); write nothing")
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args()
    if args.compare:
        return compare(args)
    corpus = os.path.join(FIX, "corpus.txt")
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "tokenizer.json")
        subprocess.run([args.bin, "tokenizer", "train", "--vocab", str(VOCAB), "-o", out, "--no-progress", corpus],
                       check=True)
        with open(out, "rb") as f:
            raw = f.read()
    ours = json.loads(raw)
    tok = Tokenizer.from_str(raw.decode("utf-8"))
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    assert tok.token_to_id("<|endoftext|>") == VOCAB - 1
    cases = []
    for text in CASES:
        ids = tok.encode(text).ids
        assert tok.decode(ids, skip_special_tokens=False) == text, (text, tok.decode(ids))
        assert all(0 <= i < VOCAB for i in ids)
        cases.append({"text": text, "ids": ids})
    # The whole corpus as one more case (HF's ids for 29 KB of text).
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    corpus_ids = tok.encode(text).ids
    assert tok.decode(corpus_ids) == text

    hf = hf_trainer_merges(text)
    mine = [tuple(m) for m in ours["model"]["merges"]]
    same_prefix = next((i for i, (a, b) in enumerate(zip(mine, hf)) if a != b), min(len(mine), len(hf)))
    expected = {
        "made_by": "scripts/check_bpe_trainer.py",
        "tokenizers_version": tokenizers.__version__,
        "corpus": "corpus.txt",
        "vocab_size": VOCAB,
        "tokenizer_id": "fnv1a64:%016x" % fnv1a64(raw),
        "merges": len(ours["model"]["merges"]),
        "corpus_tokens": len(corpus_ids),
        "corpus_ids_fnv1a64": "%016x" % fnv1a64(b"".join(i.to_bytes(4, "little") for i in corpus_ids)),
    }
    # One case / merge per line: the file stays small and diffs stay readable.
    head = json.dumps(expected, ensure_ascii=False, indent=1)[:-2]
    body = ',\n "cases": [\n' + ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases) + "\n ]"
    body += ',\n "hf_trainer_merges": [\n' + ",\n".join("  " + json.dumps(list(m), ensure_ascii=False) for m in hf)
    body += "\n ]\n}\n"
    with open(os.path.join(FIX, "expected.json"), "w", encoding="utf-8") as f:
        f.write(head + body)
    json.load(open(os.path.join(FIX, "expected.json"), encoding="utf-8"))  # still valid JSON

    print(f"HF tokenizers {tokenizers.__version__} loads our tokenizer.json: vocab {tok.get_vocab_size()}, "
          f"{len(CASES)} strings round-trip, corpus {len(corpus_ids)} tokens")
    print(f"merges: ours {len(mine)}, HF BpeTrainer {len(hf)}; identical first {same_prefix}; "
          f"shared {len(set(mine) & set(hf))} of {len(mine)}")
    print("wrote", os.path.relpath(os.path.join(FIX, "expected.json"), ROOT))


if __name__ == "__main__":
    sys.exit(main())
