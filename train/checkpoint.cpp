#include "train/checkpoint.h"

#include <signal.h>  // kill

#include <algorithm>   // std::sort
#include <cerrno>      // errno, EPERM
#include <cinttypes>   // PRIx64
#include <cstdio>      // std::snprintf, std::sscanf
#include <filesystem>  // std::filesystem

#include "core/error.h"        // Error
#include "formats/h5_file.h"   // h5::*
#include "formats/h5_model.h"  // save_h5

namespace sllm::train {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxOptionsBytes = size_t(1) << 20;

std::string rng_hex(const std::array<uint64_t, 4>& s) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, s[0], s[1], s[2], s[3]);
  return buf;
}

std::array<uint64_t, 4> parse_rng(const std::string& hex, const std::string& where) {
  std::array<uint64_t, 4> s{};
  if (hex.size() != 64) throw Error(where + ": rng must be 64 hex digits");
  for (int i = 0; i < 4; ++i) {
    const std::string w = hex.substr(size_t(i) * 16, 16);
    if (w.find_first_not_of("0123456789abcdef") != std::string::npos) throw Error(where + ": rng is not hex");
    s[size_t(i)] = std::stoull(w, nullptr, 16);
  }
  return s;
}

void write_flat(const h5::File& f, hid_t group, const std::string& gpath, const std::string& name,
                const std::vector<float>& v) {
  const Shape shape{int64_t(v.size())};
  h5::Id ds = h5::create_tensor(f, group, gpath, name, DType::F32, shape);
  h5::write_rows(h5::Where{f, gpath + "/" + name}, ds.get(), DType::F32, shape, 0, int64_t(v.size()), v.data());
}

void read_flat(const h5::File& f, hid_t group, const std::string& gpath, const std::string& name, int64_t n,
               std::vector<float>& out) {
  if (!h5::exists(f, group, name)) throw Error(f.path() + ":" + gpath + "/" + name + ": missing");
  h5::Id ds = h5::open_dataset(f, group, gpath, name);
  const h5::Where w{f, gpath + "/" + name};
  const h5::TensorInfo info = h5::tensor_info(w, ds.get());
  if (!info.is_float || !(info.shape == Shape{n}))
    throw Error(w.str() + ": expected " + std::to_string(n) + " floats (the model's parameter count), found " +
                info.shape.str() + " " + info.type_desc);
  out.resize(size_t(n));
  h5::read_all(w, ds.get(), DType::F32, out.data());
}

}  // namespace

void save_checkpoint(const std::string& path, const TrainModel& m, const AdamW& opt, const TrainState& st,
                     const std::string& tokenizer_json) {
  ModelBundle b;
  b.model = m.to_model();
  b.tokenizer_json = tokenizer_json;
  const size_t n = size_t(m.n_floats());
  std::vector<float> mom(n), vel(n);
  m.backend().download(mom.data(), opt.m(), n);
  m.backend().download(vel.data(), opt.v(), n);
  save_h5(b, path, DType::F32, {}, [&](const h5::File& f) {
    h5::Id og = h5::create_group(f, f.id(), "optimizer", false);
    write_flat(f, og.get(), "/optimizer", "m", mom);
    write_flat(f, og.get(), "/optimizer", "v", vel);
    h5::Id tg = h5::create_group(f, f.id(), "train", false);
    h5::write_attr(f, tg.get(), "/train", "step", st.step);
    h5::write_attr(f, tg.get(), "/train", "data_pos", st.data_pos);
    h5::write_attr(f, tg.get(), "/train", "epoch", st.epoch);
    h5::write_attr(f, tg.get(), "/train", "adam_steps", opt.steps());
    h5::write_attr(f, tg.get(), "/train", "rng", rng_hex(st.rng));
    h5::write_string(f, tg.get(), "/train", "options.json", st.options_json);
  });
}

TrainState load_checkpoint_state(const std::string& path, AdamW& opt, int64_t n_floats) {
  auto guard = h5::lock();
  h5::File f = h5::File::open_read(path);
  const auto tag = h5::read_string_attr(f, f.id(), "/", "streamllm.format");
  if (!tag || *tag != kH5FormatCheckpoint)
    throw Error(path + ": not a training checkpoint (a model file has no optimizer state to resume from)");
  if (!h5::exists(f, f.id(), "train") || !h5::exists(f, f.id(), "optimizer"))
    throw Error(path + ": checkpoint lacks /train or /optimizer");
  h5::Id tg = h5::open_group(f, f.id(), "train");
  auto need_int = [&](const char* name) {
    const auto v = h5::read_int_attr(f, tg.get(), "/train", name);
    if (!v || *v < 0) throw Error(path + ":/train: missing or negative attribute '" + name + "'");
    return *v;
  };
  TrainState st;
  st.step = need_int("step");
  st.data_pos = need_int("data_pos");
  st.epoch = need_int("epoch");
  const int64_t adam_steps = need_int("adam_steps");
  const auto rng = h5::read_string_attr(f, tg.get(), "/train", "rng", 64);
  if (!rng) throw Error(path + ":/train: missing attribute 'rng'");
  st.rng = parse_rng(*rng, path + ":/train");
  st.options_json = h5::read_string(f, tg.get(), "/train", "options.json", kMaxOptionsBytes);
  h5::Id og = h5::open_group(f, f.id(), "optimizer");
  std::vector<float> buf;
  TrainBackend& be = *opt.backend();
  read_flat(f, og.get(), "/optimizer", "m", n_floats, buf);
  be.upload(opt.m(), buf.data(), buf.size());
  read_flat(f, og.get(), "/optimizer", "v", n_floats, buf);
  be.upload(opt.v(), buf.data(), buf.size());
  opt.set_steps(adam_steps);
  return st;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "ckpt-%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    long long step = 0;
    char tail[8] = {};
    if (name.size() == 16 && std::sscanf(name.c_str(), "ckpt-%8lld%3s", &step, tail) == 2 && std::string(tail) == ".h5")
      found.push_back({step, e.path().string()});
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [s, p] : found) out.push_back(p);
  return out;
}

int remove_unfinished_checkpoints(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    long long step = 0, pid = 0;
    int end = 0;
    // ckpt-<8 digits>.h5.tmp.<pid>: save_h5's temporary file, renamed when complete
    if (name.size() < 24 || std::sscanf(name.c_str(), "ckpt-%8lld.h5.tmp.%lld%n", &step, &pid, &end) != 2 ||
        size_t(end) != name.size() || pid <= 0)
      continue;
    if (::kill(pid_t(pid), 0) == 0 || errno == EPERM) continue;  // its writer is still running
    std::error_code rm;
    if (fs::remove(e.path(), rm)) ++removed;
  }
  return removed;
}

void prune_checkpoints(const std::string& dir, int keep) {
  if (keep <= 0) return;
  const auto all = list_checkpoints(dir);
  for (size_t i = 0; i + size_t(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
}

}  // namespace sllm::train
