// streamllm: owning buffers and non-owning tensor views.
//
// A Tensor is a cheap view: pointer, dtype, shape (row-major, contiguous). Ownership lives in Buffer (aligned heap
// memory) or in a memory-mapped file; views never free anything. Heavy things are moved, never copied implicitly.
#pragma once
#include <array>        // std::array
#include <cstddef>      // size_t
#include <cstdint>      // int64_t
#include <initializer_list>
#include <string>       // std::string

#include "core/dtype.h"  // DType, dtype_size

namespace sllm {

// 64-byte aligned heap block (one AVX-512 line). Move-only.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return p_; }
  size_t bytes() const { return n_; }
  template <class T> T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

constexpr int kMaxDims = 4;

struct Shape {
  std::array<int64_t, kMaxDims> d{};
  int ndim = 0;
  Shape() = default;
  Shape(std::initializer_list<int64_t> l);
  int64_t operator[](int i) const { return d[i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[a, b, c]"
};

// Non-owning, contiguous, row-major view.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return dtype_bytes(dtype, numel()); }
  bool empty() const { return data == nullptr; }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

// Throws sllm::Error unless a tensor of `shape` can be stored as `t`: a block format needs rows (the last
// dimension) of whole 32-element blocks. "cannot store a [256, 48] tensor as q4_0: its rows of 48 are not whole
// blocks of 32"; callers prefix the file and tensor.
void check_whole_blocks(DType t, const Shape& shape);

// Converts n elements of src (any float or block dtype; n whole blocks for the latter) to f32.
void to_f32(const void* src, DType t, size_t n, float* dst);
// Converts n f32 elements to dst dtype (F32/F16/BF16, round to nearest even; a block format as ggml quantises).
void from_f32(const float* src, size_t n, DType t, void* dst);

}  // namespace sllm
