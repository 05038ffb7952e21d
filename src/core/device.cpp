// --device parsing and the CUDA plugin's entry points (device.h).
#include "core/device.h"

#include <filesystem>  // std::filesystem

#include "core/error.h"  // Error
#ifdef SLLM_HAVE_CUDA
#include <dlfcn.h>  // dlopen, dlsym, dlerror
#endif

namespace sllm {

DeviceSpec parse_device(const std::string& s) {
  if (s == "cpu") return {};
  if (s == "cuda") return {true, -1};
  const std::string n = s.size() > 5 && s.compare(0, 5, "cuda:") == 0 ? s.substr(5) : "";
  if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos)
    throw Error("--device: expected cpu, cuda or cuda:N, got '" + s + "'");
  return {true, std::stoi(n)};
}

void* cuda_plugin_symbol(const char* symbol, const std::string& device) {
#ifdef SLLM_HAVE_CUDA
  static void* lib = nullptr;  // opened once, never closed
  const std::string path =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "libsllm_cuda.so").string();
  if (!lib) lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw Error("--device " + device + ": cannot load the CUDA backend: " + dlerror());
  void* f = dlsym(lib, symbol);
  if (!f) throw Error("--device " + device + ": " + path + " has no " + symbol);
  return f;
#else
  (void)symbol;
  throw Error("--device " + device + ": this build has no CUDA backend (nvcc was not found when it was configured)");
#endif
}

}  // namespace sllm
