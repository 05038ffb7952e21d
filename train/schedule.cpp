#include "train/schedule.h"

#include <algorithm>  // std::clamp
#include <cmath>      // std::cos
#include <numbers>    // std::numbers::pi

namespace sllm::train {

double LrSchedule::at(int64_t s) const {
  if (s < warmup) return lr_max * double(s + 1) / double(warmup);
  const double lr_min = lr_max * min_lr_ratio;
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double progress = std::clamp(double(s - warmup) / double(span), 0.0, 1.0);
  return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace sllm::train
