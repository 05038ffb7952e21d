// bench_decode: StreamingLLM decode on the CPU — tokens/s and resident memory versus stream length, prefill
// throughput, and the sliding-window-with-recomputation baseline, on a SmolLM2-135M-shaped model with random
// weights. The memory bandwidth of this machine is measured in the same run, and every decode speed is printed as
// a fraction of the floor `weight bytes / bandwidth` (decode must read every weight once per token).
//
// Usage: bench_decode [--quick] [--threads N] [--dtypes f32,f16] [--long N]
//   --quick: 2K/8K only, fewer repeats (a smoke run).
#include <omp.h>  // omp_get_max_threads, omp_set_num_threads

#include <algorithm>  // std::max
#include <cstdio>     // std::printf
#include <cstring>    // std::strcmp
#include <string>     // std::string
#include <vector>     // std::vector

#include "bench/bench_util.h"  // now, median, measure_bandwidth_gbs, random_ids, advance_to, decode_time
#include "model/decoder.h"     // Decoder
#include "model/model.h"       // random_model
#include "runtime/kv_cache.h"  // KVCache
#include "runtime/sysinfo.h"   // rss_bytes

using namespace sllm;
using namespace sllm::bench;

namespace {

ModelConfig smollm2_shape(int64_t layers) {
  ModelConfig c;
  c.family = Family::Llama;
  c.model_type = "llama";
  c.vocab_size = 49152;
  c.hidden = 576;
  c.n_layers = layers;
  c.n_heads = 9;
  c.n_kv_heads = 3;
  c.head_dim = 64;
  c.ffn = 1536;
  c.max_positions = 8192;
  c.norm = NormKind::RMSNorm;
  c.mlp = MlpKind::SwiGLU;
  c.rope_theta = 100000;
  c.rot_dims = 64;
  c.tied_head = true;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<DType> dtypes = {DType::F32, DType::F16};
  int64_t long_tokens = 1'000'000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) omp_set_num_threads(std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--long") && i + 1 < argc) long_tokens = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--dtypes") && i + 1 < argc) {
      dtypes.clear();
      std::string s = argv[++i];
      size_t p = 0;
      while (p <= s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        dtypes.push_back(parse_dtype(s.substr(p, q - p)));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: bench_decode [--quick] [--threads N] [--dtypes f32,f16] [--long N]\n");
      return 2;
    }
  }
  const int S = 4, R = 1020, C = 512;
  const std::vector<int64_t> lengths = quick ? std::vector<int64_t>{2048, 8192} : std::vector<int64_t>{2048, 8192, 32768};
  const int reps = quick ? 16 : 48;

  std::printf("# bench_decode: SmolLM2-135M shape (hidden 576, 30 layers, 9/3 heads, ffn 1536, vocab 49152, tied), "
              "random weights, %d threads, cache %d+%d\n", omp_get_max_threads(), S, R);
  std::printf("# read bandwidth at start: %.1f GB/s (best of 5 multi-threaded sums over 256 MiB; re-measured next to "
              "every decode row, whose floor uses the better of the readings before and after it)\n\n",
              measure_bandwidth_gbs());
  std::printf("| weights / kv | weights | phase | streamed tokens | ms/token | tok/s | floor tok/s | %% of floor | RSS |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");

  for (DType dt : dtypes) {
    Model m = random_model(smollm2_shape(30), dt, 1);
    const double wbytes = double(m.weight_bytes());
    Decoder pre(m, cpu_backend(), C);
    Decoder dec(m, cpu_backend(), 1);
    // f16 weights run with an f16 KV cache (as llama.cpp does by default); f32 weights with an f32 cache.
    const DType kv = dt == DType::F32 ? DType::F32 : DType::F16;
    KVCache cache(cpu_backend(), m.cfg, S, R, C, kv);
    // Prefill: a 512-token prompt from an empty cache.
    {
      auto ids = random_ids(512, m.cfg.vocab_size, 5);
      std::vector<double> t;
      for (int r = 0; r < (quick ? 2 : 3); ++r) {
        cache.reset();
        const double s = now();
        pre.forward(ids.data(), 512, cache, Logits::Last);
        t.push_back(now() - s);
      }
      const double tp = median(t);
      std::printf("| %s/%s | %.0f MB | prefill 512 | 512 | %.2f | %.1f | - | - | %.0f MB |\n", dtype_name(dt), dtype_name(kv),
                  wbytes / 1e6, 1e3 * tp / 512, 512 / tp, double(rss_bytes()) / 1e6);
    }
    cache.reset();
    // Depth 64: the same step with an almost empty cache; the difference to the rows below is what attention over
    // 1K cached tokens costs.
    {
      advance_to(pre, cache, 64, m.cfg.vocab_size);
      const double b0 = measure_bandwidth_gbs();
      const double sec = decode_time(dec, cache, reps, m.cfg.vocab_size);
      const double floor_tps = std::max(b0, measure_bandwidth_gbs()) * 1e9 / wbytes;
      std::printf("| %s/%s | %.0f MB | decode | %lld | %.2f | %.1f | %.1f | %.0f%% | %.0f MB |\n", dtype_name(dt), dtype_name(kv),
                  wbytes / 1e6, (long long)cache.n_past(), 1e3 * sec, 1 / sec, floor_tps, 100 / sec / floor_tps,
                  double(rss_bytes()) / 1e6);
    }
    for (int64_t L : lengths) {
      advance_to(pre, cache, L, m.cfg.vocab_size);
      const double b0 = measure_bandwidth_gbs();
      const double sec = decode_time(dec, cache, reps, m.cfg.vocab_size);
      const double floor_tps = std::max(b0, measure_bandwidth_gbs()) * 1e9 / wbytes;
      std::printf("| %s/%s | %.0f MB | decode | %lld | %.2f | %.1f | %.1f | %.0f%% | %.0f MB |\n", dtype_name(dt), dtype_name(kv),
                  wbytes / 1e6, (long long)cache.n_past(), 1e3 * sec, 1 / sec, floor_tps, 100 / sec / floor_tps,
                  double(rss_bytes()) / 1e6);
      std::fflush(stdout);
    }
    // Re-computation baseline at the same cache size: each token re-encodes the last S+R tokens.
    {
      const int64_t Lw = S + R;
      Decoder rec(m, cpu_backend(), Lw);
      KVCache rc(cpu_backend(), m.cfg, 0, Lw, Lw);
      auto ids = random_ids(Lw, m.cfg.vocab_size, 11);
      std::vector<double> t;
      for (int r = 0; r < (quick ? 1 : 3); ++r) {
        rc.reset();
        const double s = now();
        rec.forward(ids.data(), Lw, rc, Logits::Last);
        t.push_back(now() - s);
      }
      const double sec = median(t);
      const double stream_sec = decode_time(dec, cache, reps, m.cfg.vocab_size);
      std::printf("| %s | %.0f MB | recompute (L=%lld) | - | %.1f | %.2f | - | - | %.0f MB |\n", dtype_name(dt),
                  wbytes / 1e6, (long long)Lw, 1e3 * sec, 1 / sec, double(rss_bytes()) / 1e6);
      std::printf("| %s | | **speed-up streaming vs recompute** | | | **%.1fx** | | | |\n", dtype_name(dt), sec / stream_sec);
    }
  }

  // A million tokens through a 2-layer model of the same width: time per token and memory must stay flat.
  {
    Model m = random_model(smollm2_shape(2), DType::F32, 2);
    Decoder pre(m, cpu_backend(), C);
    Decoder dec(m, cpu_backend(), 1);
    KVCache cache(cpu_backend(), m.cfg, S, R, C);
    std::printf("\n# 2-layer model (same width), f32: streaming %lld tokens through cache %d+%d\n\n",
                (long long)long_tokens, S, R);
    std::printf("| streamed tokens | decode ms/token | RSS |\n|---|---|---|\n");
    for (int64_t L = 4096; L <= long_tokens; L *= 4) {
      advance_to(pre, cache, L, m.cfg.vocab_size);
      const double sec = decode_time(dec, cache, reps, m.cfg.vocab_size);
      std::printf("| %lld | %.3f | %.0f MB |\n", (long long)cache.n_past(), 1e3 * sec, double(rss_bytes()) / 1e6);
      std::fflush(stdout);
    }
    advance_to(pre, cache, long_tokens, m.cfg.vocab_size);
    const double sec = decode_time(dec, cache, reps, m.cfg.vocab_size);
    std::printf("| %lld | %.3f | %.0f MB |\n", (long long)cache.n_past(), 1e3 * sec, double(rss_bytes()) / 1e6);
  }
  return 0;
}
