// Tests for the CUDA backend (kernels/cuda) against the CPU backend, the reference: every Backend op on fresh
// random inputs, both backends on the same data, outputs pre-poisoned with NaN (so an element the kernel forgot to
// write fails, and padding it must not touch has to stay NaN), compared with a tolerance table.
//
// Tolerances. linear: |y - ref| <= kLinearTol[wdtype] * (sum_k |x_k w_k| + |bias|), as in tests/test_matmul.cpp.
// f32 weights: both sides are f32 GEMMs differing only in summation order (~sqrt(K) 2^-24 on random data), so
// 1e-5 is tight. f16 / bf16 weights: the cuBLAS path rounds X to the weight dtype before the tensor-core GEMM,
// which bounds the difference by 2^-11 (f16) / 2^-8 (bf16) times that sum: 1e-3 and 8e-3 leave a 2x margin (the
// GEMV path, T <= 8 with aligned rows, keeps X in f32 and is far inside them).
// Other f32 ops: |y - ref| <= 1e-5 |ref| + 1e-5 rms(ref) (exp/erf/tanh differ by a few ulp between libm and
// CUDA, reductions by their order). Data movement (embedding in every table dtype, add, clamp, copy_rows,
// kv_store): exact.
//
// Every test skips at run time when no CUDA device is visible (a CUDA build on a machine without a GPU).
#include <gtest/gtest.h>  // TEST, TEST_F, EXPECT_*, GTEST_SKIP

#include <algorithm>  // std::max
#include <cmath>      // std::fabs, std::isnan, std::sqrt
#include <cstdint>    // int64_t, int32_t, uint16_t
#include <cstring>    // std::memcpy
#include <limits>     // std::numeric_limits
#include <memory>     // std::unique_ptr
#include <random>     // std::mt19937, std::uniform_real_distribution
#include <string>     // std::string, std::to_string
#include <vector>     // std::vector

#include "core/dtype.h"         // DType, f32_to_f16, f32_to_bf16, f16_to_f32, bf16_to_f32
#include "core/error.h"         // sllm::Error
#include "cpu/kernels.h"        // cpu::rope_tables, cpu::AttnGeometry
#include "cuda/cuda_backend.h"  // cuda_device_count, make_cuda_backend, cuda_upload, cuda_download
#include "ops/backend.h"        // Backend, cpu_backend, NormOp, ActOp
#include "cuda_test_util.h"      // Dev, upload, download, expect_close, Tol, geometry, kNaN

namespace sllm {
namespace {

// Linear tolerance, relative to sum_k |x_k w_k| + |bias| (see the top of the file).
double linear_tol(DType wt) {
  switch (wt) {
    case DType::F32: return 1e-5;
    case DType::F16: return 1e-3;
    case DType::BF16: return 8e-3;
    default: return 0.0;
  }
}

// Weights stored in dtype t: the bytes and the exactly decoded f32 values.
struct Encoded {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

Encoded encode(const std::vector<float>& w, DType t) {
  Encoded e;
  e.bytes.resize(w.size() * dtype_size(t));
  e.values.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    if (t == DType::F32) {
      std::memcpy(e.bytes.data() + 4 * i, &w[i], 4);
      e.values[i] = w[i];
    } else {
      const uint16_t h = t == DType::F16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
      std::memcpy(e.bytes.data() + 2 * i, &h, 2);
      e.values[i] = t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return e;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
    gpu_ = make_cuda_backend(0);
  }

  Backend& cpu() { return cpu_backend(); }
  Backend& gpu() { return *gpu_; }

  std::vector<float> uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng_);
    return v;
  }

  std::unique_ptr<Backend> gpu_;
  std::mt19937 rng_{20261127};
};

// The bound for a SwiGLU of two linears, silu(g) * u with g, u = X [Wg | Wu]^T: the linear tolerance `tol` of g and
// u carried through silu(g) * u (|silu'| <= 1.1), plus 1e-6 relative. X: (T, K); W: (2F, K) values; tmp: the
// reference (T, 2F) [g | u]; ref: the reference output (T, F).
std::vector<double> swiglu_bound(const std::vector<float>& X, const std::vector<float>& W, const std::vector<float>& tmp,
                                 const std::vector<float>& ref, int64_t T, int64_t K, int64_t F, double tol) {
  std::vector<double> bound(size_t(T * F));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < F; ++n) {
      double sg = 0, su = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double x = X[size_t(t * K + k)];
        sg += std::fabs(x * W[size_t(n * K + k)]);
        su += std::fabs(x * W[size_t((F + n) * K + k)]);
      }
      const double g = tmp[size_t(t * 2 * F + n)], u = tmp[size_t(t * 2 * F + F + n)];
      const double silu = g / (1.0 + std::exp(-g));
      bound[size_t(t * F + n)] =
          tol * (1.1 * sg * std::fabs(u) + std::fabs(silu) * su) + 1e-6 * std::fabs(double(ref[size_t(t * F + n)]));
    }
  return bound;
}

// ---- linear ----------------------------------------------------------------------------------------------------

TEST_F(CudaBackendTest, Linear) {
  // ldx = K + 4 keeps X's rows 16-byte aligned, so 16-bit weights with T <= 8 take the GEMV kernel; K + 3 sends
  // them to cuBLAS. T = 8 / 9 sit on either side of the GEMV's limit.
  const int64_t K = 200, N = 70, ldy = N + 5;
  for (int64_t ldx : {K + 3, K + 4})
  for (DType wt : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t T : {1, 5, 8, 9, 33}) {
      for (bool with_bias : {false, true}) {
        const std::string what = std::string("linear ") + dtype_name(wt) + " T=" + std::to_string(T) +
                                 " ldx=" + std::to_string(ldx) + (with_bias ? " bias" : "");
        const std::vector<float> X = uniform(size_t(T * ldx));
        const Encoded W = encode(uniform(size_t(N * K)), wt);
        const std::vector<float> b = uniform(size_t(N));
        std::vector<float> ref(size_t(T * ldy), kNaN);
        cpu().linear(X.data(), T, K, ldx, W.bytes.data(), wt, N, with_bias ? b.data() : nullptr, ref.data(), ldy);

        Dev dX = upload(gpu(), X), dW = upload(gpu(), W.bytes), db = upload(gpu(), b);
        Dev dY = upload(gpu(), std::vector<float>(size_t(T * ldy), kNaN));
        gpu().linear(dX.as<float>(), T, K, ldx, dW.get(), wt, N, with_bias ? db.as<float>() : nullptr,
                     dY.as<float>(), ldy);
        const std::vector<float> got = download<float>(dY);

        std::vector<double> bound(ref.size(), 0.0);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t n = 0; n < N; ++n) {
            double s = with_bias ? std::fabs(double(b[size_t(n)])) : 0.0;
            for (int64_t k = 0; k < K; ++k)
              s += std::fabs(double(X[size_t(t * ldx + k)]) * W.values[size_t(n * K + k)]);
            bound[size_t(t * ldy + n)] = linear_tol(wt) * s;
          }
        expect_close(got, ref, bound, what);
      }
    }
  }
}

// ---- norms, rope, activations ----------------------------------------------------------------------------------

// linear_add: Y += X W^T + b, the residual add in the GEMV's epilogue on the CUDA path (T <= 8, aligned, 16-bit
// weights) and linear + add otherwise; the CPU backend's default (linear into tmp, then add) is the reference.
TEST_F(CudaBackendTest, LinearAdd) {
  const int64_t K = 256, N = 96;
  for (DType wt : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t T : {1, 3, 8, 12}) {
      const std::string what = std::string("linear_add ") + dtype_name(wt) + " T=" + std::to_string(T);
      const std::vector<float> X = uniform(size_t(T * K)), b = uniform(size_t(N)), Y0 = uniform(size_t(T * N));
      const Encoded W = encode(uniform(size_t(N * K)), wt);
      std::vector<float> ref = Y0, tmp(size_t(T * N), kNaN);
      cpu().linear_add(X.data(), T, K, K, W.bytes.data(), wt, N, b.data(), ref.data(), N, tmp.data());
      Dev dX = upload(gpu(), X), dW = upload(gpu(), W.bytes), db = upload(gpu(), b), dY = upload(gpu(), Y0);
      Dev dtmp = upload(gpu(), std::vector<float>(tmp.size(), kNaN));
      gpu().linear_add(dX.as<float>(), T, K, K, dW.get(), wt, N, db.as<float>(), dY.as<float>(), N,
                       dtmp.as<float>());
      std::vector<double> bound(ref.size());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) {
          double sum = std::fabs(double(b[size_t(n)]));
          for (int64_t k = 0; k < K; ++k)
            sum += std::fabs(double(X[size_t(t * K + k)]) * W.values[size_t(n * K + k)]);
          bound[size_t(t * N + n)] = linear_tol(wt) * sum + 1e-6 * std::fabs(double(Y0[size_t(t * N + n)]));
        }
      expect_close(download<float>(dY), ref, bound, what);
    }
  }
}

// linear_swiglu: silu(X Wg^T) * (X Wu^T) from one [gate | up] matrix, one kernel on the CUDA GEMV path, against the
// CPU default (linear into (T, 2F), then swiglu). The bound carries the linear tolerance of g and u through
// silu(g) * u (|silu'| <= 1.1).
TEST_F(CudaBackendTest, LinearSwiglu) {
  const int64_t K = 128, F = 72;
  for (DType wt : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t T : {1, 4, 8, 11}) {
      const std::string what = std::string("linear_swiglu ") + dtype_name(wt) + " T=" + std::to_string(T);
      const std::vector<float> X = uniform(size_t(T * K), -2.0f, 2.0f);
      const Encoded W = encode(uniform(size_t(2 * F * K)), wt);
      std::vector<float> ref(size_t(T * F), kNaN), tmp(size_t(T * 2 * F), kNaN);
      cpu().linear_swiglu(X.data(), T, K, K, W.bytes.data(), wt, F, ref.data(), tmp.data());
      Dev dX = upload(gpu(), X), dW = upload(gpu(), W.bytes);
      Dev dout = upload(gpu(), std::vector<float>(ref.size(), kNaN)), dtmp = upload(gpu(), tmp);
      gpu().linear_swiglu(dX.as<float>(), T, K, K, dW.get(), wt, F, dout.as<float>(), dtmp.as<float>());
      expect_close(download<float>(dout), ref, swiglu_bound(X, W.values, tmp, ref, T, K, F, linear_tol(wt)), what);
    }
  }
}

// norm_linear / norm_linear_swiglu: the norm folded into the GEMV (each block computes the row statistics in f32)
// against the CPU default (norm in double, then the linear), RMSNorm and LayerNorm with and without a bias, on the
// GEMV path (16-bit weights, T <= 8) and the fallback (f32 weights, T = 9). The bound is the linear's over the
// normalised inputs plus 1e-5 relative for the statistics' f32 sums.
TEST_F(CudaBackendTest, NormLinear) {
  const int64_t K = 136, N = 40, F = 24;
  for (DType wt : {DType::F32, DType::F16, DType::BF16})
    for (int64_t T : {1, 3, 8, 9})
      for (int kind = 0; kind < 3; ++kind) {  // RMS, Layer with bias, Layer without
        const NormOp op = kind == 0 ? NormOp::RMS : NormOp::Layer;
        const std::string what = std::string("norm_linear ") + dtype_name(wt) + " T=" + std::to_string(T) +
                                 " kind=" + std::to_string(kind);
        const std::vector<float> X = uniform(size_t(T * K), -3.0f, 3.0f), nw = uniform(size_t(K), 0.5f, 1.5f),
                                 nb = uniform(size_t(K)), bias = uniform(size_t(N));
        const float* b_h = kind == 1 ? nb.data() : nullptr;
        const Encoded W = encode(uniform(size_t(N * K)), wt), Wgu = encode(uniform(size_t(2 * F * K)), wt);
        std::vector<float> xn(size_t(T * K), kNaN), ref(size_t(T * N), kNaN), sref(size_t(T * F), kNaN),
            tmp(size_t(T * 2 * F), kNaN);
        cpu().norm_linear(op, X.data(), nw.data(), b_h, 1e-5f, T, K, xn.data(), W.bytes.data(), wt, N, bias.data(),
                          ref.data(), N);
        cpu().norm_linear_swiglu(op, X.data(), nw.data(), b_h, 1e-5f, T, K, xn.data(), Wgu.bytes.data(), wt, F,
                                 sref.data(), tmp.data());
        Dev dX = upload(gpu(), X), dw = upload(gpu(), nw), db = upload(gpu(), nb), dbias = upload(gpu(), bias);
        Dev dW = upload(gpu(), W.bytes), dWgu = upload(gpu(), Wgu.bytes);
        Dev dxn = upload(gpu(), std::vector<float>(xn.size(), kNaN)), dY = upload(gpu(), std::vector<float>(ref.size(), kNaN));
        Dev dS = upload(gpu(), std::vector<float>(sref.size(), kNaN)), dtmp = upload(gpu(), tmp);
        const float* db_d = kind == 1 ? db.as<float>() : nullptr;
        gpu().norm_linear(op, dX.as<float>(), dw.as<float>(), db_d, 1e-5f, T, K, dxn.as<float>(), dW.get(), wt, N,
                          dbias.as<float>(), dY.as<float>(), N);
        gpu().norm_linear_swiglu(op, dX.as<float>(), dw.as<float>(), db_d, 1e-5f, T, K, dxn.as<float>(), dWgu.get(),
                                 wt, F, dS.as<float>(), dtmp.as<float>());
        std::vector<double> bound(ref.size());
        const double tol = linear_tol(wt) + 1e-5;
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t n = 0; n < N; ++n) {
            double s = std::fabs(bias[size_t(n)]);
            for (int64_t k = 0; k < K; ++k) s += std::fabs(xn[size_t(t * K + k)] * W.values[size_t(n * K + k)]);
            bound[size_t(t * N + n)] = tol * s + 1e-6 * std::fabs(double(ref[size_t(t * N + n)]));
          }
        }
        expect_close(download<float>(dY), ref, bound, what);
        expect_close(download<float>(dS), sref, swiglu_bound(xn, Wgu.values, tmp, sref, T, K, F, tol),
                     what + " swiglu");
      }
}

// Matrices taller than one wave of GEMV blocks: with one-wave grids each warp loops over several row groups (and,
// with the norm folded in, fewer blocks compute the statistics); rows long enough for the unrolled loop, whose first
// iteration's weights are loaded before the PDL wait. Each row is still summed by one warp in one
// order, so one-wave and block-per-group grids must give the same bits, and both must match the CPU.
TEST_F(CudaBackendTest, GemvRowGroupsBeyondOneWave) {
  CudaOptions per_group;
  per_group.gemv_one_wave = false;
  const std::unique_ptr<Backend> other = make_cuda_backend(0, per_group);
  // K8 = 129 vectors per row: one unrolled iteration (the preloaded one, on a warp's first row group) and a tail
  // step; N and F odd: the last row group is partial.
  const int64_t K = 1032, N = 20011, F = 10007;
  for (DType wt : {DType::F16, DType::BF16})
    for (int64_t T : {1, 3}) {
      const std::string what = std::string(dtype_name(wt)) + " T=" + std::to_string(T);
      const std::vector<float> X = uniform(size_t(T * K), -2.0f, 2.0f), nw = uniform(size_t(K), 0.5f, 1.5f),
                               bias = uniform(size_t(N));
      const Encoded W = encode(uniform(size_t(N * K)), wt), Wgu = encode(uniform(size_t(2 * F * K)), wt);
      std::vector<float> ref(size_t(T * N), kNaN), nref(size_t(T * N), kNaN), sref(size_t(T * F), kNaN),
          xn(size_t(T * K), kNaN), tmp(size_t(T * 2 * F), kNaN);
      cpu().linear(X.data(), T, K, K, W.bytes.data(), wt, N, bias.data(), ref.data(), N);
      cpu().norm_linear(NormOp::RMS, X.data(), nw.data(), nullptr, 1e-5f, T, K, xn.data(), W.bytes.data(), wt, N,
                        bias.data(), nref.data(), N);
      cpu().norm_linear_swiglu(NormOp::RMS, X.data(), nw.data(), nullptr, 1e-5f, T, K, xn.data(), Wgu.bytes.data(),
                               wt, F, sref.data(), tmp.data());
      Dev dX = upload(gpu(), X), dw = upload(gpu(), nw), dbias = upload(gpu(), bias);
      Dev dW = upload(gpu(), W.bytes), dWgu = upload(gpu(), Wgu.bytes);
      std::vector<std::vector<float>> plain, normed, swiglu;
      for (Backend* be : {&gpu(), other.get()}) {
        Dev dY = upload(gpu(), std::vector<float>(ref.size(), kNaN));
        Dev dN = upload(gpu(), std::vector<float>(ref.size(), kNaN));
        Dev dS = upload(gpu(), std::vector<float>(sref.size(), kNaN));
        Dev dxn = upload(gpu(), std::vector<float>(xn.size(), kNaN)), dtmp = upload(gpu(), tmp);
        be->linear(dX.as<float>(), T, K, K, dW.get(), wt, N, dbias.as<float>(), dY.as<float>(), N);
        be->norm_linear(NormOp::RMS, dX.as<float>(), dw.as<float>(), nullptr, 1e-5f, T, K, dxn.as<float>(), dW.get(),
                        wt, N, dbias.as<float>(), dN.as<float>(), N);
        be->norm_linear_swiglu(NormOp::RMS, dX.as<float>(), dw.as<float>(), nullptr, 1e-5f, T, K, dxn.as<float>(),
                               dWgu.get(), wt, F, dS.as<float>(), dtmp.as<float>());
        plain.push_back(download<float>(dY));
        normed.push_back(download<float>(dN));
        swiglu.push_back(download<float>(dS));
      }
      EXPECT_EQ(plain[0], plain[1]) << what << ": linear, one wave vs a block per row group";
      EXPECT_EQ(normed[0], normed[1]) << what << ": norm_linear";
      EXPECT_EQ(swiglu[0], swiglu[1]) << what << ": norm_linear_swiglu";
      std::vector<double> bound(ref.size()), nbound(ref.size());
      const double tol = linear_tol(wt) + 1e-5;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) {
          double a = std::fabs(bias[size_t(n)]), b = a;
          for (int64_t k = 0; k < K; ++k) {
            a += std::fabs(X[size_t(t * K + k)] * W.values[size_t(n * K + k)]);
            b += std::fabs(xn[size_t(t * K + k)] * W.values[size_t(n * K + k)]);
          }
          bound[size_t(t * N + n)] = tol * a;
          nbound[size_t(t * N + n)] = tol * b + 1e-6 * std::fabs(double(nref[size_t(t * N + n)]));
        }
      expect_close(plain[0], ref, bound, what + " linear");
      expect_close(normed[0], nref, nbound, what + " norm_linear");
      expect_close(swiglu[0], sref, swiglu_bound(xn, Wgu.values, tmp, sref, T, K, F, tol), what + " swiglu");
    }
}

// The op profiler (bench_cuda's op-by-op table): while on, each op is timed once under its name (a linear under its
// N x K; a fused op that falls back to its parts still counts once); off, nothing more is recorded; a CPU backend
// is refused by name.
TEST_F(CudaBackendTest, ProfileTimesEachOpOnce) {
  const int64_t K = 64, N = 48;
  const Encoded W = encode(uniform(size_t(N * K)), DType::F16);
  Dev dX = upload(gpu(), uniform(size_t(K))), dW = upload(gpu(), W.bytes), dY = upload(gpu(), uniform(size_t(N)));
  cuda_profile(gpu(), true);
  for (int i = 0; i < 3; ++i) gpu().linear(dX.as<float>(), 1, K, K, dW.get(), DType::F16, N, nullptr, dY.as<float>(), N);
  gpu().add(dY.as<float>(), dY.as<float>(), N);
  cuda_profile(gpu(), false);
  gpu().add(dY.as<float>(), dY.as<float>(), N);  // not recorded
  const std::vector<CudaOpTime> ops = cuda_profile_report(gpu());
  ASSERT_EQ(ops.size(), 2u);
  for (const CudaOpTime& o : ops) {
    EXPECT_TRUE(o.op == "linear 48x64" || o.op == "add") << o.op;
    EXPECT_EQ(o.calls, o.op == "add" ? 1 : 3) << o.op;
    EXPECT_GT(o.ms, 0.0) << o.op;
  }
  EXPECT_THROW(cuda_profile(cpu(), true), Error);
}

TEST_F(CudaBackendTest, Norm) {
  const int64_t T = 4;
  for (int64_t D : {576, 1000}) {
    for (NormOp op : {NormOp::RMS, NormOp::Layer}) {
      for (bool with_bias : {false, true}) {
        if (op == NormOp::RMS && with_bias) continue;
        const std::string what = std::string(op == NormOp::RMS ? "rmsnorm" : "layernorm") +
                                 " D=" + std::to_string(D) + (with_bias ? " bias" : "");
        std::vector<float> x = uniform(size_t(T * D));
        for (float& v : x) v += 0.3f;  // a mean away from 0 exercises the layernorm's centring
        const std::vector<float> w = uniform(size_t(D), 0.5f, 1.5f), b = uniform(size_t(D));
        const float* bp = with_bias ? b.data() : nullptr;
        std::vector<float> ref(x.size(), kNaN);
        cpu().norm(op, x.data(), w.data(), bp, 1e-5f, T, D, ref.data());

        Dev dx = upload(gpu(), x), dw = upload(gpu(), w), dbias = upload(gpu(), b);
        Dev dy = upload(gpu(), std::vector<float>(x.size(), kNaN));
        gpu().norm(op, dx.as<float>(), dw.as<float>(), with_bias ? dbias.as<float>() : nullptr, 1e-5f, T, D,
                   dy.as<float>());
        expect_close(download<float>(dy), ref, kF32Tol, what);
      }
    }
  }
}

TEST_F(CudaBackendTest, Rope) {
  const int64_t T = 3, H = 4, hd = 64, ld = H * hd + 16;
  for (int64_t rot : {hd, hd / 2}) {
    for (bool inter : {false, true}) {
      const std::string what = "rope rot=" + std::to_string(rot) + (inter ? " interleaved" : " neox");
      std::vector<int64_t> pos(static_cast<size_t>(T));
      for (int64_t i = 0; i < T; ++i) pos[size_t(i)] = 4000000 + 7 * i;  // large positions: tables in double
      std::vector<float> cos(size_t(T * rot / 2)), sin(cos.size());
      cpu::rope_tables(pos.data(), T, rot, 10000.0, cos.data(), sin.data());
      const std::vector<float> x = uniform(size_t(T * ld));
      std::vector<float> ref = x;
      cpu().rope(ref.data(), T, H, hd, ld, rot, cos.data(), sin.data(), inter);

      Dev dx = upload(gpu(), x), dc = upload(gpu(), cos), ds = upload(gpu(), sin);
      gpu().rope(dx.as<float>(), T, H, hd, ld, rot, dc.as<float>(), ds.as<float>(), inter);
      expect_close(download<float>(dx), ref, kF32Tol, what);
    }
  }
}

TEST_F(CudaBackendTest, Activation) {
  const int64_t n = 10007;
  for (ActOp op : {ActOp::GeluErf, ActOp::GeluTanh, ActOp::Relu}) {
    const std::vector<float> x = uniform(size_t(n), -6.0f, 6.0f);
    std::vector<float> ref = x;
    cpu().activation(op, ref.data(), n);
    Dev dx = upload(gpu(), x);
    gpu().activation(op, dx.as<float>(), n);
    expect_close(download<float>(dx), ref, kF32Tol, "activation " + std::to_string(int(op)));
  }
}

TEST_F(CudaBackendTest, Swiglu) {
  const int64_t T = 3, F = 300, ldg = F + 7, ldu = F + 9;
  const std::vector<float> g = uniform(size_t(T * ldg), -6.0f, 6.0f), u = uniform(size_t(T * ldu));
  std::vector<float> ref(size_t(T * F), kNaN);
  cpu().swiglu(g.data(), ldg, u.data(), ldu, T, F, ref.data());
  Dev dg = upload(gpu(), g), du = upload(gpu(), u), dout = upload(gpu(), std::vector<float>(ref.size(), kNaN));
  gpu().swiglu(dg.as<float>(), ldg, du.as<float>(), ldu, T, F, dout.as<float>());
  expect_close(download<float>(dout), ref, kF32Tol, "swiglu strided");

  // In place, as the decoder calls it (out == gate, contiguous).
  std::vector<float> g2 = uniform(size_t(T * F), -6.0f, 6.0f), ref2 = g2;
  cpu().swiglu(ref2.data(), F, u.data(), ldu, T, F, ref2.data());
  Dev dg2 = upload(gpu(), g2);
  gpu().swiglu(dg2.as<float>(), F, du.as<float>(), ldu, T, F, dg2.as<float>());
  expect_close(download<float>(dg2), ref2, kF32Tol, "swiglu in place");
}

// ---- data movement and elementwise: exact ----------------------------------------------------------------------

TEST_F(CudaBackendTest, AddClampCopyRows) {
  const int64_t n = 5000;
  const std::vector<float> y = uniform(size_t(n), -3.0f, 3.0f), x = uniform(size_t(n), -3.0f, 3.0f);
  std::vector<float> ref = y;
  cpu().add(ref.data(), x.data(), n);
  Dev dy = upload(gpu(), y), dx = upload(gpu(), x);
  gpu().add(dy.as<float>(), dx.as<float>(), n);
  expect_close(download<float>(dy), ref, kExact, "add");

  std::vector<float> c = uniform(size_t(n), -3.0f, 3.0f);
  c[17] = kNaN;  // both backends map NaN to lo
  std::vector<float> cref = c;
  cpu().clamp(cref.data(), n, -1.5f, 2.0f);
  Dev dc = upload(gpu(), c);
  gpu().clamp(dc.as<float>(), n, -1.5f, 2.0f);
  expect_close(download<float>(dc), cref, kExact, "clamp");

  const int64_t rows = 5, cols = 30, ld_src = 50, ld_dst = 40;
  const std::vector<float> src = uniform(size_t(rows * ld_src));
  std::vector<float> dref(size_t(rows * ld_dst), kNaN);
  cpu().copy_rows(src.data() + 3, ld_src, dref.data() + 2, ld_dst, rows, cols);
  Dev dsrc = upload(gpu(), src), ddst = upload(gpu(), std::vector<float>(dref.size(), kNaN));
  gpu().copy_rows(dsrc.as<float>() + 3, ld_src, ddst.as<float>() + 2, ld_dst, rows, cols);
  expect_close(download<float>(ddst), dref, kExact, "copy_rows");
}

TEST_F(CudaBackendTest, Embedding) {
  const int64_t V = 50, D = 70, T = 9;
  const std::vector<int32_t> ids = {0, 49, 3, 3, 17, 25, 1, 48, 0};
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const Encoded table = encode(uniform(size_t(V * D)), t);
    std::vector<float> ref(size_t(T * D), kNaN);
    cpu().embedding(ids.data(), T, table.bytes.data(), t, D, ref.data());
    Dev dids = upload(gpu(), ids), dtab = upload(gpu(), table.bytes);
    Dev dout = upload(gpu(), std::vector<float>(ref.size(), kNaN));
    gpu().embedding(dids.as<int32_t>(), T, dtab.get(), t, D, dout.as<float>());
    expect_close(download<float>(dout), ref, kExact, std::string("embedding ") + dtype_name(t));
  }
}

// ---- KV cache and streaming attention --------------------------------------------------------------------------


TEST_F(CudaBackendTest, KvStore) {
  const int64_t T = 5;
  const cpu::AttnGeometry g = geometry(4, 2, 48, 4, 8, T);
  const int64_t ld = g.n_kv_heads * g.head_dim + 4;
  const size_t cache_n = size_t(g.n_kv_heads * g.capacity * g.head_dim);
  // Chunks: all sinks, crossing into the ring, inside the ring, wrapping around its end.
  for (int64_t t0 : {0, 2, 11, 47}) {
    const std::vector<float> k = uniform(size_t(T * ld)), v = uniform(size_t(T * ld));
    const std::vector<float> kc = uniform(cache_n), vc = uniform(cache_n);
    std::vector<float> kref = kc, vref = vc;
    cpu().kv_store(k.data(), ld, v.data(), ld, T, t0, kref.data(), vref.data(), g);
    Dev dk = upload(gpu(), k), dv = upload(gpu(), v), dkc = upload(gpu(), kc), dvc = upload(gpu(), vc);
    gpu().kv_store(dk.as<float>(), ld, dv.as<float>(), ld, T, t0, dkc.as<float>(), dvc.as<float>(), g);
    expect_close(download<float>(dkc), kref, kExact, "kv_store K t0=" + std::to_string(t0));
    expect_close(download<float>(dvc), vref, kExact, "kv_store V t0=" + std::to_string(t0));
  }
}

TEST_F(CudaBackendTest, KvStoreF16) {
  const int64_t T = 5;
  cpu::AttnGeometry g = geometry(4, 2, 48, 4, 8, T);
  g.kv_f16 = true;
  const int64_t ld = g.n_kv_heads * g.head_dim + 4;
  const size_t cache_n = size_t(g.n_kv_heads * g.capacity * g.head_dim);
  for (int64_t t0 : {0, 2, 11, 47}) {
    // Values far outside half's range and between representable halves check the rounding (nearest even) too.
    std::vector<float> k = uniform(size_t(T * ld), -70000.0f, 70000.0f), v = uniform(size_t(T * ld));
    std::vector<uint16_t> kc(cache_n), vc(cache_n);
    for (size_t i = 0; i < cache_n; ++i) kc[i] = vc[i] = uint16_t(i * 2654435761u >> 16);
    std::vector<uint16_t> kref = kc, vref = vc;
    cpu().kv_store(k.data(), ld, v.data(), ld, T, t0, kref.data(), vref.data(), g);
    Dev dk = upload(gpu(), k), dv = upload(gpu(), v), dkc = upload(gpu(), kc), dvc = upload(gpu(), vc);
    gpu().kv_store(dk.as<float>(), ld, dv.as<float>(), ld, T, t0, dkc.get(), dvc.get(), g);
    EXPECT_EQ(download<uint16_t>(dkc), kref) << "f16 kv_store K t0=" << t0;
    EXPECT_EQ(download<uint16_t>(dvc), vref) << "f16 kv_store V t0=" << t0;
  }
}

// rope_store: the CUDA backend's one kernel against the CPU backend's five ops (copy, three rotations, cache
// write) on the same data: q rotated in place, the sink copy qs, and the cache's K (rotated) and V rows. Partial
// and full rotary, both pair layouts, with and without the sink copy, GQA and MQA, f32 and f16 caches, a chunk
// crossing the ring's wrap; untouched cache slots keep their random contents on both sides.
TEST_F(CudaBackendTest, RopeStore) {
  struct Case {
    int64_t H, Hkv, hd, rot, T, t0;
    bool inter, sink_copy, f16;
  };
  const Case cases[] = {
      {8, 2, 64, 64, 5, 40, false, true, false},  {4, 4, 80, 20, 3, 0, true, false, false},
      {6, 1, 128, 128, 1, 5000, false, true, true}, {4, 2, 64, 16, 7, 2, true, true, true},
      {2, 2, 256, 64, 4, 1001, false, false, true},
  };
  for (const Case& c : cases) {
    const std::string what = "rope_store H=" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) +
                             " hd=" + std::to_string(c.hd) + " rot=" + std::to_string(c.rot) +
                             (c.inter ? " interleaved" : " neox") + (c.sink_copy ? " +qs" : "") +
                             (c.f16 ? " f16" : " f32");
    cpu::AttnGeometry g = geometry(c.H, c.Hkv, c.hd, 4, 24, c.T);
    g.kv_f16 = c.f16;
    const int64_t ldq = c.H * c.hd + 2 * c.Hkv * c.hd, ldk = ldq;  // views into a fused [q | k | v] row
    std::vector<float> qkv = uniform(size_t(c.T * ldq));
    std::vector<int64_t> pos(size_t(c.T)), spos(size_t(c.T));
    for (int64_t i = 0; i < c.T; ++i) {
      pos[size_t(i)] = 3000000 + c.t0 + i;
      spos[size_t(i)] = std::min<int64_t>(c.t0 + i, 28);
    }
    const size_t half = size_t(c.T * c.rot / 2);
    std::vector<float> cs(half), sn(half), cs_s(half), sn_s(half);
    cpu::rope_tables(pos.data(), c.T, c.rot, 10000.0, cs.data(), sn.data());
    cpu::rope_tables(spos.data(), c.T, c.rot, 10000.0, cs_s.data(), sn_s.data());
    const size_t cache_n = size_t(g.n_kv_heads * g.capacity * g.head_dim);
    const size_t es = c.f16 ? 2 : 4;
    std::vector<uint8_t> kc(cache_n * es), vc(cache_n * es);
    for (size_t i = 0; i < kc.size(); ++i) {
      kc[i] = uint8_t(i * 2654435761u >> 24);
      vc[i] = uint8_t(i * 40503u >> 8);
    }
    if (!c.f16)  // keep the f32 cache finite: random bytes could be NaN, which compares unequal to itself
      for (size_t i = 0; i < cache_n; ++i) {
        const float a = float(i % 97) * 0.01f, b = float(i % 89) * -0.01f;
        std::memcpy(&kc[4 * i], &a, 4);
        std::memcpy(&vc[4 * i], &b, 4);
      }
    std::vector<float> ref = qkv, ref_qs(size_t(c.T * ldq), kNaN);
    std::vector<uint8_t> kref = kc, vref = vc;
    float* q = ref.data();
    cpu().rope_store(q, ldq, c.sink_copy ? ref_qs.data() : nullptr, q + c.H * c.hd, ldk,
                     q + (c.H + c.Hkv) * c.hd, ldk, c.T, c.t0, c.rot, c.inter, cs.data(), sn.data(), cs_s.data(),
                     sn_s.data(), kref.data(), vref.data(), g);

    Dev dq = upload(gpu(), qkv), dqs = upload(gpu(), std::vector<float>(ref_qs.size(), kNaN));
    Dev dc = upload(gpu(), cs), ds = upload(gpu(), sn), dcs = upload(gpu(), cs_s), dss = upload(gpu(), sn_s);
    Dev dkc = upload(gpu(), kc), dvc = upload(gpu(), vc);
    float* gq = dq.as<float>();
    gpu().rope_store(gq, ldq, c.sink_copy ? dqs.as<float>() : nullptr, gq + c.H * c.hd, ldk,
                     gq + (c.H + c.Hkv) * c.hd, ldk, c.T, c.t0, c.rot, c.inter, dc.as<float>(), ds.as<float>(),
                     dcs.as<float>(), dss.as<float>(), dkc.get(), dvc.get(), g);
    // The q part of each row (the CUDA kernel leaves k unrotated in its buffer; only the cache copy counts).
    auto q_part = [&](const std::vector<float>& rows) {
      std::vector<float> out;
      for (int64_t i = 0; i < c.T; ++i)
        out.insert(out.end(), rows.begin() + i * ldq, rows.begin() + i * ldq + c.H * c.hd);
      return out;
    };
    expect_close(q_part(download<float>(dq)), q_part(ref), kF32Tol, what + " q");
    if (c.sink_copy) expect_close(q_part(download<float>(dqs)), q_part(ref_qs), kF32Tol, what + " qs");
    if (c.f16) {  // rotated values rounded to half: equal, or one half-ulp apart when f32 rounding differs
      const std::vector<uint16_t> gk = download<uint16_t>(dkc), gv = download<uint16_t>(dvc);
      std::vector<float> gkf, rkf;
      for (size_t i = 0; i < cache_n; ++i) {
        uint16_t r;
        std::memcpy(&r, &kref[2 * i], 2);
        gkf.push_back(f16_to_f32(gk[i]));
        rkf.push_back(f16_to_f32(r));
      }
      expect_close(gkf, rkf, Tol{1e-3, 0.0}, what + " K cache");
      EXPECT_EQ(std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(gv.data()),
                                     reinterpret_cast<const uint8_t*>(gv.data()) + vref.size()),
                vref)
          << what << " V cache";
    } else {
      std::vector<float> gk = download<float>(dkc), rk(cache_n);
      std::memcpy(rk.data(), kref.data(), kref.size());
      expect_close(gk, rk, kF32Tol, what + " K cache");
      std::vector<float> gv = download<float>(dvc), rv(cache_n);
      std::memcpy(rv.data(), vref.data(), vref.size());
      expect_close(gv, rv, kExact, what + " V cache");
    }
  }
}

struct AttnCase {
  const char* name;
  int64_t H, Hkv, hd, S, R, T, t0;
  bool alibi;
  int extra;        // 0: none, 1: random per head, 2: all zero (softmax-off-by-one)
  bool two_q;       // q_sink distinct from q_abs
};

TEST_F(CudaBackendTest, Attention) {
  const AttnCase cases[] = {
      {"sinks+wrapped ring, GQA, ALiBi, extra logit, chunk", 8, 2, 64, 4, 16, 5, 100, true, 1, true},
      {"warm-up: only sinks admitted, head_dim 80", 4, 4, 80, 4, 16, 3, 0, false, 1, false},
      {"chunk crossing sinks into ring, MQA, ALiBi", 6, 1, 128, 4, 16, 7, 2, true, 0, true},
      {"window only (S=0), decode, wrapped", 4, 2, 64, 0, 32, 1, 1000, false, 0, false},
      {"dense prefill (S=0, R > stream)", 2, 1, 32, 0, 300, 40, 0, true, 0, false},
      {"decode, sinks + wrapped ring, softmax-off-by-one", 9, 3, 64, 4, 64, 1, 5000, true, 2, false},
      {"decode, 4+1020 (split into chunks), two queries", 8, 8, 128, 4, 1020, 1, 70001, false, 0, true},
      {"decode, 4+1020 while filling (chunks beyond the keys)", 8, 2, 128, 4, 1020, 1, 300, false, 1, true},
      {"4 tokens (the decode kernel's largest T), 4+1020", 4, 4, 128, 4, 1020, 4, 3001, true, 0, true},
      {"long chunk, 4+1020, wrapped", 4, 2, 128, 4, 1020, 256, 9000, false, 1, true},
      // Rows of 12 or 24 bytes take the scalar decode path; 48 bytes (f32, hd 12) three 16-byte vectors, two
      // lanes per key; hd 40 in f16 five vectors, hd 256 in f32 sixty-four (two per lane).
      {"decode, head_dim 6 (scalar path), sinks + wrapped ring", 4, 2, 6, 4, 64, 1, 500, false, 1, true},
      {"decode, head_dim 12, 4+1020, 2 tokens", 4, 1, 12, 4, 1020, 2, 4000, true, 0, true},
      {"decode, head_dim 40, 4+1020, 3 tokens", 2, 2, 40, 4, 1020, 3, 2000, false, 0, true},
      {"decode, head_dim 256, 4+252", 4, 2, 256, 4, 252, 1, 7000, false, 1, true},
  };
  CudaOptions scalar_loads;
  scalar_loads.vector_attention = false;
  const std::unique_ptr<Backend> scalar = make_cuda_backend(0, scalar_loads);
  for (bool f16 : {false, true})
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(std::string(c.name) + (f16 ? ", f16 cache" : ", f32 cache"));
    cpu::AttnGeometry g = geometry(c.H, c.Hkv, c.hd, c.S, c.R, c.T);
    g.kv_f16 = f16;
    const int64_t ld_q = c.H * c.hd + 8;
    const size_t cache_n = size_t(g.n_kv_heads * g.capacity * g.head_dim);
    // Every slot holds random data, so reading a wrong slot shows; q is scaled up so the softmax is not flat.
    std::vector<float> kc = uniform(cache_n), vc = uniform(cache_n);
    // An f16 cache holds the halves of the same values; both backends read those same halves.
    std::vector<uint16_t> kh(cache_n), vh(cache_n);
    for (size_t i = 0; i < cache_n; ++i) {
      kh[i] = f32_to_f16(kc[i]);
      vh[i] = f32_to_f16(vc[i]);
    }
    const void* kref = f16 ? static_cast<const void*>(kh.data()) : kc.data();
    const void* vref = f16 ? static_cast<const void*>(vh.data()) : vc.data();
    const std::vector<float> qa = uniform(size_t(c.T * ld_q), -3.0f, 3.0f);
    const std::vector<float> qs = c.two_q ? uniform(qa.size(), -3.0f, 3.0f) : qa;
    const std::vector<float> slopes = uniform(size_t(c.H), 0.01f, 0.3f);
    const std::vector<float> extra = c.extra == 1 ? uniform(size_t(c.H)) : std::vector<float>(size_t(c.H), 0.0f);
    const float scale = 1.0f / std::sqrt(float(c.hd));
    const float* ref_alibi = c.alibi ? slopes.data() : nullptr;
    const float* ref_extra = c.extra ? extra.data() : nullptr;
    std::vector<float> ref(size_t(c.T * c.H * c.hd), kNaN);
    cpu().attention(qa.data(), qs.data(), ld_q, c.T, c.t0, kref, vref, g, scale, ref_alibi, ref_extra,
                    ref.data());

    Dev dkc = f16 ? upload(gpu(), kh) : upload(gpu(), kc), dvc = f16 ? upload(gpu(), vh) : upload(gpu(), vc);
    Dev dqa = upload(gpu(), qa), dqs = upload(gpu(), qs);
    Dev dsl = upload(gpu(), slopes), dex = upload(gpu(), extra);
    // The default backend (16-byte cache loads where the rows allow) and one with scalar loads everywhere.
    for (Backend* be : {&gpu(), scalar.get()}) {
      Dev dout = upload(gpu(), std::vector<float>(ref.size(), kNaN));
      be->attention(dqa.as<float>(), c.two_q ? dqs.as<float>() : dqa.as<float>(), ld_q, c.T, c.t0, dkc.get(),
                    dvc.get(), g, scale, c.alibi ? dsl.as<float>() : nullptr, c.extra ? dex.as<float>() : nullptr,
                    dout.as<float>());
      expect_close(download<float>(dout), ref, kF32Tol,
                   std::string(c.name) + (be == &gpu() ? "" : ", scalar loads"));
    }
  }
}

// ---- errors ----------------------------------------------------------------------------------------------------

TEST_F(CudaBackendTest, BadDeviceThrows) {
  EXPECT_THROW(make_cuda_backend(cuda_device_count()), Error);
  EXPECT_THROW(make_cuda_backend(-1), Error);
}

TEST_F(CudaBackendTest, UnsupportedWeightDtypeThrows) {
  Dev d(gpu(), 64);
  EXPECT_THROW(gpu().linear(d.as<float>(), 1, 4, 4, d.get(), DType::I32, 4, nullptr, d.as<float>(), 4), Error);
}

}  // namespace
}  // namespace sllm
