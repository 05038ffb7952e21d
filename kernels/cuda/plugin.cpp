// The CUDA backend as a plugin the CLI loads only when --device cuda asks for it (infer/common.cpp), so that a CPU
// run never maps the CUDA runtime and cuBLAS (about 200 MB of resident memory at start-up). Tests and benchmarks
// link the backend directly (cuda_backend.h).
#include <cstddef>    // size_t
#include <cstdio>     // std::snprintf
#include <exception>  // std::exception

#include "cuda/cuda_backend.h"        // make_cuda_backend
#include "cuda/cuda_train_backend.h"  // make_cuda_train_backend

// A new CUDA backend on `device` (owned by the caller, deleted through Backend's virtual destructor), or null with
// the reason written to err (n bytes).
extern "C" __attribute__((visibility("default"))) sllm::Backend* sllm_cuda_plugin_make(int device, bool fused_ops,
                                                                                       char* err, size_t n) {
  try {
    sllm::CudaOptions opt;
    opt.fused_ops = fused_ops;
    return sllm::make_cuda_backend(device, opt).release();
  } catch (const std::exception& e) {
    std::snprintf(err, n, "%s", e.what());
    return nullptr;
  }
}

// A new CUDA training backend on `device` (owned by the caller, deleted through TrainBackend's virtual destructor),
// or null with the reason written to err (n bytes). train/backend_choice.cpp loads it for `train --device cuda`.
extern "C" __attribute__((visibility("default"))) sllm::train::TrainBackend* sllm_cuda_plugin_make_train(
    int device, char* err, size_t n) {
  try {
    return sllm::make_cuda_train_backend(device).release();
  } catch (const std::exception& e) {
    std::snprintf(err, n, "%s", e.what());
    return nullptr;
  }
}
