// Does a model have an attention sink? The paper's Fig. 2 quantity, measured: per layer, the attention that the
// queries of a training-shaped window give to its first position (to its k sink tokens, for a learnable-sink
// model), against what uniform attention would give.
// Windows are cut from a token shard of `streamllm data` as the trainer cuts them (a learnable-sink model's k sink
// tokens first, then seq_len text tokens), evenly spaced over the shard. `streamllm sinks` prints it; `streamllm
// ablate` puts it next to every run's perplexities.
#pragma once
#include <cstdint>  // int64_t
#include <vector>   // std::vector

#include <string>   // std::string

#include "model/model.h"       // Model
#include "train/plot.h"        // plot::Heatmaps
#include "train/token_data.h"  // TokenShard

namespace sllm::train {

struct SinkProbeOptions {
  int64_t seq_len = 256;  // text tokens per window (after a learnable-sink model's sink tokens)
  int64_t rows = 8;       // windows, evenly spaced over the shard
  int64_t from = 16;      // average over query positions >= from (early queries have few keys to choose from)
  int64_t map_size = 16;  // the attention maps cover the first map_size positions (clamped to the window)
};

struct SinkProbe {
  std::vector<double> layer;  // attention on the first token per layer (all k sink tokens of a learnable_sink:k
                              // model), averaged over windows, heads and queries
  std::vector<double> extra;  // zero_sink, sink_logit: the extra softmax logit's share per layer (else empty)
  std::vector<std::vector<double>> maps;  // per layer, the mean attention map of the first positions (Fig. 2):
                                          // map_n x map_n row-major, (query t, key j), NaN for j > t
  int64_t map_n = 0;
  double uniform = 0;         // plain softmax spread evenly over the admitted keys would give this
  int64_t window = 0;         // tokens per window: sink tokens + seq_len
  int64_t sink_tokens = 0;    // learnable sink tokens at the start of each window (what `layer` measures)
  double mean() const;        // over layers
  double extra_mean() const;  // over layers (0 when there is no extra logit)
  double x_uniform() const { return mean() / uniform; }
};

// The maps as a plot: one panel per layer.
plot::Heatmaps sink_heatmaps(const SinkProbe& p, const std::string& title);

// Throws sllm::Error naming the problem: a model the trainer cannot run (not a GPT-NeoX or Llama block), from
// outside the window, a shard shorter than seq_len, or a shard vocabulary larger than the model's text vocabulary.
SinkProbe probe_sink(const Model& m, const TokenShard& shard, const SinkProbeOptions& o);

}  // namespace sllm::train
