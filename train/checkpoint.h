// streamllm trainer: checkpoints — a native .h5 model file (config, tokenizer, f32 weights; loadable by
// `generate`/`ppl` as it is) plus the training state, written atomically in one file (docs/format.md):
//   /optimizer/m, /optimizer/v   AdamW moments, f32, the model's flat parameter layout (n)
//   /train                       attributes: step, data_pos, epoch, rng (four hex words), adam_steps, and the
//                                string dataset options.json (the run's options, checked on resume)
// Nothing that is not finite is ever written: the trainer checks the loss and gradients before every step.
#pragma once
#include <array>    // std::array
#include <cstdint>  // int64_t, uint64_t
#include <string>   // std::string
#include <vector>   // std::vector

#include "model/bundle.h"       // ModelBundle
#include "train/optimizer.h"    // AdamW
#include "train/train_model.h"  // TrainModel

namespace sllm::train {

struct TrainState {
  int64_t step = 0;      // optimizer steps completed
  int64_t data_pos = 0;  // next token of the training shard (sequential sampling)
  int64_t epoch = 0;     // completed passes over the training shard
  std::array<uint64_t, 4> rng{};
  std::string options_json;  // the options of the run that wrote it
};

void save_checkpoint(const std::string& path, const TrainModel& m, const AdamW& opt, const TrainState& st,
                     const std::string& tokenizer_json);

// Reads the training state of a checkpoint into an optimizer whose model has already been loaded from the same
// file (load_bundle + TrainModel::load_weights). Throws sllm::Error naming the file and object.
TrainState load_checkpoint_state(const std::string& path, AdamW& opt, int64_t n_floats);

// Checkpoint files of a run directory, oldest first: <dir>/ckpt-<step, 8 digits>.h5.
std::vector<std::string> list_checkpoints(const std::string& dir);
std::string checkpoint_path(const std::string& dir, int64_t step);
// Deletes the temporary files of checkpoints whose writing was killed (ckpt-<step>.h5.tmp.<pid> of a process
// that no longer runs; a complete checkpoint is renamed into place, so these are never needed). Returns how many.
int remove_unfinished_checkpoints(const std::string& dir);
// Deletes all but the newest `keep` checkpoints (keep <= 0: keeps all).
void prune_checkpoints(const std::string& dir, int keep);

}  // namespace sllm::train
