// streamllm trainer: a decoder-only model with parameters, gradients and the forward/backward pass.
//
// Two block types, chosen by ModelConfig: the Pythia / GPT-NeoX block (LayerNorm with biases, fused grouped QKV
// with bias, partial rotary, parallel residual, GELU MLP, untied head) and the Llama block (RMSNorm, separate
// Q/K/V with GQA, rotary, SwiGLU, optional tied head). The attention-sink variant (cfg.sink) is part of the
// attention: ZeroSink adds a zero logit to every softmax denominator, SinkLogit a learned one per head
// (`<attn>.sinks`); LearnableSink is plain attention over samples that start with the sink tokens (the data
// pipeline prepends them).
//
// Parameters live in one flat f32 array in the backend's memory, in the weight visitor's order
// (model/weights.h), so tensor names and shapes are the inference engine's: a trained model is saved with
// save_h5 and streamed by `generate`/`ppl` as it is. Gradients have the same layout. Every step is
// deterministic (see kernels/cpu/train_kernels.h).
#pragma once
#include <cstdint>     // int64_t
#include <functional>  // std::function
#include <string>      // std::string
#include <vector>   // std::vector

#include "model/config.h"        // ModelConfig
#include "model/model.h"         // Model
#include "train/train_backend.h"  // TrainBackend, DevBuf

namespace sllm::train {

// One parameter tensor in the flat array.
struct ParamInfo {
  std::string name;  // HF name, as the weight visitor gives it
  Shape shape;
  int64_t offset = 0;  // in floats
  int64_t numel = 0;
  bool matrix = false;  // 2-D: weight decay applies
};

// How a freshly initialised model is drawn (GPT-NeoX's scheme): every matrix normal(0, sqrt(2 / (5 D)))
// ("small init"), except the two projections back into the residual stream (attention output, MLP down), which
// get normal(0, 2 / (n_layers sqrt(D))) ("wang init"); norm weights 1, biases 0, sink logits 0.
struct InitOptions {
  uint64_t seed = 1234;
};

class TrainModel {
 public:
  // Throws sllm::Error when the config is not a trainable block type (GPT-NeoX with parallel residual and
  // LayerNorm, or Llama).
  TrainModel(const ModelConfig& cfg, TrainBackend& be);
  ~TrainModel();
  TrainModel(const TrainModel&) = delete;
  TrainModel& operator=(const TrainModel&) = delete;

  const ModelConfig& cfg() const { return cfg_; }
  TrainBackend& backend() const { return be_; }
  const std::vector<ParamInfo>& params_table() const { return table_; }
  int64_t n_floats() const { return n_; }
  float* params() const { return params_.get(); }
  float* grads() const { return grads_.get(); }

  void init(const InitOptions& o);
  // Copies the weights of a loaded model (any dtype; converted to f32). Shapes must match this config.
  void load_weights(const Model& m);
  // A host copy of the parameters as an inference Model (for save_h5, and for evaluation with the decoder).
  Model to_model() const;

  void zero_grads();
  // The parameters changed (optimizer step, load): cached transposes are stale.
  void params_changed() { wt_valid_ = false; }

  // One micro-batch: B rows of T tokens (ids, targets; target < 0 = no loss). Returns the mean loss over the
  // positions with a target and adds weight * d(mean loss)/d(params) to the gradients.
  double forward_backward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, float weight,
                          int64_t* n_scored = nullptr);
  // The same, but this micro-batch's gradient is computed on its own and then added to the gradients whole
  // (grads = grads + weight * g), so a step's gradient is ((g_0 + g_1) + g_2) + ... in micro-batch order: the sum
  // data-parallel ranks with one micro-batch each produce (train/comm.h). forward_backward instead accumulates
  // inside the kernels, piece by piece. Costs a second gradient buffer (allocated on first use), a zeroing and an
  // add over it.
  double forward_backward_added(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, float weight,
                                int64_t* n_scored = nullptr);
  // Forward only: the summed loss and the number of scored positions.
  double forward_loss(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, int64_t* n_scored);

  // The attention sink, measured (the paper's Fig. 2), from the q, k and log-sum-exp the last forward saved:
  // attention_probability(l, b, h, t, j) is p(query t -> key j) of head h in layer l for row b (j <= t), and
  // first_token_attention(from, count)[l] is the attention on the first `count` positions, sum over j < count of
  // p(t -> j), averaged over the rows, the heads and the queries t >= from of layer l (uniform attention would give
  // the mean of min(count, t + 1) / (t + 1)). Both throw before any forward.
  double attention_probability(int64_t layer, int64_t b, int64_t h, int64_t t, int64_t j) const;
  std::vector<double> first_token_attention(int64_t from, int64_t count = 1) const;
  // zero_sink and sink_logit: per layer, the share of attention the extra softmax logit takes (the "attend to
  // nothing" sink: exp(logit - lse)), averaged as above; empty for the other variants.
  std::vector<double> extra_logit_attention(int64_t from) const;
  // The paper's Fig. 2 maps: per layer, an n x n row-major matrix whose (t, j) entry is p(t -> j) averaged over the
  // rows and heads, for the first n positions (n clamped to the forward's T); NaN above the diagonal (j > t).
  std::vector<std::vector<double>> attention_maps(int64_t n) const;

  // FLOPs of one forward+backward over B x T tokens (matrix products 6 per multiply-add pair of each weight
  // per token, plus causal attention: 6 * 2 * T/2 * head_dim per head per token per layer).
  double flops_per_step(int64_t B, int64_t T) const;

 private:
  // One layer's q, k and log-sum-exp as the last forward saved them, on the host (train_model.cpp), and a walk
  // over the layers with them: what the sink measurements above share. Throws "<what>: no forward pass yet".
  struct SavedSoftmax;
  void for_each_layer_softmax(const char* what, const std::function<void(int64_t, const SavedSoftmax&)>& f) const;
  struct Layer;    // views of one layer's parameters and gradients
  struct Acts;     // the saved activations of one micro-batch shape
  void ensure_acts(int64_t B, int64_t T);
  void bind(ModelWeights& w, float* base) const;  // w's tensors := views of the flat array at base
  void refresh_transposes();
  double forward(const int32_t* ids_host, const int32_t* targets_host, int64_t B, int64_t T, bool train, float weight,
                 int64_t* n_scored);
  void backward(int64_t B, int64_t T);

  ModelConfig cfg_;
  TrainBackend& be_;
  std::vector<ParamInfo> table_;
  int64_t n_ = 0;
  DevBuf params_, grads_;
  DevBuf spare_;          // forward_backward_added's running sum while a micro-batch's gradient is built
  ModelWeights pw_, gw_;  // views into params_ / grads_ (visitor layout)
  // W^T of every matrix used in a dX product, rebuilt lazily after the parameters change.
  DevBuf wt_;
  std::vector<std::pair<const float*, float*>> wt_map_;  // (W, W^T)
  bool wt_valid_ = false;
  DevBuf zero_logit_;  // (H) zeros for ZeroSink
  Acts* acts_ = nullptr;
  const float* wt_of(const Tensor& w) const;
};

}  // namespace sllm::train
