// bench_train: training throughput on the CPU — tokens/s and achieved GFLOP/s of full optimizer steps
// (forward, backward, gradient norm, AdamW) for a GPT-2-124M-shaped model and the Pythia-160M config at batch
// 4 x 64 tokens (llm.c's CPU trainer's shape), with random weights and random tokens (step time does not depend
// on values). With --llmc TOK_PER_S (measured in the same run by bench/llmc_baseline.sh, see
// bench/train_vs_llmc.sh) the table gets llm.c's row and our speed-up over it.
//
// FLOPs are counted as llm.c counts them: 6 per weight per token for the matrix products (forward 2, backward
// 4; the embedding lookup is not a product, the head is) plus 6 * layers * T * d_model per token for causal
// attention's two products.
//
// Usage: bench_train [--steps N] [--threads N] [--llmc TOK_PER_S] [--quick]
#include <omp.h>  // omp_set_num_threads, omp_get_max_threads

#include <algorithm>  // std::sort
#include <chrono>     // std::chrono
#include <cstdio>     // std::printf
#include <cstring>    // std::strcmp
#include <exception>  // std::exception
#include <string>     // std::string
#include <vector>     // std::vector

#include "train/optimizer.h"    // AdamW
#include "train/rng.h"          // Rng
#include "train/train_model.h"  // TrainModel

using namespace sllm;
using namespace sllm::train;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

ModelConfig neox(int64_t vocab, int64_t d, int64_t layers, int64_t heads, double rot_pct, int64_t sink_tokens) {
  ModelConfig c;
  c.family = Family::GPTNeoX;
  c.model_type = "gpt_neox";
  c.vocab_size = vocab + sink_tokens;
  c.hidden = d;
  c.n_layers = layers;
  c.n_heads = c.n_kv_heads = heads;
  c.head_dim = d / heads;
  c.ffn = 4 * d;
  c.norm = NormKind::LayerNorm;
  c.mlp = MlpKind::GeluErf;
  c.parallel_residual = true;
  c.qkv = QkvLayout::Grouped;
  c.rot_dims = int64_t(double(c.head_dim) * rot_pct) / 2 * 2;
  if (sink_tokens > 0) {
    c.sink = SinkKind::LearnableSink;
    c.sink_tokens = sink_tokens;
  }
  return c;
}

struct Row {
  std::string name;
  double params_m, tok_s, gflops, fwd_ms, step_ms;
};

Row run(const std::string& name, const ModelConfig& c, int64_t B, int64_t L, int steps, const std::string& device) {
  auto be = make_train_backend(device);
  TrainModel m(c, *be);
  m.init({1});
  AdamW opt(m, {});
  const int64_t T = L + c.sink_tokens;
  Rng rng(7);
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  auto batch = [&] {
    for (int64_t r = 0; r < B; ++r)
      for (int64_t t = 0; t < T; ++t) {
        const bool sink = t < c.sink_tokens;
        ids[size_t(r * T + t)] = sink ? int32_t(c.first_sink_id() + t) : int32_t(rng.below(uint64_t(c.first_sink_id())));
        tgt[size_t(r * T + t)] = sink ? -1 : int32_t(rng.below(uint64_t(c.first_sink_id())));
      }
  };
  std::vector<double> step_t, fwd_t;
  for (int s = 0; s < steps + 2; ++s) {  // two warm-up steps (page faults, first transposes)
    batch();
    const double t0 = now();
    m.zero_grads();
    m.forward_backward(ids.data(), tgt.data(), B, T, 1.0f);
    opt.step(1e-4, opt.grad_norm());
    be->sync();
    const double t1 = now();
    int64_t n = 0;
    m.forward_loss(ids.data(), tgt.data(), B, T, &n);
    be->sync();
    const double t2 = now();
    if (s >= 2) {
      step_t.push_back(t1 - t0);
      fwd_t.push_back(t2 - t1);
    }
  }
  const double st = median(step_t);
  const double tokens = double(B * L);  // text tokens per step (the sink token is not data)
  return {name, double(m.n_floats()) / 1e6, tokens / st, m.flops_per_step(B, T) / st / 1e9, median(fwd_t) * 1e3,
          st * 1e3};
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 5, threads = 0;
  int64_t B = 4, L = 64;
  double llmc = 0;
  bool quick = false;
  std::string device = "cpu";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--llmc") && i + 1 < argc) llmc = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) B = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--seq") && i + 1 < argc) L = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else {
      std::fprintf(stderr, "usage: bench_train [--steps N] [--threads N] [--batch B] [--seq L] [--device cpu|cuda] "
                           "[--llmc TOK_PER_S] [--quick]\n");
      return 2;
    }
  }
  if (steps < 1 || B < 1 || L < 2) {
    std::fprintf(stderr, "bench_train: --steps, --batch must be >= 1 and --seq >= 2\n");
    return 2;
  }
  if (threads > 0) omp_set_num_threads(threads);
  std::printf("bench_train: %s, %d threads, batch %lld x %lld tokens, median of %d steps (after 2 warm-up steps)\n\n",
              device.c_str(), omp_get_max_threads(), (long long)B, (long long)L, steps);
  std::vector<Row> rows;
  try {
    if (quick) {
      rows.push_back(run("tiny gpt_neox (d 128, 4 layers)", neox(4096, 128, 4, 4, 0.25, 0), B, L, steps, device));
    } else {
      rows.push_back(
          run("GPT-2-124M shape (gpt_neox block)", neox(50257, 768, 12, 12, 0.25, 0), B, L, steps, device));
      rows.push_back(run("Pythia-160M + 1 sink token", neox(50304, 768, 12, 12, 0.25, 1), B, L, steps, device));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  std::printf("| model | params | step | forward | tokens/s | GFLOP/s | vs llm.c |\n|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    char vs[32] = "-";
    if (llmc > 0) std::snprintf(vs, sizeof vs, "%.2fx", r.tok_s / llmc);
    std::printf("| %s | %.1fM | %.0f ms | %.0f ms | %.1f | %.1f | %s |\n", r.name.c_str(), r.params_m, r.step_ms,
                r.fwd_ms, r.tok_s, r.gflops, vs);
  }
  if (llmc > 0) std::printf("| llm.c train_gpt2 (GPT-2 124M, same shape) | 124.4M | %.0f ms | - | %.1f | - | 1.00x |\n",
                            256.0 / llmc * 1e3, llmc);  // llm.c's own shape, 4 x 64
  return 0;
}
