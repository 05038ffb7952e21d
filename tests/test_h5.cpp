// Native .h5 model files: every family fixture survives HF -> .h5 -> load bit for bit (weights and logits),
// f16/bf16 storage, the tokenizer, atomic writes, and bad files each refused with one clear line.
#include <gtest/gtest.h>

#include <algorithm>   // std::max
#include <cmath>       // std::fabs
#include <cstring>     // std::memcmp
#include <filesystem>  // std::filesystem
#include <fstream>     // std::ifstream, std::ofstream
#include <string>      // std::string
#include <unistd.h>    // getpid
#include <vector>      // std::vector

#include "core/error.h"           // Error
#include "formats/h5_file.h"      // h5::File (to patch files in place)
#include "formats/h5_model.h"     // save_h5
#include "formats/safetensors.h"  // SafetensorsArchive (golden logits)
#include "model/bundle.h"         // load_bundle, load_h5
#include "model/config_json.h"    // config_to_json, config_from_json
#include "model/decoder.h"        // Decoder
#include "ops/backend.h"          // cpu_backend
#include "runtime/kv_cache.h"     // KVCache

// LeakSanitizer (SLLM_SANITIZE=ON): libhdf5 1.10 leaks an object header (H5O_t, from its free lists) when a
// damaged header fails to load, which FlippedMetadataBytes does on purpose. The leak is inside HDF5 after every
// handle is closed, and the fast unwinder cannot name HDF5's frames, so the suppression names the library.
extern "C" __attribute__((used)) const char* __lsan_default_suppressions() { return "leak:libhdf5\n"; }

namespace sllm {
namespace {

namespace fs = std::filesystem;

const std::string kDir = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/models/";
const std::string kBytesTok = std::string(SLLM_SOURCE_DIR) + "/data/tokenizers/bytes/tokenizer.json";

// A fresh directory per test under the system temp dir, removed afterwards.
struct TempDir {
  fs::path p;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name)
      if (c == '/') c = '_';
    p = fs::temp_directory_path() / ("sllm_h5_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~TempDir() { fs::remove_all(p); }
  std::string operator/(const std::string& f) const { return (p / f).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

struct Named {
  std::string name;
  Tensor t;
};
std::vector<Named> tensors_of(const Model& m) {
  std::vector<Named> out;
  for_each_weight(m.cfg, const_cast<ModelWeights&>(m.w), [&](const WeightSlot& s) { out.push_back({s.name, *s.dst}); });
  return out;
}

// Same tensors through the visitor: presence, dtype, shape and every byte.
void expect_same_weights(const Model& a, const Model& b) {
  const auto ta = tensors_of(a), tb = tensors_of(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    const std::string& n = ta[i].name;
    ASSERT_EQ(ta[i].t.empty(), tb[i].t.empty()) << n;
    if (ta[i].t.empty()) continue;
    EXPECT_EQ(ta[i].t.dtype, tb[i].t.dtype) << n;
    ASSERT_TRUE(ta[i].t.shape == tb[i].t.shape) << n;
    EXPECT_EQ(std::memcmp(ta[i].t.data, tb[i].t.data, ta[i].t.bytes()), 0) << n << " differs";
  }
}

std::vector<int32_t> golden_ids(const SafetensorsArchive& g) {
  Tensor t = g.get("input_ids");
  return std::vector<int32_t>(t.as<int32_t>(), t.as<int32_t>() + t.numel());
}

std::vector<float> logits(const Model& m, const std::vector<int32_t>& ids) {
  const int64_t T = int64_t(ids.size());
  Decoder dec(m, cpu_backend(), T);
  KVCache cache(cpu_backend(), m.cfg, 0, T, T);
  const float* lg = dec.forward(ids.data(), T, cache, Logits::All);
  return std::vector<float>(lg, lg + T * m.cfg.vocab_size);
}

// Expects `fn` to throw an sllm::Error of one line that contains every needle.
template <class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needles.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

class H5Family : public ::testing::TestWithParam<std::string> {};

// HF -> .h5 (as stored) -> load: same config, every tensor bit for bit, identical logits (and HF's within 2e-4).
TEST_P(H5Family, RoundTripIsBitIdentical) {
  TempDir d;
  const std::string dir = kDir + GetParam(), out = d / "m.h5";
  const ModelBundle src = load_bundle(dir);
  save_h5(src, out, std::nullopt);  // every matrix as stored (convert's default)
  EXPECT_EQ(detect_format(out), ModelFormat::HDF5);
  const ModelBundle back = load_bundle(out);
  EXPECT_EQ(back.format, ModelFormat::HDF5);
  EXPECT_EQ(config_to_json(back.model.cfg), config_to_json(src.model.cfg));
  EXPECT_EQ(back.model.storage, src.model.storage);
  EXPECT_EQ(back.model.weight_bytes(), src.model.weight_bytes());
  expect_same_weights(src.model, back.model);
  EXPECT_EQ(back.model.w.lm_head.data == back.model.w.embed.data, src.model.w.lm_head.data == src.model.w.embed.data);
  EXPECT_EQ(back.model.w.keep_alive.size(), 1u) << "weights should be memory-mapped from the .h5";

  auto g = SafetensorsArchive::open(dir + "/golden.safetensors");
  const auto ids = golden_ids(g);
  const auto a = logits(src.model, ids), b = logits(back.model, ids);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "logits differ";
  Tensor ref = g.get("logits");
  std::vector<float> r(size_t(ref.numel()));
  to_f32(ref.data, ref.dtype, r.size(), r.data());
  double err = 0, mag = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    err = std::max(err, double(std::fabs(b[i] - r[i])));
    mag = std::max(mag, double(std::fabs(r[i])));
  }
  EXPECT_LT(err, 2e-4 * std::max(1.0, mag));
}

// Stored as f16 / bf16: exactly what loading the HF model with that dtype gives (same rounding), and matrices
// only: norms and biases stay f32.
TEST_P(H5Family, HalfStorageRoundTrip) {
  TempDir d;
  const std::string dir = kDir + GetParam();
  const ModelBundle src = load_bundle(dir);
  for (DType dt : {DType::F16, DType::BF16}) {
    const std::string out = d / (std::string(dtype_name(dt)) + ".h5");
    save_h5(src, out, dt);
    LoadOptions lo;
    lo.dtype = dt;
    const Model want = load_model(dir, lo);
    const ModelBundle back = load_h5(out, {});
    EXPECT_EQ(back.model.storage, dt);
    expect_same_weights(want, back.model);
    EXPECT_LT(fs::file_size(out), size_t(double(src.model.weight_bytes()) * (src.model.storage == DType::F32 ? 0.6 : 1.1)));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, H5Family,
                         ::testing::Values("llama", "llama_untied_bf16", "llama_sharded", "gpt_neox", "gpt_neox_seq",
                                           "falcon_mqa", "falcon_new", "mpt", "mpt_clip"));

// Whatever load_bundle reads converts: a GGUF file (config, weights and the tokenizer rebuilt from its metadata).
TEST(H5, GgufConverts) {
  const std::string src_path = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_bpe.gguf";
  if (!fs::exists(src_path)) GTEST_SKIP() << "no GGUF fixture";
  TempDir d;
  const ModelBundle src = load_bundle(src_path);
  save_h5(src, d / "g.h5", std::nullopt);  // GGUF files mix f32, f16 and bf16 matrices: each kept as it is
  const ModelBundle back = load_bundle(d / "g.h5");
  EXPECT_EQ(config_to_json(back.model.cfg), config_to_json(src.model.cfg));
  expect_same_weights(src.model, back.model);
  EXPECT_EQ(back.tokenizer_json, src.tokenizer_json);
  EXPECT_EQ(back.chat_template, src.chat_template);
  ASSERT_EQ(back.tok.has_value(), src.tok.has_value());
  if (src.tok) {
    EXPECT_EQ(back.tok->encode("Hello world, again"), src.tok->encode("Hello world, again"));
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 12; ++i) ids.push_back((i * 37) % int32_t(src.model.cfg.vocab_size));
  const auto a = logits(src.model, ids), b = logits(back.model, ids);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// Block formats are stored as they are (opaque blocks tagged with the format), read back bit for bit (memory-mapped),
// and run to the same logits; an HF model quantised at save time equals one quantised at load time.
TEST(H5, BlockFormatsRoundTrip) {
  TempDir d;
  const ModelBundle src = load_bundle(kDir + "llama");
  save_h5(src, d / "ref.h5", DType::F32);
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const std::string path = d / (std::string(dtype_name(dt)) + ".h5");
    save_h5(src, path, dt);
    const ModelBundle back = load_bundle(path);
    EXPECT_EQ(back.model.w.layers[0].w_down.dtype, dt);
    EXPECT_EQ(back.model.storage, dt);
    LoadOptions lo;
    lo.dtype = dt;
    const Model direct = load_model(kDir + "llama", lo);
    expect_same_weights(direct, back.model);
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < 12; ++i) ids.push_back((i * 37) % int32_t(src.model.cfg.vocab_size));
    const auto a = logits(direct, ids), b = logits(back.model, ids);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << dtype_name(dt);
    EXPECT_LT(fs::file_size(path), fs::file_size(d / "ref.h5")) << dtype_name(dt) << " is not smaller than f32";
    EXPECT_FALSE(back.model.w.keep_alive.empty()) << "the blocks were read, not mapped";
  }
  // Rows that are not whole blocks (MPT's 48-wide fixture) are refused by name, and nothing is left behind.
  const ModelBundle mpt = load_bundle(kDir + "mpt");
  expect_error([&] { save_h5(mpt, d / "mpt.h5", DType::Q4_0); },
               {d / "mpt.h5", "transformer.wte.weight", "[256, 48]", "not whole blocks of 32"});
  EXPECT_FALSE(fs::exists(d / "mpt.h5"));
}

// LoadOptions::dtype applies to .h5 files as to HF directories.
TEST(H5, DtypeConversionAtLoad) {
  TempDir d;
  const ModelBundle src = load_bundle(kDir + "llama");
  save_h5(src, d / "f32.h5", DType::F32);
  for (DType dt : {DType::F16, DType::BF16}) {
    LoadOptions lo;
    lo.dtype = dt;
    expect_same_weights(load_model(kDir + "llama", lo), load_h5(d / "f32.h5", lo).model);
  }
  // bf16 file read as f32: the exact widening.
  const ModelBundle bf = load_bundle(kDir + "llama_untied_bf16");
  save_h5(bf, d / "bf16.h5", DType::BF16);
  LoadOptions lo;
  lo.dtype = DType::F32;
  expect_same_weights(load_model(kDir + "llama_untied_bf16", lo), load_h5(d / "bf16.h5", lo).model);
}

TEST(H5, TokenizerAndChatTemplateRoundTrip) {
  TempDir d;
  ModelBundle b = load_bundle(kDir + "llama");
  EXPECT_FALSE(b.tok.has_value());
  save_h5(b, d / "plain.h5", DType::F32);
  const ModelBundle plain = load_h5(d / "plain.h5", {});
  EXPECT_FALSE(plain.tok.has_value());
  EXPECT_TRUE(plain.tokenizer_json.empty());
  EXPECT_TRUE(plain.chat_template.empty());

  b.tokenizer_json = slurp(kBytesTok);
  b.tok = Tokenizer::from_json_string(b.tokenizer_json, kBytesTok);
  b.chat_template = "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} ✓ é\n{% endfor %}";
  save_h5(b, d / "tok.h5", DType::F32);
  const ModelBundle back = load_bundle(d / "tok.h5");
  EXPECT_EQ(back.tokenizer_json, b.tokenizer_json);
  EXPECT_EQ(back.chat_template, b.chat_template);
  ASSERT_TRUE(back.tok.has_value());
  const std::string text = "Hello, wörld! 🌍 \x01\xff tabs\tand\nnewlines";
  EXPECT_EQ(back.tok->encode(text), b.tok->encode(text));
  EXPECT_EQ(back.tok->vocab_size(), b.tok->vocab_size());
  EXPECT_EQ(back.tok->decode(back.tok->encode("round trip")), "round trip");
}

// The same model written twice gives the same bytes (no timestamps), and every tensor starts on a 64-byte
// boundary (the loader maps them).
TEST(H5, DeterministicAndAligned) {
  TempDir d;
  const ModelBundle src = load_bundle(kDir + "gpt_neox");
  save_h5(src, d / "a.h5", DType::F32);
  save_h5(src, d / "b.h5", DType::F32);
  EXPECT_EQ(slurp(d / "a.h5"), slurp(d / "b.h5"));
  auto lk = h5::lock();
  h5::File f = h5::File::open_read(d / "a.h5");
  h5::Id wg = h5::open_group(f, f.id(), "weights");
  const auto names = h5::list(f, wg.get(), "/weights");
  EXPECT_EQ(names.size(), tensors_of(src.model).size() - (src.model.cfg.tied_head ? 1 : 0));
  for (const auto& n : names) {
    h5::Id ds = h5::open_dataset(f, wg.get(), "/weights", n);
    const auto info = h5::tensor_info({f, "/weights/" + n}, ds.get());
    ASSERT_TRUE(info.contiguous_offset.has_value()) << n;
    EXPECT_EQ(*info.contiguous_offset % 64, 0u) << n;
  }
}

// ---- patching files in place, for the fallback read path and the bad-file tests ----

// Replaces /weights/<name> with a dataset of `type` (chunked when `chunked`), shape `dims`, filled from `data`
// given in `mem_type`.
void replace_weight(const std::string& path, const std::string& name, hid_t type, std::vector<hsize_t> dims,
                    bool chunked, hid_t mem_type, const void* data) {
  auto lk = h5::lock();
  h5::File f = h5::File::open_rw(path);
  h5::Id wg = h5::open_group(f, f.id(), "weights");
  if (h5::exists(f, wg.get(), name)) h5::unlink(f, wg.get(), name);
  h5::Id sp(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  h5::Id dc(H5Pcreate(H5P_DATASET_CREATE));
  if (chunked) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::max<hsize_t>(1, dims[0] / 3);
    H5Pset_chunk(dc.get(), int(chunk.size()), chunk.data());
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dc.get(), 6);
  }
  h5::Id ds(H5Dcreate2(wg.get(), name.c_str(), type, sp.get(), H5P_DEFAULT, dc.get(), H5P_DEFAULT));
  ASSERT_TRUE(ds.valid());
  if (data) {
    ASSERT_GE(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  }
}

// Tensors that are not one mapped block (chunked and compressed, or another float type) are read, and converted
// when needed.
TEST(H5, ChunkedAndOtherFloatTypesAreRead) {
  TempDir d;
  const std::string out = d / "m.h5";
  const ModelBundle src = load_bundle(kDir + "llama");
  save_h5(src, out, DType::F32);
  const Tensor& q = src.model.w.layers[0].wq;
  replace_weight(out, "model.layers.0.self_attn.q_proj.weight", H5T_IEEE_F32LE, {64, 64}, true, H5T_NATIVE_FLOAT, q.data);
  const Tensor& up = src.model.w.layers[1].w_up;  // f64 in the file: converted to f32 exactly
  replace_weight(out, "model.layers.1.mlp.up_proj.weight", H5T_IEEE_F64BE, {128, 64}, false, H5T_NATIVE_FLOAT, up.data);
  const ModelBundle back = load_h5(out, {});
  expect_same_weights(src.model, back.model);
}

// Replaces a string attribute of the root (attr = true) or a root dataset by a variable-length UTF-8 string, as
// h5py writes `f.attrs[k] = "..."` and `f[k] = "..."`.
void set_vlen_string(const std::string& path, const std::string& name, const std::string& value, bool attr) {
  auto lk = h5::lock();
  h5::File f = h5::File::open_rw(path);
  h5::Id t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  h5::Id sp(H5Screate(H5S_SCALAR));
  const char* p = value.c_str();
  if (attr) {
    H5Adelete(f.id(), name.c_str());
    h5::Id a(H5Acreate2(f.id(), name.c_str(), t.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Awrite(a.get(), t.get(), &p), 0);
  } else {
    h5::unlink(f, f.id(), name);
    h5::Id ds(H5Dcreate2(f.id(), name.c_str(), t.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Dwrite(ds.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), 0);
  }
}

TEST(H5, VariableLengthStringsAreRead) {
  TempDir d;
  const std::string out = d / "m.h5";
  const ModelBundle src = load_bundle(kDir + "falcon_new");
  save_h5(src, out, DType::F32);
  set_vlen_string(out, "streamllm.format", kH5FormatModel, true);
  set_vlen_string(out, "config", config_to_json(src.model.cfg), false);
  const ModelBundle back = load_h5(out, {});
  EXPECT_EQ(config_to_json(back.model.cfg), config_to_json(src.model.cfg));
  expect_same_weights(src.model, back.model);
  set_vlen_string(out, "streamllm.format", "other", true);
  expect_error([&] { load_h5(out, {}); }, {"streamllm.format is 'other'"});
}

class H5Bad : public ::testing::Test {
 protected:
  void SetUp() override {
    good = d / "good.h5";
    save_h5(load_bundle(kDir + "llama"), good, DType::F32);
  }
  // A copy of the good file, patched by fn (with the file open read-write).
  template <class Fn>
  std::string patched(const std::string& name, Fn&& fn) {
    const std::string p = d / name;
    fs::copy_file(good, p, fs::copy_options::overwrite_existing);
    auto lk = h5::lock();
    h5::File f = h5::File::open_rw(p);
    fn(f);
    f.flush_and_close();
    return p;
  }
  void set_config(h5::File& f, const std::string& json) {
    h5::unlink(f, f.id(), "config");
    h5::write_string(f, f.id(), "/", "config", json);
  }
  TempDir d;
  std::string good;
};

TEST_F(H5Bad, WrongFormatTag) {
  const auto p = patched("tag.h5", [](h5::File& f) { h5::write_attr(f, f.id(), "/", "streamllm.format", std::string("pytorch")); });
  expect_error([&] { load_h5(p, {}); }, {p, "not a streamllm model file", "'pytorch'"});
  const auto q = patched("notag.h5", [](h5::File& f) { H5Adelete(f.id(), "streamllm.format"); });
  expect_error([&] { load_bundle(q); }, {q, "no 'streamllm.format' attribute"});
}

TEST_F(H5Bad, FutureVersion) {
  const auto p = patched("v2.h5", [](h5::File& f) {
    h5::write_attr(f, f.id(), "/", "streamllm.version", int64_t(2));
    h5::write_attr(f, f.id(), "/", "streamllm.version_minor", int64_t(0));
  });
  expect_error([&] { load_h5(p, {}); }, {p, "format version 2.0 is newer"});
  // A newer minor version only adds what this reader may ignore.
  const auto q = patched("v1_7.h5", [](h5::File& f) { h5::write_attr(f, f.id(), "/", "streamllm.version_minor", int64_t(7)); });
  EXPECT_NO_THROW(load_h5(q, {}));
}

// Opaque datasets are block-format tensors only with our tag and the format's block size.
TEST_F(H5Bad, OpaqueTypesOtherThanOurBlocks) {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";  // (64, 64): 2 blocks per row
  std::vector<unsigned char> bytes(64 * 2 * 34, 0);
  struct Case {
    const char* tag;
    size_t size;
  };
  for (const Case c : {Case{"streamllm.ggml.q5_0", 34}, Case{"streamllm.ggml.q8_0", 33}, Case{"numpy void", 34}}) {
    const auto p = patched("opaque.h5", [&](h5::File&) {});
    h5::Id t(H5Tcreate(H5T_OPAQUE, c.size));
    H5Tset_tag(t.get(), c.tag);
    replace_weight(p, name, t.get(), {64, 2}, false, t.get(), bytes.data());
    expect_error([&] { load_h5(p, {}); }, {p, name, "not a float type"});
  }
  // The right tag and size: accepted (all-zero blocks are valid q8_0 weights).
  const auto p = patched("opaque_ok.h5", [&](h5::File&) {});
  h5::Id t(H5Tcreate(H5T_OPAQUE, 34));
  H5Tset_tag(t.get(), "streamllm.ggml.q8_0");
  replace_weight(p, name, t.get(), {64, 2}, false, t.get(), bytes.data());
  const ModelBundle b = load_h5(p, {});
  EXPECT_EQ(b.model.w.layers[0].wq.dtype, DType::Q8_0);
}

TEST_F(H5Bad, WrongShape) {
  std::vector<float> z(31 * 64, 0.5f);
  const auto p = patched("shape.h5", [&](h5::File&) {});
  replace_weight(p, "model.layers.1.self_attn.q_proj.weight", H5T_IEEE_F32LE, {31, 64}, false, H5T_NATIVE_FLOAT, z.data());
  expect_error([&] { load_h5(p, {}); },
               {p + ":/weights/model.layers.1.self_attn.q_proj.weight", "shape [31, 64] does not match the config",
                "expected [64, 64]"});
}

TEST_F(H5Bad, MissingUnexpectedAndNonFloatTensors) {
  const auto p = patched("missing.h5", [](h5::File& f) {
    h5::Id wg = h5::open_group(f, f.id(), "weights");
    h5::unlink(f, wg.get(), "model.layers.1.mlp.up_proj.weight");
  });
  expect_error([&] { load_h5(p, {}); }, {p, "missing tensor '/weights/model.layers.1.mlp.up_proj.weight'"});

  std::vector<float> v(64, 1.0f);
  const auto q = patched("extra.h5", [](h5::File&) {});
  replace_weight(q, "model.layers.7.input_layernorm.weight", H5T_IEEE_F32LE, {64}, false, H5T_NATIVE_FLOAT, v.data());
  expect_error([&] { load_h5(q, {}); }, {q + ":/weights: holds 21 objects", "has 20 tensors", "unexpected extra tensors"});

  std::vector<int32_t> ints(64, 1);
  const auto r = patched("int.h5", [](h5::File&) {});
  replace_weight(r, "model.norm.weight", H5T_STD_I32LE, {64}, false, H5T_NATIVE_INT32, ints.data());
  expect_error([&] { load_h5(r, {}); }, {r + ":/weights/model.norm.weight", "32-bit integer is not a float type"});

  const auto s = patched("nodata.h5", [](h5::File&) {});  // created, never written: refuse rather than read zeros
  replace_weight(s, "model.norm.weight", H5T_IEEE_F32LE, {64}, false, H5T_NATIVE_FLOAT, nullptr);
  expect_error([&] { load_h5(s, {}); }, {s + ":/weights/model.norm.weight", "no data stored"});
}

TEST_F(H5Bad, BadConfig) {
  const ModelConfig c = load_bundle(kDir + "llama").model.cfg;
  const auto p = patched("json.h5", [&](h5::File& f) { set_config(f, "{ not json"); });
  expect_error([&] { load_h5(p, {}); }, {p + ":/config", "not valid JSON"});
  std::string j = config_to_json(c);
  const auto q = patched("cfgv.h5", [&](h5::File& f) {
    set_config(f, std::string(j).replace(j.find("\"config_version\": 2"), 19, "\"config_version\": 9"));
  });
  expect_error([&] { load_h5(q, {}); }, {q + ":/config", "config_version 9 was written by a newer streamllm"});
  const auto r = patched("kv.h5", [&](h5::File& f) {
    set_config(f, std::string(j).replace(j.find("\"n_kv_heads\": 2"), 15, "\"n_kv_heads\": 3"));
  });
  expect_error([&] { load_h5(r, {}); }, {r + ":/config", "key/value heads"});
  const auto s = patched("noconfig.h5", [&](h5::File& f) { h5::unlink(f, f.id(), "config"); });
  expect_error([&] { load_h5(s, {}); }, {s, "no /config"});
}

TEST_F(H5Bad, TruncatedFiles) {
  const std::string bytes = slurp(good);
  for (size_t cut : {size_t(0), size_t(7), size_t(100), size_t(2000), bytes.size() / 2, bytes.size() - 1}) {
    const std::string p = d / ("cut" + std::to_string(cut) + ".h5");
    spit(p, bytes.substr(0, cut));
    expect_error([&] { load_h5(p, {}); }, {p});
    EXPECT_THROW(load_bundle(p), Error) << cut;
  }
  const std::string half = d / "cut" + std::to_string(bytes.size() / 2) + ".h5";
  expect_error([&] { load_h5(half, {}); }, {half, "truncated file"});
}

TEST_F(H5Bad, NotHdf5) {
  const std::string p = d / "text.h5";
  spit(p, "this is not an HDF5 file, just some text long enough to hold a superblock or two ....................");
  expect_error([&] { load_h5(p, {}); }, {p, "not an HDF5 file"});
  expect_error([&] { load_bundle(p); }, {p, "not a model"});
  expect_error([&] { load_h5(d / "absent.h5", {}); }, {"absent.h5", "no such file"});
  expect_error([&] { load_h5(d.p.string(), {}); }, {"not a regular file"});
}

// Single flipped bytes anywhere in the metadata: an error or (when the byte is padding) a good load, never a crash.
// Superblock v2 and v2 object headers carry checksums, so most flips are caught as such.
TEST_F(H5Bad, FlippedMetadataBytes) {
  const std::string bytes = slurp(good);
  int refused = 0, loaded = 0;
  for (size_t pos = 0; pos < std::min<size_t>(bytes.size(), 2048); pos += 7) {
    std::string b = bytes;
    b[pos] = char(b[pos] ^ 0x5a);
    const std::string p = d / "flip.h5";
    spit(p, b);
    try {
      load_bundle(p);
      ++loaded;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  RecordProperty("refused", refused);
  RecordProperty("loaded", loaded);
}

// ---- atomic writes ----

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(H5Atomic, FailedWriteLeavesOldFileAndNoTemporary) {
  TempDir d;
  const std::string out = d / "model.h5";
  save_h5(load_bundle(kDir + "llama"), out, DType::F32);
  const std::string before = slurp(out);
  const ModelBundle other = load_bundle(kDir + "gpt_neox");
  int calls = 0;
  // The progress callback is called after every block: throwing from it fails the write midway.
  expect_error([&] {
    save_h5(other, out, DType::F32, [&](size_t, size_t) {
      if (++calls == 5) throw Error("injected failure");
    });
  }, {"injected failure"});
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(slurp(out), before);
  EXPECT_EQ(files_in(d.p), std::vector<std::string>{"model.h5"});
  EXPECT_EQ(load_h5(out, {}).model.cfg.family, Family::Llama);

  // Unknown storage type, a missing directory, a directory in the way: errors, nothing left behind.
  expect_error([&] { save_h5(other, out, DType::I32); }, {out, "f32, f16, bf16, q8_0, q4_0 or q4_1, not i32"});
  expect_error([&] { save_h5(other, d / "no/such/dir/m.h5", DType::F32); }, {"no/such/dir/m.h5", "does not exist"});
  fs::create_directory(d.p / "adir");
  fs::create_directory(d.p / "adir" / "keep");
  expect_error([&] { save_h5(other, d / "adir", DType::F32); }, {"adir", "cannot move the finished file into place"});
  EXPECT_TRUE(fs::is_directory(d.p / "adir" / "keep"));
  EXPECT_EQ(files_in(d.p), (std::vector<std::string>{"adir", "model.h5"}));
  EXPECT_EQ(slurp(out), before);

  // A successful write replaces the file whole; progress ends at total.
  size_t last_done = 0, last_total = 1;
  save_h5(other, out, DType::F16, [&](size_t done, size_t total) {
    last_done = done;
    last_total = total;
  });
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(load_h5(out, {}).model.cfg.family, Family::GPTNeoX);
  EXPECT_EQ(files_in(d.p), (std::vector<std::string>{"adir", "model.h5"}));
}

// ---- the config JSON ----

TEST(ConfigJson, EveryFieldRoundTrips) {
  ModelConfig c;
  c.family = Family::MPT;
  c.model_type = "mpt-ish \"quoted\" ✓";
  c.vocab_size = 50257;
  c.hidden = 96;
  c.n_layers = 3;
  c.n_heads = 6;
  c.n_kv_heads = 3;
  c.head_dim = 16;
  c.ffn = 384;
  c.max_positions = 4096;
  c.norm = NormKind::LayerNorm;
  c.norm_eps = 1.234567e-6f;
  c.mlp = MlpKind::GeluTanh;
  c.parallel_residual = true;
  c.shared_norm = true;
  c.qkv = QkvLayout::Blocked;
  c.clip_qkv = 0.6f;
  c.pos = PosKind::ALiBi;
  c.rope_theta = 500000.123456789;
  c.rot_dims = 8;
  c.rope_interleaved = true;
  c.alibi_bias_max = 7.5;
  c.attn_scale = 0.1f;
  c.tied_head = true;
  c.bos_id = 0;
  c.eos_id = 50256;
  const std::string j = config_to_json(c);
  const ModelConfig r = config_from_json(j, "t");
  EXPECT_EQ(config_to_json(r), j);
  EXPECT_EQ(r.family, c.family);
  EXPECT_EQ(r.model_type, c.model_type);
  EXPECT_EQ(r.vocab_size, c.vocab_size);
  EXPECT_EQ(r.hidden, c.hidden);
  EXPECT_EQ(r.n_layers, c.n_layers);
  EXPECT_EQ(r.n_heads, c.n_heads);
  EXPECT_EQ(r.n_kv_heads, c.n_kv_heads);
  EXPECT_EQ(r.head_dim, c.head_dim);
  EXPECT_EQ(r.ffn, c.ffn);
  EXPECT_EQ(r.max_positions, c.max_positions);
  EXPECT_EQ(r.norm, c.norm);
  EXPECT_EQ(r.norm_eps, c.norm_eps);  // bit-exact
  EXPECT_EQ(r.mlp, c.mlp);
  EXPECT_EQ(r.parallel_residual, c.parallel_residual);
  EXPECT_EQ(r.shared_norm, c.shared_norm);
  EXPECT_EQ(r.qkv, c.qkv);
  EXPECT_EQ(r.clip_qkv, c.clip_qkv);
  EXPECT_EQ(r.pos, c.pos);
  EXPECT_EQ(r.rope_theta, c.rope_theta);
  EXPECT_EQ(r.rot_dims, c.rot_dims);
  EXPECT_EQ(r.rope_interleaved, c.rope_interleaved);
  EXPECT_EQ(r.alibi_bias_max, c.alibi_bias_max);
  EXPECT_EQ(r.attn_scale, c.attn_scale);
  EXPECT_EQ(r.tied_head, c.tied_head);
  EXPECT_EQ(r.bos_id, c.bos_id);
  EXPECT_EQ(r.eos_id, c.eos_id);
  EXPECT_NE(j.find("\"norm_eps\": 1.234567e-06"), std::string::npos) << j;  // the float's short spelling
}

TEST(ConfigJson, VersionsDefaultsAndErrors) {
  // Optional fields missing (an older writer): defaults.
  const ModelConfig m = config_from_json(
      R"({"config_version":1,"family":"llama","vocab_size":10,"hidden":8,"n_layers":1,"n_heads":2,"n_kv_heads":1,
          "head_dim":4,"ffn":16})", "c");
  EXPECT_EQ(m.norm, NormKind::RMSNorm);
  EXPECT_EQ(m.rope_theta, 10000.0);
  EXPECT_EQ(m.bos_id, -1);
  const std::string base = R"("family":"llama","vocab_size":10,"hidden":8,"n_layers":1,"n_heads":2,"n_kv_heads":1,"head_dim":4,"ffn":16)";
  expect_error([&] { config_from_json("{" + base + "}", "c"); }, {"c: missing integer field 'config_version'"});
  expect_error([&] { config_from_json(R"({"config_version":3,)" + base + "}", "c"); }, {"config_version 3", "newer"});
  // Version 2 added the sink variant: a version-1 file cannot carry it, and a version-2 one is validated.
  expect_error([&] { config_from_json(R"({"config_version":1,"sink":"zero_sink",)" + base + "}", "c"); },
               {"field 'sink' does not exist in config_version 1"});
  expect_error([&] { config_from_json(R"({"config_version":2,"sink":"learnable_sink",)" + base + "}", "c"); },
               {"learnable_sink needs sink_tokens in [1, 64], got 0"});
  expect_error([&] { config_from_json(R"({"config_version":2,"sink":"softmax1",)" + base + "}", "c"); },
               {"field 'sink' must be one of vanilla, zero_sink, learnable_sink, sink_logit, got 'softmax1'"});
  const ModelConfig s2 = config_from_json(R"({"config_version":2,"sink":"learnable_sink","sink_tokens":2,)" + base + "}", "c");
  EXPECT_EQ(s2.sink, SinkKind::LearnableSink);
  EXPECT_EQ(s2.first_sink_id(), 8);
  EXPECT_EQ(s2.default_sinks(), 2);
  expect_error([&] { config_from_json(R"({"config_version":1,"rope_scaling":2,)" + base + "}", "c"); },
               {"unknown field 'rope_scaling'"});
  expect_error([&] { config_from_json(R"({"config_version":1,"norm":"batchnorm",)" + base + "}", "c"); },
               {"field 'norm' must be one of rmsnorm, layernorm, got 'batchnorm'"});
  expect_error([&] { config_from_json(R"({"config_version":1,"tied_head":1,)" + base + "}", "c"); },
               {"field 'tied_head' must be true or false"});
  expect_error([&] { config_from_json(R"({"config_version":1,"family":"llama"})", "c"); }, {"missing field 'vocab_size'"});
}

}  // namespace
}  // namespace sllm
