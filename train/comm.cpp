// The ranks of a run (see comm.h): the single-process Comm, the choice of Comm, and the helpers built on the
// collectives. The MPI Comm is in comm_mpi.cpp (built when CMake finds MPI).
#include "train/comm.h"

#include <cstdlib>  // std::getenv, std::_Exit
#include <vector>   // std::vector

namespace sllm::train {

#ifdef SLLM_HAVE_MPI
std::unique_ptr<Comm> make_mpi_comm();  // comm_mpi.cpp
#endif

namespace {

class SingleComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_size() const override { return 1; }
  std::string name() const override { return "single"; }
  void sum_in_rank_order(float*, size_t) override {}
  void sum_in_rank_order(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  long long min(long long v) override { return v; }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

// The number of ranks an MPI launcher started, from the variables its processes inherit (0: no launcher).
long long launcher_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"})
    if (const char* v = std::getenv(var)) {
      char* end = nullptr;
      const long long n = std::strtoll(v, &end, 10);
      if (end != v && *end == '\0' && n >= 1) return n;
    }
  return 0;
}

}  // namespace

std::unique_ptr<Comm> make_single_comm() { return std::make_unique<SingleComm>(); }

std::unique_ptr<Comm> make_comm() {
  const long long world = launcher_world_size();
  if (world <= 1) return make_single_comm();
#ifdef SLLM_HAVE_MPI
  return make_mpi_comm();
#else
  throw Error("started as one of " + std::to_string(world) +
              " MPI ranks, but this build has no MPI (install libopenmpi-dev, or run scripts/install-deps.sh, and "
              "rebuild)");
#endif
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
  } catch (const Error& e) {
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
