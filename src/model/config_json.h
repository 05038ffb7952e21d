// streamllm: ModelConfig <-> our own JSON (what native .h5 files store in /config).
//
// Not transformers' config.json (that is config_from_hf_json): this is every ModelConfig field under its own
// name, enums as strings, plus "config_version". The schema is append-only: a new field gets a new key and a
// default that reproduces the old behaviour, and kConfigVersion goes up by one. A reader fills fields missing
// from an older file with their defaults, and refuses a file with a newer version or an unknown key (it cannot
// know whether the unknown field changes the computation). Floats round-trip bit for bit. See docs/format.md.
#pragma once
#include <string>  // std::string

#include "model/config.h"  // ModelConfig

namespace sllm {

// Version of the JSON schema written by config_to_json.
constexpr int kConfigVersion = 2;  // 2: sink, sink_tokens (trained sink variants)

// Pretty-printed JSON object with every field and "config_version".
std::string config_to_json(const ModelConfig& c);

// Parses config_to_json output (any version <= kConfigVersion) and validates it. `where` names the file and
// object in errors, e.g. "model.h5:/config".
ModelConfig config_from_json(const std::string& text, const std::string& where);

}  // namespace sllm
