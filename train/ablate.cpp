// The ablation grid (see ablate.h): the config, the runs, their evaluation, and the results folder.
//
// Why the pieces look as they do:
// - A run is a plain `streamllm train` directory, so everything the trainer guarantees (atomic checkpoints,
//   bit-identical resume, SIGINT checkpoints) carries over, and a run can be inspected or streamed on its own.
// - An evaluation is cached next to its run as JSON with the settings it was computed under (the cache, the
//   tokens, the validation shard, and the model file's size and modification time): any change recomputes it, an
//   unchanged grid recomputes nothing, and the results folder is rebuilt from these files every time, so
//   rerunning a finished grid writes byte-identical tables, CSVs and plots (meta.json carries the date).
// - Perplexity is exp(mean NLL) over the scored tokens of one stream; the table's cell is the mean of the seeds'
//   perplexities with their spread. The curves are the mean NLL of consecutive segments of `curve_every` tokens
//   (the log-perplexity of each segment), the shape of the paper's Fig. 3.
#include "train/ablate.h"
#include "train/ablate_grid.h"  // Run, Grid, RunResult, write_outputs, fmt, join

#include <omp.h>     // omp_set_num_threads, omp_get_max_threads
#include <unistd.h>  // isatty

#include <CLI/CLI.hpp>        // CLI::ConfigTOML (the TOML reader `streamllm train --config` uses)
#include <algorithm>          // std::min, std::max, std::find
#include <cmath>              // std::exp, std::isfinite
#include <cstdio>             // std::printf, std::fprintf
#include <filesystem>         // std::filesystem
#include <fstream>            // std::ifstream
#include <functional>         // std::function
#include <limits>             // std::numeric_limits
#include <map>                // std::map
#include <nlohmann/json.hpp>  // nlohmann::json
#include <optional>           // std::optional
#include <set>                // std::set

#include "core/error.h"        // Error
#include "formats/mapped_file.h"  // read_text_file
#include "model/bundle.h"      // load_bundle
#include "ops/backend.h"       // cpu_backend
#include "train/checkpoint.h"  // list_checkpoints
#include "train/clock.h"        // now_s, duration_str
#include "train/token_data.h"  // TokenShard, write_file_atomic

#ifndef SLLM_VERSION
#define SLLM_VERSION "unknown"
#endif

namespace sllm::train {

using ablate_detail::EvalRecord;
using ablate_detail::fmt;
using ablate_detail::Grid;
using ablate_detail::join;
using ablate_detail::Run;
using ablate_detail::RunMetrics;
using ablate_detail::RunResult;
using ablate_detail::write_outputs;

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ablate_detail {

SinkProbeOptions sink_probe_options(const TrainOptions& o) {
  SinkProbeOptions p;
  p.seq_len = o.seq_len;
  p.rows = 8;
  p.from = std::max<int64_t>(1, o.seq_len / 16);  // 16 for the paper-like 256
  return p;
}

}  // namespace ablate_detail

namespace {

// ---- values as the TOML reader gives them (strings with the quotes removed) ----------------------------------

int64_t to_int(const std::string& v, const std::string& what) {
  size_t pos = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (v.empty() || pos != v.size()) throw Error(what + ": expected an integer, got '" + v + "'");
  return x;
}

uint64_t to_uint(const std::string& v, const std::string& what) {
  size_t pos = 0;
  unsigned long long x = 0;
  try {
    if (!v.empty() && v[0] != '-') x = std::stoull(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (v.empty() || pos != v.size()) throw Error(what + ": expected a non-negative integer, got '" + v + "'");
  return x;
}

double to_double(const std::string& v, const std::string& what) {
  size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (v.empty() || pos != v.size() || !std::isfinite(x)) throw Error(what + ": expected a number, got '" + v + "'");
  return x;
}

bool to_bool(const std::string& v, const std::string& what) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw Error(what + ": expected true or false, got '" + v + "'");
}

template <class T>
T parse_as(const std::string& v, const std::string& what) {
  if constexpr (std::is_same_v<T, std::string>) return v;
  else if constexpr (std::is_same_v<T, bool>) return to_bool(v, what);
  else if constexpr (std::is_same_v<T, double>) return to_double(v, what);
  else if constexpr (std::is_same_v<T, uint64_t>) return to_uint(v, what);
  else {
    const int64_t x = to_int(v, what);
    if (x < int64_t(std::numeric_limits<T>::min()) || x > int64_t(std::numeric_limits<T>::max()))
      throw Error(what + ": " + v + " is out of range");
    return T(x);
  }
}

// ---- [train]: `streamllm train`'s options (train/cmd_train.cpp; a test checks the two lists agree) -------------

using Setter = std::function<void(TrainOptions&, const std::string&, const std::string&)>;

template <class T>
Setter field(T TrainOptions::*m) {
  return [m](TrainOptions& o, const std::string& v, const std::string& what) { o.*m = parse_as<T>(v, what); };
}
Setter negated(bool TrainOptions::*m) {
  return [m](TrainOptions& o, const std::string& v, const std::string& what) { o.*m = !to_bool(v, what); };
}

const std::map<std::string, Setter>& train_setters() {
  static const std::map<std::string, Setter> m = {
      {"family", field(&TrainOptions::family)},
      {"hidden", field(&TrainOptions::hidden)},
      {"layers", field(&TrainOptions::layers)},
      {"heads", field(&TrainOptions::heads)},
      {"kv-heads", field(&TrainOptions::kv_heads)},
      {"ffn", field(&TrainOptions::ffn)},
      {"rotary-pct", field(&TrainOptions::rotary_pct)},
      {"rope-theta", field(&TrainOptions::rope_theta)},
      {"tied-head", field(&TrainOptions::tied_head)},
      {"untied-head", negated(&TrainOptions::tied_head)},
      {"seq-len", field(&TrainOptions::seq_len)},
      {"batch", field(&TrainOptions::batch)},
      {"accum", field(&TrainOptions::accum)},
      {"shuffle", field(&TrainOptions::shuffle)},
      {"no-shuffle", negated(&TrainOptions::shuffle)},
      {"steps", field(&TrainOptions::steps)},
      {"lr", field(&TrainOptions::lr)},
      {"min-lr-ratio", field(&TrainOptions::min_lr_ratio)},
      {"warmup", field(&TrainOptions::warmup)},
      {"weight-decay", field(&TrainOptions::weight_decay)},
      {"beta1", field(&TrainOptions::beta1)},
      {"beta2", field(&TrainOptions::beta2)},
      {"eps", field(&TrainOptions::eps)},
      {"clip", field(&TrainOptions::clip)},
      {"eval-every", field(&TrainOptions::eval_every)},
      {"eval-tokens", field(&TrainOptions::eval_tokens)},
      {"save-every", field(&TrainOptions::save_every)},
      {"keep", field(&TrainOptions::keep)},
      {"log-every", field(&TrainOptions::log_every)},
      {"threads", field(&TrainOptions::threads)},
      {"device", field(&TrainOptions::device)},
      {"quiet", field(&TrainOptions::quiet)},
  };
  return m;
}

// Train options the grid sets per run, with the key to use instead.
const std::map<std::string, std::string>& grid_owned() {
  static const std::map<std::string, std::string> m = {
      {"sink", "the variants list sets it"},     {"sink-tokens", "the variants list sets it (learnable_sink:K)"},
      {"seed", "the seeds list sets it"},        {"data", "use the top-level data key"},
      {"out", "each run's directory is <out>/runs/<variant>-s<seed>"},
      {"resume", "the grid resumes unfinished runs by itself"},
      {"config", "a config cannot name another config"}};
  return m;
}

std::string normalise(std::string k, char from, char to) {
  for (char& ch : k)
    if (ch == from) ch = to;
  return k;
}

std::string prefix(const AblateConfig& c) { return c.config_path.empty() ? "" : c.config_path + ": "; }

}  // namespace

// ---- variants and caches ----------------------------------------------------------------------------------------

AblateVariant parse_variant(const std::string& spec) {
  AblateVariant v;
  v.spec = spec;
  const size_t colon = spec.find(':');
  v.sink = spec.substr(0, colon);
  if (v.sink != "vanilla" && v.sink != "zero_sink" && v.sink != "learnable_sink" && v.sink != "sink_logit")
    throw Error("variants: '" + spec + "' is not one of vanilla, zero_sink, learnable_sink:K, sink_logit");
  if (colon != std::string::npos) {
    if (v.sink != "learnable_sink") throw Error("variants: '" + spec + "': only learnable_sink takes :K");
    v.sink_tokens = to_int(spec.substr(colon + 1), "variants: '" + spec + "': K");
    if (v.sink_tokens < 1 || v.sink_tokens > 64) throw Error("variants: '" + spec + "': K must be in [1, 64]");
  }
  return v;
}

std::string AblateVariant::slug() const {
  return sink == "learnable_sink" ? sink + "_k" + std::to_string(sink_tokens) : sink;
}

AblateCache parse_cache(const std::string& spec, int64_t recompute_window) {
  AblateCache k;
  k.spec = spec;
  if (spec == "dense" || spec == "recompute") {
    k.baseline = true;
    k.mode = spec == "dense" ? CacheMode::Dense : CacheMode::Recompute;
    k.window = spec == "recompute" ? recompute_window : 0;
    return k;
  }
  const size_t plus = spec.find('+');
  if (plus == std::string::npos)
    throw Error("caches: '" + spec + "' is not S+R (sinks + recent tokens, e.g. 4+252); dense and recompute go in baselines");
  k.sinks = to_int(spec.substr(0, plus), "caches: '" + spec + "': S");
  k.window = to_int(spec.substr(plus + 1), "caches: '" + spec + "': R");
  if (k.sinks < 0 || k.sinks > (int64_t(1) << 20)) throw Error("caches: '" + spec + "': S must be in [0, 2^20]");
  if (k.window < 1 || k.window > (int64_t(1) << 24)) throw Error("caches: '" + spec + "': R must be in [1, 2^24]");
  k.mode = k.sinks == 0 ? CacheMode::Window : CacheMode::Streaming;
  return k;
}

std::string AblateCache::label() const {
  return mode == CacheMode::Recompute ? "recompute L=" + std::to_string(window) : spec;
}

// ---- the config ------------------------------------------------------------------------------------------------

std::vector<std::string> ablate_train_keys() {
  std::vector<std::string> v;
  for (const auto& [k, s] : train_setters()) v.push_back(k);
  return v;
}

std::vector<std::string> ablate_grid_owned_train_keys() {
  std::vector<std::string> v;
  for (const auto& [k, s] : grid_owned()) v.push_back(k);
  return v;
}

void set_ablate_key(AblateConfig& c, const std::string& key_in, const std::vector<std::string>& values_in,
                    const std::string& where) {
  std::vector<std::string> values;
  for (const auto& v : values_in)
    if (!v.empty()) values.push_back(v);
  if (key_in.rfind("train.", 0) == 0) {
    const std::string key = normalise(key_in.substr(6), '_', '-');
    const std::string what = where + "[train] " + key;
    if (auto it = grid_owned().find(key); it != grid_owned().end())
      throw Error(what + ": set by the grid, not by [train] (" + it->second + ")");
    auto it = train_setters().find(key);
    if (it == train_setters().end())
      throw Error(where + "unknown key '" + key + "' in [train] (the keys are `streamllm train`'s option names)");
    if (values.size() != 1) throw Error(what + ": expected one value");
    it->second(c.train, values[0], what);
    if (key == "log-every") c.log_every_given = true;
    return;
  }
  const std::string key = normalise(key_in, '-', '_');
  const std::string what = where + key;
  auto one = [&]() -> const std::string& {
    if (values.size() != 1) throw Error(what + ": expected one value, got " + std::to_string(values.size()));
    return values[0];
  };
  if (key == "name") c.name = one();
  else if (key == "data") c.data = one();
  else if (key == "out") c.out = one();
  else if (key == "variants") c.variants = values;
  else if (key == "caches") c.caches = values;
  else if (key == "baselines") c.baselines = values;
  else if (key == "seeds") {
    c.seeds.clear();
    for (const auto& v : values) c.seeds.push_back(to_uint(v, what));
  } else if (key == "eval_tokens") c.eval_tokens = to_int(one(), what);
  else if (key == "curve_every") c.curve_every = to_int(one(), what);
  else if (key == "recompute_window") c.recompute_window = to_int(one(), what);
  else if (key == "chunk") c.chunk = to_int(one(), what);
  else if (key == "threads") c.threads = parse_as<int>(one(), what);
  else
    throw Error(where + "unknown key '" + key_in +
                "' (top-level keys: name, data, out, variants, seeds, caches, baselines, eval_tokens, curve_every, "
                "recompute_window, chunk, threads; training options go in [train])");
}

AblateConfig load_ablate_config(const std::string& path) {
  AblateConfig c;
  c.config_path = path;
  c.config_text = read_text_file(path);
  c.name = fs::path(path).stem().string();
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::Error& e) {
    throw Error(path + ": cannot read the config file (" + e.what() + ")");
  }
  std::set<std::string> seen;
  for (const CLI::ConfigItem& it : items) {
    if (it.name == "++" || it.name == "--") continue;  // section markers
    // (CLI11 merges a key repeated on the next line into one list; any other repeat is caught here.)
    if (!seen.insert(join(it.parents, ".") + "." + it.name).second)
      throw Error(path + ": key '" + it.name + "' is given twice" + (it.parents.empty() ? "" : " in [" + join(it.parents, ".") + "]"));
    if (it.parents.empty()) set_ablate_key(c, it.name, it.inputs, path + ": ");
    else if (it.parents.size() == 1 && it.parents[0] == "train")
      set_ablate_key(c, "train." + it.name, it.inputs, path + ": ");
    else
      throw Error(path + ": unknown section [" + join(it.parents, ".") + "] (the only section is [train])");
  }
  return c;
}

namespace {

// ---- the grid (Run, Grid: ablate_grid.h) ------------------------------------------------------------------------

TrainOptions run_options(const AblateConfig& c, const AblateVariant& v, uint64_t seed, const std::string& dir) {
  TrainOptions o = c.train;
  o.sink = v.sink;
  o.sink_tokens = v.sink == "learnable_sink" ? v.sink_tokens : 1;
  o.seed = seed;
  o.data = fs::absolute(c.data).lexically_normal().string();
  o.out = dir;
  o.resume = false;
  if (c.threads > 0) o.threads = c.threads;
  if (!c.log_every_given) o.log_every = std::max<int64_t>(1, o.steps / 10);
  return o;
}

Grid make_grid(const AblateConfig& c) {
  Grid g;
  const std::string pre = prefix(c);
  auto check = [&](bool ok, const std::string& msg) {
    if (!ok) throw Error(pre + msg);
  };
  check(!c.data.empty(), "data: required (a directory written by `streamllm data`)");
  check(!c.out.empty(), "out: required (the results folder)");
  check(!c.variants.empty(), "variants: give at least one (vanilla, zero_sink, learnable_sink:K, sink_logit)");
  check(!c.seeds.empty(), "seeds: give at least one training seed");
  check(!c.caches.empty() || !c.baselines.empty(), "caches: give at least one S+R cache (or a baseline)");
  check(c.eval_tokens >= 2, "eval_tokens: required, at least 2 (tokens streamed from the start of val.bin)");
  check(c.curve_every >= 0, "curve_every: must be >= 0 (0 = eval_tokens / 64)");
  check(c.recompute_window >= 0, "recompute_window: must be >= 0 (0 = S+R of the first cache)");
  check(c.chunk >= 1 && c.chunk <= 65536, "chunk: must be in [1, 65536]");
  check(c.threads >= 0, "threads: must be >= 0 (0 = all cores)");
  g.out = fs::absolute(c.out).lexically_normal().string();
  try {
    std::set<std::string> seen;
    for (const auto& s : c.variants) {
      g.variants.push_back(parse_variant(s));
      if (!seen.insert(g.variants.back().slug()).second) throw Error("variants: '" + s + "' is listed twice");
    }
    const int64_t L = c.recompute_window > 0 ? c.recompute_window
                      : !c.caches.empty()    ? parse_cache(c.caches[0], 0).sinks + parse_cache(c.caches[0], 0).window
                                             : c.train.seq_len;
    seen.clear();
    for (const auto& s : c.caches) {
      if (s == "dense" || s == "recompute")
        throw Error("caches: '" + s + "' is a baseline: list it in baselines = [\"dense\", \"recompute\"]");
      g.caches.push_back(parse_cache(s, L));
      if (!seen.insert(s).second) throw Error("caches: '" + s + "' is listed twice");
    }
    for (const auto& s : c.baselines) {
      if (s != "dense" && s != "recompute") throw Error("baselines: '" + s + "' is not dense or recompute");
      g.caches.push_back(parse_cache(s, L));
      if (!seen.insert(s).second) throw Error("baselines: '" + s + "' is listed twice");
    }
    for (const auto& v : g.variants)
      if (v.sink == "learnable_sink" && L < v.sink_tokens + 1 &&
          std::find(c.baselines.begin(), c.baselines.end(), "recompute") != c.baselines.end())
        throw Error("recompute_window: " + std::to_string(L) + " leaves no room for text after the " +
                    std::to_string(v.sink_tokens) + " sink tokens of " + v.spec);
    std::set<uint64_t> seeds;
    for (uint64_t s : c.seeds)
      if (!seeds.insert(s).second) throw Error("seeds: " + std::to_string(s) + " is listed twice");
  } catch (const Error& e) {
    throw Error(pre + e.what());
  }
  for (uint64_t seed : c.seeds)
    for (const auto& v : g.variants) {
      Run r;
      r.v = v;
      r.seed = seed;
      r.dir = (fs::path(g.out) / "runs" / (v.slug() + "-s" + std::to_string(seed))).string();
      r.opt = run_options(c, v, seed, r.dir);
      try {
        r.opt.validate();
        r.opt.model_config(256);  // the model-shape checks (any vocabulary)
      } catch (const Error& e) {
        throw Error(pre + "[train] " + e.what());
      }
      g.runs.push_back(r);
    }
  std::error_code ec;
  if (!fs::is_directory(c.data, ec))
    throw Error(pre + "data: " + c.data + " is not a directory (make one with `streamllm data`)");
  const TokenShard val = TokenShard::open((fs::path(c.data) / "val.bin").string());
  g.val_path = fs::absolute(val.path()).lexically_normal().string();
  g.val_tokens = val.size();
  g.val_tokenizer = val.tokenizer_id();
  if (c.eval_tokens > val.size())
    throw Error(pre + "eval_tokens: " + std::to_string(c.eval_tokens) + " is more than the " +
                std::to_string(val.size()) + " tokens of " + val.path());
  g.curve_every = c.curve_every > 0 ? c.curve_every : std::max<int64_t>(1, c.eval_tokens / 64);
  return g;
}

// ---- run state -----------------------------------------------------------------------------------------------------

enum class RunState { New, Resume, Done };

struct RunStatus {
  RunState state = RunState::New;
  std::string checkpoint;  // Resume: the newest checkpoint
  int64_t steps_done = 0;  // Resume: its step
};

// Options that do not change the trained weights (paths, logging, how often to validate or save).
const std::set<std::string> kIgnoredOptions = {"out", "data", "eval_every", "eval_tokens", "save_every", "keep"};

RunStatus run_status(const Run& r) {
  RunStatus s;
  const fs::path dir(r.dir);
  std::error_code ec;
  if (fs::exists(dir / "model.h5", ec)) {
    json saved;
    try {
      saved = json::parse(read_text_file((dir / "options.json").string()));
    } catch (const std::exception& e) {
      throw Error(r.dir + ": has a model.h5 but no readable options.json (" + e.what() +
                  "); delete the directory to retrain it");
    }
    const json want = json::parse(r.opt.to_json());
    for (const auto& [k, v] : want.items())
      if (!kIgnoredOptions.count(k) && saved.contains(k) && saved[k] != v)
        throw Error(r.dir + ": was trained with " + k + " = " + saved[k].dump() + ", the grid asks " + v.dump() +
                    "; delete the directory to retrain it (or choose another out)");
    s.state = RunState::Done;
    return s;
  }
  const auto ck = list_checkpoints(r.dir);
  if (!ck.empty()) {
    s.state = RunState::Resume;
    s.checkpoint = ck.back();
    const std::string f = fs::path(ck.back()).stem().string();  // ckpt-00000123
    s.steps_done = to_int(f.substr(f.find('-') + 1), ck.back());
  }
  return s;
}


RunMetrics read_metrics(const std::string& dir) {
  RunMetrics m;
  std::ifstream f(fs::path(dir) / "metrics.jsonl");
  std::string line;
  double seg = 0, last = -1;
  while (std::getline(f, line)) {
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception&) {
      continue;
    }
    if (j.contains("val_loss")) m.val_loss = j["val_loss"].get<double>();
    if (!j.contains("loss")) continue;
    m.step.push_back(j.value("step", 0.0));
    m.loss.push_back(j["loss"].get<double>());
    const double e = j.value("elapsed_s", 0.0);
    if (e < last) {  // a new invocation (resume)
      m.train_seconds += seg;
      seg = 0;
    }
    seg = last = e;
  }
  m.train_seconds += seg;
  if (!m.loss.empty()) m.final_loss = m.loss.back();
  return m;
}

// ---- evaluation --------------------------------------------------------------------------------------------------


std::string eval_path(const Run& r, const AblateCache& k) {
  return (fs::path(r.dir) / ("eval-" + k.spec + ".json")).string();
}

// What an evaluation depends on besides its own settings: the validation shard and the model file.
json val_stamp(const Grid& g) {
  char tid[20];
  std::snprintf(tid, sizeof tid, "%016llx", (unsigned long long)g.val_tokenizer);
  return {{"path", g.val_path}, {"tokens", g.val_tokens}, {"tokenizer_id", tid}};
}

json model_stamp(const Run& r) {
  const fs::path model = fs::path(r.dir) / "model.h5";
  std::error_code ec;
  const auto size = fs::file_size(model, ec);
  const auto mtime = fs::last_write_time(model, ec);
  return {{"bytes", ec ? 0 : int64_t(size)}, {"mtime_ns", ec ? 0 : int64_t(mtime.time_since_epoch().count())}};
}

json eval_settings(const AblateConfig& c, const Grid& g, const Run& r, const AblateCache& k) {
  return {{"cache", k.spec},
          {"mode", cache_mode_name(k.mode)},
          {"sinks", k.sinks},
          {"window", k.window},
          {"eval_tokens", c.eval_tokens},
          {"curve_every", g.curve_every},
          {"val", val_stamp(g)},
          {"model", model_stamp(r)}};
}

// A cached result (an evaluation, a sink probe): the file parsed by `parse` when it exists, is readable, has this
// version and was computed with these settings; otherwise nothing, and the caller recomputes it.
template <class T, class Parse>
std::optional<T> load_cached(const std::string& path, const json& settings, int version, Parse parse) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  try {
    const json j = json::parse(read_text_file(path));
    if (j.value("version", 0) != version || j.at("settings") != settings) return std::nullopt;
    return parse(j);
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable
  }
}

std::optional<EvalRecord> load_eval(const std::string& path, const json& settings) {
  return load_cached<EvalRecord>(path, settings, 1, [](const json& j) -> std::optional<EvalRecord> {
    EvalRecord e;
    e.tokens = j.at("tokens").get<int64_t>();
    e.mean_nll = j.at("mean_nll").get<double>();
    e.ppl = j.at("ppl").get<double>();
    e.seconds = j.at("seconds").get<double>();
    e.cx = j.at("curve").at("tokens").get<std::vector<double>>();
    e.cy = j.at("curve").at("mean_nll").get<std::vector<double>>();
    return e;
  });
}

struct Stopped {};  // SIGINT/SIGTERM during an evaluation

EvalRecord compute_eval(const Model& m, const std::vector<int32_t>& ids, const AblateCache& k, int64_t every,
                        int64_t chunk, const std::function<void(int64_t, int64_t)>& progress) {
  PplOptions o;
  o.mode = k.mode;
  o.sinks = k.mode == CacheMode::Streaming ? k.sinks : 0;
  o.window = k.mode == CacheMode::Dense ? 1 : k.window;
  o.chunk = chunk;
  o.progress = progress;
  const PplResult r = stream_nll(m, cpu_backend(), ids, o);
  EvalRecord e;
  e.tokens = int64_t(r.nll.size());
  double sum = 0;
  for (double v : r.nll) sum += v;
  e.mean_nll = sum / double(e.tokens);
  e.ppl = std::exp(e.mean_nll);
  e.seconds = r.seconds;
  for (int64_t lo = 0; lo < e.tokens; lo += every) {
    const int64_t hi = std::min(e.tokens, lo + every);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += r.nll[size_t(i)];
    e.cx.push_back(double(hi));  // nll[i] scores token i+1 after i+1 tokens were streamed
    e.cy.push_back(s / double(hi - lo));
  }
  return e;
}

void save_eval(const std::string& path, const json& settings, const EvalRecord& e) {
  const json j = {{"format", "streamllm ablate evaluation"},
                  {"version", 1},
                  {"settings", settings},
                  {"tokens", e.tokens},
                  {"mean_nll", e.mean_nll},
                  {"ppl", e.ppl},
                  {"seconds", e.seconds},
                  {"curve", {{"tokens", e.cx}, {"mean_nll", e.cy}}}};
  write_file_atomic(path, j.dump(1) + "\n");
}

// ---- the sink probe (sink_probe.h), cached next to the run like an evaluation ----------------------------------

std::string probe_path(const Run& r) { return (fs::path(r.dir) / "sink-probe.json").string(); }

json probe_settings(const Grid& g, const Run& r, const SinkProbeOptions& o) {
  return {{"seq_len", o.seq_len}, {"rows", o.rows},           {"from", o.from},
          {"map_size", o.map_size}, {"val", val_stamp(g)}, {"model", model_stamp(r)}};
}

std::optional<SinkProbe> load_probe(const std::string& path, const json& settings) {
  return load_cached<SinkProbe>(path, settings, 3, [](const json& j) -> std::optional<SinkProbe> {
    SinkProbe p;
    p.layer = j.at("first_token_attention").get<std::vector<double>>();
    p.extra = j.at("extra_logit_attention").get<std::vector<double>>();
    p.uniform = j.at("uniform").get<double>();
    p.window = j.at("window").get<int64_t>();
    p.sink_tokens = j.at("sink_tokens").get<int64_t>();
    p.map_n = j.at("map_n").get<int64_t>();
    for (const auto& tri : j.at("maps")) {  // the lower triangles, row by row
      const auto v = tri.get<std::vector<double>>();
      if (v.size() != size_t(p.map_n * (p.map_n + 1) / 2)) return std::nullopt;
      std::vector<double> m(size_t(p.map_n * p.map_n), std::numeric_limits<double>::quiet_NaN());
      size_t at = 0;
      for (int64_t t = 0; t < p.map_n; ++t)
        for (int64_t i = 0; i <= t; ++i) m[size_t(t * p.map_n + i)] = v[at++];
      p.maps.push_back(std::move(m));
    }
    return p;
  });
}

void save_probe(const std::string& path, const json& settings, const SinkProbe& p) {
  json maps = json::array();
  for (const auto& m : p.maps) {
    std::vector<double> tri;  // (t, j) for j <= t: the causal map without its NaN upper half
    for (int64_t t = 0; t < p.map_n; ++t)
      for (int64_t i = 0; i <= t; ++i) tri.push_back(m[size_t(t * p.map_n + i)]);
    maps.push_back(tri);
  }
  const json j = {{"format", "streamllm ablate sink probe"},
                  {"version", 3},
                  {"settings", settings},
                  {"first_token_attention", p.layer},
                  {"extra_logit_attention", p.extra},
                  {"uniform", p.uniform},
                  {"window", p.window},
                  {"sink_tokens", p.sink_tokens},
                  {"map_n", p.map_n},
                  {"maps", maps}};
  write_file_atomic(path, j.dump(1) + "\n");
}

// ---- tasks, progress, ETA ----------------------------------------------------------------------------------------

struct Task {
  bool train = false;
  size_t run = 0, cache = 0;
  bool todo = true;  // not done already (a finished run, a cached evaluation)
  double work = 0;   // steps to train, or tokens to score
  int kind = 0;      // rate class: 0 training steps, 1 streaming evaluation tokens, 2 recompute tokens
};

std::vector<Task> plan_tasks(const AblateConfig& c, const Grid& g, std::vector<RunStatus>& st) {
  std::vector<Task> tasks;
  st.clear();
  for (size_t ri = 0; ri < g.runs.size(); ++ri) {
    st.push_back(run_status(g.runs[ri]));
    Task t;
    t.train = true;
    t.run = ri;
    t.todo = st[ri].state != RunState::Done;
    t.work = double(g.runs[ri].opt.steps - st[ri].steps_done);
    tasks.push_back(t);
    for (size_t ki = 0; ki < g.caches.size(); ++ki) {
      Task e;
      e.run = ri;
      e.cache = ki;
      e.kind = g.caches[ki].mode == CacheMode::Recompute ? 2 : 1;
      e.work = double(c.eval_tokens);
      e.todo = !(st[ri].state == RunState::Done &&
                 load_eval(eval_path(g.runs[ri], g.caches[ki]), eval_settings(c, g, g.runs[ri], g.caches[ki])));
      tasks.push_back(e);
    }
  }
  return tasks;
}

class Eta {
 public:
  void add(int kind, double work, double seconds) {
    if (work <= 0) return;
    work_[kind] += work;
    secs_[kind] += seconds;
  }
  // "ETA 4m10s" for the tasks from `from` on that are still to do; "ETA >= 4m10s" while some of them are of a kind
  // not measured yet (they count 0), "ETA ?" while none is.
  std::string left(const std::vector<Task>& tasks, size_t from) const {
    double s = 0;
    bool known = false, unknown = false;
    for (size_t i = from; i < tasks.size(); ++i) {
      if (!tasks[i].todo) continue;
      const int k = tasks[i].kind;
      if (work_[k] <= 0) {
        unknown = true;
        continue;
      }
      known = true;
      s += tasks[i].work * secs_[k] / work_[k];
    }
    if (unknown && !known) return "ETA ?";
    return std::string("ETA ") + (unknown ? ">= " : "") + duration_str(s);
  }

 private:
  double work_[3] = {0, 0, 0}, secs_[3] = {0, 0, 0};
};

}  // namespace

void validate_ablate_config(const AblateConfig& c) { make_grid(c); }

std::string ablate_plan(const AblateConfig& c) {
  const Grid g = make_grid(c);
  std::vector<RunStatus> st;
  const auto tasks = plan_tasks(c, g, st);
  std::vector<std::string> ks;
  for (const auto& k : g.caches) ks.push_back(k.label());
  const TrainOptions& o = g.runs[0].opt;
  std::string s = "ablate " + c.name + ": " + std::to_string(g.variants.size()) + " variants x " +
                  std::to_string(c.seeds.size()) + " seeds = " + std::to_string(g.runs.size()) + " runs; caches " +
                  join(ks, ", ") + "\n";
  s += "train (each run): " + o.family + " block, hidden " + std::to_string(o.hidden) + ", " +
       std::to_string(o.layers) + " layers, " + std::to_string(o.heads) + " heads, seq-len " + std::to_string(o.seq_len) +
       ", " + std::to_string(o.steps) + " steps of " + std::to_string(o.batch * o.accum * o.seq_len) + " tokens, data " +
       o.data + "\n";
  s += "eval (each run x cache): the first " + std::to_string(c.eval_tokens) + " of the " + std::to_string(g.val_tokens) +
       " tokens of " + g.val_path + ", a curve point every " + std::to_string(g.curve_every) + " tokens\n";
  s += "out: " + g.out + "\n";
  size_t todo = 0;
  for (const auto& t : tasks) todo += t.todo;
  for (size_t ri = 0; ri < g.runs.size(); ++ri) {
    const RunStatus& r = st[ri];
    const std::string state = r.state == RunState::Done     ? "done (model.h5)"
                              : r.state == RunState::Resume ? "resume from " + fs::path(r.checkpoint).filename().string()
                                                            : "train";
    size_t cached = 0;
    for (const auto& t : tasks)
      if (!t.train && t.run == ri && !t.todo) ++cached;
    char line[512];
    std::snprintf(line, sizeof line, "  run %-28s %-32s evals: %zu cached, %zu to compute\n",
                  ("runs/" + fs::path(g.runs[ri].dir).filename().string()).c_str(), state.c_str(), cached,
                  g.caches.size() - cached);
    s += line;
  }
  s += "tasks: " + std::to_string(tasks.size()) + " (" + std::to_string(g.runs.size()) + " trainings, " +
       std::to_string(g.runs.size() * g.caches.size()) + " evaluations), " + std::to_string(todo) + " to do\n";
  return s;
}

AblateSummary run_ablation(const AblateConfig& c) {
  const double t0 = now_s();
  const Grid g = make_grid(c);
  AblateSummary sum;
  sum.out = g.out;
  sum.runs = int(g.runs.size());
  sum.evals = int(g.runs.size() * g.caches.size());
  if (c.threads > 0) omp_set_num_threads(c.threads);
  else if (c.train.threads > 0) omp_set_num_threads(c.train.threads);
  fs::create_directories(fs::path(g.out) / "runs");
  std::vector<int32_t> ids(size_t(c.eval_tokens));
  TokenShard::open(g.val_path).read(0, c.eval_tokens, ids.data());

  std::vector<RunStatus> st;
  std::vector<Task> tasks = plan_tasks(c, g, st);
  std::vector<RunResult> res(g.runs.size());
  for (auto& r : res) r.evals.resize(g.caches.size());
  Eta eta;
  const bool bar = c.progress && isatty(2);
  auto header = [&](size_t ti) {
    return "[ablate " + std::to_string(ti + 1) + "/" + std::to_string(tasks.size()) + "] ";
  };
  auto clock = [&](size_t ti) { return " | elapsed " + duration_str(now_s() - t0) + " | " + eta.left(tasks, ti); };
  std::printf("ablate %s: %zu runs x %zu caches, results in %s\n", c.name.c_str(), g.runs.size(), g.caches.size(),
              g.out.c_str());
  std::fflush(stdout);
  // Every evaluation of a run shares one loaded model, loaded for the first of them not cached.
  std::unique_ptr<ModelBundle> model;
  std::string loaded_dir;
  std::vector<std::string> cached_note;  // the cached evaluations of the current run, printed as one line
  std::string probe_note;                // and its cached sink probe
  try {
    for (size_t ti = 0; ti < tasks.size(); ++ti) {
      Task& t = tasks[ti];
      const Run& r = g.runs[t.run];
      if (stop_flag()) throw Stopped{};
      if (t.train) {
        if (!t.todo) {
          ++sum.skipped;
          std::printf("%strain %s: done (model.h5), skipped\n", header(ti).c_str(), r.name().c_str());
        } else {
          TrainOptions o = r.opt;
          o.resume = st[t.run].state == RunState::Resume;
          std::printf("%strain %s%s%s\n", header(ti).c_str(), r.name().c_str(),
                      o.resume ? (" (resume from " + fs::path(st[t.run].checkpoint).filename().string() + ")").c_str()
                               : "",
                      clock(ti).c_str());
          std::fflush(stdout);
          const double ts = now_s();
          const TrainResult tr = run_training(o);
          std::fflush(stdout);
          if (tr.interrupted) throw Stopped{};
          eta.add(0, t.work, now_s() - ts);
          ++(o.resume ? sum.resumed : sum.trained);
          t.todo = false;
        }
        res[t.run].trained = true;
        res[t.run].metrics = read_metrics(r.dir);
        continue;
      }
      const AblateCache& k = g.caches[t.cache];
      const std::string path = eval_path(r, k);
      const json settings = eval_settings(c, g, r, k);
      std::optional<EvalRecord> e = load_eval(path, settings);
      if (e) {
        ++sum.cached;
        t.todo = false;
        cached_note.push_back(k.label() + " " + fmt("%.3f", e->ppl));
      } else {
        if (!model || loaded_dir != r.dir) {
          model = std::make_unique<ModelBundle>(load_bundle((fs::path(r.dir) / "model.h5").string()));
          loaded_dir = r.dir;
        }
        const std::string label = header(ti) + "eval " + r.name() + ", cache " + k.label();
        double last = 0;
        auto progress = [&](int64_t done, int64_t total) {
          if (stop_flag()) throw Stopped{};
          if (!bar || now_s() - last < 0.25) return;
          last = now_s();
          std::fprintf(stderr, "\r%s: %3d%%\033[K", label.c_str(), int(100.0 * double(done) / double(total)));
        };
        try {
          e = compute_eval(model->model, ids, k, g.curve_every, c.chunk, progress);
        } catch (...) {
          if (bar) std::fprintf(stderr, "\r\033[K");
          throw;
        }
        if (bar) std::fprintf(stderr, "\r\033[K");
        save_eval(path, settings, *e);
        eta.add(t.kind, t.work, e->seconds);
        t.todo = false;
        ++sum.evaluated;
        std::printf("%s: ppl %.3f over %lld tokens, %.1f s%s\n", label.c_str(), e->ppl, (long long)e->tokens, e->seconds,
                    clock(ti + 1).c_str());
        std::fflush(stdout);
      }
      res[t.run].evals[t.cache] = e;
      if (t.cache + 1 == g.caches.size()) {
        // The run's last evaluation: its sink probe (a second or so), then a partial table.
        const SinkProbeOptions po = ablate_detail::sink_probe_options(r.opt);
        if (g.val_tokens >= po.seq_len) {
          const json ps = probe_settings(g, r, po);
          std::optional<SinkProbe> p = load_probe(probe_path(r), ps);
          if (p) {
            probe_note = ", sink probe " + fmt("%.1fx uniform", p->x_uniform());
          } else {
            if (!model || loaded_dir != r.dir)
              model = std::make_unique<ModelBundle>(load_bundle((fs::path(r.dir) / "model.h5").string()));
            p = probe_sink(model->model, TokenShard::open(g.val_path), po);
            save_probe(probe_path(r), ps, *p);
            std::printf("%ssink probe %s: attention on the first token%s %.4f, %.1fx uniform%s (mean of %zu layers)\n",
                        header(ti).c_str(), r.name().c_str(), p->sink_tokens > 1 ? "s" : "", p->mean(), p->x_uniform(),
                        p->extra.empty() ? "" : (", on the extra logit " + fmt("%.4f", p->extra_mean())).c_str(),
                        p->layer.size());
          }
          res[t.run].sink = p;
        }
        model.reset();
        loaded_dir.clear();
        if (!cached_note.empty())
          std::printf("%seval %s: %zu cached (ppl %s%s)\n", header(ti).c_str(), r.name().c_str(), cached_note.size(),
                      join(cached_note, ", ").c_str(), probe_note.c_str());
        cached_note.clear();
        probe_note.clear();
        write_outputs(c, g, res);  // a partial table after every run
      }
    }
  } catch (const Stopped&) {
    sum.interrupted = true;
    write_outputs(c, g, res);
    sum.seconds = now_s() - t0;
    std::printf("ablate: stopped after %s; the finished runs and evaluations are kept: rerun the same command to "
                "continue\n",
                duration_str(sum.seconds).c_str());
    return sum;
  }
  write_outputs(c, g, res);
  sum.seconds = now_s() - t0;
  std::printf("ablate: done in %s: %d runs (%d trained, %d resumed, %d already done), %d evaluations (%d computed, %d "
              "cached); results in %s (table.md, results.csv, plots/)\n",
              duration_str(sum.seconds).c_str(), sum.runs, sum.trained, sum.resumed, sum.skipped, sum.evals, sum.evaluated,
              sum.cached, g.out.c_str());
  std::fflush(stdout);
  return sum;
}

}  // namespace sllm::train
