// Mapping of transformers' config.json onto ModelConfig. Field names and defaults follow each family's
// configuration_*.py (older and newer spellings both accepted, e.g. rotary_pct / partial_rotary_factor /
// rope_parameters).
#include "model/config.h"

#include <cmath>                // std::sqrt, std::pow, std::ceil, std::log2
#include <nlohmann/json.hpp>    // nlohmann::json
#include <vector>               // std::vector

#include "core/error.h"  // Error, SLLM_CHECK

namespace sllm {

using json = nlohmann::json;

const char* family_name(Family f) {
  switch (f) {
    case Family::Llama: return "llama";
    case Family::GPTNeoX: return "gpt_neox";
    case Family::Falcon: return "falcon";
    case Family::MPT: return "mpt";
  }
  return "?";
}

const char* sink_name(SinkKind k) {
  switch (k) {
    case SinkKind::Vanilla: return "vanilla";
    case SinkKind::ZeroSink: return "zero_sink";
    case SinkKind::LearnableSink: return "learnable_sink";
    case SinkKind::SinkLogit: return "sink_logit";
  }
  return "?";
}

float ModelConfig::scale() const { return attn_scale > 0 ? attn_scale : float(1.0 / std::sqrt(double(head_dim))); }

int64_t ModelConfig::n_params() const {
  int64_t per_layer = hidden * qkv_dim() + q_dim() * hidden;
  per_layer += (mlp == MlpKind::SwiGLU ? 3 : 2) * hidden * ffn;
  per_layer += 2 * hidden;  // norms (weights only; biases are small)
  int64_t n = vocab_size * hidden + n_layers * per_layer + hidden;
  if (!tied_head) n += vocab_size * hidden;
  return n;
}

void ModelConfig::validate(const std::string& where) const {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(where + ": " + what);
  };
  need(vocab_size > 0 && vocab_size < (int64_t(1) << 31), "vocab_size must be in [1, 2^31), got " + std::to_string(vocab_size));
  need(hidden > 0 && hidden <= 65536, "hidden size must be in [1, 65536], got " + std::to_string(hidden));
  need(n_layers > 0 && n_layers <= 1024, "number of layers must be in [1, 1024], got " + std::to_string(n_layers));
  need(n_heads > 0 && n_heads <= 1024, "number of attention heads must be in [1, 1024], got " + std::to_string(n_heads));
  need(n_kv_heads > 0 && n_heads % n_kv_heads == 0,
       "number of key/value heads (" + std::to_string(n_kv_heads) + ") must divide the attention heads (" +
           std::to_string(n_heads) + ")");
  need(head_dim > 0 && head_dim <= 1024, "head_dim must be in [1, 1024], got " + std::to_string(head_dim));
  need(ffn > 0 && ffn <= 1 << 20, "intermediate size must be in [1, 2^20], got " + std::to_string(ffn));
  need(rot_dims >= 0 && rot_dims <= head_dim && rot_dims % 2 == 0,
       "rotary dims (" + std::to_string(rot_dims) + ") must be even and at most head_dim (" + std::to_string(head_dim) + ")");
  need(std::isfinite(norm_eps) && norm_eps > 0, "norm epsilon must be positive");
  need(rope_theta > 0 && std::isfinite(rope_theta), "rope theta must be positive");
  need(std::isfinite(attn_scale) && attn_scale >= 0, "attn_scale must be finite and >= 0 (0 = 1/sqrt(head_dim))");
  need(std::isfinite(clip_qkv) && clip_qkv >= 0, "clip_qkv must be finite and >= 0 (0 = off)");
  need(std::isfinite(alibi_bias_max) && alibi_bias_max > 0, "alibi_bias_max must be finite and positive");
  if (sink == SinkKind::LearnableSink)
    need(sink_tokens >= 1 && sink_tokens <= 64 && sink_tokens < vocab_size,
         "learnable_sink needs sink_tokens in [1, 64], got " + std::to_string(sink_tokens));
  else
    need(sink_tokens == 0, std::string("sink_tokens must be 0 for the ") + sink_name(sink) + " variant, got " +
                               std::to_string(sink_tokens));
}

namespace {

// Typed accessors that name the field in errors.
struct Reader {
  const json& j;
  const std::string& where;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t i(const char* k) const {
    if (!has(k)) throw Error(where + ": missing field '" + k + "'");
    if (!j[k].is_number_integer()) throw Error(where + ": field '" + std::string(k) + "' must be an integer");
    // Every size in a config is far below 2^40; bounding here keeps all later arithmetic free of overflow.
    if (j[k].is_number_unsigned() && j[k].get<uint64_t>() > (uint64_t(1) << 40))
      throw Error(where + ": field '" + std::string(k) + "' is absurdly large");
    const int64_t v = j[k].get<int64_t>();
    if (v > (int64_t(1) << 40) || v < -(int64_t(1) << 40))
      throw Error(where + ": field '" + std::string(k) + "' is absurdly large");
    return v;
  }
  int64_t i(const char* k, int64_t def) const { return has(k) ? i(k) : def; }
  double f(const char* k, double def) const {
    if (!has(k)) return def;
    if (!j[k].is_number()) throw Error(where + ": field '" + std::string(k) + "' must be a number");
    return j[k].get<double>();
  }
  bool b(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) throw Error(where + ": field '" + std::string(k) + "' must be true or false");
    return j[k].get<bool>();
  }
  std::string s(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    if (!j[k].is_string()) throw Error(where + ": field '" + std::string(k) + "' must be a string");
    return j[k].get<std::string>();
  }
};

int64_t first_id(const json& j, const char* k) {
  if (!j.contains(k) || j[k].is_null()) return -1;
  if (j[k].is_number_integer()) return j[k].get<int64_t>();
  if (j[k].is_array() && !j[k].empty() && j[k][0].is_number_integer()) return j[k][0].get<int64_t>();
  return -1;
}

MlpKind gelu_kind(const std::string& act, const std::string& where) {
  if (act == "gelu") return MlpKind::GeluErf;
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") return MlpKind::GeluTanh;
  if (act == "relu") return MlpKind::Relu;
  throw Error(where + ": unsupported activation '" + act + "' (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

// rope_theta can live at the top level or inside rope_parameters (transformers v5).
double rope_theta_of(const Reader& r, const char* legacy, double def) {
  if (r.has("rope_parameters") && r.j["rope_parameters"].is_object()) {
    Reader rp{r.j["rope_parameters"], r.where};
    if (rp.has("rope_theta")) return rp.f("rope_theta", def);
  }
  if (r.has("rope_theta")) return r.f("rope_theta", def);
  return r.f(legacy, def);
}

void refuse_rope_scaling(const Reader& r) {
  for (const char* k : {"rope_scaling", "rope_parameters"}) {
    if (!r.has(k)) continue;
    const json& rs = r.j[k];
    if (!rs.is_object()) continue;
    std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
    if (type != "default")
      throw Error(r.where + ": " + k + " type '" + type + "' is not supported (only plain RoPE)");
  }
}

ModelConfig llama(const Reader& r) {
  ModelConfig c;
  c.family = Family::Llama;
  c.vocab_size = r.i("vocab_size");
  c.hidden = r.i("hidden_size");
  c.n_layers = r.i("num_hidden_layers");
  c.n_heads = r.i("num_attention_heads");
  c.n_kv_heads = r.i("num_key_value_heads", c.n_heads);
  c.head_dim = r.i("head_dim", c.n_heads > 0 ? c.hidden / c.n_heads : 0);
  c.ffn = r.i("intermediate_size");
  c.max_positions = r.i("max_position_embeddings", 2048);
  c.norm = NormKind::RMSNorm;
  c.norm_eps = float(r.f("rms_norm_eps", 1e-6));
  const std::string act = r.s("hidden_act", "silu");
  if (act != "silu") throw Error(r.where + ": hidden_act '" + act + "' is not supported for llama (expected silu)");
  c.mlp = MlpKind::SwiGLU;
  c.qkv = QkvLayout::Separate;
  c.pos = PosKind::RoPE;
  c.rope_theta = rope_theta_of(r, "rope_theta", 10000.0);
  refuse_rope_scaling(r);
  c.rot_dims = c.head_dim;
  c.tied_head = r.b("tie_word_embeddings", false);
  if (r.has("sliding_window") && r.s("model_type", "") == "mistral")
    throw Error(r.where + ": Mistral's sliding_window attention is not supported (set it to null for full attention)");
  return c;
}

ModelConfig gpt_neox(const Reader& r) {
  ModelConfig c;
  c.family = Family::GPTNeoX;
  c.vocab_size = r.i("vocab_size");
  c.hidden = r.i("hidden_size");
  c.n_layers = r.i("num_hidden_layers");
  c.n_heads = r.i("num_attention_heads");
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.n_heads > 0 ? c.hidden / c.n_heads : 0;
  c.ffn = r.i("intermediate_size", 4 * c.hidden);
  c.max_positions = r.i("max_position_embeddings", 2048);
  c.norm = NormKind::LayerNorm;
  c.norm_eps = float(r.f("layer_norm_eps", 1e-5));
  c.mlp = gelu_kind(r.s("hidden_act", "gelu"), r.where);
  c.parallel_residual = r.b("use_parallel_residual", true);
  c.qkv = QkvLayout::Grouped;  // [heads, 3, head_dim]: one q per group
  c.pos = PosKind::RoPE;
  double pct = r.f("rotary_pct", r.f("partial_rotary_factor", 1.0));
  if (r.has("rope_parameters") && r.j["rope_parameters"].is_object())
    pct = Reader{r.j["rope_parameters"], r.where}.f("partial_rotary_factor", pct);
  if (!(pct >= 0 && pct <= 1)) throw Error(r.where + ": rotary_pct / partial_rotary_factor must be in [0, 1]");
  c.rot_dims = int64_t(double(c.head_dim) * pct);
  c.rope_theta = rope_theta_of(r, "rotary_emb_base", 10000.0);
  refuse_rope_scaling(r);
  c.tied_head = r.b("tie_word_embeddings", false);
  return c;
}

ModelConfig falcon(const Reader& r) {
  ModelConfig c;
  c.family = Family::Falcon;
  c.vocab_size = r.i("vocab_size");
  c.hidden = r.i("hidden_size");
  c.n_layers = r.has("num_hidden_layers") ? r.i("num_hidden_layers") : r.i("n_layer");
  c.n_heads = r.has("num_attention_heads") ? r.i("num_attention_heads") : r.i("n_head");
  c.head_dim = c.n_heads > 0 ? c.hidden / c.n_heads : 0;
  const bool new_arch = r.b("new_decoder_architecture", false);
  const bool mq = r.b("multi_query", true);
  if (new_arch)
    c.n_kv_heads = r.i("num_kv_heads", c.n_heads);
  else
    c.n_kv_heads = mq ? 1 : c.n_heads;
  c.ffn = r.i("ffn_hidden_size", 4 * c.hidden);
  c.max_positions = r.i("max_position_embeddings", 2048);
  c.norm = NormKind::LayerNorm;
  c.norm_eps = float(r.f("layer_norm_epsilon", 1e-5));
  c.mlp = gelu_kind(r.s("activation", "gelu"), r.where);
  c.qkv = QkvLayout::Grouped;
  if (r.b("alibi", false))
    throw Error(r.where + ": Falcon with alibi=true is not supported (only the rotary Falcon checkpoints)");
  c.pos = PosKind::RoPE;
  c.rope_theta = rope_theta_of(r, "rope_theta", 10000.0);
  refuse_rope_scaling(r);
  c.rot_dims = c.head_dim;
  c.parallel_residual = new_arch || r.b("parallel_attn", true);
  if (new_arch) {
    const int64_t n_ln = r.i("num_ln_in_parallel_attn", 2);
    if (n_ln != 1 && n_ln != 2) throw Error(r.where + ": num_ln_in_parallel_attn must be 1 or 2");
    c.shared_norm = (n_ln == 1);
  } else {
    c.shared_norm = c.parallel_residual;
  }
  c.tied_head = r.b("tie_word_embeddings", true);
  return c;
}

void mpt_alibi_check(const Reader& a) {
  if (!a.b("alibi", false)) throw Error(a.where + ": attn_config.alibi=false (learned positions) is not supported for MPT");
  if (a.b("qk_ln", false)) throw Error(a.where + ": attn_config.qk_ln=true is not supported for MPT");
}

ModelConfig mpt(const Reader& r) {
  ModelConfig c;
  c.family = Family::MPT;
  c.vocab_size = r.i("vocab_size");
  c.hidden = r.i("d_model");
  c.n_layers = r.i("n_layers");
  c.n_heads = r.i("n_heads");
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.n_heads > 0 ? c.hidden / c.n_heads : 0;
  const double ratio = r.f("expansion_ratio", 4.0);
  if (!(ratio > 0 && ratio <= 64)) throw Error(r.where + ": expansion_ratio must be in (0, 64]");
  const double ffn = ratio * double(c.hidden);
  if (!(ffn >= 0 && ffn < double(int64_t(1) << 40))) throw Error(r.where + ": d_model * expansion_ratio is absurd");
  c.ffn = int64_t(ffn);
  c.max_positions = r.i("max_seq_len", 2048);
  c.norm = NormKind::LayerNorm;
  c.norm_eps = float(r.f("layer_norm_epsilon", 1e-5));
  c.mlp = MlpKind::GeluErf;
  c.qkv = QkvLayout::Blocked;
  c.pos = PosKind::ALiBi;
  c.rot_dims = 0;
  json attn = r.has("attn_config") ? r.j["attn_config"] : json::object();
  if (!attn.is_object()) throw Error(r.where + ": attn_config must be an object");
  Reader a{attn, r.where};
  mpt_alibi_check(a);
  c.alibi_bias_max = a.f("alibi_bias_max", 8.0);
  c.clip_qkv = float(a.f("clip_qkv", 0.0));
  c.attn_scale = float(a.f("softmax_scale", 0.0));
  c.tied_head = true;
  return c;
}

}  // namespace

ModelConfig config_from_hf_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw Error(where + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  Reader r{j, where};
  const std::string mt = r.s("model_type", "");
  ModelConfig c;
  try {
    if (mt == "llama" || mt == "mistral")
      c = llama(r);
    else if (mt == "gpt_neox")
      c = gpt_neox(r);
    else if (mt == "falcon" || mt == "RefinedWeb" || mt == "RefinedWebModel")
      c = falcon(r);
    else if (mt == "mpt")
      c = mpt(r);
    else if (mt.empty())
      throw Error(where + ": missing field 'model_type'");
    else
      throw Error(where + ": model_type '" + mt + "' is not supported (supported: llama, mistral, gpt_neox, falcon, mpt)");
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": " + e.what());
  }
  c.model_type = mt;
  // Our trained models exported as HF directories (and the trainer's golden fixtures) carry the sink variant.
  const std::string sink = r.s("streamllm_sink", "vanilla");
  bool known_sink = false;
  for (SinkKind k : {SinkKind::Vanilla, SinkKind::ZeroSink, SinkKind::LearnableSink, SinkKind::SinkLogit})
    if (sink == sink_name(k)) c.sink = k, known_sink = true;
  if (!known_sink)
    throw Error(where + ": streamllm_sink '" + sink + "' is not one of vanilla, zero_sink, learnable_sink, sink_logit");
  c.sink_tokens = r.i("streamllm_sink_tokens", 0);
  c.bos_id = first_id(j, "bos_token_id");
  c.eos_id = first_id(j, "eos_token_id");
  c.validate(where);
  return c;
}

void alibi_slopes(int64_t n_heads, double bias_max, float* out) {
  const int64_t p2 = int64_t(1) << int64_t(std::ceil(std::log2(double(n_heads))));
  std::vector<double> s(static_cast<size_t>(p2));
  for (int64_t i = 0; i < p2; ++i) s[size_t(i)] = 1.0 / std::pow(2.0, double(i + 1) * (bias_max / double(p2)));
  if (p2 == n_heads) {
    for (int64_t i = 0; i < n_heads; ++i) out[i] = float(s[size_t(i)]);
    return;
  }
  // Non-power-of-two: odd-indexed slopes first, then even-indexed, truncated (MPT's rule).
  std::vector<double> r;
  for (int64_t i = 1; i < p2; i += 2) r.push_back(s[size_t(i)]);
  for (int64_t i = 0; i < p2; i += 2) r.push_back(s[size_t(i)]);
  for (int64_t i = 0; i < n_heads; ++i) out[i] = float(r[size_t(i)]);
}

}  // namespace sllm
