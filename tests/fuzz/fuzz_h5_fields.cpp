// Fuzz target: our own checks in the native .h5 reader (formats/h5_model.cpp, formats/h5_file.cpp), on files that
// are well-formed HDF5. Structure-aware: the fuzz input is a list of edits that the HDF5 library itself applies to a
// valid tiny model file (made once at start-up with save_h5), then load_h5 reads the result. So every input is a
// legal HDF5 container and the search explores what *we* check: the root attributes (format tag, versions, any
// type and rank), /config (any text, our JSON schema with one field changed, wrong object kinds), /tokenizer
// (tokenizer.json text, chat template), and /weights (missing, extra, renamed tensors; any dtype including integer,
// big-endian, f64, strings and our f16/bf16 layouts; any rank and shape, including the shapes an edited config asks
// for and huge ones; contiguous, chunked, compressed or compact storage; written, partly written or never written;
// soft and external links; a config resized with every weight rewritten to match but barely stored). fuzz_h5 feeds
// raw bytes to libhdf5 instead.
#include <fuzzer/FuzzedDataProvider.h>  // FuzzedDataProvider (ships with clang)
#include <hdf5.h>                        // H5*
#include <unistd.h>                      // mkstemp, close, unlink

#include <algorithm>          // std::min, std::max
#include <cstdlib>            // std::getenv
#include <fstream>            // std::ifstream, std::ofstream
#include <iterator>           // std::istreambuf_iterator, std::advance
#include <nlohmann/json.hpp>  // nlohmann::json
#include <vector>             // std::vector

#include "formats/h5_file.h"    // h5::Id, h5::lock, h5::quiet, h5::float_type
#include "formats/h5_model.h"   // save_h5
#include "fuzz_util.h"          // MemFile, expect_ok_or_error, touch
#include "model/bundle.h"       // load_h5, ModelBundle
#include "model/config_json.h"  // config_to_json, config_from_json
#include "model/model.h"        // random_model
#include "model/weights.h"      // for_each_weight

namespace {

using namespace sllm;
using json = nlohmann::json;

std::string g_template;  // the bytes of a valid tiny model file
ModelConfig g_cfg;       // its config

const char kTokenizer[] = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})";

void make_template() {
  ModelConfig c;
  c.family = Family::Llama;
  c.model_type = "llama";
  c.vocab_size = 16;
  c.hidden = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 4;
  c.ffn = 8;
  c.rot_dims = 4;
  ModelBundle b;
  b.model = random_model(c, DType::F32, 1);
  b.tokenizer_json = kTokenizer;
  b.chat_template = "{{ messages }}";
  char path[] = "/tmp/sllm_fuzz_h5_template_XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) std::abort();
  ::close(fd);
  save_h5(b, path, DType::F16);
  std::ifstream in(path, std::ios::binary);
  g_template.assign(std::istreambuf_iterator<char>(in), {});
  ::unlink(path);
  g_cfg = c;
}

// ---- small pickers ----

template <class T, size_t N>
T pick(FuzzedDataProvider& p, const T (&v)[N]) {
  return v[p.ConsumeIntegralInRange<size_t>(0, N - 1)];
}

std::string some_name(FuzzedDataProvider& p, const std::vector<std::string>& known) {
  if (!known.empty() && p.ConsumeBool()) return known[p.ConsumeIntegralInRange<size_t>(0, known.size() - 1)];
  std::string s = p.ConsumeRandomLengthString(40);
  if (s.empty() || s.find('/') != std::string::npos || s == ".") s = "x";
  return s;
}

int64_t interesting_int(FuzzedDataProvider& p) {
  static const int64_t v[] = {0, 1, 2, 3, 4, 7, 8, 16, 31, 64, 1023, 1024, 1025, 65536, 65537, int64_t(1) << 20,
                              (int64_t(1) << 31) - 1, int64_t(1) << 31, int64_t(1) << 40, INT64_MAX, -1, INT64_MIN};
  return p.ConsumeBool() ? pick(p, v) : p.ConsumeIntegral<int64_t>();
}

// Names and shapes the current config's visitor expects.
std::vector<std::pair<std::string, Shape>> expected_weights(const ModelConfig& c) {
  std::vector<std::pair<std::string, Shape>> out;
  ModelWeights w;
  try {
    for_each_weight(c, w, [&](const WeightSlot& s) {
      if (!s.name.empty()) out.emplace_back(s.name, s.shape);
    });
  } catch (const Error&) {
  }
  return out;
}

// ---- edits ----

h5::Id string_type(FuzzedDataProvider& p, size_t len) {
  h5::Id t(H5Tcopy(H5T_C_S1));
  if (p.ConsumeBool()) {
    H5Tset_size(t.get(), H5T_VARIABLE);
  } else {
    H5Tset_size(t.get(), std::max<size_t>(len, 1));
    H5Tset_strpad(t.get(), pick(p, {H5T_STR_NULLTERM, H5T_STR_NULLPAD, H5T_STR_SPACEPAD}));
  }
  if (p.ConsumeBool()) H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

void write_string_obj(FuzzedDataProvider& p, hid_t loc, const std::string& name, const std::string& v, bool attr) {
  h5::Id t = string_type(p, v.size());
  const bool var = H5Tis_variable_str(t.get()) > 0;
  // Out of input, the provider returns 0: let that pick the well-formed choice (a scalar), as everywhere here.
  h5::Id sp(p.ConsumeIntegralInRange(0, 3) == 0 ? H5Screate(H5S_SCALAR) : [&] {
    const hsize_t n = p.ConsumeIntegralInRange<hsize_t>(0, 3);
    return H5Screate_simple(1, &n, nullptr);
  }());
  const hssize_t n = H5Sget_simple_extent_npoints(sp.get());
  std::string fixed = v;
  fixed.resize(std::max<size_t>(v.size(), 1) * size_t(std::max<hssize_t>(n, 1)), '\0');
  std::vector<const char*> ptrs(size_t(std::max<hssize_t>(n, 1)), v.c_str());
  const void* buf = var ? static_cast<const void*>(ptrs.data()) : static_cast<const void*>(fixed.data());
  if (attr) {
    H5Adelete(loc, name.c_str());
    h5::Id a(H5Acreate2(loc, name.c_str(), t.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (a.valid()) H5Awrite(a.get(), t.get(), buf);
  } else {
    H5Ldelete(loc, name.c_str(), H5P_DEFAULT);
    h5::Id d(H5Dcreate2(loc, name.c_str(), t.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (d.valid() && n > 0) H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  }
}

const char* const kRootAttrs[] = {"streamllm.format", "streamllm.version", "streamllm.version_minor",
                                  "streamllm.storage_dtype", "streamllm.writer"};

void edit_attr(FuzzedDataProvider& p, hid_t root) {
  const std::string name = p.ConsumeBool() ? pick(p, kRootAttrs) : p.ConsumeRandomLengthString(20);
  if (name.empty()) return;
  switch (p.ConsumeIntegralInRange(0, 2)) {
    case 0: {  // a string value
      static const char* const vals[] = {"streamllm-model", "streamllm-checkpoint", "", "pytorch"};
      const std::string v = p.ConsumeBool() ? pick(p, vals) : p.ConsumeRandomLengthString(64);
      write_string_obj(p, root, name, v, true);
      return;
    }
    case 1: {  // a number of some type and rank
      const hid_t types[] = {H5T_STD_I8LE, H5T_STD_U8LE, H5T_STD_I32BE, H5T_STD_U64LE, H5T_STD_I64LE, H5T_IEEE_F32LE,
                             H5T_IEEE_F64BE};
      const hid_t t = pick(p, types);
      const hsize_t n = p.ConsumeIntegralInRange<hsize_t>(0, 3);
      h5::Id sp(p.ConsumeBool() ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr));
      const int64_t v[3] = {interesting_int(p), interesting_int(p), interesting_int(p)};
      H5Adelete(root, name.c_str());
      h5::Id a(H5Acreate2(root, name.c_str(), t, sp.get(), H5P_DEFAULT, H5P_DEFAULT));
      if (a.valid()) H5Awrite(a.get(), H5T_NATIVE_INT64, v);
      return;
    }
    default:
      H5Adelete(root, name.c_str());
  }
}

// Replaces /config. Returns the text written when it was a string.
void edit_config(FuzzedDataProvider& p, hid_t root, ModelConfig& cur) {
  std::string text;
  switch (p.ConsumeIntegralInRange(0, 4)) {
    case 0:
      text = p.ConsumeRandomLengthString(2048);
      break;
    case 1:
    case 2: {  // our schema with some fields changed: reaches the checks behind the JSON parser
      json j = json::parse(config_to_json(cur));
      const int n = p.ConsumeIntegralInRange(1, 3);
      for (int k = 0; k < n; ++k) {
        auto it = j.begin();
        std::advance(it, p.ConsumeIntegralInRange<size_t>(0, j.size() - 1));
        const std::string key = it.key();
        switch (p.ConsumeIntegralInRange(0, 7)) {
          case 0: j.erase(key); break;
          case 1: j[key] = p.ConsumeRandomLengthString(16); break;
          case 2: j[key] = p.ConsumeFloatingPoint<double>(); break;
          case 3: j[key] = p.ConsumeBool(); break;
          case 4: j[key] = nullptr; break;
          case 5: j[key] = json::array({1, 2}); break;
          case 6: j[p.ConsumeRandomLengthString(12)] = 1; break;
          default: j[key] = interesting_int(p);
        }
      }
      text = j.dump(-1, ' ', false, json::error_handler_t::replace);  // input strings need not be UTF-8
      break;
    }
    case 3: {  // not a string at all
      H5Ldelete(root, "config", H5P_DEFAULT);
      if (p.ConsumeBool()) {
        h5::Id g(H5Gcreate2(root, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      } else {
        const int32_t v = 7;
        h5::Id sp(H5Screate(H5S_SCALAR));
        h5::Id d(H5Dcreate2(root, "config", H5T_STD_I32LE, sp.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        if (d.valid()) H5Dwrite(d.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
      }
      return;
    }
    default:
      H5Ldelete(root, "config", H5P_DEFAULT);
      return;
  }
  write_string_obj(p, root, "config", text, false);
  try {
    cur = config_from_json(text, "config");  // later weight edits follow the config the file now claims
  } catch (const Error&) {
  }
}

void edit_tokenizer(FuzzedDataProvider& p, hid_t root) {
  switch (p.ConsumeIntegralInRange(0, 3)) {
    case 0: {
      h5::Id g(H5Gopen2(root, "tokenizer", H5P_DEFAULT));
      if (!g.valid()) g = h5::Id(H5Gcreate2(root, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      if (!g.valid()) return;
      const std::string which = p.ConsumeBool() ? "tokenizer.json" : "chat_template";
      write_string_obj(p, g.get(), which, p.ConsumeRandomLengthString(4096), false);
      return;
    }
    case 1:
      H5Ldelete(root, "tokenizer", H5P_DEFAULT);
      return;
    case 2: {  // a dataset where the group should be
      H5Ldelete(root, "tokenizer", H5P_DEFAULT);
      write_string_obj(p, root, "tokenizer", kTokenizer, false);
      return;
    }
    default: {  // a group where the text should be
      h5::Id g(H5Gopen2(root, "tokenizer", H5P_DEFAULT));
      if (!g.valid()) return;
      H5Ldelete(g.get(), "tokenizer.json", H5P_DEFAULT);
      h5::Id sub(H5Gcreate2(g.get(), "tokenizer.json", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    }
  }
}

h5::Id tensor_type(FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange(0, 9)) {
    case 0: return h5::Id(H5Tcopy(H5T_IEEE_F32BE));
    case 1: return h5::Id(H5Tcopy(H5T_IEEE_F64LE));
    case 2: return h5::Id(H5Tcopy(H5T_STD_I32LE));
    case 3: return h5::Id(H5Tcopy(H5T_STD_U8LE));
    case 4: return h5::Id(H5Tcopy(H5T_C_S1));
    case 5: return h5::float_type(DType::F16);
    case 6: return h5::float_type(DType::BF16);
    case 7: {  // an odd float layout: 24 bits
      h5::Id t(H5Tcopy(H5T_IEEE_F32LE));
      H5Tset_fields(t.get(), 23, 16, 7, 0, 16);
      H5Tset_size(t.get(), 3);
      return t;
    }
    default: return h5::Id(H5Tcopy(H5T_IEEE_F32LE));
  }
}

void edit_weight(FuzzedDataProvider& p, hid_t root, const ModelConfig& cur) {
  h5::Id wg(H5Gopen2(root, "weights", H5P_DEFAULT));
  if (!wg.valid()) return;
  const auto expected = expected_weights(cur);
  std::vector<std::string> names;
  for (const auto& [n, s] : expected) names.push_back(n);
  const std::string name = some_name(p, names);
  Shape want;
  for (const auto& [n, s] : expected)
    if (n == name) want = s;
  H5Ldelete(wg.get(), name.c_str(), H5P_DEFAULT);
  const int action = p.ConsumeIntegralInRange(0, 9);
  if (action == 0) return;  // removed
  if (action == 1) {         // a soft or external link in its place
    if (p.ConsumeBool())
      H5Lcreate_soft("/weights/model.norm.weight", wg.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT);
    else
      H5Lcreate_external("/etc/hostname", "/x", wg.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT);
    return;
  }
  // Shape: what the config asks for (maybe with one dimension changed), or anything.
  std::vector<hsize_t> dims;
  const int shape_kind = p.ConsumeIntegralInRange(0, 3);
  if (shape_kind <= 1 && want.ndim > 0) {
    for (int i = 0; i < want.ndim; ++i) dims.push_back(hsize_t(want[i]));
    if (shape_kind == 1) dims[p.ConsumeIntegralInRange<size_t>(0, dims.size() - 1)] = hsize_t(interesting_int(p));
  } else {
    const int rank = p.ConsumeIntegralInRange(0, 5);
    for (int i = 0; i < rank; ++i)
      dims.push_back(p.ConsumeBool() ? hsize_t(interesting_int(p)) : p.ConsumeIntegralInRange<hsize_t>(0, 20));
  }
  for (auto& d : dims) d = std::min<hsize_t>(d, hsize_t(1) << 62);  // HDF5's own limit on a dimension
  h5::Id sp(dims.empty() ? H5Screate(p.ConsumeBool() ? H5S_SCALAR : H5S_NULL)
                         : H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  if (!sp.valid()) return;
  h5::Id type = tensor_type(p);
  h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
  const int layout = p.ConsumeIntegralInRange(0, 3);
  hssize_t npoints = H5Sget_simple_extent_npoints(sp.get());
  if (layout >= 1 && !dims.empty()) {
    std::vector<hsize_t> chunk(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) chunk[i] = std::max<hsize_t>(1, std::min<hsize_t>(dims[i], 4));
    if (layout == 3 && npoints >= 0 && npoints <= 64) {
      H5Pset_layout(dcpl.get(), H5D_COMPACT);
    } else {
      H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data());
      if (layout == 2 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dcpl.get(), 1);
    }
  }
  h5::Id d(H5Dcreate2(wg.get(), name.c_str(), type.get(), sp.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (!d.valid()) return;
  const int write = p.ConsumeIntegralInRange(0, 2);
  const float fill = p.ConsumeFloatingPoint<float>();
  if (write == 1 && npoints > 0 && npoints <= (1 << 16)) {  // everything
    std::vector<float> v(size_t(npoints), fill);
    H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  } else if (write == 2 && !dims.empty() && npoints > 0) {  // one element: a dataset with storage that is mostly fill
    std::vector<hsize_t> start(dims.size(), 0), count(dims.size(), 1);
    h5::Id fs(H5Dget_space(d.get()));
    h5::Id ms(H5Screate_simple(int(count.size()), count.data(), nullptr));
    H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    H5Dwrite(d.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, &fill);
  }
}

// Gives one size in /config a new value and rewrites every weight to the shape the new config asks for, storing
// only a little of it: the first row of a chunked dataset (the rest reads as fill values) or nothing at all. This is
// the cheap way for a file to claim a huge model; without it the fuzzer would have to pick the config edit and a
// matching dataset shape independently.
void edit_resize(FuzzedDataProvider& p, hid_t root, ModelConfig& cur) {
  static const char* const kSizes[] = {"vocab_size", "hidden", "ffn", "n_layers", "n_heads", "n_kv_heads",
                                       "head_dim"};
  json j = json::parse(config_to_json(cur));
  j[pick(p, kSizes)] = p.ConsumeBool() ? interesting_int(p) : p.ConsumeIntegralInRange<int64_t>(1, 1 << 26);
  const std::string text = j.dump();
  H5Ldelete(root, "config", H5P_DEFAULT);
  h5::Id t(H5Tcopy(H5T_C_S1));  // a well-formed string: this edit is about the sizes
  H5Tset_size(t.get(), text.size());
  h5::Id sp(H5Screate(H5S_SCALAR));
  h5::Id d(H5Dcreate2(root, "config", t.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (d.valid()) H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data());
  try {
    cur = config_from_json(text, "config");
  } catch (const Error&) {
    return;
  }
  h5::Id wg(H5Gopen2(root, "weights", H5P_DEFAULT));
  if (!wg.valid()) return;
  const bool store_first_row = !p.ConsumeBool();  // out of input: store it
  int budget = 64;  // datasets per input: a 1024-layer config must not make one execution take seconds
  for (const auto& [name, shape] : expected_weights(cur)) {
    if (budget-- == 0) break;
    H5Ldelete(wg.get(), name.c_str(), H5P_DEFAULT);
    std::vector<hsize_t> dims, chunk;
    for (int i = 0; i < shape.ndim; ++i) {
      dims.push_back(hsize_t(shape[i]));
      chunk.push_back(i == 0 && shape.ndim > 1 ? 1 : std::min<hsize_t>(hsize_t(shape[i]), 4096));
    }
    h5::Id sp(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data());
    h5::Id ft = h5::float_type(DType::F16);
    h5::Id d(H5Dcreate2(wg.get(), name.c_str(), ft.get(), sp.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    if (!d.valid() || !store_first_row) continue;
    std::vector<hsize_t> start(dims.size(), 0);
    hsize_t n = 1;
    for (hsize_t c : chunk) n *= c;
    std::vector<float> row(size_t(n), 0.25f);
    h5::Id fs(H5Dget_space(d.get()));
    h5::Id ms(H5Screate_simple(int(chunk.size()), chunk.data(), nullptr));
    H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, chunk.data(), nullptr);
    H5Dwrite(d.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, row.data());
  }
}

void edit_weights_group(FuzzedDataProvider& p, hid_t root) {
  H5Ldelete(root, "weights", H5P_DEFAULT);
  switch (p.ConsumeIntegralInRange(0, 2)) {
    case 0: write_string_obj(p, root, "weights", "not a group", false); return;
    case 1: H5Lcreate_soft("/tokenizer", root, "weights", H5P_DEFAULT, H5P_DEFAULT); return;
    default: h5::Id g(H5Gcreate2(root, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));  // empty
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  make_template();
  // SLLM_FUZZ_WRITE_TEMPLATE=FILE saves the template (the seed of fuzz_h5's corpus, see docs/fuzzing.md).
  if (const char* out = std::getenv("SLLM_FUZZ_WRITE_TEMPLATE")) {
    std::ofstream o(out, std::ios::binary);
    o.write(g_template.data(), std::streamsize(g_template.size()));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  fuzz::MemFile file(reinterpret_cast<const uint8_t*>(g_template.data()), g_template.size(), /*named=*/true);
  {
    auto lock = h5::lock();
    h5::quiet();
    h5::Id f(H5Fopen(file.path().c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    if (!f.valid()) {
      std::fprintf(stderr, "cannot reopen the template (%zu bytes)\n", g_template.size());
      H5Eprint2(H5E_DEFAULT, stderr);
      std::abort();
    }
    ModelConfig cur = g_cfg;
    const int n_edits = p.ConsumeIntegralInRange(1, 6);
    for (int i = 0; i < n_edits && p.remaining_bytes() > 0; ++i) {
      switch (p.ConsumeIntegralInRange(0, 10)) {
        case 0: edit_attr(p, f.get()); break;
        case 1: case 2: edit_config(p, f.get(), cur); break;
        case 3: edit_tokenizer(p, f.get()); break;
        case 4: edit_weights_group(p, f.get()); break;
        case 5: edit_resize(p, f.get(), cur); break;
        default: edit_weight(p, f.get(), cur);
      }
    }
    H5Eclear2(H5E_DEFAULT);
  }
  fuzz::expect_ok_or_error("load_h5", file.path(), [&] {
    const ModelBundle b = load_h5(file.path(), LoadOptions{});
    // Accepted: every weight the visitor lists must be readable in full.
    ModelWeights& w = const_cast<ModelWeights&>(b.model.w);
    for_each_weight(b.model.cfg, w, [&](const WeightSlot& s) {
      if (!s.dst->empty()) fuzz::touch(s.dst->data, s.dst->bytes());
    });
    if (b.tok) fuzz::expect_ok_or_error("encode", "", [&] { (void)b.tok->encode("ab ba", true); });
  });
  return 0;
}
