// CUDA kernels other than the GEMM and the attention: norms, RoPE, activations, elementwise ops, embedding, dtype
// conversion for the GEMM input and the KV-cache write. Straightforward first versions: correctness and
// clarity first; the fast decode/prefill attention and fused kernels come later.
//
// Numerics. Everything is f32. Norms: one block per row, per-thread partial sums then a warp-shuffle / shared
// memory tree (error ~ (D / blockDim + log2 blockDim) ulp, well inside 1e-5 of the CPU's double accumulation);
// layernorm is two-pass (mean, then sum of squared deviations) so a large mean does not cancel the variance;
// 1/sqrt uses IEEE sqrtf and division (no rsqrtf). Activations use erff/tanhf/expf (<= 2 ulp, no fast math).
// RoPE takes the tables the host computed in double (cpu::rope_tables), so positions in the millions are exact.
//
// The attention kernels live in decode.cu (split-K, one query token) and attention_prefill.cu (tiled chunks).
#include <cuda_bf16.h>  // __float2bfloat16_rn, __bfloat16_as_ushort
#include <cuda_fp16.h>  // __float2half_rn, __half_as_ushort, __ushort_as_half, __half2float

#include <algorithm>  // std::min

#include "cuda/cuda_common.cuh"
#include "cuda/device_util.cuh"  // warp_sum, warp_max

namespace sllm::cuda {

namespace {

constexpr int kThreads = 256;           // block size of the elementwise and row kernels
constexpr int64_t kMaxBlocks = 1 << 16; // grid cap for grid-stride loops

// Blocks for a grid-stride loop over n elements.
unsigned grid_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)); }


// ---- norms ---------------------------------------------------------------------------------------------------

// grid (T), block kThreads. x, y: (T, D) (may alias); w: (D).
__global__ void rmsnorm_kernel(const float* x, const float* __restrict__ w, float eps, int64_t D, float* y) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  __shared__ float red[32];
  const float* xr = x + int64_t(blockIdx.x) * D;
  float* yr = y + int64_t(blockIdx.x) * D;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) yr[i] = (xr[i] * inv) * w[i];
}

// grid (T), block kThreads. x, y: (T, D) (may alias); w: (D); b: (D) or null.
__global__ void layernorm_kernel(const float* x, const float* __restrict__ w, const float* __restrict__ b,
                                 float eps, int64_t D, float* y) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  __shared__ float red[32];
  const float* xr = x + int64_t(blockIdx.x) * D;
  float* yr = y + int64_t(blockIdx.x) * D;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += xr[i];
  const float mean = block_sum(s, red) / float(D);
  float v = 0.0f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float d = xr[i] - mean;
    v += d * d;
  }
  const float inv = 1.0f / sqrtf(block_sum(v, red) / float(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float o = (xr[i] - mean) * inv * w[i];
    yr[i] = b ? o + b[i] : o;
  }
}

// ---- RoPE ----------------------------------------------------------------------------------------------------

// One thread per rotated pair, over (T, H, rot_dims/2). x: (T, H, hd) stride ld; cos, sin: (T, rot_dims/2).
__global__ void rope_kernel(float* x, int64_t T, int64_t H, int64_t hd, int64_t ld, int64_t half,
                            const float* __restrict__ cos, const float* __restrict__ sin, bool interleaved) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  const int64_t n = T * H * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, th = idx / half, h = th % H, t = th / H;
    const float c = cos[t * half + i], s = sin[t * half + i];
    float* v = x + t * ld + h * hd;
    const int64_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
    const float a = v[ia], b = v[ib];
    v[ia] = a * c - b * s;
    v[ib] = b * c + a * s;
  }
}

// ---- elementwise ---------------------------------------------------------------------------------------------

#define SLLM_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// x: (n) in place.
__global__ void activation_kernel(ActOp op, float* x, int64_t n) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  SLLM_GRID_STRIDE(i, n) {
    const float v = x[i];
    switch (op) {
      case ActOp::GeluErf: x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
      case ActOp::GeluTanh: x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v))); break;
      case ActOp::Relu: x[i] = v > 0.0f ? v : 0.0f; break;
    }
  }
}

// gate: (T, F) stride ldg; up: (T, F) stride ldu; out: (T, F) contiguous (may alias gate).
__global__ void swiglu_kernel(const float* gate, int64_t ldg, const float* __restrict__ up, int64_t ldu, int64_t T,
                              int64_t F, float* out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  SLLM_GRID_STRIDE(idx, T * F) {
    const int64_t t = idx / F, i = idx % F;
    const float g = gate[t * ldg + i];
    out[idx] = g / (1.0f + expf(-g)) * up[t * ldu + i];
  }
}

// y, x: (n).
__global__ void add_kernel(float* y, const float* x, int64_t n) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  SLLM_GRID_STRIDE(i, n) y[i] += x[i];
}

// x: (n). NaN maps to lo, as std::min(hi, std::max(lo, x)) does on the CPU.
__global__ void clamp_kernel(float* x, int64_t n, float lo, float hi) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  SLLM_GRID_STRIDE(i, n) x[i] = fminf(hi, fmaxf(lo, x[i]));
}

// Y: (T, N) stride ldy; bias: (N).
__global__ void add_bias_kernel(float* Y, const float* __restrict__ bias, int64_t T, int64_t N, int64_t ldy) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  SLLM_GRID_STRIDE(idx, T * N) Y[(idx / N) * ldy + idx % N] += bias[idx % N];
}

// X: (T, K) stride ldx -> out: (T, K) contiguous 16-bit (F16 when half, else BF16), round to nearest even.
__global__ void convert_rows_kernel(const float* __restrict__ X, int64_t T, int64_t K, int64_t ldx, bool half,
                                    uint16_t* __restrict__ out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  SLLM_GRID_STRIDE(idx, T * K) {
    const float v = X[(idx / K) * ldx + idx % K];
    out[idx] = half ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
  }
}

// grid (T), block kThreads. ids: (T); table: (V, D) in t; out: (T, D). Conversions are exact.
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const void* __restrict__ table, DType t,
                                 int64_t D, float* __restrict__ out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  const int64_t row = ids[blockIdx.x];
  float* o = out + int64_t(blockIdx.x) * D;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
    switch (t) {
      case DType::F16:
        o[j] = __half2float(__ushort_as_half(static_cast<const uint16_t*>(table)[row * D + j]));
        break;
      case DType::BF16:
        o[j] = __uint_as_float(uint32_t(static_cast<const uint16_t*>(table)[row * D + j]) << 16);
        break;
      default: o[j] = static_cast<const float*>(table)[row * D + j]; break;
    }
  }
}

#undef SLLM_GRID_STRIDE

// grid (T), block kThreads. logits: (T, V); out[i] = log sum_v exp(logits[i, v] - max_i) + max_i - logits[i, t_i],
// the sum in double, as token_nll does on the host.
__global__ void nll_kernel(const float* __restrict__ logits, int64_t V, const int32_t* __restrict__ targets,
                           double* __restrict__ out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  __shared__ float fred[32];
  __shared__ double dred[32];
  const float* row = logits + int64_t(blockIdx.x) * V;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, row[i]);
  mx = warp_max(mx);
  if (lane == 0) fred[warp] = mx;
  __syncthreads();
  mx = fred[0];
  for (int w = 1; w < nw; ++w) mx = fmaxf(mx, fred[w]);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) sum += exp(double(row[i]) - double(mx));
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) dred[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < nw; ++w) total += dred[w];
    out[blockIdx.x] = log(total) + double(mx) - double(row[targets[blockIdx.x]]);
  }
}

// ---- KV cache and attention ----------------------------------------------------------------------------------

// Cache slot of stream token t (see cpu::AttnGeometry).
__device__ __forceinline__ int64_t cache_slot(int64_t t, int64_t S, int64_t ring) {
  return t < S ? t : S + (t - S) % ring;
}

__device__ __forceinline__ void kv_put(float* p, float v) { *p = v; }
__device__ __forceinline__ void kv_put(__half* p, float v) { *p = __float2half_rn(v); }

// One thread per element of (T, n_kv_heads, head_dim). k: (T, Hkv, hd) stride ldk; v likewise with ldv;
// kcache, vcache: (Hkv, capacity, hd) of KT (f32, or half rounded to nearest even as on the CPU).
template <class KT>
__global__ void kv_store_kernel(const float* __restrict__ k, int64_t ldk, const float* __restrict__ v, int64_t ldv,
                                int64_t T, int64_t t0_arg, const int64_t* __restrict__ t0_dev,
                                KT* __restrict__ kcache, KT* __restrict__ vcache, cpu::AttnGeometry g) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  const int64_t hd = g.head_dim, n = T * g.n_kv_heads * hd;
  const int64_t t0 = t0_dev ? *t0_dev : t0_arg;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = idx % hd, r = idx / hd, h = r % g.n_kv_heads, i = r / g.n_kv_heads;
    const int64_t dst = (h * g.capacity + cache_slot(t0 + i, g.sinks, g.ring)) * hd + d;
    kv_put(kcache + dst, k[i * ldk + h * hd + d]);
    kv_put(vcache + dst, v[i * ldv + h * hd + d]);
  }
}

// grid (n_heads + n_kv_heads, T), block >= half and >= head_dim - rot threads (one per rotated pair / pass-through
// element). Block (h < H, i): q's head h of token i rotated in place with (cos, sin), and when qs is non-null the
// sink-rotated copy with (cos_s, sin_s). Block (H + j, i): kv head j of token i: k rotated with (cos, sin) straight
// into its cache slot, v copied there. Each thread owns whole pairs, so the in-place rotation has no race.
template <class KT>
__global__ void rope_store_kernel(float* __restrict__ q, int64_t ldq, float* __restrict__ qs,
                                  const float* __restrict__ k, int64_t ldk, const float* __restrict__ v, int64_t ldv,
                                  int64_t t0_arg, const int64_t* __restrict__ t0_dev, int64_t half, bool interleaved,
                                  const float* __restrict__ cos, const float* __restrict__ sin,
                                  const float* __restrict__ cos_s, const float* __restrict__ sin_s,
                                  KT* __restrict__ kcache, KT* __restrict__ vcache, cpu::AttnGeometry g) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  const int64_t H = g.n_heads, hd = g.head_dim, rot = 2 * half;
  const int64_t i = blockIdx.y, h = blockIdx.x;
  const int64_t p = threadIdx.x;  // pair p < half, pass-through element rot + p < hd
  const int64_t ia = interleaved ? 2 * p : p, ib = interleaved ? 2 * p + 1 : p + half;
  if (h < H) {
    float* qr = q + i * ldq + h * hd;
    float* sr = qs ? qs + i * ldq + h * hd : nullptr;
    if (p < half) {
      const float a = qr[ia], b = qr[ib];
      const float c = cos[i * half + p], s = sin[i * half + p];
      if (sr) {
        const float cs = cos_s[i * half + p], ss = sin_s[i * half + p];
        sr[ia] = a * cs - b * ss;
        sr[ib] = b * cs + a * ss;
      }
      qr[ia] = a * c - b * s;
      qr[ib] = b * c + a * s;
    }
    if (sr && rot + p < hd) sr[rot + p] = qr[rot + p];  // unrotated dims: never written above
    return;
  }
  const int64_t j = h - H;
  const int64_t t0 = t0_dev ? *t0_dev : t0_arg;
  const int64_t dst = (j * g.capacity + cache_slot(t0 + i, g.sinks, g.ring)) * hd;
  const float* kr = k + i * ldk + j * hd;
  const float* vr = v + i * ldv + j * hd;
  if (p < half) {
    const float a = kr[ia], b = kr[ib];
    const float c = cos[i * half + p], s = sin[i * half + p];
    kv_put(kcache + dst + ia, a * c - b * s);
    kv_put(kcache + dst + ib, b * c + a * s);
  }
  if (rot + p < hd) kv_put(kcache + dst + rot + p, kr[rot + p]);
  for (int64_t d = p; d < hd; d += blockDim.x) kv_put(vcache + dst + d, vr[d]);
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------------------------

void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* y, Stream s) {
  if (T <= 0) return;
  launch(rmsnorm_kernel, unsigned(T), kThreads, 0, s, x, w, eps, D, y);
  CUDA_CHECK(cudaGetLastError());
}

void layernorm(const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
               Stream s) {
  if (T <= 0) return;
  launch(layernorm_kernel, unsigned(T), kThreads, 0, s, x, w, b, eps, D, y);
  CUDA_CHECK(cudaGetLastError());
}

void rope(float* x, int64_t T, int64_t H, int64_t head_dim, int64_t ld, int64_t rot_dims, const float* cos,
          const float* sin, bool interleaved, Stream s) {
  const int64_t n = T * H * (rot_dims / 2);
  if (n <= 0) return;
  launch(rope_kernel, grid_for(n), kThreads, 0, s, x, T, H, head_dim, ld, rot_dims / 2, cos, sin, interleaved);
  CUDA_CHECK(cudaGetLastError());
}

void activation(ActOp op, float* x, int64_t n, Stream s) {
  if (n <= 0) return;
  launch(activation_kernel, grid_for(n), kThreads, 0, s, op, x, n);
  CUDA_CHECK(cudaGetLastError());
}

void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t T, int64_t F, float* out,
            Stream s) {
  if (T * F <= 0) return;
  launch(swiglu_kernel, grid_for(T * F), kThreads, 0, s, gate, ldg, up, ldu, T, F, out);
  CUDA_CHECK(cudaGetLastError());
}

void add(float* y, const float* x, int64_t n, Stream s) {
  if (n <= 0) return;
  launch(add_kernel, grid_for(n), kThreads, 0, s, y, x, n);
  CUDA_CHECK(cudaGetLastError());
}

void clamp(float* x, int64_t n, float lo, float hi, Stream s) {
  if (n <= 0) return;
  launch(clamp_kernel, grid_for(n), kThreads, 0, s, x, n, lo, hi);
  CUDA_CHECK(cudaGetLastError());
}

void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out, Stream s) {
  if (T <= 0 || D <= 0) return;
  launch(embedding_kernel, unsigned(T), kThreads, 0, s, ids, table, t, D, out);
  CUDA_CHECK(cudaGetLastError());
}

void add_bias(float* Y, const float* bias, int64_t T, int64_t N, int64_t ldy, Stream s) {
  if (T * N <= 0) return;
  launch(add_bias_kernel, grid_for(T * N), kThreads, 0, s, Y, bias, T, N, ldy);
  CUDA_CHECK(cudaGetLastError());
}

void convert_rows(const float* X, int64_t T, int64_t K, int64_t ldx, DType to, void* out, Stream s) {
  if (T * K <= 0) return;
  launch(convert_rows_kernel, grid_for(T * K), kThreads, 0, s, X, T, K, ldx, to == DType::F16,
                                                           static_cast<uint16_t*>(out));
  CUDA_CHECK(cudaGetLastError());
}

void rope_store(float* q, int64_t ldq, float* qs, const float* k, int64_t ldk, const float* v, int64_t ldv,
                int64_t T, int64_t t0, const int64_t* t0_dev, int64_t rot_dims, bool interleaved, const float* cos,
                const float* sin, const float* cos_s, const float* sin_s, void* kcache, void* vcache,
                const cpu::AttnGeometry& g, Stream s) {
  if (T <= 0) return;
  const int64_t half = rot_dims / 2;
  const int64_t need = std::max(half, g.head_dim - 2 * half);
  const unsigned threads = unsigned(std::min<int64_t>(1024, std::max<int64_t>(32, (need + 31) / 32 * 32)));
  const dim3 grid(unsigned(g.n_heads + g.n_kv_heads), unsigned(T));
  if (g.kv_f16)
    launch(rope_store_kernel<__half>, grid, threads, 0, s, q, ldq, qs, k, ldk, v, ldv, t0, t0_dev, half, interleaved,
                                                      cos, sin, cos_s, sin_s, static_cast<__half*>(kcache),
                                                      static_cast<__half*>(vcache), g);
  else
    launch(rope_store_kernel<float>, grid, threads, 0, s, q, ldq, qs, k, ldk, v, ldv, t0, t0_dev, half, interleaved,
                                                     cos, sin, cos_s, sin_s, static_cast<float*>(kcache),
                                                     static_cast<float*>(vcache), g);
  CUDA_CHECK(cudaGetLastError());
}

void nll(const float* logits, int64_t T, int64_t V, const int32_t* targets, double* out, Stream s) {
  if (T <= 0) return;
  launch(nll_kernel, unsigned(T), kThreads, 0, s, logits, V, targets, out);
  CUDA_CHECK(cudaGetLastError());
}

void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0,
              const int64_t* t0_dev, void* kcache, void* vcache, const cpu::AttnGeometry& g, Stream s) {
  const int64_t n = T * g.n_kv_heads * g.head_dim;
  if (n <= 0) return;
  if (g.kv_f16)
    launch(kv_store_kernel<__half>, grid_for(n), kThreads, 0, s, k, ldk, v, ldv, T, t0, t0_dev,
                                                            static_cast<__half*>(kcache),
                                                            static_cast<__half*>(vcache), g);
  else
    launch(kv_store_kernel<float>, grid_for(n), kThreads, 0, s, k, ldk, v, ldv, T, t0, t0_dev,
                                                           static_cast<float*>(kcache), static_cast<float*>(vcache),
                                                           g);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace sllm::cuda
