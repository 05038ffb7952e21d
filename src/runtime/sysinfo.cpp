#include "runtime/sysinfo.h"

#include <malloc.h>  // malloc_trim

#include <fstream>  // std::ifstream
#include <string>   // std::string, std::getline

namespace sllm {

namespace {
size_t status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k(key);
  while (std::getline(f, line))
    if (line.compare(0, k.size(), k) == 0) return size_t(std::stoull(line.substr(k.size() + 1))) * 1024;
  return 0;
}
}  // namespace

size_t rss_bytes() { return status_kb("VmRSS"); }
size_t peak_rss_bytes() { return status_kb("VmHWM"); }

bool reset_peak_rss() {
  malloc_trim(0);  // hand freed heap pages back first, or the new baseline keeps the previous run's memory
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return bool(f);
}

}  // namespace sllm
