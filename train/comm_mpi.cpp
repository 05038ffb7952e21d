// The MPI Comm (see comm.h): MPI's world, with the rank-order sum done as a chain, rank 0 -> 1 -> ... -> last,
// pipelined in 4 MiB pieces, and the total broadcast from the last rank. MPI_Allreduce is not used for gradients:
// MPI leaves its summation order to the implementation (it may differ between ranks and between runs), and the
// ranks of a training run must agree to the bit.
#include <mpi.h>

#include <algorithm>  // std::min
#include <cstdlib>    // std::_Exit
#include <string>     // std::string, std::to_string
#include <vector>     // std::vector

#include "train/comm.h"

namespace sllm::train {

namespace {

class MpiComm final : public Comm {
 public:
  explicit MpiComm(long long launcher_size) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      // OpenMP threads compute; only the main thread calls MPI.
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw Error("MPI_Init_thread failed");
      owns_ = true;
      if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        throw Error("this MPI library does not allow OpenMP threads beside MPI (MPI_THREAD_FUNNELED)");
      }
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);  // our messages never mix with anyone else's
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    if (size_ != launcher_size) {
      // An MPI library other than the launcher's (e.g. MPICH's mpiexec starting an OpenMPI build): each process
      // would be a world of its own and train the same run into the same files.
      const std::string msg = "the launcher started " + std::to_string(launcher_size) + " ranks but MPI sees " +
                              std::to_string(size_) + ": start streamllm with the mpirun of the MPI it was built with";
      MPI_Comm_free(&comm_);
      if (owns_) MPI_Finalize();
      throw Error(msg);
    }
    MPI_Comm local;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&comm_);
    if (owns_) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return "mpi"; }

  void sum_in_rank_order(float* x, size_t n) override { chain_sum(x, n, MPI_FLOAT); }
  void sum_in_rank_order(double* x, size_t n) override { chain_sum(x, n, MPI_DOUBLE); }

  void broadcast(void* p, size_t bytes, int root) override {
    char* b = static_cast<char*>(p);
    for (size_t off = 0; off < bytes; off += kMaxMessage)
      MPI_Bcast(b + off, int(std::min(kMaxMessage, bytes - off)), MPI_BYTE, root, comm_);
  }
  long long min(long long v) override {
    long long out = v;
    MPI_Allreduce(&v, &out, 1, MPI_LONG_LONG, MPI_MIN, comm_);
    return out;
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  static constexpr size_t kMaxMessage = size_t(1) << 30;  // bytes per MPI call (counts are ints)
  static constexpr size_t kPiece = size_t(4) << 20;       // bytes per pipelined piece of the chain

  template <class T>
  void chain_sum(T* x, size_t n, MPI_Datatype type) {
    if (size_ == 1 || n == 0) return;
    const size_t piece = kPiece / sizeof(T);
    // the receive buffer is kept between calls (a fresh 4 MiB vector each step costs page faults)
    if (in_bytes_.size() < kPiece / sizeof(double)) in_bytes_.resize(kPiece / sizeof(double));
    T* in = reinterpret_cast<T*>(in_bytes_.data());
    for (size_t off = 0; off < n; off += piece) {
      const size_t cnt = std::min(piece, n - off);
      T* xs = x + off;
      if (rank_ > 0) {
        MPI_Recv(in, int(cnt), type, rank_ - 1, kTag, comm_, MPI_STATUS_IGNORE);
        // (x_0 + ... + x_{r-1}) + x_r: the lower ranks' partial sum first
        for (size_t i = 0; i < cnt; ++i) xs[i] = in[i] + xs[i];
      }
      if (rank_ + 1 < size_) MPI_Send(xs, int(cnt), type, rank_ + 1, kTag, comm_);
    }
    broadcast(x, n * sizeof(T), size_ - 1);
  }

  static constexpr int kTag = 0x5111;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::vector<double> in_bytes_;  // chain_sum's receive buffer (doubles: aligned for float and double)
  int rank_ = 0, size_ = 1, local_size_ = 1, local_rank_ = 0;
  bool owns_ = false;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm(long long launcher_size) { return std::make_unique<MpiComm>(launcher_size); }

}  // namespace sllm::train
