"""Writes a GGUF file whose matrices are stored in f32, f16, q8_0 or q4_0, from any GGUF file (a quantised one
included): every metadata key is copied unchanged, 2-D tensors are dequantised and stored in the target type
(re-quantised with gguf-py's quantisers, which give ggml's bytes, for q8_0 / q4_0), 1-D tensors (norms, biases)
stay f32 as llama.cpp requires. Used by bench/vs_llamacpp.py so that llama.cpp and streamllm run the same weights
in the same storage type.

    /work/venv/bin/python scripts/gguf_dequant.py IN.gguf OUT.gguf --type f16
"""
import argparse
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--type", choices=["f32", "f16", "q8_0", "q4_0"], default="f16")
    a = ap.parse_args()
    if os.path.abspath(a.src) == os.path.abspath(a.dst):
        sys.exit("gguf_dequant: the output would overwrite the input")
    try:
        r = GGUFReader(a.src)
        arch = r.fields["general.architecture"].contents()
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"gguf_dequant: {a.src}: not a readable GGUF model file ({e})")
    tmp = a.dst + ".part"  # written whole, then renamed: an interrupted run leaves no half file at dst
    w = GGUFWriter(tmp, arch)
    for key, f in r.fields.items():
        # The header counters are written by the writer, and so is the architecture.
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":  # llama_ftype: 0 = all f32, 1 = mostly f16, 7 = mostly q8_0, 2 = mostly q4_0
            w.add_key_value(key, {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2}[a.type], GGUFValueType.UINT32)
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, f.contents(), vtype, sub_type=sub)
    dt = np.float32 if a.type == "f32" else np.float16
    qt = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}.get(a.type)
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type)  # numpy shape = reversed GGUF dims
        x = x.reshape([int(d) for d in reversed(t.shape)]).astype(np.float32)
        if x.ndim >= 2 and qt is not None:
            w.add_tensor(t.name, quantize(x, qt), raw_dtype=qt)  # (rows, bytes per row): the writer derives the shape
        else:
            w.add_tensor(t.name, x.astype(dt if x.ndim >= 2 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, a.dst)
    print(f"{a.dst}: {len(r.tensors)} tensors, matrices in {a.type}")


if __name__ == "__main__":
    main()
