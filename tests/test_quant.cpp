// ggml block formats (kernels/cpu/quant.h): byte-exact agreement with ggml's reference quantisers, through the
// fixture that gguf-py (llama.cpp's Python library) made from the same floats (scripts/make_quant_fixture.py), and
// the round trips the loader and `--dtype q*` rely on.
#include <gtest/gtest.h>

#include <algorithm>          // std::min, std::max
#include <cmath>              // std::fabs, std::isnan
#include <cstdint>            // uint32_t
#include <cstring>            // std::memcpy
#include <fstream>            // std::ifstream
#include <nlohmann/json.hpp>  // nlohmann::json
#include <random>             // std::mt19937
#include <sstream>            // std::stringstream
#include <string>             // std::string
#include <vector>             // std::vector

#include "core/error.h"    // Error
#include "core/tensor.h"   // to_f32, from_f32, parse_dtype
#include "cpu/quant.h"     // quantize_blocks, dequantize_blocks
#include "model/weights.h" // retype, ModelWeights

namespace sllm {
namespace {

using json = nlohmann::json;

const std::string kFixture = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/quant/ggml_blocks.json";

std::vector<float> floats_from_bits(const json& a) {
  std::vector<float> v;
  for (const auto& b : a) {
    const uint32_t u = b.get<uint32_t>();
    float f;
    std::memcpy(&f, &u, 4);
    v.push_back(f);
  }
  return v;
}

std::vector<unsigned char> bytes_from_hex(const std::string& h) {
  std::vector<unsigned char> v(h.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<unsigned char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return v;
}

json read_fixture() {
  std::ifstream f(kFixture);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b)); }

TEST(Quant, SameBytesAsGgmlReference) {
  const json fx = read_fixture();
  const std::vector<float> x = floats_from_bits(fx["input_f32_bits"]);
  const int64_t n = int64_t(x.size());
  ASSERT_EQ(n, fx["n_blocks"].get<int64_t>() * 32);
  for (const auto& [name, f] : fx["formats"].items()) {
    const DType t = parse_dtype(name);
    const std::vector<unsigned char> want = bytes_from_hex(f["bytes_hex"].get<std::string>());
    ASSERT_EQ(want.size(), dtype_bytes(t, n)) << name;
    std::vector<unsigned char> got(want.size());
    quantize_blocks(x.data(), n, t, got.data());
    const size_t bb = dtype_block_bytes(t);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(int(got[i]), int(want[i])) << name << ": block " << i / bb << ", byte " << i % bb;
    // Dequantising ggml's bytes gives gguf-py's floats, bit for bit.
    const std::vector<float> dq_want = floats_from_bits(f["dequant_f32_bits"]);
    std::vector<float> dq(static_cast<size_t>(n));
    dequantize_blocks(t, want.data(), n, dq.data());
    for (int64_t i = 0; i < n; ++i)
      EXPECT_TRUE(same_bits(dq[size_t(i)], dq_want[size_t(i)]))
          << name << ": element " << i << " = " << dq[size_t(i)] << ", want " << dq_want[size_t(i)];
  }
}

// The quantisation error of each format stays within its step: |x - dq(q(x))| <= d / 2 (Q8_0: d = max|x| / 127;
// Q4_1: d = (max - min) / 15; Q4_0, whose top level is clipped, within d = max|x| / 8), plus the f16 rounding of
// the scale and minimum.
TEST(Quant, RoundTripErrorWithinOneStep) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 32 * 200;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    std::vector<unsigned char> q(dtype_bytes(t, n));
    std::vector<float> dq(static_cast<size_t>(n));
    from_f32(x.data(), size_t(n), t, q.data());  // the generic conversion entry points reach the block formats
    to_f32(q.data(), t, size_t(n), dq.data());
    for (int64_t b = 0; b < n / 32; ++b) {
      float lo = x[size_t(b * 32)], hi = lo, amax = 0;
      for (int j = 0; j < 32; ++j) {
        const float v = x[size_t(b * 32 + j)];
        lo = std::min(lo, v), hi = std::max(hi, v), amax = std::max(amax, std::fabs(v));
      }
      const double step = t == DType::Q8_0 ? amax / 127.0 : t == DType::Q4_0 ? amax / 8.0 : (hi - lo) / 15.0;
      // Q4_0's top level is clipped (q = 15 is 7 d, for x up to 8 d): a whole step there, half a step elsewhere.
      const double lim = (t == DType::Q4_0 ? 1.0 : 0.5) * step * (1 + 2e-3);
      for (int j = 0; j < 32; ++j) {
        const size_t i = size_t(b * 32 + j);
        // The f16 scale and minimum (11 significant bits) move a level by up to 2^-11 (|m| + 15 d) <= 3 2^-11 amax.
        EXPECT_LE(std::fabs(x[i] - dq[i]), lim + 1.5e-3 * amax) << dtype_name(t) << " block " << b;
      }
    }
  }
}

TEST(Quant, RetypeChecksWholeBlocksAndRoundTrips) {
  ModelWeights w;
  std::vector<float> x(64 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 17) - 8) * 0.25f;
  const Tensor t{x.data(), DType::F32, Shape{3, 64}};
  const Tensor q = retype(t, DType::Q8_0, w);
  EXPECT_EQ(q.dtype, DType::Q8_0);
  EXPECT_EQ(q.bytes(), size_t(3 * 2 * 34));
  const Tensor back = retype(q, DType::F32, w);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(back.as<float>()[i], x[i], 2.0 / 127.0 / 2 + 1e-6) << i;
  const Tensor odd{x.data(), DType::F32, Shape{4, 48}};  // rows of 48 are not whole blocks
  try {
    retype(odd, DType::Q4_0, w);
    FAIL() << "rows of 48 were quantised";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not whole blocks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_blocks(x.data(), 40, DType::Q4_1, nullptr), Error);
  EXPECT_THROW(dequantize_blocks(DType::F16, x.data(), 32, x.data()), Error);
}

}  // namespace
}  // namespace sllm
