// Native .h5 model files: save_h5 (atomic) and load_h5. The layout is documented in docs/format.md; the weight
// visitor (model/weights.h) is the only source of tensor names and shapes in both directions.
#include "formats/h5_model.h"

#include <algorithm>   // std::min, std::max
#include <cerrno>      // errno
#include <cstdio>      // std::remove, std::rename
#include <cstring>     // std::strerror
#include <fcntl.h>     // open
#include <filesystem>  // std::filesystem
#include <memory>      // std::make_shared
#include <unistd.h>    // fsync, close, getpid
#include <vector>      // std::vector

#include "core/error.h"           // Error
#include "formats/h5_file.h"      // h5::File, h5::Id, ...
#include "formats/mapped_file.h"  // MappedFile
#include "model/config_json.h"    // config_to_json, config_from_json

namespace sllm {

namespace fs = std::filesystem;

namespace {

// Limits on the text objects, checked before anything is allocated.
constexpr size_t kMaxConfigBytes = size_t(16) << 20;
constexpr size_t kMaxTokenizerBytes = size_t(256) << 20;
constexpr size_t kMaxTemplateBytes = size_t(16) << 20;
// Rows are converted and written in blocks of about this many bytes (bounded memory, a smooth progress bar).
constexpr size_t kBlockBytes = size_t(4) << 20;

// One tensor to write: where it lives now and how it is stored.
struct Item {
  std::string name;
  Tensor src;
  DType out;
};

// Removes the temporary unless the write committed.
struct TempFile {
  std::string path;
  bool committed = false;
  ~TempFile() {
    if (!committed) std::remove(path.c_str());
  }
};

void fsync_path(const std::string& p, bool directory, bool required) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) {
    if (required) throw Error(p + ": cannot open for fsync (" + std::strerror(errno) + ")");
    return;
  }
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (r != 0 && required) throw Error(p + ": fsync failed (" + std::strerror(err) + ")");
}

void write_tensor(const h5::File& f, hid_t weights, const Item& it, size_t& done, size_t total,
                  const std::function<void(size_t, size_t)>& progress) {
  const h5::Where w{f, "/weights/" + it.name};
  h5::Id ds = h5::create_tensor(f, weights, "/weights", it.name, it.out, it.src.shape);
  const int64_t rows = it.src.shape[0];
  const size_t row_elems = size_t(it.src.numel() / std::max<int64_t>(rows, 1));
  const int64_t block = int64_t(std::max<size_t>(1, kBlockBytes / std::max<size_t>(row_elems * 4, 1)));
  std::vector<float> f32;
  Buffer conv;
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t nr = std::min(block, rows - r0);
    const size_t n = size_t(nr) * row_elems;
    const char* src = static_cast<const char*>(it.src.data) + dtype_bytes(it.src.dtype, r0 * int64_t(row_elems));
    const void* data = src;
    if (it.src.dtype != it.out) {
      f32.resize(n);
      if (conv.bytes() < dtype_bytes(it.out, int64_t(n))) conv = Buffer(dtype_bytes(it.out, int64_t(n)));
      to_f32(src, it.src.dtype, n, f32.data());
      from_f32(f32.data(), n, it.out, conv.data());
      data = conv.data();
    }
    h5::write_rows(w, ds.get(), it.out, it.src.shape, r0, nr, data);
    done += dtype_bytes(it.out, int64_t(n));
    if (progress) progress(done, total);
  }
}

// The dtype a matrix is stored as: `storage`, or its own when that is one of ours (else f32).
DType out_dtype(DType have, std::optional<DType> storage) {
  if (storage) return *storage;
  return (have == DType::F16 || have == DType::BF16 || is_quantized(have)) ? have : DType::F32;
}

// The tensors of `m` as the visitor lists them, with their stored dtype. A tied head is not stored.
std::vector<Item> items_of(const Model& m, std::optional<DType> storage, const std::string& path) {
  std::vector<Item> items;
  // The visitor takes a mutable ModelWeights to fill it when loading; here it only reads the slots.
  ModelWeights& w = const_cast<ModelWeights&>(m.w);
  for_each_weight(m.cfg, w, [&](const WeightSlot& s) {
    const bool tied_copy = s.dst == &w.lm_head && (s.name.empty() || w.lm_head.data == w.embed.data);
    if (tied_copy && m.cfg.tied_head) return;
    if (s.dst->empty()) {
      if (s.required) throw Error(path + ": the model has no tensor '" + s.name + "' to write");
      return;
    }
    if (!(s.dst->shape == s.shape))
      throw Error(path + ": tensor '" + s.name + "' has shape " + s.dst->shape.str() + ", the config says " + s.shape.str());
    const DType out = s.is_vector ? DType::F32 : out_dtype(s.dst->dtype, storage);
    try {
      check_whole_blocks(out, s.shape);
    } catch (const Error& e) {
      throw Error(path + ": tensor '" + s.name + "': " + e.what());
    }
    items.push_back({s.name, *s.dst, out});
  });
  return items;
}

void write_file(const ModelBundle& b, const std::string& tmp, const std::vector<Item>& items,
                const std::function<void(size_t, size_t)>& progress,
                const std::function<void(const h5::File&)>& extra) {
  size_t total = 0, done = 0;
  std::string storage;  // the matrices' dtype, or "mixed"
  for (const auto& it : items) {
    total += dtype_bytes(it.out, it.src.numel());
    if (it.src.shape.ndim < 2) continue;
    if (storage.empty()) storage = dtype_name(it.out);
    else if (storage != dtype_name(it.out)) storage = "mixed";
  }
  if (progress) progress(0, total);
  h5::File f = h5::File::create(tmp);
  {
    const hid_t root = f.id();
    h5::write_attr(f, root, "/", "streamllm.format", std::string(extra ? kH5FormatCheckpoint : kH5FormatModel));
    h5::write_attr(f, root, "/", "streamllm.version", int64_t(kH5VersionMajor));
    h5::write_attr(f, root, "/", "streamllm.version_minor", int64_t(kH5VersionMinor));
    h5::write_attr(f, root, "/", "streamllm.writer", std::string("streamllm"));
    h5::write_attr(f, root, "/", "streamllm.storage_dtype", storage);
    h5::write_string(f, root, "/", "config", config_to_json(b.model.cfg));
    if (!b.tokenizer_json.empty() || !b.chat_template.empty()) {
      h5::Id tg = h5::create_group(f, root, "tokenizer", false);
      if (!b.tokenizer_json.empty()) h5::write_string(f, tg.get(), "/tokenizer", "tokenizer.json", b.tokenizer_json);
      if (!b.chat_template.empty()) h5::write_string(f, tg.get(), "/tokenizer", "chat_template", b.chat_template);
    }
    h5::Id wg = h5::create_group(f, root, "weights", true);  // creation order = visitor order, for h5dump
    for (const auto& it : items) write_tensor(f, wg.get(), it, done, total, progress);
  }
  if (extra) extra(f);
  f.flush_and_close();
}

}  // namespace

void save_h5(const ModelBundle& b, const std::string& path, std::optional<DType> storage,
             const std::function<void(size_t, size_t)>& progress,
             const std::function<void(const h5::File&)>& extra) {
  if (storage && *storage != DType::F32 && *storage != DType::F16 && *storage != DType::BF16 && !is_quantized(*storage))
    throw Error(path + ": weights can be stored as f32, f16, bf16, q8_0, q4_0 or q4_1, not " + dtype_name(*storage));
  b.model.cfg.validate(path);
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw Error(path + ": the directory '" + parent.string() + "' does not exist");
  const std::vector<Item> items = items_of(b.model, storage, path);
  // Held to the rename: HDF5 needs it, and two threads saving to the same path must not share the temporary.
  auto guard = h5::lock();
  TempFile tmp{path + ".tmp." + std::to_string(::getpid())};
  write_file(b, tmp.path, items, progress, extra);
  fsync_path(tmp.path, false, true);
  if (std::rename(tmp.path.c_str(), path.c_str()) != 0)
    throw Error(path + ": cannot move the finished file into place (" + std::strerror(errno) + ")");
  tmp.committed = true;
  // Make the rename itself durable; the file is complete either way, so a failure here is not an error.
  fsync_path(parent.empty() ? "." : parent.string(), true, false);
}

namespace {

void check_header(const h5::File& f) {
  const std::string& p = f.path();
  const auto tag = h5::read_string_attr(f, f.id(), "/", "streamllm.format");
  if (!tag) throw Error(p + ": not a streamllm model file (no 'streamllm.format' attribute)");
  if (*tag != kH5FormatModel && *tag != kH5FormatCheckpoint)
    throw Error(p + ": not a streamllm model file (streamllm.format is '" + *tag + "', expected '" + kH5FormatModel + "')");
  const auto major = h5::read_int_attr(f, f.id(), "/", "streamllm.version");
  if (!major) throw Error(p + ": no 'streamllm.version' attribute");
  const int64_t minor = h5::read_int_attr(f, f.id(), "/", "streamllm.version_minor").value_or(0);
  const std::string v = std::to_string(*major) + "." + std::to_string(minor);
  if (*major > kH5VersionMajor)
    throw Error(p + ": format version " + v + " is newer than this streamllm reads (" +
                std::to_string(kH5VersionMajor) + ".x); update streamllm");
  if (*major < 1) throw Error(p + ": format version " + v + " is not valid");
}

// Reads one weight: memory-mapped when it is one aligned contiguous block of exactly our type, else read (HDF5
// converts other float types to f32). Then converted to `want` (vectors always f32) when it differs.
Tensor load_tensor(const h5::File& f, hid_t weights, const WeightSlot& s, const LoadOptions& opt,
                   const std::shared_ptr<MappedFile>& map, bool& used_map, ModelWeights& w) {
  const h5::Where where{f, "/weights/" + s.name};
  h5::Id ds = h5::open_dataset(f, weights, "/weights", s.name);
  const h5::TensorInfo info = h5::tensor_info(where, ds.get());
  if (!info.is_float) throw Error(where.str() + ": dtype " + info.type_desc + " is not a float type");
  if (!(info.shape == s.shape))
    throw Error(where.str() + ": shape " + info.shape.str() + " does not match the config (expected " + s.shape.str() + ")");
  if (!info.allocated) throw Error(where.str() + ": no data stored for this tensor");
  const DType have = info.exact.value_or(DType::F32);
  if (is_quantized(have) && s.is_vector)
    throw Error(where.str() + ": a vector cannot be stored as " + dtype_name(have) + " (only matrices can)");
  const size_t bytes = dtype_bytes(have, s.shape.numel());
  const size_t align = is_quantized(have) ? 1 : dtype_size(have);  // block kernels load unaligned
  Tensor t{nullptr, have, s.shape};
  if (info.exact && info.contiguous_offset && map) {
    const uint64_t off = *info.contiguous_offset;
    if (off % align == 0 && off <= map->size() && bytes <= map->size() - off) {
      t.data = const_cast<unsigned char*>(map->data() + off);
      used_map = true;
    }
  }
  if (!t.data) {
    // Never allocate from the shape alone: a 16 KB file can claim a 200M-row tensor with one chunk written. The
    // bytes actually stored bound what we allocate (compression up to 1024x is allowed for h5py-written files).
    const hsize_t stored = H5Dget_storage_size(ds.get());
    if (double(stored) * 1024.0 < double(bytes))
      throw Error(where.str() + ": stores " + std::to_string(stored) + " bytes for a tensor of " +
                  std::to_string(bytes) + " bytes (partly written, or compressed beyond 1024x)");
    Buffer buf(bytes);
    h5::read_all(where, ds.get(), have, buf.data());
    t.data = buf.data();
    w.owned.push_back(std::move(buf));
  }
  const DType want = s.is_vector ? DType::F32 : opt.dtype.value_or(have);
  try {
    return retype(t, want, w);
  } catch (const Error& e) {  // (a block format that does not fit the rows)
    throw Error(where.str() + ": " + e.what());
  }
}

}  // namespace

ModelBundle load_h5(const std::string& path, const LoadOptions& opt) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": no such file");
  if (!fs::is_regular_file(path, ec)) throw Error(path + ": not a regular file");
  ModelBundle b;
  b.format = ModelFormat::HDF5;
  Model& m = b.model;
  m.source = path;

  auto guard = h5::lock();
  h5::File f = h5::File::open_read(path);
  check_header(f);
  if (!h5::exists(f, f.id(), "config")) throw Error(path + ": no /config (the model configuration)");
  m.cfg = config_from_json(h5::read_string(f, f.id(), "/", "config", kMaxConfigBytes), path + ":/config");

  if (h5::exists(f, f.id(), "tokenizer")) {
    h5::Id tg = h5::open_group(f, f.id(), "tokenizer");
    if (h5::exists(f, tg.get(), "tokenizer.json")) {
      b.tokenizer_json = h5::read_string(f, tg.get(), "/tokenizer", "tokenizer.json", kMaxTokenizerBytes);
      b.tok = Tokenizer::from_json_string(b.tokenizer_json, path + ":/tokenizer/tokenizer.json");
    }
    if (h5::exists(f, tg.get(), "chat_template"))
      b.chat_template = h5::read_string(f, tg.get(), "/tokenizer", "chat_template", kMaxTemplateBytes);
  }

  if (!h5::exists(f, f.id(), "weights")) throw Error(path + ": no /weights group");
  h5::Id wg = h5::open_group(f, f.id(), "weights");
  const uint64_t n_links = h5::count(f, wg.get(), "/weights");
  uint64_t n_found = 0;
  // Map the file once for zero-copy tensors (files with a user block are read instead: offsets would shift).
  std::shared_ptr<MappedFile> map;
  if (f.userblock() == 0) map = std::make_shared<MappedFile>(path);
  bool used_map = false, first_matrix = true;
  for_each_weight(m.cfg, m.w, [&](const WeightSlot& s) {
    if (s.name.empty() || !h5::exists(f, wg.get(), s.name)) {
      if (s.required) throw Error(path + ": missing tensor '/weights/" + s.name + "'");
      return;
    }
    ++n_found;
    *s.dst = load_tensor(f, wg.get(), s, opt, map, used_map, m.w);
    if (!s.is_vector && first_matrix) {
      m.storage = s.dst->dtype;
      first_matrix = false;
    }
  });
  // Extra links mean the file and its config disagree. They are counted, not listed: listing decodes every link,
  // which libhdf5 1.10 does unsafely on a damaged group (see h5_file.h).
  if (n_links != n_found)
    throw Error(path + ":/weights: holds " + std::to_string(n_links) + " objects but a " + family_name(m.cfg.family) +
                " model with this config has " + std::to_string(n_found) + " tensors (unexpected extra tensors)");
  if (used_map) m.w.keep_alive.push_back(map);

  if (m.cfg.tied_head && m.w.lm_head.empty()) m.w.lm_head = m.w.embed;
  if (m.cfg.pos == PosKind::ALiBi) {
    m.alibi.resize(size_t(m.cfg.n_heads));
    alibi_slopes(m.cfg.n_heads, m.cfg.alibi_bias_max, m.alibi.data());
  }
  return b;
}

}  // namespace sllm
