// streamllm: the backend interface. One interface, two backends (CPU here, CUDA in kernels/cuda).
//
// The model code (src/model) is written once against the checked front-end in ops.h, which validates shapes and
// dtypes and then calls these virtuals with raw pointers into the backend's memory. A backend only computes.
#pragma once
#include <cstddef>  // size_t
#include <cstdint>  // int64_t
#include <memory>   // std::unique_ptr

#include "core/dtype.h"  // DType
#include "core/attn_geometry.h"  // AttnGeometry

namespace sllm::cpu {
using AttnGeometry = ::sllm::AttnGeometry;
}

namespace sllm {

enum class NormOp : uint8_t { RMS, Layer };
enum class ActOp : uint8_t { GeluErf, GeluTanh, Relu };

// The sampling rule's parameters (see sllm::sample_token in runtime/stream.h). The rule's total over a whole
// vocabulary larger than kSampleSortedTotalMax is summed in id order, by blocks of kSampleTotalBlock ids (each
// block in order, then the block sums in order): the host and the device both do so.
constexpr int64_t kSampleSortedTotalMax = 1024;
constexpr int64_t kSampleTotalBlock = 256;
struct SampleParams {
  float temperature = 0.8f;  // 0 = greedy
  int64_t top_k = 40;        // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.0f;        // 0 = off
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Memory: float buffers live where the backend computes.
  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* p) = 0;  // never throws (called from destructors)
  // True when alloc() returns host memory (the CPU): the decoder then passes host data directly.
  virtual bool host_memory() const = 0;
  // Blocking copies between host memory and this backend's memory (memcpy on the CPU).
  virtual void upload(void* dst, const void* src_host, size_t bytes) = 0;
  virtual void download(void* dst_host, const void* src, size_t bytes) = 0;
  // Copies bytes within this backend's memory.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;

  // Y(T,N) = X(T,K) W(N,K)^T + bias(N).  X row stride ldx, Y row stride ldy.
  virtual void linear(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
                      const float* bias, float* Y, int64_t ldy) = 0;
  // Y(T,N) += X W^T + bias: a projection added into the residual stream (a device fuses the add into its GEMV).
  // tmp: (T, N) scratch, rows of N, that the default uses: linear into tmp, then add (the same sums in the same
  // order as the fused form, y + (x.w + b), so both give identical bits).
  virtual void linear_add(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
                          const float* bias, float* Y, int64_t ldy, float* tmp) {
    linear(X, T, K, ldx, W, wt, N, bias, tmp, N);
    if (ldy == N) {
      add(Y, tmp, T * N);
    } else {
      for (int64_t t = 0; t < T; ++t) add(Y + t * ldy, tmp + t * N, N);
    }
  }
  // out(T, F) = silu(X Wg^T) * (X Wu^T), Wgu = [Wg | Wu] stored as one (2F, K) matrix: SwiGLU's first half
  // (a device does it in one kernel). tmp: (T, 2F) scratch the default uses: linear into tmp, then swiglu.
  virtual void linear_swiglu(const float* X, int64_t T, int64_t K, int64_t ldx, const void* Wgu, DType wt,
                             int64_t F, float* out, float* tmp) {
    linear(X, T, K, ldx, Wgu, wt, 2 * F, nullptr, tmp, 2 * F);
    swiglu(tmp, 2 * F, tmp + F, 2 * F, T, F, out);
  }
  virtual void norm(NormOp op, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D,
                    float* y) = 0;
  // Y(T, N) = norm(x) W^T + bias: a norm (as norm(): weights nw, nb over K) and the one linear that reads it, as
  // one op (a device computes each row's statistics in its GEMV and normalises X as it loads it). xn: (T, K)
  // scratch, rows of K, that the default writes norm(x) to before the linear (a fused form may leave it alone).
  virtual void norm_linear(NormOp op, const float* x, const float* nw, const float* nb, float eps, int64_t T,
                           int64_t K, float* xn, const void* W, DType wt, int64_t N, const float* bias, float* Y,
                           int64_t ldy) {
    norm(op, x, nw, nb, eps, T, K, xn);
    linear(xn, T, K, K, W, wt, N, bias, Y, ldy);
  }
  // The same before linear_swiglu: out(T, F) = SwiGLU of norm(x) [Wg | Wu]^T. tmp as for linear_swiglu.
  virtual void norm_linear_swiglu(NormOp op, const float* x, const float* nw, const float* nb, float eps, int64_t T,
                                  int64_t K, float* xn, const void* Wgu, DType wt, int64_t F, float* out,
                                  float* tmp) {
    norm(op, x, nw, nb, eps, T, K, xn);
    linear_swiglu(xn, T, K, K, Wgu, wt, F, out, tmp);
  }
  virtual void rope(float* x, int64_t T, int64_t H, int64_t head_dim, int64_t ld, int64_t rot_dims,
                    const float* cos, const float* sin, bool interleaved) = 0;
  virtual void activation(ActOp op, float* x, int64_t n) = 0;
  virtual void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t T, int64_t F,
                      float* out) = 0;
  virtual void add(float* y, const float* x, int64_t n) = 0;
  virtual void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out) = 0;
  virtual void attention(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                         const void* kcache, const void* vcache, const cpu::AttnGeometry& g, float scale,
                         const float* alibi, const float* extra_logit, float* out) = 0;
  virtual void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0,
                        void* kcache, void* vcache, const cpu::AttnGeometry& g) = 0;
  // The positions and cache write of one attention block, as one op (a device runs it as one kernel instead of
  // five): when qs is non-null it receives a copy of q (row stride ldq) rotated with the in-cache tables
  // cos_s/sin_s; q and k are rotated in place with the absolute tables cos/sin (first rot_dims of each head);
  // then k and v are written to the cache slots of stream tokens t0..t0+T-1 (kv_store). q: (T, n_heads, hd),
  // k, v: (T, n_kv_heads, hd). The default runs exactly those ops in that order (k's rotated values in its buffer
  // included; a fused kernel may leave k unrotated there, since only the cache copy is read afterwards).
  virtual void rope_store(float* q, int64_t ldq, float* qs, float* k, int64_t ldk, const float* v, int64_t ldv,
                          int64_t T, int64_t t0, int64_t rot_dims, bool interleaved, const float* cos,
                          const float* sin, const float* cos_s, const float* sin_s, void* kcache, void* vcache,
                          const cpu::AttnGeometry& g) {
    const int64_t H = g.n_heads, Hkv = g.n_kv_heads, hd = g.head_dim;
    if (qs) {
      copy_rows(q, ldq, qs, ldq, T, H * hd);
      rope(qs, T, H, hd, ldq, rot_dims, cos_s, sin_s, interleaved);
    }
    rope(q, T, H, hd, ldq, rot_dims, cos, sin, interleaved);
    rope(k, T, Hkv, hd, ldk, rot_dims, cos, sin, interleaved);
    kv_store(k, ldk, v, ldv, T, t0, kcache, vcache, g);
  }
  // Copies rows: dst[i*ld_dst .. +n] = src[i*ld_src .. +n] for i < rows.
  virtual void copy_rows(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t rows,
                         int64_t n) = 0;
  virtual void clamp(float* x, int64_t n, float lo, float hi) = 0;

  // CUDA graphs of the decode step (a backend that has them overrides these; the defaults mean "no graphs").
  // Between graph_begin() and graph_end() the ops are recorded, not run, into the backend's one graph; kv_store,
  // rope_store and attention recorded there read their t0 at replay time from the value given to graph_launch, so
  // one capture of a steady-state decode step replays for every later position of the stream. Pointers and shapes
  // are baked in: the caller re-captures whenever they change. graph_end(true) returns the graph's id (never 0);
  // graph_end(false) abandons a capture (after an error half-way through it) and returns 0. graph_launch(id, t0)
  // replays graph `id` and returns true, or returns false without running anything when the backend's graph is no
  // longer that one (another user of the backend captured since): the caller then runs the ops itself.
  virtual bool has_graphs() const { return false; }
  virtual void graph_begin() {}
  virtual uint64_t graph_end(bool keep) {
    (void)keep;
    return 0;
  }
  virtual bool graph_launch(uint64_t id, int64_t t0) {
    (void)id;
    (void)t0;
    return false;
  }
  // Nodes (kernels and copies) of the current graph; 0 when there is none.
  virtual int64_t graph_nodes() const { return 0; }

  // Negative log-likelihoods for perplexity: out_host[i] = token_nll(row i of logits, V, targets_host[i]) for T
  // rows of V logits in this backend's memory (log-sum-exp in double), so only T numbers cross to the host.
  // Returns false when the backend has no such op (the caller copies the rows back and scores them itself).
  virtual bool nll(const float* logits, int64_t T, int64_t V, const int32_t* targets_host, double* out_host) {
    (void)logits; (void)T; (void)V; (void)targets_host; (void)out_host;
    return false;
  }

  // Samples one token id from logits (V floats in this backend's memory) with the rule of sllm::sample_token
  // (runtime/stream.h), given u01 uniform in [0, 1) drawn by the caller. Returns -1 when this backend cannot do
  // it on the device for these params (the caller then copies the row back and samples on the host).
  virtual int32_t sample(const float* logits, int64_t V, const SampleParams& p, double u01) {
    (void)logits; (void)V; (void)p; (void)u01;
    return -1;
  }
};

// The CPU backend (OpenMP + SIMD kernels in kernels/cpu). A process-wide instance.
Backend& cpu_backend();

}  // namespace sllm
