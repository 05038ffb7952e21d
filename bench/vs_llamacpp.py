"""streamllm against llama.cpp on this machine, in the same run: the same GGUF file, the same token streams, the
same thread count, the same KV cache type, engines alternating round by round so that the host's drifting memory
bandwidth hits both alike.

What is timed (both engines, CPU only):
  prefill  a 512-token prompt into an empty cache in one call, logits of the last token (median of 3 runs after
           an untimed one);
  decode   once the stream has reached each depth (filled in 512-token chunks of the same pseudo-random ids), the
           median over `reps` single-token calls, each producing the logits of its token (sampling excluded).
llama.cpp (through llama-cpp-python's bindings of libllama: llama_decode + llama_synchronize per call, a few
microseconds of Python per call) keeps every token (a dense cache); streamllm is run with a dense cache too (same
keys held at every depth: the engine comparison) and with the StreamingLLM cache 4+1020 (constant keys past 1024).

Usage (needs the venv of scripts/requirements-fixtures.txt plus llama-cpp-python, and build/bench_model):
    /work/venv/bin/python bench/vs_llamacpp.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--dtypes f32,f16]
        [--threads 2] [--rounds 3] [--depths 512,1024,4096] [--reps 32] [--bench build/bench_model] [--raw FILE]
A quantised GGUF is first rewritten with f32 / f16 matrices (scripts/gguf_dequant.py) into --work; both engines
then load that one file. `--dtypes file` runs the file as it is: both engines keep its blocks (Q4_1 / Q8_0 for the
SmolLM2 file) and read them quantised, each with its own kernels, with an f16 KV cache.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASK = (1 << 64) - 1


def xorshift_ids(n, vocab, seed):
    """The token stream of bench/bench_util.h random_ids (same seed -> same ids)."""
    x = (seed * 2654435761 + 1) & MASK
    out = []
    for _ in range(n):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        out.append(x % vocab)
    return out


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e3
    return 0.0


def run_llamacpp(a):
    """Child mode: time llama.cpp and print one JSON object per row."""
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = L.llama_model_load_from_file(a.gguf.encode(), mp)
    if not model:
        sys.exit(f"vs_llamacpp: llama.cpp could not load {a.gguf}")
    vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    depths = sorted(a.depths)
    chunk = max(512, a.prompt)
    cp = L.llama_context_default_params()
    cp.n_ctx = (max(depths[-1], a.prompt) + a.reps + 255) // 256 * 256 + 256
    cp.n_batch = cp.n_ubatch = chunk
    cp.n_threads = cp.n_threads_batch = a.threads
    kv_type = {"f32": 0, "f16": 1}[a.kv]  # GGML_TYPE_F32, GGML_TYPE_F16
    cp.type_k = cp.type_v = kv_type
    fa = {"auto": -1, "off": 0, "on": 1}[a.flash_attn]
    cp.flash_attn_type = fa
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("vs_llamacpp: llama.cpp could not create a context")
    mem = L.llama_get_memory(ctx)
    n_past = 0

    def decode(ids):
        nonlocal n_past
        arr = (L.llama_token * len(ids))(*ids)
        rc = L.llama_decode(ctx, L.llama_batch_get_one(arr, len(ids)))
        L.llama_synchronize(ctx)
        if rc != 0:
            sys.exit(f"vs_llamacpp: llama_decode returned {rc}")
        n_past += len(ids)

    def clear():
        nonlocal n_past
        L.llama_memory_clear(mem, True)
        n_past = 0

    wname = a.weights

    def row(phase, depth, held, sec):
        print(json.dumps({"engine": "llama.cpp", "weights": wname, "kv": a.kv, "cache": "dense",
                          "threads": a.threads, "phase": phase, "depth": depth, "held": held,
                          "ms_per_token": 1e3 * sec, "tok_s": 1 / sec, "rss_mb": rss_mb(),
                          "flash_attn": a.flash_attn}), flush=True)

    prompt = xorshift_ids(a.prompt, vocab, 5)
    t = []
    for r in range(-1, 3):  # run -1 warms up, untimed (as bench_model does)
        clear()
        s = time.perf_counter()
        decode(prompt)
        if r >= 0:
            t.append(time.perf_counter() - s)
    row("prefill", a.prompt, a.prompt, sorted(t)[1] / a.prompt)
    clear()
    for d in depths:
        while n_past < d:
            n = min(chunk, d - n_past)
            decode(xorshift_ids(n, vocab, n_past + 7))
        held = n_past
        t = []
        for tok in xorshift_ids(a.reps, vocab, 99):
            s = time.perf_counter()
            decode([tok])
            t.append(time.perf_counter() - s)
        row("decode", d, held, sorted(t)[len(t) // 2])
    L.llama_free(ctx)
    L.llama_model_free(model)


def child_rows(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"vs_llamacpp: {' '.join(cmd)} failed:\n{p.stderr.strip()}")
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description="streamllm vs llama.cpp on the CPU, same file, same run")
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--dtypes", default="f32,f16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--depths", default="512,1024,4096")
    ap.add_argument("--reps", type=int, default=32)
    ap.add_argument("--bench", default=os.path.join(ROOT, "build/bench_model"))
    ap.add_argument("--work", default="/tmp/sllm-vs-llamacpp")
    ap.add_argument("--flash-attn", default="auto", choices=["auto", "on", "off"], help="llama.cpp's setting")
    ap.add_argument("--raw", help="also write every measured row (JSON lines) here")
    # Child mode (internal): time llama.cpp on one file.
    ap.add_argument("--child-llamacpp", dest="gguf")
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--weights", default="?")
    a = ap.parse_args()
    a.depths = [int(x) for x in str(a.depths).split(",")]
    if a.gguf:
        return run_llamacpp(a)

    for path, what in ((a.model, "model"), (a.bench, "bench_model (cmake --build build --target bench_model)")):
        if not os.path.exists(path):
            sys.exit(f"vs_llamacpp: no {what} at {path}")
    import llama_cpp
    os.makedirs(a.work, exist_ok=True)
    rows = []
    header = (f"# vs_llamacpp: {os.path.basename(a.model)}, {a.threads} threads, prompt {a.prompt}, depths "
              f"{a.depths}, {a.reps} decode steps per depth, {a.rounds} rounds (engines alternate),"
              f" llama-cpp-python {llama_cpp.__version__} (flash_attn {a.flash_attn}), "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(header, flush=True)
    for dt in a.dtypes.split(","):
        kv = "f32" if dt == "f32" else "f16"
        f = os.path.join(a.work, f"{os.path.splitext(os.path.basename(a.model))[0]}.{dt}.gguf")
        if dt == "file":  # the file as it is (its quantised blocks, for both engines)
            f = a.model
        elif not os.path.exists(f):
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts/gguf_dequant.py"), a.model, f, "--type", dt],
                           check=True, stdout=subprocess.DEVNULL)
        common = ["--threads", str(a.threads), "--prompt", str(a.prompt), "--depths", ",".join(map(str, a.depths)),
                  "--reps", str(a.reps)]
        for r in range(a.rounds):
            llama = [sys.executable, os.path.abspath(__file__), "--child-llamacpp", f, "--kv", kv, "--weights", dt,
                     "--flash-attn", a.flash_attn] + common
            ours = [a.bench, "-m", f, "--kv-dtype", kv, "--json"] + common
            # Alternate which engine goes first, so neither always runs on a warmer / cooler machine.
            order = [llama, ours, ours + ["--dense"]] if r % 2 == 0 else [ours + ["--dense"], ours, llama]
            for cmd in order:
                got = child_rows(cmd)
                for g in got:
                    g["round"] = r
                    g["weights"] = dt  # the label of this file (bench_model names the dtype it found in it)
                rows += got
                print(f"#   round {r + 1}: {got[0]['engine']} {got[0]['cache']} {dt}: "
                      + ", ".join(f"{g['phase']}@{g['depth']} {g['tok_s']:.1f}" for g in got), flush=True)
    if a.raw:
        with open(a.raw, "w") as out:
            for g in rows:
                out.write(json.dumps(g) + "\n")

    def runs(engine, cache, dt, phase, depth):
        return sorted(g["tok_s"] for g in rows if g["engine"] == engine and g["cache"] == cache
                      and g["weights"] == dt and g["phase"] == phase and g["depth"] == depth)

    def med(v):  # the median round (the lower middle one of an even count)
        return v[(len(v) - 1) // 2]

    def cell(v):
        return f"{med(v):.1f} ({v[0]:.1f}-{v[-1]:.1f})" if len(v) > 1 else f"{v[0]:.1f}"

    def held(engine, cache, dt, phase, depth):
        return next(g["held"] for g in rows if g["engine"] == engine and g["cache"] == cache and g["weights"] == dt
                    and g["phase"] == phase and g["depth"] == depth)

    sc = next((g["cache"] for g in rows if g["engine"] == "streamllm" and g["cache"] != "dense"), "4+1020")
    print()
    print(f"tokens/s, median round (min-max over {a.rounds} rounds); ratios of the medians\n")
    print(f"| weights/kv | phase | depth | llama.cpp | streamllm dense | streamllm {sc} | {sc} keys held "
          f"| dense / llama.cpp | {sc} / llama.cpp |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dt in a.dtypes.split(","):
        kv = "f32" if dt == "f32" else "f16"
        phases = [("prefill", a.prompt)] + [("decode", d) for d in sorted(a.depths)]
        for phase, d in phases:
            l, dn, s = runs("llama.cpp", "dense", dt, phase, d), runs("streamllm", "dense", dt, phase, d), \
                runs("streamllm", sc, dt, phase, d)
            print(f"| {dt}/{kv} | {phase} | {d} | {cell(l)} | {cell(dn)} | {cell(s)} | "
                  f"{held('streamllm', sc, dt, phase, d)} | {med(dn) / med(l):.2f}x | {med(s) / med(l):.2f}x |")
    bws = [g["bandwidth_gbs"] for g in rows if g.get("bandwidth_gbs", 0) > 0]
    if bws:
        print(f"\nread bandwidth measured beside streamllm's decode rows: {min(bws):.1f} - {max(bws):.1f} GB/s")


if __name__ == "__main__":
    main()
