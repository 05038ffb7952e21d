// Tests for sllm::cpu::linear (kernels/cpu/matmul.h): both internal paths (GEMV, GEMM) and the dispatching front
// end, against linear_reference (double accumulation), for f32 / f16 / bf16 weights and the block formats
// Q8_0 / Q4_0 / Q4_1 (whose reference is the dequantised rows: the kernels widen blocks to exactly those values).
//
// Tolerance: |y - ref| <= rel_tol(dtype) * (sum_k |x_k * w_k| + |bias|). The kernels compute in f32 on exactly
// widened weights, so the dtype only changes the data, not the error: the f32 rounding error of a K-term sum is
// bounded by ~K * 2^-24 times that scale (worst case) and is ~sqrt(K) * 2^-24 on random data; 1e-5 holds up to
// K = 4096 with a wide margin and still catches any wrong or missing term.
#include <gtest/gtest.h>  // TEST, EXPECT_*
#include <omp.h>          // omp_get_max_threads, omp_set_num_threads

#include <cmath>    // std::isnan, std::fabs
#include <cstdint>  // int64_t, uint16_t
#include <cstdio>   // std::printf
#include <cstring>  // std::memcmp
#include <limits>   // std::numeric_limits
#include <random>   // std::mt19937
#include <string>   // std::string
#include <vector>   // std::vector

#include "core/error.h"           // sllm::Error
#include "cpu/matmul.h"           // linear, linear_reference
#include "cpu/matmul_internal.h"  // linear_gemv, linear_gemm, linear_gemm_min_tokens
#include "cpu/quant.h"            // quantize_blocks, dequantize_blocks

namespace sllm::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

double rel_tol(DType t) {
  switch (t) {
    case DType::F32:
      return 1e-5;
    case DType::F16:
      return 1e-5;
    case DType::BF16:
      return 1e-5;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
      return 1e-5;
    default:
      return 0.0;
  }
}

enum class Path { kLinear, kGemv, kGemm };
const char* path_name(Path p) { return p == Path::kLinear ? "linear" : p == Path::kGemv ? "gemv" : "gemm"; }

using LinearFn = void (*)(const float*, int64_t, int64_t, int64_t, const void*, DType, int64_t, const float*, float*,
                          int64_t);
LinearFn path_fn(Path p) { return p == Path::kLinear ? &linear : p == Path::kGemv ? &linear_gemv : &linear_gemm; }

// One problem: X (T, K) with row stride ldx, W (N, K) stored as `wtype`, optional bias; the padding of X rows
// (columns K .. ldx) is NaN, so a kernel that reads past K poisons its outputs.
struct Problem {
  int64_t T, K, N, ldx, ldy;
  DType wtype;
  std::vector<float> x;       // (T, ldx)
  std::vector<float> wf;      // (N, K) the weights as f32 (exactly the stored values)
  std::vector<uint16_t> w16;  // (N, K) f16 / bf16 storage
  std::vector<unsigned char> wq;  // (N, K / 32 blocks) block-format storage
  std::vector<float> bias;    // (N) or empty
  std::vector<float> ref;     // (T, ldy) linear_reference
  std::vector<double> scale;  // (T, N) sum_k |x w| + |bias|

  Problem(int64_t T_, int64_t K_, int64_t N_, DType wt, bool with_bias, uint32_t seed, int64_t xpad = 3,
          int64_t ypad = 5)
      : T(T_), K(K_), N(N_), ldx(K_ + xpad), ldy(N_ + ypad), wtype(wt) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    x.assign(size_t(T * ldx), kNaN);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) x[t * ldx + k] = u(rng);
    wf.resize(size_t(N * K));
    w16.resize(size_t(N * K));
    for (size_t i = 0; i < wf.size(); ++i) {
      float v = u(rng);
      if (wt == DType::F16 && i % 97 == 0) v *= 1e-6f;  // some f16 subnormals
      if (wt == DType::F16) {
        w16[i] = f32_to_f16(v);
        v = f16_to_f32(w16[i]);
      }
      if (wt == DType::BF16) {
        w16[i] = f32_to_bf16(v);
        v = bf16_to_f32(w16[i]);
      }
      wf[i] = v;
    }
    if (is_quantized(wt)) {  // quantise, then keep the dequantised values as the exact weights
      for (size_t i = 0; i < wf.size(); ++i) {
        const size_t blk = i / 32;
        if (blk % 7 == 3) wf[i] = 0.0f;                  // all-zero blocks (d = 0)
        if (blk % 11 == 5) wf[i] *= (i % 32 == 9) ? 1e3f : 1.0f;  // one large weight in a block
      }
      wq.resize(dtype_bytes(wt, N * K));
      quantize_blocks(wf.data(), N * K, wt, wq.data());
      dequantize_blocks(wt, wq.data(), N * K, wf.data());
    }
    if (with_bias) {
      bias.resize(size_t(N));
      for (auto& b : bias) b = u(rng);
    }
    ref.assign(size_t(T * ldy), kNaN);
    linear_reference(x.data(), T, K, ldx, w(), wtype, N, b(), ref.data(), ldy);
    scale.resize(size_t(T * N));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double s = with_bias ? std::fabs(bias[n]) : 0.0;
        for (int64_t k = 0; k < K; ++k) s += std::fabs(double(x[t * ldx + k]) * wf[n * K + k]);
        scale[t * N + n] = s;
      }
  }
  const void* w() const {
    if (is_quantized(wtype)) return wq.data();
    return wtype == DType::F32 ? static_cast<const void*>(wf.data()) : w16.data();
  }
  const float* b() const { return bias.empty() ? nullptr : bias.data(); }

  // Runs `fn` on a NaN-filled Y and checks every element against the reference; the row padding of Y must stay
  // NaN (nothing written outside (T, N)). Returns Y.
  std::vector<float> run_and_check(LinearFn fn, const std::string& what) const {
    std::vector<float> y(size_t(T * ldy), kNaN);
    fn(x.data(), T, K, ldx, w(), wtype, N, b(), y.data(), ldy);
    const double tol = rel_tol(wtype);
    int64_t bad = 0;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t n = 0; n < ldy; ++n) {
        const float got = y[t * ldy + n];
        if (n >= N) {
          if (!std::isnan(got) && bad++ < 5) ADD_FAILURE() << what << ": wrote padding Y[" << t << "," << n << "]";
          continue;
        }
        const double want = ref[t * ldy + n];
        const double lim = tol * scale[t * N + n] + 1e-30;
        if (!(std::fabs(got - want) <= lim) && bad++ < 5)
          ADD_FAILURE() << what << ": Y[" << t << "," << n << "] = " << got << ", want " << want << " (tol " << lim
                        << ")";
      }
    }
    EXPECT_EQ(bad, 0) << what;
    return y;
  }
};

std::string describe(Path p, const Problem& pr, bool bias) {
  return std::string(path_name(p)) + " " + dtype_name(pr.wtype) + " T=" + std::to_string(pr.T) +
         " K=" + std::to_string(pr.K) + " N=" + std::to_string(pr.N) + (bias ? " +bias" : "");
}

constexpr DType kDTypes[] = {DType::F32, DType::F16, DType::BF16};
constexpr Path kPaths[] = {Path::kLinear, Path::kGemv, Path::kGemm};

// Every dtype x T x (K, N) through every path, a bias on every other problem; seeds count up from `seed`.
template <class DTs, class Ts, class KNs>
void check_every_path(const DTs& dtypes, const Ts& ts, const KNs& kns, uint32_t seed) {
  for (DType dt : dtypes)
    for (int64_t T : ts)
      for (const auto& kn : kns) {
        const bool bias = (seed % 2) == 0;
        const Problem pr(T, kn[0], kn[1], dt, bias, seed++);
        for (Path p : kPaths) pr.run_and_check(path_fn(p), describe(p, pr, bias));
      }
}

// Odd shapes: K not a multiple of 16 / 32, N not a multiple of any row block (8, 12), T around every token
// group / block size, strided X and Y.
TEST(Matmul, OddShapesAllPathsAllDtypes) {
  const int64_t Ts[] = {1, 2, 3, 5, 8, 17, 20, 25, 64, 130};
  const int64_t KNs[][2] = {{1, 1}, {7, 5}, {33, 13}, {100, 37}, {579, 29}};
  check_every_path(kDTypes, Ts, KNs, 1);
}

// Full row blocks plus every possible remainder, both paths, on a K that is a multiple of the vector width.
TEST(Matmul, RowBlockRemainders) {
  for (DType dt : kDTypes)
    for (int64_t N = 20; N <= 27; ++N)
      for (int64_t T : {1, 4, 9, 33}) {
        const Problem pr(T, 64, N, dt, true, uint32_t(100 + N + T));
        for (Path p : kPaths) pr.run_and_check(path_fn(p), describe(p, pr, true));
      }
}

// Long dot products: the f32 accumulation must stay within tolerance up to K = 4096.
TEST(Matmul, LongK) {
  for (DType dt : kDTypes)
    for (int64_t T : {1, 6, 40}) {
      const Problem pr(T, 4096, 24, dt, true, uint32_t(7 + T), 0, 0);  // also the unpadded (ldx == K) layout
      for (Path p : kPaths) pr.run_and_check(path_fn(p), describe(p, pr, true));
    }
}

// A real SmolLM2-135M projection (576 -> 192) in decode and in a short prefill.
TEST(Matmul, SmolLMShape) {
  for (DType dt : kDTypes)
    for (int64_t T : {1, 16, 48}) {
      const Problem pr(T, 576, 192, dt, false, uint32_t(11 + T), 0, 0);
      pr.run_and_check(&linear, describe(Path::kLinear, pr, false));
    }
}

// The work split depends on the thread count but the arithmetic per output does not: results are bit-identical
// on 1 and on all threads.
void expect_thread_count_invariant(DType dt, int64_t T, int64_t K, int64_t N, uint32_t seed) {
  const int nt = omp_get_max_threads();
  const Problem pr(T, K, N, dt, true, seed);
  const std::vector<float> multi = pr.run_and_check(&linear, "multi-threaded");
  omp_set_num_threads(1);
  const std::vector<float> single = pr.run_and_check(&linear, "single-threaded");
  omp_set_num_threads(nt);
  EXPECT_EQ(std::memcmp(multi.data(), single.data(), multi.size() * sizeof(float)), 0) << dtype_name(dt) << " T=" << T;
}

TEST(Matmul, ThreadCountInvariant) {
  for (DType dt : kDTypes)
    for (int64_t T : {1, 7, 70}) expect_thread_count_invariant(dt, T, 200, 75, uint32_t(5 + T));
}

TEST(Matmul, DispatchThreshold) {
  EXPECT_GE(linear_gemm_min_tokens(), 2);
  EXPECT_LE(linear_gemm_min_tokens(), 64);
  std::printf("[ info ] SIMD path: %s, GEMM from T >= %lld\n", linear_isa_name(),
              static_cast<long long>(linear_gemm_min_tokens()));
}

TEST(Matmul, EmptyKGivesBias) {
  const float bias[3] = {1.0f, -2.0f, 3.5f};
  std::vector<float> y(2 * 4, kNaN);
  linear(nullptr, 2, 0, 0, nullptr, DType::F32, 3, bias, y.data(), 4);
  for (int t = 0; t < 2; ++t)
    for (int n = 0; n < 3; ++n) EXPECT_EQ(y[t * 4 + n], bias[n]);
  EXPECT_TRUE(std::isnan(y[3]));
}

TEST(Matmul, RejectsNonFloatWeights) {
  float x[4] = {}, y[1];
  const int32_t w[4] = {};
  EXPECT_THROW(linear(x, 1, 4, 4, w, DType::I32, 1, nullptr, y, 1), sllm::Error);
}

// ---- block formats ----

constexpr DType kQTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1};

// K = 1 .. 48 blocks (a row of one block, rows that are not a multiple of the tile, SmolLM2's 576 and 1536), N
// around every row block and tile, T through every token group and both sides of the GEMM threshold.
TEST(MatmulQuant, ShapesAllPathsAllFormats) {
  const int64_t Ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 33};
  const int64_t KNs[][2] = {{32, 1}, {32, 13}, {64, 8}, {96, 29}, {576, 37}, {1536, 12}};
  check_every_path(kQTypes, Ts, KNs, 300);
}

TEST(MatmulQuant, LongKAndRowBlockRemainders) {
  for (DType dt : kQTypes) {
    for (int64_t T : {1, 4, 40}) {
      const Problem pr(T, 4096, 24, dt, true, uint32_t(17 + T), 0, 0);
      for (Path p : kPaths) pr.run_and_check(path_fn(p), describe(p, pr, true));
    }
    for (int64_t N = 16; N <= 25; ++N) {
      const Problem pr(1, 128, N, dt, false, uint32_t(40 + N));
      pr.run_and_check(&linear, describe(Path::kLinear, pr, false));
    }
  }
}

TEST(MatmulQuant, ThreadCountInvariant) {
  for (DType dt : kQTypes)
    for (int64_t T : {1, 3, 70}) expect_thread_count_invariant(dt, T, 640, 75, uint32_t(9 + T));
}

TEST(MatmulQuant, RejectsRowsThatAreNotWholeBlocks) {
  std::vector<float> x(48, 0.0f), y(2);
  std::vector<unsigned char> w(64, 0);
  for (DType dt : kQTypes) EXPECT_THROW(linear(x.data(), 1, 48, 48, w.data(), dt, 1, nullptr, y.data(), 1), sllm::Error);
}

}  // namespace
}  // namespace sllm::cpu
