// CPU kernel: attention over the StreamingLLM cache (sinks + ring buffer), for one query or a chunk of queries.
//
// Algorithm: for each (query token, head), scores against the admitted keys — sink slots 0..min(S,t+1)-1 with the
// query rotated at its in-cache position, then recent tokens max(S,t-R)..t (at most two contiguous runs of the
// ring) with the query rotated at its absolute position — then a max-subtracted softmax in f32 (with an optional
// extra logit in the denominator), then the weighted sum of V rows. Scores for one (token, head) fit in a
// thread-local buffer of S+R+1 floats, so nothing of size T x T is materialised. GQA/MQA: query head h reads
// kv head h / (n_heads / n_kv_heads) directly; K/V are never copied.
//
// Threads: the (token, head) pairs are split over the OpenMP team; at decode (T = 1) that is the heads.
#include <algorithm>  // std::max, std::min
#include <cmath>      // std::exp
#include <vector>     // std::vector

#include "cpu/kernels.h"

namespace sllm::cpu {

namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

void attention_stream(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                      const float* kcache, const float* vcache, const AttnGeometry& g, float scale,
                      const float* alibi, const float* extra_logit, float* out) {
  const int64_t H = g.n_heads, hd = g.head_dim, S = g.sinks, R = g.window, ring = g.ring, cap = g.capacity;
  const int64_t group = H / g.n_kv_heads;
  const int64_t pairs = T * H;
  const int64_t max_keys = std::min<int64_t>(S + R + 1, S + ring);

#pragma omp parallel
  {
    std::vector<float> sc(size_t(max_keys) + 1);
    std::vector<int64_t> slot(size_t(max_keys) + 1);
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t i = p / H, h = p % H;
      const int64_t t = t0 + i;
      const int64_t kvh = h / group;
      const float* K = kcache + kvh * cap * hd;
      const float* V = vcache + kvh * cap * hd;
      const float* qa = q_abs + i * ld_q + h * hd;
      const float* qs = q_sink + i * ld_q + h * hd;
      const float slope = alibi ? alibi[h] : 0.0f;

      // In-cache position of this query: every token is kept until the cache holds S + R of them.
      const int64_t qpos = std::min(t, S + R);
      int64_t n = 0;
      float mx = extra_logit ? extra_logit[h] : -INFINITY;
      const int64_t n_sink = std::min(S, t + 1);
      for (int64_t j = 0; j < n_sink; ++j) {
        float s = dot(qs, K + j * hd, hd) * scale;
        if (alibi) s -= slope * float(qpos - j);
        sc[n] = s;
        slot[n++] = j;
        mx = std::max(mx, s);
      }
      for (int64_t a = std::max(S, t - R); a <= t; ++a) {
        const int64_t sl = S + (a - S) % ring;
        float s = dot(qa, K + sl * hd, hd) * scale;
        if (alibi) s -= slope * float(t - a);
        sc[n] = s;
        slot[n++] = sl;
        mx = std::max(mx, s);
      }
      float denom = extra_logit ? std::exp(extra_logit[h] - mx) : 0.0f;
      for (int64_t k = 0; k < n; ++k) {
        sc[k] = std::exp(sc[k] - mx);
        denom += sc[k];
      }
      float* o = out + (i * H + h) * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
      for (int64_t k = 0; k < n; ++k) axpy(sc[k], V + slot[k] * hd, o, hd);
      const float inv = 1.0f / denom;
      for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
    }
  }
}

}  // namespace sllm::cpu

namespace sllm::cpu {

void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, float* kcache,
              float* vcache, const AttnGeometry& g) {
  const int64_t hd = g.head_dim, cap = g.capacity;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t t = t0 + i;
    const int64_t slot = t < g.sinks ? t : g.sinks + (t - g.sinks) % g.ring;
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      float* kd = kcache + (h * cap + slot) * hd;
      float* vd = vcache + (h * cap + slot) * hd;
      const float* ks = k + i * ldk + h * hd;
      const float* vs = v + i * ldv + h * hd;
      for (int64_t d = 0; d < hd; ++d) {
        kd[d] = ks[d];
        vd[d] = vs[d];
      }
    }
  }
}

}  // namespace sllm::cpu
