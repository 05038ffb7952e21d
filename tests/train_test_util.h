// Shared fixtures of the trainer and ablation tests: a token-data directory as `streamllm data` writes it, made
// from this repository's own docs with the byte-level tokenizer, the tiny run's options, a run's metrics, and a
// fixture that restores the thread count.
#pragma once
#include <gtest/gtest.h>  // ::testing::Test
#include <omp.h>          // omp_get_max_threads, omp_set_num_threads

#include <cstdint>           // int32_t, uint64_t
#include <filesystem>        // std::filesystem
#include <fstream>           // std::ifstream
#include <initializer_list>  // std::initializer_list
#include <sstream>           // std::stringstream
#include <string>            // std::string
#include <system_error>      // std::error_code
#include <vector>            // std::vector

#include <nlohmann/json.hpp>  // nlohmann::json

#include "tokenizer/tokenizer.h"  // Tokenizer
#include "train/trainer.h"        // TrainOptions
#include "train/token_data.h"     // write_token_shard, tokenizer_id, write_file_atomic

namespace sllm::train::testutil {

inline std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Removes the directory trees given to it when the test process exits (fixtures shared by several tests).
inline void remove_at_exit(const std::string& dir) {
  struct Dirs {
    std::vector<std::string> paths;
    ~Dirs() {
      std::error_code ec;  // best effort: never throw from a static destructor
      for (const std::string& p : paths) std::filesystem::remove_all(p, ec);
    }
  };
  static Dirs dirs;
  dirs.paths.push_back(dir);
}

// Writes dir/{train.bin, val.bin, tokenizer.json}: the concatenated files (paths relative to the source tree)
// encoded as bytes, the last tenth held out. Returns the training ids. The directory is removed at exit.
inline std::vector<int32_t> write_byte_corpus(const std::string& dir, std::initializer_list<const char*> files) {
  const std::string src = SLLM_SOURCE_DIR;
  std::filesystem::create_directories(dir);
  remove_at_exit(dir);
  const std::string tok_json = slurp(src + "/data/tokenizers/bytes/tokenizer.json");
  const Tokenizer tok = Tokenizer::from_json_string(tok_json, "bytes");
  std::string text;
  for (const char* f : files) text += slurp(src + f);
  const std::vector<int32_t> ids = tok.encode(text);
  const size_t cut = ids.size() * 9 / 10;
  const std::vector<int32_t> train(ids.begin(), ids.begin() + std::ptrdiff_t(cut));
  const std::vector<int32_t> val(ids.begin() + std::ptrdiff_t(cut), ids.end());
  const uint64_t id = tokenizer_id(tok_json);
  write_token_shard(dir + "/train.bin", train, tok.vocab_size(), id);
  write_token_shard(dir + "/val.bin", val, tok.vocab_size(), id);
  write_file_atomic(dir + "/tokenizer.json", tok_json);
  return train;
}

// The tiny training run the trainer tests start from (2 layers x 32 wide, 4 heads, sequence 32, batch 4, 8 steps,
// validation every 3 steps, one thread, quiet) on the data directory `data`, writing to `out`.
inline TrainOptions tiny_run(const std::string& data, const std::string& out) {
  TrainOptions o;
  o.threads = 1;
  o.data = data;
  o.out = out;
  o.hidden = 32;
  o.layers = 2;
  o.heads = 4;
  o.seq_len = 32;
  o.batch = 4;
  o.steps = 8;
  o.warmup = 2;
  o.lr = 3e-3;
  o.eval_every = 3;
  o.eval_tokens = 256;
  o.save_every = 0;
  o.quiet = true;
  return o;
}

// The lines of a run's metrics.jsonl without the wall-clock fields (which differ between runs).
inline std::vector<std::string> metric_lines(const std::string& out) {
  std::ifstream f(out + "/metrics.jsonl");
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(f, l)) {
    auto j = nlohmann::json::parse(l);
    j.erase("elapsed_s");
    j.erase("tokens_per_s");
    lines.push_back(j.dump());
  }
  return lines;
}

// Tiny models train faster on one thread than on two (and are immune to a busy machine); run_training sets the
// thread count process-wide, so tests derive from this fixture, which restores it.
class OneThreadTest : public ::testing::Test {
 protected:
  void SetUp() override { threads_ = omp_get_max_threads(); }
  void TearDown() override { omp_set_num_threads(threads_); }

 private:
  int threads_ = 1;
};

}  // namespace sllm::train::testutil
