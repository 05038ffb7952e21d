// streamllm trainer: a small, portable, serialisable random number generator (xoshiro256**, seeded through
// splitmix64), so that initialisation and data sampling are identical on every platform and a checkpoint can
// store the exact state (std::mt19937's distributions are implementation-defined; this is not).
#pragma once
#include <array>    // std::array
#include <cmath>    // std::sqrt, std::log, std::cos
#include <cstdint>  // uint64_t
#include <numbers>  // std::numbers::pi

namespace sllm::train {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) {
    for (auto& w : s_) {  // splitmix64
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n) (n > 0), without modulo bias (rejection).
  uint64_t below(uint64_t n) {
    const uint64_t lim = ~uint64_t(0) - (~uint64_t(0) % n);
    uint64_t x;
    do x = next();
    while (x >= lim);
    return x % n;
  }
  // Standard normal (Box-Muller; one value per call, so the state advances by exactly two words).
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  const std::array<uint64_t, 4>& state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<uint64_t, 4> s_{};
};

}  // namespace sllm::train
