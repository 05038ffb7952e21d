// streamllm trainer: the training run — data sampling, the step loop, validation, checkpoints, resume, logging.
//
// A run lives in one output directory: ckpt-<step>.h5 checkpoints (keep-last-N), metrics.jsonl (one JSON
// object per step and per validation), options.json, and model.h5 (the final weights) at the end. `resume`
// continues from the newest checkpoint bit-identically: parameters, AdamW moments, step, the sampler's RNG
// state and data position all come back, and every kernel is deterministic (kernels/cpu/train_kernels.h).
#pragma once
#include <atomic>      // std::atomic
#include <cstdint>     // int64_t
#include <functional>  // std::function
#include <memory>      // std::unique_ptr
#include <string>      // std::string

#include "model/config.h"  // ModelConfig

namespace sllm::train {

struct TrainOptions {
  // ---- model ----
  std::string family = "gpt_neox";  // gpt_neox (Pythia block) | llama
  int64_t hidden = 128, layers = 4, heads = 4;
  int64_t kv_heads = 0;    // llama GQA; 0 = heads
  int64_t ffn = 0;         // 0 = 4 * hidden (gpt_neox) or 8/3 * hidden rounded up to 32 (llama)
  double rotary_pct = -1;  // fraction of head dims rotated; < 0 = 0.25 (gpt_neox, Pythia) or 1 (llama)
  double rope_theta = 10000;
  bool tied_head = false;  // llama only
  std::string sink = "vanilla";  // vanilla | zero_sink | learnable_sink | sink_logit
  int64_t sink_tokens = 1;       // learnable_sink: number of sink tokens prepended to every sample
  // ---- data ----
  std::string data;        // directory written by `streamllm data` (train.bin, val.bin, tokenizer.json)
  int64_t seq_len = 256;   // text tokens per sample (the sink tokens come on top)
  int64_t batch = 8;       // samples per micro-batch
  int64_t accum = 1;       // micro-batches per optimizer step (over all ranks of a data-parallel run)
  bool shuffle = true;     // random windows (seeded) instead of consecutive ones
  // ---- optimisation ----
  int64_t steps = 1000;
  double lr = 1e-3, min_lr_ratio = 0.1;
  int64_t warmup = 100;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
  uint64_t seed = 1234;
  // ---- evaluation, checkpoints, logging ----
  int64_t eval_every = 100;     // 0 = only at the end
  int64_t eval_tokens = 16384;  // validation tokens per evaluation (consecutive windows from the start)
  int64_t save_every = 100;     // 0 = only at the end (and on SIGINT/SIGTERM)
  int keep = 3;                 // checkpoints kept (0 = all)
  std::string out = "runs/train";
  bool resume = false;
  int threads = 0;              // 0 = all cores
  std::string device = "cpu";   // cpu | cuda | cuda:N (a data-parallel rank's "cuda" is the GPU of its local rank)
  int64_t log_every = 1;
  bool quiet = false;           // no per-step lines (the summary still prints)

  // The model configuration these options describe, for a tokenizer of `text_vocab` ids. Throws sllm::Error
  // naming the option when a value is out of range.
  ModelConfig model_config(int64_t text_vocab) const;
  // Checks every option (ranges, combinations); throws sllm::Error "--<option>: <what>".
  void validate() const;
  std::string to_json() const;
};

struct TrainResult {
  int64_t steps = 0;          // optimizer steps completed (in total, including before a resume)
  double last_loss = 0;       // training loss of the last step
  double val_loss = 0;        // final validation loss (mean per token)
  double tokens_per_s = 0;    // training throughput of this invocation
  bool interrupted = false;   // stopped by SIGINT/SIGTERM (a checkpoint was written)
  std::string checkpoint;     // the last checkpoint written
  std::string model;          // the final model file (empty when interrupted)
};

// Set by the signal handler (or a test) to stop after the current step with a checkpoint. run_training does not
// clear it (a signal during the set-up still counts); install_stop_handlers does.
std::atomic<bool>& stop_flag();
// Clears stop_flag() and installs SIGINT/SIGTERM/SIGUSR1 handlers that set it (a second signal more than a second
// later exits at once). Under mpirun, SIGUSR1 is the one to send: OpenMPI forwards it to every rank, and the ranks
// stop together at the first step any of them saw it (Ctrl-C or SIGTERM make OpenMPI 4.1 kill the ranks about a
// second later, whatever they are doing).
void install_stop_handlers();

class Comm;          // train/comm.h
class TrainBackend;  // train/train_backend.h

// Runs (or resumes) training. `stop_after` > 0 stops like a signal once that many optimizer steps are done in
// total (tests use it to interrupt a run deterministically).
TrainResult run_training(const TrainOptions& o, int64_t stop_after = 0);
// The same as one rank of a data-parallel run (train/comm.h): every rank calls it with the same options; each
// computes --accum / ranks of a step's micro-batches, rank 0 writes the files and prints. Every rank returns the
// same result. Errors that all ranks see are thrown as SharedError on every rank.
TrainResult run_training(const TrainOptions& o, Comm& comm, int64_t stop_after = 0);
// The same on a backend made by `make_backend` instead of the one o.device names (an embedding program's own
// backend; the tests' device-like CPU backend).
TrainResult run_training(const TrainOptions& o, Comm& comm, int64_t stop_after,
                         const std::function<std::unique_ptr<TrainBackend>()>& make_backend);

}  // namespace sllm::train
