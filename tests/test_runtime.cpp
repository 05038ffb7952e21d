// Runtime tests: the cache's slot arithmetic and fixed footprint, chunk sizes, sampling, error paths.
#include <gtest/gtest.h>

#include <algorithm>  // std::sort, std::min, std::max
#include <cmath>    // std::exp, std::round
#include <map>      // std::map
#include <random>   // std::mt19937, std::normal_distribution
#include <string>   // std::string
#include <utility>  // std::pair
#include <vector>   // std::vector

#include "core/error.h"        // Error
#include "model/decoder.h"     // Decoder
#include "model/model.h"       // load_model
#include "runtime/kv_cache.h"  // KVCache
#include "runtime/stream.h"    // Sampler, sample_token, stream_nll

namespace sllm {
namespace {

const std::string kDir = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/models/";

TEST(KVCache, SlotsAreSinksThenARing) {
  Model m = load_model(kDir + "llama");
  KVCache c(cpu_backend(), m.cfg, 4, 10, 3);
  EXPECT_EQ(c.geometry().ring, 13);
  EXPECT_EQ(c.geometry().capacity, 17);
  for (int64_t t = 0; t < 4; ++t) EXPECT_EQ(c.slot(t), t);
  EXPECT_EQ(c.slot(4), 4);
  EXPECT_EQ(c.slot(16), 16);
  EXPECT_EQ(c.slot(17), 4);  // wrapped
  EXPECT_EQ(c.slot(4 + 13 * 1000 + 5), 9);
  // Footprint: 2 (K, V) x layers x kv heads x capacity x head_dim floats, fixed at construction.
  EXPECT_EQ(c.bytes(), size_t(2 * m.cfg.n_layers * m.cfg.n_kv_heads * 17 * m.cfg.head_dim * 4));
}

// A stream 50x longer than the cache runs in the same allocation, holds S+R tokens, and the decoder refuses a
// chunk larger than the cache was sized for.
TEST(KVCache, LongStreamKeepsTheFootprint) {
  Model m = load_model(kDir + "gpt_neox");
  Decoder dec(m, cpu_backend(), 8);
  KVCache c(cpu_backend(), m.cfg, 2, 6, 8);
  const size_t bytes = c.bytes();
  std::vector<int32_t> ids(8, 7);
  for (int i = 0; i < 50; ++i) dec.forward(ids.data(), 8, c, Logits::None);
  EXPECT_EQ(c.n_past(), 400);
  EXPECT_EQ(c.held(), 8);
  EXPECT_EQ(c.bytes(), bytes);
  KVCache small(cpu_backend(), m.cfg, 2, 6, 4);
  EXPECT_THROW(dec.forward(ids.data(), 8, small, Logits::None), Error);
  int32_t bad = int32_t(m.cfg.vocab_size);
  EXPECT_THROW(dec.forward(&bad, 1, c, Logits::Last), Error);
}

TEST(KVCache, RejectsBadGeometry) {
  Model m = load_model(kDir + "llama");
  EXPECT_THROW(KVCache(cpu_backend(), m.cfg, -1, 10, 1), Error);
  EXPECT_THROW(KVCache(cpu_backend(), m.cfg, 4, 0, 1), Error);
  EXPECT_THROW(KVCache(cpu_backend(), m.cfg, 4, 10, 0), Error);
}

// Recompute re-encodes the last L = sinks + window tokens from scratch; with a window covering the whole stream
// it is exactly dense.
TEST(Stream, RecomputeWithLongWindowEqualsDense) {
  Model m = load_model(kDir + "falcon_mqa");
  std::vector<int32_t> ids;
  for (int i = 0; i < 30; ++i) ids.push_back((i * 37 + 11) % 256);
  PplOptions d;
  d.mode = CacheMode::Dense;
  PplOptions r;
  r.mode = CacheMode::Recompute;
  r.sinks = 0;
  r.window = 64;
  const auto a = stream_nll(m, cpu_backend(), ids, d).nll;
  const auto b = stream_nll(m, cpu_backend(), ids, r).nll;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5);
  r.window = 8;  // a short window differs once the stream is longer than it
  const auto c = stream_nll(m, cpu_backend(), ids, r).nll;
  EXPECT_NEAR(c[3], a[3], 1e-5);
  EXPECT_GT(std::fabs(c[25] - a[25]), 1e-4);
}

TEST(Sampler, GreedyAndTopKOnePickTheArgmax) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
  SamplerOptions g;
  g.temperature = 0;
  EXPECT_EQ(Sampler(g).sample(l.data(), 4), 1);
  SamplerOptions k;
  k.temperature = 1.0f;
  k.top_k = 1;
  Sampler s(k);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampler, FollowsTheSoftmaxAndIsSeeded) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f};
  SamplerOptions o;
  o.temperature = 1.0f;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.seed = 42;
  Sampler s(o), s2(o);
  std::map<int, int> n;
  const int N = 20000;
  for (int i = 0; i < N; ++i) {
    const int a = s.sample(l.data(), 3);
    ASSERT_EQ(a, s2.sample(l.data(), 3));  // same seed, same stream
    ++n[a];
  }
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(double(n[i]) / N, std::exp(double(i)) / z, 0.015) << i;
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  std::vector<float> l = {5.0f, 0.0f, 0.0f, 0.0f};  // p(0) ~ 0.98
  SamplerOptions o;
  o.temperature = 1.0f;
  o.top_k = 0;
  o.top_p = 0.5f;
  Sampler s(o);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.sample(l.data(), 4), 0);
  SamplerOptions bad;
  bad.top_p = 0.0f;
  EXPECT_THROW(Sampler{bad}, Error);
}

// sample_token with u01 = 0 picks the first candidate in the rule's order and u01 near 1 the last kept one, so
// these pin the order (ties by lower id) and the kept set of each cut.
constexpr double kNearOne = 0.999999;

int32_t pick(const std::vector<float>& l, float temperature, int64_t top_k, float top_p, float min_p, double u01) {
  std::vector<std::pair<float, int32_t>> scratch;
  return sample_token(l.data(), int64_t(l.size()), SampleParams{temperature, top_k, top_p, min_p}, u01, scratch);
}

TEST(SampleToken, BreaksTiesByLowerId) {
  const std::vector<float> l = {1.0f, 3.0f, 3.0f, 0.0f, 3.0f, -0.0f};
  EXPECT_EQ(pick(l, 0.0f, 40, 1.0f, 0.0f, kNearOne), 1);  // greedy: the first maximum
  EXPECT_EQ(pick(l, 1.0f, 2, 1.0f, 0.0f, 0.0), 1);
  EXPECT_EQ(pick(l, 1.0f, 2, 1.0f, 0.0f, kNearOne), 2);   // id 4 ties with 1 and 2 but comes after them
  EXPECT_EQ(pick(l, 1.0f, 5, 1.0f, 0.0f, kNearOne), 3);   // 0 and -0 are equal: the lower id first
  EXPECT_EQ(pick(l, 1.0f, 0, 1.0f, 0.0f, kNearOne), 5);   // all six: -0.0 (id 5) is last
  EXPECT_EQ(pick(l, 1.0f, 0, 1.0f, 0.0f, 0.0), 1);
}

TEST(SampleToken, RespectsTopKTopPAndMinP) {
  // p ~ (0.644, 0.237, 0.087, 0.032): cumulative 0.644, 0.881, 0.968, 1.
  const std::vector<float> l = {-1.0f, 0.0f, 2.0f, 1.0f};  // the rule's order: ids 2, 3, 1, 0
  EXPECT_EQ(pick(l, 1.0f, 0, 1.0f, 0.0f, kNearOne), 0);
  EXPECT_EQ(pick(l, 1.0f, 2, 1.0f, 0.0f, kNearOne), 3);
  EXPECT_EQ(pick(l, 1.0f, 0, 0.9f, 0.0f, kNearOne), 1);   // 0.881 < 0.9 <= 0.968: three kept
  EXPECT_EQ(pick(l, 1.0f, 0, 0.88f, 0.0f, kNearOne), 3);  // two kept
  EXPECT_EQ(pick(l, 1.0f, 0, 0.5f, 0.0f, kNearOne), 2);   // the best alone reaches 0.5
  EXPECT_EQ(pick(l, 1.0f, 0, 1.0f, 0.3f, kNearOne), 3);   // p/p_best = 1, 0.37, 0.14: 0.14 < 0.3 cuts
  EXPECT_EQ(pick(l, 1.0f, 0, 1.0f, 0.1f, kNearOne), 1);
  // u01 walks the kept mass: 0.5 of (1 + e^-1) lies in the first candidate, 0.8 in the second.
  EXPECT_EQ(pick(l, 1.0f, 2, 1.0f, 0.0f, 0.5), 2);
  EXPECT_EQ(pick(l, 1.0f, 2, 1.0f, 0.0f, 0.8), 3);
  // Temperature divides the logits first: at T = 0.01 the best candidate holds all the mass.
  EXPECT_EQ(pick(l, 0.01f, 0, 0.999f, 0.0f, kNearOne), 2);
}

// The rule written out the slow way (a full sort, then every sum as the rule states it), against sample_token's
// fast path for a whole large vocabulary (the total in id order by blocks, only a prefix of the order sorted).
int32_t rule_by_full_sort(const std::vector<float>& logits, const SampleParams& p, double u01) {
  const int64_t V = int64_t(logits.size());
  std::vector<std::pair<float, int32_t>> c(logits.size());
  for (int64_t i = 0; i < V; ++i) c[size_t(i)] = {logits[size_t(i)] / p.temperature, int32_t(i)};
  const std::vector<std::pair<float, int32_t>> by_id = c;
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  const int64_t k = p.top_k > 0 && p.top_k < V ? p.top_k : V;
  c.resize(size_t(k));
  std::vector<double> pr;
  for (const auto& x : c) pr.push_back(std::exp(double(x.first - c[0].first)));
  double total = 0;
  if (k == V && V > kSampleSortedTotalMax) {
    const size_t block = size_t(kSampleTotalBlock);
    for (size_t b = 0; b < by_id.size(); b += block) {
      double s = 0;
      for (size_t i = b; i < std::min(by_id.size(), b + block); ++i)
        s += std::exp(double(by_id[i].first - c[0].first));
      total += s;
    }
  } else {
    for (double x : pr) total += x;
  }
  size_t keep = c.size();
  double acc = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (p.min_p > 0 && pr[i] < p.min_p * pr[0]) { keep = i; break; }
    acc += pr[i] / total;
    if (acc >= p.top_p) { keep = i + 1; break; }
  }
  keep = std::max<size_t>(keep, 1);
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += pr[i];
  double x = u01 * kept;
  for (size_t i = 0; i < keep; ++i) {
    x -= pr[i];
    if (x <= 0) return c[i].second;
  }
  return c[keep - 1].second;
}

TEST(SampleToken, WholeLargeVocabularyFollowsTheRuleWithoutAFullSort) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::pair<float, int32_t>> scratch;
  for (int64_t V : {int64_t(1000), int64_t(1500), int64_t(49152)})
    for (int row = 0; row < 3; ++row) {
      std::vector<float> l(static_cast<size_t>(V));
      for (auto& x : l) x = normal(rng);
      if (row == 1)
        for (auto& x : l) x = std::round(x * 4.0f) / 4.0f;  // many exact ties
      if (row == 2) l[size_t(V / 3)] = 40.0f;              // one dominant token
      for (float temperature : {0.7f, 1.3f})
        for (float top_p : {0.5f, 0.9f, 0.95f, 1.0f})
          for (float min_p : {0.0f, 0.05f})
            for (double u01 : {0.0, 0.3, 0.77, 0.999999}) {
              const SampleParams p{temperature, 0, top_p, min_p};
              ASSERT_EQ(sample_token(l.data(), V, p, u01, scratch), rule_by_full_sort(l, p, u01))
                  << "V " << V << " row " << row << " T " << temperature << " top_p " << top_p << " min_p "
                  << min_p << " u01 " << u01;
            }
    }
}

TEST(Sampler, OnTheCpuBackendMatchesTheHostRow) {
  std::vector<float> l(300);
  for (size_t i = 0; i < l.size(); ++i) l[i] = float((i * 7919) % 61) * 0.1f;  // many exact ties
  SamplerOptions o;
  o.temperature = 0.9f;
  o.top_k = 50;
  o.top_p = 0.97f;
  o.seed = 7;
  Sampler a(o), b(o);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(a.sample(cpu_backend(), l.data(), 300), b.sample(l.data(), 300));
}

}  // namespace
}  // namespace sllm
