// streamllm: element types and scalar conversions (f16 / bf16 <-> f32).
#pragma once
#include <cstddef>  // size_t
#include <cstdint>  // uint16_t, uint32_t
#include <cstring>  // std::memcpy
#include <string>   // std::string

namespace sllm {

// Storage types of weights and activations. Compute is always f32 on CPU.
// Q8_0, Q4_0 and Q4_1 are ggml's block formats (weights only, rows of whole 32-element blocks; core/quant.h):
// their size is per block, so byte counts go through dtype_bytes(), never dtype_size().
enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4, Q8_0 = 5, Q4_0 = 6, Q4_1 = 7 };

inline constexpr bool is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1; }

// Bytes of one element; 0 for the block formats (use dtype_bytes).
inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    default: return 0;
  }
}

// Elements per block (32 for the block formats, else 1) and bytes per block.
inline constexpr int64_t kQuantBlock = 32;
inline constexpr int64_t dtype_block_elems(DType t) { return is_quantized(t) ? kQuantBlock : 1; }
inline constexpr size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return 2 + 32;      // f16 d, i8 q[32]
    case DType::Q4_0: return 2 + 16;      // f16 d, u8 qs[16]
    case DType::Q4_1: return 2 + 2 + 16;  // f16 d, f16 m, u8 qs[16]
    default: return dtype_size(t);
  }
}

// Bytes of n elements (for a block format n is a whole number of blocks: a row's length, always checked at load).
inline constexpr size_t dtype_bytes(DType t, int64_t n) {
  return size_t(n / dtype_block_elems(t)) * dtype_block_bytes(t);
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_1: return "q4_1";
  }
  return "?";
}

// Parses "f32" / "f16" / "bf16" / "q8_0" / "q4_0" / "q4_1" (the CLI spelling); throws sllm::Error otherwise
// (defined in tensor.cpp).
DType parse_dtype(const std::string& s);

// IEEE half -> float, exact for every input (subnormals, inf, nan).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + (127 - 15)) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float -> IEEE half, round to nearest even (as numpy / torch do).
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));  // inf/nan
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow -> inf (>= 65520)
  if (absx < 0x38800000u) {  // subnormal or zero in half
    if (absx < 0x33000000u) return uint16_t(sign);  // < 2^-25 rounds to 0
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 + (112 - e) + 1 - 1
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float -> bf16, round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
  const uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return uint16_t(x >> 16);
}

}  // namespace sllm
