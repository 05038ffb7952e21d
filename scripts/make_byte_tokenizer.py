"""Writes data/tokenizers/bytes/tokenizer.json: a 256-token byte-level tokenizer (GPT-2's byte<->unicode map, no
merges, id = byte value). It lets the tiny byte-vocabulary models read any text (`--tokenizer`). Written with the
real `tokenizers` library so HF loads it too. Run: /work/venv/bin/python scripts/make_byte_tokenizer.py"""
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def gpt2_byte_map():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, cs))


def main():
    m = gpt2_byte_map()
    vocab = {chr(m[b]): b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.save("data/tokenizers/bytes/tokenizer.json")
    ids = tok.encode("héllo ✓").ids
    assert ids == list("héllo ✓".encode()), ids


if __name__ == "__main__":
    main()
