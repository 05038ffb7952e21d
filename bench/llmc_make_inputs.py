#!/usr/bin/env python3
"""Write stand-in inputs for karpathy/llm.c's CPU trainer (train_gpt2.c), numpy only.

The real GPT-2 weights/tokenizer are not needed to time llm.c: step time does not depend on the
values. This writes, into OUTDIR (normally a temp copy of llm.c, since train_gpt2's main() uses
fixed relative paths):

  gpt2_124M.bin                     checkpoint: 256 x int32 header [20240326, 3, maxT, V, L, NH, C, Vp, 0...]
                                    then float32 params in llm.c's order: wte (Vp,C), wpe (maxT,C),
                                    ln1w, ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C), attprojw (L,C,C),
                                    attprojb (L,C), ln2w, ln2b (L,C), fcw (L,4C,C), fcb (L,4C),
                                    fcprojw (L,C,4C), fcprojb (L,C), lnfw, lnfb (C).
                                    Weights ~ N(0, 0.02), biases 0, layernorm weights 1; wte rows
                                    >= V (vocab padding) are 0, as llm.c's own export does.
  gpt2_tokenizer.bin                dummy tokenizer: 256 x uint32 header [20240328, 2, V, eot=V-1, 0...]
                                    then V entries of (uint8 len, bytes); entry i is "<i>" so that
                                    main()'s periodic sampling can decode. (llm.c runs without this
                                    file, but then its sampler would use an uninitialised EOT id.)
  dev/data/tinyshakespeare/tiny_shakespeare_{train,val}.bin
                                    token shards: 256 x int32 header [20240520, 1, ntok, 0...] then
                                    ntok uint16 tokens, uniformly random in [0, V).

Usage: llmc_make_inputs.py OUTDIR [--train-tokens N] [--val-tokens N] [--seed S]
"""
import argparse
import os

import numpy as np

MAXT, V, L, NH, C = 1024, 50257, 12, 12, 768  # GPT-2 124M
VP = 50304  # padded vocab (multiple of 128), as llm.c uses


def write_checkpoint(path, rng):
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, 3, MAXT, V, L, NH, C, VP]

    def normal(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))

    def ones(*shape):
        return np.ones(shape, dtype=np.float32)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.float32)

    n = 0
    with open(path + ".tmp", "wb") as f:
        f.write(header.tobytes())
        wte = normal(VP, C)
        wte[V:] = 0.0
        # generated and written one tensor at a time to keep peak memory ~ the largest tensor
        for make in (
            lambda: wte,
            lambda: normal(MAXT, C),          # wpe
            lambda: ones(L, C),               # ln1w
            lambda: zeros(L, C),              # ln1b
            lambda: normal(L, 3 * C, C),      # qkvw
            lambda: zeros(L, 3 * C),          # qkvb
            lambda: normal(L, C, C),          # attprojw
            lambda: zeros(L, C),              # attprojb
            lambda: ones(L, C),               # ln2w
            lambda: zeros(L, C),              # ln2b
            lambda: normal(L, 4 * C, C),      # fcw
            lambda: zeros(L, 4 * C),          # fcb
            lambda: normal(L, C, 4 * C),      # fcprojw
            lambda: zeros(L, C),              # fcprojb
            lambda: ones(C),                  # lnfw
            lambda: zeros(C),                 # lnfb
        ):
            t = make()
            n += t.size
            f.write(np.ascontiguousarray(t).tobytes())
            del t
        del wte
    os.replace(path + ".tmp", path)
    return n


def write_tokenizer(path):
    header = np.zeros(256, dtype=np.uint32)
    header[:4] = [20240328, 2, V, V - 1]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for i in range(V):
            s = ("<%d>" % i).encode()
            f.write(bytes([len(s)]) + s)


def write_tokens(path, ntok, rng):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, ntok]
    toks = rng.integers(0, V, size=ntok, dtype=np.uint16)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(toks.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--train-tokens", type=int, default=1 << 17)
    ap.add_argument("--val-tokens", type=int, default=1 << 14)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    data = os.path.join(a.outdir, "dev", "data", "tinyshakespeare")
    os.makedirs(data, exist_ok=True)
    n = write_checkpoint(os.path.join(a.outdir, "gpt2_124M.bin"), rng)
    write_tokenizer(os.path.join(a.outdir, "gpt2_tokenizer.bin"))
    write_tokens(os.path.join(data, "tiny_shakespeare_train.bin"), a.train_tokens, rng)
    write_tokens(os.path.join(data, "tiny_shakespeare_val.bin"), a.val_tokens, rng)
    print("llmc_make_inputs: wrote %s (num_parameters=%d), tokenizer, train %d / val %d tokens"
          % (os.path.join(a.outdir, "gpt2_124M.bin"), n, a.train_tokens, a.val_tokens))


if __name__ == "__main__":
    main()
