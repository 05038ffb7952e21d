// streamllm CPU kernels: the two algorithms behind `linear` (internal; matmul.cpp picks one by T).
// Exposed so that tests can check each path on every shape and the bench can time both near the crossover.
#pragma once
#include <cstdint>  // int64_t

#include "core/dtype.h"  // DType

namespace sllm::cpu {

// Tokens at or above which `linear` uses the packed GEMM (linear_gemm) instead of the GEMV (linear_gemv).
int64_t linear_gemm_min_tokens();

// Name of the SIMD path compiled in: "avx512", "avx2" or "scalar".
const char* linear_isa_name();

// Same contract as `linear` (matmul.h); any T >= 1. Streams W once from memory with in-register conversion
// and computes dot products of a few tokens x a few rows at a time: the decode / chunked-decode kernel.
void linear_gemv(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                 const float* bias, float* Y, int64_t ldy);

// Same contract as `linear`; any T >= 1. Packs X transposed and blocks of W rows converted to f32, then runs a
// register-blocked outer-product micro-kernel: the prefill kernel.
void linear_gemm(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wtype, int64_t N,
                 const float* bias, float* Y, int64_t ldy);

}  // namespace sllm::cpu
