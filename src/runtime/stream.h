// streamllm: running a token stream through a model under a cache policy — streaming perplexity and generation.
#pragma once
#include <cstdint>     // int64_t
#include <functional>  // std::function
#include <random>      // std::mt19937_64
#include <string>      // std::string
#include <vector>      // std::vector

#include "model/decoder.h"  // Decoder
#include "model/model.h"    // Model
#include "ops/backend.h"    // Backend

namespace sllm {

// The cache policies of the paper's comparisons.
//   dense:     every token kept (memory grows with the stream; sized to the stream up front)
//   window:    the last `window` tokens (no sinks)
//   streaming: `sinks` attention sinks + the last `window` tokens (StreamingLLM)
//   recompute: sliding window with re-computation: each token re-encodes the last sinks+window tokens from scratch
enum class CacheMode : uint8_t { Dense, Window, Streaming, Recompute };
CacheMode parse_cache_mode(const std::string& s);
const char* cache_mode_name(CacheMode m);

struct PplOptions {
  CacheMode mode = CacheMode::Streaming;
  int64_t sinks = 4;
  int64_t window = 1020;
  int64_t chunk = 256;   // tokens per forward call (1 = per-token decode); results are identical
  int64_t pos0 = 0;      // absolute position of the first token (tests that positions never drift)
  DType kv_dtype = DType::F32;  // cache element type (F16 halves the cache)
  std::function<void(int64_t done, int64_t total)> progress;  // called after each chunk
};

struct PplResult {
  std::vector<double> nll;  // nll[i] = -log p(ids[i+1] | ids[0..i] as the cache sees them)
  double ppl = 0;           // exp(mean nll)
  double seconds = 0;
  size_t cache_bytes = 0;
};

// Scores every next token of `ids` under the policy, exactly as per-token streaming would (see kv_cache.h).
PplResult stream_nll(const Model& m, Backend& be, const std::vector<int32_t>& ids, const PplOptions& opt);

struct SamplerOptions {
  float temperature = 0.8f;  // 0 = greedy
  int64_t top_k = 40;        // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.0f;        // 0 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace sllm
