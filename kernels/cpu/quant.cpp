// streamllm CPU kernels: ggml block formats: scalar reference dequantisation and quantisation (see quant.h).
#include "cpu/quant.h"

#include <algorithm>  // std::min, std::max
#include <cmath>      // std::fabs, std::round, std::trunc
#include <cstring>    // std::memcpy
#include <string>     // std::string

#include "core/error.h"  // Error

namespace sllm {

namespace {

inline float load_f16(const unsigned char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return f16_to_f32(v);
}

inline void store_f16(unsigned char* p, float f) {
  const uint16_t v = f32_to_f16(f);
  std::memcpy(p, &v, 2);
}

void check(DType t, int64_t n, const char* what) {
  if (!is_quantized(t)) throw Error(std::string(what) + ": " + dtype_name(t) + " is not a block format");
  if (n % kQuantBlock != 0)
    throw Error(std::string(what) + ": " + std::to_string(n) + " elements are not whole blocks of 32");
}

}  // namespace

void dequantize_blocks(DType t, const void* src_v, int64_t n, float* dst) {
  check(t, n, "dequantize");
  const auto* src = static_cast<const unsigned char*>(src_v);
  const size_t bb = dtype_block_bytes(t);
  for (int64_t b = 0; b < n / kQuantBlock; ++b, src += bb, dst += kQuantBlock) {
    const float d = load_f16(src);
    switch (t) {
      case DType::Q8_0: {
        const auto* q = reinterpret_cast<const int8_t*>(src + 2);
        for (int j = 0; j < 32; ++j) dst[j] = d * float(q[j]);
        break;
      }
      case DType::Q4_0: {
        const unsigned char* qs = src + 2;
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * float(int(qs[j] & 15) - 8);
          dst[j + 16] = d * float(int(qs[j] >> 4) - 8);
        }
        break;
      }
      default: {  // Q4_1
        const float m = load_f16(src + 2);
        const unsigned char* qs = src + 4;
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * float(qs[j] & 15) + m;
          dst[j + 16] = d * float(qs[j] >> 4) + m;
        }
        break;
      }
    }
  }
}

void quantize_blocks(const float* src, int64_t n, DType t, void* dst_v) {
  check(t, n, "quantize");
  auto* dst = static_cast<unsigned char*>(dst_v);
  const size_t bb = dtype_block_bytes(t);
  for (int64_t b = 0; b < n / kQuantBlock; ++b, src += kQuantBlock, dst += bb) {
    switch (t) {
      case DType::Q8_0: {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(src[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(dst, d);
        for (int j = 0; j < 32; ++j) dst[2 + j] = static_cast<unsigned char>(int8_t(std::round(src[j] * id)));
        break;
      }
      case DType::Q4_0: {
        float amax = 0.0f, xm = 0.0f;  // the first element of largest magnitude, with its sign
        for (int j = 0; j < 32; ++j)
          if (std::fabs(src[j]) > amax) {
            amax = std::fabs(src[j]);
            xm = src[j];
          }
        const float d = xm / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(dst, d);
        for (int j = 0; j < 16; ++j) {
          const int lo = std::min(15, int(std::trunc(src[j] * id + 8.5f)));
          const int hi = std::min(15, int(std::trunc(src[j + 16] * id + 8.5f)));
          dst[2 + j] = static_cast<unsigned char>(lo | (hi << 4));
        }
        break;
      }
      default: {  // Q4_1
        float lo = src[0], hi = src[0];
        for (int j = 1; j < 32; ++j) {
          lo = std::min(lo, src[j]);
          hi = std::max(hi, src[j]);
        }
        const float d = (hi - lo) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(dst, d);
        store_f16(dst + 2, lo);
        for (int j = 0; j < 16; ++j) {
          const int a = std::min(15, int(std::trunc((src[j] - lo) * id + 0.5f)));
          const int c = std::min(15, int(std::trunc((src[j + 16] - lo) * id + 0.5f)));
          dst[4 + j] = static_cast<unsigned char>(a | (c << 4));
        }
        break;
      }
    }
  }
}

}  // namespace sllm
