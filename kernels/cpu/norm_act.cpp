// CPU kernels: normalisation, rotary embedding, activations, embedding lookup.
//
// Numerics: norms accumulate in double per row (rows are short: D <= 8192, cost is negligible next to the GEMMs)
// so that the f32 result is the correctly rounded value of the float64 formula HF evaluates in f32. RoPE angles
// are formed in double (pos * inv_freq) and reduced by std::cos/std::sin in double: a float angle at position 4e6
// would be off by ~0.25 rad. Small ops run single-threaded when the work is tiny (decode), because an OpenMP
// fork/join costs more than a 576-element norm.
#include <cmath>    // std::sqrt, std::erf, std::tanh, std::exp, std::pow
#include <cstring>  // std::memcpy

#include "cpu/kernels.h"
#include "cpu/quant.h"  // dequantize_blocks

namespace sllm::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements below which a kernel stays on one thread
}

void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* y) {
#pragma omp parallel for schedule(static) if (T * D >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / double(D) + double(eps)));
    for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

void layernorm(const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y) {
#pragma omp parallel for schedule(static) if (T * D >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    double s = 0;
    for (int64_t i = 0; i < D; ++i) s += xr[i];
    const double mean = s / double(D);
    double v = 0;
    for (int64_t i = 0; i < D; ++i) {
      const double d = xr[i] - mean;
      v += d * d;
    }
    const float inv = float(1.0 / std::sqrt(v / double(D) + double(eps)));
    const float m = float(mean);
    if (b) {
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * inv * w[i] + b[i];
    } else {
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * inv * w[i];
    }
  }
}

void rope_tables(const int64_t* pos, int64_t T, int64_t rot_dims, double theta, float* cos, float* sin) {
  const int64_t half = rot_dims / 2;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(theta, -double(2 * i) / double(rot_dims));
      const double a = double(pos[t]) * inv_freq;
      cos[t * half + i] = float(std::cos(a));
      sin[t * half + i] = float(std::sin(a));
    }
  }
}

void rope_apply(float* x, int64_t T, int64_t H, int64_t head_dim, int64_t ld, int64_t rot_dims, const float* cos,
                const float* sin, bool interleaved) {
  const int64_t half = rot_dims / 2;
#pragma omp parallel for schedule(static) if (T * H * rot_dims >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < H; ++h) {
      float* v = x + t * ld + h * head_dim;
      if (!interleaved) {
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * c[i] - b * s[i];
          v[i + half] = b * c[i] + a * s[i];
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1];
          v[2 * i] = a * c[i] - b * s[i];
          v[2 * i + 1] = b * c[i] + a * s[i];
        }
      }
    }
  }
}

void gelu_erf(float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void gelu_tanh(float* x, int64_t n) {
  constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
  }
}

void relu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0 ? x[i] : 0.0f;
}

void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t T, int64_t F, float* out) {
#pragma omp parallel for schedule(static) if (T * F >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gate + t * ldg;
    const float* u = up + t * ldu;
    float* o = out + t * F;
    for (int64_t i = 0; i < F; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out) {
  const size_t row_bytes = dtype_bytes(t, D);
  for (int64_t i = 0; i < T; ++i) {
    const char* row = static_cast<const char*>(table) + size_t(ids[i]) * row_bytes;
    float* o = out + i * D;
    switch (t) {
      case DType::F32: std::memcpy(o, row, size_t(D) * 4); break;
      case DType::F16:
        for (int64_t j = 0; j < D; ++j) o[j] = f16_to_f32(reinterpret_cast<const uint16_t*>(row)[j]);
        break;
      case DType::BF16:
        for (int64_t j = 0; j < D; ++j) o[j] = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[j]);
        break;
      case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: dequantize_blocks(t, row, D, o); break;
      default: break;  // the front-end admits only float and block tables
    }
  }
}

}  // namespace sllm::cpu
