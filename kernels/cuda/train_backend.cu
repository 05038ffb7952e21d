// The trainer's CUDA backend (cuda_train_backend.h): train/train_backend.h over device memory. Each op mirrors the
// CPU kernel it replaces (kernels/cpu/train_kernels.cpp, the packed GEMM) in what it computes and in its
// determinism rule: no atomics; every reduction has a fixed shape (a warp or block tree, then fixed chunks summed in
// order), so the same inputs give the same bits on the same card.
//
// Products go through cuBLAS SGEMM on row-major data read as column-major (Y^T = W X^T etc.). Bias rows, the
// embedding lookup and SwiGLU reuse the inference backend's launchers (kernels.cu), and every kernel is launched
// through its `launch` helper (cuda_common.cuh). The rest are plain kernels: one block per row for norms and the
// loss, one warp per query (or key) row for attention, which recomputes probabilities from the saved log-sum-exp
// in the backward as the CPU does (memory O(T), not O(T^2)). Reductions over tokens (weight gradients of norms,
// bias gradients) sum chunks of kRowChunk rows per column, then the chunks in order. These kernels favour being
// obviously right over being fast; the GEMMs carry the FLOPs.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>    // std::sqrt
#include <string>   // std::string
#include <vector>   // std::vector

#include "cuda/cuda_backend.h"        // cuda_device_count
#include "cuda/cuda_common.cuh"       // CUDA_CHECK, CUBLAS_CHECK
#include "cuda/cuda_train_backend.h"  // make_cuda_train_backend
#include "cuda/device_util.cuh"       // warp_sum, warp_max

namespace sllm {

namespace {

constexpr int kThreads = 256;        // threads per block of the row and elementwise kernels
constexpr int64_t kRowChunk = 256;   // rows per chunk of a reduction over tokens
constexpr int64_t kFlatChunk = 1 << 14;  // elements per chunk of sum_squares

int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return int(b < 65535 * 16 ? (b < 1 ? 1 : b) : 65535 * 16);
}

// ---- block reductions (blockDim.x == kThreads) ----

__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block in double; every thread gets the total. red: 32 doubles of shared memory.
__device__ __forceinline__ double block_sum_d(double v, double* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum_d(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  return warp_sum_d(lane < nw ? red[lane] : 0.0);
}

__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = cuda::warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  return cuda::warp_max(lane < nw ? red[lane] : -INFINITY);
}

// ---- elementwise ----

// dtable[ids[t]] += dx[t]: one thread per column, the tokens in order (repeated ids add up without atomics).
__global__ void embedding_bwd_kernel(const int32_t* ids, int64_t T, const float* dx, int64_t D, float* dtable) {
  const int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  for (int64_t t = 0; t < T; ++t) dtable[int64_t(ids[t]) * D + d] += dx[t * D + d];
}

__global__ void gelu_kernel(const float* x, int64_t n, float* y) {
  const float r = 0.70710678118654752f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * r));
}

__global__ void gelu_bwd_kernel(const float* dy, const float* x, int64_t n, float* dx) {
  const float r = 0.70710678118654752f, c = 0.39894228040143268f;  // 1/sqrt(2), 1/sqrt(2 pi)
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float xv = x[i];
    dx[i] = dy[i] * (0.5f * (1.0f + erff(xv * r)) + xv * c * expf(-0.5f * xv * xv));
  }
}

__global__ void swiglu_bwd_kernel(const float* da, const float* g, const float* u, int64_t n, float* dg, float* du) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float s = 1.0f / (1.0f + expf(-g[i]));
    du[i] = da[i] * (g[i] * s);
    dg[i] = da[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

__global__ void add_kernel(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* x, int64_t n, float s) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

// torch.optim.AdamW's update, as kernels/cpu/train_kernels.cpp computes it.
__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                             float eps, float wd, float decay, float step, float bc2_sqrt) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    if (wd != 0.0f) p[i] *= decay;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] -= step * (mi / denom);
  }
}

// Rotate-half RoPE over B sequences of T rows, positions 0..T-1 each; inverse rotates by minus the angle.
__global__ void rope_kernel(float* x, int64_t rows, int64_t T, int64_t H, int64_t hd, int64_t half, const float* cs,
                            const float* sn, bool inverse) {
  const int64_t n = rows * H * half;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, h = (e / half) % H, row = e / (half * H), t = row % T;
    float* v = x + (row * H + h) * hd;
    const float c = cs[t * half + i], s = inverse ? -sn[t * half + i] : sn[t * half + i];
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

// ---- reductions over tokens: chunk partials (grid: column blocks x chunks), then the chunks in order ----

// part[c][d] = sum over rows t of chunk c of x[t * ld + d]
__global__ void col_sum_part_kernel(const float* x, int64_t T, int64_t D, int64_t ld, float* part) {
  const int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, c = blockIdx.y;
  if (d >= D) return;
  float s = 0.0f;
  for (int64_t t = c * kRowChunk; t < T && t < (c + 1) * kRowChunk; ++t) s += x[t * ld + d];
  part[c * D + d] = s;
}

// out[d] += sum over chunks c in order of part[c][d]
__global__ void chunks_acc_kernel(const float* part, int64_t nch, int64_t D, float* out) {
  const int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  float s = out[d];
  for (int64_t c = 0; c < nch; ++c) s += part[c * D + d];
  out[d] = s;
}

// ---- norms: one block per row ----

__global__ void norm_fwd_kernel(bool layer, const float* x, const float* w, const float* b, float eps, int64_t D,
                                float* y, float* stats) {
  __shared__ double red[32];
  const int64_t t = blockIdx.x;
  const float* xr = x + t * D;
  double mean = 0.0;
  if (layer) {
    double s = 0.0;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) s += xr[d];
    mean = block_sum_d(s, red) / double(D);
  }
  double ss = 0.0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const double c = double(xr[d]) - mean;
    ss += c * c;
  }
  ss = block_sum_d(ss, red);
  const float rstd = float(1.0 / sqrt(ss / double(D) + double(eps)));
  const float mu = float(mean);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) y[t * D + d] = (xr[d] - mu) * rstd * w[d] + (b ? b[d] : 0.0f);
  if (threadIdx.x == 0) stats[2 * t] = mu, stats[2 * t + 1] = rstd;
}

__global__ void norm_bwd_dx_kernel(bool layer, const float* dy, const float* x, const float* w, const float* stats,
                                   int64_t D, float* dx, bool acc_dx) {
  __shared__ double red[32];
  const int64_t t = blockIdx.x;
  const float* xr = x + t * D;
  const float* g = dy + t * D;
  const float mu = stats[2 * t], rstd = stats[2 * t + 1];
  double s_g = 0.0, s_gx = 0.0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float xh = (xr[d] - mu) * rstd;
    const float gw = g[d] * w[d];
    s_g += gw;
    s_gx += double(gw) * xh;
  }
  s_g = block_sum_d(s_g, red);
  s_gx = block_sum_d(s_gx, red);
  const float m_g = layer ? float(s_g / double(D)) : 0.0f;
  const float m_gx = float(s_gx / double(D));
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float xh = (xr[d] - mu) * rstd;
    const float v = rstd * (g[d] * w[d] - m_g - xh * m_gx);
    dx[t * D + d] = acc_dx ? dx[t * D + d] + v : v;
  }
}

// Chunk partials of the norm's weight gradient, sum of dy * xhat (and of dy for the bias when pb).
__global__ void norm_bwd_dw_part_kernel(const float* dy, const float* x, const float* stats, int64_t T, int64_t D,
                                        float* pw, float* pb) {
  const int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, c = blockIdx.y;
  if (d >= D) return;
  float sw = 0.0f, sb = 0.0f;
  for (int64_t t = c * kRowChunk; t < T && t < (c + 1) * kRowChunk; ++t) {
    const float g = dy[t * D + d];
    sw += g * ((x[t * D + d] - stats[2 * t]) * stats[2 * t + 1]);
    sb += g;
  }
  pw[c * D + d] = sw;
  if (pb) pb[c * D + d] = sb;
}

// ---- softmax cross-entropy: one block per row; the row losses (double) are summed in order on the host ----

__global__ void cross_entropy_kernel(const float* logits, const int32_t* targets, int64_t V, float grad_scale,
                                     float* dlogits, double* row_loss) {
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  float* g = dlogits + r * V;
  const int32_t tgt = targets[r];
  if (tgt < 0) {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) g[i] = 0.0f;
    if (threadIdx.x == 0) row_loss[r] = 0.0;
    return;
  }
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
  m = block_max(m, redf);
  const float tx = x[tgt];
  __syncthreads();  // every thread has read x[tgt] before g (which may alias x) is written
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float e = expf(x[i] - m);
    g[i] = e;
    s += e;
  }
  const double sum = block_sum_d(s, redd);
  const float inv = float(double(grad_scale) / sum);
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) g[i] *= inv;
  __syncthreads();
  if (threadIdx.x == 0) {
    g[tgt] -= grad_scale;
    row_loss[r] = double(m) + log(sum) - double(tx);
  }
}

// part[c] = sum of x[i]^2 over chunk c, in double
__global__ void sum_squares_kernel(const float* x, int64_t n, double* part) {
  __shared__ double red[32];
  const int64_t c = blockIdx.x;
  double s = 0.0;
  for (int64_t i = c * kFlatChunk + threadIdx.x; i < n && i < (c + 1) * kFlatChunk; i += blockDim.x)
    s += double(x[i]) * x[i];
  s = block_sum_d(s, red);
  if (threadIdx.x == 0) part[c] = s;
}

// ---- attention: one warp per query row (forward, dq) or key row (dk, dv); lanes split the head dims ----

constexpr int kMaxHeadDim = 256;  // 8 dims per lane

struct AttnShape {
  int64_t B, T, H, KV, hd;
  float scale;
};

__device__ __forceinline__ float warp_dot(const float* a, const float* b, int64_t hd) {
  float s = 0.0f;
  for (int64_t d = threadIdx.x & 31; d < hd; d += 32) s += a[d] * b[d];
  return cuda::warp_sum(s);
}

// Rows (b, h, i) of the forward: lse and out, as attention_fwd on the CPU computes them (max, then the sum of
// exponentials in double, then out = sum_j exp(s_j - lse) v_j).
__global__ void attention_fwd_kernel(AttnShape a, const float* q, const float* k, const float* v, const float* extra,
                                     float* out, float* lse) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // (b * H + h) * T + i
  if (row >= a.B * a.H * a.T) return;
  const int lane = threadIdx.x & 31;
  const int64_t i = row % a.T, h = (row / a.T) % a.H, b = row / (a.T * a.H), kh = h / (a.H / a.KV);
  const int64_t qd = a.H * a.hd, kvd = a.KV * a.hd;
  const float* qi = q + (b * a.T + i) * qd + h * a.hd;
  const float* kb = k + b * a.T * kvd + kh * a.hd;
  const float* vb = v + b * a.T * kvd + kh * a.hd;
  float m = extra ? extra[h] : -INFINITY;
  for (int64_t j = 0; j <= i; ++j) m = fmaxf(m, a.scale * warp_dot(qi, kb + j * kvd, a.hd));
  double sum = extra ? exp(double(extra[h]) - m) : 0.0;
  for (int64_t j = 0; j <= i; ++j) sum += exp(double(a.scale * warp_dot(qi, kb + j * kvd, a.hd)) - m);
  const float l = float(m + log(sum));
  if (lane == 0) lse[row] = l;
  float o[kMaxHeadDim / 32];
#pragma unroll
  for (int u = 0; u < kMaxHeadDim / 32; ++u) o[u] = 0.0f;
  for (int64_t j = 0; j <= i; ++j) {
    const float p = expf(a.scale * warp_dot(qi, kb + j * kvd, a.hd) - l);
#pragma unroll  // (a fixed trip count keeps the per-lane arrays in registers)
    for (int u = 0; u < kMaxHeadDim / 32; ++u)
      if (u * 32 + lane < a.hd) o[u] += p * vb[j * kvd + u * 32 + lane];
  }
  float* oi = out + (b * a.T + i) * qd + h * a.hd;
#pragma unroll  // (a fixed trip count keeps the per-lane arrays in registers)
  for (int u = 0; u < kMaxHeadDim / 32; ++u)
    if (u * 32 + lane < a.hd) oi[u * 32 + lane] = o[u];
}

// Rows (b, h, i) of the backward: Di = dout_i . out_i (saved for the key pass), dq_i, and the row's share of
// d extra[h] (-exp(extra - lse) Di).
__global__ void attention_bwd_dq_kernel(AttnShape a, const float* q, const float* k, const float* v, const float* out,
                                        const float* dout, const float* lse, const float* extra, float* dq,
                                        float* Drow, double* de_row) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (row >= a.B * a.H * a.T) return;
  const int lane = threadIdx.x & 31;
  const int64_t i = row % a.T, h = (row / a.T) % a.H, b = row / (a.T * a.H), kh = h / (a.H / a.KV);
  const int64_t qd = a.H * a.hd, kvd = a.KV * a.hd, at = (b * a.T + i) * qd + h * a.hd;
  const float* kb = k + b * a.T * kvd + kh * a.hd;
  const float* vb = v + b * a.T * kvd + kh * a.hd;
  const float l = lse[row];
  const float Di = warp_dot(dout + at, out + at, a.hd);
  float g[kMaxHeadDim / 32];
#pragma unroll
  for (int u = 0; u < kMaxHeadDim / 32; ++u) g[u] = 0.0f;
  for (int64_t j = 0; j <= i; ++j) {
    const float pij = expf(a.scale * warp_dot(q + at, kb + j * kvd, a.hd) - l);
    const float dS = pij * (warp_dot(dout + at, vb + j * kvd, a.hd) - Di) * a.scale;
#pragma unroll  // (a fixed trip count keeps the per-lane arrays in registers)
    for (int u = 0; u < kMaxHeadDim / 32; ++u)
      if (u * 32 + lane < a.hd) g[u] += dS * kb[j * kvd + u * 32 + lane];
  }
#pragma unroll  // (a fixed trip count keeps the per-lane arrays in registers)
  for (int u = 0; u < kMaxHeadDim / 32; ++u)
    if (u * 32 + lane < a.hd) dq[at + u * 32 + lane] = g[u];
  if (lane == 0) {
    Drow[row] = Di;
    de_row[row] = extra ? -exp(double(extra[h]) - l) * Di : 0.0;
  }
}

// Rows (b, kh, j) of the backward: dk_j and dv_j, summed over the group's heads h and the queries i >= j, in that
// order (as the CPU does per key).
__global__ void attention_bwd_dkv_kernel(AttnShape a, const float* q, const float* k, const float* v,
                                         const float* dout, const float* lse, const float* Drow, float* dk,
                                         float* dv) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // (b * KV + kh) * T + j
  if (row >= a.B * a.KV * a.T) return;
  const int lane = threadIdx.x & 31;
  const int64_t j = row % a.T, kh = (row / a.T) % a.KV, b = row / (a.T * a.KV), group = a.H / a.KV;
  const int64_t qd = a.H * a.hd, kvd = a.KV * a.hd;
  const float* kj = k + (b * a.T + j) * kvd + kh * a.hd;
  const float* vj = v + (b * a.T + j) * kvd + kh * a.hd;
  float gk[kMaxHeadDim / 32], gv[kMaxHeadDim / 32];
#pragma unroll
  for (int u = 0; u < kMaxHeadDim / 32; ++u) gk[u] = gv[u] = 0.0f;
  for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
    for (int64_t i = j; i < a.T; ++i) {
      const int64_t qrow = (b * a.H + h) * a.T + i, at = (b * a.T + i) * qd + h * a.hd;
      const float pij = expf(a.scale * warp_dot(q + at, kj, a.hd) - lse[qrow]);
      const float dS = pij * (warp_dot(dout + at, vj, a.hd) - Drow[qrow]) * a.scale;
#pragma unroll  // (a fixed trip count keeps the per-lane arrays in registers)
      for (int u = 0; u < kMaxHeadDim / 32; ++u)
        if (u * 32 + lane < a.hd) {
          gk[u] += dS * q[at + u * 32 + lane];
          gv[u] += pij * dout[at + u * 32 + lane];
        }
    }
  const int64_t o = (b * a.T + j) * kvd + kh * a.hd;
#pragma unroll  // (a fixed trip count keeps the per-lane arrays in registers)
  for (int u = 0; u < kMaxHeadDim / 32; ++u)
    if (u * 32 + lane < a.hd) {
      dk[o + u * 32 + lane] = gk[u];
      dv[o + u * 32 + lane] = gv[u];
    }
}

// dextra[h] += sum over b of (sum over i of de_row[(b, h, i)]), each in order, in double.
__global__ void attention_dextra_kernel(const double* de_row, int64_t B, int64_t H, int64_t T, float* dextra) {
  const int64_t h = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (h >= H) return;
  double s = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    double sb = 0.0;
    for (int64_t i = 0; i < T; ++i) sb += de_row[(b * H + h) * T + i];
    s += sb;
  }
  dextra[h] += float(s);
}

// ---- the backend ----

class CudaTrainBackend final : public train::TrainBackend {
 public:
  explicit CudaTrainBackend(int device) : device_(device) {
    try {
      CUDA_CHECK(cudaSetDevice(device));
      CUDA_CHECK(cudaStreamCreate(&st_));
      CUBLAS_CHECK(cublasCreate(&blas_));
      CUBLAS_CHECK(cublasSetStream(blas_, st_));
      CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));  // f32 products, no TF32
    } catch (...) {  // the destructor does not run for a constructor that throws
      if (blas_) cublasDestroy(blas_);
      if (st_) cudaStreamDestroy(st_);
      throw;
    }
  }
  ~CudaTrainBackend() override {
    cudaStreamSynchronize(st_);
    for (void* p : {static_cast<void*>(part_), static_cast<void*>(dpart_), static_cast<void*>(drow_),
                    static_cast<void*>(de_row_)})
      if (p) cudaFree(p);
    cublasDestroy(blas_);
    cudaStreamDestroy(st_);
  }
  const char* name() const override { return "cuda"; }
  void sync() override { CUDA_CHECK(cudaStreamSynchronize(st_)); }

  // ---- memory ----
  float* alloc(size_t n) override { return device_alloc<float>(n); }
  void free(float* p) override { device_free(p); }
  void upload(float* dst, const float* host, size_t n) override { to_device(dst, host, n); }
  void download(float* host, const float* src, size_t n) override {
    if (n == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, st_));
    CUDA_CHECK(cudaStreamSynchronize(st_));
  }
  void copy(float* dst, const float* src, size_t n) override {
    if (n == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, st_));
  }
  void zero(float* p, size_t n) override {
    if (n) CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(float), st_));
  }
  void copy2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) override {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(ldd) * sizeof(float), src, size_t(lds) * sizeof(float),
                                 size_t(cols) * sizeof(float), size_t(rows), cudaMemcpyDeviceToDevice, st_));
  }
  int32_t* alloc_ids(size_t n) override { return device_alloc<int32_t>(n); }
  void free_ids(int32_t* p) override { device_free(p); }
  void upload_ids(int32_t* dst, const int32_t* host, size_t n) override { to_device(dst, host, n); }

  // ---- forward ----
  // Row-major Y (T, N) = X (T, K) W^T is column-major Y' (N, T) = W'^T X' with W' = W read as (K, N).
  void linear(const float* X, int64_t T, int64_t K, const float* W, int64_t N, const float* b, float* Y) override {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(T), int(K), &one, W, int(K), X, int(K),
                             &zero, Y, int(N)));
    if (b) cuda::add_bias(Y, b, T, N, N, st_);
  }
  void embedding(const int32_t* ids, int64_t T, const float* table, int64_t D, float* out) override {
    if (T > 0) cuda::embedding(ids, T, table, DType::F32, D, out, st_);
  }
  void norm(bool layer, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
            float* stats) override {
    if (T == 0) return;
    cuda::launch(norm_fwd_kernel, unsigned(T), kThreads, 0, st_, layer, x, w, b, eps, D, y, stats);
  }
  void rope(float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot_dims, const float* cos,
            const float* sin, bool inverse) override {
    const int64_t half = rot_dims / 2;
    if (half == 0 || B * T == 0) return;
    cuda::launch(rope_kernel, blocks_for(B * T * H * half), kThreads, 0, st_, x, B * T, T, H, hd, half, cos, sin,
                 inverse);
  }
  void gelu(const float* x, int64_t n, float* y) override { launch_flat(gelu_kernel, n, x, n, y); }
  void swiglu(const float* g, const float* u, int64_t T, int64_t F, float* a) override {
    cuda::swiglu(g, F, u, F, T, F, a, st_);
  }
  void add(const float* a, const float* b, int64_t n, float* y) override { launch_flat(add_kernel, n, a, b, n, y); }
  void attention(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t H, int64_t KV,
                 int64_t hd, float scale, const float* extra, float* out, float* lse) override {
    check_head_dim(hd);
    if (B * H * T == 0) return;
    const AttnShape a{B, T, H, KV, hd, scale};
    cuda::launch(attention_fwd_kernel, warp_blocks(B * H * T), 128, 0, st_, a, q, k, v, extra, out, lse);
  }
  double cross_entropy(const float* logits, const int32_t* targets, int64_t N, int64_t V, float grad_scale,
                       float* dlogits) override {
    if (N == 0) return 0.0;
    double* rows = dparts(size_t(N));
    cuda::launch(cross_entropy_kernel, unsigned(N), kThreads, 0, st_, logits, targets, V, grad_scale, dlogits, rows);
    return sum_in_order(rows, size_t(N));
  }

  // ---- backward ----
  // dX (T, K) = dY (T, N) W (N, K): column-major dX' (K, T) = W' (K, N) dY' (N, T), with W' = (Wt read as (N, K))^T.
  // dW (N, K) += dY^T X: column-major dW' (K, N) += X' (K, T) dY'^T.
  void linear_bwd(const float* dY, const float* X, int64_t T, int64_t K, const float* Wt, int64_t N, float* dX,
                  bool acc_dX, float* dW, float* db) override {
    const float one = 1.0f, zero = 0.0f;
    if (dX)
      CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(K), int(T), int(N), &one, Wt, int(N), dY, int(N),
                               acc_dX ? &one : &zero, dX, int(K)));
    if (dW)
      CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_T, int(K), int(N), int(T), &one, X, int(K), dY, int(N),
                               &one, dW, int(K)));
    if (db) col_sum_acc(dY, T, N, N, db);
  }
  // dst (cols, rows) = src (rows, cols)^T: column-major, dst' (rows, cols) = (src' (cols, rows))^T.
  void transpose(const float* src, int64_t rows, int64_t cols, float* dst) override {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasSgeam(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(cols), &one, src, int(cols), &zero, dst,
                             int(rows), dst, int(rows)));
  }
  void embedding_bwd(const int32_t* ids, int64_t T, const float* dx, int64_t D, float* dtable) override {
    if (T == 0) return;
    cuda::launch(embedding_bwd_kernel, blocks_for(D, 128), 128, 0, st_, ids, T, dx, D, dtable);
  }
  void norm_bwd(bool layer, const float* dy, const float* x, const float* w, const float* stats, int64_t T, int64_t D,
                float* dx, bool acc_dx, float* dw, float* db) override {
    if (T == 0) return;
    cuda::launch(norm_bwd_dx_kernel, unsigned(T), kThreads, 0, st_, layer, dy, x, w, stats, D, dx, acc_dx);
    const int64_t nch = (T + kRowChunk - 1) / kRowChunk;
    float* pw = parts(size_t(2 * nch * D));
    float* pb = db ? pw + nch * D : nullptr;
    cuda::launch(norm_bwd_dw_part_kernel, dim3(unsigned((D + 127) / 128), unsigned(nch)), 128, 0, st_, dy, x, stats,
                 T, D, pw, pb);
    chunks_acc(pw, nch, D, dw);
    if (db) chunks_acc(pb, nch, D, db);
  }
  void gelu_bwd(const float* dy, const float* x, int64_t n, float* dx) override {
    launch_flat(gelu_bwd_kernel, n, dy, x, n, dx);
  }
  void swiglu_bwd(const float* da, const float* g, const float* u, int64_t n, float* dg, float* du) override {
    launch_flat(swiglu_bwd_kernel, n, da, g, u, n, dg, du);
  }
  void attention_bwd(const float* q, const float* k, const float* v, const float* out, const float* dout,
                     const float* lse, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
                     const float* extra, float* dq, float* dk, float* dv, float* dextra) override {
    check_head_dim(hd);
    if (B * H * T == 0) return;
    const AttnShape a{B, T, H, KV, hd, scale};
    const size_t rows = size_t(B * H * T);
    float* Drow = drow(rows);
    double* de = de_row(rows);
    cuda::launch(attention_bwd_dq_kernel, warp_blocks(B * H * T), 128, 0, st_, a, q, k, v, out, dout, lse, extra, dq,
                 Drow, de);
    cuda::launch(attention_bwd_dkv_kernel, warp_blocks(B * KV * T), 128, 0, st_, a, q, k, v, dout, lse, Drow, dk, dv);
    if (extra && dextra) {
      cuda::launch(attention_dextra_kernel, unsigned((H + 127) / 128), 128, 0, st_, de, B, H, T, dextra);
    }
  }

  // ---- optimizer ----
  double sum_squares(const float* x, int64_t n) override {
    if (n == 0) return 0.0;
    const int64_t nch = (n + kFlatChunk - 1) / kFlatChunk;
    double* part = dparts(size_t(nch));
    cuda::launch(sum_squares_kernel, unsigned(nch), kThreads, 0, st_, x, n, part);
    return sum_in_order(part, size_t(nch));
  }
  void scale(float* x, int64_t n, float s) override { launch_flat(scale_kernel, n, x, n, s); }
  void adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
             float wd, double bc1, double bc2) override {
    const float decay = 1.0f - lr * wd;
    const float step = float(double(lr) / bc1);
    const float bc2_sqrt = float(std::sqrt(bc2));
    launch_flat(adamw_kernel, n, p, g, m, v, n, lr, b1, b2, eps, wd, decay, step, bc2_sqrt);
  }

 private:
  template <class... P, class... A>
  void launch_flat(void (*kernel)(P...), int64_t n, A... args) {
    if (n > 0) cuda::launch(kernel, blocks_for(n), kThreads, 0, st_, args...);
  }
  // n zeroed elements of device memory (at least one, so that a pointer is never null)
  template <class T>
  T* device_alloc(size_t n) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, (n ? n : 1) * sizeof(T)));
    CUDA_CHECK(cudaMemsetAsync(p, 0, (n ? n : 1) * sizeof(T), st_));
    return static_cast<T*>(p);
  }
  void device_free(void* p) {
    cudaStreamSynchronize(st_);  // queued ops may still use it
    cudaFree(p);
  }
  // A synchronous copy to the device: the host buffer may be reused as soon as it returns.
  template <class T>
  void to_device(T* dst, const T* host, size_t n) {
    if (n == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, host, n * sizeof(T), cudaMemcpyHostToDevice, st_));
    CUDA_CHECK(cudaStreamSynchronize(st_));
  }
  static unsigned warp_blocks(int64_t warps) { return unsigned((warps * 32 + 127) / 128); }
  static void check_head_dim(int64_t hd) {
    if (hd > kMaxHeadDim)
      throw Error("cuda trainer: head_dim " + std::to_string(hd) + " is above the attention kernel's " +
                  std::to_string(kMaxHeadDim));
  }
  void col_sum_acc(const float* x, int64_t T, int64_t D, int64_t ld, float* out) {
    if (T == 0) return;
    const int64_t nch = (T + kRowChunk - 1) / kRowChunk;
    float* part = parts(size_t(nch * D));
    cuda::launch(col_sum_part_kernel, dim3(unsigned((D + 127) / 128), unsigned(nch)), 128, 0, st_, x, T, D, ld, part);
    chunks_acc(part, nch, D, out);
  }
  void chunks_acc(const float* part, int64_t nch, int64_t D, float* out) {
    cuda::launch(chunks_acc_kernel, unsigned((D + 127) / 128), 128, 0, st_, part, nch, D, out);
  }
  // Sums n doubles of device memory in index order on the host (the loss over rows, the squares over chunks).
  double sum_in_order(const double* d, size_t n) {
    host_.resize(n);
    CUDA_CHECK(cudaMemcpyAsync(host_.data(), d, n * sizeof(double), cudaMemcpyDeviceToHost, st_));
    CUDA_CHECK(cudaStreamSynchronize(st_));
    double s = 0.0;
    for (double x : host_) s += x;
    return s;
  }
  // Scratch buffers that only grow (freed with the backend).
  template <class T>
  T* grow(T*& p, size_t& cap, size_t n) {
    if (n > cap) {
      CUDA_CHECK(cudaStreamSynchronize(st_));
      if (p) CUDA_CHECK(cudaFree(p));
      p = nullptr;
      cap = 0;  // (if the allocation throws, the next call allocates again rather than using null)
      CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
      cap = n;
    }
    return p;
  }
  float* parts(size_t n) { return grow(part_, part_cap_, n); }
  double* dparts(size_t n) { return grow(dpart_, dpart_cap_, n); }
  float* drow(size_t n) { return grow(drow_, drow_cap_, n); }
  double* de_row(size_t n) { return grow(de_row_, de_row_cap_, n); }

  int device_;
  cudaStream_t st_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  float* part_ = nullptr;
  double* dpart_ = nullptr;
  float* drow_ = nullptr;
  double* de_row_ = nullptr;
  size_t part_cap_ = 0, dpart_cap_ = 0, drow_cap_ = 0, de_row_cap_ = 0;
  std::vector<double> host_;
};

}  // namespace

std::unique_ptr<train::TrainBackend> make_cuda_train_backend(int device) {
  const int n = cuda_device_count();
  if (n == 0) throw Error("cuda trainer: no CUDA device is visible (cudaGetDeviceCount reports none)");
  if (device < 0 || device >= n)
    throw Error("cuda trainer: device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                " visible)");
  return std::make_unique<CudaTrainBackend>(device);
}

}  // namespace sllm
