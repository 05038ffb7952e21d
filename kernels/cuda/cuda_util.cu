// Device utilities behind cuda_backend.h that are not Backend ops: filling device memory with seeded random
// values (a benchmark's 13 GB of weights are made on the device, not uploaded), measuring the card's memory
// bandwidth, and naming the card.
#include <cuda_bf16.h>  // __float2bfloat16_rn
#include <cuda_fp16.h>  // __float2half_rn

#include <string>  // std::string

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"

namespace sllm {

namespace {

// A counter-based generator: uniform in [0, 1) from (seed, index), so any element is reproducible alone.
__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (1.0f / 16777216.0f);
}

__global__ void fill_uniform_kernel(void* dst, DType t, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = lo + (hi - lo) * hash_uniform(seed, uint64_t(i));
    switch (t) {
      case DType::F16: static_cast<__half*>(dst)[i] = __float2half_rn(v); break;
      case DType::BF16: static_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(v); break;
      default: static_cast<float*>(dst)[i] = v; break;
    }
  }
}

}  // namespace

void cuda_fill_uniform(void* dst, DType t, int64_t n, uint64_t seed, float lo, float hi) {
  SLLM_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16,
             std::string("cuda_fill_uniform: dtype must be f32, f16 or bf16, got ") + dtype_name(t));
  if (n <= 0) return;
  fill_uniform_kernel<<<4096, 256>>>(dst, t, n, seed, lo, hi);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

double cuda_copy_bandwidth(size_t bytes, int reps) {
  void *a = nullptr, *b = nullptr;
  CUDA_CHECK(cudaMalloc(&a, bytes));
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  double best = 0;
  try {
    CUDA_CHECK(cudaMalloc(&b, bytes));
    CUDA_CHECK(cudaMemset(a, 1, bytes));
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));  // warm-up
    for (int r = 0; r < reps; ++r) {
      CUDA_CHECK(cudaEventRecord(e0));
      CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
      CUDA_CHECK(cudaEventRecord(e1));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      const double bw = 2.0 * double(bytes) / (double(ms) * 1e-3);  // bytes read + bytes written
      if (bw > best) best = bw;
    }
  } catch (...) {
    cudaFree(a);
    cudaFree(b);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    throw;
  }
  cudaFree(a);
  cudaFree(b);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return best;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.multiProcessorCount) + " SMs, " + std::to_string(p.totalGlobalMem >> 20) + " MiB)";
}

size_t cuda_memory_used() {
  size_t free_b = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
  return total - free_b;
}

void cuda_synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace sllm
