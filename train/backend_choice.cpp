// make_train_backend (train_backend.h): the CPU backend, or the CUDA one from the plugin library, loaded only when
// a run asks for it (a CPU run never maps the CUDA runtime). No CUDA header here: the plugin hands back a
// TrainBackend through a C entry point (kernels/cuda/plugin.cpp).
#include <filesystem>  // std::filesystem
#include <string>      // std::string

#include "core/error.h"  // Error
#include "train/train_backend.h"
#ifdef SLLM_HAVE_CUDA
#include <dlfcn.h>  // dlopen, dlsym, dlerror
#endif

namespace sllm::train {

std::unique_ptr<TrainBackend> make_train_backend(const std::string& device, int default_index) {
  if (device == "cpu") return make_cpu_train_backend();
  int index = default_index;
  const bool plain = device == "cuda";
  if (!plain) {
    const std::string n = device.size() > 5 && device.compare(0, 5, "cuda:") == 0 ? device.substr(5) : "";
    if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos)
      throw Error("--device: expected cpu, cuda or cuda:N, got '" + device + "'");
    index = std::stoi(n);
  }
#ifdef SLLM_HAVE_CUDA
  namespace fs = std::filesystem;
  static void* lib = nullptr;
  const std::string path = (fs::read_symlink("/proc/self/exe").parent_path() / "libsllm_cuda.so").string();
  if (!lib) lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw Error("--device " + device + ": cannot load the CUDA backend: " + dlerror());
  using Make = TrainBackend* (*)(int, char*, size_t);
  auto make = reinterpret_cast<Make>(dlsym(lib, "sllm_cuda_plugin_make_train"));
  if (!make) throw Error("--device " + device + ": " + path + " has no sllm_cuda_plugin_make_train");
  char err[512] = {};
  std::unique_ptr<TrainBackend> be(make(index, err, sizeof err));
  if (!be) throw Error("--device " + device + ": " + err);
  return be;
#else
  (void)index;
  throw Error("--device " + device + ": this build has no CUDA backend (nvcc was not found when it was configured)");
#endif
}

}  // namespace sllm::train
