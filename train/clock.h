// streamllm trainer: wall-clock helpers shared by the training loop and the ablation runner.
#pragma once
#include <chrono>  // std::chrono::steady_clock
#include <cstdio>  // std::snprintf
#include <string>  // std::string

namespace sllm {

// Seconds on a monotonic clock (differences only).
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A duration for progress lines: "7m05s", or "2h13m" from an hour on.
inline std::string duration_str(double s) {
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof b, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else
    std::snprintf(b, sizeof b, "%dm%02ds", int(s / 60), int(s) % 60);
  return b;
}

}  // namespace sllm
