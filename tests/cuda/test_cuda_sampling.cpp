// Tests for sampling on the CUDA device (kernels/cuda/sampling.cu) against sllm::sample_token, the host rule: the
// device must pick exactly the host's id for the same row, parameters and u01 — no tolerance, since the kernel
// reproduces the host's order (value desc, id asc) and its double sums operation for operation.
//
// Rows: fresh random logits at vocabulary sizes of real models, rows with many exact ties (quantised values, an
// all-equal row, +0 / -0 mixed in), and a row with one huge maximum. Parameters: greedy, and temperature 0.8 with
// top_k in {0, 1, 40, 1024} x top_p in {0.9, 1} x min_p in {0, 0.05}, each at u01 in {0, 0.3, 0.999999}. top_k = 0
// over more than 1024 ids is answered on the device when the cut falls inside its sorted top 1024, else the backend
// says -1; between 1024 and the vocabulary it is always -1; Sampler must give the host's answer either way.
//
// Every test skips at run time when no CUDA device is visible (a CUDA build on a machine without a GPU).
#include <gtest/gtest.h>  // TEST_F, EXPECT_*, ASSERT_*, GTEST_SKIP, SCOPED_TRACE

#include <cmath>    // std::round
#include <cstdint>  // int64_t, int32_t
#include <memory>   // std::unique_ptr
#include <random>   // std::mt19937, std::normal_distribution, std::uniform_int_distribution
#include <string>   // std::string, std::to_string
#include <utility>  // std::pair
#include <vector>   // std::vector

#include "cuda/cuda_backend.h"  // cuda_device_count, make_cuda_backend, cuda_upload
#include "ops/backend.h"        // Backend, SampleParams
#include "runtime/stream.h"     // sample_token, Sampler, SamplerOptions
#include "cuda_test_util.h"      // Dev, upload

namespace sllm {
namespace {

constexpr double kU01[] = {0.0, 0.3, 0.999999};

struct Row {
  std::string name;
  std::vector<float> logits;
};

class CudaSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
    gpu_ = make_cuda_backend(0);
  }

  // The test rows of vocabulary size V.
  std::vector<Row> rows(int64_t V) {
    std::normal_distribution<float> n(0.0f, 3.0f);
    std::uniform_int_distribution<int64_t> at(0, V - 1);
    std::vector<Row> r;
    std::vector<float> l(static_cast<size_t>(V));
    for (float& x : l) x = n(rng_);
    r.push_back({"random", l});
    for (float& x : l) x = std::round(n(rng_) * 2.0f) / 2.0f;  // ~40 distinct values: ties everywhere
    r.push_back({"quantised", l});
    for (float& x : l) {  // +0 and -0 compare equal: ties by id, whatever the sign bit
      const int64_t c = at(rng_) % 3;
      x = c == 0 ? 0.0f : c == 1 ? -0.0f : -1.0f;
    }
    r.push_back({"signed zeros", l});
    r.push_back({"all equal", std::vector<float>(size_t(V), 0.25f)});
    for (float& x : l) x = n(rng_);
    l[size_t(at(rng_))] = 1e4f;
    r.push_back({"huge max", l});
    return r;
  }

  std::unique_ptr<Backend> gpu_;
  std::mt19937 rng_{20261127};
};

std::string describe(const SampleParams& p, double u01) {
  return "T=" + std::to_string(p.temperature) + " top_k=" + std::to_string(p.top_k) +
         " top_p=" + std::to_string(p.top_p) + " min_p=" + std::to_string(p.min_p) + " u01=" + std::to_string(u01);
}

// The parameter grid of the file comment (greedy first).
std::vector<SampleParams> grid() {
  std::vector<SampleParams> g = {{0.0f, 0, 1.0f, 0.0f}};
  for (int64_t k : {0, 1, 40, 1024})
    for (float top_p : {0.9f, 1.0f})
      for (float min_p : {0.0f, 0.05f}) g.push_back({0.8f, k, top_p, min_p});
  return g;
}

TEST_F(CudaSamplingTest, PicksTheHostsToken) {
  std::vector<std::pair<float, int32_t>> scratch;
  int whole_on_device = 0, whole_on_host = 0;
  for (int64_t V : {1000, 32000, 50304, 151936}) {
    for (const Row& row : rows(V)) {
      const Dev d = upload(*gpu_, row.logits);
      for (const SampleParams& p : grid()) {
        for (double u01 : kU01) {
          SCOPED_TRACE("V=" + std::to_string(V) + " " + row.name + " " + describe(p, u01));
          const int32_t got = gpu_->sample(d.as<float>(), V, p, u01);
          if (p.temperature > 0 && p.top_k == 0 && V > 1024) {
            // The whole vocabulary: answered on the device when the cut falls inside its sorted top 1024, else
            // -1 (the caller samples on the host). A dominant token is always inside; a flat row never is.
            if (row.name == "huge max") {
              EXPECT_NE(got, -1);
            }
            if (row.name == "all equal") {
              EXPECT_EQ(got, -1);
            }
            if (got == -1) {
              ++whole_on_host;
              continue;
            }
            ++whole_on_device;
          }
          ASSERT_EQ(got, sample_token(row.logits.data(), V, p, u01, scratch));
          if (p.temperature == 0) break;  // greedy ignores u01
        }
      }
    }
  }
  EXPECT_GT(whole_on_device, 0);
  EXPECT_GT(whole_on_host, 0);
}

TEST_F(CudaSamplingTest, SamplerFallsBackToTheHostBeyondTheLimits) {
  const int64_t V = 32000;
  const std::vector<Row> r = rows(V);
  // quantised (ties decide the order) and all equal (a top-p cut far past the device's sorted top 1024).
  for (const Row* row : {&r[1], &r[3]}) {
    const Dev d = upload(*gpu_, row->logits);
    // 0: the whole vocabulary (on the device when its cut is in the top 1024); 40: on the device; 2000: on the
    // host (more candidates than the device sorts, fewer than the vocabulary).
    for (int64_t top_k : {0, 40, 2000}) {
      SCOPED_TRACE(row->name + " top_k=" + std::to_string(top_k));
      SamplerOptions o;
      o.temperature = 0.8f;
      o.top_k = top_k;
      o.top_p = 0.95f;
      o.seed = 11;
      const int32_t direct = gpu_->sample(d.as<float>(), V, sample_params(o), 0.5);
      if (top_k == 40) {
        EXPECT_NE(direct, -1);
      } else if (top_k == 2000 || row == &r[3]) {
        EXPECT_EQ(direct, -1);
      }
      Sampler on_gpu(o), on_host(o);
      for (int i = 0; i < 50; ++i)
        ASSERT_EQ(on_gpu.sample(*gpu_, d.as<float>(), V), on_host.sample(row->logits.data(), V)) << i;
    }
  }
}

}  // namespace
}  // namespace sllm
