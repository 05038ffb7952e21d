// Helpers shared by the CUDA tests: device buffers from a backend, copies both ways, the NaN-aware tolerance
// comparison, and a cache geometry as KVCache builds it.
#pragma once
#include <gtest/gtest.h>  // ADD_FAILURE, EXPECT_EQ

#include <cmath>    // std::fabs, std::isnan, std::sqrt
#include <cstddef>  // size_t
#include <cstdint>  // int64_t
#include <limits>   // std::numeric_limits
#include <string>   // std::string
#include <vector>   // std::vector

#include "cpu/kernels.h"        // cpu::AttnGeometry
#include "cuda/cuda_backend.h"  // cuda_upload, cuda_download
#include "ops/backend.h"        // Backend

namespace sllm {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Tolerance of the f32-compute ops: rel * |ref| + abs * rms(ref).
struct Tol {
  double rel, abs;
};
constexpr Tol kF32Tol{1e-5, 1e-5};
constexpr Tol kExact{0.0, 0.0};

// A device buffer from the backend under test, released on scope exit.
class Dev {
 public:
  Dev(Backend& be, size_t bytes) : be_(&be), p_(be.alloc(bytes)), bytes_(bytes) {}
  Dev(Dev&& o) noexcept : be_(o.be_), p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  Dev& operator=(Dev&&) = delete;
  ~Dev() {
    if (p_) be_->release(p_);  // never throws
  }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  Backend* be_;
  void* p_;
  size_t bytes_;
};

template <class T>
Dev upload(Backend& be, const std::vector<T>& h) {
  Dev d(be, h.size() * sizeof(T));
  cuda_upload(d.get(), h.data(), h.size() * sizeof(T));
  return d;
}

template <class T>
std::vector<T> download(const Dev& d) {
  std::vector<T> h(d.bytes() / sizeof(T));
  cuda_download(h.data(), d.get(), h.size() * sizeof(T));
  return h;
}

inline double rms(const std::vector<float>& v) {
  double s = 0;
  size_t n = 0;
  for (float x : v)
    if (!std::isnan(x)) {
      s += double(x) * x;
      ++n;
    }
  return n ? std::sqrt(s / double(n)) : 0.0;
}

// Expects got[i] within bound[i] of ref[i]; where ref is NaN (untouched padding) got must be NaN too.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& ref,
                         const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int64_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const bool ok = std::isnan(ref[i]) ? std::isnan(got[i]) : std::fabs(double(got[i]) - ref[i]) <= bound[i];
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << ", CPU " << ref[i] << ", bound "
                    << bound[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.size() << " elements differ";
}

inline void expect_close(const std::vector<float>& got, const std::vector<float>& ref, Tol tol,
                         const std::string& what) {
  const double scale = tol.abs * rms(ref);
  std::vector<double> bound(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) bound[i] = tol.rel * std::fabs(double(ref[i])) + scale;
  expect_close(got, ref, bound, what);
}

// The cache geometry KVCache builds for S sinks, a window of R and chunks of up to `chunk` tokens (f32 cache).
inline cpu::AttnGeometry geometry(int64_t H, int64_t Hkv, int64_t hd, int64_t S, int64_t R, int64_t chunk) {
  cpu::AttnGeometry g;
  g.n_heads = H;
  g.n_kv_heads = Hkv;
  g.head_dim = hd;
  g.sinks = S;
  g.window = R;
  g.ring = R + chunk;
  g.capacity = S + g.ring;
  return g;
}

}  // namespace sllm
