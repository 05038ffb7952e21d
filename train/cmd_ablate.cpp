// `streamllm ablate --config configs/ablations/<name>.toml`: the paper's sink-token experiment as one command
// (train/ablate.h): trains every variant x seed, streams each model under every cache, writes the results folder.
// docs/ablations.md describes the config file, the outputs and how an interrupted grid continues.
#include <cstdio>  // std::printf, std::fputs

#include "core/error.h"  // Error
#include "infer/common.h"
#include "train/ablate.h"   // load_ablate_config, run_ablation
#include "train/comm.h"     // launcher_world_size
#include "train/trainer.h"  // install_stop_handlers

namespace sllm::cli {

namespace {

struct AblateArgs {
  std::string config, out, data;
  std::vector<std::string> set;
  int threads = -1;
  bool dry_run = false, no_progress = false;
};

// "--set key=value[,value...]": a top-level key or train.<option>; list keys take comma lists.
void apply_set(train::AblateConfig& c, const std::string& kv) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("--set: expected KEY=VALUE (e.g. train.steps=20 or seeds=1,2), got '" + kv + "'");
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  std::vector<std::string> values;
  size_t start = 0;
  for (size_t i = 0; i <= value.size(); ++i)
    if (i == value.size() || value[i] == ',') {
      values.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  train::set_ablate_key(c, key, values, "--set ");
}

void run(const AblateArgs& a) {
  train::AblateConfig c = train::load_ablate_config(a.config);
  for (const auto& kv : a.set) {
    apply_set(c, kv);
    c.overrides.push_back("--set " + kv);
  }
  if (!a.data.empty()) c.data = a.data, c.overrides.push_back("--data " + a.data);
  if (!a.out.empty()) c.out = a.out, c.overrides.push_back("--out " + a.out);
  if (a.threads >= 0) c.threads = a.threads, c.overrides.push_back("--threads " + std::to_string(a.threads));
  c.progress = !a.no_progress;
  if (a.dry_run) {
    std::fputs(train::ablate_plan(c).c_str(), stdout);
    return;
  }
  if (train::launcher_world_size() > 1)  // N copies would train the same grid into the same folder
    throw Error("ablate runs as one process, not under an MPI launcher (its trainings use all cores; "
                "data-parallel training is `mpirun ... streamllm train`)");
  train::install_stop_handlers();
  train::run_ablation(c);
}

}  // namespace

void register_ablate(CLI::App& app) {
  auto a = std::make_shared<AblateArgs>();
  CLI::App* sub = app.add_subcommand(
      "ablate",
      "Run a sink-token ablation grid from one config: train every variant x seed, stream each model under every "
      "cache, write tables, CSVs and plots (resumes where it stopped)");
  sub->add_option("--config", a->config, "TOML file of the grid (configs/ablations/*.toml; docs/ablations.md)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--out", a->out, "Results folder (overrides the config's out)");
  sub->add_option("--data", a->data, "Data directory from `streamllm data` (overrides the config's data)");
  sub->add_option("--set", a->set,
                  "Override a config key: KEY=VALUE, a top-level key or train.<option>, lists comma-separated "
                  "(e.g. --set train.steps=20 --set seeds=1); repeatable");
  sub->add_option("--threads", a->threads, "CPU threads for training and evaluation (0 = all cores)")
      ->check(CLI::Range(0, 4096));
  sub->add_flag("--dry-run", a->dry_run, "Print the plan (what is done, what would run) and exit");
  sub->add_flag("--no-progress", a->no_progress, "No evaluation progress bar on stderr");
  sub->callback([a] { run(*a); });
}

}  // namespace sllm::cli
