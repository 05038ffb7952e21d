// The CPU backend: forwards to the kernels in kernels/cpu. Pointers are host memory.
#include <algorithm>  // std::min, std::max
#include <cstring>    // std::memcpy
#include <vector>     // std::vector

#include "core/tensor.h"  // Buffer
#include "cpu/kernels.h"  // cpu:: kernels
#include "cpu/matmul.h"   // cpu::linear
#include "ops/backend.h"

namespace sllm {

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void* alloc(size_t bytes) override {
    Buffer b(bytes);
    void* p = b.data();
    held_.push_back(std::move(b));
    return p;
  }
  void release(void* p) override {
    for (auto it = held_.begin(); it != held_.end(); ++it)
      if (it->data() == p) {
        held_.erase(it);
        return;
      }
  }
  bool host_memory() const override { return true; }
  void upload(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
  void download(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
  void linear(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
              const float* bias, float* Y, int64_t ldy) override {
    cpu::linear(X, T, K, ldx, W, wt, N, bias, Y, ldy);
  }
  void norm(NormOp op, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D,
            float* y) override {
    if (op == NormOp::RMS)
      cpu::rmsnorm(x, w, eps, T, D, y);
    else
      cpu::layernorm(x, w, b, eps, T, D, y);
  }
  void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t ld, int64_t rot, const float* c, const float* s,
            bool inter) override {
    cpu::rope_apply(x, T, H, hd, ld, rot, c, s, inter);
  }
  void activation(ActOp op, float* x, int64_t n) override {
    switch (op) {
      case ActOp::GeluErf: cpu::gelu_erf(x, n); break;
      case ActOp::GeluTanh: cpu::gelu_tanh(x, n); break;
      case ActOp::Relu: cpu::relu(x, n); break;
    }
  }
  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t T, int64_t F, float* o) override {
    cpu::swiglu(g, ldg, u, ldu, T, F, o);
  }
  void add(float* y, const float* x, int64_t n) override { cpu::add_inplace(y, x, n); }
  void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out) override {
    cpu::embedding(ids, T, table, t, D, out);
  }
  void attention(const float* qa, const float* qs, int64_t ldq, int64_t T, int64_t t0, const void* k,
                 const void* v, const cpu::AttnGeometry& g, float scale, const float* alibi,
                 const float* extra, float* out) override {
    cpu::attention_stream(qa, qs, ldq, T, t0, k, v, g, scale, alibi, extra, out);
  }
  void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, void* kc,
                void* vc, const cpu::AttnGeometry& g) override {
    cpu::kv_store(k, ldk, v, ldv, T, t0, kc, vc, g);
  }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_rows(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t rows, int64_t n) override {
    for (int64_t i = 0; i < rows; ++i) std::memcpy(dst + i * ld_dst, src + i * ld_src, size_t(n) * 4);
  }
  void clamp(float* x, int64_t n, float lo, float hi) override {
    for (int64_t i = 0; i < n; ++i) x[i] = std::min(hi, std::max(lo, x[i]));
  }

 private:
  std::vector<Buffer> held_;
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend b;
  return b;
}

}  // namespace sllm
