// bench_model: prefill and decode speed of a real model file (HF directory, .gguf or .h5) on the CPU, the way
// llama.cpp's llama-bench measures them, so that bench/vs_llamacpp.py can run both engines on the same GGUF file,
// the same token streams and the same thread count.
//
//   prefill: a P-token prompt into an empty cache in one forward pass (median of 3 after one untimed run), logits
//            of the last token.
//   decode:  once the stream has reached each depth D (chunked prefill of the same pseudo-random tokens), the
//            median over `reps` single-token steps, logits of that token computed (sampling excluded).
//
// The cache is the StreamingLLM one (S sinks + R recent: at depths past S + R it holds S + R tokens), or a dense
// cache holding every token (--dense), the layout llama.cpp uses. The read bandwidth of this machine is measured
// before and after, for the weight floor. --json prints one JSON object per line instead of the table.
//
// Usage: bench_model -m FILE [--dtype f16] [--kv-dtype f16] [-t 2] [--prompt 512] [--depths 512,1024,4096]
//                    [--reps 32] [--sinks 4 --window 1020 | --dense] [--json]
#include <omp.h>  // omp_set_num_threads, omp_get_max_threads

#include <CLI/CLI.hpp>  // CLI::App
#include <algorithm>    // std::max, std::max_element, std::sort
#include <cstdio>       // std::printf, std::fprintf
#include <exception>    // std::exception
#include <optional>     // std::optional
#include <string>       // std::string
#include <vector>       // std::vector

#include "bench/bench_util.h"  // now, median, measure_bandwidth_gbs, random_ids, advance_to, decode_time
#include "core/dtype.h"        // parse_dtype, dtype_name
#include "model/bundle.h"      // load_bundle
#include "model/decoder.h"     // Decoder
#include "runtime/kv_cache.h"  // KVCache
#include "runtime/sysinfo.h"   // rss_bytes

using namespace sllm;
using namespace sllm::bench;

int main(int argc, char** argv) {
  CLI::App app{"bench_model: prefill and decode speed of a model file on the CPU (see bench/vs_llamacpp.py)"};
  std::string path, dtype, kv = "f16";
  int threads = 0, prompt = 512, reps = 32;
  int64_t sinks = 4, window = 1020;
  bool dense = false, json = false;
  std::vector<int64_t> depths = {512, 1024, 4096};
  app.add_option("-m,--model", path, "Model: HF directory, .gguf or .h5")->required();
  app.add_option("--dtype", dtype, "Store weights as f32, f16, bf16, q8_0, q4_0 or q4_1 (default: as in the file)");
  app.add_option("--kv-dtype", kv, "KV cache element type")->check(CLI::IsMember({"f32", "f16"}));
  app.add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--prompt", prompt, "Prompt tokens of the prefill row")->check(CLI::Range(1, 65536));
  app.add_option("--depths", depths, "Stream lengths at which decode is timed")->delimiter(',')
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  app.add_option("--reps", reps, "Decode steps timed per depth (their median is reported)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--sinks", sinks, "Attention sinks of the streaming cache")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  app.add_option("--window", window, "Recent tokens of the streaming cache")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_flag("--dense", dense, "A dense cache holding every token (llama.cpp's layout) instead of S + R");
  app.add_flag("--json", json, "One JSON object per line instead of a table");
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) omp_set_num_threads(threads);
    std::sort(depths.begin(), depths.end());
    LoadOptions lo;
    if (!dtype.empty()) lo.dtype = parse_dtype(dtype);
    const double t_load = now();
    ModelBundle b = load_bundle(path, lo);
    const double load_s = now() - t_load;
    const Model& m = b.model;
    const int64_t V = m.cfg.vocab_size;
    const DType kvt = parse_dtype(kv);
    const int64_t C = std::max(512, prompt);
    Decoder pre(m, cpu_backend(), C);
    Decoder dec(m, cpu_backend(), 1);
    // A dense cache is a window as long as the longest stream (no sinks, nothing ever evicted).
    const int64_t S = dense ? 0 : sinks;
    const int64_t R = dense ? std::max<int64_t>(depths.back(), prompt) + reps + 1 : window;
    KVCache cache(cpu_backend(), m.cfg, S, R, C, kvt);
    const double wbytes = double(m.weight_bytes());
    const double bw0 = measure_bandwidth_gbs();
    const std::string cache_name = dense ? "dense" : std::to_string(S) + "+" + std::to_string(R);
    const char* wname = dtype_name(m.storage);

    auto row = [&](const char* phase, int64_t depth, int64_t held, double sec_per_tok, double bw) {
      const double rss = double(rss_bytes()) / 1e6;
      if (json) {
        std::printf("{\"engine\":\"streamllm\",\"weights\":\"%s\",\"kv\":\"%s\",\"cache\":\"%s\",\"threads\":%d,"
                    "\"phase\":\"%s\",\"depth\":%lld,\"held\":%lld,\"ms_per_token\":%.4f,\"tok_s\":%.3f,"
                    "\"bandwidth_gbs\":%.2f,\"weight_bytes\":%.0f,\"rss_mb\":%.1f}\n",
                    wname, kv.c_str(), cache_name.c_str(), omp_get_max_threads(), phase, (long long)depth,
                    (long long)held, 1e3 * sec_per_tok, 1 / sec_per_tok, bw, wbytes, rss);
      } else {
        const std::string pct = bw > 0 ? std::to_string(int(100 * wbytes / (bw * 1e9) / sec_per_tok + 0.5)) + "%" : "-";
        std::printf("| %s/%s | %s | %s | %lld | %lld | %.2f | %.1f | %s | %.0f MB |\n", wname, kv.c_str(),
                    cache_name.c_str(), phase, (long long)depth, (long long)held, 1e3 * sec_per_tok, 1 / sec_per_tok,
                    pct.c_str(), rss);
      }
      std::fflush(stdout);
    };

    if (!json) {
      std::printf("# bench_model: %s (%s, %.1f MB of weights, loaded in %.1f s), %d threads, cache %s, kv %s\n",
                  path.c_str(), wname, wbytes / 1e6, load_s, omp_get_max_threads(), cache_name.c_str(), kv.c_str());
      std::printf("# read bandwidth: %.1f GB/s (decode rows: %% of the floor weight bytes / bandwidth)\n\n", bw0);
      std::printf("| weights/kv | cache | phase | depth | keys held | ms/token | tok/s | %% of floor | RSS |\n");
      std::printf("|---|---|---|---|---|---|---|---|---|\n");
    }
    {
      const std::vector<int32_t> ids = random_ids(prompt, V, 5);
      std::vector<double> t;
      for (int r = -1; r < 3; ++r) {  // run -1 warms up (page faults of the workspace), untimed
        cache.reset();
        const double s = now();
        pre.forward(ids.data(), prompt, cache, Logits::Last);
        if (r >= 0) t.push_back(now() - s);
      }
      row("prefill", prompt, cache.held(), median(t) / prompt, 0);
    }
    cache.reset();
    for (int64_t d : depths) {
      advance_to(pre, cache, d, V);
      const int64_t held = cache.held();
      const double b0 = measure_bandwidth_gbs();
      const double sec = decode_time(dec, cache, reps, V);
      // decode_time streamed `reps` tokens: the next depth continues from here, as a stream would.
      row("decode", d, held, sec, std::max(b0, measure_bandwidth_gbs()));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
