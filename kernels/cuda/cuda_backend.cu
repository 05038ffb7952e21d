// The CUDA backend: class CudaBackend (ops/backend.h) over cuBLAS and the kernels in kernels.cu. All pointers are
// device memory; every op is enqueued on one stream owned by the backend and returns without waiting.
//
// Device: the constructor makes `device` current; the ops assume it still is when they are called (one device
// per thread; a multi-GPU caller sets the device before using each backend).
//
// Linear. Decode-sized calls (T <= 8) with f16 / bf16 weights take the GEMV kernel of decode.cu: bandwidth-bound,
// X kept in f32, bias fused. Everything else is cuBLAS: the weight W is (N, K) row-major, which cuBLAS
// (column-major) reads as a (K, N) matrix with ld K; X (T, K) with row stride ldx is a column-major (K, T) matrix
// with ld ldx, and Y likewise (N, T) with ld ldy. So Y^T = W X^T is one cublasGemmEx(op_T on W, op_N on X, m = N,
// n = T, k = K). f32 weights: an f32 GEMM (CUBLAS_COMPUTE_32F, no TF32: bit-for-bit an f32 dot product up to
// summation order, within 1e-5 of the CPU). f16 / bf16 weights: X is first rounded to the weight dtype into a
// scratch buffer (tensor cores need both inputs in the same type), then the GEMM multiplies 16-bit inputs exactly
// and accumulates in f32 into an f32 Y. The only extra error is that rounding of X: |dy| <= 2^-11 (f16) or 2^-8
// (bf16) times sum_k |x_k w_k|. The bias is added by a separate kernel (cuBLAS has no row broadcast).
//
// Attention: the split-K decode kernel (decode.cu) for up to kDecodeMaxT query tokens, the tiled chunk kernel
// (attention_prefill.cu) for longer chunks. Both read f32 or f16 caches.
//
// Graphs: graph_begin / graph_end capture the ops issued in between on the backend's stream (the decoder's
// steady-state decode step); kv_store and attention recorded there read t0 from a device scalar that
// graph_launch(t0) sets before replaying, so one capture serves every later position of the stream.
#include <algorithm>      // std::max, std::sort, std::find_if
#include <cstdlib>        // std::getenv
#include <limits>         // std::numeric_limits
#include <string>         // std::string, std::to_string
#include <unordered_set>  // std::unordered_set
#include <vector>         // std::vector

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

// A device buffer reused across calls: grows (never shrinks) on demand. Growing waits for the stream, since queued
// ops may still use the old buffer, and is refused inside a graph capture (the eager step before a capture sizes
// every buffer the captured ops need).
class GrowBuffer {
 public:
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer() { cudaFree(p_); }  // never throws

  size_t capacity() const { return bytes_; }

  // zero: a new allocation is zero-filled (on s) before use.
  void* get(size_t bytes, cudaStream_t s, bool capturing, const char* what, bool zero = false) {
    if (bytes <= bytes_) return p_;
    SLLM_CHECK(!capturing, std::string(what) + ": scratch must be sized by an eager step before a graph capture");
    CUDA_CHECK(cudaStreamSynchronize(s));
    if (p_) CUDA_CHECK(cudaFree(p_));
    p_ = nullptr;
    bytes_ = 0;
    CUDA_CHECK(cudaMalloc(&p_, bytes));
    bytes_ = bytes;
    if (zero) CUDA_CHECK(cudaMemsetAsync(p_, 0, bytes, s));
    return p_;
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, const CudaOptions& opt) : device_(device), fused_ops_(opt.fused_ops) {
    CUDA_CHECK(cudaSetDevice(device_));
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_));
    const auto env_off = [](const char* name) {
      const char* v = std::getenv(name);
      return v && std::string(v) == "0";
    };
    pdl_ = opt.pdl && major >= 9 && !env_off("SLLM_CUDA_PDL");
    fold_norm_ = opt.fused_ops && opt.fold_norm && !env_off("SLLM_CUDA_FOLD_NORM");
    vector_attention_ = opt.vector_attention && !env_off("SLLM_CUDA_ATTN_VEC");
    gemv_wave_ = opt.gemv_one_wave && !env_off("SLLM_CUDA_GEMV_WAVE");
    CUDA_CHECK(cudaStreamCreate(&stream_));  // blocking: ordered with the legacy default stream (cuda_upload)
    try {
      CUBLAS_CHECK(cublasCreate(&cublas_));
      CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
      // CUBLAS_DEFAULT_MATH: tensor cores for the 16-bit GEMMs, and f32 GEMMs stay f32 (TF32 is opt-in only).
      CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
      // A fixed cuBLAS workspace, so that a GEMM recorded into a CUDA graph never allocates.
      CUDA_CHECK(cudaMalloc(&cublas_ws_, kCublasWorkspace));
      CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_, kCublasWorkspace));
      CUDA_CHECK(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, device_));
      CUDA_CHECK(cudaMalloc(&t0_dev_, sizeof(int64_t)));
      CUDA_CHECK(cudaMallocHost(&t0_host_, sizeof(int64_t)));
    } catch (...) {
      if (cublas_) cublasDestroy(cublas_);
      if (cublas_ws_) cudaFree(cublas_ws_);
      if (t0_dev_) cudaFree(t0_dev_);
      if (t0_host_) cudaFreeHost(t0_host_);
      cudaStreamDestroy(stream_);
      throw;
    }
  }

  ~CudaBackend() override {
    // No throwing here: errors at teardown are ignored (the process may be unwinding from one).
    cudaStreamSynchronize(stream_);
    for (void* p : held_) cudaFree(p);
    drop_graph();
    drop_profile();
    cublasDestroy(cublas_);
    cudaFree(cublas_ws_);
    cudaFree(t0_dev_);
    cudaFreeHost(t0_host_);
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

  void copy(void* dst, const void* src, size_t n) override {
    const OpScope prof(*this, "copy");
    if (n > 0) CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream_));
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
    const OpScope prof(*this, "linear", N, K, T);
    SLLM_CHECK(wt == DType::F32 || wt == DType::F16 || wt == DType::BF16,
               std::string("cuda linear: weight dtype must be f32, f16 or bf16, got ") + dtype_name(wt));
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {  // empty sum: Y = bias (or 0)
      CUDA_CHECK(cudaMemset2DAsync(Y, size_t(ldy) * 4, 0, size_t(N) * 4, size_t(T), stream_));
      if (bias) cuda::add_bias(Y, bias, T, N, ldy, st());
      return;
    }
    if (cuda::can_gemv16(X, T, K, ldx, W, wt)) {  // decode-sized T: bandwidth-bound, f32 X, fused bias
      cuda::gemv16(X, T, K, ldx, W, wt, N, bias, Y, ldy, false, st());
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
      void* Xh = scratch(x16_, size_t(T) * size_t(K) * 2, "cuda linear");  // (T, K) contiguous
      cuda::convert_rows(X, T, K, ldx, wt, Xh, st());
      CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, W, dt, k, Xh, dt, k, &zero, Y,
                                CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (bias) cuda::add_bias(Y, bias, T, N, ldy, st());
  }

  void linear_add(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
                  const float* bias, float* Y, int64_t ldy, float* tmp) override {
    const OpScope prof(*this, "linear_add", N, K, T);
    if (fused_ops_ && T > 0 && N > 0 && cuda::can_gemv16(X, T, K, ldx, W, wt)) {  // the add in the GEMV epilogue
      cuda::gemv16(X, T, K, ldx, W, wt, N, bias, Y, ldy, true, st());
      return;
    }
    Backend::linear_add(X, T, K, ldx, W, wt, N, bias, Y, ldy, tmp);
  }

  void linear_swiglu(const float* X, int64_t T, int64_t K, int64_t ldx, const void* Wgu, DType wt, int64_t F,
                     float* out, float* tmp) override {
    const OpScope prof(*this, "linear_swiglu", 2 * F, K, T);
    if (fused_ops_ && T > 0 && F > 0 && cuda::can_gemv16(X, T, K, ldx, Wgu, wt)) {
      cuda::gemv16_swiglu(X, T, K, ldx, Wgu, wt, F, out, F, st());
      return;
    }
    Backend::linear_swiglu(X, T, K, ldx, Wgu, wt, F, out, tmp);
  }

  void norm_linear(NormOp op, const float* x, const float* nw, const float* nb, float eps, int64_t T, int64_t K,
                   float* xn, const void* W, DType wt, int64_t N, const float* bias, float* Y, int64_t ldy) override {
    const OpScope prof(*this, "norm_linear", N, K, T);
    const cuda::NormSpec n{nw, op == NormOp::Layer ? nb : nullptr, eps, op == NormOp::Layer};
    if (fold_norm_ && T > 0 && N > 0 && cuda::can_gemv16(x, T, K, K, W, wt) && cuda::can_fold_norm(n)) {
      cuda::gemv16(x, T, K, K, W, wt, N, bias, Y, ldy, false, st(), n);  // no norm kernel: the GEMV normalises
      return;
    }
    Backend::norm_linear(op, x, nw, nb, eps, T, K, xn, W, wt, N, bias, Y, ldy);
  }

  void norm_linear_swiglu(NormOp op, const float* x, const float* nw, const float* nb, float eps, int64_t T,
                          int64_t K, float* xn, const void* Wgu, DType wt, int64_t F, float* out,
                          float* tmp) override {
    const OpScope prof(*this, "norm_linear_swiglu", 2 * F, K, T);
    const cuda::NormSpec n{nw, op == NormOp::Layer ? nb : nullptr, eps, op == NormOp::Layer};
    if (fold_norm_ && T > 0 && F > 0 && cuda::can_gemv16(x, T, K, K, Wgu, wt) && cuda::can_fold_norm(n)) {
      cuda::gemv16_swiglu(x, T, K, K, Wgu, wt, F, out, F, st(), n);
      return;
    }
    Backend::norm_linear_swiglu(op, x, nw, nb, eps, T, K, xn, Wgu, wt, F, out, tmp);
  }

  void norm(NormOp op, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D,
            float* y) override {
    const OpScope prof(*this, "norm");
    if (op == NormOp::RMS)
      cuda::rmsnorm(x, w, eps, T, D, y, st());
    else
      cuda::layernorm(x, w, b, eps, T, D, y, st());
  }

  void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t ld, int64_t rot, const float* c, const float* s,
            bool inter) override {
    const OpScope prof(*this, "rope");
    cuda::rope(x, T, H, hd, ld, rot, c, s, inter, st());
  }

  void activation(ActOp op, float* x, int64_t n) override {
    const OpScope prof(*this, "activation");
    cuda::activation(op, x, n, st());
  }

  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t T, int64_t F, float* o) override {
    const OpScope prof(*this, "swiglu");
    cuda::swiglu(g, ldg, u, ldu, T, F, o, st());
  }

  void add(float* y, const float* x, int64_t n) override {
    const OpScope prof(*this, "add");
    cuda::add(y, x, n, st());
  }

  void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out) override {
    const OpScope prof(*this, "embedding");
    SLLM_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16,
               std::string("cuda embedding: table dtype must be f32, f16 or bf16, got ") + dtype_name(t));
    cuda::embedding(ids, T, table, t, D, out, st());
  }

  void attention(const float* qa, const float* qs, int64_t ldq, int64_t T, int64_t t0, const void* k,
                 const void* v, const cpu::AttnGeometry& g, float scale, const float* alibi, const float* extra,
                 float* out) override {
    const OpScope prof(*this, "attention");
    if (T <= 0) return;
    if (T > kDecodeMaxT && !capturing_) {
      cuda::attention_prefill(qa, qs, ldq, T, t0, k, v, g, scale, alibi, extra, out, st());
      return;
    }
    const cuda::DecodePlan plan = cuda::decode_plan(g, T, num_sms_);
    // Sized for the largest decode chunk of this geometry at once, so that a 2..4-token step after a captured
    // one-token step (a chat turn's suffix) does not reallocate and drop the graph.
    size_t floats = plan.scratch_floats, counters_n = plan.counters;  // T itself may exceed 4 in a capture
    for (int64_t t = 1; t <= kDecodeMaxT; ++t) {
      const cuda::DecodePlan p = cuda::decode_plan(g, t, num_sms_);
      floats = std::max(floats, size_t(p.scratch_floats));
      counters_n = std::max(counters_n, size_t(p.counters));
    }
    float* part = static_cast<float*>(scratch(attn_part_, floats * sizeof(float), "cuda attention"));
    int* counters = static_cast<int*>(scratch(attn_count_, counters_n * sizeof(int), "cuda attention", true));
    cuda::attention_decode(qa, qs, ldq, T, t0, capturing_ ? t0_dev_ : nullptr, k, v, g, scale, alibi, extra, out,
                           plan, part, counters, st(), vector_attention_);
  }

  void rope_store(float* q, int64_t ldq, float* qs, float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T,
                  int64_t t0, int64_t rot, bool inter, const float* cos, const float* sin, const float* cos_s,
                  const float* sin_s, void* kc, void* vc, const cpu::AttnGeometry& g) override {
    const OpScope prof(*this, "rope_store");
    if (!fused_ops_) {
      Backend::rope_store(q, ldq, qs, k, ldk, v, ldv, T, t0, rot, inter, cos, sin, cos_s, sin_s, kc, vc, g);
      return;
    }
    cuda::rope_store(q, ldq, qs, k, ldk, v, ldv, T, t0, capturing_ ? t0_dev_ : nullptr, rot, inter, cos, sin, cos_s,
                     sin_s, kc, vc, g, st());
  }

  void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, void* kc,
                void* vc, const cpu::AttnGeometry& g) override {
    const OpScope prof(*this, "kv_store");
    cuda::kv_store(k, ldk, v, ldv, T, t0, capturing_ ? t0_dev_ : nullptr, kc, vc, g, st());
  }

  void copy_rows(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t rows, int64_t n) override {
    const OpScope prof(*this, "copy_rows");
    if (rows <= 0 || n <= 0) return;
    CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(ld_dst) * 4, src, size_t(ld_src) * 4, size_t(n) * 4, size_t(rows),
                                 cudaMemcpyDeviceToDevice, stream_));
  }

  void clamp(float* x, int64_t n, float lo, float hi) override {
    const OpScope prof(*this, "clamp");
    cuda::clamp(x, n, lo, hi, st());
  }

  // Only the id crosses to the host; the 4-byte copy waits for the kernel (and every op queued before it).
  int32_t sample(const float* logits, int64_t V, const SampleParams& p, double u01) override {
    if (!cuda::sample_supported(V, p)) return -1;
    if (!sample_out_) sample_out_ = static_cast<int32_t*>(alloc(sizeof(int32_t)));  // freed with held_
    cuda::sample(logits, V, p, u01, sample_out_, st());
    int32_t id = -1;
    CUDA_CHECK(cudaMemcpyAsync(&id, sample_out_, sizeof id, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return id;
  }

  bool nll(const float* logits, int64_t T, int64_t V, const int32_t* targets, double* out) override {
    if (T <= 0) return true;
    const size_t tb = size_t(T) * sizeof(int32_t), ob = size_t(T) * sizeof(double);
    void* buf = scratch(nll_buf_, tb + ob, "cuda nll");
    double* d_out = static_cast<double*>(buf);  // doubles first: aligned
    auto* d_tg = reinterpret_cast<int32_t*>(static_cast<char*>(buf) + ob);
    CUDA_CHECK(cudaMemcpyAsync(d_tg, targets, tb, cudaMemcpyHostToDevice, stream_));
    cuda::nll(logits, T, V, d_tg, d_out, st());
    CUDA_CHECK(cudaMemcpyAsync(out, d_out, ob, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return true;
  }

  bool has_graphs() const override { return true; }

  void graph_begin() override {
    SLLM_CHECK(!capturing_, "cuda graph_begin: already capturing");
    drop_graph();
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
  }

  uint64_t graph_end(bool keep) override {
    SLLM_CHECK(capturing_, "cuda graph_end: not capturing");
    capturing_ = false;
    const cudaError_t e = cudaStreamEndCapture(stream_, &graph_);
    if (!keep) {  // abandoning a capture that failed half-way: the error that stopped it is what gets reported
      cudaGetLastError();
      drop_graph();
      return 0;
    }
    CUDA_CHECK(e);
    CUDA_CHECK(cudaGraphInstantiate(&graph_exec_, graph_, 0));
    size_t n = 0;
    CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &n));
    graph_nodes_ = int64_t(n);
    graph_id_ = ++graphs_made_;
    return graph_id_;
  }

  int64_t graph_nodes() const override { return graph_exec_ ? graph_nodes_ : 0; }

  bool graph_launch(uint64_t id, int64_t t0) override {
    if (graph_exec_ == nullptr || id != graph_id_) return false;
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the previous replay's copy of *t0_host_ has been read
    *t0_host_ = t0;
    CUDA_CHECK(cudaMemcpyAsync(t0_dev_, t0_host_, sizeof(int64_t), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
    return true;
  }

 private:
  // Up to this many query tokens, attention is the split-K decode kernel (work spread along the window); longer
  // chunks take the tiled prefill kernel, whose grid of ceil(T / 32) x n_heads blocks is then large enough.
  static constexpr int64_t kDecodeMaxT = 4;

  // A GrowBuffer of this backend, grown if needed. Growing frees the old block, whose address a captured graph
  // may have baked in: the graph is dropped then (the decoder runs that step eagerly and captures again).
  void* scratch(GrowBuffer& b, size_t bytes, const char* what, bool zero = false) {
    const bool grows = bytes > b.capacity();
    void* p = b.get(bytes, stream_, capturing_, what, zero);
    if (grows) drop_graph();
    return p;
  }

  void drop_graph() {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (graph_) cudaGraphDestroy(graph_);
    graph_exec_ = nullptr;
    graph_ = nullptr;
    graph_id_ = 0;
  }

  // ---- profiling (cuda_profile): device time of each eager op, between two events ----
 public:
  void profile(bool on) {
    if (on) drop_profile();
    profile_ = on;
  }
  std::vector<CudaOpTime> profile_report() {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<CudaOpTime> out;
    for (const Timed& t : timed_) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, t.a, t.b));
      auto it = std::find_if(out.begin(), out.end(), [&](const CudaOpTime& o) { return o.op == t.op; });
      if (it == out.end()) it = out.insert(out.end(), CudaOpTime{t.op, 0, 0.0});
      ++it->calls;
      it->ms += double(ms);
    }
    std::sort(out.begin(), out.end(), [](const CudaOpTime& x, const CudaOpTime& y) { return x.ms > y.ms; });
    return out;
  }

 private:
  struct Timed {
    std::string op;
    cudaEvent_t a, b;
  };
  // Times the op it is declared in: an event before, one after. Only the outermost op counts (a default
  // implementation that calls other ops is timed once), never during a graph capture, and only while profiling.
  class OpScope {
   public:
    OpScope(CudaBackend& be, const char* op, int64_t n = 0, int64_t k = 0, int64_t t = 0) : be_(be) {
      if (!be_.profile_ || be_.capturing_) return;
      counted_ = true;
      if (be_.prof_depth_++ > 0) return;
      outer_ = true;
      t_.op = op;
      if (n > 0) t_.op += " " + std::to_string(n) + "x" + std::to_string(k) + (t > 1 ? " T" + std::to_string(t) : "");
      CUDA_CHECK(cudaEventCreate(&t_.a));
      CUDA_CHECK(cudaEventCreate(&t_.b));
      CUDA_CHECK(cudaEventRecord(t_.a, be_.stream_));
    }
    ~OpScope() {
      if (!counted_) return;
      --be_.prof_depth_;
      if (!outer_) return;
      if (cudaEventRecord(t_.b, be_.stream_) == cudaSuccess) be_.timed_.push_back(t_);  // no throwing here
    }
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;

   private:
    CudaBackend& be_;
    Timed t_;
    bool counted_ = false, outer_ = false;
  };
  void drop_profile() {
    for (const Timed& t : timed_) cudaEventDestroy(t.a), cudaEventDestroy(t.b);
    timed_.clear();
  }
  bool profile_ = false;
  int prof_depth_ = 0;
  std::vector<Timed> timed_;

  int device_;
  bool fused_ops_;  // rope_store / linear_add / linear_swiglu as one kernel each (else Backend's defaults)
  bool fold_norm_ = false;  // norm_linear(_swiglu) as one GEMV that normalises X as it loads it
  bool vector_attention_ = true;  // decode attention with 16-byte loads where the cache rows allow
  bool gemv_wave_ = true;         // GEMV grids of at most one wave
  bool pdl_ = false;  // our kernels launch with programmatic dependent launch (cuda_common.cuh)
  cudaStream_t stream_ = nullptr;
  cuda::Stream st() const { return cuda::Stream(stream_, pdl_, gemv_wave_); }
  cublasHandle_t cublas_ = nullptr;
  static constexpr size_t kCublasWorkspace = size_t(32) << 20;
  void* cublas_ws_ = nullptr;
  std::unordered_set<void*> held_;  // live allocations, freed by the destructor
  GrowBuffer x16_;          // (T, K) 16-bit copy of a linear's X for the cuBLAS path
  GrowBuffer attn_part_;    // decode attention partials
  GrowBuffer attn_count_;   // decode attention: a counter per (token, head), zero between launches
  GrowBuffer nll_buf_;      // nll(): results, then targets
  int num_sms_ = 1;
  bool capturing_ = false;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  int64_t graph_nodes_ = 0;
  uint64_t graph_id_ = 0;     // id of the current graph (0: none)
  uint64_t graphs_made_ = 0;  // ids handed out so far
  int64_t* t0_dev_ = nullptr;   // the t0 that captured kv_store / attention read
  int64_t* t0_host_ = nullptr;  // pinned staging for it
  int32_t* sample_out_ = nullptr;  // (1) the id sample() picked, from alloc()
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

std::unique_ptr<Backend> make_cuda_backend(int device, const CudaOptions& opt) {
  const int n = cuda_device_count();
  if (n == 0) throw Error("cuda backend: no CUDA device is visible (cudaGetDeviceCount reports none)");
  if (device < 0 || device >= n)
    throw Error("cuda backend: device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                " visible)");
  return std::make_unique<CudaBackend>(device, opt);
}

namespace {
CudaBackend& as_cuda(Backend& be) {
  auto* c = dynamic_cast<CudaBackend*>(&be);
  if (!c) throw Error(std::string("cuda_profile: the backend is '") + be.name() + "', not a CUDA backend");
  return *c;
}
}  // namespace

void cuda_profile(Backend& be, bool on) { as_cuda(be).profile(on); }
std::vector<CudaOpTime> cuda_profile_report(Backend& be) { return as_cuda(be).profile_report(); }

void cuda_upload(void* dst_device, const void* src_host, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpy(dst_device, src_host, bytes, cudaMemcpyHostToDevice));
}

void cuda_download(void* dst_host, const void* src_device, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpy(dst_host, src_device, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace sllm
