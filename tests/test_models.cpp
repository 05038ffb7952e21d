// Golden tests: our decoder against HF transformers (dense logits) and against an independent float64 re-rotating
// implementation of the StreamingLLM cache (per-token NLLs), for every family fixture in tests/fixtures/models.
// Fixtures come from scripts/make_fixtures.py (see tests/fixtures/models/README.md).
#include <gtest/gtest.h>

#include <algorithm>      // std::max
#include <cmath>          // std::fabs
#include <cstdlib>        // std::malloc, std::free
#include <cstring>        // std::memcpy, std::memset
#include <string>         // std::string
#include <unordered_set>  // std::unordered_set
#include <vector>         // std::vector

#include "core/error.h"           // Error
#include "formats/safetensors.h"  // SafetensorsArchive
#include "model/decoder.h"        // Decoder
#include "model/model.h"          // load_model
#include "ops/backend.h"          // Backend, cpu_backend
#include "runtime/kv_cache.h"     // KVCache
#include "runtime/stream.h"       // stream_nll

namespace sllm {
namespace {

const std::string kDir = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/models/";

std::vector<int32_t> ids_of(const SafetensorsArchive& g, const std::string& name) {
  Tensor t = g.get(name);
  EXPECT_EQ(t.dtype, DType::I32);
  const int32_t* p = t.as<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

std::vector<float> floats_of(const SafetensorsArchive& g, const std::string& name) {
  Tensor t = g.get(name);
  std::vector<float> v(size_t(t.numel()));
  to_f32(t.data, t.dtype, v.size(), v.data());
  return v;
}

class Family : public ::testing::TestWithParam<std::string> {};

// Dense forward of the whole prompt in one chunk equals HF's logits.
TEST_P(Family, DenseLogitsMatchTransformers) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "input_ids");
  const auto ref = floats_of(g, "logits");
  const int64_t T = int64_t(ids.size()), V = m.cfg.vocab_size;
  ASSERT_EQ(int64_t(ref.size()), T * V);
  Decoder dec(m, cpu_backend(), T);
  KVCache cache(cpu_backend(), m.cfg, 0, T, T);
  const float* lg = dec.forward(ids.data(), T, cache, Logits::All);
  double max_err = 0, max_ref = 0;
  for (int64_t i = 0; i < T * V; ++i) {
    max_err = std::max(max_err, double(std::fabs(lg[i] - ref[size_t(i)])));
    max_ref = std::max(max_ref, double(std::fabs(ref[size_t(i)])));
  }
  EXPECT_LT(max_err, 2e-4 * std::max(1.0, max_ref)) << "max |ref| " << max_ref;
}

// Per-token streaming NLLs equal the independent re-rotating reference for several (S, R), both when fed one
// token per forward and in chunks (the sink + band mask), and dense equals the reference's dense.
TEST_P(Family, StreamingMatchesReference) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "stream_ids");
  struct Case { int64_t S, R; std::string name; };
  const std::vector<Case> cases = {{2, 5, "nll_S2_R5"}, {4, 8, "nll_S4_R8"}, {1, 12, "nll_S1_R12"},
                                   {0, 8, "nll_S0_R8"}};
  for (const auto& c : cases) {
    const auto ref = floats_of(g, c.name);
    for (int64_t chunk : {1, 7, 64}) {
      PplOptions o;
      o.mode = c.S == 0 ? CacheMode::Window : CacheMode::Streaming;
      o.sinks = c.S;
      o.window = c.R;
      o.chunk = chunk;
      PplResult r = stream_nll(m, cpu_backend(), ids, o);
      ASSERT_EQ(r.nll.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(r.nll[i], ref[i], 2e-4) << c.name << " chunk " << chunk << " token " << i + 1;
    }
  }
  const auto dense = floats_of(g, "nll_dense");
  PplOptions o;
  o.mode = CacheMode::Dense;
  o.chunk = 16;
  PplResult r = stream_nll(m, cpu_backend(), ids, o);
  for (size_t i = 0; i < dense.size(); ++i) ASSERT_NEAR(r.nll[i], dense[i], 2e-4) << "dense token " << i + 1;
}

// The fused projections (what device backends run: [q | k | v] with a per-group QKV reordered, [gate | up] with
// Backend::linear_swiglu, residual adds in linear_add) give the plain path's logits, prompt and per-token streaming
// alike, across the ring's wrap and with the sink query's own rotation.
TEST_P(Family, FusedProjectionsEqualPlain) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "stream_ids");
  const int64_t V = m.cfg.vocab_size, n = int64_t(ids.size());
  Decoder plain(m, cpu_backend(), 8, false), fused(m, cpu_backend(), 8, true);
  KVCache cp(cpu_backend(), m.cfg, 2, 5, 8), cf(cpu_backend(), m.cfg, 2, 5, 8);
  auto expect_same = [&](const float* a, const float* b, int64_t rows, const std::string& what) {
    double err = 0, mag = 0;
    for (int64_t i = 0; i < rows * V; ++i) {
      err = std::max(err, double(std::fabs(a[i] - b[i])));
      mag = std::max(mag, double(std::fabs(a[i])));
    }
    EXPECT_LE(err, 1e-5 * std::max(1.0, mag)) << what;
  };
  // A chunk of 8, then single tokens through the rest of the stream.
  const float* lp = plain.forward(ids.data(), 8, cp, Logits::All);
  const std::vector<float> pa(lp, lp + 8 * V);
  const float* lf = fused.forward(ids.data(), 8, cf, Logits::All);
  expect_same(pa.data(), lf, 8, "chunk of 8");
  for (int64_t i = 8; i < n; ++i) {
    const float* x = plain.forward(&ids[size_t(i)], 1, cp, Logits::Last);
    const std::vector<float> px(x, x + V);
    expect_same(px.data(), fused.forward(&ids[size_t(i)], 1, cf, Logits::Last), 1, "token " + std::to_string(i));
  }
}

// The CPU's arithmetic behind a device's memory contract: host_memory() is false, so the decoder takes its device
// path (weights placed and fused, the step's inputs staged and uploaded in one copy, logits downloaded), and every
// buffer it allocates starts as NaN, so an input it forgot to upload, or uploaded to the wrong offset, poisons
// the logits. What the CUDA tests check on a GPU, minus the kernels, on any machine.
class DeviceLike final : public Backend {
 public:
  ~DeviceLike() override {
    for (void* p : held_) std::free(p);
  }
  const char* name() const override { return "device-like"; }
  void* alloc(size_t bytes) override {
    void* p = std::malloc(std::max<size_t>(bytes, 1));
    std::memset(p, 0xff, bytes);  // NaN in every float
    held_.insert(p);
    return p;
  }
  void release(void* p) override {
    if (held_.erase(p)) std::free(p);
  }
  bool host_memory() const override { return false; }
  void upload(void* dst, const void* src, size_t n) override {
    ++uploads;
    std::memcpy(dst, src, n);
  }
  void download(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
  void copy(void* dst, const void* src, size_t n) override {
    Op o(this);
    std::memcpy(dst, src, n);
  }
  void linear(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
              const float* bias, float* Y, int64_t ldy) override {
    Op o(this);
    cpu().linear(X, T, K, ldx, W, wt, N, bias, Y, ldy);
  }
  void linear_add(const float* X, int64_t T, int64_t K, int64_t ldx, const void* W, DType wt, int64_t N,
                  const float* bias, float* Y, int64_t ldy, float* tmp) override {
    Op o(this);  // one kernel on a device; the default's parts are not counted again
    Backend::linear_add(X, T, K, ldx, W, wt, N, bias, Y, ldy, tmp);
  }
  void linear_swiglu(const float* X, int64_t T, int64_t K, int64_t ldx, const void* Wgu, DType wt, int64_t F,
                     float* out, float* tmp) override {
    Op o(this);
    Backend::linear_swiglu(X, T, K, ldx, Wgu, wt, F, out, tmp);
  }
  void rope_store(float* q, int64_t ldq, float* qs, float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T,
                  int64_t t0, int64_t rot, bool inter, const float* cos, const float* sin, const float* cos_s,
                  const float* sin_s, void* kc, void* vc, const cpu::AttnGeometry& g) override {
    Op o(this);
    Backend::rope_store(q, ldq, qs, k, ldk, v, ldv, T, t0, rot, inter, cos, sin, cos_s, sin_s, kc, vc, g);
  }
  void norm(NormOp op, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D,
            float* y) override {
    Op o(this);
    cpu().norm(op, x, w, b, eps, T, D, y);
  }
  void norm_linear(NormOp op, const float* x, const float* nw, const float* nb, float eps, int64_t T, int64_t K,
                   float* xn, const void* W, DType wt, int64_t N, const float* bias, float* Y, int64_t ldy) override {
    Op o(this);
    Backend::norm_linear(op, x, nw, nb, eps, T, K, xn, W, wt, N, bias, Y, ldy);
  }
  void norm_linear_swiglu(NormOp op, const float* x, const float* nw, const float* nb, float eps, int64_t T,
                          int64_t K, float* xn, const void* Wgu, DType wt, int64_t F, float* out,
                          float* tmp) override {
    Op o(this);
    Backend::norm_linear_swiglu(op, x, nw, nb, eps, T, K, xn, Wgu, wt, F, out, tmp);
  }
  void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t ld, int64_t rot, const float* cos, const float* sin,
            bool inter) override {
    Op o(this);
    cpu().rope(x, T, H, hd, ld, rot, cos, sin, inter);
  }
  void activation(ActOp op, float* x, int64_t n) override {
    Op o(this);
    cpu().activation(op, x, n);
  }
  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t T, int64_t F, float* o_) override {
    Op o(this);
    cpu().swiglu(g, ldg, u, ldu, T, F, o_);
  }
  void add(float* y, const float* x, int64_t n) override {
    Op o(this);
    cpu().add(y, x, n);
  }
  void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out) override {
    Op o(this);
    cpu().embedding(ids, T, table, t, D, out);
  }
  void attention(const float* qa, const float* qs, int64_t ldq, int64_t T, int64_t t0, const void* k,
                 const void* v, const cpu::AttnGeometry& g, float scale, const float* alibi, const float* extra,
                 float* out) override {
    Op o(this);
    cpu().attention(qa, qs, ldq, T, t0, k, v, g, scale, alibi, extra, out);
  }
  void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, void* kc, void* vc,
                const cpu::AttnGeometry& g) override {
    Op o(this);
    cpu().kv_store(k, ldk, v, ldv, T, t0, kc, vc, g);
  }
  void copy_rows(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t n) override {
    Op o(this);
    cpu().copy_rows(src, lds, dst, ldd, rows, n);
  }
  void clamp(float* x, int64_t n, float lo, float hi) override {
    Op o(this);
    cpu().clamp(x, n, lo, hi);
  }

  int64_t uploads = 0;
  int64_t ops = 0;  // compute ops issued by the caller (what a device runs as kernels or copies)

 private:
  // Counts a call made by the caller, not the parts a default implementation calls itself.
  struct Op {
    explicit Op(DeviceLike* b) : b_(b) { b_->ops += b_->depth_++ == 0; }
    ~Op() { --b_->depth_; }
    DeviceLike* b_;
  };
  static Backend& cpu() { return cpu_backend(); }
  std::unordered_set<void*> held_;
  int depth_ = 0;
};

TEST_P(Family, DevicePathEqualsHost) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "stream_ids");
  const int64_t V = m.cfg.vocab_size, n = int64_t(ids.size());
  DeviceLike dev;
  Decoder host(m, cpu_backend(), 8), device(m, dev, 8);  // the device decoder fuses its projections by default
  KVCache ch(cpu_backend(), m.cfg, 2, 5, 8), cd(dev, m.cfg, 2, 5, 8);
  // Chunks of 8, 3 and 1 (the staging offsets depend on T), through the ring's wrap and the two-rotation regime.
  int64_t i = 0;
  for (const int64_t T : {8, 3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1}) {
    if (i + T > n) break;
    const float* a = host.forward(&ids[size_t(i)], T, ch, Logits::All);
    const std::vector<float> x(a, a + T * V);
    const int64_t up0 = dev.uploads;
    const float* b = device.forward(&ids[size_t(i)], T, cd, Logits::All);
    EXPECT_EQ(dev.uploads - up0, 1) << "one upload per step (tables and ids together)";
    double err = 0, mag = 0;
    for (int64_t j = 0; j < T * V; ++j) {
      ASSERT_FALSE(std::isnan(b[j])) << "logit " << j << " of the chunk at " << i << ": a buffer was not uploaded";
      err = std::max(err, double(std::fabs(x[size_t(j)] - b[j])));
      mag = std::max(mag, double(std::fabs(x[size_t(j)])));
    }
    EXPECT_LE(err, 1e-5 * std::max(1.0, mag)) << "chunk of " << T << " at " << i;
    i += T;
  }
  EXPECT_GE(i, 16);
  // Streaming perplexity on the device path is the host's.
  PplOptions o;
  o.sinks = 2;
  o.window = 5;
  o.chunk = 4;
  const auto a = stream_nll(m, cpu_backend(), ids, o).nll, b = stream_nll(m, dev, ids, o).nll;
  ASSERT_EQ(a.size(), b.size());
  for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], b[j], 1e-5) << j;
}

// Block-format weights reach a device widened to f16 (the CPU alone has block kernels): the device path of a Q8_0
// model computes what the host computes with the same weights widened to f16 on the host, and the host's own Q8_0
// logits stay within the f16 rounding of those weights.
TEST(Models, DeviceGetsBlockFormatsWidenedToF16) {
  LoadOptions lo;
  lo.dtype = DType::Q8_0;
  const Model q = load_model(kDir + "llama", lo);
  ASSERT_EQ(q.w.layers[0].wq.dtype, DType::Q8_0);
  lo.dtype = DType::F16;
  Model h = load_model(kDir + "llama", lo);  // overwritten below with the Q8_0 values widened to f16
  for_each_weight(h.cfg, h.w, [&](const WeightSlot& s) {
    if (s.is_vector || s.dst->empty()) return;
    ModelWeights& qw = const_cast<ModelWeights&>(q.w);
    Tensor src;
    for_each_weight(q.cfg, qw, [&](const WeightSlot& t) { if (t.name == s.name) src = *t.dst; });
    *s.dst = retype(src, DType::F16, h.w);
  });
  if (h.cfg.tied_head) h.w.lm_head = h.w.embed;
  DeviceLike dev;
  Decoder on_host(h, cpu_backend(), 4), on_device(q, dev, 4), quant(q, cpu_backend(), 4);
  KVCache ch(cpu_backend(), h.cfg, 2, 5, 4), cd(dev, q.cfg, 2, 5, 4), cq(cpu_backend(), q.cfg, 2, 5, 4);
  const int64_t V = q.cfg.vocab_size;
  for (int32_t i = 0; i < 12; ++i) {
    const int32_t id = (i * 37 + 1) % int32_t(V);
    const float* a = on_host.forward(&id, 1, ch, Logits::Last);
    const std::vector<float> x(a, a + V);
    const float* b = on_device.forward(&id, 1, cd, Logits::Last);
    const float* c = quant.forward(&id, 1, cq, Logits::Last);
    for (int64_t j = 0; j < V; ++j) {
      ASSERT_NEAR(b[j], x[size_t(j)], 1e-5 * std::max(1.0f, std::fabs(x[size_t(j)]))) << "token " << i << " logit " << j;
      ASSERT_NEAR(c[j], x[size_t(j)], 2e-2 * std::max(1.0f, std::fabs(x[size_t(j)]))) << "token " << i << " logit " << j;
    }
  }
}

// The decode step's op budget on a device (each op is one kernel or copy there; the CUDA graph replays them): a
// sequential Llama layer is 6 (norm + [q|k|v] GEMV, rope_store, attention, o GEMV + residual, norm + [gate|up] GEMV
// + SwiGLU, down GEMV + residual), plus embedding, the final norm and the head. A change that adds kernels to the
// hot loop shows up here first.
TEST(Models, DeviceDecodeStepOpBudget) {
  const Model m = load_model(kDir + "llama");
  ASSERT_EQ(m.cfg.family, ::sllm::Family::Llama);
  DeviceLike dev;
  Decoder d(m, dev, 4);
  KVCache cache(dev, m.cfg, 2, 5, 4);
  std::vector<int32_t> ids(20);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 1) % size_t(m.cfg.vocab_size));
  for (size_t i = 0; i + 1 < ids.size(); ++i) d.forward(&ids[i], 1, cache, Logits::Last);  // past the two-rotation start
  const int64_t before = dev.ops;
  d.forward(&ids.back(), 1, cache, Logits::Last);
  EXPECT_EQ(dev.ops - before, 6 * m.cfg.n_layers + 3);
}

// A streaming cache whose window covers the whole stream is exactly dense.
TEST_P(Family, LargeWindowEqualsDense) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "stream_ids");
  PplOptions d;
  d.mode = CacheMode::Dense;
  PplOptions s;
  s.mode = CacheMode::Streaming;
  s.sinks = 4;
  s.window = int64_t(ids.size()) + 10;
  s.chunk = 5;
  const auto a = stream_nll(m, cpu_backend(), ids, d).nll;
  const auto b = stream_nll(m, cpu_backend(), ids, s).nll;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5) << i;
}

// Starting the stream at absolute position 4,000,000 changes nothing: every score depends on position
// differences only, and angles are formed in double precision.
TEST_P(Family, PositionsNeverDrift) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "stream_ids");
  PplOptions o;
  o.sinks = 2;
  o.window = 6;
  o.chunk = 3;
  const auto a = stream_nll(m, cpu_backend(), ids, o).nll;
  o.pos0 = 4'000'000;
  const auto b = stream_nll(m, cpu_backend(), ids, o).nll;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 5e-4) << i;
}

// An f16 KV cache stays close to the exact reference (keys and values rounded to 11 significant bits).
TEST_P(Family, HalfCacheStaysCloseToReference) {
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "stream_ids");
  const auto ref = floats_of(g, "nll_S2_R5");
  PplOptions o;
  o.sinks = 2;
  o.window = 5;
  o.chunk = 4;
  o.kv_dtype = DType::F16;
  const auto r = stream_nll(m, cpu_backend(), ids, o).nll;
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(r[i], ref[i], 2e-2) << i;
}

INSTANTIATE_TEST_SUITE_P(Golden, Family,
                         ::testing::Values("llama", "llama_untied_bf16", "llama_sharded", "gpt_neox", "gpt_neox_seq",
                                           "falcon_mqa", "falcon_new", "mpt", "mpt_clip"));

// Storing weights in another dtype at load keeps the logits within that dtype's rounding.
TEST(Models, DtypeConversionAtLoad) {
  Model f32 = load_model(kDir + "llama");
  for (DType dt : {DType::F16, DType::BF16}) {
    LoadOptions lo;
    lo.dtype = dt;
    Model m = load_model(kDir + "llama", lo);
    EXPECT_EQ(m.storage, dt);
    auto g = SafetensorsArchive::open(kDir + "llama/golden.safetensors");
    const auto ids = ids_of(g, "input_ids");
    const auto ref = floats_of(g, "logits");
    const int64_t T = int64_t(ids.size());
    Decoder dec(m, cpu_backend(), T);
    KVCache cache(cpu_backend(), m.cfg, 0, T, T);
    const float* lg = dec.forward(ids.data(), T, cache, Logits::All);
    double err = 0, mag = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      err = std::max(err, double(std::fabs(lg[i] - ref[i])));
      mag = std::max(mag, double(std::fabs(ref[i])));
    }
    // Relative to the logit scale: f16 keeps 11 significant bits, bf16 8 (errors compound over the layers).
    EXPECT_LT(err / mag, dt == DType::F16 ? 2e-3 : 2e-2) << dtype_name(dt) << " max |logit| " << mag;
    EXPECT_GT(err, 0.0) << "conversion had no effect";
  }
}

TEST(Models, RefusesBadInputs) {
  EXPECT_THROW(load_model(kDir + "does_not_exist"), Error);
  EXPECT_THROW(config_from_hf_json("{\"model_type\": \"bert\"}", "config.json"), Error);
  EXPECT_THROW(config_from_hf_json("{\"model_type\": \"llama\"}", "config.json"), Error);
  EXPECT_THROW(config_from_hf_json("not json", "config.json"), Error);
  try {
    config_from_hf_json(R"({"model_type":"llama","vocab_size":10,"hidden_size":64,"num_hidden_layers":1,
      "num_attention_heads":4,"num_key_value_heads":3,"intermediate_size":8})", "cfg.json");
    FAIL() << "accepted 3 kv heads for 4 heads";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("key/value heads"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sllm
