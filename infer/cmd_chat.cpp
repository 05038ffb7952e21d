// `streamllm chat`: a multi-turn conversation in the model's chat format, streamed through the StreamingLLM cache
// (evicting per token, during and between turns, so it can go on forever). Reads one user message per line from
// stdin; `/exit` or end of input ends it. A learnable-sink model's conversation starts with its sink tokens, which the
// cache keeps as its sinks by default.
#include <cstdio>    // std::printf, std::fflush
#include <iostream>  // std::cin, std::getline
#include <unistd.h>  // isatty

#include "core/error.h"             // Error
#include "infer/common.h"
#include "ops/backend.h"            // cpu_backend
#include "runtime/chat_session.h"   // ChatSession
#include "runtime/sysinfo.h"        // peak_rss_bytes

namespace sllm::cli {

namespace {

struct ChatArgs {
  ModelArgs m;
  ChatOptions o;
  std::string format, system, kv_dtype = "f32";
  bool stats = false;
};

void run(ChatArgs& a) {
  Loaded l = load(a.m, true);
  a.o.format = a.format.empty() ? chat_format_from_template(l.chat_template) : ChatFormat{parse_chat_style(a.format), ""};
  if (!a.format.empty() && a.o.format.style == ChatStyle::ChatML)
    a.o.format.default_system = chat_format_from_template(l.chat_template).default_system;
  a.o.system = a.system;
  a.o.kv_dtype = parse_dtype(a.kv_dtype);
  if (a.o.sinks >= 0 && !sinks_note(l.model.cfg, a.o.sinks).empty())
    std::fprintf(stderr, "[streamllm chat] %s\n", sinks_note(l.model.cfg, a.o.sinks).c_str());
  ChatSession chat(l.model, *l.tok, backend_for(a.m), a.o);
  const bool tty = isatty(0);
  std::fprintf(stderr, "[streamllm chat] format %s, cache %lld sinks + %lld recent; /exit or Ctrl-D ends\n",
               chat_style_name(a.o.format.style), (long long)chat.cache().geometry().sinks, (long long)a.o.window);
  std::string line;
  while (true) {
    if (tty) std::printf("> "), std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (!tty) std::printf("> %s\n", line.c_str());
    chat.send(line, [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    std::printf("\n");
    std::fflush(stdout);
    if (a.stats)
      std::fprintf(stderr, "[turn %lld: %lld tokens streamed, %lld held, cache %s, peak rss %s]\n",
                   (long long)chat.turns(), (long long)chat.cache().n_past(), (long long)chat.cache().held(),
                   human_bytes(double(chat.cache().bytes())).c_str(), human_bytes(double(peak_rss_bytes())).c_str());
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Multi-turn chat in the model's format, streaming forever (one message per line)");
  auto a = std::make_shared<ChatArgs>();
  add_model_args(*cmd, a->m);
  cmd->add_option("--chat-format", a->format, "Force a format: chatml, llama3, llama2, mistral, zephyr, gemma, plain");
  cmd->add_option("--system", a->system, "System prompt (default: the template's own, if any)");
  cmd->add_option("-n,--n-predict", a->o.max_reply, "Most tokens per answer (-1 = until the model ends its turn)")
      ->check(CLI::Range(int64_t(-1), int64_t(1) << 40));
  cmd->add_option("--sinks", a->o.sinks,
                  "Attention-sink tokens kept (default: a sink-token model's own sink tokens, else 4)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--window", a->o.window, "Recent tokens kept")->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache element type: f32 or f16")->check(CLI::IsMember({"f32", "f16"}));
  cmd->add_option("--temp", a->o.sampler.temperature, "Temperature (0 = greedy)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", a->o.sampler.top_k, "Top-k (0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->o.sampler.top_p, "Top-p nucleus (1 = off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--min-p", a->o.sampler.min_p, "Min-p (0 = off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("-s,--seed", a->o.sampler.seed, "Sampling seed");
  cmd->add_flag("--stats", a->stats, "Print cache statistics after every turn (stderr)");
  cmd->callback([a] { run(*a); });
}

}  // namespace sllm::cli
