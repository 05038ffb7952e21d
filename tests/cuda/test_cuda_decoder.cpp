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
    EXPECT_LT(err, 2e-3 * std::max(1.0, mag));  // f32 GEMMs in cuBLAS; loose enough for 16-bit stored fixtures
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

INSTANTIATE_TEST_SUITE_P(Golden, CudaFamily,
                         ::testing::Values("llama", "llama_untied_bf16", "gpt_neox", "gpt_neox_seq", "falcon_mqa",
                                           "falcon_new", "mpt", "mpt_clip"));

}  // namespace
}  // namespace sllm
