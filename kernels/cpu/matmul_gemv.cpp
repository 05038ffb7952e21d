// streamllm CPU kernels: the GEMV path of `linear` (decode, T < linear_gemm_min_tokens()). See matmul.cpp for
// the overall design.
//
// Y[t, n] = X[t, :] . W[n, :] computed as dot products along k: W rows are read straight from memory (each
// byte once per call when T <= kTokGroup) and widened to f32 in registers, so the cost is the weight bytes over
// memory bandwidth. A tile is MT tokens x R rows with one SIMD accumulator each (MT * R independent FMA chains,
// enough to hide the FMA latency); the lanes are reduced once per tile at the end. f32 accumulation, each
// accumulator sums K / kLanes products, then a pairwise lane reduction.
#include <omp.h>  // omp_get_max_threads, omp_get_num_threads, omp_get_thread_num

#include <algorithm>  // std::min
#include <cstdint>    // int64_t, uintptr_t

#include "cpu/matmul_internal.h"  // linear_gemv
#include "cpu/matmul_simd.h"      // vf, vload, wload, hsum_n, kLanes

namespace sllm::cpu {
namespace {

using namespace mm;

// Rows per block handed to a thread, and tokens per tile. Register budget: MT * R accumulators + MT x vectors.
#if defined(SLLM_MM_AVX512)
constexpr int kRowBlock = 8;
constexpr int kTokGroup = 4;
template <int MT>
constexpr int kTileRows = MT <= 2 ? 8 : 4;
#elif defined(SLLM_MM_AVX2)
constexpr int kRowBlock = 4;
constexpr int kTokGroup = 2;
template <int MT>
constexpr int kTileRows = 4;
#else
constexpr int kRowBlock = 4;
constexpr int kTokGroup = 4;
template <int MT>
constexpr int kTileRows = 4;
#endif

// Below this many weight elements a call runs on the calling thread: fork/join would cost more than it saves.
constexpr int64_t kMinParallelElems = 64 * 1024;

template <DType DT>
inline const void* row_ptr(const void* w, int64_t row, int64_t K) {
  return static_cast<const char*>(w) + rows_bytes<DT>(row, K);
}

// dot_tile for a block format: per block of 32 k's, each row's block is widened to f32 in registers (qblock)
// and multiplied into the same accumulators as the float path (lane i sums the k's = i mod kLanes). The next
// tile is prefetched at the same pace as the rows are read (R blocks per step).
template <DType DT, int MT, int R>
inline void dot_tile_q(const float* x, int64_t ldx, const void* w, int64_t K, float* out, uintptr_t pf) {
  constexpr int64_t bb = int64_t(dtype_block_bytes(DT));
  const int64_t nb = K / kQuantBlock, rb = nb * bb;
  const auto* wb = static_cast<const unsigned char*>(w);
  vf acc[MT][R];
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = vzero();
  constexpr int kPfLines = int((R * bb + 63) / 64);  // lines of the next tile per block step (a line may repeat)
  for (int64_t b = 0; b < nb; ++b) {
    if constexpr (R > 1) {
      const uintptr_t p = pf + uintptr_t(b * R * bb);
      for (int i = 0; i < kPfLines; ++i) prefetch_l2(reinterpret_cast<const void*>(p + 64 * i));
    }
    vf xv[MT][kQVecs];
    for (int t = 0; t < MT; ++t)
      for (int i = 0; i < kQVecs; ++i) xv[t][i] = vload(x + t * ldx + b * kQuantBlock + i * kLanes);
    for (int r = 0; r < R; ++r) {
      const QVecs wv = qblock<DT>(wb + r * rb + b * bb);
      for (int t = 0; t < MT; ++t)
        for (int i = 0; i < kQVecs; ++i) acc[t][r] = vfma(wv.v[i], xv[t][i], acc[t][r]);
    }
  }
  for (int t = 0; t < MT; ++t) {
    vf fin[R];  // (a copy: taking acc's address keeps GCC from holding it in registers through the loop)
    for (int r = 0; r < R; ++r) fin[r] = acc[t][r];
    hsum_n<R>(fin, out + t * R);
  }
}

// out[t * R + r] = sum_k x[t * ldx + k] * w[r * K + k] for t < MT, r < R.
// pf: the next R * K weights (the next tile, contiguous after this one), prefetched into L2 a slice per k step.
// The R rows of a tile are R short streams (a row of 576 f16 is 18 cache lines) that the hardware prefetcher
// picks up too late; prefetching the next tile while computing this one (distance = one tile, into L2; measured
// better than L1 or two tiles) takes the 16-bit GEMV from ~50% to 90-100% of the measured read bandwidth.
template <DType DT, int MT, int R>
inline void dot_tile_f(const float* x, int64_t ldx, const void* w, int64_t K, float* out, uintptr_t pf) {
  vf acc[MT][R];
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = vzero();
  const int64_t kv = K - K % kLanes;
  constexpr int kPfBytes = R > 1 ? R * kLanes * kWBytes<DT> : 0;  // per k step
  for (int64_t k = 0; k < kv; k += kLanes) {
    if constexpr (kPfBytes >= 64) {
      for (int i = 0; i < kPfBytes; i += 64) prefetch_l2(reinterpret_cast<const void*>(pf + i));
      pf += kPfBytes;
    }
    vf xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = vload(x + t * ldx + k);
    for (int r = 0; r < R; ++r) {
      const vf wv = wload<DT>(w, r * K + k);
      for (int t = 0; t < MT; ++t) acc[t][r] = vfma(wv, xv[t], acc[t][r]);
    }
  }
  if (kv < K) {
    const int n = int(K - kv);
    vf xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = xload_part(x + t * ldx + kv, n);
    for (int r = 0; r < R; ++r) {
      const vf wv = wload_part<DT>(w, r * K + kv, n);
      for (int t = 0; t < MT; ++t) acc[t][r] = vfma(wv, xv[t], acc[t][r]);
    }
  }
  for (int t = 0; t < MT; ++t) hsum_n<R>(acc[t], out + t * R);
}

template <DType DT, int MT, int R>
inline void dot_tile(const float* x, int64_t ldx, const void* w, int64_t K, float* out, uintptr_t pf) {
  if constexpr (is_quantized(DT))
    dot_tile_q<DT, MT, R>(x, ldx, w, K, out, pf);
  else
    dot_tile_f<DT, MT, R>(x, ldx, w, K, out, pf);
}

// Y[t0 + t, n0 + r] for t < MT and r < rows (<= kRowBlock), tiles of kTileRows<MT> rows, then single rows.
template <DType DT, int MT>
void rows_x_tokens(const float* x, int64_t ldx, const void* w, int64_t K, int64_t rows, const float* bias, float* y,
                   int64_t ldy) {
  constexpr int R = kTileRows<MT>;
  float out[MT * R];
  int64_t r0 = 0;
  for (; r0 + R <= rows; r0 += R) {
    // (The prefetch address may lie past the matrix: prefetches never fault, so it is kept as an integer.)
    dot_tile<DT, MT, R>(x, ldx, row_ptr<DT>(w, r0, K), K, out,
                        reinterpret_cast<uintptr_t>(w) + uintptr_t(rows_bytes<DT>(r0 + R, K)));
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) y[t * ldy + r0 + r] = out[t * R + r] + (bias ? bias[r0 + r] : 0.0f);
  }
  for (; r0 < rows; ++r0) {
    dot_tile<DT, MT, 1>(x, ldx, row_ptr<DT>(w, r0, K), K, out, 0);
    for (int t = 0; t < MT; ++t) y[t * ldy + r0] = out[t] + (bias ? bias[r0] : 0.0f);
  }
}

template <DType DT>
void tokens_group(int mt, const float* x, int64_t ldx, const void* w, int64_t K, int64_t rows, const float* bias,
                  float* y, int64_t ldy) {
  switch (mt) {
    case 1:
      rows_x_tokens<DT, 1>(x, ldx, w, K, rows, bias, y, ldy);
      break;
    case 2:
      if constexpr (kTokGroup >= 2) rows_x_tokens<DT, 2>(x, ldx, w, K, rows, bias, y, ldy);
      break;
    case 3:
      if constexpr (kTokGroup >= 3) rows_x_tokens<DT, 3>(x, ldx, w, K, rows, bias, y, ldy);
      break;
    case 4:
      if constexpr (kTokGroup >= 4) rows_x_tokens<DT, 4>(x, ldx, w, K, rows, bias, y, ldy);
      break;
    default:
      break;
  }
}

// One block of up to kRowBlock rows for all T tokens, kTokGroup tokens at a time. Only the first group reads
// the rows from memory; the others find them in L1 / L2 (a block is at most 8 x K weights).
template <DType DT>
void row_block(const float* X, int64_t T, int64_t K, int64_t ldx, const void* w, int64_t rows, const float* bias,
               float* y, int64_t ldy) {
  for (int64_t t0 = 0; t0 < T; t0 += kTokGroup) {
    const int mt = int(std::min<int64_t>(kTokGroup, T - t0));
    tokens_group<DT>(mt, X + t0 * ldx, ldx, w, K, rows, bias, y + t0 * ldy, ldy);
  }
}

template <DType DT>
void gemv(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, int64_t N, const float* bias, float* Y,
          int64_t ldy) {
  const int64_t nblk = (N + kRowBlock - 1) / kRowBlock;
  const bool par = N * K * T >= kMinParallelElems && omp_get_max_threads() > 1;
#pragma omp parallel if (par)
  {
    // Each thread takes one contiguous run of row blocks (an even split, no scheduling traffic).
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t b0 = nblk * id / nt, b1 = nblk * (id + 1) / nt;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * kRowBlock;
      const int64_t rows = std::min<int64_t>(kRowBlock, N - n0);
      row_block<DT>(X, T, K, ldx, row_ptr<DT>(W, n0, K), rows, bias ? bias + n0 : nullptr, Y + n0, ldy);
    }
  }
}

}  // namespace

void linear_gemv(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                 const float* bias, float* Y, int64_t ldy) {
  with_weight_dtype(wtype, [&]<DType DT>() { gemv<DT>(X, T, K, ldx, W, N, bias, Y, ldy); });
}

}  // namespace sllm::cpu
