// streamllm ablate: the StreamingLLM paper's sink-token experiment (Sec. 4.4, Table 3, Fig. 3) as one grid.
//
// A grid is model variants (vanilla, zero_sink, learnable_sink:k, sink_logit) x training seeds. Every run is an
// ordinary `streamllm train` directory, <out>/runs/<variant>-s<seed>/, trained (or resumed, or skipped when done)
// by run_training; then each trained model streams the first eval_tokens tokens of the validation shard under
// every cache policy (S+R caches, plus the dense and re-computation baselines) through stream_nll, exactly as
// `streamllm ppl` does. Evaluations are cached per (run, cache) in the run directory and redone only when their
// settings or the model file change, so a grid stopped at any point continues where it stopped.
//
// The results folder <out>/ holds table.md (Table 3's shape), results.csv, curves.csv, plots/*.svg, config.toml,
// meta.json and README.md (docs/ablations.md lists them).
#pragma once
#include <cstdint>  // int64_t, uint64_t
#include <string>   // std::string
#include <vector>   // std::vector

#include "runtime/stream.h"  // CacheMode
#include "train/trainer.h"   // TrainOptions

namespace sllm::train {

// A model variant of the grid, as the config spells it: "vanilla", "zero_sink", "learnable_sink:K" (K sink
// tokens, 1..64; "learnable_sink" alone means K = 1), "sink_logit".
struct AblateVariant {
  std::string spec;         // as written ("learnable_sink:2")
  std::string sink;         // TrainOptions::sink
  int64_t sink_tokens = 1;  // TrainOptions::sink_tokens (learnable_sink only)
  std::string slug() const;  // for file names: "vanilla", "learnable_sink_k2"
};
AblateVariant parse_variant(const std::string& spec);

// An evaluation cache: "S+R" (S sinks + R recent tokens; S = 0 is the window baseline, the paper's 0+W),
// "dense" (no eviction) or "recompute" (sliding window with re-computation over the last `window` tokens).
struct AblateCache {
  std::string spec;  // as written ("4+248", "dense", "recompute")
  CacheMode mode = CacheMode::Streaming;
  int64_t sinks = 0, window = 0;  // recompute: window = L, the tokens re-encoded for every prediction
  bool baseline = false;          // dense or recompute
  std::string label() const;      // table header: "4+248", "dense", "recompute L=252"
};
AblateCache parse_cache(const std::string& spec, int64_t recompute_window);

struct AblateConfig {
  std::string name;                     // names the grid in the outputs (default: the config file's stem)
  std::string data;                     // a `streamllm data` directory (train.bin, val.bin, tokenizer.json)
  std::string out;                      // the results folder
  std::vector<std::string> variants;    // AblateVariant specs, in table-row order
  std::vector<uint64_t> seeds;          // training seeds (TrainOptions::seed)
  std::vector<std::string> caches;      // "S+R" specs, in table-column order
  std::vector<std::string> baselines;   // "dense" and/or "recompute" (the last columns)
  int64_t eval_tokens = 0;              // tokens streamed from the start of val.bin (<= its size)
  int64_t curve_every = 0;              // a curve point (mean NLL of the segment) every N tokens; 0 = eval_tokens/64
  int64_t recompute_window = 0;         // L of the recompute baseline; 0 = S+R of the first cache, else seq-len
  int64_t chunk = 256;                  // tokens per forward pass in evaluation (results do not depend on it)
  int threads = 0;                      // CPU threads for training and evaluation (0 = the [train] value, else all)
  TrainOptions train;                   // [train]: every run's options; sink, sink_tokens, seed, data, out per run
  bool log_every_given = false;         // [train] set log-every (else the grid prints ~10 step lines per run)
  // Provenance, copied into the results folder.
  std::string config_path;              // the file read ("" when built in code)
  std::string config_text;              // its exact text
  std::vector<std::string> overrides;   // command-line overrides in effect, as typed
  bool progress = true;                 // draw evaluation progress on stderr when it is a terminal
};

// Reads a config file with CLI11's TOML reader. Top-level keys: name, data, out, variants, seeds, caches,
// baselines, eval_tokens, curve_every, recompute_window, chunk, threads; section [train]: `streamllm train`'s
// option names. Throws sllm::Error "<path>: <what>" naming the key (unknown keys and sections are errors).
AblateConfig load_ablate_config(const std::string& path);
// Sets one key as a config file would: a top-level key or "train.<option>"; values are the TOML items (a list
// for list keys). `where` prefixes error messages.
void set_ablate_key(AblateConfig& c, const std::string& key, const std::vector<std::string>& values,
                    const std::string& where);
// The [train] keys the grid accepts (streamllm train's long option names) and those the grid sets itself.
std::vector<std::string> ablate_train_keys();
std::vector<std::string> ablate_grid_owned_train_keys();

// Checks the whole config (lists, option ranges, the data directory, eval_tokens against val.bin); throws
// sllm::Error naming the key.
void validate_ablate_config(const AblateConfig& c);

// The plan, without running anything: every run (to train / to resume from ckpt-N / done) and every evaluation
// (to compute / cached), and the task count. What `streamllm ablate --dry-run` prints.
std::string ablate_plan(const AblateConfig& c);

struct AblateSummary {
  int runs = 0, trained = 0, resumed = 0, skipped = 0;  // training runs of the grid and what happened to each
  int evals = 0, evaluated = 0, cached = 0;             // (run, cache) evaluations
  bool interrupted = false;                             // SIGINT/SIGTERM: stopped after a checkpoint
  double seconds = 0;
  std::string out;  // the results folder
};

// Runs the grid: trains, resumes or skips each run, evaluates each (run, cache) not cached, and writes the results
// folder (also after each run, so a stopped grid leaves a partial table). Progress lines on stdout.
AblateSummary run_ablation(const AblateConfig& c);

}  // namespace sllm::train
