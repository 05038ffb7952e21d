#include "train/sink_probe.h"

#include <algorithm>  // std::copy, std::min, std::max
#include <string>     // std::string

#include "core/error.h"           // Error
#include "runtime/stream.h"       // sink_prefix
#include "train/train_backend.h"  // make_cpu_train_backend
#include "train/train_model.h"    // TrainModel

namespace sllm::train {

namespace {
double average(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}
}  // namespace

double SinkProbe::mean() const { return average(layer); }
double SinkProbe::extra_mean() const { return average(extra); }

plot::Heatmaps sink_heatmaps(const SinkProbe& p, const std::string& title) {
  plot::Heatmaps h;
  h.title = title;
  h.n = p.map_n;
  for (size_t l = 0; l < p.maps.size(); ++l) {
    h.names.push_back("layer " + std::to_string(l));
    h.values.push_back(p.maps[l]);
  }
  return h;
}

SinkProbe probe_sink(const Model& m, const TokenShard& shard, const SinkProbeOptions& o) {
  const ModelConfig& c = m.cfg;
  const std::vector<int32_t> prefix = sink_prefix(c);  // a learnable-sink model's k sink ids, else none
  const int64_t k = int64_t(prefix.size());
  const int64_t T = k + o.seq_len;
  if (o.seq_len < 2 || o.rows < 1 || o.map_size < 1 || o.map_size > 64)
    throw Error("sink probe: seq_len must be >= 2, rows >= 1 and map_size in [1, 64]");
  if (o.from < 0 || o.from >= T)
    throw Error("--from " + std::to_string(o.from) + " must be below the window of " + std::to_string(T));
  if (shard.size() < o.seq_len)
    throw Error(shard.path() + ": " + std::to_string(shard.size()) + " tokens, fewer than the " +
                std::to_string(o.seq_len) + " of one window (--seq-len)");
  const int64_t text_vocab = c.vocab_size - k;  // ids a text token may take (the sink ids come after)
  if (shard.vocab_size() > text_vocab)
    throw Error(shard.path() + ": vocabulary of " + std::to_string(shard.vocab_size()) +
                " does not fit the model's " + std::to_string(text_vocab) + " text tokens");

  std::vector<int32_t> ids(static_cast<size_t>(o.rows * T)), tgt(ids.size(), -1);
  for (int64_t r = 0; r < o.rows; ++r) {
    const int64_t pos = o.rows > 1 ? r * (shard.size() - o.seq_len) / (o.rows - 1) : 0;
    std::copy(prefix.begin(), prefix.end(), ids.begin() + r * T);
    shard.read(pos, o.seq_len, ids.data() + r * T + k);
  }
  auto be = make_cpu_train_backend();
  TrainModel tm(c, *be);
  tm.load_weights(m);
  int64_t n = 0;
  tm.forward_loss(ids.data(), tgt.data(), o.rows, T, &n);
  SinkProbe p;
  const int64_t first = std::max<int64_t>(1, k);  // position 0, or all k sink tokens
  p.layer = tm.first_token_attention(o.from, first);
  p.extra = tm.extra_logit_attention(o.from);
  p.maps = tm.attention_maps(o.map_size);
  p.map_n = std::min(o.map_size, T);
  for (int64_t t = o.from; t < T; ++t) p.uniform += double(std::min(first, t + 1)) / double(t + 1);  // keys 0..t
  p.uniform /= double(T - o.from);
  p.window = T;
  p.sink_tokens = k;
  return p;
}

}  // namespace sllm::train
