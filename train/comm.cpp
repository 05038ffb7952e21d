// The ranks of a run (see comm.h): the single-process Comm, the choice of Comm, and the helpers built on the
// collectives. The MPI Comm is in comm_mpi.cpp (built when CMake finds MPI).
#include "train/comm.h"

#include <cstdint>    // uint64_t
#include <cstdlib>    // std::getenv, std::strtoll, std::_Exit
#include <cstring>    // std::memcpy
#include <exception>  // std::exception

namespace sllm::train {

#ifdef SLLM_HAVE_MPI
std::unique_ptr<Comm> make_mpi_comm(long long launcher_size);  // comm_mpi.cpp
#endif

namespace {

class SingleComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string name() const override { return "single"; }
  void sum_in_rank_order(float*, size_t) override {}
  void sum_in_rank_order(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  long long min(long long v) override { return v; }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

}  // namespace

long long launcher_world_size() {
  // OpenMPI's mpirun, MPICH/Intel's Hydra (and srun --mpi=pmi2), MVAPICH, and any Slurm step: `srun -n 2` without
  // MPI support then fails the size check instead of training twice into the same files.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (const char* v = std::getenv(var)) {
      char* end = nullptr;
      const long long n = std::strtoll(v, &end, 10);
      if (end != v && *end == '\0' && n >= 1) return n;
    }
  return 0;
}

std::unique_ptr<Comm> make_single_comm() { return std::make_unique<SingleComm>(); }

std::unique_ptr<Comm> make_comm() {
  const long long world = launcher_world_size();
  if (world <= 1) return make_single_comm();
#ifdef SLLM_HAVE_MPI
  return make_mpi_comm(world);
#else
  throw Error("started as one of " + std::to_string(world) +
              " MPI ranks, but this build has no MPI (install libopenmpi-dev, or run scripts/install-deps.sh, and "
              "rebuild)");
#endif
}

namespace {

// A 64-bit hash of bytes: four multiply-xorshift lanes over 8-byte words (a few GB/s), then the tail, then a mix.
uint64_t hash_bytes(const void* p, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  uint64_t h[4] = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull, 0xa4093822299f31d0ull, 0x082efa98ec4e6c89ull};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, b + i + 8 * l, 8);
      h[l] = (h[l] ^ w) * 0x9e3779b97f4a7c15ull;
      h[l] ^= h[l] >> 29;
    }
  uint64_t out = uint64_t(n) * 0xff51afd7ed558ccdull;
  for (; i < n; ++i) out = (out ^ b[i]) * 0x100000001b3ull;
  for (uint64_t x : h) {
    out = (out ^ x) * 0xc4ceb9fe1a85ec53ull;
    out ^= out >> 33;
  }
  return out;
}

}  // namespace

bool Comm::same_on_every_rank(const void* p, size_t bytes) {
  if (size() == 1) return true;
  const uint64_t mine = hash_bytes(p, bytes);
  uint64_t lead = mine;
  broadcast(&lead, sizeof lead, 0);
  return !any_rank(*this, mine != lead);
}

bool any_rank(Comm& c, bool flag) { return c.min(flag ? 0 : 1) == 0; }

std::string broadcast_string(Comm& c, const std::string& s, int root) {
  unsigned long long n = s.size();
  c.broadcast(&n, sizeof n, root);
  std::string out = c.rank() == root ? s : std::string(size_t(n), '\0');
  if (n) c.broadcast(out.data(), size_t(n), root);
  return out;
}

void on_every_rank(Comm& c, const std::function<void()>& step) {
  std::string err;
  try {
    step();
  } catch (const std::exception& e) {  // sllm::Error, and whatever else a set-up step may throw
    err = e.what();
    if (err.empty()) err = "failed";
  }
  if (c.size() == 1) {
    if (!err.empty()) throw SharedError(err);
    return;
  }
  const long long first = c.min(err.empty() ? c.size() : c.rank());
  if (first == c.size()) return;
  const std::string msg = broadcast_string(c, err, int(first));
  throw SharedError(first == 0 ? msg : "rank " + std::to_string(first) + ": " + msg);
}

}  // namespace sllm::train
