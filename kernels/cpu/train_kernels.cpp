// streamllm CPU training kernels (see train_kernels.h for the contracts and the determinism rule).
#include "cpu/train_kernels.h"

#include <algorithm>  // std::min, std::max
#include <cmath>      // std::exp, std::log, std::sqrt, std::erf
#include <limits>     // std::numeric_limits
#include <numbers>    // std::numbers
#include <vector>     // std::vector

namespace sllm::cpu::train {

namespace {

// Rows per chunk of a deterministic reduction over tokens.
constexpr int64_t kRowChunk = 32;
// Elements per chunk of a deterministic reduction over a flat array.
constexpr int64_t kFlatChunk = 1 << 14;

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

void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd) {
  constexpr int64_t kB = 32;
  const int64_t rb = (rows + kB - 1) / kB, cb = (cols + kB - 1) / kB;
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t blk = 0; blk < rb * cb; ++blk) {
    const int64_t r0 = blk / cb * kB, c0 = blk % cb * kB;
    const int64_t r1 = std::min(rows, r0 + kB), c1 = std::min(cols, c0 + kB);
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
  }
}

void col_sum_acc(const float* x, int64_t T, int64_t D, int64_t ld, float* out) {
  const int64_t nch = (T + kRowChunk - 1) / kRowChunk;
  std::vector<float> part(size_t(nch * D), 0.0f);
#pragma omp parallel for schedule(static) if (T * D > 65536)
  for (int64_t c = 0; c < nch; ++c) {
    float* p = part.data() + c * D;
    for (int64_t t = c * kRowChunk; t < std::min(T, (c + 1) * kRowChunk); ++t) axpy(1.0f, x + t * ld, p, D);
  }
  for (int64_t c = 0; c < nch; ++c) axpy(1.0f, part.data() + c * D, out, D);
}

void add(const float* a, const float* b, int64_t n, float* y) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void norm_fwd(bool layer, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
              float* stats) {
#pragma omp parallel for schedule(static) if (T * D > 32768)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    double mean = 0.0;
    if (layer) {
      for (int64_t d = 0; d < D; ++d) mean += xr[d];
      mean /= double(D);
    }
    double ss = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double c = double(xr[d]) - mean;
      ss += c * c;
    }
    const float rstd = float(1.0 / std::sqrt(ss / double(D) + double(eps)));
    const float mu = float(mean);
    for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - mu) * rstd * w[d] + (b ? b[d] : 0.0f);
    stats[2 * t] = mu;
    stats[2 * t + 1] = rstd;
  }
}

void norm_bwd(bool layer, const float* dy, const float* x, const float* w, const float* stats, int64_t T, int64_t D,
              float* dx, bool acc_dx, float* dw, float* db) {
  const int64_t nch = (T + kRowChunk - 1) / kRowChunk;
  std::vector<float> pw(size_t(nch * D), 0.0f), pb(db ? size_t(nch * D) : 0, 0.0f);
#pragma omp parallel for schedule(static) if (T * D > 32768)
  for (int64_t c = 0; c < nch; ++c) {
    float* cw = pw.data() + c * D;
    float* cb = db ? pb.data() + c * D : nullptr;
    for (int64_t t = c * kRowChunk; t < std::min(T, (c + 1) * kRowChunk); ++t) {
      const float* xr = x + t * D;
      const float* g = dy + t * D;
      const float mu = stats[2 * t], rstd = stats[2 * t + 1];
      // xhat = (x - mu) rstd; gw = dy * w.  dx = rstd (gw - mean(gw) - xhat mean(gw xhat))  (LayerNorm)
      //                                      dx = rstd (gw - xhat mean(gw xhat))             (RMSNorm)
      double s_g = 0.0, s_gx = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const float xh = (xr[d] - mu) * rstd;
        const float gw = g[d] * w[d];
        s_g += gw;
        s_gx += double(gw) * xh;
        cw[d] += g[d] * xh;
        if (cb) cb[d] += g[d];
      }
      const float m_g = layer ? float(s_g / double(D)) : 0.0f;
      const float m_gx = float(s_gx / double(D));
      float* dxr = dx + t * D;
      for (int64_t d = 0; d < D; ++d) {
        const float xh = (xr[d] - mu) * rstd;
        const float v = rstd * (g[d] * w[d] - m_g - xh * m_gx);
        dxr[d] = acc_dx ? dxr[d] + v : v;
      }
    }
  }
  for (int64_t c = 0; c < nch; ++c) {
    axpy(1.0f, pw.data() + c * D, dw, D);
    if (db) axpy(1.0f, pb.data() + c * D, db, D);
  }
}

// f32 erf/exp (glibc's erff and expf are correctly rounded to within an ulp or so; the double versions cost twice
// as much and change nothing at f32 tolerance).
void gelu_fwd(const float* x, int64_t n, float* y) {
  const float r = float(1.0 / std::numbers::sqrt2);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * r));
}

void gelu_bwd(const float* dy, const float* x, int64_t n, float* dx) {
  const float r = float(1.0 / std::numbers::sqrt2), c = float(1.0 / std::sqrt(2.0 * std::numbers::pi));
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float xv = x[i];
    const float d = 0.5f * (1.0f + std::erf(xv * r)) + xv * c * std::exp(-0.5f * xv * xv);
    dx[i] = dy[i] * d;
  }
}

void swiglu_bwd(const float* da, const float* g, const float* u, int64_t n, float* dg, float* du) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * s;
    du[i] = da[i] * silu;
    dg[i] = da[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

void embedding_bwd(const int32_t* ids, int64_t T, const float* dx, int64_t D, float* dtable) {
  for (int64_t t = 0; t < T; ++t) axpy(1.0f, dx + t * D, dtable + int64_t(ids[t]) * D, D);
}

void attention_fwd(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t H, int64_t KV,
                   int64_t hd, float scale, const float* extra, float* out, float* lse) {
  const int64_t group = H / KV, qd = H * hd, kvd = KV * hd;
#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(T));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H, kh = h / group;
      const float* kb = k + b * T * kvd + kh * hd;
      const float* vb = v + b * T * kvd + kh * hd;
      for (int64_t i = 0; i < T; ++i) {
        const float* qi = q + (b * T + i) * qd + h * hd;
        float m = extra ? extra[h] : -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          s[size_t(j)] = scale * dot(qi, kb + j * kvd, hd);
          m = std::max(m, s[size_t(j)]);
        }
        double sum = extra ? std::exp(double(extra[h]) - m) : 0.0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(double(s[size_t(j)]) - m);
        const float l = float(m + std::log(sum));
        lse[(b * H + h) * T + i] = l;
        float* o = out + (b * T + i) * qd + h * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
        for (int64_t j = 0; j <= i; ++j) axpy(std::exp(s[size_t(j)] - l), vb + j * kvd, o, hd);
      }
    }
  }
}

void attention_bwd(const float* q, const float* k, const float* v, const float* out, const float* dout,
                   const float* lse, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
                   const float* extra, float* dq, float* dk, float* dv, float* dextra) {
  const int64_t group = H / KV, qd = H * hd, kvd = KV * hd;
  std::vector<double> de(size_t(B * H), 0.0);  // per (b, h) partial of d extra[h], summed over b in order below
#pragma omp parallel
  {
    std::vector<float> p(static_cast<size_t>(T));
#pragma omp for schedule(static)
    for (int64_t bk = 0; bk < B * KV; ++bk) {
      const int64_t b = bk / KV, kh = bk % KV;
      const float* kb = k + b * T * kvd + kh * hd;
      const float* vb = v + b * T * kvd + kh * hd;
      float* dkb = dk + b * T * kvd + kh * hd;
      float* dvb = dv + b * T * kvd + kh * hd;
      for (int64_t j = 0; j < T; ++j)
        for (int64_t d = 0; d < hd; ++d) dkb[j * kvd + d] = dvb[j * kvd + d] = 0.0f;
      for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
        double de_h = 0.0;
        for (int64_t i = 0; i < T; ++i) {
          const int64_t row = b * T + i;
          const float* qi = q + row * qd + h * hd;
          const float* doi = dout + row * qd + h * hd;
          const float l = lse[(b * H + h) * T + i];
          const float Di = dot(doi, out + row * qd + h * hd, hd);  // sum_j p_ij dP_ij (the extra logit has no value)
          float* dqi = dq + row * qd + h * hd;
          for (int64_t d = 0; d < hd; ++d) dqi[d] = 0.0f;
          for (int64_t j = 0; j <= i; ++j) {
            const float pij = std::exp(scale * dot(qi, kb + j * kvd, hd) - l);
            const float dP = dot(doi, vb + j * kvd, hd);
            const float dS = pij * (dP - Di) * scale;
            axpy(dS, kb + j * kvd, dqi, hd);
            axpy(dS, qi, dkb + j * kvd, hd);
            axpy(pij, doi, dvb + j * kvd, hd);
          }
          if (extra) de_h -= std::exp(double(extra[h]) - l) * Di;
        }
        de[size_t(b * H + h)] = de_h;
      }
    }
  }
  if (dextra)
    for (int64_t h = 0; h < H; ++h) {
      double s = 0.0;
      for (int64_t b = 0; b < B; ++b) s += de[size_t(b * H + h)];
      dextra[h] += float(s);
    }
}

double cross_entropy(const float* logits, const int32_t* targets, int64_t N, int64_t V, float grad_scale,
                     float* dlogits) {
  std::vector<double> loss(size_t(N), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const float* x = logits + r * V;
    float* g = dlogits + r * V;
    const int32_t tgt = targets[r];
    if (tgt < 0) {
      for (int64_t i = 0; i < V; ++i) g[i] = 0.0f;
      continue;
    }
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < V; ++i) m = std::max(m, x[i]);
    // exp in f32 (one rounding per term), the sum in double; the probabilities reuse the exponentials.
    const float tx = x[tgt];
    double sum = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      const float e = std::exp(x[i] - m);
      g[i] = e;
      sum += e;
    }
    const double l = double(m) + std::log(sum);
    loss[size_t(r)] = l - double(tx);
    const float inv = float(double(grad_scale) / sum);
    for (int64_t i = 0; i < V; ++i) g[i] *= inv;
    g[tgt] -= grad_scale;
  }
  double s = 0.0;
  for (double l : loss) s += l;
  return s;
}

double sum_squares(const float* x, int64_t n) {
  const int64_t nch = (n + kFlatChunk - 1) / kFlatChunk;
  std::vector<double> part(size_t(nch), 0.0);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t c = 0; c < nch; ++c) {
    double s = 0.0;
    for (int64_t i = c * kFlatChunk; i < std::min(n, (c + 1) * kFlatChunk); ++i) s += double(x[i]) * x[i];
    part[size_t(c)] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

void scale(float* x, int64_t n, float s) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
           float wd, double bc1, double bc2) {
  const float decay = 1.0f - lr * wd;
  const float step = float(double(lr) / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    if (wd != 0.0f) p[i] *= decay;
    m[i] = b1 * m[i] + (1.0f - b1) * gi;
    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] -= step * (m[i] / denom);
  }
}

}  // namespace sllm::cpu::train
