#include "model/model.h"

#include <algorithm>   // std::find_if, std::stable_sort
#include <filesystem>  // std::filesystem
#include <random>      // std::mt19937_64, std::normal_distribution

#include "core/error.h"          // Error
#include "formats/mapped_file.h" // read_text_file
#include "formats/safetensors.h" // SafetensorsArchive

namespace sllm {

namespace fs = std::filesystem;

size_t Model::weight_bytes() const {
  size_t n = 0;
  ModelWeights& mw = const_cast<ModelWeights&>(w);
  for_each_weight(cfg, mw, [&](const WeightSlot& s) {
    if (!s.is_vector && !s.dst->empty() && !(s.dst == &mw.lm_head && mw.lm_head.data == mw.embed.data))
      n += s.dst->bytes();
  });
  return n;
}

std::vector<std::pair<DType, size_t>> Model::weight_dtypes() const {
  std::vector<std::pair<DType, size_t>> out;
  ModelWeights& mw = const_cast<ModelWeights&>(w);
  for_each_weight(cfg, mw, [&](const WeightSlot& s) {
    if (s.is_vector || s.dst->empty() || (s.dst == &mw.lm_head && mw.lm_head.data == mw.embed.data)) return;
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == s.dst->dtype; });
    if (it == out.end()) out.push_back({s.dst->dtype, s.dst->bytes()});
    else it->second += s.dst->bytes();
  });
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

std::string Model::weight_dtypes_str() const {
  std::string s;
  for (const auto& [d, n] : weight_dtypes()) s += (s.empty() ? "" : " + ") + std::string(dtype_name(d));
  return s.empty() ? dtype_name(storage) : s;
}

namespace {

void finish(Model& m) {
  if (m.cfg.tied_head && m.w.lm_head.empty()) m.w.lm_head = m.w.embed;
  if (m.cfg.pos == PosKind::ALiBi) {
    m.alibi.resize(size_t(m.cfg.n_heads));
    alibi_slopes(m.cfg.n_heads, m.cfg.alibi_bias_max, m.alibi.data());
  }
}

}  // namespace

Model load_model(const std::string& path, const LoadOptions& opt) {
  if (!fs::exists(path)) throw Error(path + ": no such file or directory");
  if (!fs::is_directory(path))
    throw Error(path + ": expected a model directory with config.json and safetensors weights");
  Model m;
  m.source = path;
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  if (!fs::exists(cfg_path)) throw Error(path + ": no config.json in this directory");
  m.cfg = config_from_hf_json(read_text_file(cfg_path, size_t(16) << 20), cfg_path);
  auto arch = std::make_shared<SafetensorsArchive>(SafetensorsArchive::open(path));
  m.w.keep_alive.push_back(arch);

  bool first_matrix = true;
  for_each_weight(m.cfg, m.w, [&](const WeightSlot& s) {
    if (s.name.empty() || !arch->has(s.name)) {
      if (s.required) throw Error(path + ": missing tensor '" + s.name + "'");
      return;
    }
    Tensor t = arch->get(s.name);
    const std::string where = arch->where(s.name) + ": tensor '" + s.name + "'";
    if (!(t.shape == s.shape))
      throw Error(where + ": shape " + t.shape.str() + " does not match the config (expected " + s.shape.str() + ")");
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      throw Error(where + ": dtype " + std::string(dtype_name(t.dtype)) + " is not a float type");
    if (s.is_vector) {
      *s.dst = retype(t, DType::F32, m.w);
      // A view into the mapped file may be unaligned; the copy above is aligned, but f32 views are used as-is.
    } else {
      const DType to = opt.dtype ? *opt.dtype : t.dtype;
      try {
        *s.dst = retype(t, to, m.w);
      } catch (const Error& e) {  // (a block format that does not fit the rows)
        throw Error(where + ": " + e.what());
      }
      if (first_matrix) m.storage = to;
      first_matrix = false;
    }
  });
  finish(m);
  return m;
}

Model random_model(const ModelConfig& cfg, DType storage, uint64_t seed) {
  cfg.validate("random model");
  Model m;
  m.cfg = cfg;
  m.source = "random";
  m.storage = storage;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for_each_weight(m.cfg, m.w, [&](const WeightSlot& s) {
    if (s.name.empty() || (!s.required && !s.is_vector)) return;  // tied head
    if (!s.required) return;                                       // no biases
    const DType dt = s.is_vector ? DType::F32 : storage;
    const size_t n = size_t(s.shape.numel());
    Buffer b(n * 4);
    for (size_t i = 0; i < n; ++i) b.as<float>()[i] = s.is_vector ? 1.0f : nd(rng);
    *s.dst = retype(Tensor{b.data(), DType::F32, s.shape}, dt, m.w);  // checks that a block format fits the rows
    if (dt == DType::F32) m.w.owned.push_back(std::move(b));
  });
  finish(m);
  return m;
}

}  // namespace sllm
