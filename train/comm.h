// streamllm trainer: the processes ("ranks") of a data-parallel run, and the few collective operations a
// training step needs.
//
// Data parallelism here is an execution detail, not a change of what is computed: every rank holds the whole
// model, the optimizer step's micro-batches (--accum) are split into contiguous runs, one per rank, and the ranks
// add their gradients *in rank order*. With one micro-batch per rank the summed gradient therefore has the very
// bits one process gets by adding the same micro-batch gradients one after another (train/trainer.cpp), so a
// run on N ranks with --accum N equals the one-process run with the same options bit for bit, and a checkpoint
// resumes on any number of ranks. (With several micro-batches per rank the sum is re-associated: equal up to f32
// rounding.)
//
// Ranks come from an MPI launcher (`mpirun -np 2 streamllm train ...`): make_comm() initialises MPI only when the
// process was started by one (OMPI_COMM_WORLD_SIZE, PMI_SIZE, MV2_COMM_WORLD_SIZE or SLURM_STEP_NUM_TASKS in the
// environment), so a plain run never touches MPI; it checks that MPI sees as many ranks as the launcher started. The buffers are host memory (the CPU trainer's); the GPU trainer will reduce in
// device memory through NCCL behind the same calls.
#pragma once
#include <cstddef>     // size_t
#include <functional>  // std::function
#include <memory>      // std::unique_ptr
#include <string>      // std::string

#include "core/error.h"  // Error

namespace sllm::train {

// An error that every rank raised identically at the same point (bad options, a failed set-up on some rank,
// divergence): the CLI prints it once (rank 0) and every rank exits cleanly. The CLI aborts the whole run on any
// other exception in a multi-rank run, because the other ranks would wait for the failed one forever.
class SharedError : public Error {
 public:
  using Error::Error;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_size() const = 0;  // ranks on this machine (they share its cores)
  virtual int local_rank() const = 0;  // this rank's place among them (its GPU, when each rank has one)
  virtual std::string name() const = 0;  // "single", "mpi"

  // x (n values on every rank) := x_0 + x_1 + ... + x_{size-1}, added in rank order, ((x_0 + x_1) + x_2) + ...:
  // every rank gets the same bits. A single process leaves x as it is.
  virtual void sum_in_rank_order(float* x, size_t n) = 0;
  virtual void sum_in_rank_order(double* x, size_t n) = 0;
  // Copies `bytes` bytes at p on rank `root` to p on every other rank.
  virtual void broadcast(void* p, size_t bytes, int root) = 0;
  // The smallest of the ranks' values.
  virtual long long min(long long v) = 0;
  // Whether every rank holds the same bytes at p (a 64-bit hash of them, compared with rank 0's).
  bool same_on_every_rank(const void* p, size_t bytes);
  // Ends every rank of the run at once (after a failure on this rank that the others cannot know about).
  [[noreturn]] virtual void abort(int code) = 0;
};

// The run this process belongs to: MPI's world when started by an MPI launcher, else a single process. Throws
// sllm::Error when a launcher started several ranks but this build has no MPI (they would otherwise train the same
// thing side by side, writing the same files).
std::unique_ptr<Comm> make_comm();
// The number of ranks an MPI launcher started, from the variables it gives its processes (0 when none did).
long long launcher_world_size();
// A one-process Comm (tests, ablations, the library's run_training without a Comm).
std::unique_ptr<Comm> make_single_comm();

// True on every rank when `flag` is true on any rank.
bool any_rank(Comm& c, bool flag);
// Rank root's string on every rank.
std::string broadcast_string(Comm& c, const std::string& s, int root);
// Runs `step` on every rank; when it throws on any rank, every rank throws the same SharedError (the
// lowest failing rank's message, prefixed "rank N: " when N > 0), so no rank is left waiting for another.
void on_every_rank(Comm& c, const std::function<void()>& step);

}  // namespace sllm::train
