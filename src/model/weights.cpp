// The weight visitor: HF tensor names and shapes of each family, in one place.
#include "model/weights.h"

#include <algorithm>  // std::min
#include <vector>     // std::vector


namespace sllm {

namespace {

struct Names {
  std::string embed, final_norm, head, layer_prefix;
  std::string attn_norm, mlp_norm, qkv, q, k, v, o, gate, up, down;
  std::string attn;  // the attention module (holds `sinks` for the SinkLogit variant)
};

Names names_for(const ModelConfig& c) {
  switch (c.family) {
    case Family::Llama:
      return {"model.embed_tokens", "model.norm", "lm_head", "model.layers.",
              "input_layernorm", "post_attention_layernorm", "", "self_attn.q_proj", "self_attn.k_proj",
              "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "self_attn"};
    case Family::GPTNeoX:
      return {"gpt_neox.embed_in", "gpt_neox.final_layer_norm", "embed_out", "gpt_neox.layers.",
              "input_layernorm", "post_attention_layernorm", "attention.query_key_value", "", "", "",
              "attention.dense", "", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", "attention"};
    case Family::Falcon: {
      Names n{"transformer.word_embeddings", "transformer.ln_f", "lm_head", "transformer.h.",
              "input_layernorm", "post_attention_layernorm", "self_attention.query_key_value", "", "", "",
              "self_attention.dense", "", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", "self_attention"};
      if (c.parallel_residual && !c.shared_norm) {  // new architecture with two norms
        n.attn_norm = "ln_attn";
        n.mlp_norm = "ln_mlp";
      }
      return n;
    }
    case Family::MPT:
      return {"transformer.wte", "transformer.norm_f", "", "transformer.blocks.",
              "norm_1", "norm_2", "attn.Wqkv", "", "", "", "attn.out_proj", "", "ffn.up_proj", "ffn.down_proj", "attn"};
  }
  return {};
}

}  // namespace

void for_each_weight(const ModelConfig& c, ModelWeights& w, const std::function<void(const WeightSlot&)>& fn) {
  const Names n = names_for(c);
  const int64_t D = c.hidden, V = c.vocab_size, F = c.ffn;
  const bool layer_norm = c.norm == NormKind::LayerNorm;
  auto mat = [&](const std::string& name, Shape s, Tensor* dst) { fn({name + ".weight", s, dst, true, false}); };
  auto vec = [&](const std::string& name, int64_t len, Tensor* dst, bool required) {
    fn({name, Shape{len}, dst, required, true});
  };
  auto norm = [&](const std::string& base, Tensor* wt, Tensor* b) {
    vec(base + ".weight", D, wt, true);
    if (layer_norm) vec(base + ".bias", D, b, false);
  };

  mat(n.embed, {V, D}, &w.embed);
  w.layers.resize(size_t(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& L = w.layers[size_t(i)];
    const std::string p = n.layer_prefix + std::to_string(i) + ".";
    norm(p + n.attn_norm, &L.attn_norm_w, &L.attn_norm_b);
    if (!c.shared_norm) norm(p + n.mlp_norm, &L.mlp_norm_w, &L.mlp_norm_b);
    if (c.qkv == QkvLayout::Separate) {
      mat(p + n.q, {c.q_dim(), D}, &L.wq);
      mat(p + n.k, {c.kv_dim(), D}, &L.wk);
      mat(p + n.v, {c.kv_dim(), D}, &L.wv);
      vec(p + n.q + ".bias", c.q_dim(), &L.bq, false);
      vec(p + n.k + ".bias", c.kv_dim(), &L.bk, false);
      vec(p + n.v + ".bias", c.kv_dim(), &L.bv, false);
    } else {
      mat(p + n.qkv, {c.qkv_dim(), D}, &L.wqkv);
      vec(p + n.qkv + ".bias", c.qkv_dim(), &L.bqkv, false);
    }
    mat(p + n.o, {D, c.q_dim()}, &L.wo);
    vec(p + n.o + ".bias", D, &L.bo, false);
    if (c.sink == SinkKind::SinkLogit) vec(p + n.attn + ".sinks", c.n_heads, &L.sinks, true);
    if (c.mlp == MlpKind::SwiGLU) mat(p + n.gate, {F, D}, &L.w_gate);
    mat(p + n.up, {F, D}, &L.w_up);
    vec(p + n.up + ".bias", F, &L.b_up, false);
    mat(p + n.down, {D, F}, &L.w_down);
    vec(p + n.down + ".bias", D, &L.b_down, false);
  }
  norm(n.final_norm, &w.final_norm_w, &w.final_norm_b);
  // A tied head has no tensor of its own (some files still carry a copy; the loader uses it when present).
  fn({n.head.empty() ? std::string() : n.head + ".weight", Shape{V, D}, &w.lm_head, !c.tied_head, false});
}

Tensor retype(const Tensor& t, DType to, ModelWeights& w) {
  if (t.dtype == to) return t;
  check_whole_blocks(t.dtype, t.shape);
  check_whole_blocks(to, t.shape);
  const size_t n = size_t(t.numel());
  Buffer b(dtype_bytes(to, int64_t(n)));
  constexpr size_t kBlock = 1 << 16;  // convert through a small f32 block, not a whole f32 copy (a multiple of 32)
  std::vector<float> tmp(std::min(kBlock, n));
  for (size_t i = 0; i < n; i += kBlock) {
    const size_t m = std::min(kBlock, n - i);
    to_f32(static_cast<const char*>(t.data) + dtype_bytes(t.dtype, int64_t(i)), t.dtype, m, tmp.data());
    from_f32(tmp.data(), m, to, static_cast<char*>(b.data()) + dtype_bytes(to, int64_t(i)));
  }
  Tensor r{b.data(), to, t.shape};
  w.owned.push_back(std::move(b));
  return r;
}

}  // namespace sllm
