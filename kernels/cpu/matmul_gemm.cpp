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

// Micro-tile: kMR rows x (NV vectors of L lanes) tokens; kMR * NV accumulators (+ NV token vectors + 1 broadcast).
#if defined(SLLM_MM_AVX512)
constexpr int kMR = 12;  // 12 x 2 zmm: 24 + 2 + 1 of 32 registers
#elif defined(SLLM_MM_AVX2)
constexpr int kMR = 6;  // 6 x 2 ymm: 12 + 2 + 1 of 16 registers
#else
constexpr int kMR = 4;
#endif
constexpr int kBlockTok = 2 * kLanes;              // tokens per full block (2 vectors)
constexpr int kHalfLanes = kLanes >= 8 ? kLanes / 2 : 0;  // half-width vectors for short blocks (0: none)

// A block of tokens [t0, t0 + tb) packed with width bw (tb <= bw, bw in {2 kLanes, kLanes, kLanes / 2}) at
// Xp + off. The tail of T is split so that little is padding: r tokens left (< 2 kLanes) become one full block
// if r > 1.5 kLanes, else a kLanes block (+ a half block if r > kLanes), else a half block.
struct TokBlock {
  int64_t t0, tb, bw, off;
};

void plan_token_blocks(int64_t T, int64_t Kp, std::vector<TokBlock>& plan) {
  plan.clear();
  int64_t t0 = 0, off = 0;
  auto add = [&](int64_t tb, int64_t bw) {
    plan.push_back({t0, tb, bw, off});
    t0 += tb;
    off += Kp * bw;
  };
  while (T - t0 >= kBlockTok) add(kBlockTok, kBlockTok);
  const int64_t r = T - t0;
  if (r == 0) return;
  if (2 * r > 3 * kLanes) {
    add(r, kBlockTok);
  } else if (r > kLanes) {
    add(kLanes, kLanes);
    add(r - kLanes, kHalfLanes > 0 ? kHalfLanes : kLanes);
  } else if (kHalfLanes > 0 && r <= kHalfLanes) {
    add(r, kHalfLanes);
  } else {
    add(r, kLanes);
  }
}

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

// Prefetch cursor over the next row block's weights, advanced a few lines per micro-kernel chunk: with few
// tokens the weight stream then overlaps the compute instead of alternating with it (a burst of prefetches at
// packing time overflows the miss queues and is mostly dropped).
struct Prefetcher {
  const char* p = nullptr;
  const char* end = nullptr;
  int64_t lines_per_step = 0;
  void step() {
    for (int64_t i = 0; i < lines_per_step && p < end; ++i, p += 64) prefetch_l2(p);
  }
};

// out[r * NV * L + t] = sum_k wp(r, k) * xp(k, t) for r < kMR, t < NV * L; nc chunks of kLanes k's.
template <int L, int NV>
void micro_kernel(const float* wp, const float* xp, int64_t nc, float* out, Prefetcher& pf) {
  using V = Vec<L>;
  constexpr int bw = NV * L;
  typename V::T acc[kMR][NV];
  for (int r = 0; r < kMR; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = V::zero();
  for (int64_t c = 0; c < nc; ++c) {
    pf.step();
    const float* wc = wp + c * kMR * kLanes;
    const float* xc = xp + c * kLanes * bw;
#pragma GCC unroll 16
    for (int kk = 0; kk < kLanes; ++kk) {
      typename V::T xv[NV];
      for (int j = 0; j < NV; ++j) xv[j] = V::load(xc + kk * bw + j * L);
      for (int r = 0; r < kMR; ++r) {
        const typename V::T b = V::set1(wc[r * kLanes + kk]);
        for (int j = 0; j < NV; ++j) acc[r][j] = V::fma(b, xv[j], acc[r][j]);
      }
    }
  }
  for (int r = 0; r < kMR; ++r)
    for (int j = 0; j < NV; ++j) V::store(out + r * bw + j * L, acc[r][j]);
}

void run_block(int64_t bw, const float* wp, const float* xp, int64_t nc, float* out, Prefetcher& pf) {
  if (bw == kBlockTok) return micro_kernel<kLanes, 2>(wp, xp, nc, out, pf);
  if constexpr (kHalfLanes > 0) {
    if (bw == kHalfLanes) return micro_kernel<kHalfLanes, 1>(wp, xp, nc, out, pf);
  }
  micro_kernel<kLanes, 1>(wp, xp, nc, out, pf);
}

template <DType DT>
void gemm(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, int64_t N, const float* bias,
          float* Y, int64_t ldy) {
  const int64_t nc = (K + kLanes - 1) / kLanes;
  const int64_t Kp = nc * kLanes;
  const int64_t nrb = (N + kMR - 1) / kMR;  // row blocks
  // Token blocks and packed X. Both belong to the calling thread; the team sees them through these pointers.
  thread_local std::vector<TokBlock> plan_buf;
  thread_local std::vector<float> xbuf;
  plan_token_blocks(T, Kp, plan_buf);
  const TokBlock* const plan = plan_buf.data();
  const int64_t ntb = int64_t(plan_buf.size());
  xbuf.resize(size_t(plan[ntb - 1].off + Kp * plan[ntb - 1].bw));
  float* const xp = xbuf.data();
  const int64_t row_bytes = K * kWBytes<DT>;
  const bool par = omp_get_max_threads() > 1 && nrb > 1;
#pragma omp parallel if (par)
  {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < ntb; ++b) pack_x(X + plan[b].t0 * ldx, ldx, plan[b].tb, plan[b].bw, K, Kp, xp + plan[b].off);
    // (implicit barrier: Xp complete)
    thread_local std::vector<float> wbuf;
    wbuf.resize(size_t(nc * kMR * kLanes));
    float* const wp = wbuf.data();
    alignas(64) float out[kMR * kBlockTok];
#pragma omp for schedule(static)
    for (int64_t rb = 0; rb < nrb; ++rb) {
      const int64_t n0 = rb * kMR, rows = std::min<int64_t>(kMR, N - n0);
      const char* wblock = static_cast<const char*>(W) + n0 * row_bytes;
      pack_w<DT>(wblock, rows, K, wp);
      Prefetcher pf;
      if (rb + 1 < nrb) {
        pf.p = wblock + kMR * row_bytes;
        pf.end = pf.p + std::min<int64_t>(kMR, N - n0 - kMR) * row_bytes;
        pf.lines_per_step = ((pf.end - pf.p) / 64 + nc * ntb - 1) / (nc * ntb);
      }
      for (int64_t b = 0; b < ntb; ++b) {
        const TokBlock& tk = plan[b];
        run_block(tk.bw, wp, xp + tk.off, nc, out, pf);
        // Transpose the tile into Y (T, N) and add the bias.
        for (int64_t t = 0; t < tk.tb; ++t) {
          float* yr = Y + (tk.t0 + t) * ldy + n0;
          for (int64_t r = 0; r < rows; ++r) yr[r] = out[r * tk.bw + t] + (bias ? bias[n0 + r] : 0.0f);
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
