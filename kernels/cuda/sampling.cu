// Sampling on the device: the rule of sllm::sample_token (runtime/stream.h), reproduced exactly, so that only the
// chosen id crosses to the host. One block of kThreads threads does the whole row (a decode step samples one row;
// the row is read a few times from L2, which is cheap next to the forward pass that produced it).
//
// Greedy: a block argmax; equal maxima resolve to the lowest index, as the host's first-index-of-the-maximum.
//
// Top-k (k <= kMaxCand): the candidates are v_i = logits[i] / temperature (the same IEEE f32 division as the host,
// __fdiv_rn so a fast-math build could not change it), ordered by an order-preserving uint32 key of v (-0 is
// folded into +0: the host compares them equal). The k-th largest key is found by radix select: four passes of
// 8-bit histograms (warp-aggregated shared atomics) over the keys that match the prefix chosen so far. Then every
// key above that threshold is gathered, plus the lowest-id keys equal to it until there are k (an ordered block
// compaction, tile by tile in index order). The k candidates, packed as (key << 32 | ~id) so that one descending
// integer order is the host's (value desc, id asc), are sorted by a bitonic sort in shared memory.
// p_i = exp(double(v_i - v_0)) is computed in parallel; the sums, the top-p / min-p cut and the walk with u01 are
// sequential in thread 0, in the host's order, so every double operation is the host's. The one possible
// difference is the last bit of exp (CUDA's double exp is within 1 ulp, glibc's within 0.5): it can change a
// result only when a cumulative sum lands within ~1e-16 (relative) of top_p or of x, i.e. never in practice.
//
// The whole vocabulary (top_k == 0 or >= V, V > kMaxCand): the rule's total is then summed in id order by blocks of
// kSampleTotalBlock (ops/backend.h), which one thread per block reproduces exactly, and only the sorted prefix
// the cuts reach matters: the kernel sorts the top kMaxCand as above and answers when the top-p / min-p cut falls
// inside them (any peaked distribution); otherwise it answers -1 and the caller samples on the host.
//
// Not on the device (sample_supported() is false, the caller samples on the host): kMaxCand < top_k < V, where the
// host's order-dependent total would need a longer sorted prefix; a whole vocabulary above kThreads blocks
// (262,144 ids); rows longer than INT32_MAX; a temperature that is negative or NaN. Rows containing NaN are
// outside the contract on both sides.
#include <cstdint>  // int64_t, int32_t, uint32_t, uint64_t

#include "cuda/cuda_common.cuh"

namespace sllm::cuda {

namespace {

constexpr int kThreads = 1024;  // one block per row
constexpr int kMaxCand = 1024;  // candidates the shared-memory sort holds (one per thread)
constexpr int kWarps = kThreads / 32;

// Candidates after the top-k cut.
int64_t candidates(int64_t V, int64_t top_k) { return (top_k > 0 && top_k < V) ? top_k : V; }

// Monotone map of f32 to uint32: a < b (as floats, no NaN) <=> key(a) < key(b); -0 and +0 share a key.
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// (key, id) in one integer whose descending order is (value desc, id asc). Never 0 for an id < 2^31, so 0 pads.
__device__ __forceinline__ uint64_t pack(uint32_t key, int64_t id) {
  return (uint64_t(key) << 32) | uint64_t(~uint32_t(id));
}

// ---- greedy ----------------------------------------------------------------------------------------------------

// grid (1), block kThreads. logits: (V); out: (1) the first index of the maximum.
__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int64_t V,
                                                          int32_t* out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  __shared__ float s_val[kWarps];
  __shared__ int64_t s_idx[kWarps];
  // Each thread's indices increase, so a strict > keeps its first maximum; the merges prefer the lower index.
  float best = 0.0f;
  int64_t idx = -1;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = logits[i];
    if (idx < 0 || v > best) best = v, idx = i;
  }
  auto merge = [&](float ov, int64_t oi) {
    if (oi >= 0 && (idx < 0 || ov > best || (ov == best && oi < idx))) best = ov, idx = oi;
  };
  for (int o = 16; o > 0; o >>= 1) merge(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, idx, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) s_val[warp] = best, s_idx[warp] = idx;
  __syncthreads();
  if (warp == 0) {
    best = s_val[lane], idx = s_idx[lane];
    for (int o = 16; o > 0; o >>= 1)
      merge(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, idx, o));
    if (lane == 0) *out = int32_t(idx);
  }
}

// ---- top-k, top-p, min-p ---------------------------------------------------------------------------------------

// grid (1), block kThreads. logits: (V); k in [1, kMaxCand], k <= V; out: (1) the sampled id, or -1 when `whole`
// (the rule keeps all V > kMaxCand ids and `k` = kMaxCand is only the sorted prefix held here) and the top-p /
// min-p cut lies beyond that prefix: the caller then samples on the host.
__global__ void __launch_bounds__(kThreads) topk_sample_kernel(const float* __restrict__ logits, int64_t V,
                                                               float temperature, int k, bool whole, float top_p,
                                                               float min_p, double u01, int32_t* out) {
  kernel_prologue();  // PDL: wait for the previous kernel (cuda_common.cuh)
  __shared__ uint32_t hist[256];
  __shared__ uint64_t cand[kMaxCand];  // packed (key, id), sorted descending
  __shared__ double prob[kMaxCand];    // p_i = exp(v_i - v_0)
  __shared__ double block_total[kThreads];  // whole: the sum of each kSampleTotalBlock ids' p, in id order
  __shared__ int warp_count[kWarps];
  __shared__ int s_bin, s_rest, s_above;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  auto key_at = [&](int64_t i) { return order_key(__fdiv_rn(logits[i], temperature)); };

  // Radix select, most significant byte first: after the pass at `shift`, (prefix, mask) fix the top bytes of the
  // k-th largest key and `rest` is how many keys equal to the final threshold belong to the top k.
  uint32_t prefix = 0, mask = 0;
  int rest = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (tid < 256) hist[tid] = 0;
    __syncthreads();
    // Logits crowd into a few top-byte bins, so lanes of a warp that share a bin add once, together (a shared
    // atomic serialises on a contended address). Whole tiles keep every lane in the __match_any_sync.
    for (int64_t base = 0; base < V; base += kThreads) {
      const int64_t i = base + tid;
      const uint32_t key = i < V ? key_at(i) : 0u;
      const uint32_t bin = i < V && (key & mask) == prefix ? (key >> shift) & 0xffu : 256u;  // 256: not counted
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (bin < 256u && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], uint32_t(__popc(peers)));
    }
    __syncthreads();
    if (tid == 0) {  // the bin holding the rest-th largest of the matching keys
      uint32_t above = 0;
      int b = 255;
      for (; b > 0 && above + hist[b] < uint32_t(rest); --b) above += hist[b];
      s_bin = b;
      s_rest = rest - int(above);
    }
    __syncthreads();
    prefix |= uint32_t(s_bin) << shift;
    mask |= 0xffu << shift;
    rest = s_rest;
  }
  const uint32_t thresh = prefix;
  const int n_above = k - rest;  // keys > thresh: all of them are in the top k

  // Gather: keys above the threshold in any order (the sort follows); keys equal to it in index order, the first
  // `rest` of them. Tiles of kThreads consecutive indices; a ballot + per-warp counts rank the equal ones.
  if (tid == 0) s_above = 0;
  cand[tid] = 0;  // padding sorts last
  __syncthreads();
  int eq_before = 0;  // equal keys in earlier tiles
  for (int64_t base = 0; base < V; base += kThreads) {
    const int64_t i = base + tid;
    const uint32_t key = i < V ? key_at(i) : 0u;
    const bool eq = i < V && key == thresh;
    if (i < V && key > thresh) cand[atomicAdd(&s_above, 1)] = pack(key, i);
    const unsigned ball = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) warp_count[warp] = __popc(ball);
    __syncthreads();
    int rank = eq_before + __popc(ball & ((1u << lane) - 1u)), tile = 0;
    for (int w = 0; w < kWarps; ++w) {
      rank += w < warp ? warp_count[w] : 0;
      tile += warp_count[w];
    }
    if (eq && rank < rest) cand[n_above + rank] = pack(key, i);
    eq_before += tile;
    __syncthreads();  // warp_count is rewritten by the next tile
  }

  // Bitonic sort of kMaxCand packed candidates, descending.
  for (int size = 2; size <= kMaxCand; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      const int partner = tid ^ stride;
      if (partner > tid) {
        const bool desc = (tid & size) == 0;
        const uint64_t a = cand[tid], b = cand[partner];
        if (desc ? a < b : a > b) cand[tid] = b, cand[partner] = a;
      }
      __syncthreads();
    }
  }

  const float v0 = key_value(uint32_t(cand[0] >> 32));
  if (tid < k) prob[tid] = exp(double(key_value(uint32_t(cand[tid] >> 32)) - v0));
  const int64_t n_blocks = whole ? (V + kSampleTotalBlock - 1) / kSampleTotalBlock : 0;  // <= kThreads
  if (tid < n_blocks) {  // the whole vocabulary's total as the host sums it: each block in id order
    double sum = 0;
    const int64_t end = min(V, (tid + 1) * kSampleTotalBlock);
    for (int64_t i = tid * kSampleTotalBlock; i < end; ++i)
      sum += exp(double(__fdiv_rn(logits[i], temperature) - v0));
    block_total[tid] = sum;
  }
  __syncthreads();
  if (tid != 0) return;
  // The host's loops, operation for operation (runtime/stream.cpp, sample_token).
  double total = 0;
  if (whole) {
    for (int64_t b = 0; b < n_blocks; ++b) total += block_total[b];
  } else {
    for (int i = 0; i < k; ++i) total += prob[i];
  }
  int keep = k;
  bool cut = false;
  double acc = 0;
  for (int i = 0; i < k; ++i) {
    if (min_p > 0 && prob[i] < double(min_p) * prob[0]) { keep = i, cut = true; break; }
    acc += prob[i] / total;
    if (acc >= double(top_p)) { keep = i + 1, cut = true; break; }
  }
  if (whole && !cut) {  // the cut lies past the sorted prefix held here
    *out = -1;
    return;
  }
  keep = keep > 1 ? keep : 1;
  double kept = 0;
  for (int i = 0; i < keep; ++i) kept += prob[i];
  double x = u01 * kept;
  int pick = keep - 1;
  for (int i = 0; i < keep; ++i) {
    x -= prob[i];
    if (x <= 0) { pick = i; break; }
  }
  *out = int32_t(~uint32_t(cand[pick]));
}

}  // namespace

// The rule keeps the whole vocabulary, larger than the sorted prefix held on the device, and its total (summed by
// blocks of kSampleTotalBlock ids) fits one block sum per thread.
bool whole_vocabulary(int64_t V, const SampleParams& p) {
  return candidates(V, p.top_k) == V && V > kMaxCand && V <= int64_t(kThreads) * kSampleTotalBlock;
}

bool sample_supported(int64_t V, const SampleParams& p) {
  if (V < 1 || V > INT32_MAX) return false;
  if (p.temperature == 0.0f) return true;
  return p.temperature > 0.0f && (candidates(V, p.top_k) <= kMaxCand || whole_vocabulary(V, p));
}

void sample(const float* logits, int64_t V, const SampleParams& p, double u01, int32_t* out, Stream s) {
  if (p.temperature == 0.0f) {
    launch(argmax_kernel, 1, kThreads, 0, s, logits, V, out);
  } else {
    const bool whole = whole_vocabulary(V, p);
    const int k = whole ? kMaxCand : int(candidates(V, p.top_k));
    launch(topk_sample_kernel, 1, kThreads, 0, s, logits, V, p.temperature, k, whole, p.top_p, p.min_p, u01, out);
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace sllm::cuda
