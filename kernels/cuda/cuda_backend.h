// streamllm: the CUDA backend — the public face of kernels/cuda. A plain C++ header with no CUDA include, so that
// src/ and the CLI can create the backend without seeing a CUDA type.
//
// Every pointer the CUDA backend takes or returns is device memory (its alloc() is cudaMalloc): activations,
// weights, rope tables, token ids, ALiBi slopes and extra logits alike. Ops are asynchronous on the backend's own
// stream, which is an ordinary (blocking) stream: it is ordered with the legacy default stream, so the blocking
// cuda_upload / cuda_download below see every op issued before them.
#pragma once
#include <cstddef>  // size_t
#include <cstdint>  // int64_t, uint64_t
#include <memory>   // std::unique_ptr
#include <string>   // std::string
#include <vector>   // std::vector

#include "ops/backend.h"  // Backend

namespace sllm {

// Number of CUDA devices visible to this process; 0 when there is no device or no driver (never throws).
int cuda_device_count();

// What a CUDA backend fuses and how it launches; every switch keeps the results (up to f32 rounding where noted),
// so each exists to measure what it buys (bench_cuda) and as a fallback.
struct CudaOptions {
  // rope_store, linear_add and linear_swiglu as one kernel each, instead of their plain ops (Backend's defaults):
  // the same results up to f32 rounding.
  bool fused_ops = true;
  // norm_linear / norm_linear_swiglu as one GEMV that normalises X as it loads it (every block computes the row
  // statistics), instead of a norm kernel and then the GEMV; needs fused_ops. Same results up to f32 rounding.
  // The environment variable SLLM_CUDA_FOLD_NORM=0 turns it off.
  bool fold_norm = true;
  // Programmatic dependent launch on compute capability 9.0+: each kernel's launch overlaps its predecessor's
  // tail. The same results, bit for bit. The environment variable SLLM_CUDA_PDL=0 turns it off.
  bool pdl = true;
  // Decode attention reads the cache in 16-byte vectors where its rows allow (else one element per lane): the
  // same results up to f32 rounding. The environment variable SLLM_CUDA_ATTN_VEC=0 turns it off.
  bool vector_attention = true;
  // The decode GEMV launches at most one wave of blocks, each warp looping over its row groups (with the norm
  // folded in, the row statistics are then computed by fewer blocks), instead of a block per 8 output rows. The
  // same bits either way. The environment variable SLLM_CUDA_GEMV_WAVE=0 turns it off.
  bool gemv_one_wave = true;
};

// A CUDA backend on device `device` (it becomes the calling thread's current device). Throws sllm::Error when
// there is no such device or the CUDA runtime / cuBLAS cannot start on it.
std::unique_ptr<Backend> make_cuda_backend(int device = 0, const CudaOptions& opt = {});

// Where a decode step's device time goes: cuda_profile(be, true) starts recording the device time of every eager
// op issued on CUDA backend `be` (an event before and after each; graph replays are not seen, and the events keep
// PDL from overlapping the ops, so the numbers are eager-mode times); cuda_profile(be, false) stops.
// cuda_profile_report waits for the device and sums what was recorded by op ("linear 12288x4096" names a linear by
// its N x K, with " T<n>" for more than one row), most expensive first. Throws when `be` is not a CUDA backend.
struct CudaOpTime {
  std::string op;
  int64_t calls = 0;
  double ms = 0;
};
void cuda_profile(Backend& be, bool on);
std::vector<CudaOpTime> cuda_profile_report(Backend& be);

// Blocking copies between host memory and device memory (from a CUDA backend's alloc()). Throw sllm::Error.
void cuda_upload(void* dst_device, const void* src_host, size_t bytes);
void cuda_download(void* dst_host, const void* src_device, size_t bytes);

// Fills n elements of device memory (f32, f16 or bf16) with uniform values in [lo, hi) from a counter-based hash of
// (seed, index); blocking.
void cuda_fill_uniform(void* dst, DType t, int64_t n, uint64_t seed, float lo, float hi);
// The card's memory bandwidth as a large device-to-device copy sees it: (bytes read + bytes written) / time, in
// bytes per second, best of `reps` copies of `bytes`.
double cuda_copy_bandwidth(size_t bytes, int reps);
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 81559 MiB)".
std::string cuda_device_name(int device = 0);
// Device memory in use on the current device (total - free), in bytes.
size_t cuda_memory_used();
// Waits for all work on the current device.
void cuda_synchronize();

}  // namespace sllm
