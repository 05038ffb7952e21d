// streamllm: a loaded model — config + weights — from an HF directory (config.json + safetensors).
#pragma once
#include <cstdint>   // uint64_t
#include <optional>  // std::optional
#include <string>    // std::string
#include <utility>   // std::pair
#include <vector>    // std::vector

#include "model/config.h"   // ModelConfig
#include "model/weights.h"  // ModelWeights

namespace sllm {

class Backend;  // ops/backend.h

struct Model {
  ModelConfig cfg;
  ModelWeights w;
  std::vector<float> alibi;  // (n_heads) slopes when cfg.pos == ALiBi
  std::string source;        // where it was loaded from
  DType storage = DType::F32;  // dtype of the big matrices
  // The backend whose memory already holds w (a benchmark's device-resident random weights): a Decoder on that
  // backend uses w as it is. nullptr: host memory (a device Decoder copies the weights over once).
  const Backend* resident = nullptr;

  size_t weight_bytes() const;  // bytes of all matrices as stored (a tied head counted once)
  // The matrices' dtypes with their bytes, most bytes first (a GGUF file may mix Q4_1 layers with a Q8_0 embedding).
  std::vector<std::pair<DType, size_t>> weight_dtypes() const;
  std::string weight_dtypes_str() const;  // "q4_1 + q8_0" (one name when all agree)
};

struct LoadOptions {
  std::optional<DType> dtype;  // convert matrices to this storage dtype (default: keep the file's)
};

// `path`: an HF model directory (config.json + model.safetensors or a sharded index).
Model load_model(const std::string& path, const LoadOptions& opt = {});

// A model with seeded random weights (normal(0, 0.02) matrices, unit norms, zero biases), for benchmarks and tests.
Model random_model(const ModelConfig& cfg, DType storage, uint64_t seed);

}  // namespace sllm
