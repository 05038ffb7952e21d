// streamllm CPU kernels: ggml's block-quantised weight formats (Q8_0, Q4_0, Q4_1), as GGUF files store them.
//
// A row of K weights (K a multiple of 32) is K / 32 blocks; each block holds 32 weights:
//   Q8_0 (34 bytes): f16 d; i8 q[32]               w[j] = d * q[j]
//   Q4_0 (18 bytes): f16 d; u8 qs[16]              w[j] = d * ((qs[j] & 15) - 8),  w[j + 16] = d * ((qs[j] >> 4) - 8)
//   Q4_1 (20 bytes): f16 d; f16 m; u8 qs[16]       w[j] = d * (qs[j] & 15) + m,    w[j + 16] = d * (qs[j] >> 4) + m
// (little-endian, no padding; the ggml source's block_q8_0 / block_q4_0 / block_q4_1). Weights stay in these
// formats in memory and the CPU kernels widen them to f32 in registers (kernels/cpu/matmul_gemv.cpp), so a Q4_1
// model reads 5 bits per weight per token instead of 16 or 32.
#pragma once
#include <cstdint>  // int64_t

#include "core/dtype.h"  // DType

namespace sllm {

// dst[0, n) = the weights of the n / 32 blocks at src (t a block format; n a multiple of 32).
void dequantize_blocks(DType t, const void* src, int64_t n, float* dst);

// The blocks of src[0, n) in format t, rounded exactly as ggml's reference quantisers (quantize_row_*_ref, and
// gguf-py's numpy copies of them) round: the same file bytes from the same floats.
//   Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero)
//   Q4_0: d = x_m / -8 for the x_m of largest magnitude, q = min(15, trunc(x / d + 8.5))
//   Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5))
// (1 / d is taken in f32 before d is rounded to f16; d = 0 gives q = 0 / 8 / 0.)
void quantize_blocks(const float* src, int64_t n, DType t, void* dst);

}  // namespace sllm
