// streamllm: read-only memory-mapped file (weights are mapped, never copied).
#pragma once
#include <cstddef>  // size_t
#include <string>   // std::string

namespace sllm {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws sllm::Error naming the file
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(p_); }
  size_t size() const { return n_; }
  const std::string& path() const { return path_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
  std::string path_;
};

// Whole file as a string (for JSON files); refuses files above max_bytes.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t(1) << 30);

}  // namespace sllm
