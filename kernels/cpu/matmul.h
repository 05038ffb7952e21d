// streamllm CPU kernels: linear layers. Compute only: the front-end (src/ops) checks shapes and dtypes.
#pragma once
#include <cstdint>  // int64_t

#include "core/dtype.h"  // DType

namespace sllm::cpu {

// Y[t, n] = sum_k X[t, k] * W[n, k] (+ bias[n])  — a PyTorch nn.Linear with W in its [out, in] layout.
//   X:    (T, K) f32, row stride ldx (>= K)
//   W:    (N, K) in wtype (F32, F16, BF16, or a block format Q8_0 / Q4_0 / Q4_1 with K a multiple of 32),
//         rows contiguous
//   bias: (N) f32 or nullptr
//   Y:    (T, N) f32, row stride ldy (>= N); overwritten
// T == 1 is the decode GEMV (memory-bound); T > 1 is the blocked GEMM (compute-bound).
// Multi-threaded with OpenMP over the calling team (call from outside a parallel region).
void linear(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
            const float* bias, float* Y, int64_t ldy);

// Straightforward scalar version of `linear` (double accumulation): the reference for tests.
void linear_reference(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                      const float* bias, float* Y, int64_t ldy);

// C[m, n] (+)= sum_k A[m, k] * B[n, k], all f32: the training GEMM (backward passes call it with transposed
// operands). A: (M, K) row stride lda; B: (N, K) rows contiguous; C: (M, N) row stride ldc, overwritten or, when
// `accumulate`, added to. Same packed kernel and numerics as the GEMM path of `linear` (any M >= 1).
void gemm_nt(const float* A, int64_t M, int64_t K, int64_t lda, const float* B, int64_t N, float* C, int64_t ldc,
             bool accumulate);

}  // namespace sllm::cpu
