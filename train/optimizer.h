// streamllm trainer: AdamW with decoupled weight decay on matrices only, and global-norm gradient clipping.
//
// Matches torch.optim.AdamW + torch.nn.utils.clip_grad_norm_ (the golden test checks ten steps against them).
// The moments live in the backend's memory in the model's flat layout, so a checkpoint stores them as two arrays.
#pragma once
#include <cstdint>  // int64_t

#include "train/train_model.h"  // TrainModel

namespace sllm::train {

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // applied to 2-D parameters (matrices, embeddings included); never to norms,
                              // biases or sink logits
  double clip = 1.0;          // global L2 norm; 0 = no clipping
};

class AdamW {
 public:
  AdamW(TrainModel& model, const AdamWOptions& o);

  // Global L2 norm of the gradients (double accumulation).
  double grad_norm() const;
  // Clips the gradients to the global norm `clip` (coefficient min(1, clip / (norm + 1e-6)), as torch does), then
  // takes one AdamW step at learning rate lr and tells the model its parameters changed. `norm` is grad_norm().
  void step(double lr, double norm);

  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  float* m() const { return m_.get(); }
  float* v() const { return v_.get(); }
  const AdamWOptions& options() const { return o_; }
  TrainBackend* backend() const { return &model_.backend(); }

 private:
  struct Segment {
    int64_t offset, numel;
    bool decay;
  };
  TrainModel& model_;
  AdamWOptions o_;
  DevBuf m_, v_;
  std::vector<Segment> segs_;
  int64_t t_ = 0;
};

}  // namespace sllm::train
