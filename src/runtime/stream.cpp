#include "runtime/stream.h"

#include <algorithm>  // std::partial_sort, std::min
#include <chrono>     // std::chrono
#include <cmath>      // std::exp

#include "core/error.h"        // Error
#include "runtime/kv_cache.h"  // KVCache

namespace sllm {

CacheMode parse_cache_mode(const std::string& s) {
  if (s == "dense") return CacheMode::Dense;
  if (s == "window") return CacheMode::Window;
  if (s == "streaming") return CacheMode::Streaming;
  if (s == "recompute") return CacheMode::Recompute;
  throw Error("unknown cache policy '" + s + "' (expected dense, window, streaming or recompute)");
}

const char* cache_mode_name(CacheMode m) {
  switch (m) {
    case CacheMode::Dense: return "dense";
    case CacheMode::Window: return "window";
    case CacheMode::Streaming: return "streaming";
    case CacheMode::Recompute: return "recompute";
  }
  return "?";
}

PplResult stream_nll(const Model& m, Backend& be, const std::vector<int32_t>& ids, const PplOptions& opt) {
  const int64_t n = int64_t(ids.size());
  if (n < 2) throw Error("perplexity needs at least 2 tokens, got " + std::to_string(n));
  if (opt.chunk < 1) throw Error("--chunk must be >= 1");
  PplResult r;
  r.nll.resize(size_t(n - 1));
  const auto start = std::chrono::steady_clock::now();
  const int64_t V = m.cfg.vocab_size;

  if (opt.mode == CacheMode::Recompute) {
    // Each position re-encodes the last L tokens from a fresh cache (positions 0..L-1) and scores the next one.
    const int64_t L = opt.sinks + opt.window;
    if (L < 1) throw Error("recompute: sinks + window must be >= 1");
    Decoder dec(m, be, L);
    KVCache cache(be, m.cfg, 0, L, L, opt.kv_dtype);
    r.cache_bytes = cache.bytes();
    for (int64_t i = 0; i + 1 < n; ++i) {
      const int64_t lo = std::max<int64_t>(0, i + 1 - L);
      cache.reset(opt.pos0);
      const float* lg = dec.forward(ids.data() + lo, i + 1 - lo, cache, Logits::Last);
      r.nll[size_t(i)] = token_nll(lg, V, ids[size_t(i + 1)]);
      if (opt.progress && (i % 16 == 0 || i + 2 == n)) opt.progress(i + 1, n - 1);
    }
  } else {
    int64_t S = opt.sinks, R = opt.window;
    if (opt.mode == CacheMode::Dense) {
      S = 0;
      R = n;
    } else if (opt.mode == CacheMode::Window) {
      S = 0;
    }
    const int64_t C = std::min(opt.chunk, n);
    Decoder dec(m, be, C);
    KVCache cache(be, m.cfg, S, R, C, opt.kv_dtype);
    cache.reset(opt.pos0);
    r.cache_bytes = cache.bytes();
    for (int64_t i = 0; i + 1 < n; i += C) {
      const int64_t T = std::min(C, n - 1 - i);  // the last token is never fed: nothing to score after it
      const float* lg = dec.forward(ids.data() + i, T, cache, Logits::All);
      for (int64_t j = 0; j < T; ++j) r.nll[size_t(i + j)] = token_nll(lg + j * V, V, ids[size_t(i + j + 1)]);
      if (opt.progress) opt.progress(i + T, n - 1);
    }
  }
  double s = 0;
  for (double v : r.nll) s += v;
  r.ppl = std::exp(s / double(r.nll.size()));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {
  if (!(o.temperature >= 0)) throw Error("--temp must be >= 0");
  if (o.top_k < 0) throw Error("--top-k must be >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) throw Error("--top-p must be in (0, 1]");
  if (!(o.min_p >= 0 && o.min_p < 1)) throw Error("--min-p must be in [0, 1)");
}

int32_t Sampler::sample(const float* logits, int64_t V) {
  if (o_.temperature == 0.0f) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = i;
    return int32_t(best);
  }
  cand_.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) cand_[size_t(i)] = {logits[i] / o_.temperature, int32_t(i)};
  int64_t k = (o_.top_k > 0 && o_.top_k < V) ? o_.top_k : V;
  auto desc = [](const auto& a, const auto& b) { return a.first > b.first; };
  if (k < V) {
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(), desc);
    cand_.resize(size_t(k));
  } else {
    std::sort(cand_.begin(), cand_.end(), desc);
  }
  const float mx = cand_[0].first;
  double total = 0;
  std::vector<double> p(cand_.size());
  for (size_t i = 0; i < cand_.size(); ++i) total += (p[i] = std::exp(double(cand_[i].first - mx)));
  // top-p: smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * p(best).
  size_t keep = cand_.size();
  double acc = 0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    if (o_.min_p > 0 && p[i] < o_.min_p * p[0]) { keep = i; break; }
    acc += p[i] / total;
    if (acc >= o_.top_p) { keep = i + 1; break; }
  }
  keep = std::max<size_t>(keep, 1);
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += p[i];
  std::uniform_real_distribution<double> u(0.0, kept);
  double x = u(rng_);
  for (size_t i = 0; i < keep; ++i) {
    x -= p[i];
    if (x <= 0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace sllm
