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
#include <type_traits>  // std::is_same_v, std::integral_constant
#include <vector>     // std::vector

#include "cpu/kernels.h"

// GCC 12's own AVX-512 intrinsics (`__m512 __Y = __Y;` placeholders) trip -W(maybe-)uninitialized once inlined
// (GCC PR 105593), as in cpu/matmul_simd.h.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

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

// fast_exp on 16 lanes (the same reduction and polynomial; 2^n applied by scalef). The exponentials of a chunk's
// scores were a quarter of the kernel's time as scalar code: the loop over fast_exp does not vectorise.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// r[i] = exp(r[i] - m) for i < n; returns their sum.
inline float exp_in_place(float* r, int64_t n, float m) {
  const __m512 mv = _mm512_set1_ps(m);
  __m512 l = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1u);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, r + i), mv));
    _mm512_mask_storeu_ps(r + i, k, e);
    l = _mm512_mask_add_ps(l, k, l, e);
  }
  return _mm512_reduce_add_ps(l);
}

// Row i of the result holds sum(v[i]) for 16 vectors v[0..15]: a transpose-and-add tree (45 instructions for 16
// sums, where 16 horizontal reductions take ~130).
inline __m512 hsum16(const __m512 (&v)[16]) {
  __m512 s[8], t[4], u[2];
  for (int k = 0; k < 8; ++k)  // per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] of x = v[2k], y = v[2k + 1]
    s[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 4; ++k) {  // per 128-bit lane: the lane's sums of v[4k .. 4k + 3]
    const __m512d a = _mm512_castps_pd(s[2 * k]), b = _mm512_castps_pd(s[2 * k + 1]);
    t[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  for (int k = 0; k < 2; ++k)  // lanes (L0 + L1, L2 + L3) of t[2k], then of t[2k + 1]
    u[k] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// out[h] = sum_i w[h][i] V_{slot[i]} for HB heads (w: HB rows of n weights, stride n; out: HB rows of 16 * NC):
// each V row is loaded (and converted) once and added into every head's NC accumulators.
template <int NC, int HB, class KT>
void weighted_v(const KT* V, const int32_t* slot, int64_t n, const float* w, float* out) {
  constexpr int64_t hd = 16 * NC;
  __m512 o[HB][NC];
  for (int h = 0; h < HB; ++h)
    for (int c = 0; c < NC; ++c) o[h][c] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; ++i) {
    const KT* vr = V + int64_t(slot[i]) * hd;
    __m512 wi[HB];
    for (int h = 0; h < HB; ++h) wi[h] = _mm512_set1_ps(w[h * n + i]);
    for (int c = 0; c < NC; ++c) {
      const __m512 v = load16(vr + 16 * c);
      for (int h = 0; h < HB; ++h) o[h][c] = _mm512_fmadd_ps(wi[h], v, o[h][c]);
    }
  }
  for (int h = 0; h < HB; ++h)
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + h * hd + 16 * c, o[h][c]);
}

// One query head per KV head (multi-head attention): nothing to share between heads, and streaming each K row
// straight into its dot product (a horizontal sum per key) reads the cache ~15% faster than the blocked group
// kernel below (bench_attention, Llama-2-7B shape, one thread). `sc`: n scores.
template <int NC, class KT>
void attend_one_head_avx512(const Job& j, int64_t t, int64_t k0, int64_t k1, const KT* K, const KT* V,
                            const AttnGeometry& g, float scale, bool alibi, float* out, Partial& p, float* sc) {
  constexpr int64_t hd = 16 * NC;
  const int64_t n = k1 - k0;
  __m512 qa[NC], qs[NC];
  for (int c = 0; c < NC; ++c) {
    qa[c] = _mm512_loadu_ps(j.qa[0] + 16 * c);
    qs[c] = _mm512_loadu_ps(j.qs[0] + 16 * c);
  }
  float m = -INFINITY;
  for_keys(t, k0, k1, g, [&](int64_t i, int64_t slot, int64_t dist, bool sink) {
    const KT* kr = K + slot * hd;
    const __m512* q = sink ? qs : qa;
    __m512 acc = _mm512_mul_ps(q[0], load16(kr));
    for (int c = 1; c < NC; ++c) acc = _mm512_fmadd_ps(q[c], load16(kr + 16 * c), acc);
    float s = _mm512_reduce_add_ps(acc) * scale;
    if (alibi) s -= j.slope[0] * float(dist);
    sc[i] = s;
    m = std::max(m, s);
  });
  p.m[0] = m;
  p.l[0] = exp_in_place(sc, n, m);
  __m512 o[NC];
  for (int c = 0; c < NC; ++c) o[c] = _mm512_setzero_ps();
  for_keys(t, k0, k1, g, [&](int64_t i, int64_t slot, int64_t, bool) {
    const KT* vr = V + slot * hd;
    const __m512 w = _mm512_set1_ps(sc[i]);
    for (int c = 0; c < NC; ++c) o[c] = _mm512_fmadd_ps(w, load16(vr + 16 * c), o[c]);
  });
  for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + 16 * c, o[c]);
}

// head_dim = 16 * NC: one K/V row is NC zmm registers. KT: the cache element (float or IEEE half). `sc` holds
// j.ng * n scores, then n slots and n distances (n = k1 - k0).
//   Scores: keys in blocks of 16; each K row is read (and converted from half) once per block into f32, then every
//   head of the group dots the block's 16 rows and one hsum16 turns the 16 dot products into 16 scores.
//   Output: each V row is read and converted once, then added into HB heads' accumulators at a time.
template <int NC, class KT>
void attend_range_avx512(const Job& j, int64_t t, int64_t k0, int64_t k1, const KT* K, const KT* V,
                         const AttnGeometry& g, float scale, bool alibi, float* out, Partial& p, float* sc) {
  constexpr int64_t hd = 16 * NC;
  constexpr int HB = NC <= 4 ? 4 : 3;  // heads per pass over V: HB * NC accumulators, HB weights, one V vector
  const int64_t n = k1 - k0;
  const int ng = j.ng;
  int32_t* slot = reinterpret_cast<int32_t*>(sc + ng * n);
  float* dist = sc + ng * n + n;
  int64_t n_sink = 0;  // keys [0, n_sink) of this range are sinks (scored with q_sink)
  for_keys(t, k0, k1, g, [&](int64_t i, int64_t s, int64_t d, bool sink) {
    slot[i] = int32_t(s);
    dist[i] = float(d);
    n_sink += sink;
  });
  float m[kMaxGroup];
  for (int h = 0; h < ng; ++h) m[h] = -INFINITY;
  alignas(64) float kb[16 * hd];  // a half cache's block of K rows, converted to f32
  const float* rows[16];          // the block's K rows in f32 (in the cache itself when it is f32)
  for (int64_t b = 0; b < n; b += 16) {
    const int nb = int(std::min<int64_t>(16, n - b));
    for (int u = 0; u < nb; ++u) {
      const KT* kr = K + int64_t(slot[b + u]) * hd;
      if constexpr (std::is_same_v<KT, float>) {
        rows[u] = kr;
      } else {
        for (int c = 0; c < NC; ++c) _mm512_store_ps(kb + u * hd + 16 * c, load16(kr + 16 * c));
        rows[u] = kb + u * hd;
      }
    }
    const __mmask16 valid = __mmask16((1u << nb) - 1u);
    const __m512 dv = _mm512_maskz_loadu_ps(valid, dist + b);
    for (int h = 0; h < ng; ++h) {
      __m512 qa[NC];
      for (int c = 0; c < NC; ++c) qa[c] = _mm512_loadu_ps(j.qa[h] + 16 * c);
      __m512 acc[16];
      for (int u = 0; u < 16; ++u) {
        if (u >= nb) {
          acc[u] = _mm512_setzero_ps();
          continue;
        }
        const float* kr = rows[u];
        __m512 a;
        if (b + u < n_sink) {  // a sink: the query rotated at its in-cache position
          a = _mm512_mul_ps(_mm512_loadu_ps(j.qs[h]), _mm512_loadu_ps(kr));
          for (int c = 1; c < NC; ++c)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(j.qs[h] + 16 * c), _mm512_loadu_ps(kr + 16 * c), a);
        } else {
          a = _mm512_mul_ps(qa[0], _mm512_loadu_ps(kr));
          for (int c = 1; c < NC; ++c) a = _mm512_fmadd_ps(qa[c], _mm512_loadu_ps(kr + 16 * c), a);
        }
        acc[u] = a;
      }
      __m512 s = _mm512_mul_ps(hsum16(acc), _mm512_set1_ps(scale));
      if (alibi) s = _mm512_fnmadd_ps(_mm512_set1_ps(j.slope[h]), dv, s);
      _mm512_mask_storeu_ps(sc + h * n + b, valid, s);
      m[h] = std::max(m[h], _mm512_mask_reduce_max_ps(valid, s));
    }
  }
  // Exponentials and their sums.
  for (int h = 0; h < ng; ++h) {
    p.m[h] = m[h];
    p.l[h] = exp_in_place(sc + h * n, n, m[h]);
  }
  // Weighted sums of the V rows, up to HB heads per pass over V (each pass exactly as many heads as it has).
  for (int h0 = 0; h0 < ng;) {
    const int hb = std::min(HB, ng - h0);
    const float* w = sc + h0 * n;
    float* o = out + h0 * hd;
    switch (hb) {
      case 1: weighted_v<NC, 1>(V, slot, n, w, o); break;
      case 2: weighted_v<NC, 2>(V, slot, n, w, o); break;
      case 3: weighted_v<NC, 3>(V, slot, n, w, o); break;
      default: weighted_v<NC, HB>(V, slot, n, w, o); break;
    }
    h0 += hb;
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
// unnormalised; returns the per-head max and sum in p. `sc` is scratch of (ng + 2) * (k1 - k0) floats.
template <class KT>
void attend_range(const Job& j, int64_t t, int64_t k0, int64_t k1, const KT* K, const KT* V,
                  const AttnGeometry& g, float scale, bool alibi, float* out, Partial& p, float* sc) {
#if defined(__AVX512F__)
  // head_dim = 16 * NC for the sizes with a SIMD kernel: one query head per KV head, or a group.
  auto simd = [&](auto nc) {
    constexpr int NC = decltype(nc)::value;
    if (j.ng == 1)
      attend_one_head_avx512<NC>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
    else
      attend_range_avx512<NC>(j, t, k0, k1, K, V, g, scale, alibi, out, p, sc);
  };
  switch (g.head_dim) {
    case 32: return simd(std::integral_constant<int, 2>{});
    case 64: return simd(std::integral_constant<int, 4>{});
    case 80: return simd(std::integral_constant<int, 5>{});
    case 96: return simd(std::integral_constant<int, 6>{});
    case 128: return simd(std::integral_constant<int, 8>{});
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
    std::vector<float> sc(size_t((ug + 2) * ((max_keys + splits - 1) / splits + 1)));
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
