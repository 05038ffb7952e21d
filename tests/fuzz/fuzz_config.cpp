// Fuzz target: config.json (model/config.h, config_from_hf_json) and our native config JSON (model/config_json.h,
// config_from_json, what .h5 files store in /config).
//
// Two kinds of input:
//   - raw text (anything not starting with byte 0x01): both parsers see it as is;
//   - byte 0x01, then edits: one of five valid configs (llama, gpt_neox, falcon, mpt, native) has 1-4 fields set
//     to values the input picks (edge integers and floats, strings, null, arrays, removal, unknown keys), then
//     both parsers read the result. Byte mutations alone rarely turn "4" into a 19-digit number inside valid JSON;
//     this reaches the numeric checks behind the parser in seconds.
// An accepted config must be internally consistent (validate() passes again, the derived sizes do not overflow)
// and the native one must round-trip through config_to_json.
#include <fuzzer/FuzzedDataProvider.h>  // FuzzedDataProvider (ships with clang)

#include <iterator>           // std::size, std::advance
#include <nlohmann/json.hpp>  // nlohmann::json
#include <vector>             // std::vector

#include "fuzz_util.h"          // expect_ok_or_error
#include "model/config.h"       // config_from_hf_json, alibi_slopes
#include "model/config_json.h"  // config_from_json, config_to_json

namespace {

using json = nlohmann::json;

void use(const sllm::ModelConfig& c, const char* where) {
  c.validate(where);  // an accepted config must stay valid
  volatile int64_t n = c.n_params() + c.qkv_dim();
  volatile float s = c.scale();
  (void)n;
  (void)s;
  if (c.pos == sllm::PosKind::ALiBi) {
    std::vector<float> slopes(size_t(c.n_heads));
    sllm::alibi_slopes(c.n_heads, c.alibi_bias_max, slopes.data());
  }
}

void check(const std::string& text) {
  using namespace sllm;
  fuzz::expect_ok_or_error("config.json", "config.json",
                           [&] { use(config_from_hf_json(text, "config.json"), "config.json"); });
  fuzz::expect_ok_or_error("native config", "model.h5:/config", [&] {
    const ModelConfig c = config_from_json(text, "model.h5:/config");
    use(c, "model.h5:/config");
    const ModelConfig back = config_from_json(config_to_json(c), "round-trip");
    if (config_to_json(back) != config_to_json(c)) {
      std::fprintf(stderr, "FINDING: native config does not round-trip:\n%s\n%s\n", config_to_json(c).c_str(),
                   config_to_json(back).c_str());
      std::abort();
    }
  });
}

const char* const kBases[] = {
    R"({"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
        "rms_norm_eps": 1e-05, "hidden_act": "silu", "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2})",
    R"({"model_type": "gpt_neox", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 96, "hidden_act": "gelu", "layer_norm_eps": 1e-05,
        "rotary_pct": 0.25, "rotary_emb_base": 10000, "use_parallel_residual": true, "tie_word_embeddings": false})",
    R"({"model_type": "falcon", "vocab_size": 288, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_kv_heads": 2, "new_decoder_architecture": true, "multi_query": true,
        "ffn_hidden_size": 128, "num_ln_in_parallel_attn": 2, "parallel_attn": true, "alibi": false,
        "activation": "gelu", "layer_norm_epsilon": 1e-05})",
    R"({"model_type": "mpt", "vocab_size": 256, "d_model": 48, "n_layers": 2, "n_heads": 4, "expansion_ratio": 4,
        "max_seq_len": 128, "layer_norm_epsilon": 1e-05,
        "attn_config": {"alibi": true, "alibi_bias_max": 8, "clip_qkv": null, "softmax_scale": null, "qk_ln": false}})",
    R"({"config_version": 1, "family": "llama", "model_type": "llama", "vocab_size": 16, "hidden": 8, "n_layers": 1,
        "n_heads": 2, "n_kv_heads": 1, "head_dim": 4, "ffn": 8, "max_positions": 128, "norm": "rmsnorm",
        "norm_eps": 1e-05, "mlp": "swiglu", "parallel_residual": false, "shared_norm": false, "qkv": "separate",
        "clip_qkv": 0.0, "pos": "rope", "rope_theta": 10000.0, "rot_dims": 4, "rope_interleaved": false,
        "alibi_bias_max": 8.0, "attn_scale": 0.0, "tied_head": false, "bos_id": -1, "eos_id": -1})",
};

json some_value(FuzzedDataProvider& p) {
  static const int64_t ints[] = {0, 1, 2, 3, 7, 64, 1023, 1024, 1025, 65536, 65537, int64_t(1) << 20,
                                 (int64_t(1) << 31) - 1, int64_t(1) << 31, int64_t(1) << 40, int64_t(1) << 62,
                                 INT64_MAX, -1, INT64_MIN};
  static const double reals[] = {0.0,  -0.0, 0.5,  1.0,    1e-300, 1e-45, 3.5e38,
                                 1e39, 1e300, -1e300, 1.7976931348623157e308};
  switch (p.ConsumeIntegralInRange(0, 9)) {
    case 0: return ints[p.ConsumeIntegralInRange<size_t>(0, std::size(ints) - 1)];
    case 1: return p.ConsumeIntegral<int64_t>();
    case 2: return p.ConsumeIntegral<uint64_t>();
    case 3: return reals[p.ConsumeIntegralInRange<size_t>(0, std::size(reals) - 1)];
    case 4: return p.ConsumeFloatingPoint<double>();
    case 5: return p.ConsumeRandomLengthString(24);
    case 6: return p.ConsumeBool();
    case 7: return nullptr;
    case 8: return json::array({p.ConsumeIntegral<int8_t>()});
    default: return json::object({{"type", p.ConsumeRandomLengthString(12)}, {"rope_type", "default"}});
  }
}

std::string edited(FuzzedDataProvider& p) {
  json j = json::parse(kBases[p.ConsumeIntegralInRange<size_t>(0, std::size(kBases) - 1)]);
  const int n = p.ConsumeIntegralInRange(1, 4);
  for (int k = 0; k < n; ++k) {
    json* obj = &j;
    if (j.contains("attn_config") && j["attn_config"].is_object() && p.ConsumeBool()) obj = &j["attn_config"];
    if (obj->empty()) break;
    auto it = obj->begin();
    std::advance(it, p.ConsumeIntegralInRange<size_t>(0, obj->size() - 1));
    const std::string key = it.key();
    switch (p.ConsumeIntegralInRange(0, 7)) {
      case 0: obj->erase(key); break;
      case 1: (*obj)[p.ConsumeRandomLengthString(24)] = some_value(p); break;
      default: (*obj)[key] = some_value(p);
    }
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);  // input strings need not be UTF-8
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0 && data[0] == 0x01) {
    FuzzedDataProvider p(data + 1, size - 1);
    check(edited(p));
    return 0;
  }
  check(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
