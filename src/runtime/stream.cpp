#include "runtime/stream.h"

#include <algorithm>  // std::partial_sort, std::sort, std::min, std::max
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

std::vector<int32_t> sink_prefix(const ModelConfig& c) {
  std::vector<int32_t> ids;
  if (c.sink == SinkKind::LearnableSink)
    for (int64_t id = c.first_sink_id(); id < c.vocab_size; ++id) ids.push_back(int32_t(id));
  return ids;
}

int64_t sample_vocab(const ModelConfig& c) {
  return c.sink == SinkKind::LearnableSink ? c.first_sink_id() : c.vocab_size;
}

int64_t cache_sinks(const ModelConfig& c, int64_t requested) { return requested >= 0 ? requested : c.default_sinks(); }

std::string sinks_note(const ModelConfig& c, int64_t sinks) {
  if (c.sink != SinkKind::LearnableSink || sinks >= c.sink_tokens) return "";
  return "note: --sinks " + std::to_string(sinks) + " is fewer than the model's " + std::to_string(c.sink_tokens) +
         " sink tokens: all of them are still fed first, and those past the first " + std::to_string(sinks) +
         " are evicted like text";
}

PplResult stream_nll(const Model& m, Backend& be, const std::vector<int32_t>& ids, const PplOptions& opt) {
  const int64_t n = int64_t(ids.size());
  if (n < 2) throw Error("perplexity needs at least 2 tokens, got " + std::to_string(n));
  if (opt.chunk < 1) throw Error("--chunk must be >= 1");
  PplResult r;
  r.nll.resize(size_t(n - 1));
  const auto start = std::chrono::steady_clock::now();
  const int64_t V = m.cfg.vocab_size;
  // The stream the model sees: the sink tokens (learnable-sink models), then the text. Stream token k + i is text
  // token i; the prediction made at stream token k + i (for i + 1 < n) is scored as nll[i].
  const std::vector<int32_t> pre = sink_prefix(m.cfg);
  const int64_t k = int64_t(pre.size());
  std::vector<int32_t> seq = pre;
  seq.insert(seq.end(), ids.begin(), ids.end());
  const int64_t N = k + n;

  if (opt.mode == CacheMode::Recompute) {
    // Each position re-encodes the last L tokens from a fresh cache (positions 0..L-1) and scores the next one; a
    // learnable-sink model's window always starts with its sink tokens (L - k text tokens follow them).
    const int64_t L = cache_sinks(m.cfg, opt.sinks) + opt.window;
    if (L < k + 1)
      throw Error("recompute: sinks + window must exceed the model's " + std::to_string(k) + " sink tokens, got " +
                  std::to_string(L));
    Decoder dec(m, be, L);
    KVCache cache(be, m.cfg, 0, L, L, opt.kv_dtype);
    r.cache_bytes = cache.bytes();
    std::vector<int32_t> buf;
    for (int64_t i = 0; i + 1 < n; ++i) {
      const int64_t lo = std::max<int64_t>(0, i + 1 - (L - k));
      buf.assign(pre.begin(), pre.end());
      buf.insert(buf.end(), ids.begin() + lo, ids.begin() + i + 1);
      cache.reset(opt.pos0);
      const float* lg = dec.forward(buf.data(), int64_t(buf.size()), cache, Logits::Last);
      r.nll[size_t(i)] = token_nll(lg, V, ids[size_t(i + 1)]);
      if (opt.progress && (i % 16 == 0 || i + 2 == n)) opt.progress(i + 1, n - 1);
    }
  } else {
    int64_t S = cache_sinks(m.cfg, opt.sinks), R = opt.window;
    if (opt.mode == CacheMode::Dense) {
      S = 0;
      R = N;
    } else if (opt.mode == CacheMode::Window) {
      S = 0;
    }
    const int64_t C = std::min(opt.chunk, N);
    bool on_device = !be.host_memory();
    std::vector<float> rows;  // host copy of a chunk's logits when a device backend cannot score them
    Decoder dec(m, be, C);
    KVCache cache(be, m.cfg, S, R, C, opt.kv_dtype);
    cache.reset(opt.pos0);
    r.cache_bytes = cache.bytes();
    for (int64_t i = 0; i + 1 < N; i += C) {
      const int64_t T = std::min(C, N - 1 - i);  // the last token is never fed: nothing to score after it
      const bool scored = i + T > k;             // a chunk of sink tokens only predicts nothing we score
      const float* lg = dec.forward(seq.data() + i, T, cache, !scored ? Logits::None
                                                              : on_device ? Logits::AllOnDevice
                                                                          : Logits::All);
      const int64_t j0 = std::max<int64_t>(0, k - i);
      if (scored && on_device) {  // scored where the logits are: T - j0 numbers cross to the host, not the rows
        if (be.nll(lg + j0 * V, T - j0, V, seq.data() + i + j0 + 1, r.nll.data() + (i + j0 - k))) {
          if (opt.progress) opt.progress(std::max<int64_t>(0, i + T - k), n - 1);
          continue;
        }
        on_device = false;  // the backend has no nll(): this chunk and the rest are scored on the host
        rows.resize(size_t(T * V));
        be.download(rows.data(), lg, rows.size() * sizeof(float));
        lg = rows.data();
      }
      for (int64_t j = j0; j < T && scored; ++j)
        r.nll[size_t(i + j - k)] = token_nll(lg + j * V, V, seq[size_t(i + j + 1)]);
      if (opt.progress) opt.progress(std::max<int64_t>(0, i + T - k), n - 1);
    }
  }
  double s = 0;
  for (double v : r.nll) s += v;
  r.ppl = std::exp(s / double(r.nll.size()));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

SampleParams sample_params(const SamplerOptions& o) { return {o.temperature, o.top_k, o.top_p, o.min_p}; }

int32_t sample_token(const float* logits, int64_t V, const SampleParams& p, double u01,
                     std::vector<std::pair<float, int32_t>>& cand) {
  if (p.temperature == 0.0f) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = i;
    return int32_t(best);
  }
  cand.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) cand[size_t(i)] = {logits[i] / p.temperature, int32_t(i)};
  const int64_t k = (p.top_k > 0 && p.top_k < V) ? p.top_k : V;
  // A strict total order (ties by lower id), so the kept set and its order do not depend on the sort's algorithm.
  auto before = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::vector<double> pr;
  double total = 0;
  // `sorted` candidates are in the rule's order (a prefix of it while the whole vocabulary is kept).
  size_t sorted = 0;
  if (k < V || V <= kSampleSortedTotalMax) {
    if (k < V) {
      std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), before);
      cand.resize(size_t(k));
    } else {
      std::sort(cand.begin(), cand.end(), before);
    }
    sorted = cand.size();
    const float mx = cand[0].first;
    pr.resize(cand.size());
    for (size_t i = 0; i < cand.size(); ++i) total += (pr[i] = std::exp(double(cand[i].first - mx)));
  } else {
    // The whole (large) vocabulary: the total in id order, blocks of kSampleTotalBlock, without sorting; then only
    // as much of the rule's order as the cuts below need (the top 64, 256, ... by partial sorts, whose prefixes
    // are those of the full order since the order is strict).
    float mx = cand[0].first;
    for (const auto& c : cand) mx = std::max(mx, c.first);
    const size_t block = size_t(kSampleTotalBlock);
    for (size_t b = 0; b < cand.size(); b += block) {
      double s = 0;
      for (size_t i = b; i < std::min(cand.size(), b + block); ++i) s += std::exp(double(cand[i].first - mx));
      total += s;
    }
  }
  // Sorts (a prefix of) the candidates far enough to read position i, and returns p_i.
  auto prob = [&](size_t i) {
    if (i >= sorted) {
      const size_t m = std::min(cand.size(), std::max<size_t>(64, 4 * sorted));
      std::partial_sort(cand.begin() + std::ptrdiff_t(sorted), cand.begin() + std::ptrdiff_t(m), cand.end(), before);
      for (size_t j = sorted; j < m; ++j) pr.push_back(std::exp(double(cand[j].first - cand[0].first)));
      sorted = m;
    }
    return pr[i];
  };
  // top-p: smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * p(best).
  size_t keep = cand.size();
  double acc = 0;
  for (size_t i = 0; i < cand.size(); ++i) {
    const double pi = prob(i);
    if (p.min_p > 0 && pi < p.min_p * pr[0]) { keep = i; break; }
    acc += pi / total;
    if (acc >= p.top_p) { keep = i + 1; break; }
  }
  keep = std::max<size_t>(keep, 1);
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += pr[i];
  double x = u01 * kept;  // what uniform_real_distribution(0, kept) computes from the same draw
  for (size_t i = 0; i < keep; ++i) {
    x -= pr[i];
    if (x <= 0) return cand[i].second;
  }
  return cand[keep - 1].second;
}

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {
  if (!(o.temperature >= 0)) throw Error("--temp must be >= 0");
  if (o.top_k < 0) throw Error("--top-k must be >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) throw Error("--top-p must be in (0, 1]");
  if (!(o.min_p >= 0 && o.min_p < 1)) throw Error("--min-p must be in [0, 1)");
}

double Sampler::draw() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

int32_t Sampler::sample(const float* logits, int64_t V) {
  const SampleParams p = sample_params(o_);
  const double u01 = p.temperature == 0.0f ? 0.0 : draw();
  return sample_token(logits, V, p, u01, cand_);
}

int32_t Sampler::sample(Backend& be, const float* logits, int64_t V) {
  if (be.host_memory()) return sample(logits, V);
  const SampleParams p = sample_params(o_);
  const double u01 = p.temperature == 0.0f ? 0.0 : draw();
  const int32_t id = be.sample(logits, V, p, u01);
  if (id >= 0) return id;
  row_.resize(size_t(V));
  be.download(row_.data(), logits, size_t(V) * sizeof(float));
  return sample_token(row_.data(), V, p, u01, cand_);
}

}  // namespace sllm
