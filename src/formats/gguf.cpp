// GGUF reader and ggml block dequantisation (see gguf.h for the format and the checks).
#include "formats/gguf.h"

#include <algorithm>  // std::sort
#include <bit>        // std::endian, std::has_single_bit
#include <cstdio>     // std::snprintf
#include <cstring>    // std::memcpy
#include <limits>     // std::numeric_limits

#include "core/dtype.h"  // f16_to_f32, bf16_to_f32
#include "core/error.h"  // Error
#include "cpu/quant.h"    // dequantize_blocks

namespace sllm::gguf {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

constexpr int kMaxDepth = 8;             // arrays of arrays of ...
constexpr uint64_t kMaxKeyLen = 65535;   // the spec: keys are at most 2^16 - 1 bytes
constexpr uint64_t kMaxNameLen = 63;     // ggml: GGML_MAX_NAME (64) including the terminating NUL
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;
// Smallest possible encodings, used to bound counts by the bytes left before reserving anything.
constexpr uint64_t kMinKv = 8 + 1 + 4 + 1;              // key length, 1-byte key, type, 1-byte value
constexpr uint64_t kMinTensorInfo = 8 + 1 + 4 + 8 + 4 + 8;  // name length, 1-byte name, n_dims, 1 dim, type, offset
constexpr uint64_t kMinArrayHeader = 4 + 8;             // element type, count

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

bool valid_type(uint32_t t) { return t <= uint32_t(ValueType::F64); }

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    default: return 0;  // String, Array
  }
}

// Bounds-checked cursor over the mapping. Every read first checks that the bytes exist.
class Reader {
 public:
  Reader(const unsigned char* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}

  size_t pos() const { return pos_; }
  uint64_t left() const { return n_ - pos_; }
  const unsigned char* here() const { return p_ + pos_; }

  [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
    throw Error(path_ + ": " + field + ": " + msg);
  }
  void need(uint64_t bytes, const std::string& field, const std::string& what) const {
    if (bytes > left())
      fail(field, what + " needs " + std::to_string(bytes) + " bytes at offset " + std::to_string(pos_) +
                      " but the file ends at " + std::to_string(n_));
  }
  void skip(uint64_t bytes) { pos_ += size_t(bytes); }  // after need()

  template <class T>
  T read(const std::string& field, const std::string& what) {
    need(sizeof(T), field, what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view string(const std::string& field, const std::string& what, uint64_t max_len) {
    const uint64_t len = read<uint64_t>(field, what + " length");
    if (len > max_len)
      fail(field, what + " length " + std::to_string(len) + " exceeds the limit of " + std::to_string(max_len));
    need(len, field, what);
    std::string_view s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }

 private:
  const unsigned char* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& path_;
};

void read_scalar(Reader& r, ValueType t, Value& v, const std::string& field) {
  const size_t s = scalar_size(t);
  r.need(s, field, std::string(value_type_name(t)) + " value");
  v.bits = 0;
  std::memcpy(&v.bits, r.here(), s);
  if (t == ValueType::Bool && v.bits > 1) r.fail(field, "bool value " + std::to_string(v.bits) + " is not 0 or 1");
  r.skip(s);
}

Value read_value(Reader& r, ValueType t, const std::string& field, int depth) {
  Value v;
  v.type = t;
  if (t == ValueType::String) {
    v.str = r.string(field, "string", std::numeric_limits<uint64_t>::max());
    return v;
  }
  if (t != ValueType::Array) {
    read_scalar(r, t, v, field);
    return v;
  }
  if (depth >= kMaxDepth) r.fail(field, "arrays nested more than " + std::to_string(kMaxDepth) + " deep");
  const uint32_t et = r.read<uint32_t>(field, "array element type");
  if (!valid_type(et)) r.fail(field, "unknown array element type " + std::to_string(et));
  v.elem = ValueType(et);
  v.count = r.read<uint64_t>(field, "array count");
  const uint64_t min_elem = v.elem == ValueType::String ? 8 : v.elem == ValueType::Array ? kMinArrayHeader
                                                                                        : scalar_size(v.elem);
  if (v.count > r.left() / min_elem)
    r.fail(field, "array of " + std::to_string(v.count) + " " + value_type_name(v.elem) +
                      " elements cannot fit in the " + std::to_string(r.left()) + " bytes left");
  if (v.elem == ValueType::String) {
    v.strs.reserve(size_t(v.count));
    for (uint64_t i = 0; i < v.count; ++i)
      v.strs.push_back(r.string(field, "string [" + std::to_string(i) + "]", std::numeric_limits<uint64_t>::max()));
  } else if (v.elem == ValueType::Array) {
    v.items.reserve(size_t(v.count));
    for (uint64_t i = 0; i < v.count; ++i)
      v.items.push_back(read_value(r, ValueType::Array, field + "[" + std::to_string(i) + "]", depth + 1));
  } else {
    const size_t s = scalar_size(v.elem);
    v.raw = r.here();
    if (v.elem == ValueType::Bool)
      for (uint64_t i = 0; i < v.count; ++i)
        if (v.raw[i] > 1) r.fail(field, "bool element [" + std::to_string(i) + "] is not 0 or 1");
    r.skip(v.count * s);
  }
  return v;
}

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "UINT8";
    case ValueType::I8: return "INT8";
    case ValueType::U16: return "UINT16";
    case ValueType::I16: return "INT16";
    case ValueType::U32: return "UINT32";
    case ValueType::I32: return "INT32";
    case ValueType::F32: return "FLOAT32";
    case ValueType::Bool: return "BOOL";
    case ValueType::String: return "STRING";
    case ValueType::Array: return "ARRAY";
    case ValueType::U64: return "UINT64";
    case ValueType::I64: return "INT64";
    case ValueType::F64: return "FLOAT64";
  }
  return "?";
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
    case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64: return true;
    default: return false;
  }
}

// ---- tensor types ----

bool ggml_type_supported(uint32_t t) {
  switch (GgmlType(t)) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q8_0:
    case GgmlType::BF16: return true;
  }
  return false;
}

std::string ggml_type_name(uint32_t t) {
  // ggml's numbering (ggml.h enum ggml_type); 4 and 5 (Q4_2, Q4_3) were removed long ago.
  static const char* const names[] = {"F32",  "F16",     "Q4_0",   "Q4_1",   "Q4_2",   "Q4_3",   "Q5_0",
                                      "Q5_1", "Q8_0",    "Q8_1",   "Q2_K",   "Q3_K",   "Q4_K",   "Q5_K",
                                      "Q6_K", "Q8_K",    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
                                      "IQ3_S", "IQ2_S",  "IQ4_XS", "I8",     "I16",    "I32",    "I64",
                                      "F64",  "IQ1_M",   "BF16"};
  if (t < sizeof(names) / sizeof(names[0])) return names[t];
  return "type " + std::to_string(t);
}

int64_t ggml_block_elems(GgmlType t) {
  return (t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q8_0) ? kQK : 1;
}

int64_t ggml_block_bytes(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 4;
    case GgmlType::F16: return 2;
    case GgmlType::BF16: return 2;
    case GgmlType::Q4_0: return 2 + kQK / 2;
    case GgmlType::Q4_1: return 4 + kQK / 2;
    case GgmlType::Q8_0: return 2 + kQK;
  }
  return 0;
}

namespace {
inline uint16_t load_u16(const unsigned char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
}  // namespace

void dequantize(GgmlType t, const void* src_v, int64_t n, float* dst) {
  const auto* src = static_cast<const unsigned char*>(src_v);
  switch (t) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src + 2 * i));
      return;
    case GgmlType::Q8_0:
      return dequantize_blocks(DType::Q8_0, src, n, dst);
    case GgmlType::Q4_0:
      return dequantize_blocks(DType::Q4_0, src, n, dst);
    case GgmlType::Q4_1:
      return dequantize_blocks(DType::Q4_1, src, n, dst);
  }
  throw Error("dequantize: unsupported ggml type " + ggml_type_name(uint32_t(t)));
}

// ---- tensors ----

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int i = 0; i < n_dims; ++i) n *= int64_t(ne[size_t(i)]);  // checked for overflow at parse time
  return n;
}

Shape TensorInfo::shape() const {
  Shape s;
  s.ndim = n_dims;
  for (int i = 0; i < n_dims; ++i) s.d[size_t(i)] = int64_t(ne[size_t(n_dims - 1 - i)]);
  return s;
}

// ---- the file ----

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  f.file_ = std::make_shared<MappedFile>(path);
  f.parse();
  return f;
}

void GgufFile::parse() {
  Reader r(file_->data(), file_->size(), path_);
  const size_t size = file_->size();
  if (size >= 4) {
    const uint32_t magic = r.read<uint32_t>("header", "magic");
    if (magic != 0x46554747u)  // "GGUF" read as a little-endian u32
      r.fail("header", "bad magic " + hex(magic) + " (expected \"GGUF\"): not a GGUF file");
  }
  if (size < 4 + 4 + 8 + 8)
    r.fail("header", "truncated: the file is " + std::to_string(size) + " bytes, a GGUF header needs 24");
  version_ = r.read<uint32_t>("header", "version");
  if (version_ == 0x02000000u || version_ == 0x03000000u)
    r.fail("header", "version field is byte-swapped: big-endian GGUF files are not supported");
  if (version_ == 1) r.fail("header", "GGUF version 1 is not supported (only versions 2 and 3)");
  if (version_ != 2 && version_ != 3)
    r.fail("header", "unsupported GGUF version " + std::to_string(version_) + " (only versions 2 and 3)");
  const uint64_t n_tensors = r.read<uint64_t>("header", "tensor count");
  const uint64_t n_kv = r.read<uint64_t>("header", "metadata count");
  if (n_kv > r.left() / kMinKv)
    r.fail("header", "metadata count " + std::to_string(n_kv) + " cannot fit in the " + std::to_string(r.left()) +
                         " bytes left");
  if (n_tensors > r.left() / kMinTensorInfo)
    r.fail("header", "tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
                         std::to_string(r.left()) + " bytes left");

  // Metadata.
  kv_.reserve(size_t(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string at = "metadata[" + std::to_string(i) + "]";
    const std::string_view key = r.string(at, "key", kMaxKeyLen);
    if (key.empty()) r.fail(at, "empty key");
    const std::string field = "metadata '" + std::string(key) + "'";
    const uint32_t t = r.read<uint32_t>(field, "value type");
    if (!valid_type(t)) r.fail(field, "unknown value type " + std::to_string(t));
    Value v = read_value(r, ValueType(t), field, 0);
    if (!kv_index_.emplace(std::string(key), kv_.size()).second) r.fail(field, "duplicate key");
    kv_.emplace_back(std::string(key), std::move(v));
  }

  if (const Value* a = find("general.alignment")) {
    const std::string field = "metadata 'general.alignment'";
    if (a->type != ValueType::U32)
      r.fail(field, std::string("expected UINT32, got ") + value_type_name(a->type));
    alignment_ = a->bits;
    if (alignment_ == 0 || !std::has_single_bit(alignment_) || alignment_ > kMaxAlignment)
      r.fail(field, "alignment " + std::to_string(alignment_) + " is not a power of two in [1, 2^30]");
  }

  // Tensor infos.
  tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string at = "tensor[" + std::to_string(i) + "]";
    TensorInfo t;
    const std::string_view name = r.string(at, "name", std::numeric_limits<uint64_t>::max());
    if (name.size() > kMaxNameLen)
      r.fail(at, "name of " + std::to_string(name.size()) + " bytes exceeds ggml's limit of " +
                     std::to_string(kMaxNameLen));
    if (name.empty()) r.fail(at, "empty name");
    t.name = std::string(name);
    const std::string field = "tensor '" + t.name + "'";
    const uint32_t nd = r.read<uint32_t>(field, "n_dims");
    if (nd < 1 || nd > 4) r.fail(field, "n_dims " + std::to_string(nd) + " is not in [1, 4]");
    t.n_dims = int(nd);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t ne = r.read<uint64_t>(field, "dimension " + std::to_string(d));
      if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max()))
        r.fail(field, "dimension " + std::to_string(d) + " is " + std::to_string(ne));
      if (numel > uint64_t(std::numeric_limits<int64_t>::max()) / ne)
        r.fail(field, "the product of the dimensions overflows");
      numel *= ne;
      t.ne[d] = ne;
    }
    const uint32_t type = r.read<uint32_t>(field, "type");
    if (!ggml_type_supported(type))
      r.fail(field, "tensor type " + ggml_type_name(type) + " (" + std::to_string(type) +
                        ") is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
    t.type = GgmlType(type);
    t.offset = r.read<uint64_t>(field, "data offset");
    const uint64_t be = uint64_t(ggml_block_elems(t.type)), bb = uint64_t(ggml_block_bytes(t.type));
    if (t.ne[0] % be != 0)
      r.fail(field, "row length " + std::to_string(t.ne[0]) + " is not a multiple of the " + ggml_type_name(type) +
                        " block size " + std::to_string(be));
    if (numel / be > std::numeric_limits<uint64_t>::max() / bb) r.fail(field, "byte size overflows");
    t.nbytes = numel / be * bb;
    if (t.offset % alignment_ != 0)
      r.fail(field, "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                        std::to_string(alignment_));
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) r.fail(field, "duplicate tensor name");
    tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment.
  const uint64_t end_of_infos = r.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;  // cannot overflow: pos < 2^63
  if (tensors_.empty()) return;
  if (data_offset_ > size)
    r.fail("data section", "starts at " + std::to_string(data_offset_) + ", beyond the end of the file (size " +
                               std::to_string(size) + ")");
  const uint64_t data_bytes = size - data_offset_;
  for (TensorInfo& t : tensors_) {
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
      r.fail("tensor '" + t.name + "'",
             "data [" + std::to_string(data_offset_ + t.offset) + ", " +
                 std::to_string(data_offset_ + t.offset + t.nbytes) + ") beyond the file (size " +
                 std::to_string(size) + ")");
    t.data = file_->data() + data_offset_ + t.offset;
  }
  // No two tensors may share bytes.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& a = tensors_[order[k - 1]];
    const TensorInfo& b = tensors_[order[k]];
    if (a.offset + a.nbytes > b.offset)
      r.fail("tensor '" + b.name + "'",
             "data [" + std::to_string(data_offset_ + b.offset) + ", " +
                 std::to_string(data_offset_ + b.offset + b.nbytes) + ") overlaps tensor '" + a.name + "' [" +
                 std::to_string(data_offset_ + a.offset) + ", " + std::to_string(data_offset_ + a.offset + a.nbytes) +
                 ")");
  }
}

const Value* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const Value& GgufFile::typed(const std::string& key, ValueType t) const {
  const Value* v = find(key);
  if (!v) throw Error(where("missing metadata '" + key + "'"));
  if (v->type != t)
    throw Error(where("metadata '" + key + "': expected " + value_type_name(t) + ", got " + value_type_name(v->type)));
  return *v;
}

std::string GgufFile::get_string(const std::string& key) const {
  return std::string(typed(key, ValueType::String).str);
}

std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

int64_t GgufFile::get_int(const std::string& key, int64_t lo, int64_t hi) const {
  const Value* v = find(key);
  if (!v) throw Error(where("missing metadata '" + key + "'"));
  if (!v->is_integer())
    throw Error(where("metadata '" + key + "': expected an integer, got " + value_type_name(v->type)));
  int64_t x = 0;
  bool too_big = false;
  switch (v->type) {
    case ValueType::I8: x = int8_t(v->bits); break;
    case ValueType::I16: x = int16_t(v->bits); break;
    case ValueType::I32: x = int32_t(v->bits); break;
    case ValueType::I64: x = int64_t(v->bits); break;
    default:  // unsigned
      too_big = v->bits > uint64_t(std::numeric_limits<int64_t>::max());
      x = int64_t(v->bits);
  }
  if (too_big || x < lo || x > hi)
    throw Error(where("metadata '" + key + "': value " + (too_big ? std::to_string(v->bits) : std::to_string(x)) +
                      " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"));
  return x;
}

int64_t GgufFile::get_int(const std::string& key, int64_t lo, int64_t hi, int64_t def) const {
  return has(key) ? get_int(key, lo, hi) : def;
}

double GgufFile::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(where("missing metadata '" + key + "'"));
  if (v->type == ValueType::F32) {
    float f;
    const uint32_t b = uint32_t(v->bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (v->type == ValueType::F64) {
    double d;
    std::memcpy(&d, &v->bits, 8);
    return d;
  }
  throw Error(where("metadata '" + key + "': expected FLOAT32 or FLOAT64, got " + value_type_name(v->type)));
}

double GgufFile::get_float(const std::string& key, double def) const { return has(key) ? get_float(key) : def; }

bool GgufFile::get_bool(const std::string& key, bool def) const {
  if (!has(key)) return def;
  return typed(key, ValueType::Bool).bits != 0;
}

const std::vector<std::string_view>& GgufFile::get_strings(const std::string& key) const {
  const Value& v = typed(key, ValueType::Array);
  if (v.elem != ValueType::String)
    throw Error(where("metadata '" + key + "': expected an array of STRING, got an array of " +
                      value_type_name(v.elem)));
  return v.strs;
}

std::vector<float> GgufFile::get_f32s(const std::string& key) const {
  const Value& v = typed(key, ValueType::Array);
  std::vector<float> out;
  if (v.elem == ValueType::F32) {
    out.resize(size_t(v.count));
    if (v.count) std::memcpy(out.data(), v.raw, size_t(v.count) * 4);
  } else if (v.elem == ValueType::I32) {
    out.resize(size_t(v.count));
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t x;
      std::memcpy(&x, v.raw + 4 * i, 4);
      out[i] = float(x);
    }
  } else {
    throw Error(where("metadata '" + key + "': expected an array of FLOAT32, got an array of " +
                      value_type_name(v.elem)));
  }
  return out;
}

std::vector<int32_t> GgufFile::get_i32s(const std::string& key) const {
  const Value& v = typed(key, ValueType::Array);
  if (v.elem != ValueType::I32)
    throw Error(where("metadata '" + key + "': expected an array of INT32, got an array of " +
                      value_type_name(v.elem)));
  std::vector<int32_t> out(size_t(v.count));
  if (v.count) std::memcpy(out.data(), v.raw, size_t(v.count) * 4);
  return out;
}

}  // namespace sllm::gguf
