// streamllm: the geometry of the StreamingLLM KV cache, as every backend's attention kernel sees it.
#pragma once
#include <cstdint>  // int64_t

namespace sllm {

// Geometry of the StreamingLLM KV cache as the attention kernel sees it (see src/runtime/kv_cache.h).
// Per layer, K and V are (n_kv_heads, capacity, head_dim) in f32 or f16 (kv_f16): slots [0, sinks) hold stream tokens 0..sinks-1,
// slots [sinks, sinks + ring) are a ring buffer: stream token a >= sinks lives at slot sinks + (a - sinks) % ring.
struct AttnGeometry {
  int64_t n_heads = 0;     // query heads
  int64_t n_kv_heads = 0;  // key/value heads (n_heads % n_kv_heads == 0)
  int64_t head_dim = 0;
  int64_t sinks = 0;       // S
  int64_t window = 0;      // R: recent tokens kept after each step
  int64_t ring = 0;        // ring slots (>= window + tokens per chunk)
  int64_t capacity = 0;    // sinks + ring
  bool kv_f16 = false;     // K/V stored as IEEE half (else f32)
};

}  // namespace sllm
