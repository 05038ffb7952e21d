// streamllm: GGUF reader (versions 2 and 3, little-endian), memory-mapped, and ggml block dequantisation.
//
// Layout (llama.cpp docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata
// key/values (u64-length strings, typed scalars, typed arrays, arrays of arrays); the tensor infos (name, u32 n_dims,
// u64 dims fastest-first, u32 ggml type, u64 offset relative to the data section); padding to `general.alignment`
// (default 32); the tensor data. Version 2 differs from 3 only in allowing no big-endian variant, so both read the
// same way; version 1 (u32 counts) and big-endian files are refused.
//
// The file is untrusted. Every count, length and offset is checked against the bytes that are left BEFORE anything
// is allocated or read, so a string length of 2^60 or an array of 2^62 elements is an error, not an allocation;
// nesting is bounded; tensors must lie inside the data section, aligned, without overlapping each other, with
// unique names and a known type, and their element counts must not overflow. Errors are one sllm::Error line:
// "<file>: <field or tensor>: <what>".
//
// Values are views into the mapping: strings are string_views, arrays of scalars point at their raw elements.
// A GgufFile keeps its mapping alive (shared), so views stay valid while the GgufFile (or a copy) lives.
#pragma once
#include <array>        // std::array
#include <cstddef>      // size_t
#include <cstdint>      // uint32_t, uint64_t
#include <memory>       // std::shared_ptr
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <unordered_map>
#include <vector>       // std::vector

#include "core/tensor.h"          // Shape
#include "formats/mapped_file.h"  // MappedFile

namespace sllm::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12,
};
const char* value_type_name(ValueType t);

// ggml tensor types. Only the ones listed here can be loaded; other known ids are named in errors.
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, BF16 = 30 };
constexpr int kQK = 32;  // elements per block of Q4_0 / Q4_1 / Q8_0

bool ggml_type_supported(uint32_t t);
std::string ggml_type_name(uint32_t t);   // "Q4_1", "Q5_K", ... or "type 77"
int64_t ggml_block_elems(GgmlType t);     // 1 for F32/F16/BF16, 32 for the block types
int64_t ggml_block_bytes(GgmlType t);     // 4, 2, 2, 18 (Q4_0), 20 (Q4_1), 34 (Q8_0)

// Decodes n elements of type t (n a multiple of the block size) from `src` into f32, exactly as ggml defines them:
//   Q8_0: {f16 d; i8 q[32]}             x[i] = d * q[i]
//   Q4_0: {f16 d; u8 qs[16]}            x[j] = d * ((qs[j] & 15) - 8), x[j+16] = d * ((qs[j] >> 4) - 8)
//   Q4_1: {f16 d; f16 m; u8 qs[16]}     x[j] = d * (qs[j] & 15) + m,   x[j+16] = d * (qs[j] >> 4) + m
// Every product d*q is exact in f32 (11-bit mantissa times at most 8 bits), so the single rounding of "+ m" is the
// only one and the result is the same with or without FMA contraction. `src` may be unaligned.
void dequantize(GgmlType t, const void* src, int64_t n, float* dst);

struct Value {
  ValueType type = ValueType::U8;
  uint64_t bits = 0;                // scalars: the raw little-endian bits, zero-extended
  std::string_view str;             // String
  ValueType elem = ValueType::U8;   // Array: element type
  uint64_t count = 0;               // Array: number of elements
  const unsigned char* raw = nullptr;   // Array of scalars: the elements as stored (unaligned)
  std::vector<std::string_view> strs;   // Array of strings
  std::vector<Value> items;             // Array of arrays

  bool is_integer() const;
  bool is_float() const { return type == ValueType::F32 || type == ValueType::F64; }
};

struct TensorInfo {
  std::string name;
  int n_dims = 0;
  std::array<uint64_t, 4> ne{};  // ggml dims, ne[0] fastest (the row length)
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;           // relative to the data section
  uint64_t nbytes = 0;
  const unsigned char* data = nullptr;  // into the mapping

  int64_t numel() const;
  // Row-major shape (dims reversed): a [ne0 = in, ne1 = out] matrix is our (out, in).
  Shape shape() const;
};

class GgufFile {
 public:
  // Maps and parses `path`; throws sllm::Error naming the file and the field on anything malformed.
  static GgufFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
  size_t file_size() const { return file_->size(); }
  // The mapping the tensors' data points into (a loader keeps it alive to use tensors in place).
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(const std::string& key) const;  // nullptr when absent
  bool has(const std::string& key) const { return find(key) != nullptr; }

  // Typed getters: throw naming the file and key when absent (the variants without a default) or of the wrong type.
  // Integers accept any integer type and check the range; floats accept F32 and F64.
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  int64_t get_int(const std::string& key, int64_t lo, int64_t hi) const;
  int64_t get_int(const std::string& key, int64_t lo, int64_t hi, int64_t def) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  // Arrays: throw unless the key holds an array of that element type.
  const std::vector<std::string_view>& get_strings(const std::string& key) const;
  std::vector<float> get_f32s(const std::string& key) const;       // F32 elements (INT32 are converted)
  std::vector<int32_t> get_i32s(const std::string& key) const;     // INT32 elements

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(const std::string& name) const;  // nullptr when absent

  // "<file>: <what>" — for callers that report errors in this file's terms.
  std::string where(const std::string& what) const { return path_ + ": " + what; }

 private:
  void parse();
  const Value& typed(const std::string& key, ValueType t) const;

  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// ---- Model import (defined in gguf_model.cpp; load_gguf itself is declared in model/bundle.h) ----

// The file's tokenizer (tokenizer.ggml.*) as HF tokenizer.json text, equivalent to what transformers builds from the
// same metadata: "gpt2" (byte-level BPE; `tokenizer.ggml.pre` picks the pre-tokenizer as llama.cpp does) or "llama"
// (SentencePiece-style BPE with byte fallback, merges derived from the scores). Throws naming the key otherwise.
std::string tokenizer_json_from_gguf(const GgufFile& f);

}  // namespace sllm::gguf
