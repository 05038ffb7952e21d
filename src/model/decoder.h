// streamllm: the decoder forward pass — written once, for every family, against the Backend interface.
#pragma once
#include <cstdint>   // int64_t, int32_t
#include <optional>  // std::optional
#include <vector>    // std::vector

#include "model/model.h"       // Model
#include "ops/backend.h"       // Backend
#include "runtime/kv_cache.h"  // KVCache

namespace sllm {

// What forward() returns: nothing, the last token's logits row, every token's rows (host memory), or the last
// row left in the backend's memory (for sampling on the device: only the chosen token crosses to the host), or
// every row left there (for perplexity scored on the device: Backend::nll).
enum class Logits : uint8_t { None, Last, All, LastOnDevice, AllOnDevice };

class Decoder {
 public:
  // max_chunk: the most tokens one forward() call takes (workspace is sized for it once).
  // fuse: join each layer's projections into one GEMM each (q/k/v into [q | k | v], a GPT-NeoX / Falcon fused
  // QKV reordered from per-group to that order, gate/up into [gate | up]); default: on device backends, where
  // the weights are copied anyway and each GEMM of a decode step is a kernel with a fixed cost. On the CPU it
  // costs a copy of those matrices (the tests use it there to check the fused path against the plain one).
  Decoder(const Model& m, Backend& be, int64_t max_chunk, std::optional<bool> fuse = std::nullopt);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Appends tokens ids[0..T) to the stream held by `cache` (T <= max_chunk and <= cache.max_chunk()), running
  // every layer with the streaming attention rule, and returns a pointer to the logits:
  //   Logits::All  -> (T, vocab), Logits::Last -> (1, vocab) for the last token, None -> nullptr.
  // The pointer is host memory (copied back from a device backend) and stays valid until the next call;
  //   Logits::LastOnDevice -> (1, vocab), AllOnDevice -> (T, vocab), in the backend's memory (host on the CPU).
  // On a backend with graphs (CUDA), a decode step (T = 1) whose op sequence has become fixed — the cache
  // full enough that the two-rotation rule applies from now on — runs once eagerly, is then captured once,
  // and every later step replays the graph: one launch per token instead of one per op.
  const float* forward(const int32_t* ids, int64_t T, KVCache& cache, Logits mode);

  // Graphs on (default) or off (to measure what they save; results are identical either way).
  void set_graphs(bool on) { graphs_ = on; }
  // Decode steps replayed from a graph so far.
  int64_t graph_replays() const { return graph_replays_; }
  // Kernels and copies in the captured decode step (0 before a capture, or without graphs).
  int64_t graph_nodes() const { return graph_id_ != 0 ? be_.graph_nodes() : 0; }

  const Model& model() const { return m_; }
  int64_t max_chunk() const { return C_; }
  size_t workspace_bytes() const { return ws_bytes_; }

 private:
  float* buf(size_t n);
  void place_weights();
  // A norm not applied yet: the block's first linear applies it (Backend::norm_linear). Device path only.
  struct PendingNorm {
    NormOp op;
    const float *x, *w, *b;
  };
  // The two blocks of a layer; each adds its output into the residual stream x_. Their input is xn, or, when
  // `pre` is given, norm(pre->x), folded into the first projection where the weights are fused.
  void attention_block(const LayerWeights& L, int64_t l, const float* xn, int64_t T, KVCache& cache,
                       const PendingNorm* pre = nullptr);
  void mlp_block(const LayerWeights& L, int64_t l, const float* xn, int64_t T, const PendingNorm* pre = nullptr);
  // Joins each layer's q/k/v projections into one [q | k | v] matrix (reordering a per-group fused QKV to that
  // order) and gate/up into [gate | up] (see the constructor's `fuse`).
  void fuse_weights();
  // Every op of one forward call after the uploads: embedding, the layers, and (when n_logits > 0) the final norm
  // and LM head over the last n_logits tokens into logits_.
  void run_ops(const int32_t* ids_b, int64_t T, KVCache& cache, int64_t n_logits);

  const Model& m_;
  Backend& be_;
  int64_t C_;
  size_t ws_bytes_ = 0;
  std::vector<void*> allocs_;
  // Workspace (C = max_chunk, D = hidden, F = ffn, V = vocab):
  float *x_, *xn_, *xn2_;    // (C, D) residual stream, normed inputs
  float *qkv_;               // (C, qkv_dim) fused projection output
  float *q_, *qs_, *k_, *v_; // (C, q_dim), (C, q_dim), (C, kv_dim), (C, kv_dim)
  float *att_;               // (C, q_dim)
  float *proj_, *mlp_;       // (C, D) the blocks' outputs, where a backend without fused adds puts them
  float *h1_, *h2_;          // (C, F)
  float *logits_;            // (C, V)
  std::vector<float> cos_, sin_, cos_s_, sin_s_;  // (C, rot_dims/2) rope tables on the host: absolute / sink
  std::vector<int64_t> pos_;
  // What the backend reads: the host data itself on the CPU, device copies otherwise.
  const ModelWeights* w_;       // the model's weights, or dw_
  ModelWeights dw_;             // device copies of every weight (non-host backends)
  struct FusedLayer {
    Tensor qkv;      // (q_dim + 2 kv_dim, D): [wq | wk | wv] rows, or empty
    Tensor bqkv;     // (q_dim + 2 kv_dim): the bias in [q | k | v] order, or empty
    Tensor gate_up;  // (2 F, D): [w_gate | w_up] rows, or empty
  };
  std::vector<FusedLayer> fused_;  // per layer when fusing, else empty
  float *cos_d_, *sin_d_, *cos_s_d_, *sin_s_d_;  // (T, rot_dims/2) each: host tables, or in stage_d_
  int32_t* ids_d_ = nullptr;    // (T) token ids (device backends: in stage_d_)
  std::vector<float> stage_;    // device backends: a step's [cos | sin | cos_s | sin_s | ids] on the host
  float* stage_d_ = nullptr;    // and on the device (C rows of each at most)
  const float* alibi_d_ = nullptr;  // (n_heads) slopes
  std::vector<float> zero_logit_;   // (n_heads) zeros: the ZeroSink variant's extra logit (host copy)
  const float* zero_logit_d_ = nullptr;
  std::vector<float> logits_host_;  // (C, V) logits copied back from a device
  // The decode-step graph: which (cache, logits or not) it was captured for, and the step seen before capturing.
  struct GraphKey {
    uint64_t cache = 0;  // KVCache::id(), 0 = none
    bool logits = false;
    bool operator==(const GraphKey&) const = default;
  };
  bool graphs_ = true;
  uint64_t graph_id_ = 0;  // the backend's id of our captured step (0: none)
  GraphKey graph_key_, warm_key_;
  int64_t graph_replays_ = 0;
};

// Negative log-likelihood of `target` under a row of logits (log-sum-exp in double).
double token_nll(const float* logits, int64_t vocab, int32_t target);

}  // namespace sllm
