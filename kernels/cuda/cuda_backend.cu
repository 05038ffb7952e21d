// The CUDA backend: class CudaBackend (ops/backend.h) over cuBLAS and the kernels in kernels.cu. All pointers are
// device memory; every op is enqueued on one stream owned by the backend and returns without waiting.
//
// Device: the constructor makes `device` current; the ops assume it still is when they are called (one device
// per thread; a multi-GPU caller sets the device before using each backend).
//
// Linear. The weight W is (N, K) row-major, which cuBLAS (column-major) reads as a (K, N) matrix with ld K; X (T, K)
// with row stride ldx is a column-major (K, T) matrix with ld ldx, and Y likewise (N, T) with ld ldy. So
// Y^T = W X^T is one cublasGemmEx(op_T on W, op_N on X, m = N, n = T, k = K). f32 weights: an f32 GEMM
// (CUBLAS_COMPUTE_32F, no TF32: bit-for-bit an f32 dot product up to summation order, within 1e-5 of the CPU).
// f16 / bf16 weights: X is first rounded to the weight dtype into a scratch buffer (tensor cores need both inputs
// in the same type), then the GEMM multiplies 16-bit inputs exactly and accumulates in f32 into an f32 Y. The
// only extra error is that rounding of X: |dy| <= 2^-11 (f16) or 2^-8 (bf16) times sum_k |x_k w_k|. The bias is
// added by a separate kernel (cuBLAS has no row broadcast; a later issue fuses it with cuBLASLt epilogues).
#include <algorithm>      // std::max
#include <limits>         // std::numeric_limits
#include <string>         // std::string, std::to_string
#include <unordered_set>  // std::unordered_set

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"  // CUDA_CHECK, CUBLAS_CHECK, cuda:: launchers

namespace sllm {

namespace {

// cuBLAS takes int dimensions.
int as_int(int64_t v, const char* what) {
  SLLM_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(),
             std::string("cuda linear: ") + what + " = " + std::to_string(v) + " does not fit cuBLAS's int");
  return int(v);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CUDA_CHECK(cudaSetDevice(device_));
    CUDA_CHECK(cudaStreamCreate(&stream_));  // blocking: ordered with the legacy default stream (cuda_upload)
    try {
      CUBLAS_CHECK(cublasCreate(&cublas_));
      CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
      // CUBLAS_DEFAULT_MATH: tensor cores for the 16-bit GEMMs, and f32 GEMMs stay f32 (TF32 is opt-in only).
      CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    } catch (...) {
      if (cublas_) cublasDestroy(cublas_);
      cudaStreamDestroy(stream_);
      throw;
    }
  }

  ~CudaBackend() override {
    // No throwing here: errors at teardown are ignored (the process may be unwinding from one).
    cudaStreamSynchronize(stream_);
    for (void* p : held_) cudaFree(p);
    if (scratch_) cudaFree(scratch_);
    cublasDestroy(cublas_);
    cudaStreamDestroy(stream_);
  }

  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const char* name() const override { return "cuda"; }
  bool host_memory() const override { return false; }
  void upload(void* dst, const void* src, size_t n) override {
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
  }
  void download(void* dst, const void* src, size_t n) override {
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
  }

  void* alloc(size_t bytes) override {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1)));
    held_.insert(p);
    return p;
  }

  // Does not throw: owners call it from destructors (Decoder, KVCache). A CUDA error here is sticky or
  // asynchronous and surfaces again at the next op, which throws.
  void release(void* p) override {
    if (held_.erase(p) == 0) return;  // not ours (or already released): ignored, as on the CPU
    cudaStreamSynchronize(stream_);   // queued ops may still read or write p
    cudaFree(p);
  }

  void linear(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
              const float* bias, float* Y, int64_t ldy) override {
    SLLM_CHECK(wt == DType::F32 || wt == DType::F16 || wt == DType::BF16,
               std::string("cuda linear: weight dtype must be f32, f16 or bf16, got ") + dtype_name(wt));
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {  // empty sum: Y = bias (or 0)
      CUDA_CHECK(cudaMemset2DAsync(Y, size_t(ldy) * 4, 0, size_t(N) * 4, size_t(T), stream_));
      if (bias) cuda::add_bias(Y, bias, T, N, ldy, stream_);
      return;
    }
    const int m = as_int(N, "N"), n = as_int(T, "T"), k = as_int(K, "K");
    const int ldc = as_int(ldy, "ldy");
    const float one = 1.0f, zero = 0.0f;
    if (wt == DType::F32) {
      CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, W, CUDA_R_32F, k, X, CUDA_R_32F,
                                as_int(ldx, "ldx"), &zero, Y, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
    } else {
      const cudaDataType dt = wt == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
      void* Xh = scratch(size_t(T) * size_t(K) * 2);  // (T, K) contiguous in the weight dtype
      cuda::convert_rows(X, T, K, ldx, wt, Xh, stream_);
      CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, W, dt, k, Xh, dt, k, &zero, Y,
                                CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (bias) cuda::add_bias(Y, bias, T, N, ldy, stream_);
  }

  void norm(NormOp op, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D,
            float* y) override {
    if (op == NormOp::RMS)
      cuda::rmsnorm(x, w, eps, T, D, y, stream_);
    else
      cuda::layernorm(x, w, b, eps, T, D, y, stream_);
  }

  void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t ld, int64_t rot, const float* c, const float* s,
            bool inter) override {
    cuda::rope(x, T, H, hd, ld, rot, c, s, inter, stream_);
  }

  void activation(ActOp op, float* x, int64_t n) override { cuda::activation(op, x, n, stream_); }

  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t T, int64_t F, float* o) override {
    cuda::swiglu(g, ldg, u, ldu, T, F, o, stream_);
  }

  void add(float* y, const float* x, int64_t n) override { cuda::add(y, x, n, stream_); }

  void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out) override {
    SLLM_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16,
               std::string("cuda embedding: table dtype must be f32, f16 or bf16, got ") + dtype_name(t));
    cuda::embedding(ids, T, table, t, D, out, stream_);
  }

  void attention(const float* qa, const float* qs, int64_t ldq, int64_t T, int64_t t0, const void* k,
                 const void* v, const cpu::AttnGeometry& g, float scale, const float* alibi, const float* extra,
                 float* out) override {
    SLLM_CHECK(!g.kv_f16, "cuda attention: an f16 KV cache is not supported yet (use f32)");
    cuda::attention(qa, qs, ldq, T, t0, static_cast<const float*>(k), static_cast<const float*>(v), g, scale, alibi,
                    extra, out, stream_);
  }

  void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, void* kc,
                void* vc, const cpu::AttnGeometry& g) override {
    SLLM_CHECK(!g.kv_f16, "cuda kv_store: an f16 KV cache is not supported yet (use f32)");
    cuda::kv_store(k, ldk, v, ldv, T, t0, static_cast<float*>(kc), static_cast<float*>(vc), g, stream_);
  }

  void copy_rows(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t rows, int64_t n) override {
    if (rows <= 0 || n <= 0) return;
    CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(ld_dst) * 4, src, size_t(ld_src) * 4, size_t(n) * 4, size_t(rows),
                                 cudaMemcpyDeviceToDevice, stream_));
  }

  void clamp(float* x, int64_t n, float lo, float hi) override { cuda::clamp(x, n, lo, hi, stream_); }

 private:
  // A device buffer of at least `bytes`, reused across calls (grows, never shrinks).
  void* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be in use by a queued GEMM
      if (scratch_) CUDA_CHECK(cudaFree(scratch_));
      scratch_ = nullptr;
      scratch_bytes_ = 0;
      CUDA_CHECK(cudaMalloc(&scratch_, bytes));
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unordered_set<void*> held_;  // live allocations, freed by the destructor
  void* scratch_ = nullptr;         // (T, K) 16-bit copy of a linear's X
  size_t scratch_bytes_ = 0;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  const int n = cuda_device_count();
  if (n == 0) throw Error("cuda backend: no CUDA device is visible (cudaGetDeviceCount reports none)");
  if (device < 0 || device >= n)
    throw Error("cuda backend: device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                " visible)");
  return std::make_unique<CudaBackend>(device);
}

void cuda_upload(void* dst_device, const void* src_host, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpy(dst_device, src_host, bytes, cudaMemcpyHostToDevice));
}

void cuda_download(void* dst_host, const void* src_device, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpy(dst_host, src_device, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace sllm
