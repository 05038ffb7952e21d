// streamllm: the decoder's weights and the one visitor that names them.
//
// for_each_weight() is the single source of truth for tensor names (HF names per family) and shapes: loading,
// `info`, converting and (later) checkpoints all go through it. Matrices stay in their stored dtype (F32/F16/BF16)
// and, for safetensors, stay memory-mapped; small vectors (norms, biases) are converted to f32 once at load.
#pragma once
#include <functional>  // std::function
#include <memory>      // std::shared_ptr
#include <string>      // std::string
#include <vector>      // std::vector

#include "core/tensor.h"   // Tensor, Buffer
#include "model/config.h"  // ModelConfig

namespace sllm {

struct LayerWeights {
  Tensor attn_norm_w, attn_norm_b;  // (D)       f32; b empty for RMSNorm / no-bias LayerNorm
  Tensor mlp_norm_w, mlp_norm_b;    // (D)       f32; empty when the block shares the attention norm
  Tensor wqkv, bqkv;                // (qkv_dim, D), (qkv_dim)  fused layouts (Grouped / Blocked)
  Tensor wq, wk, wv;                // (q_dim, D), (kv_dim, D), (kv_dim, D)  Separate layout
  Tensor bq, bk, bv;                // optional biases (f32)
  Tensor wo, bo;                    // (D, q_dim), (D)
  Tensor w_gate, w_up, w_down;      // (F, D), (F, D), (D, F); w_gate only for SwiGLU
  Tensor b_up, b_down;              // (F), (D) optional
  Tensor sinks;                     // (n_heads) f32: the SinkLogit variant's per-head extra logit
};

struct ModelWeights {
  Tensor embed;                     // (V, D)
  std::vector<LayerWeights> layers;
  Tensor final_norm_w, final_norm_b;  // (D)
  Tensor lm_head;                   // (V, D); equals embed when tied
  std::vector<Buffer> owned;        // storage for converted tensors (f32 vectors, re-typed matrices)
  std::vector<std::shared_ptr<void>> keep_alive;  // mapped files the views point into
};

// One weight as the visitor sees it.
struct WeightSlot {
  std::string name;     // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  Shape shape;          // expected shape
  Tensor* dst;          // where the loaded view goes
  bool required;        // biases are optional: used when the file has them
  bool is_vector;       // converted to f32 at load
};

// Converts a tensor to `to` into a buffer owned by `w` (returns it unchanged when it already has that dtype).
Tensor retype(const Tensor& t, DType to, ModelWeights& w);

// Calls fn for every weight of the model in a fixed order (embedding, layers, final norm, head).
void for_each_weight(const ModelConfig& c, ModelWeights& w, const std::function<void(const WeightSlot&)>& fn);

}  // namespace sllm
