// Device-side helpers shared by the .cu files (warp reductions). Device code only: include from .cu files, never
// from a header that host-compiled code sees (cuda_common.cuh is included by the C++ tests).
#pragma once
#include <cuda_runtime.h>  // __shfl_xor_sync

namespace sllm::cuda {

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Maximum over the 32 lanes of a warp; every lane gets it.
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace sllm::cuda
