// bench_cuda: StreamingLLM inference on a CUDA card — the numbers of the CUDA issue, each next to its baseline
// measured in the same run:
//
//   1. The card's memory bandwidth (a large device-to-device copy) and the decode floor it implies: a decode step
//      must read every weight once, so no step can beat  weight bytes / bandwidth.
//   2. Decode of a Llama-2-7B-shaped model (random f16 weights made on the device), batch 1, caches 4+252 .. 4+4092:
//      time per token with the CUDA graph and without, and as a fraction of the floor.
//   3. Time per token as the stream goes on, at positions 10K and 100K: the 7B stream really gets there, every
//      token through the model, by chunked prefill (chunks of 256, exactly what per-token streaming computes; the
//      tests prove the two equal), which takes seconds where decoding 100K tokens one by one would take five
//      minutes of a borrowed GPU. A smaller model (--long) streams every token one at a time.
//   4. The sliding window with re-computation (the paper's Fig. 10 baseline): each token re-encodes the last L
//      tokens; ratio of its time per token to the streaming cache's.
//   5. Streaming perplexity throughput on the chunked path (runtime/stream.h stream_nll, chunk 256).
//
// Usage: bench_cuda [--quick] [--shape 7b|1b|160m] [--caches 252,1020,4092] [--kv f16|f32] [--long N]
//                   [--long-shape 160m|1b|7b] [--ppl-tokens N]
#include <algorithm>  // std::min, std::max
#include <chrono>     // std::chrono
#include <cmath>      // std::sqrt
#include <cstdio>     // std::printf
#include <cstring>    // std::strcmp
#include <ctime>      // std::time, std::gmtime, std::strftime
#include <exception>  // std::exception
#include <string>     // std::string, std::stoll
#include <utility>    // std::pair
#include <vector>     // std::vector

#include "core/error.h"         // Error
#include "cuda/cuda_backend.h"  // make_cuda_backend, cuda_fill_uniform, cuda_copy_bandwidth, ...
#include "model/decoder.h"      // Decoder
#include "model/model.h"        // Model
#include "model/weights.h"      // for_each_weight, LayerWeights
#include "runtime/kv_cache.h"   // KVCache
#include "runtime/stream.h"     // stream_nll

using namespace sllm;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

ModelConfig shape(const std::string& name) {
  ModelConfig c;
  c.family = Family::Llama;
  c.model_type = "llama";
  c.norm = NormKind::RMSNorm;
  c.mlp = MlpKind::SwiGLU;
  c.pos = PosKind::RoPE;
  c.rope_theta = 10000.0;
  c.vocab_size = 32000;
  if (name == "7b") {  // Llama-2-7B
    c.hidden = 4096, c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 32, c.ffn = 11008;
  } else if (name == "1b") {  // TinyLlama-1.1B (GQA 32/4)
    c.hidden = 2048, c.n_layers = 22, c.n_heads = 32, c.n_kv_heads = 4, c.ffn = 5632;
  } else if (name == "160m") {  // a Pythia-160M-sized Llama block
    c.hidden = 768, c.n_layers = 12, c.n_heads = 12, c.n_kv_heads = 12, c.ffn = 2048;
  } else {
    throw Error("bench_cuda: --shape must be 7b, 1b or 160m, got '" + name + "'");
  }
  c.head_dim = c.hidden / c.n_heads;
  c.rot_dims = c.head_dim;
  c.max_positions = 4096;
  c.validate("bench shape " + name);
  return c;
}

// A model whose weights are made on the device: matrices uniform in +-sqrt(3)/sqrt(fan_in) (unit-variance
// activations through the layers), norms 1. Each layer's q/k/v and gate/up matrices are laid out back to back in
// one allocation, so the Decoder's fused [q | k | v] and [gate | up] GEMMs use them in place (as it does with
// its own copies of a loaded model's weights).
Model device_model(Backend& be, const ModelConfig& cfg, DType dt, uint64_t seed) {
  Model m;
  m.cfg = cfg;
  m.storage = dt;
  m.resident = &be;
  m.source = "random";
  m.w.layers.resize(size_t(cfg.n_layers));
  std::vector<std::pair<const Tensor*, char*>> carve;  // a matrix's place inside its layer's block
  const size_t es = dtype_size(dt), D = size_t(cfg.hidden);
  for (LayerWeights& L : m.w.layers) {
    const size_t qkv = size_t(cfg.qkv_dim()) * D * es, gu = 2 * size_t(cfg.ffn) * D * es;
    char* a = static_cast<char*>(be.alloc(qkv));
    char* b = static_cast<char*>(be.alloc(gu));
    carve.push_back({&L.wq, a});
    carve.push_back({&L.wk, a + size_t(cfg.q_dim()) * D * es});
    carve.push_back({&L.wv, a + size_t(cfg.q_dim() + cfg.kv_dim()) * D * es});
    carve.push_back({&L.w_gate, b});
    carve.push_back({&L.w_up, b + size_t(cfg.ffn) * D * es});
  }
  uint64_t k = 0;
  for_each_weight(m.cfg, m.w, [&](const WeightSlot& s) {
    if (!s.required) return;  // no biases in a Llama block
    const int64_t n = s.shape.numel();
    const DType t = s.is_vector ? DType::F32 : dt;
    void* p = nullptr;
    for (const auto& c : carve)
      if (c.first == s.dst) p = c.second;
    if (!p) p = be.alloc(size_t(n) * dtype_size(t));
    if (s.is_vector) {
      cuda_fill_uniform(p, t, n, seed + k++, 1.0f, 1.0f);
    } else {
      const float a = 1.7320508f / std::sqrt(float(s.shape[s.shape.ndim - 1]));
      cuda_fill_uniform(p, t, n, seed + k++, -a, a);
    }
    *s.dst = Tensor{p, t, s.shape};
  });
  return m;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  uint64_t x = seed * 2654435761u + 1;
  for (auto& id : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    id = int32_t(x % uint64_t(vocab));
  }
  return v;
}

// Streams random tokens through the model until the cache has seen `upto` tokens, in chunks of C.
void prefill(Decoder& dec, KVCache& cache, int64_t upto, int64_t C, int64_t vocab) {
  const std::vector<int32_t> ids = random_ids(C, vocab, uint64_t(7 + cache.n_past()));
  while (cache.n_past() < upto) dec.forward(ids.data(), std::min(C, upto - cache.n_past()), cache, Logits::None);
}

// Seconds per decode token over n steps (after `warm` untimed ones), logits of each step copied to the host as a
// generation loop would consume them.
double decode_time(Decoder& dec, KVCache& cache, int64_t n, int64_t warm, int64_t vocab) {
  const std::vector<int32_t> ids = random_ids(n + warm, vocab, 11);
  for (int64_t i = 0; i < warm; ++i) dec.forward(&ids[size_t(i)], 1, cache, Logits::Last);
  const double t = now();
  for (int64_t i = 0; i < n; ++i) dec.forward(&ids[size_t(warm + i)], 1, cache, Logits::Last);
  return (now() - t) / double(n);
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  size_t a = 0;
  while (a < s.size()) {
    size_t b = s.find(',', a);
    if (b == std::string::npos) b = s.size();
    v.push_back(std::stoll(s.substr(a, b - a)));
    a = b + 1;
  }
  return v;
}

int run(int argc, char** argv) {
  bool quick = false;
  std::string shape_name = "7b", long_shape = "160m";
  std::vector<int64_t> windows = {252, 1020, 4092};
  DType kv = DType::F16;
  int64_t long_tokens = 100000, ppl_tokens = 16384;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw Error("bench_cuda: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") quick = true;
    else if (a == "--shape") shape_name = val();
    else if (a == "--long-shape") long_shape = val();
    else if (a == "--caches") windows = parse_list(val());
    else if (a == "--kv") kv = parse_dtype(val());
    else if (a == "--long") long_tokens = std::stoll(val());
    else if (a == "--ppl-tokens") ppl_tokens = std::stoll(val());
    else throw Error("bench_cuda: unknown argument '" + a + "'");
  }
  if (cuda_device_count() == 0) throw Error("bench_cuda: no CUDA device visible");
  const int64_t S = 4;
  const int64_t n_timed = quick ? 32 : 128;

  char date[32];
  const std::time_t tt = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&tt));
  std::printf("# bench_cuda — %s — %s\n\n", cuda_device_name(0).c_str(), date);
  const double bw = cuda_copy_bandwidth(size_t(2) << 30, 5);
  std::printf("device-to-device copy of 2 GiB: %.0f GB/s (bytes read + written)\n\n", bw / 1e9);

  auto be = make_cuda_backend(0);
  const ModelConfig cfg = shape(shape_name);
  const size_t mem0 = cuda_memory_used();
  Model m = device_model(*be, cfg, DType::F16, 1);
  const double wbytes = double(m.weight_bytes());
  const double floor_s = wbytes / bw;
  std::printf("model: Llama block, %s shape, %.2f B parameters, %.2f GB f16 weights; KV cache %s\n",
              shape_name.c_str(), double(cfg.n_params()) / 1e9, wbytes / 1e9, dtype_name(kv));
  std::printf("decode floor = weight bytes / bandwidth = %.3f ms per token\n\n", floor_s * 1e3);

  // The GEMV alone (every decode linear is one): bandwidth per weight shape, against the copy bandwidth.
  {
    std::printf("## Decode GEMV (T = 1, f16 weights, f32 activations)\n\n| N x K | what | us | GB/s | of copy bw |\n"
                "|---|---|---|---|---|\n");
    struct G {
      int64_t N, K;
      const char* what;
    };
    const G gs[] = {{cfg.qkv_dim(), cfg.hidden, "fused q|k|v"}, {cfg.q_dim(), cfg.hidden, "o"},
                    {2 * cfg.ffn, cfg.hidden, "fused gate|up"}, {cfg.hidden, cfg.ffn, "down"},
                    {cfg.vocab_size, cfg.hidden, "lm_head"}};
    for (const G& g : gs) {
      void* W = be->alloc(size_t(g.N * g.K) * 2);
      void* X = be->alloc(size_t(g.K) * 4);
      void* Y = be->alloc(size_t(g.N) * 4);
      cuda_fill_uniform(W, DType::F16, g.N * g.K, 5, -0.1f, 0.1f);
      cuda_fill_uniform(X, DType::F32, g.K, 6, -1.0f, 1.0f);
      const int reps = 200;
      for (int i = 0; i < 10; ++i)
        be->linear(static_cast<float*>(X), 1, g.K, g.K, W, DType::F16, g.N, nullptr, static_cast<float*>(Y), g.N);
      cuda_synchronize();
      const double t = now();
      for (int i = 0; i < reps; ++i)
        be->linear(static_cast<float*>(X), 1, g.K, g.K, W, DType::F16, g.N, nullptr, static_cast<float*>(Y), g.N);
      cuda_synchronize();
      const double s = (now() - t) / reps;
      const double gbs = double(g.N * g.K * 2) / s;
      std::printf("| %lld x %lld | %s | %.1f | %.0f | %.0f%% |\n", (long long)g.N, (long long)g.K, g.what, s * 1e6,
                  gbs / 1e9, 100.0 * gbs / bw);
      be->release(W);
      be->release(X);
      be->release(Y);
    }
    std::printf("\n(each launched back to back from the host: the launch overhead is included; a matrix smaller than "
                "the L2 cache is partly served from it)\n\n");
  }

  const int64_t C = 256;  // prefill chunk
  struct Row {
    int64_t R;
    double graph, eager, at10k, at100k;
    size_t mem;
    int64_t nodes;
  };
  std::vector<Row> rows;
  for (int64_t R : windows) {
    Decoder dec(m, *be, C);
    KVCache cache(*be, cfg, S, R, C, kv);
    prefill(dec, cache, S + R + 8, C, cfg.vocab_size);  // full: every later step does the same work
    Row r{R, 0, 0, 0, 0, 0, 0};
    dec.set_graphs(false);
    r.eager = decode_time(dec, cache, n_timed, 4, cfg.vocab_size);
    dec.set_graphs(true);
    r.graph = decode_time(dec, cache, n_timed, 4, cfg.vocab_size);
    r.nodes = dec.graph_nodes();
    prefill(dec, cache, 10000, C, cfg.vocab_size);
    r.at10k = decode_time(dec, cache, n_timed, 4, cfg.vocab_size);
    prefill(dec, cache, 100000, C, cfg.vocab_size);
    r.at100k = decode_time(dec, cache, n_timed, 4, cfg.vocab_size);
    r.mem = cuda_memory_used() - mem0;
    rows.push_back(r);
    std::fprintf(stderr, "decode 4+%lld done\n", (long long)R);
  }
  std::printf("## Decode, batch 1 (ms per token, logits copied to the host each step)\n\n");
  std::printf("| cache | graph | no graph | floor | graph speed vs floor | at 10K | at 100K | device memory | "
              "graph nodes |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows)
    std::printf("| 4+%lld | %.3f | %.3f | %.3f | %.1f%% | %.3f | %.3f | %.2f GB | %lld |\n", (long long)r.R,
                r.graph * 1e3, r.eager * 1e3, floor_s * 1e3, 100.0 * floor_s / r.graph, r.at10k * 1e3, r.at100k * 1e3,
                double(r.mem) / 1e9, (long long)r.nodes);
  std::printf("\n(at 10K / 100K: every token streamed through the model, by chunked prefill between the decode "
              "measurements)\n\n");

  // What the fused kernels (rope_store, linear_add, linear_swiglu) and programmatic dependent launch each save:
  // the same 4+1020 step on backends with one or both switched off (same device weights, viewed in place).
  {
    const int64_t R = 1020;
    const Row* base = nullptr;
    for (const Row& r : rows)
      if (r.R == R) base = &r;
    std::printf("## What the decode-step optimisations buy (4+%lld, graph, ms per token)\n\n"
                "| fused kernels | norm folded into GEMV | PDL | vector attention | one-wave GEMV | ms per token | "
                "graph nodes | of floor |\n|---|---|---|---|---|---|---|---|\n",
                (long long)R);
    if (base)
      std::printf("| on | on | on | on | on | %.3f | %lld | %.1f%% |\n", base->graph * 1e3, (long long)base->nodes,
                  100.0 * floor_s / base->graph);
    // {fused_ops, fold_norm, pdl, vector_attention, gemv_one_wave}: each switch off alone, then everything off.
    const CudaOptions variants[] = {{true, false, true, true, true},  {true, true, false, true, true},
                                    {true, true, true, false, true},  {true, true, true, true, false},
                                    {false, false, true, true, true}, {false, false, false, false, false}};
    for (const CudaOptions& o : variants) {
      auto vbe = make_cuda_backend(0, o);
      Model pm;  // a view of the same device weights (same device and context: vbe can read them)
      pm.cfg = m.cfg;
      pm.storage = m.storage;
      pm.w.embed = m.w.embed;
      pm.w.layers = m.w.layers;
      pm.w.final_norm_w = m.w.final_norm_w;
      pm.w.final_norm_b = m.w.final_norm_b;
      pm.w.lm_head = m.w.lm_head;
      pm.resident = vbe.get();
      Decoder dec(pm, *vbe, C);
      KVCache cache(*vbe, cfg, S, R, C, kv);
      prefill(dec, cache, S + R + 8, C, cfg.vocab_size);
      const double t = decode_time(dec, cache, n_timed, 4, cfg.vocab_size);
      auto on = [](bool b) { return b ? "on" : "off"; };
      std::printf("| %s | %s | %s | %s | %s | %.3f | %lld | %.1f%% |\n", on(o.fused_ops), on(o.fold_norm), on(o.pdl),
                  on(o.vector_attention), on(o.gemv_one_wave), t * 1e3, (long long)dec.graph_nodes(),
                  100.0 * floor_s / t);
    }
    std::printf("\n(fused kernels: rope_store, linear_add, linear_swiglu, against their plain ops; norm folded: the "
                "GEMV normalises X itself instead of a norm kernel before it; PDL: programmatic dependent launch, "
                "compute capability 9.0+ only; vector attention: 16-byte cache loads in decode attention; "
                "one-wave GEMV: at most one wave of blocks, warps looping over row groups; SLLM_CUDA_PDL=0 / "
                "SLLM_CUDA_FOLD_NORM=0 / SLLM_CUDA_ATTN_VEC=0 / SLLM_CUDA_GEMV_WAVE=0 in the environment turn them "
                "off everywhere, the first row included)\n\n");
  }

  // Where the time of one decode step goes: every op timed between two events, eager (no graph), 4+1020.
  {
    const int64_t R = 1020;
    Decoder dec(m, *be, C);
    KVCache cache(*be, cfg, S, R, C, kv);
    prefill(dec, cache, S + R + 8, C, cfg.vocab_size);
    dec.set_graphs(false);
    const int steps = quick ? 4 : 16;
    decode_time(dec, cache, 2, 1, cfg.vocab_size);  // warm
    cuda_profile(*be, true);
    decode_time(dec, cache, steps, 0, cfg.vocab_size);
    cuda_profile(*be, false);
    const std::vector<CudaOpTime> ops = cuda_profile_report(*be);
    double total = 0;
    for (const auto& o : ops) total += o.ms;
    std::printf("## One decode step, op by op (4+%lld, eager, each op between two events; %d steps)\n\n"
                "| op | calls per token | us per token | us per call | share |\n|---|---|---|---|---|\n",
                (long long)R, steps);
    for (const auto& o : ops)
      std::printf("| %s | %.1f | %.1f | %.2f | %.1f%% |\n", o.op.c_str(), double(o.calls) / steps,
                  1e3 * o.ms / steps, 1e3 * o.ms / double(o.calls), 100.0 * o.ms / total);
    std::printf("\n(sum of op times: %.3f ms per token; the events between ops also keep PDL from overlapping them)\n\n",
                total / steps);
  }

  // Re-computation baseline: each token re-encodes the last L = S + R tokens from an empty cache.
  std::printf("## Sliding window with re-computation vs the streaming cache (ms per token)\n\n");
  std::printf("| L = cache size | recompute | streaming (graph) | speedup |\n|---|---|---|---|\n");
  for (const Row& r : rows) {
    const int64_t L = S + r.R;
    Decoder dec(m, *be, L);
    KVCache cache(*be, cfg, 0, L, L, kv);
    const std::vector<int32_t> ids = random_ids(L, cfg.vocab_size, 3);
    const int reps = quick ? 2 : 4;
    cache.reset();
    dec.forward(ids.data(), L, cache, Logits::Last);  // warm-up
    const double t = now();
    for (int i = 0; i < reps; ++i) {
      cache.reset();
      dec.forward(ids.data(), L, cache, Logits::Last);
    }
    const double rec = (now() - t) / reps;
    std::printf("| %lld | %.2f | %.3f | %.1fx |\n", (long long)L, rec * 1e3, r.graph * 1e3, rec / r.graph);
  }
  std::printf("\n");

  // Streaming perplexity on the chunked path.
  {
    PplOptions o;
    o.mode = CacheMode::Streaming;
    o.sinks = S;
    o.window = 1020;
    o.chunk = 256;
    o.kv_dtype = kv;
    const int64_t n = quick ? 4096 : ppl_tokens;
    const std::vector<int32_t> ids = random_ids(n, cfg.vocab_size, 5);
    const PplResult pr = stream_nll(m, *be, ids, o);
    std::printf("## Streaming perplexity, chunked (cache 4+1020, chunk 256, %lld tokens)\n\n", (long long)n);
    std::printf("%.0f tokens/s (%.2f s; every NLL computed on the device, only the NLLs copied back)\n\n",
                double(n - 1) / pr.seconds, pr.seconds);
  }

  // A real long stream on a smaller model: time per token and device memory as the stream goes on.
  if (long_tokens > 0) {
    const ModelConfig lc = shape(long_shape);
    Model lm = device_model(*be, lc, DType::F16, 2);
    const int64_t R = 1020, n = quick ? std::min<int64_t>(long_tokens, 20000) : long_tokens;
    Decoder dec(lm, *be, 1);
    KVCache cache(*be, lc, S, R, 1, kv);
    const std::vector<int32_t> ids = random_ids(n, lc.vocab_size, 9);
    std::printf("## Streaming %lld tokens one at a time (%s shape, cache 4+%lld, %s KV, graph)\n\n", (long long)n,
                long_shape.c_str(), (long long)R, dtype_name(kv));
    std::printf("| tokens streamed | ms per token (last 1000) | device memory in use |\n|---|---|---|\n");
    double t = now();
    for (int64_t i = 0; i < n; ++i) {
      dec.forward(&ids[size_t(i)], 1, cache, Logits::Last);
      const int64_t done = i + 1;
      if (done % 1000 == 0 && (done == 1000 || done == 10000 || done % 25000 == 0 || done == n)) {
        std::printf("| %lld | %.3f | %.3f GB |\n", (long long)done, (now() - t) / 1000 * 1e3,
                    double(cuda_memory_used()) / 1e9);
      }
      if (done % 1000 == 0) t = now();
    }
    std::printf("\ngraph replays: %lld of %lld steps\n", (long long)dec.graph_replays(), (long long)n);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
