// streamllm: where a run computes (--device) and the CUDA plugin library that holds the GPU code, shared by the
// inference commands and the trainer. No CUDA header: the plugin is found and opened at run time.
#pragma once
#include <string>  // std::string

namespace sllm {

// A --device value: "cpu", "cuda" (index -1: the caller's default device) or "cuda:N".
struct DeviceSpec {
  bool cuda = false;
  int index = -1;
};

// Parses s; anything else than cpu, cuda or cuda:N (N up to 4 digits) throws sllm::Error
// "--device: expected cpu, cuda or cuda:N, got '<s>'".
DeviceSpec parse_device(const std::string& s);

// The entry point `symbol` of the CUDA plugin (libsllm_cuda.so beside this executable: kernels/cuda/plugin.cpp),
// opening the library on first use, so that a CPU run never maps CUDA. `device` is the --device value the errors
// name: the library does not load, lacks the symbol, or this build has no CUDA backend at all.
void* cuda_plugin_symbol(const char* symbol, const std::string& device);

}  // namespace sllm
