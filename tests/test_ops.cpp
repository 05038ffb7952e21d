// Op tests: each CPU kernel against a scalar (double precision) reference written here from the definition.
#include <gtest/gtest.h>

#include <cmath>    // std::sqrt, std::erf, std::exp, std::cos, std::sin, std::tanh
#include <random>   // std::mt19937
#include <vector>   // std::vector

#include "core/tensor.h"   // from_f32
#include "cpu/kernels.h"   // the kernels under test
#include "model/config.h"  // alibi_slopes
#include "ops/backend.h"   // cpu_backend

namespace sllm {
namespace {

std::vector<float> randv(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

TEST(Ops, RmsNormMatchesDefinition) {
  const int64_t T = 3, D = 77;
  auto x = randv(size_t(T * D), 1), w = randv(size_t(D), 2);
  std::vector<float> y(size_t(T * D), NAN);
  cpu::rmsnorm(x.data(), w.data(), 1e-5f, T, D, y.data());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(x[size_t(t * D + i)]) * x[size_t(t * D + i)];
    const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
    for (int64_t i = 0; i < D; ++i)
      ASSERT_NEAR(y[size_t(t * D + i)], x[size_t(t * D + i)] * inv * w[size_t(i)], 1e-5);
  }
}

TEST(Ops, LayerNormMatchesDefinitionWithAndWithoutBias) {
  const int64_t T = 4, D = 50;
  auto x = randv(size_t(T * D), 3, 2.0f), w = randv(size_t(D), 4), b = randv(size_t(D), 5);
  for (const float* bias : {static_cast<const float*>(b.data()), static_cast<const float*>(nullptr)}) {
    std::vector<float> y(size_t(T * D), NAN);
    cpu::layernorm(x.data(), w.data(), bias, 1e-5f, T, D, y.data());
    for (int64_t t = 0; t < T; ++t) {
      double m = 0, v = 0;
      for (int64_t i = 0; i < D; ++i) m += x[size_t(t * D + i)];
      m /= D;
      for (int64_t i = 0; i < D; ++i) v += (x[size_t(t * D + i)] - m) * (x[size_t(t * D + i)] - m);
      v /= D;
      for (int64_t i = 0; i < D; ++i) {
        const double ref = (x[size_t(t * D + i)] - m) / std::sqrt(v + 1e-5) * w[size_t(i)] + (bias ? bias[i] : 0.0);
        ASSERT_NEAR(y[size_t(t * D + i)], ref, 2e-5);
      }
    }
  }
}

TEST(Ops, ActivationsMatchDefinitions) {
  auto x = randv(1000, 6, 3.0f);
  auto a = x, b = x, c = x;
  cpu::gelu_erf(a.data(), 1000);
  cpu::gelu_tanh(b.data(), 1000);
  cpu::relu(c.data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    ASSERT_NEAR(a[i], 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-5);
    ASSERT_NEAR(b[i], 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-5);
    ASSERT_EQ(c[i], v > 0 ? float(v) : 0.0f);
  }
  const int64_t T = 3, F = 33;
  auto g = randv(size_t(T * 40), 7), u = randv(size_t(T * 50), 8);
  std::vector<float> o(size_t(T * F), NAN);
  cpu::swiglu(g.data(), 40, u.data(), 50, T, F, o.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < F; ++i) {
      const double gv = g[size_t(t * 40 + i)];
      ASSERT_NEAR(o[size_t(t * F + i)], gv / (1 + std::exp(-gv)) * u[size_t(t * 50 + i)], 1e-5);
    }
}

// RoPE, full and partial, rotate-half and interleaved pairs, against the complex-rotation definition.
TEST(Ops, RopeMatchesDefinition) {
  const int64_t T = 3, H = 2, hd = 16;
  for (int64_t rot : {int64_t(16), int64_t(4)}) {
    for (bool inter : {false, true}) {
      auto x = randv(size_t(T * H * hd), 9);
      auto y = x;
      std::vector<int64_t> pos = {0, 5, 4'000'003};
      std::vector<float> c(size_t(T * rot / 2)), s(size_t(T * rot / 2));
      cpu::rope_tables(pos.data(), T, rot, 10000.0, c.data(), s.data());
      cpu::rope_apply(y.data(), T, H, hd, H * hd, rot, c.data(), s.data(), inter);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const float* xi = &x[size_t((t * H + h) * hd)];
          const float* yi = &y[size_t((t * H + h) * hd)];
          for (int64_t i = 0; i < rot / 2; ++i) {
            const double ang = double(pos[size_t(t)]) * std::pow(10000.0, -2.0 * double(i) / double(rot));
            const int64_t a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + rot / 2;
            ASSERT_NEAR(yi[a], xi[a] * std::cos(ang) - xi[b] * std::sin(ang), 2e-5) << rot << inter;
            ASSERT_NEAR(yi[b], xi[b] * std::cos(ang) + xi[a] * std::sin(ang), 2e-5) << rot << inter;
          }
          for (int64_t i = rot; i < hd; ++i) ASSERT_EQ(yi[i], xi[i]);  // partial rotary: the rest passes through
        }
    }
  }
}

TEST(Ops, AlibiSlopesFollowMpt) {
  std::vector<float> s(8);
  alibi_slopes(8, 8.0, s.data());
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(s[size_t(i)], float(std::pow(2.0, -(i + 1))));
  std::vector<float> s6(6);
  alibi_slopes(6, 8.0, s6.data());  // power of two 8: odd-indexed first, then even-indexed
  const double want[6] = {1.0 / 4, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2, 1.0 / 8};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(s6[size_t(i)], float(want[i]));
}

// The paper's definition of streaming attention for query token t and head h: the admitted keys listed explicitly
// (sinks 0..S-1 and tokens t-R..t, in cache order), scores with ALiBi at the in-cache distance when `slopes`, an
// extra denominator logit when `extra`, a plain softmax in double. K, V: (tokens, Hkv, hd); Qa, Qs: (tokens, H, hd).
std::vector<double> attention_by_definition(const cpu::AttnGeometry& g, const std::vector<float>& K,
                                            const std::vector<float>& V, const std::vector<float>& Qa,
                                            const std::vector<float>& Qs, const float* slopes, const float* extra,
                                            double scale, int64_t t, int64_t h) {
  const int64_t H = g.n_heads, Hkv = g.n_kv_heads, hd = g.head_dim, kv = h / (H / Hkv);
  std::vector<int64_t> keys;
  for (int64_t a = 0; a <= t; ++a)
    if (a < g.sinks || a >= t - g.window) keys.push_back(a);
  const int64_t len = int64_t(keys.size());
  std::vector<double> sc;
  double mx = extra ? double(extra[h]) : -1e300;
  for (int64_t j = 0; j < len; ++j) {
    const int64_t a = keys[size_t(j)];
    const float* q = (a < g.sinks ? &Qs[0] : &Qa[0]) + (t * H + h) * hd;
    double s = 0;
    for (int64_t d = 0; d < hd; ++d) s += double(q[d]) * K[size_t((a * Hkv + kv) * hd + d)];
    s *= scale;
    if (slopes) s -= slopes[h] * double(len - 1 - j);  // in-cache distance
    sc.push_back(s);
    mx = std::max(mx, s);
  }
  double den = extra ? std::exp(extra[h] - mx) : 0.0;
  for (auto& s : sc) den += (s = std::exp(s - mx));
  std::vector<double> out(size_t(hd), 0.0);
  for (int64_t d = 0; d < hd; ++d) {
    for (int64_t j = 0; j < len; ++j)
      out[size_t(d)] += sc[size_t(j)] * V[size_t((keys[size_t(j)] * Hkv + kv) * hd + d)];
    out[size_t(d)] /= den;
  }
  return out;
}

// Streaming attention against a direct implementation of the paper's definition: for each query, build the list of
// admitted (key, value, in-cache distance) explicitly, apply RoPE-free scores with ALiBi and a plain softmax.
// The kernel reads a ring buffer that has wrapped several times, GQA, sinks, and an extra denominator logit.
TEST(Ops, StreamingAttentionMatchesDefinition) {
  cpu::AttnGeometry g;
  g.n_heads = 6;
  g.n_kv_heads = 2;
  g.head_dim = 8;
  g.sinks = 3;
  g.window = 5;
  g.ring = 5 + 4;  // window + max chunk
  g.capacity = g.sinks + g.ring;
  const int64_t hd = g.head_dim, H = g.n_heads, Hkv = g.n_kv_heads, N = 40;
  // All keys/values of the stream (token-major), then store them as the cache would hold them at each chunk.
  auto K = randv(size_t(N * Hkv * hd), 10), V = randv(size_t(N * Hkv * hd), 11);
  auto Qa = randv(size_t(N * H * hd), 12), Qs = randv(size_t(N * H * hd), 13);
  std::vector<float> slopes(static_cast<size_t>(H));
  auto extra = randv(size_t(H), 14);
  alibi_slopes(H, 8.0, slopes.data());
  std::vector<float> kc(size_t(Hkv * g.capacity * hd), NAN), vc(kc.size(), NAN);
  for (bool with_alibi : {false, true}) {
    for (int64_t t0 = 0; t0 < N;) {
      const int64_t T = std::min<int64_t>(4, N - t0);
      cpu::kv_store(&K[size_t(t0 * Hkv * hd)], Hkv * hd, &V[size_t(t0 * Hkv * hd)], Hkv * hd, T, t0, kc.data(),
                    vc.data(), g);
      std::vector<float> out(size_t(T * H * hd), NAN);
      cpu::attention_stream(&Qa[size_t(t0 * H * hd)], &Qs[size_t(t0 * H * hd)], H * hd, T, t0, kc.data(), vc.data(),
                            g, 0.3f, with_alibi ? slopes.data() : nullptr, extra.data(), out.data());
      for (int64_t i = 0; i < T; ++i) {
        const int64_t t = t0 + i;
        for (int64_t h = 0; h < H; ++h) {
          const std::vector<double> want = attention_by_definition(
              g, K, V, Qa, Qs, with_alibi ? slopes.data() : nullptr, extra.data(), 0.3, t, h);
          for (int64_t d = 0; d < hd; ++d)
            ASSERT_NEAR(out[size_t((i * H + h) * hd + d)], want[size_t(d)], 2e-5) << "t=" << t << " h=" << h;
        }
      }
      t0 += T;
    }
  }
}

// The same definition for the head sizes of the AVX-512 kernels (32..128), with windows long enough for several key
// blocks of 16, partial blocks, key-range splits at decode, grouped queries (3 heads per KV head) and multi-head
// attention (one), for an f32 and an f16 cache (whose reference uses the f16-rounded keys and values).
TEST(Ops, StreamingAttentionMatchesDefinitionForSimdHeadSizes) {
  for (int64_t hd : {32, 64, 80, 96, 128})
    for (bool f16 : {false, true})
    for (int64_t Hkv : {2, 4}) {  // grouped (3 query heads per KV head: the group kernel) and multi-head
      cpu::AttnGeometry g;
      g.n_heads = Hkv == 2 ? 6 : 4;
      g.n_kv_heads = Hkv;
      g.head_dim = hd;
      g.sinks = 4;
      g.window = 300;
      g.ring = 300 + 8;
      g.capacity = g.sinks + g.ring;
      g.kv_f16 = f16;
      const int64_t H = g.n_heads, N = 700;
      auto K = randv(size_t(N * Hkv * hd), 31), V = randv(size_t(N * Hkv * hd), 32);
      auto Qa = randv(size_t(N * H * hd), 33), Qs = randv(size_t(N * H * hd), 34), extra = randv(size_t(H), 35);
      for (auto* a : {&Qa, &Qs})
        for (auto& x : *a) x *= 3.0f;  // a peaked softmax
      if (f16)
        for (auto* a : {&K, &V})
          for (auto& x : *a) x = f16_to_f32(f32_to_f16(x));
      std::vector<float> slopes(static_cast<size_t>(H));
      alibi_slopes(H, 8.0, slopes.data());
      const size_t cn = size_t(Hkv * g.capacity * hd);
      std::vector<float> kc(cn, NAN), vc(cn, NAN);
      std::vector<uint16_t> kh(cn, 0x7e00), vh(cn, 0x7e00);  // NaN halves in unwritten slots
      const bool with_alibi = hd % 64 == 0;
      for (int64_t t0 = 0; t0 < N;) {
        const int64_t T = (t0 / 50) % 2 == 0 ? 1 : std::min<int64_t>(8, N - t0);
        void* kp = f16 ? static_cast<void*>(kh.data()) : kc.data();
        void* vp = f16 ? static_cast<void*>(vh.data()) : vc.data();
        cpu::kv_store(&K[size_t(t0 * Hkv * hd)], Hkv * hd, &V[size_t(t0 * Hkv * hd)], Hkv * hd, T, t0, kp, vp, g);
        std::vector<float> out(size_t(T * H * hd), NAN);
        cpu::attention_stream(&Qa[size_t(t0 * H * hd)], &Qs[size_t(t0 * H * hd)], H * hd, T, t0, kp, vp, g,
                              0.125f, with_alibi ? slopes.data() : nullptr, hd == 80 ? extra.data() : nullptr,
                              out.data());
        for (int64_t i = 0; i < T; ++i) {
          const int64_t t = t0 + i;
          if (t % 37 != 0 && t != N - 1 && t != 305 && t != 306) continue;
          for (int64_t h = 0; h < H; ++h) {
            const std::vector<double> want = attention_by_definition(
                g, K, V, Qa, Qs, with_alibi ? slopes.data() : nullptr, hd == 80 ? extra.data() : nullptr, 0.125, t, h);
            for (int64_t d = 0; d < hd; ++d)
              ASSERT_NEAR(out[size_t((i * H + h) * hd + d)], want[size_t(d)], 2e-5)
                  << "hd " << hd << (f16 ? " f16" : " f32") << " Hkv " << Hkv << " t=" << t << " h=" << h << " d=" << d;
          }
        }
        t0 += T;
      }
    }
}

TEST(Ops, EmbeddingConvertsEveryDtype) {
  const int64_t Vn = 5, D = 7;
  auto tab = randv(size_t(Vn * D), 15);
  std::vector<uint16_t> h(tab.size()), bf(tab.size());
  from_f32(tab.data(), tab.size(), DType::F16, h.data());
  from_f32(tab.data(), tab.size(), DType::BF16, bf.data());
  const int32_t ids[3] = {4, 0, 4};
  std::vector<float> o(size_t(3 * D));
  cpu::embedding(ids, 3, tab.data(), DType::F32, D, o.data());
  for (int64_t j = 0; j < D; ++j) EXPECT_EQ(o[size_t(j)], tab[size_t(4 * D + j)]);
  cpu::embedding(ids, 3, h.data(), DType::F16, D, o.data());
  for (int64_t j = 0; j < D; ++j) EXPECT_EQ(o[size_t(D + j)], f16_to_f32(h[size_t(j)]));
  cpu::embedding(ids, 3, bf.data(), DType::BF16, D, o.data());
  for (int64_t j = 0; j < D; ++j) EXPECT_EQ(o[size_t(2 * D + j)], bf16_to_f32(bf[size_t(4 * D + j)]));
}

TEST(Ops, HalfConversionsRoundToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);          // rounds to inf
  EXPECT_EQ(f32_to_f16(5.9604645e-08f), 0x0001);    // smallest subnormal
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie -> even
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  // tie -> even
  for (uint32_t h = 0; h < 0x7c00; ++h) ASSERT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h);  // exact round trip
}

}  // namespace
}  // namespace sllm

namespace sllm {
namespace {

// An f16 cache gives the attention of the f16-rounded keys and values (same kernel, half the bytes).
TEST(Ops, StreamingAttentionWithHalfCache) {
  for (int64_t hd : {int64_t(64), int64_t(12)}) {  // the AVX-512 path and the generic path
    AttnGeometry g;
    g.n_heads = 4;
    g.n_kv_heads = 2;
    g.head_dim = hd;
    g.sinks = 2;
    g.window = 6;
    g.ring = 7;
    g.capacity = 9;
    const int64_t N = 30, Hkv = 2, H = 4;
    auto K = randv(size_t(N * Hkv * hd), 21), V = randv(size_t(N * Hkv * hd), 22), Q = randv(size_t(N * H * hd), 23);
    auto Kr = K, Vr = V;  // f16-rounded copies for the f32 reference run
    for (auto& x : Kr) x = f16_to_f32(f32_to_f16(x));
    for (auto& x : Vr) x = f16_to_f32(f32_to_f16(x));
    AttnGeometry g32 = g;
    AttnGeometry g16 = g;
    g16.kv_f16 = true;
    std::vector<float> c32(size_t(Hkv * g.capacity * hd)), v32(c32.size());
    std::vector<uint16_t> c16(c32.size()), v16(c32.size());
    for (int64_t t = 0; t < N; ++t) {
      cpu::kv_store(&Kr[size_t(t * Hkv * hd)], Hkv * hd, &Vr[size_t(t * Hkv * hd)], Hkv * hd, 1, t, c32.data(),
                    v32.data(), g32);
      cpu::kv_store(&K[size_t(t * Hkv * hd)], Hkv * hd, &V[size_t(t * Hkv * hd)], Hkv * hd, 1, t, c16.data(),
                    v16.data(), g16);
      std::vector<float> a(size_t(H * hd)), b(size_t(H * hd));
      const float* q = &Q[size_t(t * H * hd)];
      cpu::attention_stream(q, q, H * hd, 1, t, c32.data(), v32.data(), g32, 0.25f, nullptr, nullptr, a.data());
      cpu::attention_stream(q, q, H * hd, 1, t, c16.data(), v16.data(), g16, 0.25f, nullptr, nullptr, b.data());
      for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5) << "hd " << hd << " t " << t;
    }
  }
}

}  // namespace
}  // namespace sllm
