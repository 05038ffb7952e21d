// ModelConfig <-> JSON. One table of fields drives both directions, so a field cannot be written but not read.
#include "model/config_json.h"

#include <charconv>           // std::to_chars, std::from_chars (locale-independent)
#include <cmath>              // std::isfinite
#include <functional>         // std::function
#include <nlohmann/json.hpp>  // nlohmann::json
#include <set>                // std::set
#include <vector>             // std::vector

#include "core/error.h"  // Error

namespace sllm {

using json = nlohmann::json;

// Tripwire: a field added to ModelConfig must be added to kFields below (append-only, bump kConfigVersion) and
// then this size updated. Checked only where the layout is known (libstdc++ on x86-64).
#if defined(__GLIBCXX__) && defined(__x86_64__)
static_assert(sizeof(ModelConfig) == 200,
              "ModelConfig changed: add the new field to kFields in src/model/config_json.cpp (append at the end, "
              "bump kConfigVersion, document it in docs/format.md), then update this size");
#endif

namespace {

// A string <-> enum table.
template <class E>
struct EnumName {
  E v;
  const char* name;
};

constexpr EnumName<Family> kFamilies[] = {
    {Family::Llama, "llama"}, {Family::GPTNeoX, "gpt_neox"}, {Family::Falcon, "falcon"}, {Family::MPT, "mpt"}};
constexpr EnumName<NormKind> kNorms[] = {{NormKind::RMSNorm, "rmsnorm"}, {NormKind::LayerNorm, "layernorm"}};
constexpr EnumName<MlpKind> kMlps[] = {
    {MlpKind::SwiGLU, "swiglu"}, {MlpKind::GeluErf, "gelu_erf"}, {MlpKind::GeluTanh, "gelu_tanh"}, {MlpKind::Relu, "relu"}};
constexpr EnumName<QkvLayout> kQkvs[] = {
    {QkvLayout::Separate, "separate"}, {QkvLayout::Grouped, "grouped"}, {QkvLayout::Blocked, "blocked"}};
constexpr EnumName<PosKind> kPos[] = {{PosKind::RoPE, "rope"}, {PosKind::ALiBi, "alibi"}};
constexpr EnumName<SinkKind> kSinks[] = {{SinkKind::Vanilla, "vanilla"},
                                         {SinkKind::ZeroSink, "zero_sink"},
                                         {SinkKind::LearnableSink, "learnable_sink"},
                                         {SinkKind::SinkLogit, "sink_logit"}};

struct Field {
  const char* key;
  int since;  // config_version that added it
  std::function<json(const ModelConfig&)> get;
  std::function<void(ModelConfig&, const json&, const std::string& where)> set;
};

std::string bad(const std::string& where, const char* key, const char* what) {
  return where + ": field '" + key + "' must be " + what;
}

template <class T>
Field integer(const char* key, int since, T ModelConfig::*m) {
  return {key, since, [m](const ModelConfig& c) { return json(int64_t(c.*m)); },
          [m, key](ModelConfig& c, const json& v, const std::string& where) {
            if (!v.is_number_integer()) throw Error(bad(where, key, "an integer"));
            c.*m = T(v.get<int64_t>());
          }};
}

// The double to write for a float field: its shortest float spelling (1e-05, not 9.999999747378752e-06) when that
// reads back to the same float, else the float's exact double value. nlohmann prints doubles in their shortest
// round-trip form, so float and double fields both round-trip bit for bit.
double pretty(float f) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, f);
  double d = 0;
  if (std::from_chars(buf, r.ptr, d).ec != std::errc()) return double(f);
  return float(d) == f ? d : double(f);
}
double pretty(double d) { return d; }

template <class T>
Field real(const char* key, int since, T ModelConfig::*m) {
  return {key, since, [m](const ModelConfig& c) { return json(pretty(c.*m)); },
          [m, key](ModelConfig& c, const json& v, const std::string& where) {
            if (!v.is_number()) throw Error(bad(where, key, "a number"));
            const double d = v.get<double>();
            if (!std::isfinite(d)) throw Error(bad(where, key, "finite"));
            c.*m = T(d);
          }};
}

Field boolean(const char* key, int since, bool ModelConfig::*m) {
  return {key, since, [m](const ModelConfig& c) { return json(c.*m); },
          [m, key](ModelConfig& c, const json& v, const std::string& where) {
            if (!v.is_boolean()) throw Error(bad(where, key, "true or false"));
            c.*m = v.get<bool>();
          }};
}

template <class E, size_t N>
Field enumeration(const char* key, int since, E ModelConfig::*m, const EnumName<E> (&names)[N]) {
  return {key, since,
          [m, key, &names](const ModelConfig& c) {
            for (const auto& n : names)
              if (n.v == c.*m) return json(n.name);
            throw Error(std::string("config: field '") + key + "' has a value with no name");
          },
          [m, key, &names](ModelConfig& c, const json& v, const std::string& where) {
            if (v.is_string()) {
              for (const auto& n : names)
                if (v.get<std::string>() == n.name) {
                  c.*m = n.v;
                  return;
                }
            }
            std::string allowed;
            for (const auto& n : names) allowed += std::string(allowed.empty() ? "" : ", ") + n.name;
            throw Error(where + ": field '" + key + "' must be one of " + allowed +
                        (v.is_string() ? ", got '" + v.get<std::string>() + "'" : ""));
          }};
}

// Every ModelConfig field. APPEND ONLY: never rename, remove or re-purpose a key; a new one gets `since` =
// the new kConfigVersion and must default to the behaviour files without it had.
const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      enumeration("family", 1, &ModelConfig::family, kFamilies),
      {"model_type", 1, [](const ModelConfig& c) { return json(c.model_type); },
       [](ModelConfig& c, const json& v, const std::string& where) {
         if (!v.is_string()) throw Error(bad(where, "model_type", "a string"));
         c.model_type = v.get<std::string>();
       }},
      integer("vocab_size", 1, &ModelConfig::vocab_size),
      integer("hidden", 1, &ModelConfig::hidden),
      integer("n_layers", 1, &ModelConfig::n_layers),
      integer("n_heads", 1, &ModelConfig::n_heads),
      integer("n_kv_heads", 1, &ModelConfig::n_kv_heads),
      integer("head_dim", 1, &ModelConfig::head_dim),
      integer("ffn", 1, &ModelConfig::ffn),
      integer("max_positions", 1, &ModelConfig::max_positions),
      enumeration("norm", 1, &ModelConfig::norm, kNorms),
      real("norm_eps", 1, &ModelConfig::norm_eps),
      enumeration("mlp", 1, &ModelConfig::mlp, kMlps),
      boolean("parallel_residual", 1, &ModelConfig::parallel_residual),
      boolean("shared_norm", 1, &ModelConfig::shared_norm),
      enumeration("qkv", 1, &ModelConfig::qkv, kQkvs),
      real("clip_qkv", 1, &ModelConfig::clip_qkv),
      enumeration("pos", 1, &ModelConfig::pos, kPos),
      real("rope_theta", 1, &ModelConfig::rope_theta),
      integer("rot_dims", 1, &ModelConfig::rot_dims),
      boolean("rope_interleaved", 1, &ModelConfig::rope_interleaved),
      real("alibi_bias_max", 1, &ModelConfig::alibi_bias_max),
      real("attn_scale", 1, &ModelConfig::attn_scale),
      boolean("tied_head", 1, &ModelConfig::tied_head),
      integer("bos_id", 1, &ModelConfig::bos_id),
      integer("eos_id", 1, &ModelConfig::eos_id),
      enumeration("sink", 2, &ModelConfig::sink, kSinks),
      integer("sink_tokens", 2, &ModelConfig::sink_tokens),
  };
  return f;
}

// Sizes that must be present in every version (a default of 0 would only fail validation with a vaguer message).
const std::set<std::string> kRequired = {"family", "vocab_size", "hidden", "n_layers", "n_heads", "n_kv_heads",
                                         "head_dim", "ffn"};

}  // namespace

std::string config_to_json(const ModelConfig& c) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();  // keys in field order, version first
  j["config_version"] = kConfigVersion;
  for (const auto& f : fields()) j[f.key] = f.get(c);
  return j.dump(2);
}

ModelConfig config_from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw Error(where + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  if (!j.contains("config_version") || !j["config_version"].is_number_integer())
    throw Error(where + ": missing integer field 'config_version'");
  const int64_t version = j["config_version"].get<int64_t>();
  if (version < 1) throw Error(where + ": config_version " + std::to_string(version) + " is not valid");
  if (version > kConfigVersion)
    throw Error(where + ": config_version " + std::to_string(version) + " was written by a newer streamllm (this build reads up to " +
                std::to_string(kConfigVersion) + ")");
  std::set<std::string> known = {"config_version"};
  ModelConfig c;
  for (const auto& f : fields()) {
    known.insert(f.key);
    if (j.contains(f.key) && !j[f.key].is_null()) {
      if (f.since > version)
        throw Error(where + ": field '" + f.key + "' does not exist in config_version " + std::to_string(version));
      f.set(c, j[f.key], where);
    } else if (kRequired.count(f.key)) {
      throw Error(where + ": missing field '" + std::string(f.key) + "'");
    }
  }
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) throw Error(where + ": unknown field '" + k + "'");
  c.validate(where);
  return c;
}

}  // namespace sllm
