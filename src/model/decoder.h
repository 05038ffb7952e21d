// streamllm: the decoder forward pass — written once, for every family, against the Backend interface.
#pragma once
#include <cstdint>  // int64_t, int32_t
#include <vector>   // std::vector

#include "model/model.h"       // Model
#include "ops/backend.h"       // Backend
#include "runtime/kv_cache.h"  // KVCache

namespace sllm {

enum class Logits : uint8_t { None, Last, All };

class Decoder {
 public:
  // max_chunk: the most tokens one forward() call takes (workspace is sized for it once).
  Decoder(const Model& m, Backend& be, int64_t max_chunk);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Appends tokens ids[0..T) to the stream held by `cache` (T <= max_chunk and <= cache.max_chunk()), running
  // every layer with the streaming attention rule, and returns a pointer to the logits:
  //   Logits::All  -> (T, vocab), Logits::Last -> (1, vocab) for the last token, None -> nullptr.
  // The pointer is host memory (copied back from a device backend) and stays valid until the next call.
  const float* forward(const int32_t* ids, int64_t T, KVCache& cache, Logits mode);

  const Model& model() const { return m_; }
  int64_t max_chunk() const { return C_; }
  size_t workspace_bytes() const { return ws_bytes_; }

 private:
  float* buf(size_t n);
  void place_weights();
  void attention_block(const LayerWeights& L, int64_t l, const float* xn, int64_t T, KVCache& cache);
  void mlp_block(const LayerWeights& L, const float* xn, int64_t T, float* out);

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
  float *proj_, *mlp_;       // (C, D)
  float *h1_, *h2_;          // (C, F)
  float *logits_;            // (C, V)
  std::vector<float> cos_, sin_, cos_s_, sin_s_;  // (C, rot_dims/2) rope tables on the host: absolute / sink
  std::vector<int64_t> pos_;
  // What the backend reads: the host data itself on the CPU, device copies otherwise.
  const ModelWeights* w_;       // the model's weights, or dw_
  ModelWeights dw_;             // device copies of every weight (non-host backends)
  float *cos_d_, *sin_d_, *cos_s_d_, *sin_s_d_;  // (C, rot_dims/2) each
  int32_t* ids_d_ = nullptr;    // (C) token ids
  const float* alibi_d_ = nullptr;  // (n_heads) slopes
  std::vector<float> zero_logit_;   // (n_heads) zeros: the ZeroSink variant's extra logit (host copy)
  const float* zero_logit_d_ = nullptr;
  std::vector<float> logits_host_;  // (C, V) logits copied back from a device
};

// Negative log-likelihood of `target` under a row of logits (log-sum-exp in double).
double token_nll(const float* logits, int64_t vocab, int32_t target);

}  // namespace sllm
