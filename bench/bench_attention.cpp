// bench_attention: the CPU decode-attention kernel (cpu::attention_stream, one query token) over a full
// StreamingLLM cache, against the floor `K/V bytes / read bandwidth` measured in the same run: how close attention
// over the cache comes to streaming the cache once.
//
// Usage: bench_attention [--threads N] [--reps N]
#include <omp.h>  // omp_set_num_threads, omp_get_max_threads

#include <algorithm>  // std::max
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atoi
#include <cstdint>    // uint8_t, uint16_t, int64_t
#include <cstring>    // std::strcmp, std::memcpy
#include <vector>     // std::vector

#include "bench/bench_util.h"  // now, median, measure_bandwidth_gbs
#include "core/dtype.h"        // f32_to_f16
#include "cpu/kernels.h"       // cpu::attention_stream, cpu::AttnGeometry

using namespace sllm;
using namespace sllm::bench;

namespace {

struct AttnShape {
  const char* name;
  int64_t H, Hkv, hd, layers;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 200;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      omp_set_num_threads(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: bench_attention [--threads N] [--reps N]\n");
      return 2;
    }
  }
  const AttnShape shapes[] = {{"SmolLM2-135M (9/3 heads, hd 64)", 9, 3, 64, 30},
                          {"Llama-2-7B (32/32 heads, hd 128)", 32, 32, 128, 32},
                          {"Llama-3-8B (32/8 heads, hd 128)", 32, 8, 128, 32}};
  std::printf("# bench_attention: one decode token's attention per layer (cpu::attention_stream), %d threads, "
              "median of %d calls, caches full and wrapped\n",
              omp_get_max_threads(), reps);
  std::printf("# read bandwidth: %.1f GB/s (re-measured beside every row; floor = K/V bytes / bandwidth)\n\n",
              measure_bandwidth_gbs());
  std::printf("| model shape | cache | kv | us per layer | us per token (all layers) | K/V MB per layer | GB/s | "
              "%% of floor |\n|---|---|---|---|---|---|---|---|\n");
  for (const AttnShape& sh : shapes)
    for (int64_t R : {1020, 4092})
      for (bool f16 : {false, true}) {
        cpu::AttnGeometry g;
        g.n_heads = sh.H;
        g.n_kv_heads = sh.Hkv;
        g.head_dim = sh.hd;
        g.sinks = 4;
        g.window = R;
        g.ring = R + 1;
        g.capacity = g.sinks + g.ring;
        g.kv_f16 = f16;
        const size_t n = size_t(sh.Hkv * g.capacity * sh.hd), es = f16 ? 2 : 4;
        // In a model each layer has its own cache, and the weights streamed between two attentions evict it from
        // the CPU caches; so the calls cycle through enough copies of the cache to exceed the L3 (96 MB or more).
        const size_t copies = std::max<size_t>(1, (size_t(96) << 20) / (2 * n * es) + 1);
        std::vector<std::vector<uint8_t>> kb(copies, std::vector<uint8_t>(n * es)), vb = kb;
        for (size_t c = 0; c < copies; ++c)
          for (size_t i = 0; i < n; ++i) {
            const float k = float(int64_t((i + c) * 2654435761u % 2001) - 1000) * 1e-3f;
            const float v = float(int64_t((i + c) * 40503u % 2001) - 1000) * 1e-3f;
            if (f16) {
              const uint16_t kh = f32_to_f16(k), vh = f32_to_f16(v);
              std::memcpy(&kb[c][2 * i], &kh, 2);
              std::memcpy(&vb[c][2 * i], &vh, 2);
            } else {
              std::memcpy(&kb[c][4 * i], &k, 4);
              std::memcpy(&vb[c][4 * i], &v, 4);
            }
          }
        std::vector<float> q(size_t(sh.H * sh.hd)), out(q.size());
        for (size_t i = 0; i < q.size(); ++i) q[i] = float(int64_t(i * 7919u % 201) - 100) * 1e-2f;
        const int64_t t = g.sinks + R + 5000;  // long past the wrap
        const double bw0 = measure_bandwidth_gbs();
        std::vector<double> ts;
        for (int r = 0; r <= reps; ++r) {
          const size_t c = size_t(r) % copies;
          const double s = now();
          cpu::attention_stream(q.data(), q.data(), sh.H * sh.hd, 1, t, kb[c].data(), vb[c].data(), g, 0.088f,
                                nullptr, nullptr, out.data());
          if (r > 0) ts.push_back(now() - s);
        }
        const double sec = median(ts), bw = std::max(bw0, measure_bandwidth_gbs());
        const double bytes = double(2 * sh.Hkv * (g.sinks + R + 1) * sh.hd * (f16 ? 2 : 4));
        std::printf("| %s | 4+%lld | %s | %.1f | %.0f | %.2f | %.1f | %.0f%% |\n", sh.name, (long long)R,
                    f16 ? "f16" : "f32", sec * 1e6, sec * 1e6 * double(sh.layers), bytes / 1e6, bytes / sec / 1e9,
                    100.0 * bytes / (bw * 1e9) / sec);
        std::fflush(stdout);
      }
  std::printf("\n(the calls cycle through copies of the cache totalling more than 96 MB, so each reads its keys and "
              "values from memory, as a layer's attention does between the weight reads of a decode step)\n");
  return 0;
}
