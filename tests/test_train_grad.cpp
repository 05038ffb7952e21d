// Finite-difference gradient checks of the trainer (issue 4, "How it is checked"): every backward kernel of
// kernels/cpu/train_kernels.h and of the CPU TrainBackend (linear_bwd, RoPE's inverse) against central differences
// of its forward, and the whole TrainModel (each block type x each sink variant) against central differences of
// its loss. The PyTorch goldens (test_train_golden.cpp) pin the same numbers on fixed fixtures; these checks need
// no reference implementation at all and cover shapes and accumulate flags the fixtures do not.
//
// Method. For an op y = f(x) and a fixed random R the scalar objective is L = sum(y * R) (summed in double), whose
// gradient is the op's backward applied to dy = R. Each checked entry x_i is compared with
// (L(x_i + h) - L(x_i - h)) / (2h), both evaluations in the f32 kernels themselves, the step being the one f32
// actually took ((x+h) - (x-h) in double).
//
// Tolerances. A central difference errs by (a) truncation, h^2 / 6 * L''', and (b) the f32 rounding of the two
// evaluations over 2h. Only the outputs that depend on x_i change between them (the kernels are deterministic, the
// rest of the sum is bit-identical), so (b) is a few ulps of O(1) outputs over 2h.
//   Ops: inputs, weights and R are O(1), gradients O(0.1..20). h = 1e-2 gives (a) ~ 2e-5 * |L'''| and
//   (b) ~ 1e-6 / 2e-2 = 5e-5; where the output is linear in the checked input (linear, embedding, RoPE, attention
//   in v, SwiGLU in u) there is no truncation and h = 0.25 shrinks (b). Measured: <= 1e-4 * max(1, |n|) (attention
//   dk the largest), <= 2e-5 for the linear maps. We allow 1e-3 * max(1, |n|): 10x margin, and every check must
//   see a gradient above kOpFloor = 0.05, 50x the tolerance, so a backward scaled by 2 or missing a term fails.
//   Model: the mean loss is ~log(V) = 3.1 over 10-12 positions; a perturbation changes the f32 rounding of every
//   downstream activation, ~1e-7 of the loss. h = 3e-3 gives (b) ~ 3e-7 / 6e-3 = 5e-5 and (a) ~ 1.5e-6 * L'''.
//   Measured: <= 2e-5 (0.2 of the tolerance). We allow 1e-4 + 1e-2 |n|; every tensor's sampled gradients reach
//   kModelFloor = 2e-3 (20x the absolute part; measured 3e-3 .. 0.8), at most one tensor excepted, and on those
//   entries a gradient doubled or dropped is verified not to pass. Injected bugs (LayerNorm's mean term, the
//   attention's Di term, dextra x2, SwiGLU's or GELU's second term, a dropped residual or norm branch, a missing
//   sink or embedding gradient) each fail both the op check and every model case they touch.
// SLLM_GRAD_VERBOSE=1 prints the measured errors.
#include <gtest/gtest.h>
#include <omp.h>  // omp_get_max_threads, omp_set_num_threads

#include <algorithm>  // std::max, std::min
#include <cmath>      // std::fabs, std::sqrt, std::exp, std::log
#include <cstdint>    // int32_t, int64_t
#include <cstdio>     // std::printf
#include <cstdlib>    // std::getenv
#include <set>        // std::set
#include <sstream>    // std::ostringstream
#include <string>     // std::string
#include <vector>     // std::vector

#include "core/error.h"           // Error
#include "cpu/kernels.h"          // rope_tables
#include "cpu/train_kernels.h"    // the kernels under test
#include "model/config.h"         // ModelConfig
#include "train/rng.h"            // Rng
#include "train/train_backend.h"  // make_cpu_train_backend
#include "train/train_model.h"    // TrainModel

namespace sllm::train {
namespace {

namespace tk = cpu::train;

// ---- tolerances (justified in the header comment) ----
constexpr float kOpH = 1e-2f;
constexpr float kLinearH = 0.25f;  // for maps linear in the checked input: no truncation error, less rounding
constexpr double kOpRel = 1e-3;    // |a - n| <= kOpRel * max(1, |n|)
constexpr double kOpFloor = 5e-2;  // the largest |n| of every op check must exceed this
constexpr float kModelH = 3e-3f;
constexpr double kModelAbs = 1e-4, kModelRel = 1e-2;  // |a - n| <= kModelAbs + kModelRel |n|
constexpr double kModelFloor = 2e-3;                  // each tensor's largest checked |n| must exceed this

std::vector<float> randn(Rng& rng, int64_t n, double sd = 1.0, double mean = 0.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(mean + sd * rng.normal());
  return v;
}

double dotd(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// The analytic gradients run at the default thread count; the many tiny forward evaluations of the differences run
// on one thread (results do not depend on the thread count), since a parallel region per call costs more than the
// work and stalls badly on a loaded machine.
class OneThread {
 public:
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

// Central difference of f() in x[i] (restored afterwards), divided by the step f32 actually took.
template <class F>
double central(float* x, int64_t i, float h, F&& f) {
  const float x0 = x[i], xp = x0 + h, xm = x0 - h;
  x[i] = xp;
  const double lp = f();
  x[i] = xm;
  const double lm = f();
  x[i] = x0;
  return (lp - lm) / (double(xp) - double(xm));
}

// Compares analytic[i] with the central difference of f in x[i] for every i < n (the op checks: all entries).
template <class F>
void check_all(const std::string& what, float* x, int64_t n, const float* analytic, F&& f, float h = kOpH) {
  const OneThread one;
  double worst = 0.0, largest = 0.0;
  int fails = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double num = central(x, i, h, f), a = analytic[i];
    const double err = std::fabs(a - num);
    worst = std::max(worst, err / std::max(1.0, std::fabs(num)));
    largest = std::max(largest, std::fabs(num));
    if (err > kOpRel * std::max(1.0, std::fabs(num)) && ++fails <= 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << a << ", numeric " << num << " (error " << err << ")";
  }
  EXPECT_EQ(fails, 0) << what << ": " << fails << " of " << n << " entries off";
  EXPECT_GT(largest, kOpFloor) << what << ": the gradient is too small for the check to mean anything";
  if (std::getenv("SLLM_GRAD_VERBOSE"))
    std::printf("  %-40s n=%4lld worst %.2e  largest |g| %.3f\n", what.c_str(), (long long)n, worst, largest);
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, double(std::fabs(want[i])))) << what << "[" << i << "]";
}

// ---------------------------------------------------------------------------------------------------------------
// Norms: LayerNorm (with and without bias) and RMSNorm. T = 37 rows spans two of the kernel's 32-row reduction
// chunks of dw / db.

void norm_case(bool layer, bool bias) {
  const std::string tag = std::string(layer ? "layernorm" : "rmsnorm") + (bias ? "+bias" : "");
  const int64_t T = 37, D = 12;
  const float eps = 1e-5f;
  Rng rng(layer ? 11 : 12);
  std::vector<float> x = randn(rng, T * D, 1.0, 0.3), w = randn(rng, D, 0.5, 1.0), b = randn(rng, D, 0.3),
                     R = randn(rng, T * D);
  std::vector<float> y(static_cast<size_t>(T * D)), st(static_cast<size_t>(T * 2));
  float* bp = bias ? b.data() : nullptr;
  auto L = [&] {
    tk::norm_fwd(layer, x.data(), w.data(), bp, eps, T, D, y.data(), st.data());
    return dotd(y.data(), R.data(), T * D);
  };
  L();
  std::vector<float> dx(static_cast<size_t>(T * D), 1e3f), dw(static_cast<size_t>(D), 0.0f),
      db(static_cast<size_t>(D), 0.0f);
  tk::norm_bwd(layer, R.data(), x.data(), w.data(), st.data(), T, D, dx.data(), false, dw.data(),
               bias ? db.data() : nullptr);
  check_all(tag + " dx", x.data(), T * D, dx.data(), L);
  check_all(tag + " dw", w.data(), D, dw.data(), L);
  if (bias) check_all(tag + " db", b.data(), D, db.data(), L);

  // acc_dx adds into dx; dw and db always add.
  L();
  std::vector<float> dx2 = randn(rng, T * D), dw2 = randn(rng, D), db2 = randn(rng, D);
  std::vector<float> want_dx(dx2), want_dw(dw2), want_db(db2);
  for (size_t i = 0; i < dx.size(); ++i) want_dx[i] += dx[i];
  for (size_t i = 0; i < dw.size(); ++i) want_dw[i] += dw[i], want_db[i] += db[i];
  tk::norm_bwd(layer, R.data(), x.data(), w.data(), st.data(), T, D, dx2.data(), true, dw2.data(),
               bias ? db2.data() : nullptr);
  expect_close(tag + " acc dx", dx2, want_dx, 1e-6);
  expect_close(tag + " acc dw", dw2, want_dw, 1e-6);
  if (bias) expect_close(tag + " acc db", db2, want_db, 1e-6);
}

TEST(TrainGradOps, LayerNormWithBias) { norm_case(true, true); }
TEST(TrainGradOps, LayerNormWithoutBias) { norm_case(true, false); }
TEST(TrainGradOps, RmsNorm) { norm_case(false, false); }

// ---------------------------------------------------------------------------------------------------------------
// Activations.

TEST(TrainGradOps, Gelu) {
  const int64_t n = 64;
  Rng rng(21);
  std::vector<float> x = randn(rng, n, 1.5), R = randn(rng, n), y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  x[0] = 0.0f, x[1] = -4.0f, x[2] = 4.0f;
  auto L = [&] {
    tk::gelu_fwd(x.data(), n, y.data());
    return dotd(y.data(), R.data(), n);
  };
  tk::gelu_bwd(R.data(), x.data(), n, dx.data());
  check_all("gelu dx", x.data(), n, dx.data(), L);
}

TEST(TrainGradOps, SwiGlu) {
  const int64_t T = 5, F = 13, n = T * F;
  auto be = make_cpu_train_backend();
  Rng rng(22);
  std::vector<float> g = randn(rng, n, 1.5), u = randn(rng, n), R = randn(rng, n), a(static_cast<size_t>(n));
  std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  auto L = [&] {
    be->swiglu(g.data(), u.data(), T, F, a.data());
    return dotd(a.data(), R.data(), n);
  };
  tk::swiglu_bwd(R.data(), g.data(), u.data(), n, dg.data(), du.data());
  check_all("swiglu dg", g.data(), n, dg.data(), L);
  check_all("swiglu du", u.data(), n, du.data(), L, kLinearH);  // a is linear in u
}

// ---------------------------------------------------------------------------------------------------------------
// Causal attention: MHA and GQA, with no extra logit, a zero one (softmax-off-by-one) and learned ones.

enum class Extra { None, Zeros, Learned };

void attention_case(int64_t KV, Extra ex) {
  const int64_t B = 2, T = 7, H = 4, hd = 8, qd = H * hd, kvd = KV * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  const std::string tag = "attention H=4 KV=" + std::to_string(KV) +
                          (ex == Extra::None    ? " no-extra"
                           : ex == Extra::Zeros ? " zero-extra"
                                                : " learned-extra");
  Rng rng(31 + uint64_t(KV) * 3 + uint64_t(ex));
  std::vector<float> q = randn(rng, B * T * qd), k = randn(rng, B * T * kvd), v = randn(rng, B * T * kvd),
                     R = randn(rng, B * T * qd);
  std::vector<float> extra = {-1.0f, 0.5f, 2.0f, -0.3f};
  if (ex == Extra::Zeros) extra.assign(static_cast<size_t>(H), 0.0f);
  const float* ep = ex == Extra::None ? nullptr : extra.data();
  std::vector<float> out(static_cast<size_t>(B * T * qd)), lse(static_cast<size_t>(B * H * T));
  auto L = [&] {
    tk::attention_fwd(q.data(), k.data(), v.data(), B, T, H, KV, hd, scale, ep, out.data(), lse.data());
    return dotd(out.data(), R.data(), B * T * qd);
  };
  L();
  // dq, dk, dv are overwritten (pre-filled with junk); dextra is added to (pre-filled with 0.25).
  std::vector<float> dq(q.size(), 1e3f), dk(k.size(), 1e3f), dv(v.size(), 1e3f), de(static_cast<size_t>(H), 0.25f);
  tk::attention_bwd(q.data(), k.data(), v.data(), out.data(), R.data(), lse.data(), B, T, H, KV, hd, scale, ep,
                    dq.data(), dk.data(), dv.data(), ep ? de.data() : nullptr);
  check_all(tag + " dq", q.data(), int64_t(q.size()), dq.data(), L);
  check_all(tag + " dk", k.data(), int64_t(k.size()), dk.data(), L);
  check_all(tag + " dv", v.data(), int64_t(v.size()), dv.data(), L, kLinearH);  // out is linear in v
  if (ep) {
    for (float& d : de) d -= 0.25f;
    check_all(tag + " dextra", extra.data(), H, de.data(), L);
  }
}

TEST(TrainGradOps, AttentionMha) {
  for (Extra e : {Extra::None, Extra::Zeros, Extra::Learned}) attention_case(4, e);
}
TEST(TrainGradOps, AttentionGqa) {
  for (Extra e : {Extra::None, Extra::Zeros, Extra::Learned}) attention_case(2, e);
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-entropy: the returned summed loss, and dlogits = grad_scale * d(sum)/dlogits, 0 on ignored rows.

TEST(TrainGradOps, CrossEntropy) {
  const int64_t N = 6, V = 11;
  const float gs = 0.37f;
  Rng rng(41);
  std::vector<float> x = randn(rng, N * V, 2.0), scratch(static_cast<size_t>(N * V));
  const std::vector<int32_t> tgt = {3, -1, 0, 10, -5, 3};
  double want = 0.0;  // the loss in double from the same f32 logits
  for (int64_t r = 0; r < N; ++r) {
    if (tgt[size_t(r)] < 0) continue;
    double m = -1e30, s = 0.0;
    for (int64_t i = 0; i < V; ++i) m = std::max(m, double(x[size_t(r * V + i)]));
    for (int64_t i = 0; i < V; ++i) s += std::exp(double(x[size_t(r * V + i)]) - m);
    want += m + std::log(s) - double(x[size_t(r * V + tgt[size_t(r)])]);
  }
  std::vector<float> d(static_cast<size_t>(N * V), 1e3f);
  EXPECT_NEAR(tk::cross_entropy(x.data(), tgt.data(), N, V, gs, d.data()), want, 1e-9 * want);
  for (int64_t i = 0; i < V; ++i) EXPECT_EQ(d[size_t(1 * V + i)], 0.0f) << "ignored row";
  for (int64_t i = 0; i < V; ++i) EXPECT_EQ(d[size_t(4 * V + i)], 0.0f) << "ignored row";
  auto L = [&] { return double(gs) * tk::cross_entropy(x.data(), tgt.data(), N, V, 0.0f, scratch.data()); };
  check_all("cross_entropy dlogits", x.data(), N * V, d.data(), L);
  // dlogits may alias logits.
  std::vector<float> xa(x);
  EXPECT_NEAR(tk::cross_entropy(xa.data(), tgt.data(), N, V, gs, xa.data()), want, 1e-9 * want);
  expect_close("cross_entropy aliased", xa, d, 0.0);
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding: repeated ids accumulate, and the table gradient is added to.

TEST(TrainGradOps, Embedding) {
  const int64_t V = 9, D = 5, T = 8;
  auto be = make_cpu_train_backend();
  Rng rng(51);
  const std::vector<int32_t> ids = {2, 7, 2, 0, 8, 2, 7, 4};  // 2 thrice, 7 twice; 1, 3, 5, 6 unused
  std::vector<float> table = randn(rng, V * D), R = randn(rng, T * D), y(static_cast<size_t>(T * D));
  auto L = [&] {
    be->embedding(ids.data(), T, table.data(), D, y.data());
    return dotd(y.data(), R.data(), T * D);
  };
  std::vector<float> dt(static_cast<size_t>(V * D), 0.0f);
  tk::embedding_bwd(ids.data(), T, R.data(), D, dt.data());
  check_all("embedding dtable", table.data(), V * D, dt.data(), L, kLinearH);
  for (int64_t d = 0; d < D; ++d) EXPECT_EQ(dt[size_t(3 * D + d)], 0.0f) << "unused row";
  std::vector<float> acc = randn(rng, V * D), want(acc);
  for (size_t i = 0; i < want.size(); ++i) want[i] += dt[i];
  be->embedding_bwd(ids.data(), T, R.data(), D, acc.data());
  expect_close("embedding acc", acc, want, 1e-6);
}

// ---------------------------------------------------------------------------------------------------------------
// The backend's linear_bwd: dX (= or +=), dW += dY^T X, db += column sums; a small odd shape and one large enough
// for the packed GEMM's blocking.

void linear_case(int64_t T, int64_t K, int64_t N) {
  const std::string tag = "linear " + std::to_string(T) + "x" + std::to_string(K) + "->" + std::to_string(N);
  auto be = make_cpu_train_backend();
  Rng rng(uint64_t(61 + T));
  std::vector<float> X = randn(rng, T * K), W = randn(rng, N * K, 0.5), b = randn(rng, N), R = randn(rng, T * N);
  std::vector<float> Y(static_cast<size_t>(T * N)), Wt(static_cast<size_t>(K * N));
  auto L = [&] {
    be->linear(X.data(), T, K, W.data(), N, b.data(), Y.data());
    return dotd(Y.data(), R.data(), T * N);
  };
  be->transpose(W.data(), N, K, Wt.data());
  std::vector<float> dX(static_cast<size_t>(T * K), 1e3f), dW(static_cast<size_t>(N * K), 0.0f),
      db(static_cast<size_t>(N), 0.0f);
  be->linear_bwd(R.data(), X.data(), T, K, Wt.data(), N, dX.data(), false, dW.data(), db.data());
  check_all(tag + " dX", X.data(), T * K, dX.data(), L, kLinearH);
  check_all(tag + " dW", W.data(), N * K, dW.data(), L, kLinearH);
  check_all(tag + " db", b.data(), N, db.data(), L, kLinearH);

  // Accumulation: dX with acc_dX, dW and db always.
  std::vector<float> aX = randn(rng, T * K), aW = randn(rng, N * K), ab = randn(rng, N);
  std::vector<float> wX(aX), wW(aW), wb(ab);
  for (size_t i = 0; i < wX.size(); ++i) wX[i] += dX[i];
  for (size_t i = 0; i < wW.size(); ++i) wW[i] += dW[i];
  for (size_t i = 0; i < wb.size(); ++i) wb[i] += db[i];
  be->linear_bwd(R.data(), X.data(), T, K, Wt.data(), N, aX.data(), true, aW.data(), ab.data());
  expect_close(tag + " acc dX", aX, wX, 1e-5);
  expect_close(tag + " acc dW", aW, wW, 1e-5);
  expect_close(tag + " acc db", ab, wb, 1e-5);
  // Each output may be null.
  std::vector<float> only_b(static_cast<size_t>(N), 0.0f);
  be->linear_bwd(R.data(), X.data(), T, K, Wt.data(), N, nullptr, false, nullptr, only_b.data());
  expect_close(tag + " db alone", only_b, db, 0.0);
}

TEST(TrainGradOps, LinearBackwardSmall) { linear_case(5, 7, 6); }
TEST(TrainGradOps, LinearBackwardBlocked) { linear_case(40, 48, 36); }

// ---------------------------------------------------------------------------------------------------------------
// RoPE: inverse undoes forward, the dims past rot_dims pass through, and the inverse is the forward's transpose
// (the backward): d<rope(x), r>/dx = rope^-1(r).

void rope_case(int64_t rot) {
  const int64_t B = 2, T = 5, H = 3, hd = 8, n = B * T * H * hd, half = rot / 2;
  const std::string tag = "rope rot_dims=" + std::to_string(rot);
  auto be = make_cpu_train_backend();
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
  std::vector<float> cs(static_cast<size_t>(T * half)), sn(static_cast<size_t>(T * half));
  cpu::rope_tables(pos.data(), T, rot, 10000.0, cs.data(), sn.data());
  Rng rng(uint64_t(71 + rot));
  std::vector<float> x = randn(rng, n), R = randn(rng, n), y(static_cast<size_t>(n));

  std::vector<float> f(x);
  be->rope(f.data(), B, T, H, hd, rot, cs.data(), sn.data(), false);
  for (int64_t i = 0; i < n; ++i) {
    if (i % hd >= rot) {
      ASSERT_EQ(f[size_t(i)], x[size_t(i)]) << tag << ": dim past rot_dims changed";
    }
  }
  bool moved = false;
  for (int64_t i = B * H * hd; i < n; ++i) moved |= f[size_t(i)] != x[size_t(i)];
  EXPECT_TRUE(moved) << tag << ": nothing rotated";
  std::vector<float> back(f);
  be->rope(back.data(), B, T, H, hd, rot, cs.data(), sn.data(), true);
  expect_close(tag + " inverse(forward(x))", back, x, 1e-6);
  std::vector<float> fwd_of_inv(x);
  be->rope(fwd_of_inv.data(), B, T, H, hd, rot, cs.data(), sn.data(), true);
  be->rope(fwd_of_inv.data(), B, T, H, hd, rot, cs.data(), sn.data(), false);
  expect_close(tag + " forward(inverse(x))", fwd_of_inv, x, 1e-6);

  std::vector<float> g(R);
  be->rope(g.data(), B, T, H, hd, rot, cs.data(), sn.data(), true);
  auto L = [&] {
    y = x;
    be->rope(y.data(), B, T, H, hd, rot, cs.data(), sn.data(), false);
    return dotd(y.data(), R.data(), n);
  };
  check_all(tag + " dx = inverse(r)", x.data(), n, g.data(), L, kLinearH);
}

TEST(TrainGradOps, RopePartial) { rope_case(4); }
TEST(TrainGradOps, RopeFull) { rope_case(8); }

// ---------------------------------------------------------------------------------------------------------------
// Whole models: the gradient of the mean loss against central differences of forward_loss / n_scored, on a
// sample of entries of every parameter tensor.

struct ModelCase {
  const char* name;
  bool llama;
  SinkKind sink;
  uint64_t seed;  // of the perturbed starting point, the batch and the sample of entries
};
const ModelCase kModels[] = {
    {"gpt_neox_vanilla", false, SinkKind::Vanilla, 1},
    {"gpt_neox_zero_sink", false, SinkKind::ZeroSink, 2},
    {"gpt_neox_learnable_sink", false, SinkKind::LearnableSink, 3},
    {"gpt_neox_sink_logit", false, SinkKind::SinkLogit, 4},
    {"llama_vanilla", true, SinkKind::Vanilla, 5},
    {"llama_zero_sink", true, SinkKind::ZeroSink, 6},
    {"llama_learnable_sink", true, SinkKind::LearnableSink, 7},
    {"llama_sink_logit", true, SinkKind::SinkLogit, 8},
};

// vocab 23, hidden 16, 2 layers, 4 heads of 4 dims (Llama: 2 KV heads, full rotary, tied head for vanilla and
// sink_logit, untied otherwise; GPT-NeoX: half rotary, untied head).
ModelConfig tiny_config(const ModelCase& mc) {
  ModelConfig c;
  c.family = mc.llama ? Family::Llama : Family::GPTNeoX;
  c.model_type = mc.llama ? "llama" : "gpt_neox";
  c.vocab_size = 23;
  c.hidden = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = mc.llama ? 2 : 4;
  c.head_dim = 4;
  c.ffn = mc.llama ? 24 : 32;
  c.max_positions = 64;
  c.norm = mc.llama ? NormKind::RMSNorm : NormKind::LayerNorm;
  c.norm_eps = 1e-5f;
  c.mlp = mc.llama ? MlpKind::SwiGLU : MlpKind::GeluErf;
  c.parallel_residual = !mc.llama;
  c.qkv = mc.llama ? QkvLayout::Separate : QkvLayout::Grouped;
  c.pos = PosKind::RoPE;
  c.rot_dims = mc.llama ? 4 : 2;
  c.tied_head = mc.llama && (mc.sink == SinkKind::Vanilla || mc.sink == SinkKind::SinkLogit);
  c.sink = mc.sink;
  c.sink_tokens = mc.sink == SinkKind::LearnableSink ? 2 : 0;
  return c;
}

class TrainGradModel : public ::testing::TestWithParam<ModelCase> {};

TEST_P(TrainGradModel, MeanLossGradient) {
  const ModelCase& mc = GetParam();
  const ModelConfig cfg = tiny_config(mc);
  auto be = make_cpu_train_backend();
  TrainModel m(cfg, *be);
  m.init({77});
  // Move off the initial point, whose norm weights are exactly 1 and biases and sink logits exactly 0 (a term
  // that vanishes there could be dropped unnoticed): norm weights 1 + N(0, 0.2), biases N(0, 0.1), sinks N(0, 1).
  Rng rng(1000 + mc.seed);
  std::vector<float> p(static_cast<size_t>(m.n_floats()));
  be->download(p.data(), m.params(), p.size());
  for (const ParamInfo& pi : m.params_table()) {
    if (pi.matrix) continue;
    const bool bias = pi.name.ends_with(".bias"), sinks = pi.name.ends_with(".sinks");
    for (int64_t i = 0; i < pi.numel; ++i)
      p[size_t(pi.offset + i)] = float(sinks ? rng.normal() : bias ? 0.1 * rng.normal() : 1.0 + 0.2 * rng.normal());
  }
  be->upload(m.params(), p.data(), p.size());
  m.params_changed();

  // Batch: B = 2 rows of T = 6. LearnableSink rows start with the sink ids, whose targets are -1; the others end
  // row 1 with an ignored target. Real tokens avoid the sink ids.
  const int64_t B = 2, T = 6, V = cfg.vocab_size, k = cfg.sink_tokens;
  std::vector<int32_t> ids(static_cast<size_t>(B * T)), tgt(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) ids[size_t(b * T + t)] = int32_t(t < k ? V - k + t : rng.below(uint64_t(V - k)));
    for (int64_t t = 0; t < T; ++t)
      tgt[size_t(b * T + t)] = t < k       ? -1
                               : t + 1 < T ? ids[size_t(b * T + t + 1)]
                                           : int32_t(rng.below(uint64_t(V - k)));
  }
  if (k == 0) tgt[size_t(B * T - 1)] = -1;

  m.zero_grads();
  int64_t n = 0;
  const double mean = m.forward_backward(ids.data(), tgt.data(), B, T, 1.0f, &n);
  ASSERT_EQ(n, B * T - (k > 0 ? B * k : 1));
  std::vector<float> g(static_cast<size_t>(m.n_floats()));
  be->download(g.data(), m.grads(), g.size());
  int64_t n2 = 0;
  EXPECT_NEAR(m.forward_loss(ids.data(), tgt.data(), B, T, &n2) / double(n2), mean, 1e-6);
  EXPECT_NEAR(mean, std::log(double(V)), 1.0) << "an untrained model's loss is about log V";
  // forward_backward adds weight * gradient: a second pass with weight 0.5 makes it 1.5x.
  m.forward_backward(ids.data(), tgt.data(), B, T, 0.5f);
  std::vector<float> g15(g.size());
  be->download(g15.data(), m.grads(), g15.size());
  for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(g15[i], 1.5f * g[i], 1e-6f + 1e-6f * std::fabs(g[i])) << i;
  // forward_backward_added builds the micro-batch's gradient on its own and adds it whole: exactly g15 + h, h the
  // gradient of a pass from zero (what a data-parallel rank contributes; train/comm.h).
  EXPECT_EQ(m.forward_backward_added(ids.data(), tgt.data(), B, T, 0.5f), mean);
  std::vector<float> added(g.size()), h(g.size());
  be->download(added.data(), m.grads(), added.size());
  m.zero_grads();
  m.forward_backward(ids.data(), tgt.data(), B, T, 0.5f);
  be->download(h.data(), m.grads(), h.size());
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(added[i], g15[i] + h[i]) << i;

  auto loss = [&] {
    int64_t s = 0;
    const double sum = m.forward_loss(ids.data(), tgt.data(), B, T, &s);
    return sum / double(s);
  };
  auto ok = [](double a, double num) { return std::fabs(a - num) <= kModelAbs + kModelRel * std::fabs(num); };
  const OneThread one;
  int tiny_tensors = 0;
  std::ostringstream report;
  for (const ParamInfo& pi : m.params_table()) {
    // Entries: up to 6 at random, all sink logits, and for the embedding 4 more from rows the batch uses (the
    // others have no gradient unless the head is tied) including the learnable sink tokens' rows.
    std::set<int64_t> pick;
    const bool sinks = pi.name.ends_with(".sinks");
    if (sinks || pi.numel <= 6)
      for (int64_t i = 0; i < pi.numel; ++i) pick.insert(i);
    while (int64_t(pick.size()) < std::min<int64_t>(6, pi.numel)) pick.insert(int64_t(rng.below(uint64_t(pi.numel))));
    if (pi.offset == 0) {  // the embedding is the first tensor
      for (int j = 0; j < 4; ++j)
        pick.insert(int64_t(ids[size_t(rng.below(uint64_t(B * T)))]) * cfg.hidden +
                    int64_t(rng.below(uint64_t(cfg.hidden))));
      for (int64_t s = 0; s < k; ++s) pick.insert((V - k + s) * cfg.hidden + int64_t(rng.below(uint64_t(cfg.hidden))));
    }
    double largest = 0.0, worst = 0.0;
    bool twice_passes = false, zero_passes = false;
    for (int64_t i : pick) {
      float* x = m.params() + pi.offset + i;
      const double num = central(x, 0, kModelH, [&] {
        m.params_changed();
        return loss();
      });
      m.params_changed();
      const double a = g[size_t(pi.offset + i)];
      largest = std::max(largest, std::fabs(num));
      worst = std::max(worst, std::fabs(a - num) / (kModelAbs + kModelRel * std::fabs(num)));
      EXPECT_TRUE(ok(a, num)) << mc.name << " " << pi.name << "[" << i << "]: analytic " << a << ", numeric " << num;
      twice_passes |= std::fabs(num) > kModelFloor && ok(2.0 * a, num);
      zero_passes |= std::fabs(num) > kModelFloor && ok(0.0, num);
    }
    // The check has teeth: on an entry with a real gradient, doubling or dropping it would have failed.
    EXPECT_FALSE(twice_passes || zero_passes) << mc.name << " " << pi.name;
    if (largest < kModelFloor) ++tiny_tensors;
    report << "  " << pi.name << ": " << pick.size() << " entries, largest |g| " << largest << ", worst error " << worst
           << " of the tolerance\n";
  }
  // Every tensor has a non-negligible gradient somewhere in its sample, bar at most one (a fluke of the sample).
  EXPECT_LE(tiny_tensors, 1) << mc.name << ":\n" << report.str();
  if (std::getenv("SLLM_GRAD_VERBOSE")) std::printf("%s (mean loss %.4f)\n%s", mc.name, mean, report.str().c_str());
}

// The attention-sink diagnostic recomputes softmax probabilities from the saved q, k and log-sum-exp: every row
// sums to 1 over its keys (plain softmax; with an extra logit to 1 minus the extra's share, in [0, 1]; within
// 1e-3: the f32 scores of scaled-up weights are large, and only the dot products' summation order differs), and
// first_token_attention is the mean of those rows' key-0 entries. Weights are scaled up so attention is far
// from uniform (a wrong q, k or lse index then breaks the sums).
TEST_P(TrainGradModel, FirstTokenAttentionFromSavedSoftmax) {
  const ModelCase& mc = GetParam();
  const ModelConfig cfg = tiny_config(mc);
  auto be = make_cpu_train_backend();
  TrainModel m(cfg, *be);
  EXPECT_THROW(m.first_token_attention(0), Error);
  EXPECT_THROW(m.extra_logit_attention(0), Error);
  m.init({91});
  std::vector<float> p(static_cast<size_t>(m.n_floats()));
  be->download(p.data(), m.params(), p.size());
  for (float& x : p) x *= 8.0f;  // peaked attention
  be->upload(m.params(), p.data(), p.size());
  m.params_changed();
  const int64_t B = 2, T = 7, V = cfg.vocab_size;
  Rng rng(5 + mc.seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T)), tgt(static_cast<size_t>(B * T), -1);
  for (auto& id : ids) id = int32_t(rng.below(uint64_t(V)));
  int64_t n = 0;
  m.forward_loss(ids.data(), tgt.data(), B, T, &n);
  const std::vector<double> first = m.first_token_attention(2);
  const std::vector<double> extra = m.extra_logit_attention(2);
  const std::vector<double> first2 = m.first_token_attention(2, 2);  // the first two positions together
  const std::vector<std::vector<double>> maps = m.attention_maps(5);
  ASSERT_EQ(int64_t(maps.size()), cfg.n_layers);
  EXPECT_EQ(m.attention_maps(100)[0].size(), size_t(T * T));  // n is clamped to T
  ASSERT_EQ(int64_t(first.size()), cfg.n_layers);
  ASSERT_EQ(int64_t(extra.size()), cfg.has_extra_logit() ? cfg.n_layers : 0);
  bool peaked = false;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    double mean0 = 0, rest = 0, mean01 = 0;  // the key-0 entries; what the keys leave to the extra logit; keys 0-1
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < cfg.n_heads; ++h)
        for (int64_t t = 0; t < T; ++t) {
          double row = 0, mx = 0;
          for (int64_t j = 0; j <= t; ++j) {
            const double pj = m.attention_probability(l, b, h, t, j);
            row += pj;
            mx = std::max(mx, pj);
          }
          if (cfg.has_extra_logit()) {
            EXPECT_GE(row, 0.0);  // the extra logit may take all of it
            EXPECT_LT(row, 1.0 + 1e-3);
          } else {
            EXPECT_NEAR(row, 1.0, 1e-3) << "layer " << l << " row " << b << " head " << h << " query " << t;
          }
          if (t >= 2) {
            mean0 += m.attention_probability(l, b, h, t, 0), rest += 1.0 - row;
            mean01 += m.attention_probability(l, b, h, t, 0) + m.attention_probability(l, b, h, t, 1);
          }
          peaked |= t >= 2 && mx > 0.9;
        }
    EXPECT_NEAR(first[size_t(l)], mean0 / double(B * cfg.n_heads * (T - 2)), 1e-9) << "layer " << l;
    EXPECT_NEAR(first2[size_t(l)], mean01 / double(B * cfg.n_heads * (T - 2)), 1e-9) << "layer " << l;
    // The maps: entry (t, j) is p(t -> j) averaged over rows and heads; NaN above the diagonal.
    for (int64_t t = 0; t < 5; ++t)
      for (int64_t j = 0; j < 5; ++j) {
        const double got = maps[size_t(l)][size_t(t * 5 + j)];
        if (j > t) {
          EXPECT_TRUE(std::isnan(got)) << t << " " << j;
          continue;
        }
        double want = 0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t h = 0; h < cfg.n_heads; ++h) want += m.attention_probability(l, b, h, t, j);
        EXPECT_NEAR(got, want / double(B * cfg.n_heads), 1e-9) << "layer " << l << " (" << t << ", " << j << ")";
      }
    if (cfg.has_extra_logit()) {  // the extra logit's share is the rest of each row
      EXPECT_NEAR(extra[size_t(l)], rest / double(B * cfg.n_heads * (T - 2)), 1e-3) << "layer " << l;
      EXPECT_GE(extra[size_t(l)], 0.0);
      EXPECT_LE(extra[size_t(l)], 1.0);
    }
  }
  EXPECT_TRUE(peaked) << "the scaled weights should make some attention rows nearly one-hot";
  EXPECT_THROW(m.attention_probability(0, 0, 0, 1, 2), Error);  // a key after its query
}

INSTANTIATE_TEST_SUITE_P(AllBlocksAndSinks, TrainGradModel, ::testing::ValuesIn(kModels),
                         [](const ::testing::TestParamInfo<ModelCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace sllm::train
