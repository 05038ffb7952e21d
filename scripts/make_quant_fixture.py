#!/usr/bin/env python3
"""Make tests/fixtures/quant/ggml_blocks.json: floats and the bytes ggml's reference quantisers make of them.

    /work/venv/bin/python scripts/make_quant_fixture.py

The bytes come from the PyPI `gguf` package (gguf-py, llama.cpp's own Python library), whose numpy quantisers for
Q8_0, Q4_0 and Q4_1 are written to give the same bytes as ggml-quants.c's quantize_row_*_ref. The test
(tests/test_quant.cpp) requires streamllm's quantize_blocks to give exactly these bytes and dequantize_blocks to
give exactly gguf-py's dequantised floats. Inputs: random blocks at several scales plus hand-made edge cases
(all zero, constant, a single outlier, values on the rounding midpoints, the largest magnitude negative, f16
overflow of the scale and subnormal scales). Floats are stored as the hex of their IEEE bits.
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "quant", "ggml_blocks.json")


def blocks():
    rng = np.random.default_rng(20261127)
    out = []
    for scale in (1e-4, 0.02, 1.0, 300.0):
        out += list(rng.normal(0.0, scale, size=(3, 32)).astype(np.float32))
    out.append(np.zeros(32, np.float32))
    out.append(np.full(32, 0.75, np.float32))
    out.append(np.full(32, -2.5, np.float32))
    b = rng.uniform(-1, 1, 32).astype(np.float32)
    b[7] = 40.0
    out.append(b)
    b = rng.uniform(-1, 1, 32).astype(np.float32)
    b[30] = -40.0  # the largest magnitude is negative (Q4_0 keeps its sign)
    out.append(b)
    out.append((np.arange(32, dtype=np.float32) - 16.0) / 2.0)
    # x / d exactly on .5 midpoints (d = 1: Q8_0's round-half-away-from-zero, Q4_1's +0.5 truncation)
    out.append(np.array([127.0] + [k + 0.5 for k in range(-15, 16)], np.float32))
    out.append(np.array([0.0, 15.0] + [k % 15 + 0.5 for k in range(30)], np.float32))
    out.append(np.linspace(-1.0, 1.0, 32, dtype=np.float32))
    b = rng.uniform(-1, 1, 32).astype(np.float32)
    b[3] = b[19] = 1.0
    b[4] = -1.0  # ties for the largest magnitude
    out.append(b)
    out.append(rng.uniform(-1, 1, 32).astype(np.float32) * np.float32(1e-6))  # f16-subnormal scales
    out.append(np.concatenate([np.full(16, 1e5, np.float32), np.full(16, -1e5, np.float32)]))  # scale overflows f16?
    return np.stack(out).astype(np.float32)


def hexs(a):
    return a.astype(np.float32).view(np.uint32).tolist()


def main():
    x = blocks()
    fixture = {"n_blocks": int(x.shape[0]), "input_f32_bits": hexs(x.reshape(-1)), "formats": {}}
    for name, qt in (("q8_0", QT.Q8_0), ("q4_0", QT.Q4_0), ("q4_1", QT.Q4_1)):
        q = quants.quantize(x, qt)
        dq = quants.dequantize(q, qt).astype(np.float32)
        fixture["formats"][name] = {"bytes_hex": q.tobytes().hex(), "dequant_f32_bits": hexs(dq.reshape(-1))}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {OUT}: {x.shape[0]} blocks")


if __name__ == "__main__":
    main()
