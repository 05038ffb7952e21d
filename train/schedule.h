// streamllm trainer: the learning-rate schedule (linear warmup, then cosine decay to a floor).
#pragma once
#include <cstdint>  // int64_t

namespace sllm::train {

struct LrSchedule {
  double lr_max = 6e-4;
  double min_lr_ratio = 0.1;  // floor = lr_max * min_lr_ratio
  int64_t warmup = 0;         // steps of linear warmup: step s < warmup gets lr_max * (s + 1) / warmup
  int64_t total = 1;          // the cosine reaches the floor at step `total` (and stays there)

  // Learning rate of optimizer step s (0-based).
  double at(int64_t s) const;
};

}  // namespace sllm::train
