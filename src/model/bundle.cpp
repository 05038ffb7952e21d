#include "model/bundle.h"

#include <cstring>     // std::memcmp
#include <filesystem>  // std::filesystem
#include <fstream>     // std::ifstream
#include <nlohmann/json.hpp>  // nlohmann::json

#include "core/error.h"           // Error
#include "formats/mapped_file.h"  // read_text_file

namespace sllm {

namespace fs = std::filesystem;

ModelFormat detect_format(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": no such file or directory");
  if (fs::is_directory(path)) return ModelFormat::HFDir;
  std::ifstream f(path, std::ios::binary);
  char head[8] = {};
  f.read(head, 8);
  if (f.gcount() >= 4 && std::memcmp(head, "GGUF", 4) == 0) return ModelFormat::GGUF;
  if (f.gcount() == 8 && std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0) return ModelFormat::HDF5;
  throw Error(path + ": not a model (expected an HF directory, a .gguf file or a streamllm .h5 file)");
}

ModelBundle load_hf_dir(const std::string& dir, const LoadOptions& opt) {
  ModelBundle b;
  b.format = ModelFormat::HFDir;
  b.model = load_model(dir, opt);
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  if (fs::exists(tj)) {
    b.tokenizer_json = read_text_file(tj.string(), size_t(256) << 20);
    b.tok = Tokenizer::from_json_string(b.tokenizer_json, tj.string());
  }
  const fs::path tc = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(tc)) {
    // The chat template lives in tokenizer_config.json ("chat_template": string).
    try {
      const std::string s = read_text_file(tc.string(), size_t(16) << 20);
      const auto j = nlohmann::json::parse(s);
      if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
        b.chat_template = j["chat_template"].get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      throw Error(tc.string() + ": not valid JSON (" + std::string(e.what()) + ")");
    }
  }
  return b;
}

ModelBundle load_bundle(const std::string& path, const LoadOptions& opt) {
  switch (detect_format(path)) {
    case ModelFormat::HFDir: return load_hf_dir(path, opt);
    case ModelFormat::GGUF: return load_gguf(path, opt);
    case ModelFormat::HDF5: return load_h5(path, opt);
  }
  throw Error(path + ": unknown format");
}

}  // namespace sllm
