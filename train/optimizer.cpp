#include "train/optimizer.h"

#include <cmath>  // std::sqrt, std::pow

namespace sllm::train {

AdamW::AdamW(TrainModel& model, const AdamWOptions& o)
    : model_(model),
      o_(o),
      m_(model.backend(), size_t(model.n_floats())),
      v_(model.backend(), size_t(model.n_floats())) {
  // Consecutive parameters with the same decay rule form one segment (few kernel calls per step).
  for (const ParamInfo& p : model.params_table()) {
    if (!segs_.empty() && segs_.back().decay == p.matrix && segs_.back().offset + segs_.back().numel == p.offset)
      segs_.back().numel += p.numel;
    else
      segs_.push_back({p.offset, p.numel, p.matrix});
  }
}

double AdamW::grad_norm() const {
  return std::sqrt(model_.backend().sum_squares(model_.grads(), model_.n_floats()));
}

void AdamW::step(double lr, double norm) {
  TrainBackend& be = model_.backend();
  if (o_.clip > 0) {
    const double coef = o_.clip / (norm + 1e-6);
    if (coef < 1.0) be.scale(model_.grads(), model_.n_floats(), float(coef));
  }
  ++t_;
  const double bc1 = 1.0 - std::pow(double(o_.beta1), double(t_));
  const double bc2 = 1.0 - std::pow(double(o_.beta2), double(t_));
  for (const Segment& s : segs_)
    be.adamw(model_.params() + s.offset, model_.grads() + s.offset, m_.get() + s.offset, v_.get() + s.offset, s.numel,
             float(lr), o_.beta1, o_.beta2, o_.eps, s.decay ? o_.weight_decay : 0.0f, bc1, bc2);
  model_.params_changed();
}

}  // namespace sllm::train
