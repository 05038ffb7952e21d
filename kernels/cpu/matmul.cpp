// streamllm CPU kernels: linear layers, Y = X W^T + b (matmul.h), and the scalar reference.
//
// Algorithm. Two kernels, picked by the number of tokens T (measured crossover on Zen 4: T = 8):
//  * T < 8: GEMV (matmul_gemv.cpp). Decode is memory-bound: every weight byte is used once per token, so the
//    goal is to read W at the memory bandwidth. Each OpenMP thread takes one contiguous half of the rows; a tile
//    of 8 rows x up to 2 tokens (4 rows x 3-4 tokens) is a set of dot products along k with one SIMD
//    accumulator per (row, token), W widened to f32 in registers (f16: vcvtph2ps, bf16: zero-extend + shift
//    left 16). Rows are short streams (576 f16 = 18 cache lines) that the hardware prefetcher starts too late,
//    so each tile prefetches the next one into L2 while it computes (16-bit decode: ~50% -> ~95% of bandwidth).
//  * T >= 8: GEMM (matmul_gemm.cpp). Prefill is compute-bound. X is packed k-major in blocks of 32 / 16 / 8
//    tokens, each thread widens blocks of 12 rows of W into an f32 panel once and runs a 12 x 32 outer-product
//    micro-kernel (24 zmm accumulators, broadcast weights, vector token loads) over every token block.
//  Small problems run on the calling thread (an OpenMP fork/join costs ~1 us, the 576 -> 192 decode ~8 us).
//  The same templates compile to AVX-512 (16 lanes), AVX2+FMA+F16C (8 lanes) or scalar code (matmul_simd.h).
//
// Numerics. Products and sums in f32 with FMA; 16-bit weights are widened exactly, so all three dtypes compute
// on exactly the stored values. GEMV: each lane accumulates ~K / 16 products, then the lanes are summed
// pairwise. GEMM: each output accumulates its K products in k order. The bias is added last. Worst-case error
// |y - y_exact| <~ K * 2^-24 * sum_k |x_k w_k| (GEMM; K / 16 for GEMV); on random data it is ~sqrt(K) * 2^-24
// times that sum, and the tests hold both paths to 1e-5 * sum |x w| up to K = 4096. The split over threads does
// not change any output's arithmetic: results are bit-identical for any thread count.
// linear_reference accumulates in double and rounds once.
#include "cpu/matmul.h"

#include <cstdint>  // int64_t, uint16_t
#include <string>   // std::string
#include <vector>   // std::vector

#include "core/error.h"           // SLLM_CHECK
#include "cpu/matmul_internal.h"  // linear_gemv, linear_gemm
#include "cpu/matmul_simd.h"      // mm::kIsaName
#include "cpu/quant.h"            // dequantize_blocks

namespace sllm::cpu {

int64_t linear_gemm_min_tokens() { return 8; }

const char* linear_isa_name() { return mm::kIsaName; }

void linear(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N, const float* bias,
            float* Y, int64_t ldy) {
  SLLM_CHECK(wtype == DType::F32 || wtype == DType::F16 || wtype == DType::BF16 || is_quantized(wtype),
             std::string("linear: weight dtype must be f32, f16, bf16, q8_0, q4_0 or q4_1, got ") + dtype_name(wtype));
  SLLM_CHECK(!is_quantized(wtype) || K % kQuantBlock == 0,
             std::string("linear: ") + dtype_name(wtype) + " rows of " + std::to_string(K) + " are not whole blocks");
  if (T <= 0 || N <= 0) return;
  if (K <= 0) {  // empty sum: Y = bias
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) Y[t * ldy + n] = bias ? bias[n] : 0.0f;
    return;
  }
  if (T >= linear_gemm_min_tokens()) {
    linear_gemm(X, T, K, ldx, W, wtype, N, bias, Y, ldy);
  } else {
    linear_gemv(X, T, K, ldx, W, wtype, N, bias, Y, ldy);
  }
}

namespace {
double weight_at(const void* W, DType wtype, int64_t i) {
  switch (wtype) {
    case DType::F32:
      return static_cast<const float*>(W)[i];
    case DType::F16:
      return f16_to_f32(static_cast<const uint16_t*>(W)[i]);
    case DType::BF16:
      return bf16_to_f32(static_cast<const uint16_t*>(W)[i]);
    default:
      return 0.0;
  }
}
}  // namespace

void linear_reference(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                      const float* bias, float* Y, int64_t ldy) {
  SLLM_CHECK(wtype == DType::F32 || wtype == DType::F16 || wtype == DType::BF16 || is_quantized(wtype),
             std::string("linear_reference: unsupported weight dtype ") + dtype_name(wtype));
  if (is_quantized(wtype)) {  // the reference of a block format: its dequantised rows, then the f32 reference
    std::vector<float> w(size_t(N * K));
    for (int64_t n = 0; n < N; ++n)
      dequantize_blocks(wtype, static_cast<const char*>(W) + dtype_bytes(wtype, n * K), K, w.data() + n * K);
    return linear_reference(X, T, K, ldx, w.data(), DType::F32, N, bias, Y, ldy);
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? double(bias[n]) : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(X[t * ldx + k]) * weight_at(W, wtype, n * K + k);
      Y[t * ldy + n] = float(s);
    }
  }
}

}  // namespace sllm::cpu
