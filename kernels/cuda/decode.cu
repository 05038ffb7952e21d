// The decode-step kernels, where one token's work is bound by memory bandwidth: the weight GEMV (every weight byte
// read once per token) and the split-K ("flash-decoding") attention over the sink + ring cache.
//
// GEMV. Y(T, N) = X(T, K) W(N, K)^T + bias for T <= kGemvMaxT, W in f16 or bf16 and X in f32. One warp per two
// output rows: lanes stream the rows in 16-byte vectors (8 weights), eight vectors in flight per lane, multiply
// them with the f32 X (read through L1 once for both rows: X is tiny and shared by every warp) and accumulate in
// f32; a shuffle tree sums the lanes. Unlike the tensor-core path, X is never rounded to 16 bits, so the only
// error is f32 summation order.
// Needs K % 8 == 0, 16-byte aligned W rows and X rows (checked by can_gemv16); anything else goes to cuBLAS.
//
// Decode attention. Query token t (t0 + i) attends its admitted keys in the CPU's order: sink slots
// 0..n_sink-1 (scored with q_sink) then stream tokens a0..t (scored with q_abs), n_keys <= S + R + 1 in all. The
// key range [0, S + R + 1) is cut into `splits` equal chunks; block (chunk c, head h, token i) scores its chunk's
// keys (16-byte loads, a key per 32 / lpk lanes, 16 load instructions per lane in flight: chunk_partial_vec; rows
// that are not whole 16-byte vectors take scalar loads, a key per warp: chunk_partial), takes the chunk's max m and
// sum l of exp(s - m), accumulates o = sum_j exp(s_j - m) V_j, and writes (m, l, o) to a scratch row. The last
// block of (token, head) to finish (an atomic counter) merges the chunks exactly (m = max_c m_c,
// l = sum_c l_c e^{m_c - m} + e^{extra - m}, out = sum_c o_c e^{m_c - m} / l), so attention is one kernel. The
// grid depends on the cache geometry only, never on t, so a CUDA graph of the decode step replays unchanged as the
// stream advances: t0 may be read from device memory (t0_dev), and chunks beyond the keys admitted so far write
// an empty partial (m = -inf, l = 0).
#include <cuda_fp16.h>  // __half2float, __ushort_as_half, __half2

#include <algorithm>  // std::min, std::max

#include "cuda/cuda_common.cuh"
#include "cuda/device_util.cuh"  // warp_sum, warp_max

namespace sllm::cuda {

namespace {

// ---- GEMV ----------------------------------------------------------------------------------------------------

// 8 packed 16-bit weights -> 8 floats (exact).
template <bool BF16>
__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (BF16) {
      f[2 * i] = __uint_as_float(u[i] << 16);
      f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    } else {
      f[2 * i] = __half2float(__ushort_as_half(uint16_t(u[i] & 0xffffu)));
      f[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(u[i] >> 16)));
    }
  }
}

__device__ __forceinline__ void norm4(float4& x, float mean, float rstd, const float4& w) {
  x.x = (x.x - mean) * rstd * w.x;
  x.y = (x.y - mean) * rstd * w.y;
  x.z = (x.z - mean) * rstd * w.z;
  x.w = (x.w - mean) * rstd * w.w;
}

// acc[t][r] += W_r[8 k8 .. 8 k8 + 8) . X_t[8 k8 .. 8 k8 + 8) for the warp's RW rows, X read once for all of them
// (NORM: normalised with the row statistics mean[t], rstd[t] and the norm weights of nrm).
template <int TT, int RW, bool BF16, bool NORM>
__device__ __forceinline__ void gemv_fma(const uint4 (&wv)[RW], const float* __restrict__ X, int64_t ldx,
                                         int64_t k8, float (&acc)[TT][RW], const NormSpec& nrm,
                                         const float (&mean)[TT], const float (&rstd)[TT]) {
  float w[RW][8];
#pragma unroll
  for (int r = 0; r < RW; ++r) unpack8<BF16>(wv[r], w[r]);
  float4 nwa, nwb, nba = {0, 0, 0, 0}, nbb = {0, 0, 0, 0};
  if constexpr (NORM) {
    const float4* nw = reinterpret_cast<const float4*>(nrm.w) + 2 * k8;
    nwa = __ldg(nw), nwb = __ldg(nw + 1);
    if (nrm.b) {
      const float4* nb = reinterpret_cast<const float4*>(nrm.b) + 2 * k8;
      nba = __ldg(nb), nbb = __ldg(nb + 1);
    }
  }
#pragma unroll
  for (int t = 0; t < TT; ++t) {
    const float4* x = reinterpret_cast<const float4*>(X + t * ldx) + 2 * k8;
    float4 a = __ldg(x), b = __ldg(x + 1);
    if constexpr (NORM) {
      norm4(a, mean[t], rstd[t], nwa);
      norm4(b, mean[t], rstd[t], nwb);
      if (nrm.b) {
        a.x += nba.x, a.y += nba.y, a.z += nba.z, a.w += nba.w;
        b.x += nbb.x, b.y += nbb.y, b.z += nbb.z, b.w += nbb.w;
      }
    }
#pragma unroll
    for (int r = 0; r < RW; ++r)
      acc[t][r] += w[r][0] * a.x + w[r][1] * a.y + w[r][2] * a.z + w[r][3] * a.w + w[r][4] * b.x +
                   w[r][5] * b.y + w[r][6] * b.z + w[r][7] * b.w;
  }
}

constexpr int kGemvWarps = 4;   // warps per block
constexpr int kGemvRows = 2;    // rows per warp: each X load serves both
constexpr int kGemvUnroll = 4;  // k-steps per iteration: kGemvRows * kGemvUnroll 16-byte loads in flight per lane

// block kGemvWarps * 32. W: 16-bit rows as uint4 vectors; X: (TT, K) f32 stride ldx. Two forms, each with or
// without a folded norm:
//   plain: W is (N, K); a row group is rows n0 .. n0 + RW - 1 (rows past N repeat row N - 1 and are not
//     written), computed into Y (+ bias, added into Y when accumulate);
//   SWIGLU (RW = 2): W is [gate | up], (2N, K); row group n is gate row n and up row n + N, and writes
//     silu(g) * u to Y[., n], the very expression of swiglu_kernel (the sums are the plain form's, so the result
//     has the same bits as a GEMV into [gate | up] followed by swiglu).
// The grid is at most one wave (gemv_grid); warp g takes row groups g, g + (warps in the grid), ... Each row is
// summed by one warp in one order whatever the grid, so the bits do not depend on the device's size.
// NORM: X's rows are normalised as they are read (NormSpec); every block first computes the statistics of the TT
// rows itself (two passes over K floats from L2, as layernorm_kernel), so no separate norm kernel runs.
template <int TT, int RW, bool BF16, bool SWIGLU, bool NORM>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv16_kernel(const float* __restrict__ X, int64_t ldx, const uint4* __restrict__ W, int64_t K, int64_t N,
                  const float* __restrict__ bias, float* __restrict__ Y, int64_t ldy, bool accumulate,
                  NormSpec nrm) {
  static_assert(!SWIGLU || RW == 2, "the SwiGLU form pairs a gate row with an up row");
  const int lane = threadIdx.x & 31;
  const int64_t warp_id = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  // Row groups: warp g computes group g, then g + (warps in the grid), ... (the grid is at most one wave).
  const int64_t rows = SWIGLU ? 1 : RW;  // output rows per group
  const int64_t stride = int64_t(gridDim.x) * kGemvWarps * rows;
  const int64_t K8 = K / 8;
  auto row_ptrs = [&](int64_t n0, const uint4* (&w)[RW]) {
#pragma unroll
    for (int r = 0; r < RW; ++r) w[r] = W + (SWIGLU ? n0 + r * N : min(n0 + r, N - 1)) * K8;
  };
  int64_t n0 = warp_id * rows;
  const uint4* w[RW];
  row_ptrs(n0, w);
  // The weights are constant (written once, at load): under PDL, this lane's loads of its first iteration are
  // issued before the wait, so they are in flight while the previous kernel finishes; X, Y and the bias are
  // touched only after it. A lane whose row is too short for a whole iteration prefetches into L2 instead.
  uint4 wv[kGemvUnroll][RW];
  bool preloaded = n0 < N && lane + 32 * (kGemvUnroll - 1) < K8;
  if (preloaded) {
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u)
#pragma unroll
      for (int r = 0; r < RW; ++r) wv[u][r] = __ldg(w[r] + lane + 32 * u);
  } else if (n0 < N && lane % 8 == 0) {
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u)
#pragma unroll
      for (int r = 0; r < RW; ++r)
        if (lane + 32 * u < K8) prefetch_l2(w[r] + lane + 32 * u);
  }
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  float mean[TT], rstd[TT];
  if constexpr (NORM) {  // every thread of the block takes part (before any warp leaves)
    __shared__ float red[32];
#pragma unroll
    for (int t = 0; t < TT; ++t) {
      // 16-byte loads (X rows are 16-byte aligned and K % 8 == 0: can_gemv16): a quarter of the load instructions
      // of this pass, which every block runs before its first weight arrives.
      const float4* xr = reinterpret_cast<const float4*>(X + t * ldx);
      const int64_t K4 = K / 4;
      float m = 0.0f;
      if (nrm.layer) {
        float s = 0.0f;
        for (int64_t k = threadIdx.x; k < K4; k += blockDim.x) {
          const float4 x = xr[k];
          s += (x.x + x.y) + (x.z + x.w);
        }
        m = block_sum(s, red) / float(K);
      }
      float v = 0.0f;
      for (int64_t k = threadIdx.x; k < K4; k += blockDim.x) {
        const float4 x = xr[k];
        const float a = x.x - m, b = x.y - m, c = x.z - m, d = x.w - m;
        v += (a * a + b * b) + (c * c + d * d);
      }
      mean[t] = m;
      rstd[t] = 1.0f / sqrtf(block_sum(v, red) / float(K) + nrm.eps);
    }
  } else {
#pragma unroll
    for (int t = 0; t < TT; ++t) mean[t] = 0.0f, rstd[t] = 1.0f;
  }
  for (; n0 < N; n0 += stride, preloaded = false) {
    row_ptrs(n0, w);
    float acc[TT][RW];
#pragma unroll
    for (int t = 0; t < TT; ++t)
#pragma unroll
      for (int r = 0; r < RW; ++r) acc[t][r] = 0.0f;
    int64_t i = lane;
    for (; i + 32 * (kGemvUnroll - 1) < K8; i += 32 * kGemvUnroll) {
      if (!preloaded || i != lane) {  // every load of the iteration issued before any is used
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u)
#pragma unroll
          for (int r = 0; r < RW; ++r) wv[u][r] = __ldg(w[r] + i + 32 * u);
      }
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u)
        gemv_fma<TT, RW, BF16, NORM>(wv[u], X, ldx, i + 32 * u, acc, nrm, mean, rstd);
    }
    for (; i < K8; i += 32) {
      uint4 wt[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) wt[r] = __ldg(w[r] + i);
      gemv_fma<TT, RW, BF16, NORM>(wt, X, ldx, i, acc, nrm, mean, rstd);
    }
    if constexpr (SWIGLU) {
#pragma unroll
      for (int t = 0; t < TT; ++t) {
        const float g = warp_sum(acc[t][0]), u = warp_sum(acc[t][1]);
        if (lane == 0) Y[t * ldy + n0] = g / (1.0f + expf(-g)) * u;
      }
    } else {
#pragma unroll
      for (int t = 0; t < TT; ++t)
#pragma unroll
        for (int r = 0; r < RW; ++r) {
          const float v = warp_sum(acc[t][r]);
          const int64_t n = n0 + r;
          if (lane == 0 && n < N) {
            const float y = bias ? v + bias[n] : v;
            Y[t * ldy + n] = accumulate ? Y[t * ldy + n] + y : y;  // y + (x.w + b), as linear then add
          }
        }
    }
  }
}

// The SMs of the current device (looked up once per device).
int device_sms() {
  static int sms[64] = {};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) throw Error("cuda gemv16: device " + std::to_string(dev) + " out of range");
  if (sms[dev] == 0) CUDA_CHECK(cudaDeviceGetAttribute(&sms[dev], cudaDevAttrMultiProcessorCount, dev));
  return sms[dev];
}

// One wave: as many blocks as fit on the device at once (each warp then loops over its row groups), or fewer
// when the matrix needs fewer. With the norm folded in, this also bounds how often X's statistics are computed.
// one_wave = false: as many blocks as the row groups need (each warp computes one group). A template over the
// kernel's own parameters (not its pointer type, which every instantiation shares), so each instantiation keeps
// its own occupancy (the same on every device of one architecture).
template <int TT, bool BF16, bool SWIGLU, bool NORM>
unsigned gemv_grid(int64_t groups_per_block, int64_t N, bool one_wave) {
  const int64_t needed = (N + groups_per_block - 1) / groups_per_block;
  if (!one_wave) return unsigned(needed);
  static int per_sm = 0;
  if (per_sm == 0) {
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv16_kernel<TT, kGemvRows, BF16, SWIGLU, NORM>,
                                                             kGemvWarps * 32, 0));
    per_sm = std::max(n, 1);
  }
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t(per_sm) * device_sms())));
}

template <bool BF16, bool SWIGLU, bool NORM>
void launch_gemv16(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, int64_t N, const float* bias,
                   float* Y, int64_t ldy, bool accumulate, Stream s, const NormSpec& nrm) {
  const int64_t per_block = int64_t(kGemvWarps) * (SWIGLU ? 1 : kGemvRows);
  const auto* w = static_cast<const uint4*>(W);
  switch (T) {
#define SLLM_GEMV_CASE(TT)                                                                                \
  case TT: {                                                                                              \
    launch(gemv16_kernel<TT, kGemvRows, BF16, SWIGLU, NORM>,                                              \
           gemv_grid<TT, BF16, SWIGLU, NORM>(per_block, N, s.gemv_wave), kGemvWarps * 32, 0, s, X, ldx, w, K, \
           N, bias, Y, ldy, accumulate, nrm);                                                             \
    break;                                                                                                \
  }
    SLLM_GEMV_CASE(1)
    SLLM_GEMV_CASE(2)
    SLLM_GEMV_CASE(3)
    SLLM_GEMV_CASE(4)
    SLLM_GEMV_CASE(5)
    SLLM_GEMV_CASE(6)
    SLLM_GEMV_CASE(7)
    SLLM_GEMV_CASE(8)
#undef SLLM_GEMV_CASE
    default: throw Error("cuda gemv16: T = " + std::to_string(T) + " outside 1.." + std::to_string(kGemvMaxT));
  }
  CUDA_CHECK(cudaGetLastError());
}

// ---- decode attention ------------------------------------------------------------------------------------------

constexpr int kDecWarps = 4;      // warps per block
constexpr int kDecKeysPerIt = 4;  // keys a warp scores at once (loads in flight)
constexpr int kMaxChunk = 256;    // keys per chunk (scores held in shared memory)

__device__ __forceinline__ float kv_load(const float* p, int64_t i) { return __ldg(p + i); }
__device__ __forceinline__ float kv_load(const __half* p, int64_t i) { return __half2float(p[i]); }

// The admitted keys of stream token t (see the top of the file).
struct KeySet {
  int64_t n_sink, a0, n_keys, qpos;
};

__device__ __forceinline__ KeySet key_set(int64_t t, const cpu::AttnGeometry& g) {
  const int64_t S = g.sinks, R = g.window;
  KeySet k;
  k.qpos = t < S + R ? t : S + R;
  k.n_sink = S < t + 1 ? S : t + 1;
  k.a0 = S > t - R ? S : t - R;
  k.n_keys = k.n_sink + (t >= k.a0 ? t - k.a0 + 1 : 0);
  return k;
}

// Scratch row of one (token, head, chunk): o[hd], then m, then l.
__device__ __forceinline__ int64_t part_stride(int64_t hd) { return hd + 2; }

// The scores p[0, n) of a chunk, in shared memory (complete: the caller synchronised), become exp(p - m); returns
// (m, l) = (max, sum of exp(p - m)), the same in every thread. Ends synchronised: p may be read by any thread.
__device__ __forceinline__ float2 chunk_softmax(float* p, int64_t n) {
  __shared__ float red[kDecWarps];
  __shared__ float bmax, bsum;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, p[j]);
  mx = warp_max(mx);
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = red[0];
    for (int w = 1; w < kDecWarps; ++w) m = fmaxf(m, red[w]);
    bmax = m;
  }
  __syncthreads();
  const float m = bmax;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = expf(p[j] - m);
    p[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  __syncthreads();  // red is reused
  if (lane == 0) red[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float l = 0.0f;
    for (int w = 0; w < kDecWarps; ++w) l += red[w];
    bsum = l;
  }
  __syncthreads();
  return make_float2(m, bsum);
}

// One chunk's partial (o[hd], m, l) of query token t, head h: keys [j0, j1) of its admitted keys, j0 < j1.
template <class KT>
__device__ __forceinline__ void chunk_partial(const float* __restrict__ q_abs, const float* __restrict__ q_sink,
                                              int64_t ld_q, int64_t i, int64_t h, int64_t t, const KeySet& ks,
                                              int64_t j0, int64_t j1, const KT* __restrict__ kcache,
                                              const KT* __restrict__ vcache, const cpu::AttnGeometry& g, float scale,
                                              const float* __restrict__ alibi, int64_t chunk,
                                              float* __restrict__ out) {
  extern __shared__ float smem[];
  const int64_t H = g.n_heads, hd = g.head_dim, S = g.sinks;
  const int64_t kvh = h / (H / g.n_kv_heads);
  const KT* K = kcache + kvh * g.capacity * hd;
  const KT* V = vcache + kvh * g.capacity * hd;
  float* qs = smem;                                  // (hd)
  float* qa = qs + hd;                               // (hd)
  float* p = qa + hd;                                // (chunk) scores, then exp(score - m)
  int* slot = reinterpret_cast<int*>(p + chunk);     // (chunk) cache slot of each key
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    qs[d] = q_sink[i * ld_q + h * hd + d];
    qa[d] = q_abs[i * ld_q + h * hd + d];
  }
  for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
    slot[j - j0] = int(j < ks.n_sink ? j : S + (ks.a0 + (j - ks.n_sink) - S) % g.ring);
  __syncthreads();
  const float slope = alibi ? alibi[h] : 0.0f;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // 1. Scores: a warp takes kDecKeysPerIt keys at a time (sinks with q_sink, stream tokens with q_abs).
  for (int64_t jb = j0 + int64_t(warp) * kDecKeysPerIt; jb < j1; jb += int64_t(kDecWarps) * kDecKeysPerIt) {
    float s[kDecKeysPerIt];
#pragma unroll
    for (int u = 0; u < kDecKeysPerIt; ++u) {
      s[u] = 0.0f;
      const int64_t j = jb + u;
      if (j < j1) {
        const float* q = j < ks.n_sink ? qs : qa;
        const KT* kr = K + int64_t(slot[j - j0]) * hd;
        for (int64_t d = lane; d < hd; d += 32) s[u] += q[d] * kv_load(kr, d);
      }
    }
#pragma unroll
    for (int u = 0; u < kDecKeysPerIt; ++u) {
      const float v = warp_sum(s[u]);
      const int64_t j = jb + u;
      if (lane == 0 && j < j1) {
        // ALiBi distance: in-cache for a sink, true distance for a stream token.
        const int64_t dist = j < ks.n_sink ? ks.qpos - j : t - (ks.a0 + (j - ks.n_sink));
        p[j - j0] = v * scale - (alibi ? slope * float(dist) : 0.0f);
      }
    }
  }
  __syncthreads();
  // 2. Chunk max and sum of exp(s - m).
  const int64_t n = j1 - j0;
  const float2 ml = chunk_softmax(p, n);
  const float m = ml.x;
  // 3. o[d] = sum_j p_j V_j[d]: threads across head_dim, keys unrolled by 4 for loads in flight.
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int64_t j = 0;
    for (; j + 3 < n; j += 4) {
#pragma unroll
      for (int u = 0; u < 4; ++u) acc[u] += p[j + u] * kv_load(V + int64_t(slot[j + u]) * hd, d);
    }
    for (; j < n; ++j) acc[0] += p[j] * kv_load(V + int64_t(slot[j]) * hd, d);
    out[d] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  if (threadIdx.x == 0) {
    out[hd] = m;
    out[hd + 1] = ml.y;
  }
}

// The same partial with 16-byte loads, for caches whose rows are whole 16-byte vectors (nv = hd * sizeof(KT) / 16
// vectors, 1 <= nv <= 64). A key is read by lpk lanes (the largest power of two <= min(nv, 32)), each holding VPL
// vectors of the row (VPL = 2 when nv > lpk; lanes past the row's end hold zeros), so a warp reads 32 / lpk keys
// per load instruction and keeps kVecUnroll such loads in flight: for a 128-dim f16 cache, 32 keys (8 KB) per block
// at once, where the scalar path above has 16 two-byte loads per warp. Scores reduce over a key's lanes by
// shuffles; o reduces over the keys of a warp by shuffles, then over the warps through shared memory in a fixed
// order (deterministic, so a graph replay gives the eager bits).
constexpr int kVecUnroll = 4;

template <class KT>
__device__ __forceinline__ void unpack_vec(const uint4& v, float (&f)[16 / sizeof(KT)]) {
  if constexpr (sizeof(KT) == 2) {
    unpack8<false>(v, f);
  } else {
    f[0] = __uint_as_float(v.x), f[1] = __uint_as_float(v.y), f[2] = __uint_as_float(v.z), f[3] = __uint_as_float(v.w);
  }
}

// Vectors per row of a 16-byte-vector path, or 0 when the cache rows do not split into 1..64 whole vectors.
__host__ __device__ inline int kv_vectors(int64_t hd, int64_t elem_bytes) {
  const int64_t b = hd * elem_bytes;
  return b % 16 == 0 && b / 16 >= 1 && b / 16 <= 64 ? int(b / 16) : 0;
}

template <class KT, int VPL>
__device__ __forceinline__ void chunk_partial_vec(const float* __restrict__ q_abs, const float* __restrict__ q_sink,
                                                  int64_t ld_q, int64_t i, int64_t h, int64_t t, const KeySet& ks,
                                                  int64_t j0, int64_t j1, const KT* __restrict__ kcache,
                                                  const KT* __restrict__ vcache, const cpu::AttnGeometry& g,
                                                  float scale, const float* __restrict__ alibi, int64_t chunk,
                                                  float* __restrict__ out) {
  constexpr int E = 16 / int(sizeof(KT));  // elements per vector
  extern __shared__ float smem[];
  const int64_t H = g.n_heads, hd = g.head_dim, S = g.sinks;
  const int nv = kv_vectors(hd, sizeof(KT));
  int lpk = 1;
  while (lpk * 2 <= min(nv, 32)) lpk *= 2;
  const int64_t kvh = h / (H / g.n_kv_heads);
  const uint4* K = reinterpret_cast<const uint4*>(kcache + kvh * g.capacity * hd);
  const uint4* V = reinterpret_cast<const uint4*>(vcache + kvh * g.capacity * hd);
  float* p = smem;                                  // (chunk) scores, then exp(score - m)
  int* slot = reinterpret_cast<int*>(p + chunk);    // (chunk) cache slot of each key
  float* osum = reinterpret_cast<float*>(slot + chunk);  // (kDecWarps, hd) each warp's share of o
  for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
    slot[j - j0] = int(j < ks.n_sink ? j : S + (ks.a0 + (j - ks.n_sink) - S) % g.ring);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kpw = 32 / lpk, sub = lane % lpk, kw = lane / lpk;  // keys per warp load, lane in key, key in warp
  // This lane's slices of both queries (zeros past the row's end).
  float qa[VPL][E], qs[VPL][E];
#pragma unroll
  for (int r = 0; r < VPL; ++r) {
    const int v = sub + r * lpk;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t d = int64_t(v) * E + e;
      qa[r][e] = v < nv ? q_abs[i * ld_q + h * hd + d] : 0.0f;
      qs[r][e] = v < nv ? q_sink[i * ld_q + h * hd + d] : 0.0f;
    }
  }
  __syncthreads();  // slot
  const float slope = alibi ? alibi[h] : 0.0f;
  const int64_t n = j1 - j0;
  const int64_t step = int64_t(kDecWarps) * kpw;  // keys the block reads per load instruction
  // 1. Scores. `base` is uniform over the warp, so every lane reaches every shuffle.
  for (int64_t base = int64_t(warp) * kpw; base < n; base += step * kVecUnroll) {
    uint4 kv[kVecUnroll][VPL];
#pragma unroll
    for (int u = 0; u < kVecUnroll; ++u) {
      const int64_t jj = base + kw + u * step;
#pragma unroll
      for (int r = 0; r < VPL; ++r) {
        const int v = sub + r * lpk;
        kv[u][r] = jj < n && v < nv ? __ldg(K + int64_t(slot[jj]) * nv + v) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kVecUnroll; ++u) {
      const int64_t jj = base + kw + u * step, j = j0 + jj;
      const bool sink = j < ks.n_sink;
      float sc = 0.0f;
#pragma unroll
      for (int r = 0; r < VPL; ++r) {
        float f[E];
        unpack_vec<KT>(kv[u][r], f);
#pragma unroll
        for (int e = 0; e < E; ++e) sc += (sink ? qs[r][e] : qa[r][e]) * f[e];
      }
      for (int o = lpk / 2; o > 0; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
      if (sub == 0 && jj < n) {
        // ALiBi distance: in-cache for a sink, true distance for a stream token.
        const int64_t dist = sink ? ks.qpos - j : t - (ks.a0 + (j - ks.n_sink));
        p[jj] = sc * scale - (alibi ? slope * float(dist) : 0.0f);
      }
    }
  }
  __syncthreads();
  // 2. Chunk max and sum of exp(s - m).
  const float2 ml = chunk_softmax(p, n);
  // 3. o = sum_j p_j V_j: each lane accumulates its vectors over the keys of its lane group.
  float acc[VPL][E];
#pragma unroll
  for (int r = 0; r < VPL; ++r)
#pragma unroll
    for (int e = 0; e < E; ++e) acc[r][e] = 0.0f;
  for (int64_t base = int64_t(warp) * kpw; base < n; base += step * kVecUnroll) {
    uint4 vv[kVecUnroll][VPL];
    float pj[kVecUnroll];
#pragma unroll
    for (int u = 0; u < kVecUnroll; ++u) {
      const int64_t jj = base + kw + u * step;
      pj[u] = jj < n ? p[jj] : 0.0f;
#pragma unroll
      for (int r = 0; r < VPL; ++r) {
        const int v = sub + r * lpk;
        vv[u][r] = jj < n && v < nv ? __ldg(V + int64_t(slot[jj]) * nv + v) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kVecUnroll; ++u)
#pragma unroll
      for (int r = 0; r < VPL; ++r) {
        float f[E];
        unpack_vec<KT>(vv[u][r], f);
#pragma unroll
        for (int e = 0; e < E; ++e) acc[r][e] += pj[u] * f[e];
      }
  }
  // Over the keys of the warp (lanes with the same `sub`), then over the warps in order.
#pragma unroll
  for (int r = 0; r < VPL; ++r)
#pragma unroll
    for (int e = 0; e < E; ++e)
      for (int o = lpk; o < 32; o <<= 1) acc[r][e] += __shfl_xor_sync(0xffffffffu, acc[r][e], o);
  if (kw == 0) {
#pragma unroll
    for (int r = 0; r < VPL; ++r) {
      const int v = sub + r * lpk;
      if (v < nv)
#pragma unroll
        for (int e = 0; e < E; ++e) osum[warp * hd + int64_t(v) * E + e] = acc[r][e];
    }
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) o += osum[w * hd + d];
    out[d] = o;
  }
  if (threadIdx.x == 0) {
    out[hd] = ml.x;
    out[hd + 1] = ml.y;
  }
}

// Merges the `splits` partials of (token i, head h) with the extra logit into out[(i * H + h) * hd ..]. The
// partials were written by other blocks of this grid: read through L2 (__ldcg), never a stale L1 line.
__device__ __forceinline__ void merge_partials(const float* part, int64_t splits, int64_t H, int64_t hd, int64_t i,
                                               int64_t h, const float* __restrict__ extra_logit,
                                               float* __restrict__ out) {
  const float* P = part + (i * H + h) * splits * part_stride(hd);
  float m = extra_logit ? extra_logit[h] : -INFINITY;
  for (int64_t c = 0; c < splits; ++c) m = fmaxf(m, __ldcg(P + c * part_stride(hd) + hd));
  float l = extra_logit ? expf(extra_logit[h] - m) : 0.0f;
  for (int64_t c = 0; c < splits; ++c) {
    const float mc = __ldcg(P + c * part_stride(hd) + hd);
    if (mc != -INFINITY) l += __ldcg(P + c * part_stride(hd) + hd + 1) * expf(mc - m);
  }
  const float inv = 1.0f / l;
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
    for (int64_t c = 0; c < splits; ++c) {
      const float mc = __ldcg(P + c * part_stride(hd) + hd);
      if (mc != -INFINITY) o += __ldcg(P + c * part_stride(hd) + d) * expf(mc - m);
    }
    out[(i * H + h) * hd + d] = o * inv;
  }
}

// grid (splits, n_heads, T), block kDecWarps * 32. Dynamic shared memory: q_sink, q_abs (hd floats each), p
// (chunk floats), slot (chunk ints). part: (T, H, splits, hd + 2) scratch; counters: (T, H) ints, zero before the
// launch and zero again after it. Each block writes its chunk's partial, then counts itself in its (token, head)
// counter; the block that counts last merges the partials into out (T, H, hd) and resets the counter: one kernel
// where flash-decoding usually takes two, with the same merge order and so the same bits.
template <class KT, int VPL>  // VPL 0: the scalar path; 1, 2: 16-byte vectors (chunk_partial_vec)
__global__ void __launch_bounds__(kDecWarps * 32)
    attn_decode_kernel(const float* __restrict__ q_abs, const float* __restrict__ q_sink, int64_t ld_q, int64_t t0_arg,
                       const int64_t* __restrict__ t0_dev, const KT* __restrict__ kcache,
                       const KT* __restrict__ vcache, cpu::AttnGeometry g, float scale,
                       const float* __restrict__ alibi, int64_t chunk, float* part,
                       const float* __restrict__ extra_logit, float* __restrict__ out, int* __restrict__ counters) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  const int64_t H = g.n_heads, hd = g.head_dim, splits = gridDim.x;
  const int64_t c = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
  const int64_t t = (t0_dev ? *t0_dev : t0_arg) + i;
  const KeySet ks = key_set(t, g);
  const int64_t j0 = c * chunk, j1 = min(j0 + chunk, ks.n_keys);
  float* mine = part + ((i * H + h) * splits + c) * part_stride(hd);
  if (j0 < j1) {
    if constexpr (VPL == 0)
      chunk_partial(q_abs, q_sink, ld_q, i, h, t, ks, j0, j1, kcache, vcache, g, scale, alibi, chunk, mine);
    else
      chunk_partial_vec<KT, VPL>(q_abs, q_sink, ld_q, i, h, t, ks, j0, j1, kcache, vcache, g, scale, alibi, chunk,
                                 mine);
  } else {  // nothing admitted in this chunk (yet): an empty partial
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) mine[d] = 0.0f;
    if (threadIdx.x == 0) {
      mine[hd] = -INFINITY;
      mine[hd + 1] = 0.0f;
    }
  }
  __shared__ bool last;
  __threadfence();  // this block's partial is visible to the whole device before the block is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    int* n = counters + i * H + h;
    last = atomicAdd(n, 1) == int(splits) - 1;
    if (last) *n = 0;  // every block of (i, h) has counted: ready for the next launch (graph replays)
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  merge_partials(part, splits, H, hd, i, h, extra_logit, out);
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------------------------

bool can_gemv16(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt) {
  return (wt == DType::F16 || wt == DType::BF16) && T >= 1 && T <= kGemvMaxT && K % 8 == 0 && ldx % 4 == 0 &&
         reinterpret_cast<uintptr_t>(X) % 16 == 0 && reinterpret_cast<uintptr_t>(W) % 16 == 0;
}

bool can_fold_norm(const NormSpec& n) {
  return n.w && reinterpret_cast<uintptr_t>(n.w) % 16 == 0 && reinterpret_cast<uintptr_t>(n.b) % 16 == 0;
}

namespace {
// The run-time choices (weight dtype, folded norm) to the kernel's template arguments.
template <bool SWIGLU>
void dispatch_gemv16(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
                     const float* bias, float* Y, int64_t ldy, bool accumulate, Stream s, const NormSpec& nrm) {
  const bool bf16 = wt == DType::BF16, norm = nrm.w != nullptr;
  if (bf16 && norm) launch_gemv16<true, SWIGLU, true>(X, T, K, ldx, W, N, bias, Y, ldy, accumulate, s, nrm);
  else if (bf16) launch_gemv16<true, SWIGLU, false>(X, T, K, ldx, W, N, bias, Y, ldy, accumulate, s, nrm);
  else if (norm) launch_gemv16<false, SWIGLU, true>(X, T, K, ldx, W, N, bias, Y, ldy, accumulate, s, nrm);
  else launch_gemv16<false, SWIGLU, false>(X, T, K, ldx, W, N, bias, Y, ldy, accumulate, s, nrm);
}
}  // namespace

void gemv16(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
            const float* bias, float* Y, int64_t ldy, bool accumulate, Stream s, const NormSpec& nrm) {
  if (N <= 0 || T <= 0) return;
  dispatch_gemv16<false>(X, T, K, ldx, W, wt, N, bias, Y, ldy, accumulate, s, nrm);
}

void gemv16_swiglu(const float* X, int64_t T, int64_t K, int64_t ldx, const void* Wgu, DType wt, int64_t F,
                   float* out, int64_t ldo, Stream s, const NormSpec& nrm) {
  if (F <= 0 || T <= 0) return;
  dispatch_gemv16<true>(X, T, K, ldx, Wgu, wt, F, nullptr, out, ldo, false, s, nrm);
}

DecodePlan decode_plan(const cpu::AttnGeometry& g, int64_t T, int num_sms) {
  const int64_t max_keys = g.sinks + g.window + 1;  // admitted keys of any query, at most
  const int64_t heads = std::max<int64_t>(1, T * g.n_heads);
  // Enough blocks for ~4 per SM, chunks of at least 64 keys, at most kMaxChunk.
  int64_t splits = std::max<int64_t>(1, (int64_t(4) * num_sms + heads - 1) / heads);
  int64_t chunk = (max_keys + splits - 1) / splits;
  chunk = std::min<int64_t>(kMaxChunk, std::max<int64_t>(64, (chunk + 31) / 32 * 32));
  DecodePlan p;
  p.chunk = chunk;
  p.splits = (max_keys + chunk - 1) / chunk;
  p.scratch_floats = size_t(std::max<int64_t>(T, 1)) * size_t(g.n_heads) * size_t(p.splits) *
                     size_t(g.head_dim + 2);
  p.counters = size_t(std::max<int64_t>(T, 1)) * size_t(g.n_heads);
  return p;
}

void attention_decode(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                      const int64_t* t0_dev, const void* kcache, const void* vcache, const cpu::AttnGeometry& g,
                      float scale, const float* alibi, const float* extra_logit, float* out,
                      const DecodePlan& plan, float* scratch, int* counters, Stream s, bool vectors) {
  if (T <= 0 || g.n_heads <= 0) return;
  const int vpl = vectors ? decode_vectors_per_lane(g, kcache, vcache) : 0;
  // Scalar path: q_sink, q_abs, p, slot; vector path: p, slot, a share of o per warp.
  const size_t smem = size_t(vpl == 0 ? 2 * g.head_dim + 2 * plan.chunk : 2 * plan.chunk + kDecWarps * g.head_dim) *
                      sizeof(float);
  SLLM_CHECK(smem <= 48 * 1024, "cuda attention: head_dim " + std::to_string(g.head_dim) + " is too large");
  const dim3 grid(unsigned(plan.splits), unsigned(g.n_heads), unsigned(T));
  auto go = [&](auto kernel, const auto* kc, const auto* vc) {
    launch(kernel, grid, kDecWarps * 32, smem, s, q_abs, q_sink, ld_q, t0, t0_dev, kc, vc, g, scale, alibi,
           plan.chunk, scratch, extra_logit, out, counters);
  };
  const auto* kh = static_cast<const __half*>(kcache);
  const auto* vh = static_cast<const __half*>(vcache);
  const auto* kf = static_cast<const float*>(kcache);
  const auto* vf = static_cast<const float*>(vcache);
  if (g.kv_f16) {
    if (vpl == 0) go(attn_decode_kernel<__half, 0>, kh, vh);
    else if (vpl == 1) go(attn_decode_kernel<__half, 1>, kh, vh);
    else go(attn_decode_kernel<__half, 2>, kh, vh);
  } else {
    if (vpl == 0) go(attn_decode_kernel<float, 0>, kf, vf);
    else if (vpl == 1) go(attn_decode_kernel<float, 1>, kf, vf);
    else go(attn_decode_kernel<float, 2>, kf, vf);
  }
}

int decode_vectors_per_lane(const cpu::AttnGeometry& g, const void* kcache, const void* vcache) {
  const int nv = kv_vectors(g.head_dim, g.kv_f16 ? 2 : 4);
  if (nv == 0 || reinterpret_cast<uintptr_t>(kcache) % 16 != 0 || reinterpret_cast<uintptr_t>(vcache) % 16 != 0)
    return 0;
  int lpk = 1;
  while (lpk * 2 <= std::min(nv, 32)) lpk *= 2;
  return nv > lpk ? 2 : 1;
}

}  // namespace sllm::cuda
