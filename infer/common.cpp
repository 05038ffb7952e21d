#include "infer/common.h"

#include <chrono>      // std::chrono
#include <cstdio>      // std::fprintf
#include <memory>      // std::unique_ptr
#include <omp.h>       // omp_set_num_threads
#include <unistd.h>    // isatty

#include "core/device.h"          // parse_device, cuda_plugin_symbol
#include "core/error.h"           // Error
#include "formats/mapped_file.h"  // read_text_file

namespace sllm::cli {

void add_model_args(CLI::App& app, ModelArgs& a) {
  app.add_option("-m,--model", a.model,
                 "Model: a Hugging Face directory (config.json + safetensors), a .gguf or a streamllm .h5 file")
      ->required();
  app.add_option("--dtype", a.dtype,
                 "Store weight matrices as f32, f16, bf16, q8_0, q4_0 or q4_1 (block formats quantised as llama.cpp "
                 "does; the CPU reads them as they are, a GPU as f16) (default: as in the file, GGUF blocks included)");
  app.add_option("--tokenizer", a.tokenizer, "tokenizer.json to use instead of the model's own")
      ->check(CLI::ExistingFile);
  app.add_option("-t,--threads", a.threads,
                 "CPU threads (default: all cores; one for models under 4M parameters, where the cost of "
                 "synchronising threads exceeds the work)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", a.device,
                 "Where to run: cpu, or cuda / cuda:N (a CUDA GPU; weights are uploaded once, decode steps replay "
                 "a CUDA graph, sampling happens on the GPU)");
}

Backend& backend_for(const ModelArgs& a) {
  const DeviceSpec spec = parse_device(a.device);
  if (!spec.cuda) return cpu_backend();
  const int index = spec.index < 0 ? 0 : spec.index;
  static std::unique_ptr<Backend> cuda;
  static int cuda_index = -1;
  if (!cuda) {
    using Make = Backend* (*)(int, bool, char*, size_t);
    auto make = reinterpret_cast<Make>(cuda_plugin_symbol("sllm_cuda_plugin_make", a.device));
    char err[512] = {};
    cuda.reset(make(index, true, err, sizeof err));
    if (!cuda) throw Error(err);
    cuda_index = index;
  }
  if (cuda_index != index) throw Error("--device: one CUDA device per process");
  return *cuda;
}

Loaded load(const ModelArgs& a, bool need_tokenizer) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  LoadOptions lo;
  if (!a.dtype.empty()) lo.dtype = parse_dtype(a.dtype);
  Loaded l = load_bundle(a.model, lo);
  std::string tok_src = a.model;
  if (!a.tokenizer.empty()) {
    tok_src = a.tokenizer;
    l.tokenizer_json = read_text_file(a.tokenizer, size_t(256) << 20);
    l.tok = Tokenizer::from_json_string(l.tokenizer_json, a.tokenizer);
  }
  if (!l.tok && need_tokenizer) throw Error(a.model + ": the model has no tokenizer (give one with --tokenizer)");
  // A tiny model's per-token work is a few microseconds per op; OpenMP barriers cost as much on an idle machine and
  // 10-100x more on a busy one (a spinning thread waits for a descheduled one). Measured with the 1.3M-parameter
  // demo model on 2 busy cores: 5,650 tok/s decode on one thread, 59 on two.
  // Counted in parameters (4M: 16 MiB of f32), not stored bytes: a block-format weight costs more work per byte.
  constexpr int64_t kSmallModelParams = int64_t(4) << 20;
  if (a.threads == 0 && l.model.cfg.n_params() < kSmallModelParams) omp_set_num_threads(1);
  if (l.tok && l.tok->vocab_size() > l.model.cfg.vocab_size)
    throw Error(tok_src + ": tokenizer has " + std::to_string(l.tok->vocab_size()) +
                " tokens but the model's vocabulary is " + std::to_string(l.model.cfg.vocab_size));
  return l;
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  char s[32];
  std::snprintf(s, sizeof s, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
  return s;
}

std::string read_file_or_throw(const std::string& path) { return read_text_file(path); }

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && isatty(2)), start_(now()) {}

void Progress::update(int64_t done, int64_t total) {
  if (!enabled_) return;
  const double t = now();
  if (t - last_ < 0.1 && done < total) return;
  last_ = t;
  const double frac = total > 0 ? double(done) / double(total) : 0;
  const int width = 30, fill = int(frac * width);
  const double el = t - start_;
  const double rate = el > 0 ? double(done) / el : 0;
  const double eta = rate > 0 ? double(total - done) / rate : 0;
  std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %lld/%lld  %.0f tok/s  ETA %.0fs ", label_.c_str(), fill,
               "##############################", width - fill, "", 100 * frac, (long long)done, (long long)total,
               rate, eta);
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_) std::fprintf(stderr, "\n");
}

}  // namespace sllm::cli
