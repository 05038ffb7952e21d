// `streamllm convert -m SRC -o OUT.h5 [--dtype f32|f16|bf16] [--force]`: any model load_bundle reads (an HF
// directory, a .gguf, a streamllm .h5) into one native .h5 file (docs/format.md), written atomically.
#include <chrono>      // std::chrono
#include <cstdio>      // std::printf, std::fprintf
#include <filesystem>  // std::filesystem
#include <optional>    // std::optional
#include <unistd.h>    // isatty

#include "core/error.h"         // Error
#include "formats/h5_model.h"   // save_h5
#include "infer/common.h"

namespace sllm::cli {

namespace {

namespace fs = std::filesystem;

struct ConvertArgs {
  std::string model, out, dtype, tokenizer;
  int threads = 0;
  bool force = false, no_progress = false;
};

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A byte-counting bar (common.h's Progress counts tokens).
class ByteBar {
 public:
  explicit ByteBar(bool enabled) : on_(enabled && isatty(2)), t0_(now()) {}
  void update(size_t done, size_t total) {
    if (!on_) return;
    const double t = now();
    if (t - last_ < 0.1 && done < total) return;
    last_ = t;
    const double frac = total ? double(done) / double(total) : 1.0;
    const int fill = int(frac * 30);
    const double mib = 1024.0 * 1024.0, el = t - t0_;
    std::fprintf(stderr, "\rconverting [%.*s%*s] %5.1f%% %.1f/%.1f MiB  %.0f MiB/s ", fill,
                 "##############################", 30 - fill, "", 100 * frac, double(done) / mib,
                 double(total) / mib, el > 0 ? double(done) / mib / el : 0.0);
    std::fflush(stderr);
  }
  void finish() {
    if (on_) std::fprintf(stderr, "\n");
  }

 private:
  bool on_;
  double t0_, last_ = -1;
};

void run(const ConvertArgs& a) {
  std::error_code ec;
  if (fs::is_directory(a.out, ec)) throw Error(a.out + ": is a directory (give the output file name)");
  if (fs::exists(a.out, ec)) {
    if (fs::equivalent(a.model, a.out, ec)) throw Error(a.out + ": is the source model; write the output elsewhere");
    if (!a.force) throw Error(a.out + ": already exists (use --force to overwrite it)");
  }
  ModelArgs ma;
  ma.model = a.model;
  ma.tokenizer = a.tokenizer;
  ma.threads = a.threads;
  const double t0 = now();
  Loaded l = load(ma, false);  // weights as stored; save_h5 converts them block by block
  std::optional<DType> storage;  // default: every matrix as the source stores it
  if (!a.dtype.empty()) storage = parse_dtype(a.dtype);
  const double t1 = now();
  ByteBar bar(!a.no_progress);
  save_h5(l, a.out, storage, [&](size_t done, size_t total) { bar.update(done, total); });
  bar.finish();
  const double t2 = now();
  const ModelConfig& c = l.model.cfg;
  std::printf("wrote %s: %s, %.2fM parameters, weights %s, tokenizer %s, %s in %.2f s (load %.2f s, write %.2f s)\n",
              a.out.c_str(), family_name(c.family), double(c.n_params()) / 1e6,
              storage ? dtype_name(*storage) : "as in the source",
              l.tokenizer_json.empty() ? "none" : "yes", human_bytes(double(fs::file_size(a.out))).c_str(), t2 - t0,
              t1 - t0, t2 - t1);
}

}  // namespace

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert a model (HF directory, .gguf, .h5) into a streamllm .h5 file");
  auto a = std::make_shared<ConvertArgs>();
  cmd->add_option("-m,--model", a->model, "Source model: a Hugging Face directory, a .gguf or a streamllm .h5 file")
      ->required();
  cmd->add_option("-o,--output", a->out, "Output .h5 file (written atomically)")->required();
  cmd->add_option("--dtype", a->dtype,
                  "Store the weight matrices as f32, f16, bf16, q8_0, q4_0 or q4_1 (default: as in the source, GGUF "
                  "blocks included)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json to store instead of the model's own")
      ->check(CLI::ExistingFile);
  cmd->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--force", a->force, "Overwrite an existing output file");
  cmd->add_flag("--no-progress", a->no_progress, "Do not draw the progress bar");
  cmd->callback([a] { run(*a); });
}

}  // namespace sllm::cli
