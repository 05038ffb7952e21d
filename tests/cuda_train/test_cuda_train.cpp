// The trainer's CUDA backend (kernels/cuda/train_backend.cu) against the CPU backend: every op on the same fresh
// random inputs (outputs that are overwritten are poisoned with NaN first, so an element left unwritten fails),
// whole models' losses and gradients for both block types and every sink variant, run-to-run determinism, and a
// short training run through `run_training` with --device cuda (the plugin), resumed bit-identically. Skips when no
// device is visible.
//
// Tolerances: the two backends compute the same formulas in f32 with other summation orders and other exp/erf
// implementations, so results agree to a few f32 ulps per operation: 2e-5 absolute + 2e-5 relative for single
// ops, 1e-4 relative for attention (sums over up to T keys), and for whole models' gradients 1e-5 absolute +
// 1e-3 relative (two layers of backward products over a small model).
#include <gtest/gtest.h>
#include <omp.h>     // omp_get_max_threads, omp_set_num_threads
#include <unistd.h>  // getpid

#include <cmath>       // std::fabs, std::isnan
#include <filesystem>  // std::filesystem
#include <functional>  // std::function
#include <limits>      // std::numeric_limits
#include <memory>      // std::unique_ptr
#include <random>      // std::mt19937
#include <string>      // std::string
#include <vector>      // std::vector

#include "core/error.h"                // Error
#include "cuda/cuda_backend.h"        // cuda_device_count
#include "cuda/cuda_train_backend.h"  // make_cuda_train_backend
#include "train/checkpoint.h"         // list_checkpoints
#include "train/train_backend.h"      // TrainBackend, make_cpu_train_backend
#include "train/train_model.h"        // TrainModel
#include "train/trainer.h"            // run_training
#include "train_test_util.h"          // write_byte_corpus, tiny_run, metric_lines

namespace sllm::train {
namespace {

namespace fs = std::filesystem;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// One buffer on both backends.
struct Pair {
  float* cpu = nullptr;
  float* gpu = nullptr;
  size_t n = 0;
};

class CudaTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
    cpu_ = make_cpu_train_backend();
    gpu_ = make_cuda_train_backend(0);
    threads_ = omp_get_max_threads();  // run_training sets the thread count process-wide
  }
  void TearDown() override {
    omp_set_num_threads(threads_);
    for (Pair& p : pairs_) {
      if (cpu_) cpu_->free(p.cpu);
      if (gpu_) gpu_->free(p.gpu);
    }
    for (auto& [c, g] : ids_) cpu_->free_ids(c), gpu_->free_ids(g);
  }
  // The same host values on both backends.
  Pair put(const std::vector<float>& h) {
    Pair p{cpu_->alloc(h.size()), gpu_->alloc(h.size()), h.size()};
    cpu_->upload(p.cpu, h.data(), h.size());
    gpu_->upload(p.gpu, h.data(), h.size());
    pairs_.push_back(p);
    return p;
  }
  Pair uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> h(n);
    for (float& x : h) x = d(rng_);
    return put(h);
  }
  Pair poisoned(size_t n) { return put(std::vector<float>(n, kNaN)); }
  std::pair<int32_t*, int32_t*> ids(const std::vector<int32_t>& h) {
    auto p = std::make_pair(cpu_->alloc_ids(h.size()), gpu_->alloc_ids(h.size()));
    cpu_->upload_ids(p.first, h.data(), h.size());
    gpu_->upload_ids(p.second, h.data(), h.size());
    ids_.push_back(p);
    return p;
  }
  // Both backends' values of p agree within atol + rtol |cpu| everywhere (and neither holds a NaN).
  void expect_close(const Pair& p, double atol, double rtol, const std::string& what) {
    std::vector<float> a(p.n), b(p.n);
    cpu_->download(a.data(), p.cpu, p.n);
    gpu_->download(b.data(), p.gpu, p.n);
    size_t bad = 0, first = p.n;
    for (size_t i = 0; i < p.n; ++i) {
      const bool ok = !std::isnan(a[i]) && !std::isnan(b[i]) && std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(a[i]);
      if (!ok && bad++ == 0) first = i;
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << p.n << " differ; first at " << first << ": cpu "
                       << (first < p.n ? a[first] : 0.0f) << " gpu " << (first < p.n ? b[first] : 0.0f);
  }
  std::unique_ptr<TrainBackend> cpu_, gpu_;
  std::mt19937 rng_{20261128};
  std::vector<Pair> pairs_;
  std::vector<std::pair<int32_t*, int32_t*>> ids_;
  int threads_ = 1;
};

constexpr double kA = 2e-5, kR = 2e-5;

TEST_F(CudaTrain, LinearAndItsBackward) {
  const int64_t T = 300, K = 70, N = 45;  // more rows than one reduction chunk (the bias gradient)
  Pair X = uniform(T * K), W = uniform(N * K), b = uniform(N), Y = poisoned(T * N);
  cpu_->linear(X.cpu, T, K, W.cpu, N, b.cpu, Y.cpu);
  gpu_->linear(X.gpu, T, K, W.gpu, N, b.gpu, Y.gpu);
  expect_close(Y, kA, kR, "linear");
  Pair Wt = poisoned(K * N);
  cpu_->transpose(W.cpu, N, K, Wt.cpu);
  gpu_->transpose(W.gpu, N, K, Wt.gpu);
  expect_close(Wt, 0, 0, "transpose");
  for (bool acc : {false, true}) {
    Pair dY = uniform(T * N), dX = acc ? uniform(T * K) : poisoned(T * K), dW = uniform(N * K), db = uniform(N);
    cpu_->linear_bwd(dY.cpu, X.cpu, T, K, Wt.cpu, N, dX.cpu, acc, dW.cpu, db.cpu);
    gpu_->linear_bwd(dY.gpu, X.gpu, T, K, Wt.gpu, N, dX.gpu, acc, dW.gpu, db.gpu);
    expect_close(dX, kA, kR, acc ? "dX (accumulated)" : "dX");
    expect_close(dW, kA, kR, "dW");
    expect_close(db, kA, kR, "db");
  }
}

TEST_F(CudaTrain, ElementwiseOps) {
  const int64_t n = 10007;
  Pair x = uniform(n, -4, 4), y = poisoned(n);
  cpu_->gelu(x.cpu, n, y.cpu);
  gpu_->gelu(x.gpu, n, y.gpu);
  expect_close(y, kA, kR, "gelu");
  Pair dy = uniform(n), dx = poisoned(n);
  cpu_->gelu_bwd(dy.cpu, x.cpu, n, dx.cpu);
  gpu_->gelu_bwd(dy.gpu, x.gpu, n, dx.gpu);
  expect_close(dx, kA, kR, "gelu_bwd");
  Pair g = uniform(n, -6, 6), u = uniform(n), a = poisoned(n);
  cpu_->swiglu(g.cpu, u.cpu, 1, n, a.cpu);
  gpu_->swiglu(g.gpu, u.gpu, 1, n, a.gpu);
  expect_close(a, kA, kR, "swiglu");
  Pair dg = poisoned(n), du = poisoned(n);
  cpu_->swiglu_bwd(dy.cpu, g.cpu, u.cpu, n, dg.cpu, du.cpu);
  gpu_->swiglu_bwd(dy.gpu, g.gpu, u.gpu, n, dg.gpu, du.gpu);
  expect_close(dg, kA, kR, "swiglu_bwd dg");
  expect_close(du, kA, kR, "swiglu_bwd du");
  Pair s = poisoned(n);
  cpu_->add(x.cpu, u.cpu, n, s.cpu);
  gpu_->add(x.gpu, u.gpu, n, s.gpu);
  expect_close(s, 0, 0, "add");
  cpu_->scale(s.cpu, n, 0.37f);
  gpu_->scale(s.gpu, n, 0.37f);
  expect_close(s, 0, 0, "scale");
  const double a2 = cpu_->sum_squares(x.cpu, n), b2 = gpu_->sum_squares(x.gpu, n);
  EXPECT_NEAR(b2, a2, 1e-12 * a2);
  const int64_t big = (1 << 16) + 5;  // several chunks
  Pair z = uniform(big);
  EXPECT_NEAR(gpu_->sum_squares(z.gpu, big), cpu_->sum_squares(z.cpu, big), 1e-11 * big);
}

TEST_F(CudaTrain, NormsAndTheirBackward) {
  const int64_t T = 300, D = 70;  // more rows than one reduction chunk
  for (bool layer : {true, false}) {
    SCOPED_TRACE(layer ? "layernorm" : "rmsnorm");
    Pair x = uniform(T * D, -2, 3), w = uniform(D, 0.5f, 1.5f), b = uniform(D), y = poisoned(T * D);
    Pair st = poisoned(2 * T);
    cpu_->norm(layer, x.cpu, w.cpu, layer ? b.cpu : nullptr, 1e-5f, T, D, y.cpu, st.cpu);
    gpu_->norm(layer, x.gpu, w.gpu, layer ? b.gpu : nullptr, 1e-5f, T, D, y.gpu, st.gpu);
    expect_close(y, kA, kR, "norm y");
    expect_close(st, kA, kR, "norm stats");
    for (bool acc : {false, true}) {
      Pair dy = uniform(T * D), dx = acc ? uniform(T * D) : poisoned(T * D), dw = uniform(D), db = uniform(D);
      cpu_->norm_bwd(layer, dy.cpu, x.cpu, w.cpu, st.cpu, T, D, dx.cpu, acc, dw.cpu, layer ? db.cpu : nullptr);
      gpu_->norm_bwd(layer, dy.gpu, x.gpu, w.gpu, st.gpu, T, D, dx.gpu, acc, dw.gpu, layer ? db.gpu : nullptr);
      expect_close(dx, kA, kR, "norm dx");
      expect_close(dw, 1e-4, kR, "norm dw");  // a sum over 300 rows
      if (layer) expect_close(db, 1e-4, kR, "norm db");
    }
  }
}

TEST_F(CudaTrain, EmbeddingRopeAndLoss) {
  const int64_t T = 50, D = 24, V = 300;
  std::vector<int32_t> h(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) h[size_t(t)] = int32_t((t * 7) % 13);  // repeated ids
  auto id = ids(h);
  Pair table = uniform(V * D), e = poisoned(T * D);
  cpu_->embedding(id.first, T, table.cpu, D, e.cpu);
  gpu_->embedding(id.second, T, table.gpu, D, e.gpu);
  expect_close(e, 0, 0, "embedding");
  Pair dx = uniform(T * D), dtable = uniform(V * D);
  cpu_->embedding_bwd(id.first, T, dx.cpu, D, dtable.cpu);
  gpu_->embedding_bwd(id.second, T, dx.gpu, D, dtable.gpu);
  expect_close(dtable, kA, kR, "embedding_bwd");

  // RoPE: 2 sequences of T = 25, 3 heads of 8 dims, the first 6 rotating; forward then inverse.
  const int64_t B = 2, Ts = 25, H = 3, hd = 8, rot = 6;
  Pair cs = uniform(Ts * rot / 2), sn = uniform(Ts * rot / 2), q = uniform(B * Ts * H * hd);
  for (bool inverse : {false, true}) {
    cpu_->rope(q.cpu, B, Ts, H, hd, rot, cs.cpu, sn.cpu, inverse);
    gpu_->rope(q.gpu, B, Ts, H, hd, rot, cs.gpu, sn.gpu, inverse);
    expect_close(q, kA, kR, inverse ? "rope inverse" : "rope");
  }

  // Cross-entropy with ignored rows, into a separate gradient and in place.
  const int64_t N = 40;
  std::vector<int32_t> tg(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) tg[size_t(r)] = r % 5 == 3 ? -1 : int32_t((r * 37) % V);
  auto tid = ids(tg);
  Pair logits = uniform(N * V, -8, 8), dl = poisoned(N * V);
  const double lc = cpu_->cross_entropy(logits.cpu, tid.first, N, V, 0.25f, dl.cpu);
  const double lg = gpu_->cross_entropy(logits.gpu, tid.second, N, V, 0.25f, dl.gpu);
  EXPECT_NEAR(lg, lc, 1e-5 * std::fabs(lc));
  expect_close(dl, 1e-7, kR, "cross_entropy dlogits");
  const double li = gpu_->cross_entropy(logits.gpu, tid.second, N, V, 0.25f, logits.gpu);
  cpu_->cross_entropy(logits.cpu, tid.first, N, V, 0.25f, logits.cpu);
  EXPECT_EQ(li, lg) << "in place: the same loss";
  expect_close(logits, 1e-7, kR, "cross_entropy in place");
}

TEST_F(CudaTrain, AttentionAndItsBackward) {
  struct Shape {
    int64_t B, T, H, KV, hd;
    bool extra;
  };
  for (const Shape& s : {Shape{2, 19, 4, 2, 24, false}, Shape{1, 70, 4, 4, 64, true}, Shape{2, 9, 6, 1, 40, true},
                         Shape{1, 33, 2, 1, 128, true}, Shape{1, 17, 2, 2, 256, false}}) {
    SCOPED_TRACE("B " + std::to_string(s.B) + " T " + std::to_string(s.T) + " H " + std::to_string(s.H) + " KV " +
                 std::to_string(s.KV) + " hd " + std::to_string(s.hd) + (s.extra ? " extra" : ""));
    const int64_t rows = s.B * s.T, qd = s.H * s.hd, kvd = s.KV * s.hd;
    const float scale = 1.0f / std::sqrt(float(s.hd));
    Pair q = uniform(rows * qd, -2, 2), k = uniform(rows * kvd, -2, 2), v = uniform(rows * kvd);
    Pair ex = uniform(s.H), out = poisoned(rows * qd), lse = poisoned(s.B * s.H * s.T);
    const float* exc = s.extra ? ex.cpu : nullptr;
    const float* exg = s.extra ? ex.gpu : nullptr;
    cpu_->attention(q.cpu, k.cpu, v.cpu, s.B, s.T, s.H, s.KV, s.hd, scale, exc, out.cpu, lse.cpu);
    gpu_->attention(q.gpu, k.gpu, v.gpu, s.B, s.T, s.H, s.KV, s.hd, scale, exg, out.gpu, lse.gpu);
    expect_close(out, 1e-5, 1e-4, "attention out");
    expect_close(lse, 1e-5, 1e-5, "attention lse");
    Pair dout = uniform(rows * qd), dq = poisoned(rows * qd), dk = poisoned(rows * kvd), dv = poisoned(rows * kvd);
    Pair dex = uniform(s.H);
    cpu_->attention_bwd(q.cpu, k.cpu, v.cpu, out.cpu, dout.cpu, lse.cpu, s.B, s.T, s.H, s.KV, s.hd, scale, exc,
                        dq.cpu, dk.cpu, dv.cpu, s.extra ? dex.cpu : nullptr);
    gpu_->attention_bwd(q.gpu, k.gpu, v.gpu, out.gpu, dout.gpu, lse.gpu, s.B, s.T, s.H, s.KV, s.hd, scale, exg,
                        dq.gpu, dk.gpu, dv.gpu, s.extra ? dex.gpu : nullptr);
    expect_close(dq, 1e-5, 1e-4, "dq");
    expect_close(dk, 1e-5, 1e-4, "dk");
    expect_close(dv, 1e-5, 1e-4, "dv");
    expect_close(dex, 1e-5, 1e-4, "d extra");
  }
}

TEST_F(CudaTrain, HeadDimAboveTheKernelsLimitIsRefused) {
  Pair x = uniform(2 * 260);
  EXPECT_THROW(gpu_->attention(x.gpu, x.gpu, x.gpu, 1, 2, 1, 1, 260, 1.0f, nullptr, x.gpu, x.gpu), Error);
}

TEST_F(CudaTrain, AdamW) {
  const int64_t n = 5003;
  Pair p = uniform(n), g = uniform(n), m = uniform(n, -0.1f, 0.1f), v = uniform(n, 0.0f, 0.01f);
  for (float wd : {0.0f, 0.1f}) {
    cpu_->adamw(p.cpu, g.cpu, m.cpu, v.cpu, n, 3e-3f, 0.9f, 0.95f, 1e-8f, wd, 0.19, 0.0975);
    gpu_->adamw(p.gpu, g.gpu, m.gpu, v.gpu, n, 3e-3f, 0.9f, 0.95f, 1e-8f, wd, 0.19, 0.0975);
    // m = b1 m + (1 - b1) g can nearly cancel: an absolute floor of a few ulps of its terms (whether either
    // compiler fuses the product into an FMA may differ)
    expect_close(p, 1e-6, 1e-6, "adamw p");
    expect_close(m, 1e-8, 1e-6, "adamw m");
    expect_close(v, 1e-9, 1e-6, "adamw v");
  }
}

// Whole models: the loss and every gradient of one micro-batch, both block types x the four sink variants, from
// the same starting weights; and the CUDA gradients twice in a row are the same bits.
TEST_F(CudaTrain, ModelsMatchTheCpuAndAreDeterministic) {
  for (const char* family : {"gpt_neox", "llama"})
    for (const char* sink : {"vanilla", "zero_sink", "learnable_sink", "sink_logit"}) {
      SCOPED_TRACE(std::string(family) + " " + sink);
      TrainOptions o = testutil::tiny_run("unused", "unused");
      o.family = family;
      o.sink = sink;
      o.sink_tokens = 2;
      if (o.family == "llama") o.kv_heads = 2, o.tied_head = std::string(sink) == "vanilla";
      const ModelConfig cfg = o.model_config(256);
      TrainModel mc(cfg, *cpu_), mg(cfg, *gpu_);
      mc.init({99});
      mg.init({99});
      const int64_t B = 3, T = 20;
      std::vector<int32_t> idh(static_cast<size_t>(B * T)), tg(idh.size());
      std::mt19937 r(7);
      for (int64_t i = 0; i < B * T; ++i) {
        const int64_t t = i % T;
        idh[size_t(i)] = t < cfg.sink_tokens ? int32_t(cfg.first_sink_id() + t) : int32_t(r() % 256);
        tg[size_t(i)] = t < cfg.sink_tokens ? -1 : int32_t(r() % 256);
      }
      mc.zero_grads();
      mg.zero_grads();
      const double lc = mc.forward_backward(idh.data(), tg.data(), B, T, 1.0f);
      const double lg = mg.forward_backward(idh.data(), tg.data(), B, T, 1.0f);
      EXPECT_NEAR(lg, lc, 1e-5 * lc);
      const size_t n = size_t(mc.n_floats());
      std::vector<float> gc(n), gg(n), gg2(n);
      cpu_->download(gc.data(), mc.grads(), n);
      gpu_->download(gg.data(), mg.grads(), n);
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) bad += !(std::fabs(gc[i] - gg[i]) <= 1e-5 + 1e-3 * std::fabs(gc[i]));
      EXPECT_EQ(bad, 0u) << "of " << n << " gradients";
      mg.zero_grads();
      EXPECT_EQ(mg.forward_backward(idh.data(), tg.data(), B, T, 1.0f), lg);
      gpu_->download(gg2.data(), mg.grads(), n);
      EXPECT_EQ(gg, gg2) << "a second pass on the GPU gives other bits";
    }
}

// `run_training --device cuda` (the backend from the plugin library): the losses of the CPU run within 1e-4, and a
// run stopped and resumed on the GPU equals the uninterrupted GPU run bit for bit.
TEST_F(CudaTrain, TrainingRunOnTheGpu) {
  const std::string base = (fs::temp_directory_path() / ("sllm_cuda_train_" + std::to_string(::getpid()))).string();
  testutil::write_byte_corpus(base + "/data", {"/README.md", "/docs/training.md"});
  TrainOptions c = testutil::tiny_run(base + "/data", base + "/cpu");
  c.accum = 2;
  const TrainResult rc = run_training(c);
  TrainOptions g = c;
  g.device = "cuda";
  g.out = base + "/gpu";
  const TrainResult rg = run_training(g);
  EXPECT_NEAR(rg.last_loss, rc.last_loss, 1e-4);
  EXPECT_NEAR(rg.val_loss, rc.val_loss, 1e-4);
  TrainOptions h = g;
  h.out = base + "/gpu_resumed";
  EXPECT_TRUE(run_training(h, 4).interrupted);
  h.resume = true;
  const TrainResult rh = run_training(h);
  EXPECT_EQ(rh.last_loss, rg.last_loss);
  EXPECT_EQ(rh.val_loss, rg.val_loss);
  EXPECT_EQ(testutil::metric_lines(h.out), testutil::metric_lines(g.out));
  g.device = "cuda:99";
  g.out = base + "/bad";
  try {
    run_training(g);
    ADD_FAILURE() << "no error for --device cuda:99";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device 99 does not exist"), std::string::npos) << e.what();
  }
  fs::remove_all(base);
}

}  // namespace
}  // namespace sllm::train
