// streamllm CPU kernels: the GEMM path of `linear` (prefill, T >= linear_gemm_min_tokens()). See matmul.cpp for
// the overall design.
//
// Computes the transposed product Y^T[n, t] = sum_k W[n, k] * X[t, k] with an outer-product micro-kernel: a tile
// of kMR weight rows x (NV vectors of L lanes) tokens lives in kMR * NV SIMD registers; each k step loads NV
// token vectors from the packed X and broadcasts kMR weights (AVX-512: 12 x 32 tokens, 24 zmm accumulators,
// 2 loads + 12 broadcasts per 24 FMAs; ~114 GFLOP/s per Zen 4 core from L1, i.e. its FMA peak).
// Packing:
//   X -> Xp, per token block: (Kp, bw) k-major, tokens contiguous, zero padded (Kp = K rounded up to kLanes).
//        Blocks are 2 kLanes tokens wide; the tail of T gets a kLanes or a half-width (ymm) block so that short
//        prompts waste little (T = 8 runs on 8-lane vectors: two 256-bit FMAs per cycle on Zen 4 keep ~85% of
//        the zmm rate). Built once per call by both threads (16 x 16 in-register transposes), then shared.
//   W -> Wp, per block of kMR rows (thread-local): (Kp / kLanes, kMR, kLanes), i.e. for every chunk of kLanes
//        k's the kMR rows one after the other, widened to f32. Converted once, reused for every token block;
//        the kernel reads it as one sequential stream with constant offsets.
// Orienting the product this way means W is only widened (vector loads, no transpose); only X (T x K, small
// next to N x K) is transposed. Threads split the row blocks evenly; while a block computes, the next block's
// weights are prefetched into L2 a few lines per chunk (matters when T is small and W streams from memory).
// Numerics: each output is one accumulator lane that sums its K products in k order, in f32 with FMA.
#include <omp.h>  // omp_get_max_threads

#include <algorithm>  // std::min
#include <cstdint>    // int64_t
#include <vector>     // std::vector

#include "cpu/matmul_internal.h"  // linear_gemm
#include "cpu/matmul_simd.h"      // Vec, wload, vstore, prefetch_l2, AlignedScratch, kLanes

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
constexpr int kBlockTok = 2 * kLanes;                     // tokens per full block (2 vectors)
constexpr int kHalfLanes = kLanes >= 8 ? kLanes / 2 : 0;  // half-width vectors for short blocks (0: none)
constexpr int64_t kXPiece = 128;                          // k's per unit of X-packing work (multiple of 16)
constexpr int64_t kMinParallelMacs = 256 * 1024;          // smaller products run on the calling thread

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

#if defined(SLLM_MM_AVX512)
// dst[k * ldd + t] = src[t * lds + k] for a 16 x 16 tile: unpack 32-bit, unpack 64-bit, then a 4 x 4 transpose
// of the 128-bit lanes (64 shuffles for 256 elements instead of 256 scalar moves).
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], a[16], b[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int j = 0; j < 16; j += 4) {  // b[j + c], 128-bit lane l: rows j .. j + 3 of column 4 l + c
    const __m512d a0 = _mm512_castps_pd(a[j]), a1 = _mm512_castps_pd(a[j + 1]);
    const __m512d a2 = _mm512_castps_pd(a[j + 2]), a3 = _mm512_castps_pd(a[j + 3]);
    b[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 lo01 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44), hi01 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
    const __m512 lo23 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
    const __m512 hi23 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
    _mm512_storeu_ps(dst + (0 + c) * ldd, _mm512_shuffle_f32x4(lo01, lo23, 0x88));
    _mm512_storeu_ps(dst + (4 + c) * ldd, _mm512_shuffle_f32x4(lo01, lo23, 0xDD));
    _mm512_storeu_ps(dst + (8 + c) * ldd, _mm512_shuffle_f32x4(hi01, hi23, 0x88));
    _mm512_storeu_ps(dst + (12 + c) * ldd, _mm512_shuffle_f32x4(hi01, hi23, 0xDD));
  }
}
#endif

// Rows [k0, k1) of the Xp block for tokens [0, tb) of x (row stride ldx): xp[k * bw + t], zero where t >= tb
// or k >= K. k0 is a multiple of 16.
void pack_x(const float* x, int64_t ldx, int64_t tb, int64_t bw, int64_t K, int64_t k0, int64_t k1, float* xp) {
  auto scalar = [&](int64_t ta, int64_t tz, int64_t ka) {
    for (int64_t t = ta; t < tz; ++t)
      for (int64_t k = ka; k < k1; ++k) xp[k * bw + t] = (t < tb && k < K) ? x[t * ldx + k] : 0.0f;
  };
  int64_t t = 0;
#if defined(SLLM_MM_AVX512)
  for (; t + 16 <= tb; t += 16) {
    int64_t k = k0;
    for (; k + 16 <= std::min(k1, K); k += 16) transpose16(x + t * ldx + k, ldx, xp + k * bw + t, bw);
    scalar(t, t + 16, k);
  }
#endif
  scalar(t, bw, k0);
}

// Wp for `rows` (<= kMR) rows starting at w (stride K): wp[(c * kMR + r) * kLanes + i] = W[r, c * kLanes + i].
// Chunk-major so that the stores are sequential: row-major order stores with a stride of kMR lines, which maps
// a block onto a quarter of the L1 sets and runs 3-4x slower (conflict misses).
template <DType DT>
void pack_w_float(const void* w, int64_t rows, int64_t K, float* wp) {
  const int64_t kv = K / kLanes;  // full chunks
  float* dst = wp;
  if (rows == kMR) {
    for (int64_t c = 0; c < kv; ++c)
      for (int r = 0; r < kMR; ++r, dst += kLanes) vstore(dst, wload<DT>(w, r * K + c * kLanes));
  } else {
    for (int64_t c = 0; c < kv; ++c)
      for (int r = 0; r < kMR; ++r, dst += kLanes) vstore(dst, r < rows ? wload<DT>(w, r * K + c * kLanes) : vzero());
  }
  if (kv * kLanes < K) {
    for (int r = 0; r < kMR; ++r, dst += kLanes)
      vstore(dst, r < rows ? wload_part<DT>(w, r * K + kv * kLanes, int(K - kv * kLanes)) : vzero());
  }
}

// A block format's rows are widened into f32 first (L1/L2-resident; cheap next to the FMAs), then packed.
template <DType DT>
void pack_w(const void* w, int64_t rows, int64_t K, float* wp) {
  if constexpr (is_quantized(DT)) {
    thread_local AlignedScratch rows_f32;
    float* f = rows_f32.get(size_t(rows * K));
    const size_t rb = dtype_bytes(DT, K), bb = dtype_block_bytes(DT);
    for (int64_t r = 0; r < rows; ++r) {
      const auto* row = static_cast<const unsigned char*>(w) + size_t(r) * rb;
      for (int64_t b = 0; b < K / kQuantBlock; ++b) {  // the GEMV's in-register widening, stored
        const QVecs q = qblock<DT>(row + size_t(b) * bb);
        for (int i = 0; i < kQVecs; ++i) vstore(f + r * K + b * kQuantBlock + i * kLanes, q.v[i]);
      }
    }
    pack_w_float<DType::F32>(f, rows, K, wp);
  } else {
    pack_w_float<DT>(w, rows, K, wp);
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
void gemm(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, int64_t N, const float* bias, float* Y,
          int64_t ldy, bool accumulate) {
  const int64_t nc = (K + kLanes - 1) / kLanes;
  const int64_t Kp = nc * kLanes;
  const int64_t nrb = (N + kMR - 1) / kMR;  // row blocks
  // Token blocks and packed X. Both belong to the calling thread; the team sees them through these pointers.
  thread_local std::vector<TokBlock> plan_buf;
  thread_local AlignedScratch xbuf;
  plan_token_blocks(T, Kp, plan_buf);
  const TokBlock* const plan = plan_buf.data();
  const int64_t ntb = int64_t(plan_buf.size());
  float* const xp = xbuf.get(size_t(plan[ntb - 1].off + Kp * plan[ntb - 1].bw));
  const int64_t row_bytes = rows_bytes<DT>(1, K);
  const bool par = omp_get_max_threads() > 1 && nrb > 1 && T * K * N >= kMinParallelMacs;
#pragma omp parallel if (par)
  {
    // Pack X in pieces of kXPiece k's per token block, so both threads share the work even for one block.
    const int64_t npieces = (Kp + kXPiece - 1) / kXPiece;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < ntb * npieces; ++i) {
      const TokBlock& tk = plan[i / npieces];
      const int64_t k0 = i % npieces * kXPiece;
      pack_x(X + tk.t0 * ldx, ldx, tk.tb, tk.bw, K, k0, std::min(Kp, k0 + kXPiece), xp + tk.off);
    }
    // (implicit barrier: Xp complete)
    thread_local AlignedScratch wbuf;
    float* const wp = wbuf.get(size_t(nc * kMR * kLanes));
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
          if (accumulate)
            for (int64_t r = 0; r < rows; ++r) yr[r] += out[r * tk.bw + t];
          else
            for (int64_t r = 0; r < rows; ++r) yr[r] = out[r * tk.bw + t] + (bias ? bias[n0 + r] : 0.0f);
        }
      }
    }
  }
}

}  // namespace

void linear_gemm(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                 const float* bias, float* Y, int64_t ldy) {
  with_weight_dtype(wtype, [&]<DType DT>() { gemm<DT>(X, T, K, ldx, W, N, bias, Y, ldy, false); });
}

void gemm_nt(const float* A, int64_t M, int64_t K, int64_t lda, const float* B, int64_t N, float* C, int64_t ldc,
             bool accumulate) {
  if (M <= 0 || N <= 0 || K <= 0) {
    if (!accumulate && K <= 0)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = 0.0f;
    return;
  }
  gemm<DType::F32>(A, M, K, lda, B, N, nullptr, C, ldc, accumulate);
}

}  // namespace sllm::cpu
