// CUDA kernel: chunked (prefill) streaming attention over the StreamingLLM cache, flash-attention style, f32 SIMT.
//
// Work split. Grid (ceil(T / kBQ), n_heads); a block of kWarps warps takes kBQ consecutive query tokens of one
// head, each warp kRows of them. The block walks the union of the keys its queries admit in tiles of kBK keys:
// first the sink slots 0..min(S, t_last+1)-1 (scored with q_sink), then the stream tokens max(S, t_first-R)..t_last
// (scored with q_abs; token a sits at ring slot S + (a - S) % ring, and the union spans at most T + R <= ring
// tokens, so a tile wraps the ring at most once). Sink and stream keys never share a tile, so the query buffer in
// shared memory holds one kind at a time (q_sink rows, then q_abs rows). K and V tiles are staged in shared
// memory as f32 (converted from half when g.kv_f16); K rows are padded to an odd stride so that the 32 lanes,
// which read 32 different keys at the same dimension, hit 32 different banks. GQA/MQA: head h reads KV head
// h / (H / Hkv) in place (the heads of a group re-read the same tiles, mostly from L2).
//
// Per tile, lane j of a warp scores keys j and j + 32 against the warp's kRows queries (q read as float4
// broadcasts, each K element reused kRows times); then masking, the online-softmax update (running max m,
// per-lane partial sums l, accumulator rescaled by exp(m_old - m_new)), the probabilities go through shared
// memory (one float4 per key: all kRows rows), and each lane accumulates head_dim / 32 output columns of all its
// rows in registers. A warp skips a tile none of its queries admits (the causal and window edges).
//
// Masking (per query t, matching cpu::attention_stream): sink j admitted iff j < min(S, t+1), at in-cache
// distance min(t, S+R) - j; stream token a admitted iff max(S, t-R) <= a <= t, at distance t - a. ALiBi subtracts
// slope * distance after scaling. The extra logit (sink_logit variant) joins the denominator at the end only.
//
// Numerics: f32 throughout; expf (not __expf); a row whose keys so far are all masked keeps m = -inf, and the
// exponentials use 0 as their reference then (no exp(-inf + inf) = NaN). The scale and ALiBi products are
// rounded separately (no FMA contraction) as on the CPU. The result differs from the CPU's max-subtracted softmax
// only by the summation order and a few ulp of exp per tile rescaling (well inside 1e-5 relative).
//
// Limits: head_dim <= 256 (register accumulator of kRows * 8 floats per lane). Shared memory, in floats:
// kWarps*kBK*kRows (P) + kBQ*round4(hd) (Q) + kBK*(hd|1) (K) + kBK*hd (V): 47 KiB at hd 64, 90 KiB at 128,
// 172 KiB at 256 (opted in above 48 KiB).
#include <cuda_fp16.h>  // __half, __half2float, __ushort_as_half

#include <string>     // std::to_string

#include "cuda/cuda_common.cuh"
#include "cuda/device_util.cuh"  // warp_sum, warp_max

namespace sllm::cuda {

namespace {

constexpr int kWarps = 8;                   // warps per block
constexpr int kRows = 4;                    // query rows per warp (one float4 of probabilities per key)
constexpr int kBQ = kWarps * kRows;         // query rows per block
constexpr int kBK = 64;                     // keys per tile
constexpr int kKeysPerLane = kBK / 32;      // keys each lane scores per tile
constexpr int64_t kMaxHeadDim = 256;
static_assert(kRows == 4, "probabilities are exchanged as one float4 per key");

// Shared-memory layout (floats): P (kWarps, kBK, kRows) | Q (kBQ, qstride) | K (kBK, kstride) | V (kBK, hd).
// Every part starts at a multiple of 4 floats (16 bytes) for the float4 accesses.
__host__ __device__ constexpr int pf_qstride(int hd) { return (hd + 3) & ~3; }
__host__ __device__ constexpr int pf_kstride(int hd) { return hd | 1; }  // odd: conflict-free column reads
__host__ __device__ constexpr int64_t pf_smem_floats(int hd) {
  return int64_t(kWarps) * kBK * kRows + int64_t(kBQ) * pf_qstride(hd) + int64_t(kBK) * pf_kstride(hd) +
         int64_t(kBK) * hd;
}


// One cache element, and four consecutive ones (p 8- or 16-byte aligned), as f32.
__device__ __forceinline__ float kv_load1(const float* p) { return __ldg(p); }
__device__ __forceinline__ float kv_load1(const __half* p) { return __half2float(p[0]); }
__device__ __forceinline__ float4 kv_load4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ float4 kv_load4(const __half* p) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));  // little endian: element 0 in the low half
  return make_float4(__half2float(__ushort_as_half((unsigned short)(u.x & 0xffffu))),
                     __half2float(__ushort_as_half((unsigned short)(u.x >> 16))),
                     __half2float(__ushort_as_half((unsigned short)(u.y & 0xffffu))),
                     __half2float(__ushort_as_half((unsigned short)(u.y >> 16))));
}

// grid (ceil(T / kBQ), n_heads), block kWarps * 32, dynamic smem pf_smem_floats(hd) floats.
//   q_abs, q_sink: (T, H, hd) with stride ld_q between tokens; kcache, vcache: (Hkv, capacity, hd) of KT;
//   alibi, extra_logit: (H) or null; out: (T, H, hd) contiguous.
// ND: head_dim <= 32 * ND (output columns per lane).
template <int ND, class KT>
__global__ void __launch_bounds__(kWarps * 32)
    attention_prefill_kernel(const float* __restrict__ q_abs, const float* __restrict__ q_sink, int64_t ld_q,
                             int64_t T, int64_t t0, const KT* __restrict__ kcache, const KT* __restrict__ vcache,
                             AttnGeometry g, float scale, const float* __restrict__ alibi,
                             const float* __restrict__ extra_logit, float* __restrict__ out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  extern __shared__ float4 pf_smem4[];
  const int hd = int(g.head_dim), qstride = pf_qstride(hd), kstride = pf_kstride(hd);
  float* Ps = reinterpret_cast<float*>(pf_smem4);  // (kWarps, kBK, kRows) probabilities
  float* Qs = Ps + kWarps * kBK * kRows;            // (kBQ, qstride) the block's queries, zero padded
  float* Ks = Qs + kBQ * qstride;                   // (kBK, kstride) key tile
  float* Vs = Ks + kBK * kstride;                   // (kBK, hd) value tile

  const int64_t H = g.n_heads, S = g.sinks, R = g.window, ring = g.ring;
  const int64_t h = blockIdx.y, kvh = h / (H / g.n_kv_heads);
  const KT* K = kcache + kvh * g.capacity * hd;
  const KT* V = vcache + kvh * g.capacity * hd;

  // The block's queries: rows row0..row0+rows-1, stream tokens t_first..t_last.
  const int64_t row0 = int64_t(blockIdx.x) * kBQ;
  const int64_t rows = T - row0 < kBQ ? T - row0 : kBQ;
  const int64_t t_first = t0 + row0, t_last = t_first + rows - 1;
  // Union of their keys: sink slots [0, n_sink), stream tokens [a_begin, t_last].
  const int64_t n_sink = S < t_last + 1 ? S : t_last + 1;
  const int64_t a_begin = S > t_first - R ? S : t_first - R;
  const int64_t n_stream = t_last >= a_begin ? t_last - a_begin + 1 : 0;
  const int64_t sink_tiles = (n_sink + kBK - 1) / kBK;
  const int64_t n_tiles = sink_tiles + (n_stream + kBK - 1) / kBK;

  // This warp's queries: rows wrow0..wrow0+wrows-1, tokens ta..tb (wrows may be 0 in the last block).
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t wrow0 = row0 + int64_t(warp) * kRows;
  const int wrows = T - wrow0 <= 0 ? 0 : (T - wrow0 < kRows ? int(T - wrow0) : kRows);
  const int64_t ta = t0 + wrow0, tb = ta + wrows - 1;
  const int64_t a_lo_warp = S > ta - R ? S : ta - R;  // lowest stream token any of the warp's queries admits
  const bool use_alibi = alibi != nullptr;
  const float slope = use_alibi ? alibi[h] : 0.0f;

  float m[kRows], l[kRows], o[kRows][ND];  // running max (warp-uniform), per-lane partial sum, accumulator
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < ND; ++i) o[r][i] = 0.0f;
  }

  for (int64_t it = 0; it < n_tiles; ++it) {
    const bool sink = it < sink_tiles;
    // key0: first sink slot / first stream token of the tile; n_valid keys are real, the rest are zero filled.
    const int64_t key0 = sink ? it * kBK : a_begin + (it - sink_tiles) * kBK;
    const int64_t end = sink ? n_sink : t_last + 1;
    const int n_valid = end - key0 < kBK ? int(end - key0) : kBK;
    const int64_t slot0 = sink ? key0 : S + (key0 - S) % ring;

    __syncthreads();  // every warp is done with the previous tile (and, at a switch, with the previous queries)
    if (it == 0 || it == sink_tiles) {
      const float* q = sink ? q_sink : q_abs;
      for (int e = threadIdx.x; e < kBQ * qstride; e += blockDim.x) {
        const int r = e / qstride, d = e - r * qstride;
        Qs[e] = d < hd && r < rows ? q[(row0 + r) * ld_q + h * hd + d] : 0.0f;
      }
    }
    if ((hd & 3) == 0) {
      for (int e4 = threadIdx.x; e4 < kBK * hd / 4; e4 += blockDim.x) {
        const int e = 4 * e4, kk = e / hd, d = e - kk * hd;
        float4 kv = make_float4(0.0f, 0.0f, 0.0f, 0.0f), vv = kv;
        if (kk < n_valid) {
          int64_t slot = slot0 + kk;
          if (slot >= S + ring) slot -= ring;  // sinks never get here: slot < n_sink <= S
          kv = kv_load4(K + slot * hd + d);
          vv = kv_load4(V + slot * hd + d);
        }
        float* kd = Ks + kk * kstride + d;  // odd stride: four scalar stores
        kd[0] = kv.x;
        kd[1] = kv.y;
        kd[2] = kv.z;
        kd[3] = kv.w;
        *reinterpret_cast<float4*>(Vs + e) = vv;
      }
    } else {
      for (int e = threadIdx.x; e < kBK * hd; e += blockDim.x) {
        const int kk = e / hd, d = e - kk * hd;
        float kv = 0.0f, vv = 0.0f;
        if (kk < n_valid) {
          int64_t slot = slot0 + kk;
          if (slot >= S + ring) slot -= ring;
          kv = kv_load1(K + slot * hd + d);
          vv = kv_load1(V + slot * hd + d);
        }
        Ks[kk * kstride + d] = kv;
        Vs[e] = vv;
      }
    }
    __syncthreads();

    // Skip a tile none of this warp's queries admits (warp-uniform).
    if (wrows == 0 || key0 > tb) continue;
    if (!sink && key0 + n_valid - 1 < a_lo_warp) continue;

    // Scores: lane scores keys lane + 32 c of the tile against the warp's rows.
    float sc[kRows][kKeysPerLane];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kKeysPerLane; ++c) sc[r][c] = 0.0f;
    const float* qw = Qs + warp * kRows * qstride;
    const int hd4 = hd & ~3;
#pragma unroll 2
    for (int d = 0; d < hd4; d += 4) {
      float4 q[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) q[r] = *reinterpret_cast<const float4*>(qw + r * qstride + d);
#pragma unroll
      for (int c = 0; c < kKeysPerLane; ++c) {
        const float* kr = Ks + (lane + 32 * c) * kstride + d;
        const float k0 = kr[0], k1 = kr[1], k2 = kr[2], k3 = kr[3];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float s = sc[r][c];
          s = fmaf(q[r].x, k0, s);
          s = fmaf(q[r].y, k1, s);
          s = fmaf(q[r].z, k2, s);
          s = fmaf(q[r].w, k3, s);
          sc[r][c] = s;
        }
      }
    }
    for (int d = hd4; d < hd; ++d) {
#pragma unroll
      for (int c = 0; c < kKeysPerLane; ++c) {
        const float kd = Ks[(lane + 32 * c) * kstride + d];
#pragma unroll
        for (int r = 0; r < kRows; ++r) sc[r][c] = fmaf(qw[r * qstride + d], kd, sc[r][c]);
      }
    }

    // Mask, scale, ALiBi; online softmax update per row.
    float p[kRows][kKeysPerLane];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t t = ta + r;
      const int64_t lo = sink ? 0 : (S > t - R ? S : t - R);  // lowest admitted key of this kind
      const int64_t qpos = t < S + R ? t : S + R;              // in-cache position of the query (sinks)
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < kKeysPerLane; ++c) {
        const int kk = lane + 32 * c;
        const int64_t key = key0 + kk;
        const bool ok = r < wrows && kk < n_valid && key >= lo && key <= t;
        float s = -INFINITY;
        if (ok) {
          s = __fmul_rn(sc[r][c], scale);
          if (use_alibi) s = __fsub_rn(s, __fmul_rn(slope, float(sink ? qpos - key : t - key)));
        }
        sc[r][c] = s;
        mx = fmaxf(mx, s);
      }
      mx = warp_max(mx);
      const float m_new = fmaxf(m[r], mx);
      const float ref = m_new == -INFINITY ? 0.0f : m_new;  // all masked so far: exp(-inf - 0) = 0, no NaN
      const float alpha = expf(m[r] - ref);                   // 0 while m[r] = -inf
      m[r] = m_new;
      float ps = 0.0f;
#pragma unroll
      for (int c = 0; c < kKeysPerLane; ++c) {
        p[r][c] = expf(sc[r][c] - ref);
        ps += p[r][c];
      }
      l[r] = l[r] * alpha + ps;
#pragma unroll
      for (int i = 0; i < ND; ++i) o[r][i] *= alpha;
    }

    // Probabilities to shared memory: one float4 (the warp's rows) per key.
    float4* pw = reinterpret_cast<float4*>(Ps) + warp * kBK;
#pragma unroll
    for (int c = 0; c < kKeysPerLane; ++c) pw[lane + 32 * c] = make_float4(p[0][c], p[1][c], p[2][c], p[3][c]);
    __syncwarp();
    // o[r][:] += sum_j p[r][j] V[j][:], lane owning columns lane + 32 i (the last chunk clamped to a real column:
    // those lanes compute a value that is never written).
    for (int j = 0; j < n_valid; ++j) {
      const float4 pj = pw[j];
      const float* vr = Vs + j * hd;
#pragma unroll
      for (int i = 0; i < ND; ++i) {
        const int d = lane + 32 * i < hd ? lane + 32 * i : hd - 1;
        const float v = vr[d];
        o[0][i] = fmaf(pj.x, v, o[0][i]);
        o[1][i] = fmaf(pj.y, v, o[1][i]);
        o[2][i] = fmaf(pj.z, v, o[2][i]);
        o[3][i] = fmaf(pj.w, v, o[3][i]);
      }
    }
    __syncwarp();  // pw is rewritten by the next tile (after a __syncthreads anyway; kept for clarity)
  }

  // Normalise, folding in the extra logit (denominator only), and write out (T, H, hd).
  const bool extra = extra_logit != nullptr;
  const float e = extra ? extra_logit[h] : 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float lsum = warp_sum(l[r]);
    if (r >= wrows) continue;  // warp-uniform
    float f = 1.0f, denom = lsum;
    if (extra) {
      const float mm = fmaxf(m[r], e);
      f = expf(m[r] - mm);  // 0 when no key was admitted
      denom = lsum * f + expf(e - mm);
    }
    const float inv = 1.0f / denom;
    float* orow = out + ((wrow0 + r) * H + h) * hd;
#pragma unroll
    for (int i = 0; i < ND; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) orow[d] = o[r][i] * f * inv;
    }
  }
}

template <int ND, class KT>
void launch_prefill(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0, const void* kc,
                    const void* vc, const AttnGeometry& g, float scale, const float* alibi,
                    const float* extra_logit, float* out, Stream s) {
  const size_t smem = size_t(pf_smem_floats(int(g.head_dim))) * sizeof(float);
  auto* kernel = attention_prefill_kernel<ND, KT>;
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned((T + kBQ - 1) / kBQ), unsigned(g.n_heads));
  launch(kernel, grid, kWarps * 32, smem, s, q_abs, q_sink, ld_q, T, t0, static_cast<const KT*>(kc),
                                         static_cast<const KT*>(vc), g, scale, alibi, extra_logit, out);
  CUDA_CHECK(cudaGetLastError());
}

template <class KT>
void dispatch_prefill(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0, const void* kc,
                      const void* vc, const AttnGeometry& g, float scale, const float* alibi,
                      const float* extra_logit, float* out, Stream s) {
  const int64_t hd = g.head_dim;
  if (hd <= 64)
    launch_prefill<2, KT>(q_abs, q_sink, ld_q, T, t0, kc, vc, g, scale, alibi, extra_logit, out, s);
  else if (hd <= 96)
    launch_prefill<3, KT>(q_abs, q_sink, ld_q, T, t0, kc, vc, g, scale, alibi, extra_logit, out, s);
  else if (hd <= 128)
    launch_prefill<4, KT>(q_abs, q_sink, ld_q, T, t0, kc, vc, g, scale, alibi, extra_logit, out, s);
  else
    launch_prefill<8, KT>(q_abs, q_sink, ld_q, T, t0, kc, vc, g, scale, alibi, extra_logit, out, s);
}

}  // namespace

void attention_prefill(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                       const void* kcache, const void* vcache, const cpu::AttnGeometry& g, float scale,
                       const float* alibi, const float* extra_logit, float* out, Stream s) {
  if (T <= 0 || g.n_heads <= 0) return;
  if (g.head_dim <= 0 || g.head_dim > kMaxHeadDim)
    throw Error("attention_prefill: head_dim " + std::to_string(g.head_dim) + " is not in [1, " +
                std::to_string(kMaxHeadDim) + "]");
  if (g.kv_f16)
    dispatch_prefill<__half>(q_abs, q_sink, ld_q, T, t0, kcache, vcache, g, scale, alibi, extra_logit, out, s);
  else
    dispatch_prefill<float>(q_abs, q_sink, ld_q, T, t0, kcache, vcache, g, scale, alibi, extra_logit, out, s);
}

}  // namespace sllm::cuda
