// streamllm trainer: the operations a training step needs, behind one interface.
//
// The model code (train/model.cpp) is written once against TrainBackend; the CPU implementation
// (train/cpu_train_backend.cpp) calls kernels/cpu, and a CUDA one implements the same calls over device memory
// (the GPU trainer is its own issue). All pointers are in the backend's memory and f32 unless stated; shapes are
// row-major and contiguous. "+=" in a comment means the output is accumulated into (gradients), "=" overwritten.
#pragma once
#include <cstddef>  // size_t
#include <cstdint>  // int64_t
#include <memory>   // std::unique_ptr
#include <string>   // std::string

namespace sllm::train {

class TrainBackend {
 public:
  virtual ~TrainBackend() = default;
  virtual const char* name() const = 0;
  // Whether the pointers are host memory the caller may read and write directly (the CPU backend); else device
  // memory, reached through upload/download.
  virtual bool host_memory() const { return false; }
  // Waits until every queued op has finished (timing; the CPU backend has nothing queued).
  virtual void sync() {}

  // ---- memory ----
  virtual float* alloc(size_t n) = 0;  // n floats, zeroed
  virtual void free(float* p) = 0;
  virtual void upload(float* dst, const float* host, size_t n) = 0;
  virtual void download(float* host, const float* src, size_t n) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  virtual void zero(float* p, size_t n) = 0;
  // dst[r * ldd + c] = src[r * lds + c] for r < rows, c < cols (column blocks of fused projections)
  virtual void copy2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) = 0;
  virtual int32_t* alloc_ids(size_t n) = 0;
  virtual void free_ids(int32_t* p) = 0;
  virtual void upload_ids(int32_t* dst, const int32_t* host, size_t n) = 0;

  // ---- forward ----
  // Y (T, N) = X (T, K) W^T + b;  W (N, K), b (N) or null.
  virtual void linear(const float* X, int64_t T, int64_t K, const float* W, int64_t N, const float* b, float* Y) = 0;
  // out[t] = table[ids[t]]   table (V, D)
  virtual void embedding(const int32_t* ids, int64_t T, const float* table, int64_t D, float* out) = 0;
  // LayerNorm (layer) or RMSNorm; stats (T, 2) saved for the backward.
  virtual void norm(bool layer, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D,
                    float* y, float* stats) = 0;
  // Rotary embedding of B sequences of T tokens, positions 0..T-1 each: x (B*T, H, hd) in place, the first
  // rot_dims of each head rotate (rotate-half pairs). inverse: rotate by minus the angle (the backward).
  virtual void rope(float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot_dims, const float* cos,
                    const float* sin, bool inverse) = 0;
  virtual void gelu(const float* x, int64_t n, float* y) = 0;
  // a (T, F) = silu(g) * u
  virtual void swiglu(const float* g, const float* u, int64_t T, int64_t F, float* a) = 0;
  virtual void add(const float* a, const float* b, int64_t n, float* y) = 0;  // y = a + b (y may alias a)
  virtual void attention(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t H,
                         int64_t KV, int64_t hd, float scale, const float* extra, float* out, float* lse) = 0;
  // Summed loss over rows with target >= 0; dlogits = (softmax - onehot) * grad_scale (may alias logits).
  virtual double cross_entropy(const float* logits, const int32_t* targets, int64_t N, int64_t V, float grad_scale,
                               float* dlogits) = 0;

  // ---- backward ----
  // From dY (T, N): dX (T, K) = or += dY W (needs Wt = W^T, (K, N)); dW (N, K) += dY^T X; db (N) += column sums.
  // dX, dW, db may each be null (not needed).
  virtual void linear_bwd(const float* dY, const float* X, int64_t T, int64_t K, const float* Wt, int64_t N,
                          float* dX, bool acc_dX, float* dW, float* db) = 0;
  virtual void transpose(const float* src, int64_t rows, int64_t cols, float* dst) = 0;  // dst (cols, rows)
  virtual void embedding_bwd(const int32_t* ids, int64_t T, const float* dx, int64_t D, float* dtable) = 0;
  virtual void norm_bwd(bool layer, const float* dy, const float* x, const float* w, const float* stats, int64_t T,
                        int64_t D, float* dx, bool acc_dx, float* dw, float* db) = 0;
  virtual void gelu_bwd(const float* dy, const float* x, int64_t n, float* dx) = 0;
  virtual void swiglu_bwd(const float* da, const float* g, const float* u, int64_t n, float* dg, float* du) = 0;
  virtual void attention_bwd(const float* q, const float* k, const float* v, const float* out, const float* dout,
                             const float* lse, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
                             const float* extra, float* dq, float* dk, float* dv, float* dextra) = 0;

  // ---- optimizer ----
  virtual double sum_squares(const float* x, int64_t n) = 0;
  virtual void scale(float* x, int64_t n, float s) = 0;
  virtual void adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                     float wd, double bc1, double bc2) = 0;
};

std::unique_ptr<TrainBackend> make_cpu_train_backend();
// The backend a --device names: "cpu", or "cuda" / "cuda:N" (the CUDA backend from libsllm_cuda.so beside the
// executable, loaded only then; `cuda` is device `default_index`). Throws sllm::Error naming the flag and what is
// wrong (a bad spelling, no CUDA in this build, no such device).
std::unique_ptr<TrainBackend> make_train_backend(const std::string& device, int default_index = 0);

// An owned array of floats in a backend's memory.
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(TrainBackend& be, size_t n) : be_(&be), p_(n ? be.alloc(n) : nullptr), n_(n) {}
  ~DevBuf() {
    if (p_) be_->free(p_);
  }
  DevBuf(DevBuf&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) {
      if (p_) be_->free(p_);
      be_ = o.be_, p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  float* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  TrainBackend* be_ = nullptr;
  float* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace sllm::train
