// The whole decoder on the CUDA backend: the same golden checks as tests/test_models.cpp (HF logits, the
// independent streaming reference), run through make_cuda_backend(). Skips without a device.
#include <gtest/gtest.h>

#include <algorithm>  // std::max
#include <cmath>      // std::fabs
#include <string>     // std::string
#include <vector>     // std::vector

#include "cuda/cuda_backend.h"    // cuda_device_count, make_cuda_backend
#include "formats/safetensors.h"  // SafetensorsArchive
#include "model/decoder.h"        // Decoder
#include "model/model.h"          // load_model
#include "ops/backend.h"          // cpu_backend
#include "runtime/kv_cache.h"     // KVCache
#include "runtime/stream.h"       // stream_nll

namespace sllm {
namespace {

const std::string kDir = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/models/";

std::vector<float> floats_of(const SafetensorsArchive& g, const std::string& name) {
  Tensor t = g.get(name);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  to_f32(t.data, t.dtype, v.size(), v.data());
  return v;
}

std::vector<int32_t> ids_of(const SafetensorsArchive& g, const std::string& name) {
  Tensor t = g.get(name);
  return std::vector<int32_t>(t.as<int32_t>(), t.as<int32_t>() + t.numel());
}

class CudaFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaFamily, LogitsAndStreamingMatchTheReferences) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  auto be = make_cuda_backend(0);
  const std::string dir = kDir + GetParam();
  Model m = load_model(dir);
  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = ids_of(g, "input_ids");
  const auto ref = floats_of(g, "logits");
  const int64_t T = int64_t(ids.size());
  {
    Decoder dec(m, *be, T);
    KVCache cache(*be, m.cfg, 0, T, T);
    const float* lg = dec.forward(ids.data(), T, cache, Logits::All);
    double err = 0, mag = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      err = std::max(err, double(std::fabs(lg[i] - ref[i])));
      mag = std::max(mag, double(std::fabs(ref[i])));
    }
    // A whole-prompt forward runs cuBLAS GEMMs: f32 exactly, 16-bit weights with X rounded to the weight dtype
    // (2^-8 relative for bf16; see kernels/cuda/cuda_backend.cu), so the bound follows the storage dtype.
    const double tol = m.storage == DType::BF16 ? 8e-3 : 2e-3;
    EXPECT_LT(err, tol * std::max(1.0, mag)) << "storage " << dtype_name(m.storage);
  }
  const auto stream = ids_of(g, "stream_ids");
  const auto nll = floats_of(g, "nll_S2_R5");
  for (int64_t chunk : {1, 7}) {
    PplOptions o;
    o.sinks = 2;
    o.window = 5;
    o.chunk = chunk;
    const auto r = stream_nll(m, *be, stream, o).nll;
    for (size_t i = 0; i < nll.size(); ++i) ASSERT_NEAR(r[i], nll[i], 2e-3) << "chunk " << chunk << " token " << i;
  }
}

// The decode-step CUDA graph: replaying it must give bit-identical logits to running the same ops one by one, for
// f32 and f16 caches, across the ring's wrap, and after switching to a new cache (which must re-capture, since the
// graph bakes in the cache's buffers). The CPU decoder bounds both.
TEST(CudaDecoderGraph, ReplayEqualsEagerAndCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  auto be = make_cuda_backend(0);
  const Model m = load_model(kDir + "llama");
  const int64_t S = 2, R = 5, n = 40, V = m.cfg.vocab_size;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 3) % V);
  for (DType kv : {DType::F32, DType::F16}) {
    SCOPED_TRACE(dtype_name(kv));
    // `other` shares the backend (and so its one graph) with `graph` and steps in lockstep in pass 1: each replaces
    // the other's graph, so every launch finds a stranger's graph and captures its own again.
    Decoder eager(m, *be, 1), graph(m, *be, 1), host(m, cpu_backend(), 1), other(m, *be, 1);
    eager.set_graphs(false);
    for (int pass = 0; pass < 2; ++pass) {  // pass 1: fresh caches, the graph must be re-captured
      KVCache ce(*be, m.cfg, S, R, 1, kv), cg(*be, m.cfg, S, R, 1, kv), ch(cpu_backend(), m.cfg, S, R, 1, kv);
      KVCache co(*be, m.cfg, S, R, 1, kv);
      for (int64_t i = 0; i < n; ++i) {
        const float* le = eager.forward(&ids[size_t(i)], 1, ce, Logits::Last);
        const std::vector<float> a(le, le + V);
        const float* lg = graph.forward(&ids[size_t(i)], 1, cg, Logits::Last);
        const std::vector<float> b(lg, lg + V);
        if (pass == 1) {
          const float* lo = other.forward(&ids[size_t(i)], 1, co, Logits::Last);
          ASSERT_EQ(a, std::vector<float>(lo, lo + V)) << "shared backend, token " << i;
        }
        const float* lh = host.forward(&ids[size_t(i)], 1, ch, Logits::Last);
        ASSERT_EQ(a, b) << "pass " << pass << " token " << i;
        double err = 0;
        for (int64_t v = 0; v < V; ++v) err = std::max(err, double(std::fabs(a[size_t(v)] - lh[v])));
        ASSERT_LT(err, 2e-3) << "pass " << pass << " token " << i;
      }
    }
    EXPECT_EQ(eager.graph_replays(), 0);
    // Steps n - (S + R + 1) of each pass are steady; the first runs eagerly, the rest replay (in pass 1 each of
    // them first finds `other`'s graph and captures its own again, in the same step).
    EXPECT_EQ(graph.graph_replays(), 2 * (n - (S + R + 1) - 1));
    EXPECT_GE(graph.graph_nodes(), 1 + 5 * m.cfg.n_layers);  // at least embedding + a few kernels per layer
    EXPECT_EQ(eager.graph_nodes(), 0);
  }
}

// A scratch buffer of the backend that grows after a capture frees the block the graph baked in: the graph must
// be dropped then (and captured again), never replayed against freed memory. Here a second decoder on the same
// backend, graphs off, decodes 1..4-token chunks with a much longer window (more attention partials) between the
// graph decoder's steps; the graph decoder must keep giving the eager decoder's bits (on a separate backend).
TEST(CudaDecoderGraph, ScratchGrowthDropsTheGraph) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  auto shared = make_cuda_backend(0), alone = make_cuda_backend(0);
  const Model m = load_model(kDir + "llama");
  const int64_t S = 2, R = 5, n = 40, V = m.cfg.vocab_size;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 3) % V);
  Decoder graph(m, *shared, 4), big(m, *shared, 64), eager(m, *alone, 4);
  big.set_graphs(false);
  eager.set_graphs(false);
  KVCache cg(*shared, m.cfg, S, R, 4), ce(*alone, m.cfg, S, R, 4);
  KVCache cb(*shared, m.cfg, 4, 4000, 64);
  int64_t big_tokens = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* lg = graph.forward(&ids[size_t(i)], 1, cg, Logits::Last);
    const std::vector<float> a(lg, lg + V);
    const float* le = eager.forward(&ids[size_t(i)], 1, ce, Logits::Last);
    ASSERT_EQ(a, std::vector<float>(le, le + V)) << "token " << i;
    if (i >= 20 && i % 6 == 5) {  // after the capture (step S + R + 2); the first call grows the scratch
      const int64_t T = 1 + (i % 4);
      std::vector<int32_t> chunk(size_t(T), int32_t(i % V));
      for (int r = 0; r < 40; ++r) big.forward(chunk.data(), T, cb, Logits::None), big_tokens += T;
      big.forward(chunk.data(), 1, cb, Logits::Last);
      // The first of these grew the attention scratch: the graph that held the old block is gone (a stale replay
      // might still give the right bits if the freed block were not reused; memcheck in gpu-check.sh also looks).
      if (i == 23) {
        EXPECT_EQ(shared->graph_nodes(), 0) << "growing the scratch must drop the captured graph";
      }
    }
  }
  EXPECT_GT(graph.graph_replays(), 0);
  EXPECT_GT(big_tokens, 0);
}

// Programmatic dependent launch lets each kernel start while its predecessor finishes; every kernel waits before
// touching what another one writes, so the results must not move by a bit. A kernel that read too early would
// show up here as a difference (on a device with PDL: compute capability 9.0+; elsewhere both runs are the same
// launches). bf16 weights, so decode takes the GEMV with its weight prefetch; f16 cache; graphs on, past the wrap.
TEST(CudaDecoderGraph, ProgrammaticLaunchChangesNoBit) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  CudaOptions off;
  off.pdl = false;
  auto with = make_cuda_backend(0), without = make_cuda_backend(0, off);
  const Model m = load_model(kDir + "llama_untied_bf16");
  const int64_t S = 2, R = 5, n = 48, V = m.cfg.vocab_size;
  Decoder a(m, *with, 4), b(m, *without, 4);
  KVCache ca(*with, m.cfg, S, R, 4, DType::F16), cb(*without, m.cfg, S, R, 4, DType::F16);
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 104729 + 11) % V);
  for (int64_t i = 0; i < n;) {
    const int64_t T = i < 8 ? 4 : 1;  // a few chunks, then decode steps (graphs)
    const float* la = a.forward(&ids[size_t(i)], T, ca, Logits::Last);
    const std::vector<float> x(la, la + V);
    const float* lb = b.forward(&ids[size_t(i)], T, cb, Logits::Last);
    ASSERT_EQ(x, std::vector<float>(lb, lb + V)) << "token " << i;
    i += T;
  }
  EXPECT_GT(a.graph_replays(), 0);
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaFamily,
                         ::testing::Values("llama", "llama_untied_bf16", "gpt_neox", "gpt_neox_seq", "falcon_mqa",
                                           "falcon_new", "mpt", "mpt_clip"));

}  // namespace
}  // namespace sllm
