#include "runtime/kv_cache.h"

#include <algorithm>  // std::min
#include <atomic>     // std::atomic

#include "core/error.h"  // Error

namespace sllm {

namespace {
std::atomic<uint64_t> g_next_cache_id{1};
}  // namespace

KVCache::KVCache(Backend& be, const ModelConfig& cfg, int64_t sinks, int64_t window, int64_t max_chunk,
                 DType kv_dtype)
    : be_(be), max_chunk_(max_chunk), id_(g_next_cache_id++) {
  if (kv_dtype != DType::F32 && kv_dtype != DType::F16)
    throw Error(std::string("cache: KV dtype must be f32 or f16, got ") + dtype_name(kv_dtype));
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
  g_.kv_f16 = kv_dtype == DType::F16;
  const size_t per = size_t(cfg.n_kv_heads) * size_t(g_.capacity) * size_t(cfg.head_dim) * dtype_size(kv_dtype);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    k_.push_back(be_.alloc(per));
    v_.push_back(be_.alloc(per));
  }
  bytes_ = 2 * per * size_t(cfg.n_layers);
}

KVCache::~KVCache() {
  for (void* p : k_) be_.release(p);
  for (void* p : v_) be_.release(p);
}

int64_t KVCache::held() const { return std::min(n_past_, g_.sinks + g_.window); }

}  // namespace sllm
