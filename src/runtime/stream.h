// streamllm: running a token stream through a model under a cache policy — streaming perplexity and generation.
//
// Learnable-sink models (ModelConfig::sink == LearnableSink) were trained on samples [sink_0 .. sink_{k-1}, text]:
// the k sink tokens (the last k vocabulary ids), then raw text cut from the corpus, encoded without special tokens
// (no BOS). Every stream of such a model — perplexity, generation, chat — therefore starts by feeding the k sink ids
// once, at stream positions 0..k-1, so they become the cache's sinks, followed by the text encoded without a BOS.
// The sink tokens are never scored (perplexity counts text tokens only, exactly as training ignores the target at
// the sink positions) and never sampled.
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
//   On a learnable-sink model the sink tokens are fed first under every policy: `window` evicts them like any other
//   token (the paper's "0+W" for a sink-token model), `streaming` with sinks = k keeps exactly them, and `recompute`
//   re-encodes the sink tokens followed by the last sinks+window-k text tokens.
enum class CacheMode : uint8_t { Dense, Window, Streaming, Recompute };
CacheMode parse_cache_mode(const std::string& s);
const char* cache_mode_name(CacheMode m);

struct PplOptions {
  CacheMode mode = CacheMode::Streaming;
  int64_t sinks = -1;    // -1: the model's default (cache_sinks); dense and window use 0
  int64_t window = 1020;
  int64_t chunk = 256;   // tokens per forward call (1 = per-token decode); results are identical
  int64_t pos0 = 0;      // absolute position of the first token (tests that positions never drift)
  DType kv_dtype = DType::F32;  // cache element type (F16 halves the cache)
  std::function<void(int64_t done, int64_t total)> progress;  // called after each chunk
};

// The ids every stream of the model starts with: its learnable sink tokens first_sink_id() .. vocab_size-1, or
// nothing for the other variants.
std::vector<int32_t> sink_prefix(const ModelConfig& c);
// Ids a sampler may produce: [0, sample_vocab(c)). The sink tokens are the last ids of the vocabulary, so sampling
// over this prefix of a logit row masks them.
int64_t sample_vocab(const ModelConfig& c);
// Sinks a streaming cache keeps: `requested` when >= 0, else the model's default (its k sink tokens for a
// learnable-sink model, else 4).
int64_t cache_sinks(const ModelConfig& c, int64_t requested);
// A one-line note when a learnable-sink model is asked to keep fewer cache sinks than its sink tokens (allowed:
// ablations do it), else empty.
std::string sinks_note(const ModelConfig& c, int64_t sinks);

struct PplResult {
  // nll[i] = -log p(ids[i+1] | ids[0..i] as the cache sees them), after the sink tokens of a learnable-sink model
  std::vector<double> nll;
  double ppl = 0;           // exp(mean nll)
  double seconds = 0;
  size_t cache_bytes = 0;
};

// Scores every next token of `ids` (text only) under the policy, exactly as per-token streaming would (see
// kv_cache.h); a learnable-sink model's stream is sink_prefix + ids, and only the ids.size()-1 text tokens after
// the first are scored.
PplResult stream_nll(const Model& m, Backend& be, const std::vector<int32_t>& ids, const PplOptions& opt);

struct SamplerOptions {
  float temperature = 0.8f;  // 0 = greedy
  int64_t top_k = 40;        // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.0f;        // 0 = off
  uint64_t seed = 0;
};

// The rule's parameters without the seed.
SampleParams sample_params(const SamplerOptions& o);

// The sampling rule, written once; the CUDA backend's sample() reproduces it exactly (kernels/cuda/sampling.cu).
//   temperature == 0: greedy, the first index of the maximum logit (u01 unused).
//   Otherwise the candidates are (logits[i] / temperature in f32, i), in a deterministic order: descending value,
//   ties by lower id first. top_k > 0 keeps the first top_k of them. Then p_i = exp(double(v_i - v_0)); top-p
//   keeps the smallest prefix whose normalised mass (p_i / total) reaches top_p, min-p cuts before the first
//   p_i < min_p * p_0 (at least one candidate is kept). With `kept` the sum of the kept p_i, x = u01 * kept walks
//   the kept candidates subtracting p_i and returns the first one where x <= 0 (the last kept one if rounding
//   leaves x > 0). `total` sums the p_i in the order above; when top-k keeps a whole vocabulary larger than
//   kSampleSortedTotalMax (ops/backend.h), in id order instead, by blocks of kSampleTotalBlock ids (each block
//   summed, the block sums added in order), so that only the prefix the cuts reach needs sorting (a full sort of
//   50K-150K candidates per token cost a third of a CPU decode step).
// logits: (V); u01 in [0, 1); parameters as Sampler checks them. `scratch` is reused storage for the candidates.
int32_t sample_token(const float* logits, int64_t V, const SampleParams& p, double u01,
                     std::vector<std::pair<float, int32_t>>& scratch);

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  // Samples from a host row of `vocab` logits. Draws one u01 from the seeded generator per call (none when greedy).
  int32_t sample(const float* logits, int64_t vocab);
  // Samples from a row in be's memory: on the device when be.sample() can (only the id crosses to the host), else
  // by copying the row back. Same draws as above, so the result equals sample() on the same row and seed.
  int32_t sample(Backend& be, const float* logits, int64_t vocab);

 private:
  double draw();  // u01 for one non-greedy sample

  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<float> row_;  // (vocab) host copy of a device row when the backend cannot sample
};

}  // namespace sllm
