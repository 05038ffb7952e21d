// `streamllm sinks -m MODEL --data DIR`: does the model have an attention sink? Per layer, the attention that
// queries give to the first position of a training-shaped window (the paper's Fig. 2 quantity), next to what
// uniform attention would give. Windows are cut from a token shard of `streamllm data` as the trainer cuts them:
// a learnable-sink model's k sink tokens first, then seq-len text tokens.
#include <omp.h>  // omp_set_num_threads

#include <cstdio>  // std::printf
#include <memory>  // std::make_shared
#include <string>  // std::string
#include <vector>  // std::vector

#include "core/error.h"  // Error

#include "infer/common.h"
#include "train/plot.h"          // plot::write_heatmaps_svg
#include "model/bundle.h"        // load_bundle
#include "train/sink_probe.h"    // probe_sink
#include "train/token_data.h"    // TokenShard

namespace sllm::cli {

namespace {

struct SinksArgs {
  std::string model, data, split = "val", svg;
  int64_t seq_len = 256, rows = 8, from = 16;
  std::vector<int64_t> layers;  // --svg panels (default: every layer)
  int threads = 0;
};

void run(const SinksArgs& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  const ModelBundle b = load_bundle(a.model);
  const ModelConfig& c = b.model.cfg;
  for (int64_t l : a.layers)
    if (l < 0 || l >= c.n_layers)
      throw Error("--layers: " + std::to_string(l) + " is not a layer of this " + std::to_string(c.n_layers) +
                  "-layer model");
  const train::TokenShard shard = train::TokenShard::open(a.data + "/" + a.split + ".bin");
  train::SinkProbeOptions o;
  o.seq_len = a.seq_len;
  o.rows = a.rows;
  o.from = a.from;
  const train::SinkProbe p = train::probe_sink(b.model, shard, o);

  std::printf("%s: %s block, %s, %lld layers; %lld windows of %lld tokens from %s (positions %lld..%lld averaged)\n",
              a.model.c_str(), family_name(c.family), sink_name(c.sink), (long long)c.n_layers, (long long)a.rows,
              (long long)p.window, shard.path().c_str(), (long long)a.from, (long long)(p.window - 1));
  const bool extra = !p.extra.empty();  // zero_sink, sink_logit: the extra logit is a sink of its own
  const std::string what = p.sink_tokens > 1   ? "the " + std::to_string(p.sink_tokens) + " sink tokens"
                           : p.sink_tokens == 1 ? "the sink token (position 0)"
                                                : "position 0";
  std::printf("\n| layer | attention on %s | x uniform |%s\n|---|---|---|%s\n", what.c_str(),
              extra ? " attention on the extra logit |" : "", extra ? "---|" : "");
  for (size_t l = 0; l <= p.layer.size(); ++l) {
    const bool mean = l == p.layer.size();
    const double a = mean ? p.mean() : p.layer[l];
    std::printf("| %s | %.4f | %.1f |", mean ? "mean" : std::to_string(l).c_str(), a, a / p.uniform);
    if (extra) std::printf(" %.4f |", mean ? p.extra_mean() : p.extra[l]);
    std::printf("\n");
  }
  std::printf("\nuniform attention would give %.4f on %s\n", p.uniform, what.c_str());
  if (!a.svg.empty()) {
    plot::Heatmaps h = train::sink_heatmaps(p, "attention over the first " + std::to_string(p.map_n) +
                                                   " positions (mean over windows and heads): " + sink_name(c.sink));
    if (!a.layers.empty()) {
      plot::Heatmaps keep = h;
      keep.names.clear();
      keep.values.clear();
      for (int64_t l : a.layers) {
        keep.names.push_back(h.names[size_t(l)]);
        keep.values.push_back(h.values[size_t(l)]);
      }
      h = keep;
    }
    plot::write_heatmaps_svg(h, a.svg);
    std::printf("attention maps: %s\n", a.svg.c_str());
  }
}

}  // namespace

void register_sinks(CLI::App& app) {
  auto a = std::make_shared<SinksArgs>();
  CLI::App* sub = app.add_subcommand(
      "sinks",
      "Measure the attention sink: per layer, the attention queries give to the first position of a window (the "
      "paper's Fig. 2), against uniform attention");
  sub->add_option("-m,--model", a->model, "A trainable model: a streamllm .h5 (or HF directory) of a GPT-NeoX or "
                                          "Llama block")
      ->required();
  sub->add_option("--data", a->data, "Data directory from `streamllm data`")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--split", a->split, "Shard to cut windows from: val or train")
      ->check(CLI::IsMember({"val", "train"}));
  sub->add_option("--seq-len", a->seq_len, "Text tokens per window (after a learnable-sink model's sink tokens)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  sub->add_option("--rows", a->rows, "Windows, evenly spaced over the shard")
      ->check(CLI::Range(int64_t(1), int64_t(4096)));
  sub->add_option("--from", a->from, "Average over query positions >= this (early queries have few keys to choose)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--svg", a->svg, "Also write each layer's attention map over the first 16 positions (the "
                                    "paper's Fig. 2) to this SVG file");
  sub->add_option("--layers", a->layers, "With --svg: only these layers' maps (comma list; default all)")
      ->delimiter(',');
  sub->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  sub->callback([a] { run(*a); });
}

}  // namespace sllm::cli
