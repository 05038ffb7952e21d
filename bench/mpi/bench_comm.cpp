// What the bit-exact gradient sum costs: the trainer's rank-order sum (train/comm.h: a pipelined chain, then a
// broadcast) against MPI_Allreduce (whatever order the MPI library picks) on the same buffers, alternating, in
// one run. Prints a table on rank 0.
//
//   mpirun -np 2 build/bench_comm [--reps N] [--sizes 1,16,86]      (sizes in millions of floats)
#include <mpi.h>

#include <algorithm>  // std::sort
#include <chrono>     // std::chrono
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atoi, std::strtod
#include <cstring>    // std::strcmp
#include <string>     // std::string
#include <vector>     // std::vector

#include "train/comm.h"  // make_comm

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::vector<double> sizes = {1, 16, 86};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--sizes") && i + 1 < argc) {
      sizes.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        sizes.push_back(std::strtod(p, &end));
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p) break;
      }
    } else {
      std::fprintf(stderr, "usage: mpirun -np N bench_comm [--reps N] [--sizes M1,M2,...] (millions of floats)\n");
      return 2;
    }
  }
  std::unique_ptr<sllm::train::Comm> comm;
  try {
    comm = sllm::train::make_comm();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_comm: %s\n", e.what());
    return 1;
  }
  if (comm->size() < 2) {
    std::fprintf(stderr, "bench_comm: start it under mpirun with 2 or more ranks\n");
    return 2;
  }
  const bool lead = comm->rank() == 0;
  if (lead)
    std::printf("bench_comm: %d ranks (%d on this machine), median of %d repetitions each, alternating\n\n"
                "| floats | MB | rank-order sum | GB/s | MPI_Allreduce | GB/s | ratio |\n|---|---|---|---|---|---|---|\n",
                comm->size(), comm->local_size(), reps);
  for (double m : sizes) {
    const size_t n = size_t(m * 1e6);
    std::vector<float> x(n), y(n), out(n);
    for (size_t i = 0; i < n; ++i) x[i] = float((i * 2654435761u) % 1000) * 1e-3f + float(comm->rank());
    std::vector<double> ours, theirs;
    for (int r = 0; r < reps + 1; ++r) {  // the first round warms up (page faults, MPI's buffers)
      y = x;
      comm->min(0);
      double t0 = now();
      comm->sum_in_rank_order(y.data(), n);
      const double a = now() - t0;
      comm->min(0);
      t0 = now();
      MPI_Allreduce(x.data(), out.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      const double b = now() - t0;
      if (r > 0) ours.push_back(a), theirs.push_back(b);
    }
    const double a = median(ours), b = median(theirs), mb = double(n) * 4 / 1e6;
    if (lead)
      std::printf("| %.0fM | %.0f | %.1f ms | %.2f | %.1f ms | %.2f | %.2fx |\n", m, mb, a * 1e3, mb / 1e3 / a,
                  b * 1e3, mb / 1e3 / b, b / a);
  }
  if (lead) std::printf("\n(GB/s: the buffer's bytes over the time of one sum; ratio > 1: ours is faster)\n");
  return 0;
}
