// streamllm: the trainer's CUDA backend (train/train_backend.h over device memory). A plain C++ header with no
// CUDA include. Every pointer it takes or returns is device memory; the calls that return a value (the loss, the
// sum of squares) and download() synchronise, everything else is queued on the backend's stream.
//
// Numerics: f32 throughout, as the CPU trainer (cuBLAS SGEMM in its default math mode: no TF32). Every result is a
// fixed function of the inputs: reductions over tokens, over a flat array and over attention keys or queries run
// in a fixed order (no atomics), so two runs on the same card give the same bits and a resume is exact. Results
// differ from the CPU backend's by f32 rounding (another summation order, CUDA's expf/erff).
#pragma once
#include <memory>  // std::unique_ptr

#include "train/train_backend.h"  // TrainBackend

namespace sllm {

// A training backend on CUDA device `device`. Throws sllm::Error when there is no such device.
std::unique_ptr<train::TrainBackend> make_cuda_train_backend(int device);

}  // namespace sllm
