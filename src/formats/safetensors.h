// streamllm: safetensors reader (single file or sharded with model.safetensors.index.json), memory-mapped.
//
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [b, e]}, ...},
// then the raw data; offsets are relative to the end of the header. Every size and offset is checked against the
// file before use: a hostile file produces an sllm::Error naming the file and tensor, never a crash.
#pragma once
#include <map>      // std::map
#include <memory>   // std::shared_ptr
#include <string>   // std::string
#include <vector>   // std::vector

#include "core/tensor.h"          // Tensor
#include "formats/mapped_file.h"  // MappedFile

namespace sllm {

class SafetensorsArchive {
 public:
  // `path` is a .safetensors file or a directory holding model.safetensors or model.safetensors.index.json.
  static SafetensorsArchive open(const std::string& path);

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // View into the mapped file (valid as long as the archive lives). Throws if absent.
  Tensor get(const std::string& name) const;
  std::vector<std::string> names() const;
  // Files backing the archive and their total size in bytes.
  size_t total_bytes() const;
  const std::string& where(const std::string& name) const;  // file holding the tensor

 private:
  struct Entry {
    Tensor t;
    size_t file = 0;
  };
  void add_file(const std::string& path);
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, Entry> index_;
};

}  // namespace sllm
