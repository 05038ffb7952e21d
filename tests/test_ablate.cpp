// `streamllm ablate` end to end (train/ablate.h): a tiny grid (2 variants x 2 caches + the dense and recompute
// baselines, one seed, a few steps each) writes the table, the CSVs, the plots and the provenance; its numbers are
// exactly what stream_nll gives for the trained models; a second run retrains and recomputes nothing and writes
// identical files; a run whose model.h5 is gone is resumed from its checkpoint to the same numbers; a changed grid
// refuses a stale run. Plus the config file (keys, errors) and the [train] keys against `streamllm train`'s.
//
// The corpus is this repository's documentation encoded with the 256-symbol byte tokenizer (as in
// test_trainer.cpp), so the test needs no download.
#include <gtest/gtest.h>

#include <cmath>              // std::exp, std::isfinite
#include <cstdio>             // popen, pclose, std::fgets
#include <filesystem>         // std::filesystem
#include <fstream>            // std::ifstream, std::ofstream
#include <map>                // std::map
#include <nlohmann/json.hpp>  // nlohmann::json
#include <regex>              // std::regex
#include <set>                // std::set
#include <sstream>            // std::stringstream
#include <string>             // std::string
#include <vector>             // std::vector

#include "core/error.h"           // Error
#include "model/bundle.h"         // load_bundle
#include "ops/backend.h"          // cpu_backend
#include "runtime/stream.h"       // stream_nll
#include "train/ablate.h"         // run_ablation, load_ablate_config
#include "train/sink_probe.h"     // probe_sink
#include "train/token_data.h"     // TokenShard
#include "train_test_util.h"       // write_byte_corpus, OneThreadTest, slurp

namespace sllm::train {
namespace {

namespace fs = std::filesystem;
const std::string kSrc = SLLM_SOURCE_DIR;

using testutil::slurp;

std::string tmp(const std::string& name) {
  return (fs::temp_directory_path() / ("sllm_ablate_" + name + "_" + std::to_string(::getpid()))).string();
}

// A `streamllm data` directory: the docs as bytes, the last tenth held out.
const std::string& data_dir() {
  static const std::string dir = [] {
    const std::string d = tmp("data");
    fs::remove_all(d);
    testutil::write_byte_corpus(d, {"/README.md", "/docs/architecture.md", "/docs/format.md", "/docs/training.md"});
    return d;
  }();
  return dir;
}

using Ablate = testutil::OneThreadTest;

AblateConfig tiny_grid(const std::string& out) {
  AblateConfig c;
  c.name = "tiny-test";
  c.data = data_dir();
  c.out = out;
  c.variants = {"vanilla", "learnable_sink:1"};
  c.seeds = {1};
  c.caches = {"0+16", "1+15"};
  c.baselines = {"dense", "recompute"};
  c.eval_tokens = 384;
  c.curve_every = 32;
  c.threads = 1;
  c.progress = false;
  TrainOptions& t = c.train;
  t.hidden = 32;
  t.layers = 2;
  t.heads = 4;
  t.seq_len = 16;
  t.batch = 4;
  t.steps = 6;
  t.warmup = 2;
  t.lr = 3e-3;
  t.eval_every = 0;
  t.eval_tokens = 128;
  t.save_every = 2;
  t.keep = 0;
  t.quiet = true;
  return c;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) v.push_back(l);
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, sep);) v.push_back(x);
  if (!s.empty() && s.back() == sep) v.push_back("");
  return v;
}

// Well-formed XML, enough for our SVGs: balanced, properly nested tags, quoted attributes. "" when fine.
std::string xml_error(const std::string& s) {
  std::vector<std::string> open;
  int roots = 0;
  for (size_t i = s.find('<'); i != std::string::npos; i = s.find('<', i)) {
    if (s.compare(i, 2, "<?") == 0 || s.compare(i, 4, "<!--") == 0) {
      const std::string end = s[i + 1] == '?' ? "?>" : "-->";
      const size_t e = s.find(end, i);
      if (e == std::string::npos) return "unterminated declaration or comment";
      i = e + end.size();
      continue;
    }
    const size_t e = s.find('>', i);
    if (e == std::string::npos) return "unterminated tag at byte " + std::to_string(i);
    std::string tag = s.substr(i + 1, e - i - 1);
    size_t quotes = 0;
    for (char ch : tag) quotes += ch == '"';
    if (quotes % 2) return "unbalanced quotes in <" + tag + ">";
    i = e + 1;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) return "</" + name + "> does not close the open element";
      open.pop_back();
      continue;
    }
    const bool self = tag.back() == '/';
    const std::string name = tag.substr(0, tag.find_first_of(" \t\n/"));
    if (open.empty()) ++roots;
    if (!self) open.push_back(name);
  }
  if (!open.empty()) return "<" + open.back() + "> is never closed";
  return roots == 1 ? "" : std::to_string(roots) + " root elements";
}

std::set<std::string> series_names(const std::string& svg) {
  std::set<std::string> names;
  const std::regex re("<g class=\"series\" data-name=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1]);
  return names;
}

// Every output file of a results folder (runs/ excluded) with its bytes.
std::map<std::string, std::string> outputs(const std::string& out) {
  std::map<std::string, std::string> m;
  for (const char* f : {"table.md", "results.csv", "curves.csv", "sinks.csv", "config.toml", "README.md"})
    m[f] = slurp(out + "/" + f);
  for (const auto& e : fs::directory_iterator(out + "/plots"))
    m["plots/" + e.path().filename().string()] = slurp(e.path().string());
  return m;
}

// The table's perplexity part (the training table below it has wall-clock times).
std::string ppl_table(const std::string& table_md) { return table_md.substr(0, table_md.find("\nStreaming perplexity")); }

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(Ablate, TinyGridEndToEndAndResume) {
  const std::string out = tmp("grid");
  fs::remove_all(out);
  AblateConfig c = tiny_grid(out);

  // ---- the first run trains and evaluates everything ----
  const AblateSummary s1 = run_ablation(c);
  EXPECT_EQ(s1.runs, 2);
  EXPECT_EQ(s1.trained, 2);
  EXPECT_EQ(s1.evals, 8);
  EXPECT_EQ(s1.evaluated, 8);
  EXPECT_FALSE(s1.interrupted);

  // table.md: Table 3's shape, one row per variant with a number in every cache column.
  const std::string table = slurp(out + "/table.md");
  EXPECT_NE(table.find("| variant | 0+16 | 1+15 | dense | recompute L=16 |"), std::string::npos) << table;
  const std::string num = " [0-9]+\\.[0-9]+ \\|";
  for (const char* v : {"vanilla", "learnable_sink:1"})
    EXPECT_TRUE(std::regex_search(table, std::regex("\\| " + std::string(v) + " \\|" + num + num + num + num)))
        << v << "\n" << table;
  EXPECT_NE(table.find("one seed"), std::string::npos);

  // results.csv: 2 variants x 4 caches, finite, and exactly what stream_nll gives for the trained models.
  const auto csv = lines(slurp(out + "/results.csv"));
  ASSERT_EQ(csv.size(), 9u);
  EXPECT_EQ(csv[0], "variant,seed,cache,tokens,mean_nll,ppl,train_final_loss,val_loss,train_seconds,eval_seconds");
  std::vector<int32_t> ids(384);
  TokenShard::open(data_dir() + "/val.bin").read(0, 384, ids.data());
  std::map<std::string, double> ppl;
  for (size_t i = 1; i < csv.size(); ++i) {
    const auto f = split(csv[i], ',');
    ASSERT_EQ(f.size(), 10u) << csv[i];
    EXPECT_EQ(f[1], "1");
    EXPECT_EQ(f[3], "383");  // 384 tokens streamed, every next token scored
    for (size_t j = 4; j < 10; ++j) EXPECT_TRUE(std::isfinite(std::stod(f[j]))) << csv[i];
    EXPECT_NEAR(std::stod(f[5]), std::exp(std::stod(f[4])), 1e-6 * std::stod(f[5]));
    ppl[f[0] + " " + f[2]] = std::stod(f[5]);
  }
  ASSERT_EQ(ppl.size(), 8u);
  for (const auto& [dir, variant] : {std::pair{"vanilla-s1", "vanilla"}, {"learnable_sink_k1-s1", "learnable_sink:1"}}) {
    const ModelBundle b = load_bundle(out + "/runs/" + dir + "/model.h5");
    PplOptions o;
    o.mode = CacheMode::Streaming;
    o.sinks = 1;
    o.window = 15;
    EXPECT_NEAR(stream_nll(b.model, cpu_backend(), ids, o).ppl, ppl[std::string(variant) + " 1+15"], 1e-6);
    o.mode = CacheMode::Window;
    o.sinks = 0;
    o.window = 16;
    EXPECT_NEAR(stream_nll(b.model, cpu_backend(), ids, o).ppl, ppl[std::string(variant) + " 0+16"], 1e-6);
    o.mode = CacheMode::Recompute;
    EXPECT_NEAR(stream_nll(b.model, cpu_backend(), ids, o).ppl, ppl[std::string(variant) + " recompute"], 1e-6);
  }
  // The sink probe: a column of the training table, and sinks.csv per layer, exactly what probe_sink gives.
  EXPECT_NE(table.find("| variant | final train loss | val loss | attention on the first token (x uniform) | attention on the "
                       "extra logit | train time (s) |"),
            std::string::npos)
      << table;
  const std::string train_table = table.substr(table.find("| attention on the first token"));
  for (const char* v : {"vanilla", "learnable_sink:1"})
    EXPECT_TRUE(std::regex_search(train_table, std::regex("\\| " + std::string(v) + " \\|[^|\n]+\\|[^|\n]+\\|" + num)))
        << v << "\n" << train_table;
  const auto sinks = lines(slurp(out + "/sinks.csv"));
  ASSERT_EQ(sinks.size(), 1u + 2u * 3u);  // 2 runs x (2 layers + their mean)
  EXPECT_EQ(sinks[0], "variant,seed,layer,first_token_attention,uniform,x_uniform,extra_logit_attention");
  {
    const ModelBundle b = load_bundle(out + "/runs/learnable_sink_k1-s1/model.h5");
    SinkProbeOptions po;
    po.seq_len = 16;
    po.rows = 8;
    po.from = 1;
    const SinkProbe p = probe_sink(b.model, TokenShard::open(data_dir() + "/val.bin"), po);
    ASSERT_EQ(p.layer.size(), 2u);
    EXPECT_EQ(p.window, 17);  // the sink token + 16
    for (size_t l = 0; l < 3; ++l) {
      const auto f = split(sinks[4 + l], ',');
      ASSERT_EQ(f.size(), 7u) << sinks[4 + l];
      EXPECT_EQ(f[6], "");  // no extra logit in a learnable-sink model
      EXPECT_EQ(f[0] + "," + f[1] + "," + f[2], "learnable_sink:1,1," + (l < 2 ? std::to_string(l) : "mean"));
      const double a = l < 2 ? p.layer[l] : p.mean();
      EXPECT_NEAR(std::stod(f[3]), a, 1e-7);
      EXPECT_GT(a, 0.0);
      EXPECT_LT(a, 1.0);
      EXPECT_NEAR(std::stod(f[5]), a / p.uniform, 1e-6 * a / p.uniform);
    }
  }

  // curves.csv: 8 curves of ceil(383 / 32) = 12 segments.
  EXPECT_EQ(lines(slurp(out + "/curves.csv")).size(), 1u + 8u * 12u);

  // The plots: well-formed SVG with the expected series.
  const std::set<std::string> variants = {"vanilla", "learnable_sink:1"};
  const std::set<std::string> caches = {"0+16", "1+15", "dense", "recompute L=16"};
  const std::map<std::string, std::set<std::string>> plots = {
      {"train_loss.svg", variants}, {"nll_vanilla.svg", caches}, {"nll_learnable_sink_k1.svg", caches},
      {"nll_0+16.svg", variants},   {"nll_1+15.svg", variants},  {"nll_dense.svg", variants},
      {"nll_recompute.svg", variants}, {"attention_vanilla.svg", {}}, {"attention_learnable_sink_k1.svg", {}}};
  for (const auto& [file, names] : plots) {
    const std::string svg = slurp(out + "/plots/" + file);
    EXPECT_EQ(xml_error(svg), "") << file;
    EXPECT_EQ(series_names(svg), names) << file;
    EXPECT_EQ(svg.find("no data"), std::string::npos) << file;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(out + "/plots"), fs::directory_iterator()), 9);
  // The attention maps: one panel per layer (2), each the lower triangle of 16 x 16 cells.
  for (const char* f : {"attention_vanilla.svg", "attention_learnable_sink_k1.svg"}) {
    const std::string svg = slurp(out + "/plots/" + f);
    EXPECT_NE(svg.find(R"(<g class="panel" data-name="layer 1">)"), std::string::npos) << f;
    size_t cells = 0;
    for (size_t i = svg.find("class=\"cell\""); i != std::string::npos; i = svg.find("class=\"cell\"", i + 1)) ++cells;
    EXPECT_EQ(cells, 2u * 136u) << f;
  }

  // Provenance.
  const auto meta = nlohmann::json::parse(slurp(out + "/meta.json"));
  EXPECT_EQ(meta["train"]["hidden"], 32);
  EXPECT_EQ(meta["eval"]["tokens"], 384);
  EXPECT_TRUE(meta["source"]["commit"].is_string());
  // In a git checkout the commit is the source tree's HEAD (a build that forgot to tell the report where its
  // source is would say "unknown").
  if (FILE* p = popen(("git -C '" + kSrc + "' rev-parse HEAD 2>/dev/null").c_str(), "r")) {
    char head[64] = {0};
    const bool got = std::fgets(head, sizeof head, p) != nullptr;
    if (pclose(p) == 0 && got) {
      EXPECT_EQ(meta["source"]["commit"], std::string(head, 40));
      EXPECT_TRUE(meta["source"]["dirty"].is_boolean());
    }
  }
  EXPECT_NE(meta["streamllm"], "unknown");
  EXPECT_TRUE(meta["machine"]["cpu"].is_string());
  EXPECT_EQ(meta["runs"].size(), 2u);
  EXPECT_NE(slurp(out + "/config.toml").find("overrides in effect (they win over the file): none"), std::string::npos);
  EXPECT_NE(slurp(out + "/README.md").find("| vanilla |"), std::string::npos);

  // ---- a second run retrains nothing, recomputes nothing, writes the same files ----
  const auto before = outputs(out);
  const auto mtime = [&](const std::string& run) { return fs::last_write_time(out + "/runs/" + run + "/model.h5"); };
  const auto m_vanilla = mtime("vanilla-s1"), m_sink = mtime("learnable_sink_k1-s1");
  const auto m_probe = fs::last_write_time(out + "/runs/vanilla-s1/sink-probe.json");
  const std::string plan = ablate_plan(c);
  EXPECT_NE(plan.find("done (model.h5)"), std::string::npos) << plan;
  EXPECT_NE(plan.find("evals: 4 cached, 0 to compute"), std::string::npos) << plan;
  EXPECT_NE(plan.find("tasks: 10 (2 trainings, 8 evaluations), 0 to do"), std::string::npos) << plan;
  const AblateSummary s2 = run_ablation(c);
  EXPECT_EQ(s2.trained + s2.resumed, 0);
  EXPECT_EQ(s2.skipped, 2);
  EXPECT_EQ(s2.evaluated, 0);
  EXPECT_EQ(s2.cached, 8);
  EXPECT_EQ(mtime("vanilla-s1"), m_vanilla);
  EXPECT_EQ(mtime("learnable_sink_k1-s1"), m_sink);
  EXPECT_EQ(fs::last_write_time(out + "/runs/vanilla-s1/sink-probe.json"), m_probe);  // cached, not redone
  EXPECT_EQ(outputs(out), before);

  // ---- a run without model.h5 resumes from its newest checkpoint, to the same weights and numbers ----
  const std::string run = out + "/runs/learnable_sink_k1-s1";
  fs::remove(run + "/model.h5");
  ASSERT_TRUE(fs::exists(run + "/ckpt-00000006.h5"));
  fs::remove(run + "/ckpt-00000006.h5");  // so the resume has a step left to train (from ckpt-00000004.h5)
  EXPECT_NE(ablate_plan(c).find("resume from ckpt-00000004.h5"), std::string::npos) << ablate_plan(c);
  const AblateSummary s3 = run_ablation(c);
  EXPECT_EQ(s3.resumed, 1);
  EXPECT_EQ(s3.skipped, 1);
  EXPECT_EQ(s3.trained, 0);
  EXPECT_EQ(s3.evaluated, 4);  // that run's model file changed: its evaluations are redone
  EXPECT_EQ(s3.cached, 4);
  EXPECT_TRUE(fs::exists(run + "/model.h5"));
  EXPECT_EQ(ppl_table(slurp(out + "/table.md")), ppl_table(before.at("table.md")));
  EXPECT_EQ(slurp(out + "/sinks.csv"), before.at("sinks.csv"));  // the probe is redone on the same weights
  const auto csv3 = lines(slurp(out + "/results.csv"));
  ASSERT_EQ(csv3.size(), csv.size());
  for (size_t i = 1; i < csv.size(); ++i)  // the numbers (not the wall-clock seconds) are the same
    for (size_t j = 0; j < 8; ++j) EXPECT_EQ(split(csv3[i], ',')[j], split(csv[i], ',')[j]) << csv[i];

  // ---- a grid that asks something else of a finished run refuses it ----
  c.train.hidden = 64;
  expect_error([&] { run_ablation(c); }, "vanilla-s1: was trained with hidden = 32, the grid asks 64; delete the directory");
  fs::remove_all(out);
}

TEST_F(Ablate, ConfigFile) {
  const std::string dir = tmp("config");
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  const std::string good = write("good.toml", R"(# a comment
name = "grid"
data = ")" + data_dir() + R"("
out = "somewhere"
variants = ["vanilla", "zero_sink", "learnable_sink:2",
            "sink_logit"]
seeds = [3, 1]
caches = ["0+252", "1+251", "4+248"]
baselines = ["recompute"]
eval_tokens = 1000
curve_every = 50

[train]
family = "llama"
hidden = 48
seq-len = 64
lr = 2e-3
no-shuffle = true
tied-head = true
log-every = 5
)");
  const AblateConfig c = load_ablate_config(good);
  EXPECT_EQ(c.name, "grid");
  EXPECT_EQ(c.variants, (std::vector<std::string>{"vanilla", "zero_sink", "learnable_sink:2", "sink_logit"}));
  EXPECT_EQ(c.seeds, (std::vector<uint64_t>{3, 1}));
  EXPECT_EQ(c.caches, (std::vector<std::string>{"0+252", "1+251", "4+248"}));
  EXPECT_EQ(c.baselines, (std::vector<std::string>{"recompute"}));
  EXPECT_EQ(c.eval_tokens, 1000);
  EXPECT_EQ(c.curve_every, 50);
  EXPECT_EQ(c.train.family, "llama");
  EXPECT_EQ(c.train.hidden, 48);
  EXPECT_EQ(c.train.seq_len, 64);
  EXPECT_DOUBLE_EQ(c.train.lr, 2e-3);
  EXPECT_FALSE(c.train.shuffle);
  EXPECT_TRUE(c.train.tied_head);
  EXPECT_TRUE(c.log_every_given);
  EXPECT_NE(c.config_text.find("# a comment"), std::string::npos);
  EXPECT_NO_THROW(validate_ablate_config(c));
  const std::string plan = ablate_plan(c);
  EXPECT_NE(plan.find("4 variants x 2 seeds = 8 runs; caches 0+252, 1+251, 4+248, recompute L=252"), std::string::npos)
      << plan;
  EXPECT_NE(plan.find("runs/learnable_sink_k2-s3"), std::string::npos) << plan;

  // A valid config with some keys replaced (a value "" drops the key) and text appended.
  auto variant = [&](const std::string& name, const std::map<std::string, std::string>& repl, const std::string& tail) {
    std::map<std::string, std::string> keys = {{"data", "\"" + data_dir() + "\""}, {"out", "\"o\""},
                                               {"variants", "[\"vanilla\"]"},       {"seeds", "[1]"},
                                               {"caches", "[\"1+15\"]"},             {"eval_tokens", "100"}};
    for (const auto& [k, v] : repl) keys[k] = v;
    std::string text;
    for (const auto& [k, v] : keys)
      if (!v.empty()) text += k + " = " + v + "\n";
    const AblateConfig x = load_ablate_config(write(name, text + tail));
    validate_ablate_config(x);
  };
  EXPECT_NO_THROW(variant("base.toml", {}, ""));
  expect_error([&] { variant("k1.toml", {}, "[train]\nhiden = 32\n"); }, "k1.toml: unknown key 'hiden' in [train]");
  expect_error([&] { variant("k2.toml", {{"windows", "3"}}, ""); }, "k2.toml: unknown key 'windows'");
  expect_error([&] { variant("k3.toml", {}, "[model]\nx = 1\n"); }, "k3.toml: unknown section [model]");
  expect_error([&] { variant("k4.toml", {}, "[train]\nseed = 5\n"); },
               "k4.toml: [train] seed: set by the grid, not by [train] (the seeds list sets it)");
  expect_error([&] { variant("k5.toml", {}, "[train]\nhidden = big\n"); },
               "k5.toml: [train] hidden: expected an integer, got 'big'");
  expect_error([&] { variant("k6.toml", {{"variants", "[\"vanilla\", \"softmax1\"]"}}, ""); },
               "k6.toml: variants: 'softmax1' is not one of");
  expect_error([&] { variant("k7.toml", {{"caches", "[\"4-248\"]"}}, ""); }, "k7.toml: caches: '4-248' is not S+R");
  expect_error([&] { variant("k8.toml", {{"eval_tokens", "100000000"}}, ""); },
               "k8.toml: eval_tokens: 100000000 is more than the");
  expect_error([&] { variant("k9.toml", {}, "[train]\nheads = 5\n"); },
               "k9.toml: [train] --heads: must divide --hidden (128), got 5");
  expect_error([&] { variant("k10.toml", {{"caches", "[\"dense\"]"}}, ""); }, "'dense' is a baseline");
  expect_error([&] { variant("k11.toml", {{"seeds", "[1, 1]"}}, ""); }, "seeds: 1 is listed twice");
  expect_error([&] { variant("k12.toml", {{"data", ""}}, ""); }, "k12.toml: data: required");
  expect_error([&] { variant("k13.toml", {}, "eval_tokens = 50\n"); }, "k13.toml: key 'eval_tokens' is given twice");
  expect_error([&] { variant("k14.toml", {{"eval_tokens", ""}}, ""); }, "k14.toml: eval_tokens: required");
  expect_error([&] { variant("k15.toml", {{"baselines", "[\"oracle\"]"}}, ""); }, "baselines: 'oracle' is not dense or recompute");
  fs::remove_all(dir);
}

// Every option of `streamllm train` (train/cmd_train.cpp) is a [train] key or set by the grid, and nothing else is.
TEST(AblateKeys, MatchTheTrainCommand) {
  const std::string src = slurp(kSrc + "/train/cmd_train.cpp");
  std::set<std::string> train_opts;
  const std::regex re("add_(?:option|flag)\\(\"--([a-z0-9-]+)(?:,!--([a-z0-9-]+))?");
  for (auto it = std::sregex_iterator(src.begin(), src.end(), re); it != std::sregex_iterator(); ++it) {
    train_opts.insert((*it)[1]);
    if ((*it)[2].matched) train_opts.insert((*it)[2]);
  }
  ASSERT_GT(train_opts.size(), 30u);
  std::set<std::string> ours;
  for (const auto& k : ablate_train_keys()) ours.insert(k);
  for (const auto& k : ablate_grid_owned_train_keys()) EXPECT_TRUE(ours.insert(k).second) << k;
  EXPECT_EQ(ours, train_opts);
}

TEST(AblateKeys, VariantsAndCaches) {
  EXPECT_EQ(parse_variant("learnable_sink:2").slug(), "learnable_sink_k2");
  EXPECT_EQ(parse_variant("learnable_sink").sink_tokens, 1);
  EXPECT_EQ(parse_variant("zero_sink").slug(), "zero_sink");
  EXPECT_THROW(parse_variant("zero_sink:2"), Error);
  EXPECT_THROW(parse_variant("learnable_sink:0"), Error);
  const AblateCache w = parse_cache("0+252", 0), s = parse_cache("4+248", 0), r = parse_cache("recompute", 252);
  EXPECT_EQ(w.mode, CacheMode::Window);
  EXPECT_EQ(w.window, 252);
  EXPECT_EQ(s.mode, CacheMode::Streaming);
  EXPECT_EQ(s.sinks, 4);
  EXPECT_EQ(s.window, 248);
  EXPECT_EQ(r.mode, CacheMode::Recompute);
  EXPECT_EQ(r.label(), "recompute L=252");
  EXPECT_TRUE(parse_cache("dense", 0).baseline);
  EXPECT_THROW(parse_cache("4+0", 0), Error);
  EXPECT_THROW(parse_cache("x+4", 0), Error);
}

}  // namespace
}  // namespace sllm::train
