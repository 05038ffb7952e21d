// Tests for the chunked streaming attention kernel (kernels/cuda/attention_prefill.cu) against
// cpu::attention_stream, the reference: a grid of cache geometries (sinks, window, chunk length, chunk start
// before / across / long past the ring's wrap) crossed with head_dim, GQA/MQA groupings, ALiBi, the extra logit and
// f32 / f16 caches. Every cache slot holds random data (the mask alone decides what is read), q_sink differs from
// q_abs, the query rows are strided, and the output is pre-poisoned with NaN so an unwritten element fails.
//
// Tolerance: |got - ref| <= 1e-5 |ref| + 1e-5 rms(ref) for both cache dtypes (both sides read the same half values
// and compute in f32; they differ only in summation order and a few ulp of exp).
//
// Every test skips at run time when no CUDA device is visible.
#include <gtest/gtest.h>  // TEST, EXPECT_*, GTEST_SKIP

#include <cmath>      // std::fabs, std::isnan, std::sqrt
#include <cstdint>    // int64_t, uint16_t
#include <memory>     // std::unique_ptr
#include <random>     // std::mt19937, std::uniform_real_distribution
#include <string>     // std::string, std::to_string
#include <vector>     // std::vector

#include "core/dtype.h"         // f32_to_f16
#include "cpu/kernels.h"        // cpu::attention_stream, cpu::AttnGeometry
#include "cuda/cuda_backend.h"  // cuda_device_count
#include "cuda/cuda_common.cuh" // cuda::attention_prefill, CUDA_CHECK
#include "cuda_test_util.h"      // Dev, upload, download, expect_close, geometry, kNaN

namespace sllm {
namespace {

struct PrefillCase {
  int64_t S, R, T, t0, hd, H, Hkv;
  bool alibi;
  int extra;  // 0: none, 1: random per head, 2: all zero (softmax-off-by-one)
  bool f16;
  std::string name() const {
    return "S=" + std::to_string(S) + " R=" + std::to_string(R) + " T=" + std::to_string(T) +
           " t0=" + std::to_string(t0) + " hd=" + std::to_string(hd) + " H=" + std::to_string(H) +
           " Hkv=" + std::to_string(Hkv) + (alibi ? " alibi" : "") +
           (extra == 1 ? " extra" : extra == 2 ? " extra0" : "") + (f16 ? " f16" : " f32");
  }
};

class CudaAttentionPrefillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
    gpu_ = make_cuda_backend(0);  // device memory for the launcher's inputs
  }

  std::vector<float> uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng_);
    return v;
  }

  // Cache bytes: n random values in [-1, 1] as f32 or IEEE half.
  std::vector<uint16_t> cache_f16(size_t n) {
    const std::vector<float> f = uniform(n);
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = f32_to_f16(f[i]);
    return h;
  }

  // Runs one case on both sides and compares (failures are reported through gtest).
  void run(const PrefillCase& c) {
    SCOPED_TRACE(c.name());
    cpu::AttnGeometry g = geometry(c.H, c.Hkv, c.hd, c.S, c.R, c.T);  // as KVCache sizes it for chunks of T
    g.kv_f16 = c.f16;
    const int64_t ld_q = c.H * c.hd + 5;  // strided rows, not a multiple of 4
    const size_t cache_n = size_t(g.n_kv_heads * g.capacity * g.head_dim);
    // q scaled up so the softmax is far from flat.
    const std::vector<float> qa = uniform(size_t(c.T * ld_q), -3.0f, 3.0f);
    const std::vector<float> qs = uniform(qa.size(), -3.0f, 3.0f);
    const std::vector<float> slopes = uniform(size_t(c.H), 0.01f, 0.3f);
    const std::vector<float> extra = c.extra == 1 ? uniform(size_t(c.H)) : std::vector<float>(size_t(c.H), 0.0f);
    const float scale = 1.0f / std::sqrt(float(c.hd));
    const float* ref_alibi = c.alibi ? slopes.data() : nullptr;
    const float* ref_extra = c.extra ? extra.data() : nullptr;
    std::vector<float> ref(size_t(c.T * c.H * c.hd), kNaN);
    std::vector<float> kf, vf;
    std::vector<uint16_t> kh, vh;
    if (c.f16) {
      kh = cache_f16(cache_n);
      vh = cache_f16(cache_n);
    } else {
      kf = uniform(cache_n);
      vf = uniform(cache_n);
    }
    const void* kc = c.f16 ? static_cast<const void*>(kh.data()) : kf.data();
    const void* vc = c.f16 ? static_cast<const void*>(vh.data()) : vf.data();
    cpu::attention_stream(qa.data(), qs.data(), ld_q, c.T, c.t0, kc, vc, g, scale, ref_alibi, ref_extra, ref.data());

    Backend& be = *gpu_;
    const Dev dk = c.f16 ? upload(be, kh) : upload(be, kf), dv = c.f16 ? upload(be, vh) : upload(be, vf);
    const Dev dqa = upload(be, qa), dqs = upload(be, qs), dsl = upload(be, slopes), dex = upload(be, extra);
    const Dev dout = upload(be, std::vector<float>(ref.size(), kNaN));
    cuda::attention_prefill(dqa.as<float>(), dqs.as<float>(), ld_q, c.T, c.t0, dk.get(), dv.get(), g, scale,
                            c.alibi ? dsl.as<float>() : nullptr, c.extra ? dex.as<float>() : nullptr,
                            dout.as<float>(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    expect_close(download<float>(dout), ref, kF32Tol, c.name());  // NaN where ref has none fails
  }

  std::unique_ptr<Backend> gpu_;
  std::mt19937 rng_{20261127};
};

// The geometry grid: every (S, R, T, chunk start) twice, with head_dim, head grouping, ALiBi, extra logit and cache
// dtype drawn for each, so that every value of those meets many geometries.
TEST_F(CudaAttentionPrefillTest, MatchesCpuOverGeometryGrid) {
  const int64_t hds[] = {64, 80, 128};
  const int64_t heads[][2] = {{4, 4}, {8, 2}, {4, 1}};
  std::mt19937 pick(7);
  int64_t n = 0;
  for (int64_t S : {0, 1, 4})
    for (int64_t R : {3, 64, 300})
      for (int64_t T : {1, 7, 64, 257}) {
        const int64_t ring = R + T;
        // Start of stream (sinks still filling, window longer than the stream), a few tokens in, just before the
        // ring's first wrap (the chunk crosses it), and long past it.
        for (int64_t t0 : {int64_t(0), int64_t(3), S + ring - 2, 5 * ring + 3})
          for (int rep = 0; rep < 2; ++rep) {
            PrefillCase c;
            c.S = S;
            c.R = R;
            c.T = T;
            c.t0 = t0;
            c.hd = hds[(n + pick()) % 3];
            const auto& hh = heads[(n / 3 + pick()) % 3];
            c.H = hh[0];
            c.Hkv = hh[1];
            c.alibi = pick() % 2;
            c.extra = int(pick() % 3);
            c.f16 = (n + rep) % 2;
            ++n;
            run(c);
            if (HasFailure()) return;  // one failing case is enough to read
          }
      }
}

// Head dims off the main grid: tiny, not a multiple of 4 (scalar load path), odd, and the largest supported
// (shared memory above 48 KiB, 8 columns per lane).
TEST_F(CudaAttentionPrefillTest, OddAndLargeHeadDims) {
  const PrefillCase cases[] = {
      {4, 64, 40, 1000, 32, 4, 2, true, 1, false},   {4, 64, 40, 1000, 42, 4, 2, false, 0, true},
      {1, 30, 33, 17, 33, 3, 1, true, 2, false},     {4, 100, 70, 2000, 256, 4, 2, true, 1, false},
      {4, 100, 70, 2000, 256, 2, 2, false, 0, true}, {0, 200, 129, 0, 96, 6, 3, true, 0, true},
  };
  for (const PrefillCase& c : cases) {
    run(c);
    if (HasFailure()) return;
  }
}

TEST_F(CudaAttentionPrefillTest, RejectsHeadDimAbove256) {
  cpu::AttnGeometry g;
  g.n_heads = g.n_kv_heads = 1;
  g.head_dim = 257;
  g.window = 4;
  g.ring = 5;
  g.capacity = 5;
  EXPECT_THROW(cuda::attention_prefill(nullptr, nullptr, 257, 1, 0, nullptr, nullptr, g, 1.0f, nullptr, nullptr,
                                       nullptr, nullptr),
               Error);
}

}  // namespace
}  // namespace sllm
