// streamllm: the decoder's configuration — one struct for every supported family.
//
// Plain data with defaults (gemma.cpp style). from_hf_config() maps a transformers config.json of the Llama,
// GPT-NeoX, Falcon and MPT families onto it; anything we cannot run exactly is refused with an error naming the
// field, never approximated.
#pragma once
#include <cstdint>  // int64_t
#include <string>   // std::string

#include "core/dtype.h"  // DType

namespace sllm {

enum class Family : uint8_t { Llama, GPTNeoX, Falcon, MPT };
enum class NormKind : uint8_t { RMSNorm, LayerNorm };
enum class MlpKind : uint8_t { SwiGLU, GeluErf, GeluTanh, Relu };
enum class PosKind : uint8_t { RoPE, ALiBi };
// How a fused QKV projection lays out its output row (and weight rows):
//   Separate: three projections q/k/v (Llama).
//   Grouped:  per KV group g: [q_{g,0} .. q_{g,n-1}, k_g, v_g], each head_dim wide. GPT-NeoX (one q per group),
//             Falcon 7B multi-query (one group), Falcon new architecture (n_kv groups).
//   Blocked:  [all q | all k | all v] (MPT).
enum class QkvLayout : uint8_t { Separate, Grouped, Blocked };
// Attention-sink variant the model was trained with (the paper's Sec. 3.3, and one beyond it):
//   Vanilla:       plain softmax.
//   ZeroSink:      softmax-off-by-one: an extra logit fixed at 0 in every denominator, with no value.
//   LearnableSink: plain softmax; the last `sink_tokens` vocabulary ids are learnable sink tokens prepended to
//                  every training sample and kept as the cache's sinks at inference.
//   SinkLogit:     a learned scalar per head (weights `<attn>.sinks`, (n_heads)) as an extra denominator logit
//                  (gpt-oss).
enum class SinkKind : uint8_t { Vanilla, ZeroSink, LearnableSink, SinkLogit };

const char* family_name(Family f);
const char* sink_name(SinkKind k);  // "vanilla", "zero_sink", "learnable_sink", "sink_logit"

struct ModelConfig {
  Family family = Family::Llama;
  std::string model_type;        // as in config.json
  int64_t vocab_size = 0;
  int64_t hidden = 0;            // d_model
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;               // MLP inner width
  int64_t max_positions = 0;     // trained context length (informational: streaming never needs it)

  NormKind norm = NormKind::RMSNorm;
  float norm_eps = 1e-5f;
  MlpKind mlp = MlpKind::SwiGLU;
  bool parallel_residual = false;  // x + attn(n1(x)) + mlp(n2(x))
  bool shared_norm = false;        // parallel block whose MLP reuses the attention norm (Falcon 7B)

  QkvLayout qkv = QkvLayout::Separate;
  float clip_qkv = 0.0f;           // MPT: clamp fused qkv to [-clip, clip] when > 0

  PosKind pos = PosKind::RoPE;
  double rope_theta = 10000.0;
  int64_t rot_dims = 0;            // rotated dims per head (partial rotary: GPT-NeoX rotary_pct)
  bool rope_interleaved = false;   // GPT-J pair layout (GGUF); HF checkpoints use rotate-half
  double alibi_bias_max = 8.0;     // MPT
  float attn_scale = 0.0f;         // softmax scale; 0 means 1/sqrt(head_dim)

  bool tied_head = false;          // lm_head shares the embedding
  int64_t bos_id = -1, eos_id = -1;

  SinkKind sink = SinkKind::Vanilla;
  int64_t sink_tokens = 0;         // LearnableSink: the last sink_tokens ids of the vocabulary are sink tokens

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  float scale() const;
  int64_t first_sink_id() const { return vocab_size - sink_tokens; }
  // Sinks a streaming cache keeps by default: the learnable sink tokens themselves, else the paper's 4.
  int64_t default_sinks() const { return sink == SinkKind::LearnableSink ? sink_tokens : 4; }
  // The attention has an extra denominator logit (ZeroSink, SinkLogit).
  bool has_extra_logit() const { return sink == SinkKind::ZeroSink || sink == SinkKind::SinkLogit; }
  // Number of parameters (counting a tied head once).
  int64_t n_params() const;
  // Throws sllm::Error if the numbers are inconsistent (e.g. heads do not divide hidden).
  void validate(const std::string& where) const;
};

// Parses a transformers config.json (text). `where` names the file in errors.
ModelConfig config_from_hf_json(const std::string& json_text, const std::string& where);

// ALiBi slopes as MPT computes them (and BLOOM for powers of two): n_heads values.
void alibi_slopes(int64_t n_heads, double bias_max, float* out);

}  // namespace sllm
