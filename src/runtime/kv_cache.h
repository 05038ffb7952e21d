// streamllm: the StreamingLLM KV cache — S attention-sink slots plus a ring buffer for the recent window.
//
// Semantics (DESIGN.md section 2): after each token the cache keeps the first S tokens of the stream and the last
// R; token t attends to sinks 0..S-1 and tokens t-R..t. Positions are those inside the cache. We store every key
// rotated once at its absolute position (pos0 + index); the attention kernel uses a query rotated at its absolute
// position against recent keys (whose in-cache distance equals the true distance, the window being contiguous)
// and a second query rotated at its in-cache position min(t, S+R) against the sink keys (stored at pos0 + j).
// Scores depend only on position differences, so this is exactly the paper's re-rotating cache without ever
// re-rotating a key. Memory is allocated once: (S + R + max_chunk) slots per layer, never growing.
//
// Baselines are the same structure: dense = (S=0, R >= stream length); window = (S=0, R).
#pragma once
#include <cstdint>  // int64_t
#include <vector>   // std::vector

#include "cpu/kernels.h"   // cpu::AttnGeometry
#include "model/config.h"  // ModelConfig
#include "ops/backend.h"   // Backend

namespace sllm {

class KVCache {
 public:
  // sinks = S, window = R, max_chunk = the most tokens one forward call appends; K/V stored in kv_dtype
  // (F32, or F16 to halve the cache's memory and the bytes attention reads per token).
  KVCache(Backend& be, const ModelConfig& cfg, int64_t sinks, int64_t window, int64_t max_chunk,
          DType kv_dtype = DType::F32);
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  const cpu::AttnGeometry& geometry() const { return g_; }
  void* k(int64_t layer) const { return k_[size_t(layer)]; }  // (n_kv_heads, capacity, head_dim)
  void* v(int64_t layer) const { return v_[size_t(layer)]; }
  DType kv_dtype() const { return g_.kv_f16 ? DType::F16 : DType::F32; }
  int64_t slot(int64_t token) const { return token < g_.sinks ? token : g_.sinks + (token - g_.sinks) % g_.ring; }
  int64_t max_chunk() const { return max_chunk_; }

  int64_t n_past() const { return n_past_; }    // tokens streamed so far
  void advance(int64_t n) { n_past_ += n; }
  int64_t pos0() const { return pos0_; }        // absolute position of stream token 0
  // Empties the cache and starts a new stream whose first token sits at absolute position `pos0`.
  void reset(int64_t pos0 = 0) { n_past_ = 0; pos0_ = pos0; }
  // Tokens currently held (sinks + recent), as the paper counts them.
  int64_t held() const;
  size_t bytes() const { return bytes_; }
  // Unique per cache object of the process (a later cache at the same address gets a new one): what a captured
  // decode graph, which bakes in this cache's buffers, is keyed on.
  uint64_t id() const { return id_; }

 private:
  Backend& be_;
  cpu::AttnGeometry g_;
  int64_t max_chunk_;
  std::vector<void*> k_, v_;
  size_t bytes_ = 0;
  int64_t n_past_ = 0, pos0_ = 0;
  uint64_t id_;
};

}  // namespace sllm
