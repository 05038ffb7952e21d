// streamllm: everything a model file holds — weights + config, tokenizer, chat template — from any format.
#pragma once
#include <optional>  // std::optional
#include <string>    // std::string

#include "model/model.h"          // Model, LoadOptions
#include "tokenizer/tokenizer.h"  // Tokenizer

namespace sllm {

enum class ModelFormat : uint8_t { HFDir, GGUF, HDF5 };

struct ModelBundle {
  Model model;
  std::optional<Tokenizer> tok;  // absent when the source has none
  std::string tokenizer_json;    // the tokenizer as HF tokenizer.json text (what native files store)
  std::string chat_template;     // Jinja text as the source gives it (empty when none)
  ModelFormat format = ModelFormat::HFDir;
};

// Detects the format: a directory (HF: config.json + safetensors + tokenizer.json), a file starting with the
// GGUF magic, or an HDF5 file (signature \x89HDF\r\n\x1a\n). Throws sllm::Error naming the path otherwise.
ModelFormat detect_format(const std::string& path);

// Loads any supported format. Format loaders live next to their parsers (formats/gguf_model.cpp, formats/h5_model.cpp).
ModelBundle load_bundle(const std::string& path, const LoadOptions& opt = {});

ModelBundle load_hf_dir(const std::string& dir, const LoadOptions& opt);
ModelBundle load_gguf(const std::string& path, const LoadOptions& opt);
ModelBundle load_h5(const std::string& path, const LoadOptions& opt);

}  // namespace sllm
