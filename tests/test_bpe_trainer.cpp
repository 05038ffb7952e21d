// BPE trainer tests: exact vocabulary size, byte-identical output on retraining (any thread count), a brute-force
// reference trainer written here (recount every pair, every step) picks the same merges, our tokenizer loads the
// result and round-trips any text, and agreement with HF `tokenizers` through tests/fixtures/bpe/expected.json
// (made by scripts/check_bpe_trainer.py): HF's ids for test strings, and the merges HF's own BpeTrainer learns.
#include <gtest/gtest.h>

#include <algorithm>          // std::max_element
#include <fstream>            // std::ifstream
#include <map>                // std::map
#include <nlohmann/json.hpp>  // nlohmann::json
#include <random>             // std::mt19937
#include <sstream>            // std::stringstream
#include <string>             // std::string
#include <vector>             // std::vector

#include "core/error.h"           // Error
#include "tokenizer/tokenizer.h"  // Tokenizer
#include "train/bpe_trainer.h"    // count_words, train_bpe, bpe_tokenizer_json
#include "train/token_data.h"     // tokenizer_id

namespace sllm::train {
namespace {

using json = nlohmann::json;

const std::string kFix = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/bpe/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string train_json(const std::vector<std::string_view>& texts, int64_t vocab, int threads = 1,
                       size_t chunk = size_t(1) << 20) {
  CountOptions co;
  co.threads = threads;
  co.chunk_bytes = chunk;
  BpeTrainOptions bo;
  bo.vocab_size = vocab;
  return bpe_tokenizer_json(train_bpe(count_words(texts, co), bo));
}

// ---- a brute-force reference trainer ------------------------------------------------------------------------------

// GPT-2's printable-character rule, written out again here: the code point that stands for byte b.
uint32_t byte_code_point(int b) {
  int n = 0;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    if (x == b) return printable ? uint32_t(x) : uint32_t(256 + n);
    if (!printable) ++n;
  }
  return 0;
}

struct RefResult {
  std::vector<std::string> tokens;
  std::vector<std::pair<int32_t, int32_t>> merges;
};

// Recounts every pair of every word at every step; the best pair is the highest count, ties to the smallest
// (rank left, rank right) with bytes ranked by code point and merged tokens after them in creation order.
RefResult reference_bpe(const std::vector<WordCount>& words, int64_t vocab, int64_t min_frequency) {
  RefResult r;
  std::vector<int64_t> rank(256);
  for (int b = 0; b < 256; ++b) {
    int64_t smaller = 0;
    for (int x = 0; x < 256; ++x) smaller += byte_code_point(x) < byte_code_point(b);
    rank[size_t(b)] = smaller;
  }
  std::map<std::string, int32_t> id_of;
  for (int b = 0; b < 256; ++b) {
    r.tokens.push_back(std::string(1, char(b)));
    id_of[r.tokens.back()] = b;
  }
  std::vector<std::vector<int32_t>> w;
  for (const WordCount& wc : words) {
    w.emplace_back();
    for (unsigned char c : wc.word) w.back().push_back(c);
  }
  std::map<std::pair<int32_t, int32_t>, int32_t> merged;
  while (int64_t(r.tokens.size()) + 1 < vocab) {
    std::map<std::pair<int32_t, int32_t>, int64_t> count;
    for (size_t i = 0; i < w.size(); ++i)
      for (size_t k = 0; k + 1 < w[i].size(); ++k) count[{w[i][k], w[i][k + 1]}] += words[i].count;
    if (count.empty()) break;
    auto best = count.begin();
    for (auto it = count.begin(); it != count.end(); ++it) {
      const auto key = [&](const auto& e) { return std::make_tuple(e.second, -rank[size_t(e.first.first)], -rank[size_t(e.first.second)]); };
      if (key(*it) > key(*best)) best = it;
    }
    if (best->second < min_frequency) break;
    const auto [a, b] = best->first;
    int32_t id;
    if (merged.count(best->first)) {
      id = merged[best->first];
    } else {
      const std::string s = r.tokens[size_t(a)] + r.tokens[size_t(b)];
      if (!id_of.count(s)) {
        id_of[s] = int32_t(r.tokens.size());
        r.tokens.push_back(s);
        rank.push_back(int64_t(rank.size()));
      }
      id = id_of[s];
      merged[best->first] = id;
      r.merges.emplace_back(a, b);
    }
    for (auto& s : w) {
      std::vector<int32_t> o;
      for (size_t k = 0; k < s.size();) {
        if (k + 1 < s.size() && s[k] == a && s[k + 1] == b) {
          o.push_back(id);
          k += 2;
        } else {
          o.push_back(s[k++]);
        }
      }
      s = o;
    }
  }
  return r;
}

TEST(BpeTrainer, MatchesBruteForceReference) {
  std::mt19937 rng(1234);
  // Small alphabets make many ties; a two-byte character and a space exercise the byte level.
  const std::vector<std::vector<std::string>> alphabets = {
      {"a", "b"}, {"a", "b", "c"}, {"x", "y", "\xC3\xA9", " "}, {"t", "h", "e", " ", "n", "d"}};
  int runs = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const auto& alpha = alphabets[size_t(trial) % alphabets.size()];
    std::map<std::string, int64_t> wc;
    const int n_words = 5 + int(rng() % 40);
    for (int i = 0; i < n_words; ++i) {
      std::string word;
      const int len = 1 + int(rng() % 9);
      for (int k = 0; k < len; ++k) word += alpha[rng() % alpha.size()];
      wc[word] += 1 + int64_t(rng() % 4);
    }
    std::vector<WordCount> words;
    for (const auto& [w, c] : wc) words.push_back({w, c});
    const int64_t vocab = 257 + int64_t(rng() % 60);
    const int64_t min_freq = trial % 3 == 2 ? 3 : 0;
    BpeTrainOptions bo;
    bo.vocab_size = vocab;
    bo.min_frequency = min_freq;
    const BpeModel got = train_bpe(words, bo);
    const RefResult want = reference_bpe(words, vocab, min_freq);
    ASSERT_EQ(got.tokens, want.tokens) << "trial " << trial;
    ASSERT_EQ(got.merges, want.merges) << "trial " << trial;
    runs += got.merges.size() > 5;
  }
  EXPECT_GE(runs, 6);  // most trials learned more than a handful of merges
}

TEST(BpeTrainer, MatchesReferenceOnRealText) {
  // A few KB of real text through the full pipeline (regex pre-tokenization, counting) into both trainers.
  const std::string text = read_file(kFix + "corpus.txt").substr(0, 6000);
  const std::vector<WordCount> words = count_words({text}, CountOptions{});
  BpeTrainOptions bo;
  bo.vocab_size = 330;
  const BpeModel got = train_bpe(words, bo);
  const RefResult want = reference_bpe(words, 330, 0);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.merges, want.merges);
  EXPECT_EQ(got.vocab_size(), 330);
}

TEST(BpeTrainer, CountWords) {
  const std::string text = "the cat\nthe hat<|endoftext|>the cat's\n";
  const std::vector<WordCount> w = count_words({text}, CountOptions{});
  std::map<std::string, int64_t> m;
  for (const auto& x : w) m[x.word] = x.count;
  EXPECT_EQ(m["the"], 3);
  EXPECT_EQ(m[" cat"], 2);
  EXPECT_EQ(m[" hat"], 1);
  EXPECT_EQ(m["'s"], 1);
  EXPECT_EQ(m["\n"], 2);
  EXPECT_EQ(m.count("<|"), 0u);  // the special token was cut out, not counted
  EXPECT_EQ(m.count("endoftext"), 0u);
  for (size_t i = 1; i < w.size(); ++i) EXPECT_LT(w[i - 1].word, w[i].word);  // sorted by bytes
  // Invalid UTF-8 counts as U+FFFD, as encoding reads it.
  const std::vector<WordCount> bad = count_words({std::string("a\xFF") + "b"}, CountOptions{});
  ASSERT_EQ(bad.size(), 3u);  // "a", U+FFFD (a symbol, so a word of its own), "b"
  EXPECT_EQ(bad[2].word, "\xEF\xBF\xBD");
}

TEST(BpeTrainer, VocabSizeAndLoads) {
  const std::string text = read_file(kFix + "corpus.txt");
  const std::string j = train_json({text}, 512);
  const Tokenizer tok = Tokenizer::from_json_string(j, "trained");
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 511);
  EXPECT_EQ(tok.eos_id(), 511);
  EXPECT_TRUE(tok.is_special(511));
  EXPECT_EQ(tok.id_to_token('A'), std::string("A"));  // bytes keep their value as id
  EXPECT_EQ(tok.id_to_token(' '), std::string("\xC4\xA0"));  // "Ġ"
  const json p = json::parse(j);
  EXPECT_EQ(p["model"]["vocab"].size(), 512u);
  EXPECT_EQ(p["model"]["merges"].size(), 512u - 257u);
  EXPECT_EQ(tok.encode("x<|endoftext|>y"), (std::vector<int32_t>{'x', 511, 'y'}));
}

TEST(BpeTrainer, StopsWhenNoPairIsLeft) {
  BpeTrainOptions bo;
  bo.vocab_size = 1000;
  const BpeModel m = train_bpe(count_words({"ab ab abc"}, CountOptions{}), bo);
  // Words "ab", " ab", " abc": at most 1 + 2 + 3 merges are possible.
  EXPECT_LT(m.vocab_size(), 1000);
  EXPECT_LE(m.merges.size(), 6u);
  BpeTrainOptions mf = bo;
  mf.min_frequency = 3;  // only " a"/"ab"-like pairs seen 3 times survive
  const BpeModel m2 = train_bpe(count_words({"ab ab abc"}, CountOptions{}), mf);
  ASSERT_EQ(m2.merges.size(), 1u);
  EXPECT_EQ(m2.tokens[size_t(256)], "ab");
}

TEST(BpeTrainer, Deterministic) {
  const std::string text = read_file(kFix + "corpus.txt");
  const std::string a = train_json({text}, 700, 1);
  const std::string b = train_json({text}, 700, 1);
  const std::string c = train_json({text}, 700, 2, 512);  // two threads, text counted in ~512-byte chunks
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
}

TEST(BpeTrainer, RoundTripsAnyText) {
  const std::string text = read_file(kFix + "corpus.txt");
  const Tokenizer tok = Tokenizer::from_json_string(train_json({text}, 600), "trained");
  std::mt19937 rng(7);
  const std::vector<std::string> pieces = {"a", "Z", " ", "  ", "\n", "\r\n", "\t", "\0", "\x01", "\x7f", "é",
                                           "日本", "😀", "👩‍💻", "'s", "123", ".", "<|endoftext|>", "\xC2\xA0"};
  for (int t = 0; t < 200; ++t) {
    std::string s;
    const int n = int(rng() % 40);
    for (int k = 0; k < n; ++k) {
      const std::string& p = pieces[rng() % pieces.size()];
      s += p.empty() ? std::string(1, '\0') : p;
    }
    const std::vector<int32_t> ids = tok.encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < 600);
    ASSERT_EQ(tok.decode(ids), s);
  }
  // Random bytes: valid UTF-8 comes back as is; invalid sequences come back as U+FFFD (HF reads text as Rust
  // strings), exactly like decoding the lossy conversion.
  for (int t = 0; t < 100; ++t) {
    std::string s;
    const int n = int(rng() % 30);
    for (int k = 0; k < n; ++k) s += char(rng() % 256);
    const std::string back = tok.decode(tok.encode(s));
    const std::string lossy = tok.decode(tok.encode(back));
    EXPECT_EQ(back, lossy);
    if (back == s) continue;
    EXPECT_NE(back.find("\xEF\xBF\xBD"), std::string::npos);
  }
}

TEST(BpeTrainer, Errors) {
  BpeTrainOptions bo;
  bo.vocab_size = 256;
  try {
    train_bpe({}, bo);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary size must be in [257"), std::string::npos) << e.what();
  }
}

// ---- agreement with HF tokenizers ---------------------------------------------------------------------------------

TEST(BpeTrainer, AgreesWithHfTokenizers) {
  const json want = json::parse(read_file(kFix + "expected.json"));
  const std::string text = read_file(kFix + want["corpus"].get<std::string>());
  const int64_t vocab = want["vocab_size"].get<int64_t>();
  const std::string j = train_json({text}, vocab, 2, 4096);
  char id[32];
  std::snprintf(id, sizeof id, "fnv1a64:%016llx", (unsigned long long)tokenizer_id(j));
  // The same input gives the same file as when the fixture was made; if the trainer changed on purpose, rerun
  // scripts/check_bpe_trainer.py.
  EXPECT_EQ(std::string(id), want["tokenizer_id"].get<std::string>());
  const Tokenizer tok = Tokenizer::from_json_string(j, "trained");
  for (const json& c : want["cases"]) {
    const std::string s = c["text"].get<std::string>();
    EXPECT_EQ(tok.encode(s), c["ids"].get<std::vector<int32_t>>()) << s;
    EXPECT_EQ(tok.decode(c["ids"].get<std::vector<int32_t>>()), s);
  }
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(int64_t(ids.size()), want["corpus_tokens"].get<int64_t>());
  std::string bytes(ids.size() * 4, '\0');
  for (size_t i = 0; i < ids.size(); ++i)
    for (int k = 0; k < 4; ++k) bytes[4 * i + size_t(k)] = char((uint32_t(ids[i]) >> (8 * k)) & 0xff);
  std::snprintf(id, sizeof id, "%016llx", (unsigned long long)tokenizer_id(bytes));
  EXPECT_EQ(std::string(id), want["corpus_ids_fnv1a64"].get<std::string>());
  // HF's own BpeTrainer, on the same text, learned exactly our merges.
  const json p = json::parse(j);
  EXPECT_EQ(p["model"]["merges"], want["hf_trainer_merges"]);
}

}  // namespace
}  // namespace sllm::train
