// Shared fixtures of the trainer and ablation tests: a token-data directory as `streamllm data` writes it, made
// from this repository's own docs with the byte-level tokenizer, and a fixture that restores the thread count.
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

#include "tokenizer/tokenizer.h"  // Tokenizer
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
