// The ablation runner's internals shared by its two source files: the grid of runs, what a run's metrics and
// evaluations say, and the results folder writer (ablate_results.cpp). Not a public header: see ablate.h.
#pragma once
#include <cstdint>   // int64_t, uint64_t
#include <cstdio>    // std::snprintf
#include <limits>    // std::numeric_limits
#include <optional>  // std::optional
#include <string>    // std::string
#include <vector>    // std::vector

#include "train/ablate.h"      // AblateConfig, AblateVariant, AblateCache
#include "train/sink_probe.h"  // SinkProbe
#include "train/trainer.h"  // TrainOptions

namespace sllm::train::ablate_detail {

// printf-style formatting of one number.
inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

inline std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

// ---- the grid ----------------------------------------------------------------------------------------------------

struct Run {
  AblateVariant v;
  uint64_t seed = 0;
  std::string dir;
  TrainOptions opt;
  std::string name() const { return v.spec + " seed " + std::to_string(seed); }
};

struct Grid {
  std::vector<AblateVariant> variants;
  std::vector<AblateCache> caches;  // the S+R caches, then the baselines
  std::vector<Run> runs;            // seed-major: every variant of the first seed first (an early complete table)
  std::string out, val_path;
  int64_t val_tokens = 0;
  uint64_t val_tokenizer = 0;
  int64_t curve_every = 0;
};

// What metrics.jsonl says about a run.
struct RunMetrics {
  std::vector<double> step, loss;
  double final_loss = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double train_seconds = 0;  // summed over the invocations that trained it (elapsed_s restarts at each)
};

// One cached streaming evaluation of a run under one cache.
struct EvalRecord {
  int64_t tokens = 0;  // tokens scored
  double mean_nll = 0, ppl = 0, seconds = 0;
  std::vector<double> cx, cy;  // curve: tokens streamed at the end of each segment, the segment's mean NLL
};

// Everything the results folder shows of one run.
struct RunResult {
  bool trained = false;  // model.h5 exists
  RunMetrics metrics;
  std::vector<std::optional<EvalRecord>> evals;  // per Grid::caches
  std::optional<SinkProbe> sink;                  // the sink probe (none when val.bin is too short)
};

// The sink probe every run gets: windows of the training length from val.bin (probe_sink).
SinkProbeOptions sink_probe_options(const TrainOptions& o);

// Writes the results folder (tables, CSVs, plots, config, meta, README) from the runs' metrics and evaluations;
// every file atomically, byte-identical for an unchanged grid.
void write_outputs(const AblateConfig& c, const Grid& g, const std::vector<RunResult>& res);

}  // namespace sllm::train::ablate_detail
