// streamllm CUDA internals shared by the .cu files: error macros, reduction helpers, and the launchers of the
// compute kernels (kernels.cu) that the backend class (cuda_backend.cu) calls. Not for src/: it includes CUDA.
#pragma once
#include <cublas_v2.h>     // cublasStatus_t, cublasGetStatusString
#include <cuda_runtime.h>  // cudaError_t, cudaStream_t, cudaGetErrorString

#include <cstdint>  // int64_t, int32_t
#include <string>   // std::string
#include <utility>  // std::forward

#include "core/dtype.h"    // DType
#include "core/error.h"    // sllm::Error
#include "cpu/kernels.h"   // cpu::AttnGeometry
#include "ops/backend.h"   // ActOp, SampleParams

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

// ---- launching: programmatic dependent launch (Hopper) -----------------------------------------------------------
//
// A decode step is hundreds of short kernels, each paying a fixed launch-and-ramp cost. With programmatic dependent
// launch (PDL, compute capability 9.0+) a kernel may be launched while its predecessor in the stream still runs: it
// starts, does what does not depend on the predecessor (the GEMV loads its first weights), then
// waits at griddepcontrol.wait until every predecessor grid has completed and its writes are visible. The rule
// that keeps this correct: every kernel this project launches with PDL calls kernel_prologue() before it reads or
// writes any memory that another kernel writes (weights excepted), and before any early return, so "grid done"
// still implies "all grids before it done". kernel_prologue() also triggers the launch of the next kernel at once
// (it may start as soon as every block of this one has started; its own wait keeps it correct). Without PDL (an
// older device, SLLM_CUDA_PDL=0, or a plain <<<>>> launch) both instructions are no-ops.

// The stream a launcher enqueues on and how it launches: whether its kernels may use PDL, and whether a GEMV's
// grid is at most one wave (each warp loops over its row groups; else a block per 8 output rows). Converts from a
// plain cudaStream_t (no PDL, one-wave GEMVs), so callers outside the backend pass streams as before.
struct Stream {
  cudaStream_t s = nullptr;
  bool pdl = false;
  bool gemv_wave = true;
  Stream(cudaStream_t stream, bool programmatic = false, bool one_wave = true)  // NOLINT: implicit
      : s(stream), pdl(programmatic), gemv_wave(one_wave) {}
  operator cudaStream_t() const { return s; }  // NOLINT: implicit
};

#ifdef __CUDACC__
__device__ __forceinline__ void kernel_prologue() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Brings the 128-byte line holding p into L2 (a hint: no fault, no result).
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// kernel<<<grid, block, smem, st.s>>>(args...), with the PDL attribute when st.pdl; checks the launch.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Stream st, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st.s;
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = st.pdl ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
#endif

// Launchers (kernels.cu). Compute only: shapes were checked by the front-end. All pointers are device memory;
// every launcher enqueues on `s` and checks the launch (asynchronous faults surface at a later CUDA call).

// x, y: (T, D); w, b: (D) (b may be null for layernorm). y may equal x.
void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* y, Stream s);
void layernorm(const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
               Stream s);
// x: (T, H, head_dim), row stride ld, rotated in place on its first rot_dims; cos, sin: (T, rot_dims/2).
void rope(float* x, int64_t T, int64_t H, int64_t head_dim, int64_t ld, int64_t rot_dims, const float* cos,
          const float* sin, bool interleaved, Stream s);
// x: (n) in place.
void activation(ActOp op, float* x, int64_t n, Stream s);
// gate: (T, F) stride ldg; up: (T, F) stride ldu; out: (T, F) contiguous (may equal gate when ldg == F).
void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t T, int64_t F, float* out,
            Stream s);
// y, x: (n); y += x.
void add(float* y, const float* x, int64_t n, Stream s);
// x: (n) in place.
void clamp(float* x, int64_t n, float lo, float hi, Stream s);
// ids: (T) int32; table: (V, D) in t (F32/F16/BF16); out: (T, D) f32.
void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out, Stream s);
// Y: (T, N) stride ldy; bias: (N); Y[t, n] += bias[n].
void add_bias(float* Y, const float* bias, int64_t T, int64_t N, int64_t ldy, Stream s);
// X: (T, K) f32 stride ldx -> out: (T, K) contiguous in `to` (F16 or BF16), round to nearest even.
void convert_rows(const float* X, int64_t T, int64_t K, int64_t ldx, DType to, void* out, Stream s);
// Backend::rope_store as one kernel (k is rotated into the cache only: its buffer is left as it was); t0 from
// t0_dev when non-null, as kv_store.
void rope_store(float* q, int64_t ldq, float* qs, const float* k, int64_t ldk, const float* v, int64_t ldv,
                int64_t T, int64_t t0, const int64_t* t0_dev, int64_t rot_dims, bool interleaved, const float* cos,
                const float* sin, const float* cos_s, const float* sin_s, void* kcache, void* vcache,
                const cpu::AttnGeometry& g, Stream s);
// logits: (T, V); targets: (T) ids; out: (T) doubles, the negative log-likelihood of each target (token_nll).
void nll(const float* logits, int64_t T, int64_t V, const int32_t* targets, double* out, Stream s);
// The cache write, same contract as cpu::kv_store (cpu/kernels.h). kcache, vcache: f32, or IEEE half when
// g.kv_f16. t0_dev: when non-null, t0 is read from this device scalar instead (a CUDA graph of the decode step
// replays with a new t0 without being re-captured).
void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0,
              const int64_t* t0_dev, void* kcache, void* vcache, const cpu::AttnGeometry& g, Stream s);

// ---- decode-step kernels (decode.cu) ----

// The GEMV's limit on tokens per call.
constexpr int64_t kGemvMaxT = 8;
// True when gemv16 takes this linear: a 16-bit weight, T <= kGemvMaxT, K % 8 == 0, 16-byte aligned rows.
bool can_gemv16(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt);
// A row norm the GEMV applies to X as it reads it (Backend::norm_linear): x' = (x - mean_t) * rstd_t * w (+ b), the
// expressions of the norm kernels (mean 0 for RMSNorm), with each row's statistics computed by every block in f32
// (in its own summation order, so the bits may differ from a norm kernel's; the CPU's norm sums in double).
// w == nullptr: no norm.
struct NormSpec {
  const float* w = nullptr;  // (K)
  const float* b = nullptr;  // (K) or null
  float eps = 0.0f;
  bool layer = false;  // LayerNorm (mean and variance); else RMSNorm
};
// True when gemv16 can fold this norm: w (and b, when given) 16-byte aligned.
bool can_fold_norm(const NormSpec& n);
// Y(T, N) = X(T, K) W(N, K)^T + bias (accumulate: Y += that), f32 X and accumulation, W in F16 or BF16
// (can_gemv16 must hold). With nrm.w set, X is normalised first (can_fold_norm must hold; X's row stride ldx).
void gemv16(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
            const float* bias, float* Y, int64_t ldy, bool accumulate, Stream s, const NormSpec& nrm = {});
// out(T, F) = silu(X Wg^T) * (X Wu^T) with Wgu = [Wg | Wu], (2F, K) 16-bit (can_gemv16 must hold for it): the
// SwiGLU MLP's first half in one kernel, bit-identical to gemv16 into (T, 2F) then swiglu. nrm as for gemv16.
void gemv16_swiglu(const float* X, int64_t T, int64_t K, int64_t ldx, const void* Wgu, DType wt, int64_t F,
                   float* out, int64_t ldo, Stream s, const NormSpec& nrm = {});

// How the split-K decode attention cuts the key range of a cache geometry: `splits` chunks of `chunk` keys, and
// the scratch it needs. Depends on the geometry, T and the SM count only (so a captured graph stays valid).
struct DecodePlan {
  int64_t chunk = 0, splits = 0;
  size_t scratch_floats = 0;
  size_t counters = 0;  // ints, zero before a launch (attention_decode leaves them zero)
};
DecodePlan decode_plan(const cpu::AttnGeometry& g, int64_t T, int num_sms);
// Which decode-attention path can read this cache: 0 = scalar loads only (any head_dim), 1 or 2 = 16-byte vectors
// per lane (rows of whole 16-byte vectors, 1..64 of them, and 16-byte aligned caches).
int decode_vectors_per_lane(const cpu::AttnGeometry& g, const void* kcache, const void* vcache);
// Streaming attention for T query tokens (made for T = 1; any T works) with the contract of
// cpu::attention_stream, f32 or f16 cache, t0 from t0_dev when non-null, in one kernel. scratch:
// plan.scratch_floats floats; counters: plan.counters ints, all zero (as they are again when the kernel ends).
// vectors: the 16-byte-load path where decode_vectors_per_lane allows it (else scalar loads everywhere).
void attention_decode(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                      const int64_t* t0_dev, const void* kcache, const void* vcache, const cpu::AttnGeometry& g,
                      float scale, const float* alibi, const float* extra_logit, float* out,
                      const DecodePlan& plan, float* scratch, int* counters, Stream s, bool vectors = true);

// ---- sampling (sampling.cu) ----

// True when sample() handles (V, p): greedy for any 1 <= V <= INT32_MAX; otherwise a temperature > 0 and at most
// 1024 candidates after top-k (1 <= top_k <= 1024, or V <= 1024), with any top_p and min_p.
bool sample_supported(int64_t V, const SampleParams& p);
// The rule of sllm::sample_token (runtime/stream.h), bit for bit. logits: (V) f32; u01 in [0, 1) as drawn by the
// caller; out: (1) int32, the sampled id. Requires sample_supported(V, p).
void sample(const float* logits, int64_t V, const SampleParams& p, double u01, int32_t* out, Stream s);

// ---- chunked / prefill attention (attention_prefill.cu) ----

// Chunked streaming attention for T >= 1 query tokens t0..t0+T-1 (same contract as cpu::attention_stream),
// f32 or f16 (g.kv_f16) cache, without materialising the score matrix: tiles of 32 queries x 64 keys, online
// softmax. Throws sllm::Error when head_dim is not in [1, 256]; ring >= window + T as KVCache guarantees.
void attention_prefill(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                       const void* kcache, const void* vcache, const cpu::AttnGeometry& g, float scale,
                       const float* alibi, const float* extra_logit, float* out, Stream s);

}  // namespace sllm::cuda
