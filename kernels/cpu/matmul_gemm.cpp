// streamllm CPU kernels: the GEMM path of `linear` (prefill, T >= 16). See matmul.cpp for the overall design.
//
// Computes the transposed product Y^T[n, t] = sum_k W[n, k] * X[t, k] with an outer-product micro-kernel:
// a tile of kMR weight rows x (NV * kLanes) tokens lives in kMR * NV SIMD registers; each k step loads NV
// vectors of tokens from the packed X and broadcasts kMR weights. Packing:
//   X  -> Xp, per block of kBlockTok tokens: (Kp, bw) k-major, tokens contiguous, zero padding (Kp = K rounded
//         up to kLanes, bw = tokens rounded up to kLanes). Built once per call, shared by the threads.
//   W  -> Wp, per block of kMR rows (thread-local): (Kp / kLanes, kMR, kLanes), i.e. for every chunk of kLanes
//         k's the kMR rows one after the other, widened to f32. The block is converted once and reused for
//         every token block; the kernel reads it as one sequential stream with constant offsets.
// Orienting the product this way means W is only widened (vector loads, no transpose); only X (T x K, small
// next to N x K) is transposed. Each accumulator lane sums its K products in order (f32).
#include <omp.h>  // omp_get_max_threads

#include <algorithm>  // std::min
#include <vector>     // std::vector

#include "cpu/matmul_internal.h"  // linear_gemm
#include "cpu/matmul_simd.h"      // vf, vload, vset1, vfma, wload, kLanes

namespace sllm::cpu {
namespace {

using namespace mm;

// Micro-tile: kMR rows x kNV token vectors = kMR * kNV accumulators (+ kNV token vectors + 1 broadcast).
#if defined(__AVX512F__)
constexpr int kMR = 12, kNV = 2;  // 24 + 2 + 1 of 32 zmm
#elif defined(__AVX2__)
constexpr int kMR = 6, kNV = 2;  // 12 + 2 + 1 of 16 ymm
#else
constexpr int kMR = 4, kNV = 4;
#endif
constexpr int kBlockTok = kNV * kLanes;

// Xp block for tokens [0, tb) of x (row stride ldx): xp[k * bw + t], zero where t >= tb or k >= K.
void pack_x(const float* x, int64_t ldx, int64_t tb, int64_t bw, int64_t K, int64_t Kp, float* xp) {
  for (int64_t t = 0; t < bw; ++t) {
    if (t < tb) {
      const float* xr = x + t * ldx;
      for (int64_t k = 0; k < K; ++k) xp[k * bw + t] = xr[k];
      for (int64_t k = K; k < Kp; ++k) xp[k * bw + t] = 0.0f;
    } else {
      for (int64_t k = 0; k < Kp; ++k) xp[k * bw + t] = 0.0f;
    }
  }
}

// Wp for `rows` (<= kMR) rows starting at w (stride K): wp[(c * kMR + r) * kLanes + i] = W[r, c * kLanes + i].
template <DType DT>
void pack_w(const void* w, int64_t rows, int64_t K, float* wp) {
  const int64_t nc = (K + kLanes - 1) / kLanes;
  const int64_t kv = K / kLanes;  // full chunks
  for (int r = 0; r < kMR; ++r) {
    float* dst = wp + r * kLanes;
    if (r >= rows) {
      for (int64_t c = 0; c < nc; ++c) vstore(dst + c * kMR * kLanes, vzero());
      continue;
    }
    const int64_t row = r * K;
    for (int64_t c = 0; c < kv; ++c) vstore(dst + c * kMR * kLanes, wload<DT>(w, row + c * kLanes));
    if (kv < nc) vstore(dst + kv * kMR * kLanes, wload_part<DT>(w, row + kv * kLanes, int(K - kv * kLanes)));
  }
}

// out[r * NV * kLanes + t] = sum_k wp(r, k) * xp(k, t) for r < kMR, t < NV * kLanes; nc chunks of kLanes k's.
template <int NV>
void micro_kernel(const float* wp, const float* xp, int64_t nc, float* out) {
  constexpr int bw = NV * kLanes;
  vf acc[kMR][NV];
  for (int r = 0; r < kMR; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = vzero();
  for (int64_t c = 0; c < nc; ++c) {
    const float* wc = wp + c * kMR * kLanes;
    const float* xc = xp + c * kLanes * bw;
#pragma GCC unroll 16
    for (int kk = 0; kk < kLanes; ++kk) {
      vf xv[NV];
      for (int j = 0; j < NV; ++j) xv[j] = vload(xc + kk * bw + j * kLanes);
      for (int r = 0; r < kMR; ++r) {
        const vf b = vset1(wc[r * kLanes + kk]);
        for (int j = 0; j < NV; ++j) acc[r][j] = vfma(b, xv[j], acc[r][j]);
      }
    }
  }
  for (int r = 0; r < kMR; ++r)
    for (int j = 0; j < NV; ++j) vstore(out + r * bw + j * kLanes, acc[r][j]);
}

template <int NV>
void tile_loop_nv(int nv, const float* wp, const float* xp, int64_t nc, float* out) {
  if constexpr (NV >= 1) {
    if (nv == NV) return micro_kernel<NV>(wp, xp, nc, out);
    return tile_loop_nv<NV - 1>(nv, wp, xp, nc, out);
  }
}

template <DType DT>
void gemm(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, int64_t N, const float* bias,
          float* Y, int64_t ldy) {
  const int64_t nc = (K + kLanes - 1) / kLanes;
  const int64_t Kp = nc * kLanes;
  const int64_t ntb = (T + kBlockTok - 1) / kBlockTok;  // token blocks
  const int64_t nrb = (N + kMR - 1) / kMR;              // row blocks
  // Packed X, one slot of Kp * kBlockTok floats per token block. The buffer belongs to the calling thread;
  // the team sees it through this pointer.
  thread_local std::vector<float> xbuf;
  xbuf.resize(size_t(ntb * Kp * kBlockTok));
  float* const xp = xbuf.data();
  const size_t wsize = dtype_size(DT);
  const bool par = omp_get_max_threads() > 1 && nrb > 1;
#pragma omp parallel if (par)
  {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < ntb; ++b) {
      const int64_t t0 = b * kBlockTok, tb = std::min<int64_t>(kBlockTok, T - t0);
      const int64_t bw = (tb + kLanes - 1) / kLanes * kLanes;
      pack_x(X + t0 * ldx, ldx, tb, bw, K, Kp, xp + b * Kp * kBlockTok);
    }
    // (implicit barrier: Xp complete)
    thread_local std::vector<float> wbuf;
    wbuf.resize(size_t(nc * kMR * kLanes));
    float* const wp = wbuf.data();
    alignas(64) float out[kMR * kBlockTok];
#pragma omp for schedule(static)
    for (int64_t rb = 0; rb < nrb; ++rb) {
      const int64_t n0 = rb * kMR, rows = std::min<int64_t>(kMR, N - n0);
      pack_w<DT>(static_cast<const char*>(W) + n0 * K * int64_t(wsize), rows, K, wp);
      for (int64_t b = 0; b < ntb; ++b) {
        const int64_t t0 = b * kBlockTok, tb = std::min<int64_t>(kBlockTok, T - t0);
        const int nv = int((tb + kLanes - 1) / kLanes), bw = nv * kLanes;
        tile_loop_nv<kNV>(nv, wp, xp + b * Kp * kBlockTok, nc, out);
        // Transpose the tile into Y (T, N) and add the bias.
        for (int64_t t = 0; t < tb; ++t) {
          float* yr = Y + (t0 + t) * ldy + n0;
          for (int64_t r = 0; r < rows; ++r) yr[r] = out[r * bw + t] + (bias ? bias[n0 + r] : 0.0f);
        }
      }
    }
  }
}

}  // namespace

void linear_gemm(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                 const float* bias, float* Y, int64_t ldy) {
  switch (wtype) {
    case DType::F32: gemm<DType::F32>(X, T, K, ldx, W, N, bias, Y, ldy); break;
    case DType::F16: gemm<DType::F16>(X, T, K, ldx, W, N, bias, Y, ldy); break;
    case DType::BF16: gemm<DType::BF16>(X, T, K, ldx, W, N, bias, Y, ldy); break;
    default: break;  // the front-end (linear) rejects other dtypes
  }
}

}  // namespace sllm::cpu
