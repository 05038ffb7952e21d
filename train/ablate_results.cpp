// The ablation's results folder (see ablate.h): the Table-3-shaped Markdown table with the spread across seeds,
// the CSVs, the SVG plots, the config, the commit and the machine, rebuilt from the runs' files every time.
#include <omp.h>  // omp_get_max_threads

#include <algorithm>          // std::min, std::max
#include <cmath>              // std::fabs, std::sqrt, std::isfinite
#include <cstdio>             // popen, pclose, std::fgets
#include <cstdlib>            // std::atoll
#include <ctime>              // std::time, std::gmtime, std::strftime
#include <filesystem>         // std::filesystem
#include <fstream>            // std::ifstream
#include <nlohmann/json.hpp>  // nlohmann::json
#include <sstream>            // std::stringstream
#include <thread>             // std::thread::hardware_concurrency

#include "train/ablate_grid.h"
#include "train/plot.h"        // plot::Chart, plot::write_svg
#include "train/token_data.h"  // write_file_atomic

#ifndef SLLM_VERSION
#define SLLM_VERSION "unknown"
#endif

namespace sllm::train::ablate_detail {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};
std::string colour(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

// Mean over seeds and the spread: "12.34" (one value), "12.34 (12.10–12.58)" (two: min–max), "12.34 ± 0.56" (3+:
// sample standard deviation).
std::string cell(const std::vector<double>& v, const char* format = "%.2f") {
  if (v.empty()) return "–";
  double s = 0, lo = v[0], hi = v[0];
  for (double x : v) s += x, lo = std::min(lo, x), hi = std::max(hi, x);
  const double mean = s / double(v.size());
  auto f = [format](double x) { return fmt(std::fabs(x) >= 1000 ? "%.0f" : format, x); };
  if (v.size() == 1) return f(mean);
  if (v.size() == 2) return f(mean) + " (" + f(lo) + "–" + f(hi) + ")";
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return f(mean) + " ± " + f(std::sqrt(ss / double(v.size() - 1)));
}

std::string spread_caption(size_t seeds) {
  if (seeds == 1) return "one seed";
  if (seeds == 2) return "mean over 2 seeds, in brackets the min–max";
  return "mean over " + std::to_string(seeds) + " seeds ± the sample standard deviation";
}

std::string tables(const AblateConfig& c, const Grid& g, const std::vector<RunResult>& res) {
  std::string t = "| variant |";
  std::string rule = "|---|";
  for (const auto& k : g.caches) t += " " + k.label() + " |", rule += "---|";
  t += "\n" + rule + "\n";
  bool partial = false;
  for (size_t vi = 0; vi < g.variants.size(); ++vi) {
    t += "| " + g.variants[vi].spec + " |";
    for (size_t ki = 0; ki < g.caches.size(); ++ki) {
      std::vector<double> v;
      for (size_t ri = 0; ri < g.runs.size(); ++ri)
        if (g.runs[ri].v.slug() == g.variants[vi].slug() && res[ri].evals[ki]) v.push_back(res[ri].evals[ki]->ppl);
      const bool part = !v.empty() && v.size() < c.seeds.size();
      partial |= part || v.empty();
      // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on `" " + std::string&&` here.
      t += ' ';
      t += cell(v);
      t += part ? "* |" : " |";
    }
    t += "\n";
  }
  const Run& r0 = g.runs[0];
  t += "\nStreaming perplexity (exp of the mean NLL) of the first " + std::to_string(c.eval_tokens) +
       " tokens of " + (fs::path(c.data) / "val.bin").string() + ", per-token streaming semantics; cache S+R = S attention sinks + R recent tokens (0+R: window attention); " +
       spread_caption(c.seeds.size()) + " (seeds " +
       join([&] {
         std::vector<std::string> s;
         for (auto x : c.seeds) s.push_back(std::to_string(x));
         return s;
       }(), ", ") + ")." +
       (partial ? " The grid is not finished: – = not evaluated yet, * = fewer seeds than the grid." : "") + "\n";
  t += "Models: " + r0.opt.family + " block, hidden " + std::to_string(r0.opt.hidden) + ", " +
       std::to_string(r0.opt.layers) + " layers, " + std::to_string(r0.opt.heads) + " heads, seq-len " +
       std::to_string(r0.opt.seq_len) + ", " + std::to_string(r0.opt.steps) + " steps of " +
       std::to_string(r0.opt.batch * r0.opt.accum) + " x " + std::to_string(r0.opt.seq_len) + " tokens.\n\n";
  t += "| variant | final train loss | val loss | attention on the first token (x uniform) | attention on the extra logit | "
       "train time (s) |\n|---|---|---|---|---|---|\n";
  bool probed = false;
  for (const auto& v : g.variants) {
    std::vector<double> tl, vl, ts, sx, ex;
    for (size_t ri = 0; ri < g.runs.size(); ++ri)
      if (g.runs[ri].v.slug() == v.slug() && res[ri].trained) {
        tl.push_back(res[ri].metrics.final_loss);
        vl.push_back(res[ri].metrics.val_loss);
        ts.push_back(res[ri].metrics.train_seconds);
        if (res[ri].sink) sx.push_back(res[ri].sink->x_uniform());
        if (res[ri].sink && !res[ri].sink->extra.empty()) ex.push_back(res[ri].sink->extra_mean());
      }
    probed |= !sx.empty();
    auto c4 = [](const std::vector<double>& x) {
      if (x.empty()) return std::string("–");
      double s = 0;
      for (double y : x) s += y;
      return fmt("%.4f", s / double(x.size()));
    };
    t += "| " + v.spec + " | " + c4(tl) + " | " + c4(vl) + " | " + cell(sx) + " | " + cell(ex, "%.3f") + " | " +
         (ts.empty() ? "–" : cell(ts)) + " |\n";
  }
  t += "\nLosses are the trainer's (mean NLL per token, nats; val on windows of seq-len), mean over seeds.";
  if (probed) {
    const SinkProbeOptions po = sink_probe_options(r0.opt);
    t += " Attention on the first token: the attention queries give to the first token of a training-shaped window "
         "(all k sink tokens of a learnable_sink:k model), averaged over layers, heads, query positions >= " +
         std::to_string(po.from) + " and " + std::to_string(po.rows) +
         " windows spread over val.bin, as a multiple of what uniform attention gives (a sink takes many times the "
         "uniform share). Attention on the extra logit: the share of attention zero_sink's and sink_logit's extra "
         "softmax logit takes, the same average (`streamllm sinks`; per layer in sinks.csv).";
  }
  t += "\n";
  return t;
}

std::string csv_num(double v) { return std::isfinite(v) ? fmt("%.9g", v) : ""; }

std::string results_csv(const Grid& g, const std::vector<RunResult>& res) {
  std::string s = "variant,seed,cache,tokens,mean_nll,ppl,train_final_loss,val_loss,train_seconds,eval_seconds\n";
  for (size_t ri = 0; ri < g.runs.size(); ++ri)
    for (size_t ki = 0; ki < g.caches.size(); ++ki) {
      const auto& e = res[ri].evals[ki];
      if (!e) continue;
      const RunMetrics& m = res[ri].metrics;
      s += g.runs[ri].v.spec + "," + std::to_string(g.runs[ri].seed) + "," + g.caches[ki].spec + "," +
           std::to_string(e->tokens) + "," + csv_num(e->mean_nll) + "," + csv_num(e->ppl) + "," +
           csv_num(m.final_loss) + "," + csv_num(m.val_loss) + "," + fmt("%.3f", m.train_seconds) + "," +
           fmt("%.3f", e->seconds) + "\n";
    }
  return s;
}

std::string sinks_csv(const Grid& g, const std::vector<RunResult>& res) {
  std::string s = "variant,seed,layer,first_token_attention,uniform,x_uniform,extra_logit_attention\n";
  for (size_t ri = 0; ri < g.runs.size(); ++ri)
    if (const auto& p = res[ri].sink) {
      const std::string pre = g.runs[ri].v.spec + "," + std::to_string(g.runs[ri].seed) + ",";
      for (size_t l = 0; l <= p->layer.size(); ++l) {
        const bool mean = l == p->layer.size();
        const double a = mean ? p->mean() : p->layer[l];
        s += pre + (mean ? "mean" : std::to_string(l)) + "," + csv_num(a) + "," + csv_num(p->uniform) + "," +
             csv_num(a / p->uniform) + "," +
             (p->extra.empty() ? "" : csv_num(mean ? p->extra_mean() : p->extra[l])) + "\n";
      }
    }
  return s;
}

std::string curves_csv(const Grid& g, const std::vector<RunResult>& res) {
  std::string s = "variant,seed,cache,tokens,segment_mean_nll\n";
  for (size_t ri = 0; ri < g.runs.size(); ++ri)
    for (size_t ki = 0; ki < g.caches.size(); ++ki)
      if (const auto& e = res[ri].evals[ki])
        for (size_t i = 0; i < e->cx.size(); ++i)
          s += g.runs[ri].v.spec + "," + std::to_string(g.runs[ri].seed) + "," + g.caches[ki].spec + "," +
               fmt("%.0f", e->cx[i]) + "," + csv_num(e->cy[i]) + "\n";
  return s;
}

// The mean of several equally long curves, with their min and max (the band, when there are 2 or more).
plot::Series mean_series(const std::string& name, const std::vector<const std::vector<double>*>& xs,
                         const std::vector<const std::vector<double>*>& ys, const std::string& col) {
  plot::Series s;
  s.name = name;
  s.color = col;
  size_t n = SIZE_MAX;
  for (const auto* y : ys) n = std::min(n, y->size());
  if (ys.empty() || n == 0) return s;
  s.x.assign(xs[0]->begin(), xs[0]->begin() + std::ptrdiff_t(n));
  for (size_t i = 0; i < n; ++i) {
    double sum = 0, lo = (*ys[0])[i], hi = lo;
    for (const auto* y : ys) sum += (*y)[i], lo = std::min(lo, (*y)[i]), hi = std::max(hi, (*y)[i]);
    s.y.push_back(sum / double(ys.size()));
    if (ys.size() > 1) s.y_lo.push_back(lo), s.y_hi.push_back(hi);
  }
  return s;
}

// Trailing running mean over up to `w` points.
std::vector<double> smooth(const std::vector<double>& v, size_t w) {
  std::vector<double> out(v.size());
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    s += v[i];
    if (i >= w) s -= v[i - w];
    out[i] = s / double(std::min(i + 1, w));
  }
  return out;
}

std::vector<std::string> write_plots(const AblateConfig& c, const Grid& g, const std::vector<RunResult>& res) {
  const fs::path dir = fs::path(g.out) / "plots";
  fs::create_directories(dir);
  std::vector<std::string> files;
  const std::string mean = c.seeds.size() > 1 ? " (mean over " + std::to_string(c.seeds.size()) + " seeds" : "";
  const std::string seeds = mean.empty() ? "" : mean + ", band: min–max)";
  // Training loss per variant.
  {
    plot::Chart ch;
    const size_t steps = size_t(g.runs[0].opt.steps);
    const size_t w = std::max<size_t>(1, std::min<size_t>(20, steps / 5));
    ch.title = c.name + ": training loss" + seeds;
    ch.xlabel = "step";
    ch.ylabel = "training loss (nats/token, running mean of " + std::to_string(w) + " steps)";
    std::vector<std::vector<double>> sm(g.runs.size());
    for (size_t ri = 0; ri < g.runs.size(); ++ri) sm[ri] = smooth(res[ri].metrics.loss, w);
    for (size_t vi = 0; vi < g.variants.size(); ++vi) {
      std::vector<const std::vector<double>*> xs, ys;
      for (size_t ri = 0; ri < g.runs.size(); ++ri)
        if (g.runs[ri].v.slug() == g.variants[vi].slug() && res[ri].trained)
          xs.push_back(&res[ri].metrics.step), ys.push_back(&sm[ri]);
      ch.series.push_back(mean_series(g.variants[vi].spec, xs, ys, colour(vi)));
    }
    plot::write_svg(ch, (dir / "train_loss.svg").string());
    files.push_back("plots/train_loss.svg");
  }
  const std::string ylabel = "log perplexity (mean NLL of each " + std::to_string(g.curve_every) + "-token segment)";
  auto curve_series = [&](size_t vi, size_t ki, const std::string& name, const std::string& col) {
    std::vector<const std::vector<double>*> xs, ys;
    for (size_t ri = 0; ri < g.runs.size(); ++ri)
      if (g.runs[ri].v.slug() == g.variants[vi].slug() && res[ri].evals[ki])
        xs.push_back(&res[ri].evals[ki]->cx), ys.push_back(&res[ri].evals[ki]->cy);
    plot::Series s = mean_series(name, xs, ys, col);
    s.dashed = g.caches[ki].baseline;
    s.y_lo.clear();  // no seed bands here: with several caches they cover each other (curves.csv has every seed)
    s.y_hi.clear();
    return s;
  };
  // Per variant: one series per cache (the paper's Fig. 3 panels).
  for (size_t vi = 0; vi < g.variants.size(); ++vi) {
    plot::Chart ch;
    ch.title = c.name + ": " + g.variants[vi].spec + " under each cache" + (mean.empty() ? "" : mean + ")");
    ch.xlabel = "tokens streamed";
    ch.ylabel = ylabel;
    for (size_t ki = 0; ki < g.caches.size(); ++ki)
      ch.series.push_back(curve_series(vi, ki, g.caches[ki].label(), colour(ki)));
    const std::string f = "plots/nll_" + g.variants[vi].slug() + ".svg";
    plot::write_svg(ch, (fs::path(g.out) / f).string());
    files.push_back(f);
  }
  // Per variant: the attention maps of the first positions (the paper's Fig. 2), averaged over seeds.
  for (size_t vi = 0; vi < g.variants.size(); ++vi) {
    std::vector<const SinkProbe*> ps;
    for (size_t ri = 0; ri < g.runs.size(); ++ri)
      if (g.runs[ri].v.slug() == g.variants[vi].slug() && res[ri].sink && !res[ri].sink->maps.empty())
        ps.push_back(&*res[ri].sink);
    if (ps.empty()) continue;
    SinkProbe avg = *ps[0];
    for (size_t l = 0; l < avg.maps.size(); ++l)
      for (size_t i = 0; i < avg.maps[l].size(); ++i) {
        double s = 0;
        for (const SinkProbe* p : ps) s += p->maps[l][i];
        avg.maps[l][i] = s / double(ps.size());
      }
    const std::string f = "plots/attention_" + g.variants[vi].slug() + ".svg";
    plot::write_heatmaps_svg(
        sink_heatmaps(avg, c.name + ": " + g.variants[vi].spec + ", attention over the first " +
                               std::to_string(avg.map_n) + " positions" +
                               (g.variants[vi].sink == "learnable_sink" ? " (the sink tokens first)" : "") +
                               (ps.size() > 1 ? " (mean over " + std::to_string(ps.size()) + " seeds)" : "")),
        (fs::path(g.out) / f).string());
    files.push_back(f);
  }
  // Per cache: one series per variant.
  for (size_t ki = 0; ki < g.caches.size(); ++ki) {
    plot::Chart ch;
    ch.title = c.name + ": cache " + g.caches[ki].label() + ", each variant" + (mean.empty() ? "" : mean + ")");
    ch.xlabel = "tokens streamed";
    ch.ylabel = ylabel;
    for (size_t vi = 0; vi < g.variants.size(); ++vi) {
      plot::Series s = curve_series(vi, ki, g.variants[vi].spec, colour(vi));
      s.dashed = false;
      ch.series.push_back(s);
    }
    const std::string f = "plots/nll_" + g.caches[ki].spec + ".svg";
    plot::write_svg(ch, (fs::path(g.out) / f).string());
    files.push_back(f);
  }
  return files;
}

std::string first_line_of(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return "";
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

// `git rev-parse HEAD` of the source tree this binary was built from (at run time; "unknown" without git).
json source_commit() {
  json j = {{"commit", "unknown"}, {"dirty", nullptr}};
#ifdef SLLM_ABLATE_SOURCE_DIR
  const std::string dir = SLLM_ABLATE_SOURCE_DIR;
  j["source_dir"] = dir;
  if (dir.find('\'') != std::string::npos) return j;
  auto run = [](const std::string& cmd) {
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[256];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      if (pclose(p) != 0) return std::string("\x01");
    } else {
      return std::string("\x01");
    }
    return out;
  };
  std::string head = run("git -C '" + dir + "' rev-parse HEAD 2>/dev/null");
  if (head.size() < 40 || head[0] == '\x01') return j;
  j["commit"] = head.substr(0, 40);
  const std::string st = run("git -C '" + dir + "' status --porcelain --untracked-files=no 2>/dev/null");
  if (st.empty() || st[0] != '\x01') j["dirty"] = !st.empty();
#endif
  return j;
}

json machine() {
  json m;
  m["cpu"] = first_line_of("/proc/cpuinfo", "model name");
  m["cores"] = std::thread::hardware_concurrency();
  const std::string mem = first_line_of("/proc/meminfo", "MemTotal");  // "16384000 kB"
  m["memory_bytes"] = mem.empty() ? 0 : int64_t(std::atoll(mem.c_str())) * 1024;
  m["threads_used"] = omp_get_max_threads();
#ifdef __VERSION__
  m["compiler"] = __VERSION__;
#endif
  return m;
}

}  // namespace

void write_outputs(const AblateConfig& c, const Grid& g, const std::vector<RunResult>& res) {
  const fs::path out(g.out);
  fs::create_directories(out);
  const std::string table = tables(c, g, res);
  write_file_atomic((out / "table.md").string(), "# " + c.name + ": streaming perplexity by sink variant and cache\n\n" + table);
  write_file_atomic((out / "results.csv").string(), results_csv(g, res));
  write_file_atomic((out / "curves.csv").string(), curves_csv(g, res));
  write_file_atomic((out / "sinks.csv").string(), sinks_csv(g, res));
  const auto plots = write_plots(c, g, res);
  // The exact config, with the command-line overrides in a comment above it.
  std::string cfg = "# streamllm ablate: the configuration of this results folder";
  cfg += c.config_path.empty() ? " (built in code).\n" : ", a copy of " + c.config_path + ".\n";
  cfg += "# Command-line overrides in effect (they win over the file): " +
         (c.overrides.empty() ? std::string("none") : join(c.overrides, " ")) + "\n";
  write_file_atomic((out / "config.toml").string(), cfg + c.config_text);
  // meta.json: version, commit, machine, date and every setting.
  char date[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  json runs = json::array();
  for (size_t ri = 0; ri < g.runs.size(); ++ri)
    runs.push_back({{"variant", g.runs[ri].v.spec},
                    {"seed", g.runs[ri].seed},
                    {"dir", "runs/" + fs::path(g.runs[ri].dir).filename().string()},
                    {"trained", res[ri].trained},
                    {"steps", res[ri].metrics.step.empty() ? 0.0 : res[ri].metrics.step.back()},
                    {"train_seconds", res[ri].metrics.train_seconds}});
  json caches = json::array();
  for (const auto& k : g.caches)
    caches.push_back({{"spec", k.spec}, {"mode", cache_mode_name(k.mode)}, {"sinks", k.sinks}, {"window", k.window}});
  json meta = {{"streamllm", SLLM_VERSION},
               {"source", source_commit()},
               {"date", date},
               {"machine", machine()},
               {"name", c.name},
               {"config", c.config_path},
               {"overrides", c.overrides},
               {"train", json::parse(g.runs[0].opt.to_json())},
               {"eval", {{"tokens", c.eval_tokens},
                         {"val", g.val_path},
                         {"val_tokens", g.val_tokens},
                         {"curve_every", g.curve_every},
                         {"chunk", c.chunk},
                         {"caches", caches}}},
               {"runs", runs}};
  meta["train"].erase("out");
  meta["train"].erase("seed");
  meta["train"].erase("sink");
  meta["train"].erase("sink_tokens");
  write_file_atomic((out / "meta.json").string(), meta.dump(2) + "\n");
  std::string readme = "# " + c.name + " — StreamingLLM sink-token ablation\n\n" +
                       "Made by `streamllm ablate` (docs/ablations.md) from `config.toml`. Rerunning the same command "
                       "continues an unfinished grid and recomputes nothing that is done.\n\n" + table +
                       "\n## Files\n\n"
                       "| file | what |\n|---|---|\n"
                       "| `table.md` | the tables above (Table 3 of the paper: rows = variants, columns = caches) |\n"
                       "| `results.csv` | one row per variant, seed and cache: tokens scored, mean NLL, perplexity, the run's final training and validation loss, training and evaluation seconds |\n"
                       "| `curves.csv` | the NLL-vs-tokens curves: mean NLL of each " + std::to_string(g.curve_every) + "-token segment, per variant, seed and cache |\n"
                       "| `sinks.csv` | the sink probe: attention on the first token (the k sink tokens of learnable_sink:k) per variant, seed and layer (and their mean), with the uniform share, and the extra logit's share (zero_sink, sink_logit) |\n";
  for (const auto& p : plots) {
    std::string what = p == "plots/train_loss.svg"           ? "training loss of each variant"
                       : p.rfind("plots/attention_", 0) == 0 ? "attention maps of the first positions, per layer (Fig. 2 shape)"
                                                              : "log perplexity versus tokens streamed (Fig. 3 shape)";
    readme += "| [`" + p + "`](" + p + ") | " + what + " |\n";
  }
  readme += "| `config.toml` | the exact config, with the command-line overrides in a comment |\n"
            "| `meta.json` | streamllm version, source commit, date, machine, every training and evaluation setting |\n"
            "| `runs/<variant>-s<seed>/` | each run: a `streamllm train` directory (model.h5, checkpoints, metrics.jsonl, options.json) and its cached evaluations (eval-<cache>.json) |\n";
  write_file_atomic((out / "README.md").string(), readme);
}

}  // namespace sllm::train::ablate_detail
