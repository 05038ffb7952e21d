// streamllm CLI: shared pieces of the subcommands (model + tokenizer loading, formatting, progress).
#pragma once
#include <CLI/CLI.hpp>  // CLI::App
#include <cstdint>      // int64_t
#include <memory>       // std::unique_ptr
#include <optional>     // std::optional
#include <string>       // std::string
#include <vector>       // std::vector

#include "model/bundle.h"         // ModelBundle, load_bundle
#include "ops/backend.h"          // Backend
#include "tokenizer/tokenizer.h"  // Tokenizer

namespace sllm::cli {

struct ModelArgs {
  std::string model;       // -m
  std::string dtype;       // --dtype (empty: as stored)
  std::string tokenizer;   // --tokenizer (empty: the model's own tokenizer.json)
  int threads = 0;         // --threads (0: all cores)
  std::string device = "cpu";  // --device: cpu, cuda or cuda:N
};
void add_model_args(CLI::App& app, ModelArgs& a);

// The backend --device names: the process-wide CPU backend, or a CUDA backend made on first use (kept for the
// process). Throws a one-line sllm::Error when the build has no CUDA backend or the device does not exist.
Backend& backend_for(const ModelArgs& a);

using Loaded = ModelBundle;
// Loads the model (HF directory, .gguf or .h5) with its tokenizer (or --tokenizer). Applies --threads.
Loaded load(const ModelArgs& a, bool need_tokenizer);

std::string human_bytes(double b);
std::string read_file_or_throw(const std::string& path);

// A one-line progress bar on stderr (only when stderr is a terminal or force is set).
class Progress {
 public:
  Progress(std::string label, bool enabled);
  void update(int64_t done, int64_t total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  double start_;
  double last_ = -1;
};

void register_generate(CLI::App& app);
void register_ppl(CLI::App& app);
void register_info(CLI::App& app);
void register_chat(CLI::App& app);
void register_convert(CLI::App& app);
void register_data(CLI::App& app);  // data, tokenizer train (train/cmd_data.cpp)
void register_train(CLI::App& app);  // train (train/cmd_train.cpp)
void register_ablate(CLI::App& app);  // ablate (train/cmd_ablate.cpp)
void register_sinks(CLI::App& app);   // sinks (train/cmd_sinks.cpp)

}  // namespace sllm::cli
