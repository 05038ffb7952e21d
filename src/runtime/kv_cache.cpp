#include "runtime/kv_cache.h"

#include <algorithm>  // std::min

#include "core/error.h"  // Error

namespace sllm {

KVCache::KVCache(Backend& be, const ModelConfig& cfg, int64_t sinks, int64_t window, int64_t max_chunk)
    : be_(be), max_chunk_(max_chunk) {
  if (sinks < 0) throw Error("cache: --sinks must be >= 0, got " + std::to_string(sinks));
  if (window < 1) throw Error("cache: --window must be >= 1, got " + std::to_string(window));
  if (max_chunk < 1) throw Error("cache: chunk size must be >= 1");
  if (sinks + window + max_chunk > (int64_t(1) << 31)) throw Error("cache: sinks + window too large");
  g_.n_heads = cfg.n_heads;
  g_.n_kv_heads = cfg.n_kv_heads;
  g_.head_dim = cfg.head_dim;
  g_.sinks = sinks;
  g_.window = window;
  g_.ring = window + max_chunk;
  g_.capacity = sinks + g_.ring;
  const size_t per = size_t(cfg.n_kv_heads) * size_t(g_.capacity) * size_t(cfg.head_dim) * sizeof(float);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    k_.push_back(static_cast<float*>(be_.alloc(per)));
    v_.push_back(static_cast<float*>(be_.alloc(per)));
  }
  bytes_ = 2 * per * size_t(cfg.n_layers);
}

KVCache::~KVCache() {
  for (float* p : k_) be_.release(p);
  for (float* p : v_) be_.release(p);
}

int64_t KVCache::held() const { return std::min(n_past_, g_.sinks + g_.window); }

}  // namespace sllm
