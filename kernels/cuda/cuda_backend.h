// streamllm: the CUDA backend — the public face of kernels/cuda. A plain C++ header with no CUDA include, so that
// src/ and the CLI can create the backend without seeing a CUDA type.
//
// Every pointer the CUDA backend takes or returns is device memory (its alloc() is cudaMalloc): activations,
// weights, rope tables, token ids, ALiBi slopes and extra logits alike. Ops are asynchronous on the backend's own
// stream, which is an ordinary (blocking) stream: it is ordered with the legacy default stream, so the blocking
// cuda_upload / cuda_download below see every op issued before them.
#pragma once
#include <cstddef>  // size_t
#include <memory>   // std::unique_ptr

#include "ops/backend.h"  // Backend

namespace sllm {

// Number of CUDA devices visible to this process; 0 when there is no device or no driver (never throws).
int cuda_device_count();

// A CUDA backend on device `device` (it becomes the calling thread's current device). Throws sllm::Error when
// there is no such device or the CUDA runtime / cuBLAS cannot start on it.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

// Blocking copies between host memory and device memory (from a CUDA backend's alloc()). Throw sllm::Error.
void cuda_upload(void* dst_device, const void* src_host, size_t bytes);
void cuda_download(void* dst_host, const void* src_device, size_t bytes);

}  // namespace sllm
