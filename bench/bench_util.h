// Shared pieces of the CPU benchmark programs (bench_decode, bench_model): a clock, medians, this machine's read
// bandwidth, the pseudo-random token streams (bench/vs_llamacpp.py generates the same ones for llama.cpp), and
// the two ways a decode benchmark moves a stream forward.
#pragma once
#include <omp.h>  // omp_get_num_threads, omp_get_thread_num

#include <algorithm>  // std::sort, std::max_element, std::min
#include <chrono>     // std::chrono
#include <cstdint>    // int64_t, uint64_t, int32_t
#include <vector>     // std::vector

#include "core/tensor.h"       // Buffer
#include "model/decoder.h"     // Decoder, Logits
#include "runtime/kv_cache.h"  // KVCache

namespace sllm::bench {

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Read bandwidth of this machine: all threads sum a buffer far larger than the caches (what decode does to
// weights). The host is shared and its bandwidth drifts by 2x over minutes, so it is measured again next to every
// decode row (best of 5 reads of 256 MiB: the floor is what the memory system can deliver at that moment).
inline double measure_bandwidth_gbs() {
  static Buffer b;
  const size_t n = size_t(256) << 20;
  const size_t m = n / sizeof(float);
  if (b.bytes() == 0) {
    b = Buffer(n);
    float* q = b.as<float>();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < m; ++i) q[i] = float(i & 1023);
  }
  const float* p = b.as<float>();
  std::vector<double> runs;
  volatile float sink = 0;
  for (int r = 0; r < 5; ++r) {
    const double t = now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      // Each thread sums its contiguous share with 16-wide SIMD accumulators (a vectorised stream of loads).
      const size_t nt = size_t(omp_get_num_threads()), id = size_t(omp_get_thread_num());
      const size_t lo = m * id / nt, hi = m * (id + 1) / nt;
      float acc[64] = {};
      size_t i = lo;
      for (; i + 64 <= hi; i += 64) {
#pragma omp simd
        for (int j = 0; j < 64; ++j) acc[j] += p[i + size_t(j)];
      }
      for (; i < hi; ++i) acc[0] += p[i];
      for (float a : acc) total += a;
    }
    runs.push_back(double(n) / (now() - t) / 1e9);
    sink = sink + total;
  }
  return *std::max_element(runs.begin(), runs.end());
}

// n token ids in [0, vocab) from a xorshift64 stream seeded by `seed` (bench/vs_llamacpp.py: xorshift_ids).
inline std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  uint64_t x = seed * 2654435761u + 1;
  for (auto& t : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t = int32_t(x % uint64_t(vocab));
  }
  return v;
}

// Streams `target` tokens into the cache using chunked prefill (same cache state as per-token streaming; see the
// streaming tests), so that long streams are reached quickly.
inline void advance_to(Decoder& pre, KVCache& cache, int64_t target, int64_t vocab) {
  const int64_t C = pre.max_chunk();
  while (cache.n_past() < target) {
    const int64_t T = std::min(C, target - cache.n_past());
    auto ids = random_ids(T, vocab, uint64_t(cache.n_past()) + 7);
    pre.forward(ids.data(), T, cache, Logits::None);
  }
}

// Median seconds per decoded token over `n` tokens (greedy feed of fixed ids; sampling cost excluded).
inline double decode_time(Decoder& dec, KVCache& cache, int n, int64_t vocab) {
  auto ids = random_ids(n, vocab, 99);
  std::vector<double> t;
  for (int i = 0; i < n; ++i) {
    const double s = now();
    dec.forward(&ids[size_t(i)], 1, cache, Logits::Last);
    t.push_back(now() - s);
  }
  return median(t);
}

}  // namespace sllm::bench
