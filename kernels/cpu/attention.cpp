// CPU kernel: attention over the StreamingLLM cache (sinks + ring buffer), for one query or a chunk of queries.
//
// Admitted keys of query t, in cache order: sink slots 0..min(S,t+1)-1 (scored with the query rotated at its
// in-cache position, `q_sink`), then recent tokens max(S,t-R)..t (scored with the query rotated at its absolute
// position, `q_abs`), which occupy at most two contiguous runs of the ring. Nothing of size T x T is materialised.
//
// Work unit: one (query token, KV head, range of admitted keys). All query heads of the KV head's group are scored
// in the same pass, so each K and V row is read once per group (GQA/MQA without copies). At decode (T = 1) the
// keys of each KV head are split into ranges so that both cores have work; every range produces a partial
// softmax (max m, sum l, unnormalised output) and the ranges are merged exactly (flash-decoding):
//   m = max_r m_r,   l = sum_r l_r e^{m_r - m} (+ e^{extra - m}),   out = sum_r o_r e^{m_r - m} / l.
// Numerics: scores and softmax in f32 with the max subtracted; exp is a vectorisable polynomial with < 2 ulp error
// over the range used (arguments <= 0).
#include <algorithm>  // std::max, std::min
#include <cmath>      // INFINITY
#include <cstring>    // std::memcpy
#include <immintrin.h>  // AVX-512 intrinsics
#include <omp.h>      // omp_get_max_threads
#include <vector>     // std::vector

#include "cpu/kernels.h"

namespace sllm::cpu {

namespace {

// exp(x) for x in [-87, 0] (and any x below: returns 0). Cody-Waite range reduction + degree-6 polynomial; written
// as plain float code so the compiler vectorises loops over it.
inline float fast_exp(float x) {
  x = std::max(x, -87.0f);
  const float n = __builtin_roundevenf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return p * scale;
}

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Cache elements are f32 or IEEE half (uint16_t); these read one as f32.
inline float kv_at(const float* p, int64_t i) { return p[i]; }
inline float kv_at(const uint16_t* p, int64_t i) { return f16_to_f32(p[i]); }

constexpr int kMaxGroup = 64;  // query heads per KV head handled in one pass (larger groups are split)

// Partial attention of `ng` query heads (one KV head) over admitted keys [k0, k1) of query token t.
struct Partial {
  float m[kMaxGroup];
  float l[kMaxGroup];
};

struct Job {
  const float* qa[kMaxGroup];  // (head_dim) per head: query rotated at the absolute position
  const float* qs[kMaxGroup];  // (head_dim) per head: query rotated at the in-cache position
  float slope[kMaxGroup];
  int ng = 0;
};

// Visits admitted keys [k0, k1) of query token t in cache order: fn(local index, slot, in-cache distance, is_sink).
// Key index k < n_sink is sink slot k; otherwise recent token a_lo + (k - n_sink), whose slot walks the ring.
template <class Fn>
inline void for_keys(int64_t t, int64_t k0, int64_t k1, const AttnGeometry& g, Fn&& fn) {
  const int64_t S = g.sinks, R = g.window;
  const int64_t n_sink = std::min(S, t + 1);
  const int64_t a_lo = std::max(S, t - R);
  const int64_t qpos = std::min(t, S + R);
  int64_t k = k0;
  for (; k < std::min(k1, n_sink); ++k) fn(k - k0, k, qpos - k, true);
  if (k < k1) {
    int64_t a = a_lo + (k - n_sink);
    int64_t slot = S + (a - S) % g.ring;
    for (; k < k1; ++k, ++a) {
      fn(k - k0, slot, t - a, false);
      if (++slot == S + g.ring) slot = S;
    }
  }
}

#if defined(__AVX512F__)
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// head_dim = 16 * NC: one K/V row is NC zmm registers. KT: the cache element (float or IEEE half).
template <int NC, class KT>
void attend_range_avx512(const Job& j, int64_t t, int64_t k0, int64_t k1, const KT* K, const KT* V,
                         const AttnGeometry& g, float scale, bool alibi, float* out, Partial& p, float* sc) {
  constexpr int64_t hd = 16 * NC;
  const int64_t n = k1 - k0;
  for (int h = 0; h < j.ng; ++h) {
    // Pass 1: scores of this head (K rows stay in L1/L2 across the heads of the group).
    __m512 qa[NC], qs[NC];
    for (int c = 0; c < NC; ++c) {
      qa[c] = _mm512_loadu_ps(j.qa[h] + 16 * c);
      qs[c] = _mm512_loadu_ps(j.qs[h] + 16 * c);
    }
    float* r = sc + h * n;
    float m = -INFINITY;
    const float slope = j.slope[h];
    for_keys(t, k0, k1, g, [&](int64_t i, int64_t slot, int64_t dist, bool sink) {
      const KT* kr = K + slot * hd;
      const __m512* q = sink ? qs : qa;
      __m512 acc = _mm512_mul_ps(q[0], load16(kr));
      for (int c = 1; c < NC; ++c) acc = _mm512_fmadd_ps(q[c], load16(kr + 16 * c), acc);
      float s = _mm512_reduce_add_ps(acc) * scale;
      if (alibi) s -= slope * float(dist);
      r[i] = s;
      m = std::max(m, s);
    });
    // Pass 2: exponentials and their sum.
    float l = 0.0f;
#pragma omp simd reduction(+ : l)
    for (int64_t i = 0; i < n; ++i) {
      r[i] = fast_exp(r[i] - m);
      l += r[i];
    }
    p.m[h] = m;
    p.l[h] = l;
    // Pass 3: weighted sum of V rows, accumulated in registers.
    __m512 o[NC];
    for (int c = 0; c < NC; ++c) o[c] = _mm512_setzero_ps();
    for_keys(t, k0, k1, g, [&](int64_t i, int64_t slot, int64_t, bool) {
      const KT* vr = V + slot * hd;
      const __m512 w = _mm512_set1_ps(r[i]);
      for (int c = 0; c < NC; ++c) o[c] = _mm512_fmadd_ps(w, load16(vr + 16 * c), o[c]);
    });
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + h * hd + 16 * c, o[c]);
  }
}
#endif

// Any head_dim: plain loops (the portable path and the reference for odd sizes).
template <class KT>
void attend_range_generic(const Job& j, int64_t t, int64_t k0, int64_t k1, const KT* K, const KT* V,
                          const AttnGeometry& g, float scale, bool alibi, float* out, Partial& p, float* sc) {
  const int64_t hd = g.head_dim, n = k1 - k0;
  for (int h = 0; h < j.ng; ++h) {
    float* r = sc + h * n;
    float m = -INFINITY;
    for_keys(t, k0, k1, g, [&](int64_t i, int64_t slot, int64_t dist, bool sink) {
      const float* q = sink ? j.qs[h] : j.qa[h];
      const KT* kr = K + slot * hd;
      float s = 0.0f;
      for (int64_t d = 0; d < hd; ++d) s += q[d] * kv_at(kr, d);
      s *= scale;
      if (alibi) s -= j.slope[h] * float(dist);
      r[i] = s;
      m = std::max(m, s);
    });
    float l = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      r[i] = fast_exp(r[i] - m);
      l += r[i];
    }
    p.m[h] = m;
    p.l[h] = l;
    float* o = out + h * hd;
    for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
    for_keys(t, k0, k1, g, [&](int64_t i, int64_t slot, int64_t, bool) {
      const KT* vr = V + slot * hd;
      const float w = r[i];
      for (int64_t d = 0; d < hd; ++d) o[d] += w * kv_at(vr, d);
    });
  }
}

// Scores, exponentiates and accumulates keys [k0, k1) of the admitted list of token t into out (ng, head_dim),
// unnormalised; returns the per-head max and sum in p. `sc` is scratch of ng * (k1 - k0) floats.
template <class KT>
void attend_range(const Job& j, int64_t t, int64_t k0, int64_t k1, const KT* K, const KT* V,
                  const AttnGeometry& g, float scale, bool alibi, float* out, Partial& p, float* sc) {
#if defined(__AVX512F__)
  switch (g.head_dim) {
    case 32: return attend_range_avx512<2>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
    case 64: return attend_range_avx512<4>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
    case 80: return attend_range_avx512<5>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
    case 96: return attend_range_avx512<6>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
    case 128: return attend_range_avx512<8>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
    default: break;
  }
#endif
  attend_range_generic(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
}

}  // namespace

void attention_stream(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                      const void* kcache, const void* vcache, const AttnGeometry& g, float scale,
                      const float* alibi, const float* extra_logit, float* out) {
  const int64_t H = g.n_heads, Hkv = g.n_kv_heads, hd = g.head_dim, S = g.sinks, R = g.window;
  const int64_t group = H / Hkv;
  const int64_t sub = (group + kMaxGroup - 1) / kMaxGroup;  // sub-groups per KV head (1 unless group > 64)
  const int64_t gsz = group / sub;                          // heads per sub-group (group % sub == 0 below)
  const int64_t units = T * Hkv * (group % sub == 0 ? sub : group);
  const int64_t ug = group % sub == 0 ? gsz : 1;  // heads per unit
  const int64_t upk = group / ug;                 // units per KV head
  // Key splits: at decode there are few (token, head) units, so split the keys to keep every thread busy.
  const int64_t max_keys = std::min(S + R + 1, S + g.ring);
  const int64_t threads = omp_get_max_threads();
  int64_t splits = 1;
  while (units * splits < 2 * threads && max_keys / (splits * 2) >= 128) splits *= 2;

  std::vector<float> part_out(size_t(units * splits * ug * hd));
  std::vector<Partial> parts(size_t(units * splits));

#pragma omp parallel if (units * splits > 1 && T * max_keys * H * hd > 32768)
  {
    std::vector<float> sc(size_t(ug * ((max_keys + splits - 1) / splits + 1)));
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < units * splits; ++w) {
      const int64_t u = w / splits, s = w % splits;
      const int64_t i = u / (Hkv * upk), rem = u % (Hkv * upk), kvh = rem / upk, h0 = kvh * group + (rem % upk) * ug;
      const int64_t t = t0 + i;
      const int64_t n_keys = std::min(S, t + 1) + (t - std::max(S, t - R) + 1) * (t >= S ? 1 : 0);
      const int64_t k0 = n_keys * s / splits, k1 = n_keys * (s + 1) / splits;
      Job j;
      j.ng = int(ug);
      for (int64_t h = 0; h < ug; ++h) {
        j.qa[h] = q_abs + i * ld_q + (h0 + h) * hd;
        j.qs[h] = q_sink + i * ld_q + (h0 + h) * hd;
        j.slope[h] = alibi ? alibi[h0 + h] : 0.0f;
      }
      Partial& p = parts[size_t(w)];
      float* o = &part_out[size_t(w * ug * hd)];
      if (k1 > k0) {
        const int64_t off = kvh * g.capacity * hd;
        if (g.kv_f16)
          attend_range(j, t, k0, k1, static_cast<const uint16_t*>(kcache) + off,
                       static_cast<const uint16_t*>(vcache) + off, g, scale, alibi != nullptr, o, p, sc.data());
        else
          attend_range(j, t, k0, k1, static_cast<const float*>(kcache) + off, static_cast<const float*>(vcache) + off,
                       g, scale, alibi != nullptr, o, p, sc.data());
      } else {
        for (int64_t h = 0; h < ug; ++h) {
          p.m[h] = -INFINITY;
          p.l[h] = 0.0f;
        }
        for (int64_t d = 0; d < ug * hd; ++d) o[d] = 0.0f;
      }
    }
  }
  // Merge the splits of every unit and normalise.
  for (int64_t u = 0; u < units; ++u) {
    const int64_t i = u / (Hkv * upk), rem = u % (Hkv * upk), kvh = rem / upk, h0 = kvh * group + (rem % upk) * ug;
    for (int64_t h = 0; h < ug; ++h) {
      float m = extra_logit ? extra_logit[h0 + h] : -INFINITY;
      for (int64_t s = 0; s < splits; ++s) m = std::max(m, parts[size_t(u * splits + s)].m[h]);
      float l = extra_logit ? fast_exp(extra_logit[h0 + h] - m) : 0.0f;
      float* o = out + (i * H + h0 + h) * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
      for (int64_t s = 0; s < splits; ++s) {
        const Partial& p = parts[size_t(u * splits + s)];
        if (p.l[h] == 0.0f) continue;
        const float c = fast_exp(p.m[h] - m);
        l += p.l[h] * c;
        const float* po = &part_out[size_t((u * splits + s) * ug * hd + h * hd)];
        for (int64_t d = 0; d < hd; ++d) o[d] += c * po[d];
      }
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
    }
  }
}

void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, void* kcache,
              void* vcache, const AttnGeometry& g) {
  const int64_t hd = g.head_dim, cap = g.capacity;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t t = t0 + i;
    const int64_t slot = t < g.sinks ? t : g.sinks + (t - g.sinks) % g.ring;
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      const size_t at = size_t((h * cap + slot) * hd);
      const float* ks = k + i * ldk + h * hd;
      const float* vs = v + i * ldv + h * hd;
      if (g.kv_f16) {
        uint16_t* kd = static_cast<uint16_t*>(kcache) + at;
        uint16_t* vd = static_cast<uint16_t*>(vcache) + at;
        for (int64_t d = 0; d < hd; ++d) {
          kd[d] = f32_to_f16(ks[d]);
          vd[d] = f32_to_f16(vs[d]);
        }
      } else {
        std::memcpy(static_cast<float*>(kcache) + at, ks, size_t(hd) * sizeof(float));
        std::memcpy(static_cast<float*>(vcache) + at, vs, size_t(hd) * sizeof(float));
      }
    }
  }
}

}  // namespace sllm::cpu
