// `streamllm ppl`: perplexity of a long text under one or more cache policies (dense | window | streaming |
// recompute), each scored exactly as per-token streaming would see the text; a comparison table at the end. A
// learnable-sink model's stream starts with its sink tokens under every policy; only text tokens are scored.
#include <algorithm>  // std::find_if
#include <cmath>    // std::exp
#include <cstdio>   // std::printf, std::rename
#include <fstream>  // std::ofstream
#include <sstream>  // std::stringstream

#include "core/error.h"       // Error
#include "infer/common.h"
#include "ops/backend.h"      // cpu_backend
#include "runtime/stream.h"   // stream_nll, cache_sinks
#include "runtime/sysinfo.h"  // peak_rss_bytes
#include "train/plot.h"       // plot::Chart, write_svg

namespace sllm::cli {

namespace {

struct PplArgs {
  ModelArgs m;
  std::string file, csv, plot, cache = "streaming", kv_dtype = "f32";
  int64_t plot_window = 0;
  int64_t sinks = -1, window = 1020, chunk = 256, max_tokens = 0, pos0 = 0;
  bool no_progress = false;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    if (!x.empty()) out.push_back(x);
  return out;
}

void write_csv(const std::string& path, const std::vector<int32_t>& ids, const std::vector<std::string>& names,
               const std::vector<PplResult>& rs) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw Error(path + ": cannot write");
    f << "index,token";
    for (const auto& n : names) f << ",nll_" << n;
    f << '\n';
    for (size_t i = 0; i < rs[0].nll.size(); ++i) {
      f << i + 1 << ',' << ids[i + 1];
      for (const auto& r : rs) f << ',' << r.nll[i];
      f << '\n';
    }
    if (!f) throw Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename the temporary file into place");
}

// Log-perplexity versus tokens streamed (the paper's Fig. 3 shape): per policy, the mean NLL of the last
// `span` tokens at regular points of the stream.
void write_plot(const std::string& path, const std::string& title, const std::vector<std::string>& names,
                const std::vector<PplResult>& rs, int64_t span) {
  plot::Chart c;
  c.title = title;
  c.xlabel = "tokens streamed";
  c.ylabel = "log perplexity (mean NLL of the last " + std::to_string(span) + " tokens)";
  for (size_t i = 0; i < rs.size(); ++i) {
    plot::Series s;
    s.name = names[i];
    const auto& nll = rs[i].nll;
    const int64_t n = int64_t(nll.size());
    const int64_t step = std::max<int64_t>(1, n / 400);  // at most ~400 points per series
    double run = 0;
    for (int64_t t = 0; t < n; ++t) {
      run += nll[size_t(t)];
      if (t >= span) run -= nll[size_t(t - span)];
      if (t + 1 >= std::min(span, n) && ((t + 1) % step == 0 || t + 1 == n)) {
        s.x.push_back(double(t + 1));
        s.y.push_back(run / double(std::min<int64_t>(span, t + 1)));
      }
    }
    c.series.push_back(std::move(s));
  }
  plot::write_svg(c, path);
}

void run(const PplArgs& a) {
  const auto policies = split(a.cache);
  if (policies.empty()) throw Error("--cache: give at least one policy");
  std::vector<CacheMode> modes;
  for (const auto& p : policies) modes.push_back(parse_cache_mode(p));
  Loaded l = load(a.m, true);
  Backend& be = backend_for(a.m);
  std::vector<int32_t> ids = l.tok->encode(read_file_or_throw(a.file), false);
  if (a.max_tokens > 0 && int64_t(ids.size()) > a.max_tokens) ids.resize(size_t(a.max_tokens));
  if (ids.size() < 2) throw Error(a.file + ": fewer than 2 tokens to score");

  const ModelConfig& cfg = l.model.cfg;
  const int64_t sinks = cache_sinks(cfg, a.sinks);
  const bool uses_sinks = std::find_if(modes.begin(), modes.end(), [](CacheMode m) {
                            return m == CacheMode::Streaming || m == CacheMode::Recompute;
                          }) != modes.end();
  if (a.sinks >= 0 && uses_sinks && !sinks_note(cfg, sinks).empty())
    std::fprintf(stderr, "[streamllm] %s\n", sinks_note(cfg, sinks).c_str());

  std::vector<PplResult> results;
  std::vector<std::string> names;
  std::vector<size_t> peaks;
  for (CacheMode mode : modes) {
    PplOptions o;
    o.mode = mode;
    o.sinks = mode == CacheMode::Streaming || mode == CacheMode::Recompute ? sinks : 0;
    o.window = a.window;
    o.chunk = a.chunk;
    o.pos0 = a.pos0;
    o.kv_dtype = parse_dtype(a.kv_dtype);
    std::string name = cache_mode_name(mode);
    if (mode == CacheMode::Streaming) name += " " + std::to_string(o.sinks) + "+" + std::to_string(o.window);
    else if (mode == CacheMode::Window) name += " 0+" + std::to_string(o.window);
    else if (mode == CacheMode::Recompute) name += " L=" + std::to_string(o.sinks + o.window);
    Progress bar(name, !a.no_progress);
    o.progress = [&](int64_t d, int64_t t) { bar.update(d, t); };
    reset_peak_rss();
    results.push_back(stream_nll(l.model, be, ids, o));
    bar.finish();
    peaks.push_back(peak_rss_bytes());
    names.push_back(name);
    const PplResult& r = results.back();
    std::printf("cache %s | tokens scored %zu | ppl %.4f | %.1f tok/s | kv cache %s | peak rss %s\n", name.c_str(),
                r.nll.size(), r.ppl, double(r.nll.size()) / r.seconds, human_bytes(double(r.cache_bytes)).c_str(),
                human_bytes(double(peaks.back())).c_str());
    std::fflush(stdout);
  }
  if (!a.csv.empty()) {
    std::vector<std::string> cols;
    for (auto n : names) {
      for (auto& ch : n)
        if (ch == ' ' || ch == '+' || ch == '=') ch = '_';
      cols.push_back(n);
    }
    write_csv(a.csv, ids, cols, results);
  }
  if (!a.plot.empty()) {
    const int64_t span = a.plot_window > 0 ? a.plot_window : std::max<int64_t>(16, int64_t(ids.size()) / 50);
    std::string title = a.m.model;
    title += ": " + std::to_string(ids.size()) + " tokens";
    write_plot(a.plot, title, names, results, span);
    std::printf("plot: %s\n", a.plot.c_str());
  }
  if (results.size() > 1) {
    std::printf("\n| cache | tokens | ppl | tok/s | kv cache | peak RSS |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < results.size(); ++i)
      std::printf("| %s | %zu | %.3f | %.1f | %s | %s |\n", names[i].c_str(), results[i].nll.size(), results[i].ppl,
                  double(results[i].nll.size()) / results[i].seconds,
                  human_bytes(double(results[i].cache_bytes)).c_str(), human_bytes(double(peaks[i])).c_str());
  }
}

}  // namespace

void register_ppl(CLI::App& app) {
  auto* cmd = app.add_subcommand("ppl", "Perplexity of a long text under cache policies, as per-token streaming sees it");
  auto a = std::make_shared<PplArgs>();
  add_model_args(*cmd, a->m);
  cmd->add_option("-f,--file", a->file, "Text file to score")->required()->check(CLI::ExistingFile);
  cmd->add_option("--cache", a->cache,
                  "Cache policy, or a comma list to compare: dense, window, streaming, recompute (default streaming). "
                  "A sink-token model's sink tokens are fed first under every policy and never scored: window (0+W) "
                  "then evicts them like any token, streaming keeps --sinks of them");
  cmd->add_option("--sinks", a->sinks,
                  "Attention-sink tokens kept (streaming, recompute; dense/window use 0). Default: a sink-token "
                  "model's own sink tokens, else 4")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--window", a->window, "Recent tokens kept (window/streaming); recompute re-encodes sinks+window")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--chunk", a->chunk, "Tokens per forward pass (1 = per-token decode; same numbers, slower)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  cmd->add_option("--max-tokens", a->max_tokens, "Score only the first N tokens (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--start-pos", a->pos0, "Absolute position of the first token (RoPE)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--csv", a->csv, "Write per-token NLL to this CSV file (index, token, one column per policy)");
  cmd->add_option("--plot", a->plot, "Write an SVG of log-perplexity versus tokens streamed, one line per policy");
  cmd->add_option("--plot-window", a->plot_window, "Tokens averaged per plot point (default: 2% of the text)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache element type: f32 or f16")
      ->check(CLI::IsMember({"f32", "f16"}));
  cmd->add_flag("--no-progress", a->no_progress, "No progress bar");
  cmd->callback([a] { run(*a); });
}

}  // namespace sllm::cli
