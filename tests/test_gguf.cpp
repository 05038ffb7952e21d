// GGUF import tests:
//   - ggml blocks (Q8_0, Q4_0, Q4_1, F16, BF16) built by hand decode to exactly the values the format defines;
//   - a micro llama GGUF written here loads, with the converter's Q/K row permutation undone;
//   - crafted bad files (truncated, huge lengths and counts, bad offsets, overlaps, unknown types, bad alignment,
//     bad magic / version, ...) each give one sllm::Error naming the field; truncated and mutated copies of a real
//     fixture never crash;
//   - the tiny fixtures of scripts/make_gguf_reference.py (tests/fixtures/gguf) give transformers' tokens, exact
//     dequantised weights and logits;
//   - when models/SmolLM2-135M-Instruct.Q4_1.gguf exists (scripts/fetch-smollm2.sh), the real model gives
//     transformers' token ids, weights and logits (tests/fixtures/gguf/smollm2.reference.json); skipped otherwise.
#include <gtest/gtest.h>
#include <unistd.h>  // getpid

#include <algorithm>          // std::max
#include <cmath>              // std::fabs, std::exp, std::log
#include <cstdio>             // std::remove
#include <cstring>            // std::memcpy
#include <filesystem>         // std::filesystem
#include <fstream>            // std::ifstream, std::ofstream
#include <nlohmann/json.hpp>  // nlohmann::json
#include <random>             // std::mt19937
#include <set>                // std::set
#include <sstream>            // std::stringstream
#include <string>             // std::string
#include <tuple>              // std::tuple, std::get
#include <vector>             // std::vector

#include "core/dtype.h"           // f32_to_f16, f32_to_bf16
#include "core/error.h"           // Error
#include "formats/gguf.h"         // GgufFile, dequantize
#include "formats/safetensors.h"  // SafetensorsArchive
#include "model/bundle.h"         // load_gguf
#include "model/decoder.h"        // Decoder
#include "runtime/kv_cache.h"     // KVCache

namespace sllm {
namespace {

using json = nlohmann::json;
using gguf::GgmlType;

const std::string kFix = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/gguf/";
const std::string kSmol = std::string(SLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Files written by temp_file, removed when the test process exits (a file may still be mapped by a
// GgufFile when the test that wrote it returns, so not before).
struct TempFiles {
  std::vector<std::string> paths;
  ~TempFiles() {
    for (const std::string& p : paths) std::remove(p.c_str());
  }
};
TempFiles g_temp_files;

std::string temp_file(const std::string& name, const std::string& bytes) {
  // The pid keeps parallel test processes (ctest -j) from writing the same file.
  const std::string p = ::testing::TempDir() + "sllm_gguf_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  g_temp_files.paths.push_back(p);
  return p;
}

// ==== Dequantisation of hand-built blocks ====

void put16(std::vector<unsigned char>& b, uint16_t v) {
  b.push_back(uint8_t(v & 0xFF));
  b.push_back(uint8_t(v >> 8));
}

TEST(GgufDequant, Q8_0) {
  // d = 0.5 (f16 0x3800), then 0.0999755859375 (f16 0x2E66); q covers the int8 range.
  std::vector<unsigned char> b;
  std::vector<float> want;
  for (uint16_t dh : {uint16_t(0x3800), uint16_t(0x2E66)}) {
    put16(b, dh);
    const double d = f16_to_f32(dh);
    for (int j = 0; j < 32; ++j) {
      const int8_t q = int8_t(j * 8 - 128 + (j == 31 ? 7 : 0));  // -128 .. 127
      b.push_back(uint8_t(q));
      want.push_back(float(d * q));
    }
  }
  EXPECT_EQ(f16_to_f32(0x2E66), 0.0999755859375f);
  std::vector<float> got(64);
  gguf::dequantize(GgmlType::Q8_0, b.data(), 64, got.data());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << i;
  EXPECT_EQ(got[0], -64.0f);       // 0.5 * -128
  EXPECT_EQ(got[31], 63.5f);       // 0.5 * 127
}

TEST(GgufDequant, Q4_0LowNibblesFirst) {
  // d = -0.25; byte j holds q_j = j (low nibble) and q_{j+16} = 15 - j (high nibble).
  std::vector<unsigned char> b;
  put16(b, 0xB400);  // -0.25
  for (int j = 0; j < 16; ++j) b.push_back(uint8_t(j | ((15 - j) << 4)));
  std::vector<float> got(32);
  gguf::dequantize(GgmlType::Q4_0, b.data(), 32, got.data());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(got[size_t(j)], -0.25f * float(j - 8)) << j;
    EXPECT_EQ(got[size_t(j + 16)], -0.25f * float(15 - j - 8)) << j + 16;
  }
  EXPECT_EQ(got[0], 2.0f);    // q = 0 -> -8 * -0.25
  EXPECT_EQ(got[16], -1.75f); // q = 15 -> 7 * -0.25
}

TEST(GgufDequant, Q4_1ScaleAndMin) {
  // d = 0.0999755859375 (0x2E66), m = -0.75 (0xBA00): x = d*q + m with one rounding (d*q is exact in f32).
  std::vector<unsigned char> b;
  put16(b, 0x2E66);
  put16(b, 0xBA00);
  for (int j = 0; j < 16; ++j) b.push_back(uint8_t((j * 7) % 16 | (((j * 5 + 3) % 16) << 4)));
  // A second block with a subnormal scale and a positive min.
  put16(b, 0x0003);  // 3 * 2^-24
  put16(b, 0x3C00);  // 1.0
  for (int j = 0; j < 16; ++j) b.push_back(uint8_t(0xF0 | j));
  std::vector<float> got(64);
  gguf::dequantize(GgmlType::Q4_1, b.data(), 64, got.data());
  const double d0 = 0.0999755859375, d1 = 3.0 / 16777216.0;
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(got[size_t(j)], float(d0 * ((j * 7) % 16) - 0.75)) << j;
    EXPECT_EQ(got[size_t(j + 16)], float(d0 * ((j * 5 + 3) % 16) - 0.75)) << j + 16;
    EXPECT_EQ(got[size_t(32 + j)], float(d1 * j + 1.0)) << 32 + j;
    EXPECT_EQ(got[size_t(48 + j)], float(d1 * 15 + 1.0)) << 48 + j;
  }
  EXPECT_EQ(got[0], -0.75f);  // q = 0 -> m
}

TEST(GgufDequant, F16AndBF16) {
  const uint16_t h[] = {0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x3555};
  const float hw[] = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 6.0975551605224609e-5f,
                      INFINITY, -INFINITY, 0.333251953125f};
  std::vector<unsigned char> b;
  for (uint16_t v : h) put16(b, v);
  std::vector<float> got(10);
  gguf::dequantize(GgmlType::F16, b.data(), 10, got.data());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(got[size_t(i)], hw[i]) << i;
  EXPECT_TRUE(std::signbit(got[1]));

  const uint16_t bf[] = {0x3F80, 0xC040, 0x7F7F, 0x0001, 0x3EAA, 0xFF80};
  const float bw[] = {1.0f, -3.0f, 3.3895313892515355e38f, 9.183549615799121e-41f, 0.33203125f, -INFINITY};
  b.clear();
  for (uint16_t v : bf) put16(b, v);
  gguf::dequantize(GgmlType::BF16, b.data() + 0, 6, got.data());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(got[size_t(i)], bw[i]) << i;
}

TEST(GgufDequant, UnalignedSource) {
  std::vector<unsigned char> b(1, 0);  // one byte of offset
  put16(b, 0x3C00);
  for (int j = 0; j < 32; ++j) b.push_back(uint8_t(int8_t(j - 16)));
  std::vector<float> got(32);
  gguf::dequantize(GgmlType::Q8_0, b.data() + 1, 32, got.data());
  for (int j = 0; j < 32; ++j) EXPECT_EQ(got[size_t(j)], float(j - 16));
}

// ==== A GGUF writer for crafted files ====

struct Bytes {
  std::string s;
  template <class T>
  Bytes& pod(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Bytes& str(const std::string& v) {
    pod<uint64_t>(v.size());
    s += v;
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    s += "GGUF";
    return pod<uint32_t>(version).pod<uint64_t>(n_tensors).pod<uint64_t>(n_kv);
  }
  Bytes& kv_str(const std::string& k, const std::string& v) { return str(k).pod<uint32_t>(8).str(v); }
  Bytes& kv_u32(const std::string& k, uint32_t v) { return str(k).pod<uint32_t>(4).pod<uint32_t>(v); }
  Bytes& kv_f32(const std::string& k, float v) { return str(k).pod<uint32_t>(6).pod<float>(v); }
  Bytes& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).pod<uint32_t>(uint32_t(ne.size()));
    for (uint64_t d : ne) pod<uint64_t>(d);
    return pod<uint32_t>(type).pod<uint64_t>(offset);
  }
  Bytes& pad(size_t a = 32) {
    while (s.size() % a) s.push_back('\0');
    return *this;
  }
  Bytes& zeros(size_t n) {
    s.append(n, '\0');
    return *this;
  }
};

// A valid file: two kvs and two tensors ('a' F32 [8] at 0, 'b' Q8_0 [32, 2] at 32).
std::string good_file() {
  Bytes b;
  b.header(2, 2).kv_str("general.architecture", "llama").kv_u32("general.alignment", 32);
  b.tensor("a", {8}, 0, 0).tensor("b", {32, 2}, 8, 32).pad().zeros(32 + 68);
  return b.s;
}

// The error message of opening `bytes` ("" when it opens).
std::string open_error(const std::string& bytes, const std::string& name = "bad.gguf") {
  const std::string p = temp_file(name, bytes);
  try {
    gguf::GgufFile::open(p);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << "names the file: " << msg;
    return msg;
  }
  return "";
}

#define EXPECT_ERROR_HAS(bytes, ...)                                                 \
  do {                                                                               \
    const std::string msg_ = open_error(bytes);                                      \
    EXPECT_FALSE(msg_.empty()) << "no error";                                        \
    for (const char* part_ : {__VA_ARGS__})                                          \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << msg_; \
  } while (0)

TEST(GgufParse, GoodFile) {
  const std::string p = temp_file("good.gguf", good_file());
  const auto f = gguf::GgufFile::open(p);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  ASSERT_EQ(f.tensors().size(), 2u);
  const gguf::TensorInfo* b = f.tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->nbytes, 68u);
  EXPECT_EQ(b->shape(), (Shape{2, 32}));  // GGML [ne0 = 32, ne1 = 2] is the row-major (2, 32)
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(b->data, f.tensor("a")->data + 32);
  // Version 2 reads the same way.
  std::string v2 = good_file();
  v2[4] = 2;
  EXPECT_EQ(open_error(v2), "");
}

TEST(GgufParse, EveryValueType) {
  Bytes b;
  b.header(0, 14);
  b.str("u8").pod<uint32_t>(0).pod<uint8_t>(200);
  b.str("i8").pod<uint32_t>(1).pod<int8_t>(-5);
  b.str("u16").pod<uint32_t>(2).pod<uint16_t>(60000);
  b.str("i16").pod<uint32_t>(3).pod<int16_t>(-300);
  b.str("u32").pod<uint32_t>(4).pod<uint32_t>(4000000000u);
  b.str("i32").pod<uint32_t>(5).pod<int32_t>(-70000);
  b.str("f32").pod<uint32_t>(6).pod<float>(1.5f);
  b.str("bool").pod<uint32_t>(7).pod<uint8_t>(1);
  b.str("s").pod<uint32_t>(8).str("héllo");
  b.str("u64").pod<uint32_t>(10).pod<uint64_t>(uint64_t(1) << 40);
  b.str("i64").pod<uint32_t>(11).pod<int64_t>(-(int64_t(1) << 40));
  b.str("f64").pod<uint32_t>(12).pod<double>(0.1);
  b.str("strs").pod<uint32_t>(9).pod<uint32_t>(8).pod<uint64_t>(2).str("a").str("bc");
  // [[1, 2], [], [3]] as INT32 arrays inside an array.
  b.str("nested").pod<uint32_t>(9).pod<uint32_t>(9).pod<uint64_t>(3);
  b.pod<uint32_t>(5).pod<uint64_t>(2).pod<int32_t>(1).pod<int32_t>(2);
  b.pod<uint32_t>(5).pod<uint64_t>(0);
  b.pod<uint32_t>(5).pod<uint64_t>(1).pod<int32_t>(3);
  const auto f = gguf::GgufFile::open(temp_file("types.gguf", b.s));
  EXPECT_EQ(f.get_int("u8", 0, 1000), 200);
  EXPECT_EQ(f.get_int("i8", -10, 10), -5);
  EXPECT_EQ(f.get_int("u16", 0, 100000), 60000);
  EXPECT_EQ(f.get_int("i16", -1000, 0), -300);
  EXPECT_EQ(f.get_int("u32", 0, int64_t(1) << 40), 4000000000LL);
  EXPECT_EQ(f.get_int("i32", -100000, 0), -70000);
  EXPECT_EQ(f.get_float("f32"), 1.5);
  EXPECT_TRUE(f.get_bool("bool", false));
  EXPECT_EQ(f.get_string("s"), "héllo");
  EXPECT_EQ(f.get_int("u64", 0, int64_t(1) << 41), int64_t(1) << 40);
  EXPECT_EQ(f.get_int("i64", -(int64_t(1) << 41), 0), -(int64_t(1) << 40));
  EXPECT_EQ(f.get_float("f64"), 0.1);
  ASSERT_EQ(f.get_strings("strs").size(), 2u);
  EXPECT_EQ(f.get_strings("strs")[1], "bc");
  const gguf::Value* n = f.find("nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->items.size(), 3u);
  EXPECT_EQ(n->items[0].count, 2u);
  EXPECT_EQ(n->items[1].count, 0u);
  EXPECT_EQ(n->items[2].count, 1u);
  // Typed getters name the key on a type or range mismatch.
  EXPECT_THROW(f.get_string("u8"), Error);
  try {
    f.get_int("u8", 0, 100);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metadata 'u8': value 200 out of range"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.get_i32s("strs"), Error);
  EXPECT_THROW(f.get_string("absent"), Error);
}

TEST(GgufParse, BadHeaders) {
  const std::string good = good_file();
  EXPECT_ERROR_HAS(good.substr(0, 10), "header", "truncated");
  EXPECT_ERROR_HAS(good.substr(0, 2), "header", "truncated");
  std::string m = good;
  m[0] = 'X';
  EXPECT_ERROR_HAS(m, "header", "bad magic");
  EXPECT_ERROR_HAS("\x89HDF\r\n\x1a\n" + good.substr(8), "bad magic");
  std::string v = good;
  v[4] = 1;
  EXPECT_ERROR_HAS(v, "header", "version 1");
  v[4] = 4;
  EXPECT_ERROR_HAS(v, "header", "unsupported GGUF version 4");
  v[4] = 0;
  v[7] = 3;  // 0x03000000: a big-endian file's version
  EXPECT_ERROR_HAS(v, "header", "big-endian");
  Bytes huge_kv;
  huge_kv.header(0, uint64_t(1) << 62).zeros(64);
  EXPECT_ERROR_HAS(huge_kv.s, "header", "metadata count");
  Bytes huge_t;
  huge_t.header(uint64_t(1) << 61, 0).zeros(64);
  EXPECT_ERROR_HAS(huge_t.s, "header", "tensor count");
}

TEST(GgufParse, BadMetadata) {
  {  // a key length of 2^60 must not allocate
    Bytes b;
    b.header(0, 1).pod<uint64_t>(uint64_t(1) << 60).zeros(32);
    EXPECT_ERROR_HAS(b.s, "metadata[0]", "key length");
  }
  {  // a string value of 2^60 bytes
    Bytes b;
    b.header(0, 1).str("general.name").pod<uint32_t>(8).pod<uint64_t>(uint64_t(1) << 60).zeros(16);
    EXPECT_ERROR_HAS(b.s, "metadata 'general.name'", "string", "bytes");
  }
  {  // 2^62 u32 elements
    Bytes b;
    b.header(0, 1).str("big").pod<uint32_t>(9).pod<uint32_t>(4).pod<uint64_t>(uint64_t(1) << 62).zeros(16);
    EXPECT_ERROR_HAS(b.s, "metadata 'big'", "array of 4611686018427387904", "cannot fit");
  }
  {  // 2^40 strings
    Bytes b;
    b.header(0, 1).str("tokenizer.ggml.tokens").pod<uint32_t>(9).pod<uint32_t>(8).pod<uint64_t>(uint64_t(1) << 40);
    b.zeros(64);
    EXPECT_ERROR_HAS(b.s, "metadata 'tokenizer.ggml.tokens'", "cannot fit");
  }
  {  // arrays nested 9 deep
    Bytes b;
    b.header(0, 1).str("deep").pod<uint32_t>(9);
    for (int i = 0; i < 9; ++i) b.pod<uint32_t>(9).pod<uint64_t>(1);
    b.pod<uint32_t>(0).pod<uint64_t>(0).zeros(16);
    EXPECT_ERROR_HAS(b.s, "metadata 'deep'", "nested");
  }
  {
    Bytes b;
    b.header(0, 1).str("x").pod<uint32_t>(13).zeros(16);
    EXPECT_ERROR_HAS(b.s, "metadata 'x'", "unknown value type 13");
  }
  {
    Bytes b;
    b.header(0, 1).str("x").pod<uint32_t>(9).pod<uint32_t>(99).pod<uint64_t>(0).zeros(8);
    EXPECT_ERROR_HAS(b.s, "metadata 'x'", "unknown array element type 99");
  }
  {
    Bytes b;
    b.header(0, 2).kv_u32("x", 1).kv_u32("x", 2);
    EXPECT_ERROR_HAS(b.s, "metadata 'x'", "duplicate key");
  }
  {
    Bytes b;
    b.header(0, 1).str("flag").pod<uint32_t>(7).pod<uint8_t>(2).zeros(16);
    EXPECT_ERROR_HAS(b.s, "metadata 'flag'", "not 0 or 1");
  }
  {
    Bytes b;
    b.header(0, 1).str("").pod<uint32_t>(4).pod<uint32_t>(1).zeros(8);
    EXPECT_ERROR_HAS(b.s, "metadata[0]", "empty key");
  }
  {  // ends in the middle of a value
    Bytes b;
    b.header(0, 2).kv_u32("a", 1).str("b").pod<uint32_t>(10).pod<uint32_t>(7);
    EXPECT_ERROR_HAS(b.s, "metadata 'b'", "UINT64 value", "file ends");
  }
}

TEST(GgufParse, BadAlignment) {
  for (uint32_t a : {0u, 48u, 3u}) {
    Bytes b;
    b.header(1, 1).kv_u32("general.alignment", a).tensor("a", {8}, 0, 0).pad(64).zeros(64);
    EXPECT_ERROR_HAS(b.s, "metadata 'general.alignment'", "power of two");
  }
  Bytes w;
  w.header(0, 1).str("general.alignment").pod<uint32_t>(8).str("32");
  EXPECT_ERROR_HAS(w.s, "metadata 'general.alignment'", "expected UINT32");
  // A tensor offset that is not a multiple of the alignment.
  Bytes o;
  o.header(1, 1).kv_u32("general.alignment", 64).tensor("a", {8}, 0, 32).pad(64).zeros(128);
  EXPECT_ERROR_HAS(o.s, "tensor 'a'", "not a multiple of the alignment 64");
  // A custom alignment moves the data section.
  Bytes g;
  g.header(1, 1).kv_u32("general.alignment", 256).tensor("a", {8}, 0, 0).pad(256).zeros(32);
  const auto f = gguf::GgufFile::open(temp_file("align.gguf", g.s));
  EXPECT_EQ(f.data_offset(), 256u);
}

TEST(GgufParse, BadTensors) {
  auto one = [](const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t off, size_t data) {
    Bytes b;
    b.header(1, 0).tensor(name, std::move(ne), type, off).pad().zeros(data);
    return b.s;
  };
  EXPECT_ERROR_HAS(one("blk.3.attn_q.weight", {32, 4}, 0, 0, 100), "tensor 'blk.3.attn_q.weight'", "data [",
                   ") beyond the file (size");
  EXPECT_ERROR_HAS(one("t", {8}, 0, uint64_t(1) << 62, 64), "tensor 't'", "beyond the file");
  EXPECT_ERROR_HAS(one("t", {8}, 0, uint64_t(-32), 64), "tensor 't'", "beyond the file");
  EXPECT_ERROR_HAS(one("t", {32}, 77, 0, 64), "tensor 't'", "type 77");
  EXPECT_ERROR_HAS(one("t", {256}, 12, 0, 512), "tensor 't'", "Q4_K", "not supported");
  EXPECT_ERROR_HAS(one("t", {1, 1, 1, 1, 1}, 0, 0, 64), "tensor 't'", "n_dims 5");
  EXPECT_ERROR_HAS(one("t", {8, 0}, 0, 0, 64), "tensor 't'", "dimension 1 is 0");
  EXPECT_ERROR_HAS(one("t", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0, 64), "tensor 't'", "overflows");
  EXPECT_ERROR_HAS(one("t", {33}, 2, 0, 64), "tensor 't'", "row length 33", "block size 32");
  EXPECT_ERROR_HAS(one(std::string(64, 'n'), {8}, 0, 0, 64), "tensor[0]", "name of 64 bytes");
  EXPECT_ERROR_HAS(one("", {8}, 0, 0, 64), "tensor[0]", "empty name");
  // 2^62 f32 elements are 2^64 bytes; 2^57 Q8_0 blocks fit in u64 but not in the file.
  EXPECT_ERROR_HAS(one("t", {uint64_t(1) << 31, uint64_t(1) << 31}, 0, 0, 64), "tensor 't'", "byte size overflows");
  EXPECT_ERROR_HAS(one("t", {32, uint64_t(1) << 57}, 8, 0, 64), "tensor 't'", "beyond the file");
  {  // overlapping tensors
    Bytes b;
    b.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad().zeros(128);
    EXPECT_ERROR_HAS(b.s, "tensor 'b'", "overlaps tensor 'a'");
  }
  {  // the same data twice
    Bytes b;
    b.header(2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0).pad().zeros(64);
    EXPECT_ERROR_HAS(b.s, "overlaps");
  }
  {
    Bytes b;
    b.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad().zeros(64);
    EXPECT_ERROR_HAS(b.s, "tensor 'a'", "duplicate tensor name");
  }
  {  // the file ends inside the tensor infos
    Bytes b;
    const std::string name(40, 'b');
    b.header(2, 0).tensor("a", {8}, 0, 0);
    b.str(name).pod<uint32_t>(2).pod<uint64_t>(8);
    b.zeros(7);
    const std::string want = "tensor '" + name + "'";
    EXPECT_ERROR_HAS(b.s, want.c_str(), "dimension 1", "file ends");
  }
  {  // the data section itself starts past the end of the file
    Bytes b;
    b.header(1, 0).tensor("a", {8}, 0, 0);
    EXPECT_ERROR_HAS(b.s, "data section", "beyond the end of the file");
  }
}

// Truncated and mutated copies of a real fixture: every outcome is success or sllm::Error, never a crash or hang.
TEST(GgufParse, TruncatedAndMutatedFilesNeverCrash) {
  const std::string good = read_file(kFix + "tiny_bpe.gguf");
  ASSERT_GT(good.size(), 1000u);
  size_t errors = 0, opened = 0;
  for (size_t n = 0; n < good.size(); n += (n < 4096 ? 7 : 997)) {
    const std::string p = temp_file("trunc.gguf", good.substr(0, n));
    try {
      gguf::GgufFile::open(p);
      ++opened;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(opened, 0u) << "a truncated file must be refused";
  std::mt19937 rng(7);
  const auto header_end = gguf::GgufFile::open(kFix + "tiny_bpe.gguf").data_offset();
  for (int it = 0; it < 200; ++it) {
    std::string m = good;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % header_end;
      m[at] = char(rng() % 4 == 0 ? 0xFF : (rng() & 0xFF));
    }
    const std::string p = temp_file("mut.gguf", m);
    try {
      // The whole import (model and tokenizer) for some, the parser alone for the rest.
      if (it % 4 == 0)
        load_gguf(p, {});
      else
        gguf::GgufFile::open(p);
      ++opened;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0u);
}

// ==== A micro llama model written here ====

struct Micro {
  std::string arch = "llama";
  bool tied = true;
  bool extra_tensor = false;
  bool drop_ffn_up = false;
  uint64_t embd_rows = 8;
  bool misalign = false;  // general.alignment 2 and every tensor 2 bytes off a 4-byte boundary in memory
};

// hidden 32, 2 heads of 16 (1 KV head), ffn 32, 1 layer, vocab 8, all F32; GGUF row r of attn_q / attn_k is filled
// with the value r so the un-permutation can be read back.
std::string micro_llama(const Micro& o) {
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
  };
  std::vector<T> ts = {{"token_embd.weight", {32, o.embd_rows}}, {"blk.0.attn_norm.weight", {32}},
                       {"blk.0.attn_q.weight", {32, 32}},        {"blk.0.attn_k.weight", {32, 16}},
                       {"blk.0.attn_v.weight", {32, 16}},        {"blk.0.attn_output.weight", {32, 32}},
                       {"blk.0.ffn_norm.weight", {32}},          {"blk.0.ffn_gate.weight", {32, 32}},
                       {"blk.0.ffn_up.weight", {32, 32}},        {"blk.0.ffn_down.weight", {32, 32}},
                       {"output_norm.weight", {32}}};
  if (!o.tied) ts.push_back({"output.weight", {32, 8}});
  if (o.extra_tensor) ts.push_back({"blk.0.attn_rot_embd", {32}});
  if (o.drop_ffn_up) ts.erase(ts.begin() + 8);
  Bytes b;
  b.header(ts.size(), o.misalign ? 10 : 9);
  if (o.misalign) b.kv_u32("general.alignment", 2);
  b.kv_str("general.architecture", o.arch).kv_u32("llama.embedding_length", 32).kv_u32("llama.block_count", 1);
  b.kv_u32("llama.feed_forward_length", 32).kv_u32("llama.attention.head_count", 2);
  b.kv_u32("llama.attention.head_count_kv", 1).kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  b.kv_u32("llama.vocab_size", 8).kv_f32("llama.rope.freq_base", 10000.0f);
  std::string data;
  uint64_t off = 0;
  std::vector<std::vector<float>> values;
  for (const T& t : ts) {
    uint64_t n = 1;
    for (uint64_t d : t.ne) n *= d;
    std::vector<float> v(n, 0.5f);
    if (t.name == "blk.0.attn_q.weight" || t.name == "blk.0.attn_k.weight")
      for (uint64_t i = 0; i < n; ++i) v[i] = float(i / t.ne[0]);  // row index
    values.push_back(std::move(v));
  }
  if (o.misalign) {
    // The tensor infos come before the data, so their size is known from the offsets' count alone: write the
    // infos with offsets of a 2-byte lead, then check where the data section starts (the mapping is page-aligned,
    // so file offsets are address offsets mod 4) and shift the lead to land 2 bytes off a 4-byte boundary.
    Bytes probe = b;
    for (size_t i = 0; i < ts.size(); ++i) probe.tensor(ts[i].name, ts[i].ne, 0, 0);
    probe.pad(2);
    const uint64_t lead = probe.s.size() % 4 == 0 ? 2 : 0;
    off = lead;
    for (size_t i = 0; i < ts.size(); ++i) {
      b.tensor(ts[i].name, ts[i].ne, 0, off);
      off += values[i].size() * 4;
    }
    b.pad(2);
    b.s.append(lead, '\0');
    for (const auto& v : values) b.s.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    return b.s;
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    b.tensor(ts[i].name, ts[i].ne, 0, off);
    data.append(reinterpret_cast<const char*>(values[i].data()), values[i].size() * 4);
    while (data.size() % 32) data.push_back('\0');
    off = data.size();
  }
  b.pad();
  b.s += data;
  return b.s;
}

TEST(GgufModel, MicroLlamaLoadsAndUnpermutesQK) {
  ModelBundle b = load_gguf(temp_file("micro.gguf", micro_llama({})), {});
  const ModelConfig& c = b.model.cfg;
  EXPECT_EQ(c.hidden, 32);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.vocab_size, 8);
  EXPECT_TRUE(c.tied_head);
  EXPECT_FALSE(c.rope_interleaved);
  EXPECT_EQ(b.model.w.lm_head.data, b.model.w.embed.data);
  EXPECT_FALSE(b.tok.has_value());  // no tokenizer.ggml.* in this file
  // HF row h*16 + j*8 + i is GGUF row h*16 + 2i + j.
  const Tensor& q = b.model.w.layers[0].wq;
  ASSERT_EQ(q.shape, (Shape{32, 32}));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < 8; ++i)
        EXPECT_EQ(q.as<float>()[(h * 16 + j * 8 + i) * 32 + 5], float(h * 16 + 2 * i + j)) << h << " " << j << " " << i;
  const Tensor& k = b.model.w.layers[0].wk;
  ASSERT_EQ(k.shape, (Shape{16, 32}));
  for (int64_t j = 0; j < 2; ++j)
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(k.as<float>()[(j * 8 + i) * 32], float(2 * i + j));
  // The dtype option re-stores matrices; vectors stay f32.
  LoadOptions lo;
  lo.dtype = DType::BF16;
  ModelBundle h = load_gguf(temp_file("micro.gguf", micro_llama({})), lo);
  EXPECT_EQ(h.model.storage, DType::BF16);
  EXPECT_EQ(h.model.w.layers[0].wq.dtype, DType::BF16);
  EXPECT_EQ(h.model.w.layers[0].attn_norm_w.dtype, DType::F32);
  EXPECT_EQ(bf16_to_f32(h.model.w.layers[0].wq.as<uint16_t>()[3 * 32]), 6.0f);  // HF row 3 = GGUF row 6
}

// Matrices stored as they are computed with are used in place in the mapping, unless a float tensor is not on its
// element size (general.alignment may be 2): then it is copied, and reads stay aligned.
TEST(GgufModel, InPlaceOnlyWhenAligned) {
  ModelBundle a = load_gguf(temp_file("micro.gguf", micro_llama({})), {});
  EXPECT_FALSE(a.model.w.keep_alive.empty()) << "nothing was used in place";
  Micro m;
  m.misalign = true;
  ModelBundle b = load_gguf(temp_file("micro_misaligned.gguf", micro_llama(m)), {});
  for (const Tensor* t : {&b.model.w.embed, &b.model.w.layers[0].wo, &b.model.w.layers[0].w_down}) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 4, 0u);
    EXPECT_EQ(t->as<float>()[7], 0.5f);
  }
  EXPECT_TRUE(b.model.w.keep_alive.empty()) << "a misaligned tensor was used in place";
}

std::string load_error(const std::string& bytes) {
  try {
    load_gguf(temp_file("model.gguf", bytes), {});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GgufModel, RefusesWhatItCannotRun) {
  Micro o;
  o.arch = "falcon";
  EXPECT_NE(load_error(micro_llama(o)).find("general.architecture 'falcon' is not supported"), std::string::npos);
  o = {};
  o.extra_tensor = true;
  EXPECT_NE(load_error(micro_llama(o)).find("tensor 'blk.0.attn_rot_embd' is not part of a llama model"),
            std::string::npos);
  o = {};
  o.drop_ffn_up = true;
  EXPECT_NE(load_error(micro_llama(o)).find("missing tensor 'blk.0.ffn_up.weight'"), std::string::npos);
  o = {};
  o.embd_rows = 9;
  const std::string e = load_error(micro_llama(o));
  EXPECT_NE(e.find("tensor 'token_embd.weight': GGML dims [32, 9]"), std::string::npos) << e;
  o = {};
  o.tied = false;
  ModelBundle b = load_gguf(temp_file("untied.gguf", micro_llama(o)), {});
  EXPECT_FALSE(b.model.cfg.tied_head);
  EXPECT_NE(b.model.w.lm_head.data, b.model.w.embed.data);
}

// ==== Tokenizer metadata ====

// A file with only tokenizer metadata: a byte-level vocabulary spelling "Hello world" (ids 0..7), two merges, and a
// control token; `pre` and the model kind as given (empty: key absent).
std::string vocab_file(const std::string& model, const std::string& pre, std::vector<std::string> tokens = {},
                       bool with_merges = true) {
  if (tokens.empty())
    tokens = {"H", "e", "l", "o", "\xC4\xA0", "w", "r", "d", "ll", "\xC4\xA0w", "<|eot|>"};
  Bytes b;
  b.header(0, 3 + (with_merges ? 1 : 0) + (pre.empty() ? 0 : 1));
  b.kv_str("tokenizer.ggml.model", model);
  if (!pre.empty()) b.kv_str("tokenizer.ggml.pre", pre);
  b.str("tokenizer.ggml.tokens").pod<uint32_t>(9).pod<uint32_t>(8).pod<uint64_t>(tokens.size());
  for (const auto& t : tokens) b.str(t);
  b.str("tokenizer.ggml.token_type").pod<uint32_t>(9).pod<uint32_t>(5).pod<uint64_t>(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) b.pod<int32_t>(i + 1 == tokens.size() ? 3 : 1);
  if (with_merges)
    b.str("tokenizer.ggml.merges").pod<uint32_t>(9).pod<uint32_t>(8).pod<uint64_t>(2).str("l l").str("\xC4\xA0 w");
  return b.s;
}

std::string tokenizer_error(const std::string& bytes) {
  try {
    gguf::tokenizer_json_from_gguf(gguf::GgufFile::open(temp_file("vocab.gguf", bytes)));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GgufTokenizer, PreTokenizerFamilies) {
  for (const char* pre : {"gpt-2", "smollm", "starcoder", "llama-bpe", "llama3", "qwen2", "dbrx"}) {
    const auto f = gguf::GgufFile::open(temp_file("vocab.gguf", vocab_file("gpt2", pre)));
    const Tokenizer t = Tokenizer::from_json_string(gguf::tokenizer_json_from_gguf(f), pre);
    EXPECT_EQ(t.encode("Hello world"), (std::vector<int32_t>{0, 1, 8, 3, 9, 3, 6, 2, 7})) << pre;
    EXPECT_EQ(t.encode("Hello<|eot|>"), (std::vector<int32_t>{0, 1, 8, 3, 10})) << pre;
    EXPECT_TRUE(t.is_special(10)) << pre;
    EXPECT_EQ(t.decode({0, 1, 8, 3, 9, 3, 6, 2, 7}), "Hello world") << pre;
  }
}

TEST(GgufTokenizer, RefusesWhatItCannotReproduce) {
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  };
  has(tokenizer_error(vocab_file("bert", "gpt-2")), "tokenizer 'bert' is not supported");
  has(tokenizer_error(vocab_file("gpt2", "tekken")), "metadata 'tokenizer.ggml.pre': pre-tokenizer 'tekken'");
  has(tokenizer_error(vocab_file("gpt2", "")), "metadata 'tokenizer.ggml.pre' is missing");
  has(tokenizer_error(vocab_file("gpt2", "gpt-2", {"a", "b", "a"})), "tokenizer.ggml.tokens'[2]: duplicate token");
  has(tokenizer_error(vocab_file("gpt2", "gpt-2", {"a", "\xFF"})), "tokenizer.ggml.tokens'[1]: not valid UTF-8");
  has(tokenizer_error(vocab_file("gpt2", "gpt-2", {"a", std::string(2000, 'x')})), "token of 2000 bytes");
  has(tokenizer_error(vocab_file("llama", "", {}, false)), "missing metadata 'tokenizer.ggml.scores'");
  has(tokenizer_error(vocab_file("gpt2", "gpt-2", {}, false)), "missing metadata 'tokenizer.ggml.merges'");
}

// ==== The tiny fixtures against transformers ====

std::vector<float> floats_of(const SafetensorsArchive& g, const std::string& name) {
  Tensor t = g.get(name);
  std::vector<float> v(size_t(t.numel()));
  to_f32(t.data, t.dtype, v.size(), v.data());
  return v;
}

// Golden cases: {text, ids} and, for the tiny fixtures, ids with special tokens and both decodes.
void expect_tokens_match(const Tokenizer& tok, const json& cases, const std::string& what) {
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tok.encode(text, false), c["ids"].get<std::vector<int32_t>>()) << what << ": " << text;
    if (!c.contains("ids_special")) continue;
    EXPECT_EQ(tok.encode(text, true), c["ids_special"].get<std::vector<int32_t>>()) << what << " (special): " << text;
    EXPECT_EQ(tok.decode(c["ids"].get<std::vector<int32_t>>(), false), c["decode"].get<std::string>()) << what;
    EXPECT_EQ(tok.decode(c["ids_special"].get<std::vector<int32_t>>(), true), c["decode_skip"].get<std::string>())
        << what;
  }
}

// A weight matrix as f32 values (block formats dequantised).
std::vector<float> f32_values(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  to_f32(t.data, t.dtype, v.size(), v.data());
  return v;
}

// (fixture, dtype to load as: "" keeps the file's types, block formats included)
class TinyFixture : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TinyFixture, MatchesTransformers) {
  const std::string name = std::get<0>(GetParam()), as = std::get<1>(GetParam());
  LoadOptions lo;
  if (!as.empty()) lo.dtype = parse_dtype(as);
  ModelBundle b = load_gguf(kFix + name + ".gguf", lo);
  const json g = json::parse(read_file(kFix + name + ".golden.json"));
  auto st = SafetensorsArchive::open(kFix + name + ".golden.safetensors");
  EXPECT_EQ(b.format, ModelFormat::GGUF);
  EXPECT_FALSE(b.chat_template.empty());
  EXPECT_EQ(b.model.cfg.tied_head, name == "tiny_bpe");
  if (as.empty()) {  // the fixtures hold every tensor type; each matrix keeps its file's type (blocks stay blocks)
    std::set<DType> kept;
    for (const LayerWeights& L : b.model.w.layers)
      for (const Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) kept.insert(t->dtype);
    for (DType d : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) EXPECT_TRUE(kept.count(d)) << dtype_name(d);
  } else {
    EXPECT_EQ(b.model.storage, DType::F32);
  }

  // Tokenizer: ids and decodes identical to transformers' tokenizer built from the same metadata.
  ASSERT_TRUE(b.tok.has_value());
  EXPECT_EQ(b.tok->vocab_size(), g["vocab_size"].get<int32_t>());
  EXPECT_EQ(b.tok->bos_id(), g["bos_id"].get<int32_t>());
  EXPECT_EQ(b.tok->eos_id(), g["eos_id"].get<int32_t>());
  expect_tokens_match(*b.tok, g["tokens"], name);
  // The stored tokenizer.json text rebuilds the same tokenizer.
  Tokenizer again = Tokenizer::from_json_string(b.tokenizer_json, name);
  EXPECT_EQ(again.encode("The quick brown fox 123", true), b.tok->encode("The quick brown fox 123", true));

  // Weights: transformers' dequantised, un-permuted Q and K of layer 0, bit for bit.
  for (const auto& [key, t] : {std::pair<std::string, const Tensor*>{"q_proj0", &b.model.w.layers[0].wq},
                               {"k_proj0", &b.model.w.layers[0].wk}}) {
    const auto ref = floats_of(st, key);
    ASSERT_EQ(size_t(t->numel()), ref.size()) << key;
    const std::vector<float> got = f32_values(*t);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got[i], ref[i]) << key << " element " << i;
  }

  // Logits of the prompt.
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  const auto ref = floats_of(st, "logits");
  const int64_t T = int64_t(ids.size()), V = b.model.cfg.vocab_size;
  ASSERT_EQ(int64_t(ref.size()), T * V);
  Decoder dec(b.model, cpu_backend(), T);
  KVCache cache(cpu_backend(), b.model.cfg, 0, T, T);
  const float* lg = dec.forward(ids.data(), T, cache, Logits::All);
  double max_err = 0, max_ref = 0;
  for (int64_t i = 0; i < T * V; ++i) {
    max_err = std::max(max_err, double(std::fabs(lg[i] - ref[size_t(i)])));
    max_ref = std::max(max_ref, double(std::fabs(ref[size_t(i)])));
  }
  EXPECT_LT(max_err, 2e-4 * std::max(1.0, max_ref)) << "max |ref| " << max_ref;
}

INSTANTIATE_TEST_SUITE_P(Gguf, TinyFixture,
                         ::testing::Combine(::testing::Values("tiny_spm", "tiny_bpe"), ::testing::Values("", "f32")));

// ==== The real SmolLM2-135M-Instruct Q4_1 (only when fetched) ====

// Run twice: with the file's Q4_1 / Q8_0 blocks kept (the default) and with every matrix dequantised to f32.
class GgufSmolLM2 : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufSmolLM2, MatchesTransformers) {
  if (!std::filesystem::exists(kSmol)) GTEST_SKIP() << kSmol << " not found (scripts/fetch-smollm2.sh fetches it)";
  const json ref = json::parse(read_file(kFix + "smollm2.reference.json"));
  LoadOptions lo;
  if (!GetParam().empty()) lo.dtype = parse_dtype(GetParam());
  ModelBundle b = load_gguf(kSmol, lo);
  const ModelConfig& c = b.model.cfg;
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_TRUE(c.tied_head);
  EXPECT_EQ(c.rope_theta, 100000.0);
  EXPECT_NE(b.chat_template.find("<|im_start|>"), std::string::npos);
  ASSERT_TRUE(b.tok.has_value());
  expect_tokens_match(*b.tok, ref["tokens"], "smollm2");
  EXPECT_FALSE(ref["add_bos"].get<bool>());
  EXPECT_EQ(b.tok->encode("Hi", true), b.tok->encode("Hi", false));  // add_bos_token is false in this file

  EXPECT_EQ(b.model.w.layers[0].wq.dtype, GetParam().empty() ? DType::Q4_1 : DType::F32);
  EXPECT_EQ(b.model.w.embed.dtype, GetParam().empty() ? DType::Q8_0 : DType::F32);

  // Exact dequantised weights (Q4_1), un-permuted.
  for (const auto& [key, t] : {std::pair<std::string, const Tensor*>{"q_proj0_rows", &b.model.w.layers[0].wq},
                               {"k_proj0_rows", &b.model.w.layers[0].wk}}) {
    const std::vector<float> w = f32_values(*t);
    for (const auto& [row, vals] : ref[key].items())
      for (size_t j = 0; j < vals.size(); ++j)
        EXPECT_EQ(w[size_t(std::stoll(row)) * 576 + j], vals[j].get<float>()) << key << " " << row;
  }

  // Logits of the prompt at the probe ids, and the log-sum-exp and argmax of every position.
  const auto ids = ref["prompt_ids"].get<std::vector<int32_t>>();
  const auto probe = ref["probe_ids"].get<std::vector<int32_t>>();
  const int64_t T = int64_t(ids.size()), V = c.vocab_size;
  Decoder dec(b.model, cpu_backend(), T);
  KVCache cache(cpu_backend(), c, 0, T, T);
  const float* lg = dec.forward(ids.data(), T, cache, Logits::All);
  double max_err = 0, max_lse = 0;
  for (int64_t t = 0; t < T; ++t) {
    const float* row = lg + t * V;
    for (size_t k = 0; k < probe.size(); ++k)
      max_err = std::max(max_err, std::fabs(row[probe[k]] - ref["logits_at_probe"][size_t(t)][k].get<double>()));
    double mx = row[0];
    int64_t arg = 0;
    for (int64_t v = 1; v < V; ++v)
      if (row[v] > mx) mx = row[v], arg = v;
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - mx);
    max_lse = std::max(max_lse, std::fabs(mx + std::log(s) - ref["logsumexp"][size_t(t)].get<double>()));
    EXPECT_EQ(arg, ref["argmax"][size_t(t)].get<int64_t>()) << "position " << t;
  }
  // Both sides hold the same dequantised f32 weights; what differs is only the order of f32 sums over 30 layers.
  EXPECT_LT(max_err, 2e-3) << "max |logit - transformers|";
  EXPECT_LT(max_lse, 2e-3) << "max |logsumexp - transformers|";
  RecordProperty("max_logit_err", std::to_string(max_err));
  std::printf("[ smollm2  ] weights %s: max |logit diff| %.3g, max |logsumexp diff| %.3g over %lld positions\n",
              GetParam().empty() ? "as in the file" : GetParam().c_str(), max_err, max_lse, (long long)T);
}

INSTANTIATE_TEST_SUITE_P(Gguf, GgufSmolLM2, ::testing::Values("", "f32"));

}  // namespace
}  // namespace sllm
