// bench_matmul: throughput of sllm::cpu::linear on the SmolLM2-135M projection shapes.
//
// Prints, for every (K, N) shape x weight dtype x token count T: the median time per call (after warm-up), the
// weight-read bandwidth and FLOP rate, and their fraction of this machine's memory bandwidth (measured in the same
// run by a multi-threaded SIMD read of a buffer >> L3) and of the fp32 FMA peak (230 GFLOP/s on 2 Zen 4 cores,
// pass --peak to change). Weights are cold, as in a real decode: every call reads the next of a pool of copies
// that together are many times the L3. Then: a whole decode token (the model's 211 linear calls in order), the
// OpenMP fork/join cost, and the GEMV / GEMM crossover.
//
// Usage: bench_matmul [--quick] [--peak GFLOPS] [--threads N] [--t 1,8,512] [--dtype q4_1] [--table-only]
#include <omp.h>  // omp_get_max_threads, omp_set_num_threads

#include <algorithm>  // std::sort, std::max, std::min
#include <chrono>     // std::chrono::steady_clock
#include <cstdint>    // int64_t, uint16_t
#include <cstdio>     // std::printf
#include <cstdlib>    // std::aligned_alloc, std::free, std::atof, std::atoi
#include <cstring>    // std::memcpy, std::strcmp
#include <memory>     // std::unique_ptr
#include <random>     // std::mt19937
#include <vector>     // std::vector

#include "core/dtype.h"           // DType, dtype_size, dtype_name, f32_to_f16, f32_to_bf16
#include "cpu/matmul.h"           // sllm::cpu::linear
#include "cpu/matmul_internal.h"  // linear_gemv, linear_gemm, linear_isa_name, linear_gemm_min_tokens
#include "cpu/matmul_simd.h"      // mm::vf, mm::vload, mm::vadd, mm::hsum (the bandwidth probe)
#include "cpu/quant.h"            // quantize_blocks

namespace {

using sllm::DType;
using Clock = std::chrono::steady_clock;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;
Buffer alloc(size_t bytes) { return Buffer(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64))); }

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// Median seconds of f(i) over repeats, after `warmup` calls; repeats until min_reps and min_total_s are reached.
template <class F>
double median_time(F&& f, int warmup, int min_reps, int max_reps, double min_total_s) {
  int i = 0;
  for (; i < warmup; ++i) f(i);
  std::vector<double> ts;
  double total = 0;
  while (int(ts.size()) < max_reps && (int(ts.size()) < min_reps || total < min_total_s)) {
    const double t0 = now_s();
    f(i++);
    const double dt = now_s() - t0;
    ts.push_back(dt);
    total += dt;
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

// Multi-threaded read of the whole buffer (one contiguous half per thread) with the kernels' SIMD width and
// 4 accumulators; with kPrefetch, also software prefetch 4 KiB ahead (on Zen 4 this adds ~5%).
template <bool kPrefetch>
float read_all(const float* p, int64_t n) {
  using namespace sllm::cpu::mm;
  constexpr int64_t kStep = 4 * kLanes;  // floats per iteration
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t b = n / kStep * id / nt * kStep, e = n / kStep * (id + 1) / nt * kStep;
    vf a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    for (int64_t i = b; i < e; i += kStep) {
      if constexpr (kPrefetch) {
        for (int64_t off = 0; off < kStep * 4; off += 64)
          prefetch_l2(reinterpret_cast<const char*>(p + i) + 4096 + off);
      }
      a0 = vadd(a0, vload(p + i));
      a1 = vadd(a1, vload(p + i + kLanes));
      a2 = vadd(a2, vload(p + i + 2 * kLanes));
      a3 = vadd(a3, vload(p + i + 3 * kLanes));
    }
    total += hsum(vadd(vadd(a0, a1), vadd(a2, a3)));
  }
  return total;
}

// Read bandwidth probe: a 256 MiB buffer (>> 32 MiB L3) read by all threads; the better of the two read kernels,
// each the median of `reps` passes. The host is shared and its bandwidth drifts, so the bench re-measures it
// next to every group of rows it compares against it.
struct ReadProbe {
  static constexpr int64_t kBytes = int64_t(256) << 20;
  Buffer buf = alloc(size_t(kBytes));
  double min_gbs = 1e30, max_gbs = 0;
  ReadProbe() {
    float* p = reinterpret_cast<float*>(buf.get());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kBytes / 4; ++i) p[i] = float(i & 1023) * 1e-3f;  // first touch by the readers
  }
  double read_gbs(int reps) {
    const float* p = reinterpret_cast<const float*>(buf.get());
    volatile float sink = 0;
    const double t = std::min(median_time([&](int) { sink = sink + read_all<false>(p, kBytes / 4); }, 1, reps, reps, 0),
                              median_time([&](int) { sink = sink + read_all<true>(p, kBytes / 4); }, 1, reps, reps, 0));
    const double gbs = double(kBytes) / t * 1e-9;
    min_gbs = std::min(min_gbs, gbs);
    max_gbs = std::max(max_gbs, gbs);
    return gbs;
  }
};

// memcpy bandwidth (read + write bytes) and the cost of an empty OpenMP parallel region, for context.
void print_context(ReadProbe& probe) {
  const int64_t bytes = ReadProbe::kBytes;
  Buffer b = alloc(size_t(bytes));
  std::memset(b.get(), 0, size_t(bytes));
  const int nt = omp_get_max_threads();
  const double tc = median_time(
      [&](int) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < nt; ++c)
          std::memcpy(b.get() + bytes / nt * c, probe.buf.get() + bytes / nt * c, size_t(bytes / nt));
      },
      1, 5, 5, 0);
  volatile float sink = 0;
  const double tf = median_time(
      [&](int) {
#pragma omp parallel
        { sink = sink + 0.0f; }
      },
      100, 2000, 2000, 0);
  std::printf("context: memcpy %.1f GB/s (read + write), empty omp parallel region %.2f us\n",
              2.0 * double(bytes) / tc * 1e-9, tf * 1e6);
}

// Pool of `copies` weight matrices (N, K) of one dtype, filled with values in [-1, 1].
struct WeightPool {
  Buffer buf;
  size_t bytes = 0;  // one matrix
  int copies = 0;
  WeightPool(int64_t N, int64_t K, DType dt, size_t min_pool_bytes) {
    bytes = sllm::dtype_bytes(dt, N * K);
    copies = int(std::max<size_t>(2, (min_pool_bytes + bytes - 1) / bytes));
    buf = alloc(bytes * size_t(copies));
    // ~1 MiB of random values, repeated (a whole number of blocks for a block format, so blocks stay whole).
    const size_t bb = sllm::dtype_block_bytes(dt);
    std::vector<uint8_t> pattern(((size_t(1) << 20) / bb) * bb);
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    if (sllm::is_quantized(dt)) {
      std::vector<float> f(pattern.size() / bb * size_t(sllm::kQuantBlock));
      for (float& v : f) v = u(rng);
      sllm::quantize_blocks(f.data(), int64_t(f.size()), dt, pattern.data());
    }
    for (size_t i = 0; !sllm::is_quantized(dt) && i < pattern.size(); i += sllm::dtype_size(dt)) {
      const float v = u(rng);
      if (dt == DType::F32) std::memcpy(&pattern[i], &v, 4);
      if (dt == DType::F16) {
        const uint16_t h = sllm::f32_to_f16(v);
        std::memcpy(&pattern[i], &h, 2);
      }
      if (dt == DType::BF16) {
        const uint16_t h = sllm::f32_to_bf16(v);
        std::memcpy(&pattern[i], &h, 2);
      }
    }
    const size_t total = bytes * size_t(copies);
    for (size_t off = 0; off < total; off += pattern.size())
      std::memcpy(buf.get() + off, pattern.data(), std::min(pattern.size(), total - off));
  }
  const void* get(int i) const { return buf.get() + bytes * size_t(i % copies); }
};

struct Shape {
  int64_t K, N;
  const char* name;
};
constexpr Shape kShapes[] = {{576, 576, "q/o 576x576"},
                             {576, 192, "k/v 576->192"},
                             {576, 1536, "gate/up 576->1536"},
                             {1536, 576, "down 1536->576"},
                             {576, 49152, "lm_head 576->49152"}};
constexpr DType kDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1};

using LinearFn = void (*)(const float*, int64_t, int64_t, int64_t, const void*, DType, int64_t, const float*, float*,
                          int64_t);

// Median seconds per call of fn on (T, K) x (N, K)^T with cold weights from the pool.
double time_linear(LinearFn fn, const WeightPool& pool, int64_t T, int64_t K, int64_t N, DType dt,
                   std::vector<float>& x, std::vector<float>& y, bool quick) {
  const double flops = 2.0 * double(T) * double(K) * double(N);
  const int max_reps = flops > 1e9 ? 5 : 400;
  return median_time([&](int i) { fn(x.data(), T, K, K, pool.get(i), dt, N, nullptr, y.data(), N); }, 2, quick ? 3 : 5,
                     quick ? std::min(max_reps, 50) : max_reps, quick ? 0.05 : 0.25);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, table_only = false;
  double peak = 230.0;
  std::vector<int64_t> Ts;
  std::vector<DType> dtypes(std::begin(kDTypes), std::end(kDTypes));
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--table-only"))
      table_only = true;
    else if (!std::strcmp(argv[i], "--peak") && i + 1 < argc)
      peak = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      omp_set_num_threads(std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--t") && i + 1 < argc) {
      for (char* p = argv[++i]; *p;) {
        Ts.push_back(std::strtoll(p, &p, 10));
        if (*p == ',')
          ++p;
        else
          break;
      }
    } else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) {
      const char* d = argv[++i];
      dtypes = {sllm::parse_dtype(d)};
    } else {
      std::printf(
          "usage: %s [--quick] [--peak GFLOPS] [--threads N] [--t 1,8,512] [--dtype f32|f16|bf16|q8_0|q4_0|q4_1] "
          "[--table-only]\n",
          argv[0]);
      return 2;
    }
  }
  if (Ts.empty())
    Ts = quick ? std::vector<int64_t>{1, 8, 64, 512} : std::vector<int64_t>{1, 2, 4, 8, 15, 16, 64, 128, 512};
  const int nthreads = omp_get_max_threads();
  std::printf("bench_matmul: %s kernels, %d threads, GEMM from T >= %lld, FMA peak %.0f GFLOP/s (assumed)\n",
              sllm::cpu::linear_isa_name(), nthreads, static_cast<long long>(sllm::cpu::linear_gemm_min_tokens()),
              peak);
  ReadProbe probe;
  print_context(probe);
  std::printf("%%bw = weight bytes per call / time against the read bandwidth measured just before that group\n\n");

  const size_t pool_bytes = size_t(quick ? 128 : 256) << 20;
  std::vector<float> x(size_t(512 * 1536)), y(size_t(512) * 49152);
  {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& v : x) v = u(rng);
  }
  std::printf("%-20s %-5s %4s %11s %9s %9s %7s %7s %7s\n", "shape (K->N)", "dtype", "T", "time_us", "GB/s", "GFLOP/s",
              "%bw", "%peak", "%roof");
  for (const Shape& s : kShapes) {
    for (DType dt : dtypes) {
      const WeightPool pool(s.N, s.K, dt, pool_bytes);
      const double bw = probe.read_gbs(5);
      std::printf("%-20s %-5s  (read baseline now %.1f GB/s)\n", s.name, sllm::dtype_name(dt), bw);
      for (int64_t T : Ts) {
        if (quick && s.N > 10000 && T > 64) continue;
        const double t = time_linear(&sllm::cpu::linear, pool, T, s.K, s.N, dt, x, y, quick);
        const double gbs = double(pool.bytes) / t * 1e-9;
        const double gflops = 2.0 * double(T) * double(s.K) * double(s.N) / t * 1e-9;
        // Roofline: the time the call could take at best, bandwidth- or compute-bound.
        const double ideal = std::max(double(pool.bytes) / (bw * 1e9), 2.0 * T * s.K * s.N / (peak * 1e9));
        std::printf("%-20s %-5s %4lld %11.1f %9.1f %9.1f %6.1f%% %6.1f%% %6.1f%%\n", s.name, sllm::dtype_name(dt),
                    static_cast<long long>(T), t * 1e6, gbs, gflops, 100 * gbs / bw, 100 * gflops / peak,
                    100 * ideal / t);
      }
    }
  }

  if (table_only) {
    std::printf("\nread baseline over the run: %.1f .. %.1f GB/s\n", probe.min_gbs, probe.max_gbs);
    return 0;
  }

  // A whole SmolLM2-135M decode token: 30 layers x (q, k, v, o, gate, up, down) + lm_head, cold weights.
  std::printf("\ndecode token (211 linear calls, T = 1, weights laid out one after the other):\n");
  for (DType dt : dtypes) {
    struct Call {
      int64_t K, N;
      size_t off;
    };
    std::vector<Call> calls;
    size_t total = 0;
    const int64_t layer[7][2] = {{576, 576}, {576, 192}, {576, 192}, {576, 576}, {576, 1536}, {576, 1536}, {1536, 576}};
    for (int l = 0; l < 30; ++l)
      for (const auto& kn : layer) {
        calls.push_back({kn[0], kn[1], total});
        total += sllm::dtype_bytes(dt, kn[0] * kn[1]);
      }
    calls.push_back({576, 49152, total});
    total += sllm::dtype_bytes(dt, 576 * 49152);
    Buffer w = alloc(total);
    std::memset(w.get(), 0, total);
    const double bw = probe.read_gbs(5);
    const double t = median_time(
        [&](int) {
          for (const Call& c : calls)
            sllm::cpu::linear(x.data(), 1, c.K, c.K, w.get() + c.off, dt, c.N, nullptr, y.data(), c.N);
        },
        2, quick ? 5 : 15, 50, 0);
    const double gbs = double(total) / t * 1e-9;
    std::printf("  %-5s %7.1f MB  %8.3f ms/token  %6.1f GB/s  %5.1f%% of read bandwidth (%.1f GB/s)\n",
                sllm::dtype_name(dt), double(total) * 1e-6, t * 1e3, gbs, 100 * gbs / bw, bw);
  }

  // Per-call overhead: a tiny problem on all threads vs one thread, and T = 1 on one thread for the small shapes.
  std::printf("\nsingle-thread T = 1 (cold weights), to see what the second thread buys:\n");
  omp_set_num_threads(1);
  for (const Shape& s : kShapes) {
    if (s.N > 10000) continue;
    const WeightPool pool(s.N, s.K, DType::BF16, pool_bytes);
    const double t = time_linear(&sllm::cpu::linear, pool, 1, s.K, s.N, DType::BF16, x, y, quick);
    std::printf("  %-20s bf16  %8.1f us  %6.1f GB/s\n", s.name, t * 1e6, double(pool.bytes) / t * 1e-9);
  }
  omp_set_num_threads(nthreads);

  // GEMV vs GEMM around the dispatch threshold (576 -> 1536, bf16 and f32).
  std::printf("\nGEMV / GEMM crossover, 576 -> 1536, GFLOP/s:\n  %-5s %4s %9s %9s\n", "dtype", "T", "gemv", "gemm");
  for (DType dt : {DType::F32, DType::BF16}) {
    const WeightPool pool(1536, 576, dt, pool_bytes);
    for (int64_t T : {2, 3, 4, 5, 6, 7, 8, 10, 12, 16}) {
      const double flops = 2.0 * T * 576 * 1536;
      const double tv = time_linear(&sllm::cpu::linear_gemv, pool, T, 576, 1536, dt, x, y, quick);
      const double tm = time_linear(&sllm::cpu::linear_gemm, pool, T, 576, 1536, dt, x, y, quick);
      std::printf("  %-5s %4lld %9.1f %9.1f\n", sllm::dtype_name(dt), static_cast<long long>(T), flops / tv * 1e-9,
                  flops / tm * 1e-9);
    }
  }
  probe.read_gbs(5);
  std::printf("\nread baseline over the run: %.1f .. %.1f GB/s\n", probe.min_gbs, probe.max_gbs);
  return 0;
}
