"""Reference numbers from llama.cpp (through llama-cpp-python) for the SmolLM2 GGUF: token ids of a varied text and
the logits of a short prompt. Run by hand after scripts/fetch-smollm2.sh:
    /work/venv/bin/pip install llama-cpp-python
    /work/venv/bin/python scripts/make_llamacpp_reference.py models/SmolLM2-135M-Instruct.Q4_1.gguf
Writes tests/fixtures/llamacpp/smollm2_reference.json (small); tests/test_llamacpp_agreement.cpp compares."""
import json
import sys

import llama_cpp
import numpy as np

TEXT = ("Hello, world! The quick brown fox jumps over the lazy dog. 1234567890 3.14159\n"
        "   Whitespace\truns\t\tand newlines\n\n\nUnicode: café, naïve, Zürich, Ελληνικά, русский, 日本語, 中文, 한국어, "
        "emoji 🙂👍🏽👨‍👩‍👧 and symbols ∑∫√≤≥ — “quotes” ‘single’ … "
        "Code: for (int i = 0; i < n; ++i) { x[i] += y[i]; } // done\n"
        "Contractions: I'm, you're, it's, we'll, they'd, don't. URL https://example.com/a?b=c&d=e#f")
PROMPT = "The capital of France is"


def main():
    path = sys.argv[1]
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    ids_text = llm.tokenize(TEXT.encode("utf-8"), add_bos=False, special=False)
    ids_prompt = llm.tokenize(PROMPT.encode("utf-8"), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids_prompt)
    logits = np.array(llm.scores[: len(ids_prompt)], dtype=np.float64)  # (T, V)
    out = {
        "model": path.split("/")[-1],
        "llama_cpp_python": llama_cpp.__version__,
        "text": TEXT,
        "text_ids": list(map(int, ids_text)),
        "prompt": PROMPT,
        "prompt_ids": list(map(int, ids_prompt)),
        # The top-100 (id, logit) of every position, plus each row's mean and standard deviation.
        "top100": [[[int(i), round(float(row[i]), 5)] for i in np.argsort(-row)[:100]] for row in logits],
        "row_mean": [float(row.mean()) for row in logits],
        "row_std": [float(row.std()) for row in logits],
    }
    with open("tests/fixtures/llamacpp/smollm2_reference.json", "w") as f:
        json.dump(out, f, ensure_ascii=False)
    print(len(ids_text), "text ids;", len(ids_prompt), "prompt ids; top token", int(np.argmax(logits[-1])))


if __name__ == "__main__":
    main()
