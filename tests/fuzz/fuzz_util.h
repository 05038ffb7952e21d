// Shared helpers for the libFuzzer targets (docs/fuzzing.md).
//
// The contract every target checks: a parser fed arbitrary bytes either succeeds or throws sllm::Error. Any other
// exception is reported and aborts (a finding), as do crashes, sanitizer reports, leaks, timeouts and OOM, which
// libFuzzer catches itself. With SLLM_FUZZ_STRICT=1 in the environment the Error message is checked as well: one
// line that names the file (DESIGN.md section 4); off by default so a run measures robustness, not wording.
#pragma once
#include <fcntl.h>     // open
#include <signal.h>    // kill
#include <sys/mman.h>  // memfd_create
#include <unistd.h>    // write, close, unlink, access, getpid

#include <cerrno>      // errno, ESRCH
#include <cstddef>     // size_t
#include <cstdint>     // uint8_t
#include <cstdio>      // std::fprintf, std::sscanf
#include <cstdlib>     // std::abort, std::getenv
#include <exception>   // std::exception
#include <filesystem>  // std::filesystem (stale input files)
#include <string>      // std::string
#include <typeinfo>    // typeid

#include "core/error.h"  // Error

namespace sllm::fuzz {

// The input as a file without touching the disk: by default an anonymous memory file reached through
// /proc/self/fd, which open(), stat() (a regular file) and mmap() accept like any path. HDF5 resolves the real path
// of what it opens (realpath), which fails for a memfd, so the HDF5 targets ask for a named file on a tmpfs instead
// (/dev/shm, else $TMPDIR or /tmp), one per process, removed afterwards.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size, bool named = false) {
    if (named) {
      const std::string& dir = named_dir();
      path_ = dir + "/sllm-fuzz-" + std::to_string(::getpid()) + ".bin";
      fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    } else {
      fd_ = ::memfd_create("fuzz-input", MFD_CLOEXEC);
    }
    if (fd_ < 0) {
      std::perror("fuzz input file");
      std::abort();
    }
    for (size_t done = 0; done < size;) {
      const ssize_t w = ::write(fd_, data + done, size - done);
      if (w <= 0) {
        std::perror("write fuzz input file");
        std::abort();
      }
      done += size_t(w);
    }
    if (!named) path_ = "/proc/self/fd/" + std::to_string(fd_);
    named_ = named;
  }
  ~MemFile() {
    ::close(fd_);
    if (named_) ::unlink(path_.c_str());
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  // The directory for named files; on first use, removes the files of earlier fuzzing processes that died on a
  // finding (a crash skips the destructor), so long runs in fork mode do not fill the tmpfs.
  static const std::string& named_dir() {
    static const std::string dir = [] {
      const char* tmp = std::getenv("TMPDIR");
      const std::string d = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp ? tmp : "/tmp";
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
        const std::string n = e.path().filename().string();
        long pid = 0;
        if (std::sscanf(n.c_str(), "sllm-fuzz-%ld.bin", &pid) == 1 && pid > 0 && ::kill(pid_t(pid), 0) != 0 &&
            errno == ESRCH)
          std::filesystem::remove(e.path(), ec);
      }
      return d;
    }();
    return dir;
  }

  int fd_ = -1;
  bool named_ = false;
  std::string path_;
};

inline bool strict() {
  static const bool s = [] {
    const char* e = std::getenv("SLLM_FUZZ_STRICT");
    return e && *e && *e != '0';
  }();
  return s;
}

// Runs fn; an sllm::Error is the expected refusal. `name` is what the message should name (strict mode).
template <class Fn>
bool expect_ok_or_error(const char* what, const std::string& name, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const Error& e) {
    if (strict()) {
      const std::string m = e.what();
      if (m.empty() || m.find('\n') != std::string::npos || (!name.empty() && m.find(name) == std::string::npos)) {
        std::fprintf(stderr, "FINDING (%s): error message does not name '%s' in one line: %s\n", what, name.c_str(),
                     m.c_str());
        std::abort();
      }
    }
    return false;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING (%s): exception other than sllm::Error: %s: %s\n", what, typeid(e).name(),
                 e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "FINDING (%s): non-std exception\n", what);
    std::abort();
  }
}

// Reads every byte of a region so ASan sees any access past the mapping; the sum keeps it from being elided.
inline void touch(const void* p, size_t n) {
  const auto* b = static_cast<const volatile unsigned char*>(p);
  unsigned s = 0;
  for (size_t i = 0; i < n; ++i) s += b[i];
  static volatile unsigned sink = 0;
  sink = sink + s;
}

}  // namespace sllm::fuzz
