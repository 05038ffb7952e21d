// streamllm CUDA internals shared by the .cu files: error macros, reduction helpers, and the launchers of the
// compute kernels (kernels.cu) that the backend class (cuda_backend.cu) calls. Not for src/: it includes CUDA.
#pragma once
#include <cublas_v2.h>     // cublasStatus_t, cublasGetStatusString
#include <cuda_runtime.h>  // cudaError_t, cudaStream_t, cudaGetErrorString

#include <cstdint>  // int64_t, int32_t
#include <string>   // std::string

#include "core/dtype.h"    // DType
#include "core/error.h"    // sllm::Error
#include "cpu/kernels.h"   // cpu::AttnGeometry
#include "ops/backend.h"   // ActOp

namespace sllm::cuda {

[[noreturn]] inline void throw_cuda(const char* what, const char* expr, const char* file, int line) {
  throw Error(std::string("CUDA error: ") + what + " in `" + expr + "` at " + file + ":" + std::to_string(line));
}

}  // namespace sllm::cuda

// CUDA_CHECK(expr): evaluate a CUDA runtime call; on failure throw sllm::Error naming the error, the expression,
// the file and the line. Kernel launches are followed by CUDA_CHECK(cudaGetLastError()).
#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    const cudaError_t sllm_err_ = (expr);                                                     \
    if (sllm_err_ != cudaSuccess)                                                             \
      ::sllm::cuda::throw_cuda(cudaGetErrorString(sllm_err_), #expr, __FILE__, __LINE__);     \
  } while (0)

// CUBLAS_CHECK(expr): the same for a cuBLAS call.
#define CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                        \
    const cublasStatus_t sllm_st_ = (expr);                                                   \
    if (sllm_st_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::sllm::cuda::throw_cuda(cublasGetStatusString(sllm_st_), #expr, __FILE__, __LINE__);   \
  } while (0)

namespace sllm::cuda {

// Launchers (kernels.cu). Compute only: shapes were checked by the front-end. All pointers are device memory;
// every launcher enqueues on `s` and checks the launch (asynchronous faults surface at a later CUDA call).

// x, y: (T, D); w, b: (D) (b may be null for layernorm). y may equal x.
void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* y, cudaStream_t s);
void layernorm(const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
               cudaStream_t s);
// x: (T, H, head_dim), row stride ld, rotated in place on its first rot_dims; cos, sin: (T, rot_dims/2).
void rope(float* x, int64_t T, int64_t H, int64_t head_dim, int64_t ld, int64_t rot_dims, const float* cos,
          const float* sin, bool interleaved, cudaStream_t s);
// x: (n) in place.
void activation(ActOp op, float* x, int64_t n, cudaStream_t s);
// gate: (T, F) stride ldg; up: (T, F) stride ldu; out: (T, F) contiguous (may equal gate when ldg == F).
void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t T, int64_t F, float* out,
            cudaStream_t s);
// y, x: (n); y += x.
void add(float* y, const float* x, int64_t n, cudaStream_t s);
// x: (n) in place.
void clamp(float* x, int64_t n, float lo, float hi, cudaStream_t s);
// ids: (T) int32; table: (V, D) in t (F32/F16/BF16); out: (T, D) f32.
void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out, cudaStream_t s);
// Y: (T, N) stride ldy; bias: (N); Y[t, n] += bias[n].
void add_bias(float* Y, const float* bias, int64_t T, int64_t N, int64_t ldy, cudaStream_t s);
// X: (T, K) f32 stride ldx -> out: (T, K) contiguous in `to` (F16 or BF16), round to nearest even.
void convert_rows(const float* X, int64_t T, int64_t K, int64_t ldx, DType to, void* out, cudaStream_t s);
// Streaming attention and cache write, same contract as cpu::attention_stream / cpu::kv_store (cpu/kernels.h).
void attention(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0, const float* kcache,
               const float* vcache, const cpu::AttnGeometry& g, float scale, const float* alibi,
               const float* extra_logit, float* out, cudaStream_t s);
void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, float* kcache,
              float* vcache, const cpu::AttnGeometry& g, cudaStream_t s);

}  // namespace sllm::cuda
