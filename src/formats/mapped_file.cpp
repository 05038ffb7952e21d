#include "formats/mapped_file.h"

#include <cerrno>     // errno
#include <cstring>    // std::strerror
#include <fcntl.h>    // open
#include <fstream>    // std::ifstream
#include <sstream>    // std::ostringstream
#include <sys/mman.h> // mmap, munmap
#include <sys/stat.h> // fstat
#include <unistd.h>   // close

#include "core/error.h"  // Error

namespace sllm {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  n_ = size_t(st.st_size);
  if (n_ > 0) {
    p_ = ::mmap(nullptr, n_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p_ == MAP_FAILED) {
      p_ = nullptr;
      ::close(fd);
      throw Error(path + ": mmap failed (" + std::strerror(errno) + ")");
    }
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (p_) ::munmap(p_, n_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept : p_(o.p_), n_(o.n_), path_(std::move(o.path_)) {
  o.p_ = nullptr;
  o.n_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (p_) ::munmap(p_, n_);
    p_ = o.p_;
    n_ = o.n_;
    path_ = std::move(o.path_);
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  if (n < 0) throw Error(path + ": cannot read size");
  if (size_t(n) > max_bytes) throw Error(path + ": file too large (" + std::to_string(n) + " bytes)");
  f.seekg(0);
  std::string s(size_t(n), '\0');
  if (n > 0 && !f.read(s.data(), n)) throw Error(path + ": read failed");
  return s;
}

}  // namespace sllm
