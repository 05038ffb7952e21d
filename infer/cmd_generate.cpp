// `streamllm generate`: a prompt in, tokens streamed to stdout as they are produced, in constant memory. A
// learnable-sink model's stream starts with its sink tokens, then the prompt without a BOS (as it was trained; see
// runtime/stream.h); the sink tokens are never printed or sampled.
#include <algorithm>  // std::find
#include <atomic>   // std::atomic
#include <chrono>   // std::chrono
#include <csignal>  // std::signal
#include <cstdio>   // std::fputs

#include "core/error.h"        // Error
#include "infer/common.h"
#include "model/decoder.h"     // Decoder
#include "ops/backend.h"       // cpu_backend
#include "runtime/kv_cache.h"  // KVCache
#include "runtime/stream.h"    // Sampler, parse_cache_mode, sink_prefix
#include "runtime/sysinfo.h"   // peak_rss_bytes

namespace sllm::cli {

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop = true; }

struct GenArgs {
  ModelArgs m;
  std::string prompt, prompt_file, cache = "streaming", kv_dtype = "f32";
  int64_t n = 256, sinks = -1, window = 1020, chunk = 256, ctx = 4096;  // sinks -1: the model's default
  SamplerOptions s;
  bool ignore_eos = false, quiet = false;
};

double secs(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

void run(const GenArgs& a) {
  if (a.prompt.empty() == a.prompt_file.empty()) throw Error("give the prompt with exactly one of -p or -f");
  Loaded l = load(a.m, true);
  const Tokenizer& tok = *l.tok;
  const std::string text = a.prompt.empty() ? read_file_or_throw(a.prompt_file) : a.prompt;
  const ModelConfig& cfg = l.model.cfg;
  const std::vector<int32_t> sink_ids = sink_prefix(cfg);
  const std::vector<int32_t> text_ids = tok.encode(text, sink_ids.empty());  // sink-token models: no BOS
  if (text_ids.empty()) throw Error("the prompt encodes to no tokens");
  std::vector<int32_t> ids = sink_ids;
  ids.insert(ids.end(), text_ids.begin(), text_ids.end());

  const CacheMode mode = parse_cache_mode(a.cache);
  if (mode == CacheMode::Recompute) throw Error("--cache recompute is a perplexity baseline; use it with `ppl`");
  int64_t S = cache_sinks(cfg, a.sinks), R = a.window;
  if (mode == CacheMode::Streaming && a.sinks >= 0 && !sinks_note(cfg, S).empty())
    std::fprintf(stderr, "[streamllm] %s\n", sinks_note(cfg, S).c_str());
  if (mode == CacheMode::Window) S = 0;
  if (mode == CacheMode::Dense) {
    S = 0;
    R = a.ctx;
  }
  Backend& be = backend_for(a.m);
  Decoder dec(l.model, be, a.chunk);
  KVCache cache(be, cfg, S, R, a.chunk, parse_dtype(a.kv_dtype));
  Sampler sampler(a.s);
  StreamDecoder out(tok);
  const int64_t V = sample_vocab(cfg);  // the sink tokens are never sampled
  // Stop on the tokenizer's end-of-sequence tokens (eos, <|im_end|>, <|eot_id|>...) and the config's eos.
  std::vector<int32_t> stops = tok.stop_ids();
  if (tok.eos_id() >= 0) stops.push_back(tok.eos_id());
  if (cfg.eos_id >= 0) stops.push_back(int32_t(cfg.eos_id));
  auto is_stop = [&](int32_t id) { return std::find(stops.begin(), stops.end(), id) != stops.end(); };
  auto room = [&](int64_t more) {
    if (mode == CacheMode::Dense && cache.n_past() + more > R)
      throw Error("dense cache full at " + std::to_string(R) + " tokens (raise --ctx, or use --cache streaming)");
  };

  std::signal(SIGINT, on_sigint);
  if (!a.quiet) std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  const auto t_pre = std::chrono::steady_clock::now();
  const float* logits = nullptr;
  for (size_t i = 0; i < ids.size(); i += size_t(a.chunk)) {
    const int64_t T = std::min<int64_t>(a.chunk, int64_t(ids.size() - i));
    room(T);
    logits = dec.forward(ids.data() + i, T, cache, Logits::LastOnDevice);
  }
  const double pre_s = secs(t_pre);
  const auto t_dec = std::chrono::steady_clock::now();
  int64_t produced = 0;
  while ((a.n < 0 || produced < a.n) && !g_stop) {
    const int32_t next = sampler.sample(be, logits, V);  // on a GPU only the id crosses to the host
    ++produced;
    if (is_stop(next) && !a.ignore_eos) break;
    const std::string piece = out.push(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (a.n >= 0 && produced >= a.n) break;
    room(1);
    logits = dec.forward(&next, 1, cache, Logits::LastOnDevice);
  }
  const std::string rest = out.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  const double dec_s = secs(t_dec);
  std::fprintf(stderr,
               "[streamllm] prompt %zu tok%s, %.1f tok/s | generated %lld tok, %.2f tok/s | cache %s %lld+%lld "
               "(%s, holds %lld) | peak rss %s%s\n",
               text_ids.size(), sink_ids.empty() ? "" : (" + " + std::to_string(sink_ids.size()) + " sink").c_str(),
               double(ids.size()) / pre_s, (long long)produced, double(produced) / dec_s,
               cache_mode_name(mode), (long long)S, (long long)R, human_bytes(double(cache.bytes())).c_str(),
               (long long)cache.held(), human_bytes(double(peak_rss_bytes())).c_str(),
               g_stop ? " | interrupted" : "");
}

}  // namespace

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt, streaming tokens to stdout (runs forever with -n -1)");
  auto a = std::make_shared<GenArgs>();
  add_model_args(*cmd, a->m);
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text");
  cmd->add_option("-f,--file", a->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  cmd->add_option("-n,--n-predict", a->n, "Tokens to generate (-1 = until stopped, in constant memory)")
      ->check(CLI::Range(int64_t(-1), int64_t(1) << 62));
  cmd->add_option("--cache", a->cache,
                  "Cache policy: streaming, window or dense (a sink-token model's sink tokens are fed first under "
                  "each; window evicts them like any token)")
      ->check(CLI::IsMember({"dense", "window", "streaming", "recompute"}));
  cmd->add_option("--sinks", a->sinks,
                  "Attention-sink tokens kept (default: a sink-token model's own sink tokens, else 4)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--window", a->window, "Recent tokens kept")->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--ctx", a->ctx, "Capacity of the dense cache")->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--chunk", a->chunk, "Prompt tokens per forward pass")->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache element type: f32 or f16 (half the memory and reads)")
      ->check(CLI::IsMember({"f32", "f16"}));
  cmd->add_option("--temp", a->s.temperature, "Temperature (0 = greedy)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", a->s.top_k, "Top-k (0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->s.top_p, "Top-p nucleus (1 = off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--min-p", a->s.min_p, "Min-p (0 = off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("-s,--seed", a->s.seed, "Sampling seed");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->add_flag("-q,--quiet", a->quiet, "Do not echo the prompt");
  cmd->callback([a] { run(*a); });
}

}  // namespace sllm::cli
