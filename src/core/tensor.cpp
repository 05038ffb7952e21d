#include "core/tensor.h"

#include <cstdlib>  // std::aligned_alloc, std::free
#include <cstring>  // std::memcpy
#include <new>      // std::bad_alloc

#include "core/error.h"  // Error
#include "cpu/quant.h"    // dequantize_blocks, quantize_blocks

namespace sllm {

Buffer::Buffer(size_t bytes) {
  if (bytes == 0) return;
  const size_t rounded = (bytes + 63) / 64 * 64;
  p_ = std::aligned_alloc(64, rounded);
  if (!p_) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
  n_ = bytes;
}

Buffer::~Buffer() { std::free(p_); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

Shape::Shape(std::initializer_list<int64_t> l) {
  for (int64_t v : l) {
    if (ndim >= kMaxDims) throw Error("tensor rank above " + std::to_string(kMaxDims));
    d[ndim++] = v;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= d[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (d[i] != o.d[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::F32;
  if (s == "f16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "q8_0" || s == "Q8_0") return DType::Q8_0;
  if (s == "q4_0" || s == "Q4_0") return DType::Q4_0;
  if (s == "q4_1" || s == "Q4_1") return DType::Q4_1;
  throw Error("unknown dtype '" + s + "' (expected f32, f16, bf16, q8_0, q4_0 or q4_1)");
}

void check_whole_blocks(DType t, const Shape& shape) {
  const int64_t row = shape.ndim ? shape[shape.ndim - 1] : 1;
  if (is_quantized(t) && row % kQuantBlock != 0)
    throw Error("cannot store a " + shape.str() + " tensor as " + dtype_name(t) + ": its rows of " +
                std::to_string(row) + " are not whole blocks of " + std::to_string(kQuantBlock));
}

void to_f32(const void* src, DType t, size_t n, float* dst) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: dequantize_blocks(t, src, int64_t(n), dst); return;
    default: throw Error(std::string("to_f32: unsupported dtype ") + dtype_name(t));
  }
}

void from_f32(const float* src, size_t n, DType t, void* dst) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: quantize_blocks(src, int64_t(n), t, dst); return;
    default: throw Error(std::string("from_f32: unsupported dtype ") + dtype_name(t));
  }
}

}  // namespace sllm
