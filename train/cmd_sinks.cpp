// `streamllm sinks -m MODEL --data DIR`: does the model have an attention sink? Per layer, the attention that
// queries give to the first position of a training-shaped window (the paper's Fig. 2 quantity), next to what
// uniform attention would give. Windows are cut from a token shard of `streamllm data` as the trainer cuts them:
// a learnable-sink model's k sink tokens first, then seq-len text tokens.
#include <omp.h>  // omp_set_num_threads

#include <algorithm>  // std::copy
#include <cstdio>     // std::printf
#include <string>     // std::string
#include <vector>     // std::vector

#include "core/error.h"  // Error
#include "infer/common.h"
#include "model/bundle.h"         // load_bundle
#include "runtime/stream.h"       // sink_prefix
#include "train/token_data.h"     // TokenShard
#include "train/train_backend.h"  // make_cpu_train_backend
#include "train/train_model.h"    // TrainModel

namespace sllm::cli {

namespace {

struct SinksArgs {
  std::string model, data, split = "val";
  int64_t seq_len = 256, rows = 8, from = 16;
  int threads = 0;
};

void run(const SinksArgs& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  const ModelBundle b = load_bundle(a.model);
  const ModelConfig& c = b.model.cfg;
  const std::vector<int32_t> prefix = sink_prefix(c);  // a learnable-sink model's k sink ids, else none
  const int64_t k = int64_t(prefix.size());
  const int64_t T = k + a.seq_len;
  if (a.from >= T)
    throw Error("--from " + std::to_string(a.from) + " must be below the window of " + std::to_string(T));
  const train::TokenShard shard = train::TokenShard::open(a.data + "/" + a.split + ".bin");
  if (shard.size() < a.seq_len)
    throw Error(shard.path() + ": " + std::to_string(shard.size()) + " tokens, fewer than --seq-len " +
                std::to_string(a.seq_len));
  const int64_t text_vocab = c.vocab_size - k;  // ids a text token may take (the sink ids come after)
  if (shard.vocab_size() > text_vocab)
    throw Error(shard.path() + ": vocabulary of " + std::to_string(shard.vocab_size()) +
                " does not fit the model's " + std::to_string(text_vocab) + " text tokens");

  // Windows evenly spaced over the shard.
  std::vector<int32_t> ids(static_cast<size_t>(a.rows * T)), tgt(ids.size(), -1);
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t pos = a.rows > 1 ? r * (shard.size() - a.seq_len) / (a.rows - 1) : 0;
    std::copy(prefix.begin(), prefix.end(), ids.begin() + r * T);
    shard.read(pos, a.seq_len, ids.data() + r * T + k);
  }
  auto be = train::make_cpu_train_backend();
  train::TrainModel m(c, *be);
  m.load_weights(b.model);
  int64_t n = 0;
  m.forward_loss(ids.data(), tgt.data(), a.rows, T, &n);
  const std::vector<double> first = m.first_token_attention(a.from);
  double uniform = 0;  // plain softmax spread evenly over the t + 1 admitted keys
  for (int64_t t = a.from; t < T; ++t) uniform += 1.0 / double(t + 1);
  uniform /= double(T - a.from);

  std::printf("%s: %s block, %s, %lld layers; %lld windows of %lld tokens from %s (positions %lld..%lld averaged)\n",
              a.model.c_str(), family_name(c.family), sink_name(c.sink), (long long)c.n_layers, (long long)a.rows,
              (long long)T, shard.path().c_str(), (long long)a.from, (long long)(T - 1));
  std::printf("\n| layer | attention on position 0 | x uniform |\n|---|---|---|\n");
  double mean = 0;
  for (size_t l = 0; l < first.size(); ++l) {
    std::printf("| %zu | %.4f | %.1f |\n", l, first[l], first[l] / uniform);
    mean += first[l];
  }
  mean /= double(first.size());
  std::printf("| mean | %.4f | %.1f |\n\nuniform attention would give %.4f on position 0%s\n", mean, mean / uniform,
              uniform, k > 0 ? " (position 0 is the first sink token)" : "");
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
  sub->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  sub->callback([a] { run(*a); });
}

}  // namespace sllm::cli
