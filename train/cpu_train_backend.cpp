// The CPU TrainBackend: host memory, kernels/cpu (the packed GEMM for every product, train_kernels for the rest).
#include <cstdlib>  // std::aligned_alloc, std::free
#include <cstring>  // std::memcpy, std::memset
#include <new>      // std::bad_alloc
#include <vector>   // std::vector

#include "cpu/kernels.h"        // rope_apply, embedding, swiglu
#include "cpu/matmul.h"         // linear, gemm_nt
#include "cpu/matmul_simd.h"    // mm::AlignedScratch
#include "cpu/train_kernels.h"  // the training kernels
#include "train/train_backend.h"

namespace sllm::train {

namespace {

namespace k = cpu::train;

class CpuTrainBackend final : public TrainBackend {
 public:
  const char* name() const override { return "cpu"; }
  bool host_memory() const override { return true; }

  float* alloc(size_t n) override {
    void* p = std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, n * sizeof(float));
    return static_cast<float*>(p);
  }
  void free(float* p) override { std::free(p); }
  void upload(float* dst, const float* host, size_t n) override { std::memcpy(dst, host, n * sizeof(float)); }
  void download(float* host, const float* src, size_t n) override { std::memcpy(host, src, n * sizeof(float)); }
  void copy(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
  void zero(float* p, size_t n) override { std::memset(p, 0, n * sizeof(float)); }
  void copy2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) override {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ldd, src + r * lds, size_t(cols) * sizeof(float));
  }
  int32_t* alloc_ids(size_t n) override { return new int32_t[n](); }
  void free_ids(int32_t* p) override { delete[] p; }
  void upload_ids(int32_t* dst, const int32_t* host, size_t n) override {
    std::memcpy(dst, host, n * sizeof(int32_t));
  }

  void linear(const float* X, int64_t T, int64_t K, const float* W, int64_t N, const float* b, float* Y) override {
    cpu::linear(X, T, K, K, W, DType::F32, N, b, Y, N);
  }
  void embedding(const int32_t* ids, int64_t T, const float* table, int64_t D, float* out) override {
    cpu::embedding(ids, T, table, DType::F32, D, out);
  }
  void norm(bool layer, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
            float* stats) override {
    k::norm_fwd(layer, x, w, b, eps, T, D, y, stats);
  }
  void rope(float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot_dims, const float* cos,
            const float* sin, bool inverse) override {
    const float* s = sin;
    if (inverse) {
      neg_sin_.resize(size_t(T * rot_dims / 2));
      for (size_t i = 0; i < neg_sin_.size(); ++i) neg_sin_[i] = -sin[i];
      s = neg_sin_.data();
    }
    for (int64_t b = 0; b < B; ++b) cpu::rope_apply(x + b * T * H * hd, T, H, hd, H * hd, rot_dims, cos, s, false);
  }
  void gelu(const float* x, int64_t n, float* y) override { k::gelu_fwd(x, n, y); }
  void swiglu(const float* g, const float* u, int64_t T, int64_t F, float* a) override {
    cpu::swiglu(g, F, u, F, T, F, a);
  }
  void add(const float* a, const float* b, int64_t n, float* y) override { k::add(a, b, n, y); }
  void attention(const float* q, const float* kk, const float* v, int64_t B, int64_t T, int64_t H, int64_t KV,
                 int64_t hd, float scale, const float* extra, float* out, float* lse) override {
    k::attention_fwd(q, kk, v, B, T, H, KV, hd, scale, extra, out, lse);
  }
  double cross_entropy(const float* logits, const int32_t* targets, int64_t N, int64_t V, float grad_scale,
                       float* dlogits) override {
    return k::cross_entropy(logits, targets, N, V, grad_scale, dlogits);
  }

  void linear_bwd(const float* dY, const float* X, int64_t T, int64_t K, const float* Wt, int64_t N, float* dX,
                  bool acc_dX, float* dW, float* db) override {
    if (dX) cpu::gemm_nt(dY, T, N, N, Wt, K, dX, K, acc_dX);
    if (dW) {
      // dW (N, K) += dY^T X: both operands transposed so that the reduction (tokens) is contiguous.
      float* dyt = dyt_.get(size_t(N * T));
      float* xt = xt_.get(size_t(K * T));
      k::transpose(dY, T, N, N, dyt, T);
      k::transpose(X, T, K, K, xt, T);
      cpu::gemm_nt(dyt, N, T, T, xt, K, dW, K, true);
    }
    if (db) k::col_sum_acc(dY, T, N, N, db);
  }
  void transpose(const float* src, int64_t rows, int64_t cols, float* dst) override {
    k::transpose(src, rows, cols, cols, dst, rows);
  }
  void embedding_bwd(const int32_t* ids, int64_t T, const float* dx, int64_t D, float* dtable) override {
    k::embedding_bwd(ids, T, dx, D, dtable);
  }
  void norm_bwd(bool layer, const float* dy, const float* x, const float* w, const float* stats, int64_t T, int64_t D,
                float* dx, bool acc_dx, float* dw, float* db) override {
    k::norm_bwd(layer, dy, x, w, stats, T, D, dx, acc_dx, dw, db);
  }
  void gelu_bwd(const float* dy, const float* x, int64_t n, float* dx) override { k::gelu_bwd(dy, x, n, dx); }
  void swiglu_bwd(const float* da, const float* g, const float* u, int64_t n, float* dg, float* du) override {
    k::swiglu_bwd(da, g, u, n, dg, du);
  }
  void attention_bwd(const float* q, const float* kk, const float* v, const float* out, const float* dout,
                     const float* lse, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
                     const float* extra, float* dq, float* dk, float* dv, float* dextra) override {
    k::attention_bwd(q, kk, v, out, dout, lse, B, T, H, KV, hd, scale, extra, dq, dk, dv, dextra);
  }

  double sum_squares(const float* x, int64_t n) override { return k::sum_squares(x, n); }
  void scale(float* x, int64_t n, float s) override { k::scale(x, n, s); }
  void adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
             float wd, double bc1, double bc2) override {
    k::adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
  }

 private:
  std::vector<float> neg_sin_;
  cpu::mm::AlignedScratch dyt_, xt_;
};

}  // namespace

std::unique_ptr<TrainBackend> make_cpu_train_backend() { return std::make_unique<CpuTrainBackend>(); }

}  // namespace sllm::train
