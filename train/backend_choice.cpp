// make_train_backend (train_backend.h): the CPU backend, or the CUDA one from the plugin library, loaded only when
// a run asks for it (a CPU run never maps the CUDA runtime). No CUDA header here: the plugin hands back a
// TrainBackend through a C entry point (kernels/cuda/plugin.cpp).
#include <string>  // std::string

#include "core/device.h"  // parse_device, cuda_plugin_symbol
#include "core/error.h"   // Error
#include "train/train_backend.h"

namespace sllm::train {

std::unique_ptr<TrainBackend> make_train_backend(const std::string& device, int default_index) {
  const DeviceSpec spec = parse_device(device);
  if (!spec.cuda) return make_cpu_train_backend();
  using Make = TrainBackend* (*)(int, char*, size_t);
  auto make = reinterpret_cast<Make>(cuda_plugin_symbol("sllm_cuda_plugin_make_train", device));
  char err[512] = {};
  std::unique_ptr<TrainBackend> be(make(spec.index < 0 ? default_index : spec.index, err, sizeof err));
  if (!be) throw Error("--device " + device + ": " + err);
  return be;
}

}  // namespace sllm::train
