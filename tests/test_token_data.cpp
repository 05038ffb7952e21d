// Token data tests: shard round trips (2- and 4-byte tokens), every malformed header refused with the file and
// field named, atomic writes that leave no temporary behind, the corpus reader (text, JSONL, its errors), chunked
// multi-threaded encoding equal to whole-text encoding on real and adversarial text, and the train / validation
// split (disjoint, contiguous, and together the whole corpus's encoding).
#include <gtest/gtest.h>

#include <algorithm>   // std::sort
#include <cmath>       // std::nan, std::abs
#include <cstring>     // std::memcpy
#include <filesystem>  // std::filesystem
#include <fstream>     // std::ofstream
#include <random>      // std::mt19937
#include <sstream>     // std::stringstream
#include <string>      // std::string
#include <unistd.h>    // getpid
#include <vector>      // std::vector

#include "core/error.h"           // Error
#include "tokenizer/pipeline.h"   // gpt2_regex
#include "tokenizer/tokenizer.h"  // Tokenizer
#include "train/bpe_trainer.h"    // count_words, train_bpe, bpe_tokenizer_json
#include "train/token_data.h"

namespace sllm::train {
namespace {

namespace fs = std::filesystem;

const std::string kSrc = SLLM_SOURCE_DIR;
const std::string kTokDir = kSrc + "/tests/fixtures/tokenizers/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& s) {
  std::ofstream f(path, std::ios::binary);
  f << s;
}

// A fresh directory per test, removed afterwards.
class TokenDataFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sllm_token_data_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// Expects f() to throw an sllm::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << parts[0] << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

// ---- shards -------------------------------------------------------------------------------------------------------

TEST(TokenDataId, Fnv1a64) {
  EXPECT_EQ(tokenizer_id(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(tokenizer_id("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(tokenizer_id("foobar"), 0x85944171f73967e8ULL);
}

TEST_F(TokenDataFiles, ShardRoundTrip) {
  for (int64_t vocab : {300, 65536, 65537, 200000}) {
    std::vector<int32_t> t;
    std::mt19937 rng{uint32_t(vocab)};
    for (int i = 0; i < 5000; ++i) t.push_back(int32_t(rng() % uint32_t(vocab)));
    t.push_back(int32_t(vocab - 1));
    const std::string p = path("s" + std::to_string(vocab) + ".bin");
    write_token_shard(p, t, vocab, 0x0123456789abcdefULL);
    const int bpt = vocab <= 65536 ? 2 : 4;
    EXPECT_EQ(fs::file_size(p), 64 + t.size() * size_t(bpt));
    const TokenShard s = TokenShard::open(p);
    EXPECT_EQ(s.size(), int64_t(t.size()));
    EXPECT_EQ(s.vocab_size(), vocab);
    EXPECT_EQ(s.tokenizer_id(), 0x0123456789abcdefULL);
    EXPECT_EQ(s.bytes_per_token(), bpt);
    EXPECT_EQ(s.path(), p);
    EXPECT_EQ(s.read_all(), t);
    std::vector<int32_t> part(10);
    s.read(100, 10, part.data());
    EXPECT_EQ(part, std::vector<int32_t>(t.begin() + 100, t.begin() + 110));
    s.read(s.size(), 0, part.data());  // an empty read at the end is fine
    expect_error([&] { s.read(s.size() - 5, 6, part.data()); }, {p, "outside the shard"});
    expect_error([&] { s.read(-1, 1, part.data()); }, {p, "outside the shard"});
  }
  write_token_shard(path("empty.bin"), {}, 10, 1);
  EXPECT_EQ(TokenShard::open(path("empty.bin")).size(), 0);
}

TEST_F(TokenDataFiles, MalformedShards) {
  const std::string good = path("good.bin");
  write_token_shard(good, {1, 2, 3, 4}, 300, 7);
  const std::string bytes = read_file(good);
  auto patched = [&](const std::string& name, size_t off, const void* v, size_t n) {
    std::string b = bytes;
    std::memcpy(b.data() + off, v, n);
    write_file(path(name), b);
    return path(name);
  };
  const uint32_t two = 2, three = 3, zero32 = 0, odd = 60, big = 1 << 20;
  const uint64_t zero = 0, five = 5, huge = ~uint64_t(0) / 2, v70000 = 70000;
  write_file(path("short.bin"), bytes.substr(0, 40));
  expect_error([&] { TokenShard::open(path("short.bin")); }, {"short.bin", "header", "truncated"});
  expect_error([&] { TokenShard::open(patched("magic.bin", 0, "GGUF", 4)); }, {"magic.bin", "magic"});
  expect_error([&] { TokenShard::open(patched("v2.bin", 8, &two, 4)); }, {"v2.bin", "version", "newer"});
  expect_error([&] { TokenShard::open(patched("v0.bin", 8, &zero32, 4)); }, {"v0.bin", "version"});
  expect_error([&] { TokenShard::open(patched("hs.bin", 12, &odd, 4)); }, {"hs.bin", "header_size"});
  expect_error([&] { TokenShard::open(patched("hs2.bin", 12, &big, 4)); }, {"hs2.bin", "header_size"});
  expect_error([&] { TokenShard::open(patched("bpt.bin", 16, &three, 4)); }, {"bpt.bin", "bytes_per_token"});
  expect_error([&] { TokenShard::open(patched("cnt.bin", 24, &five, 8)); }, {"cnt.bin", "token_count"});
  expect_error([&] { TokenShard::open(patched("cnt2.bin", 24, &huge, 8)); }, {"cnt2.bin", "token_count"});
  expect_error([&] { TokenShard::open(patched("voc.bin", 32, &zero, 8)); }, {"voc.bin", "vocab_size"});
  expect_error([&] { TokenShard::open(patched("voc2.bin", 32, &v70000, 8)); }, {"voc2.bin", "vocab_size"});
  write_file(path("trunc.bin"), bytes.substr(0, bytes.size() - 1));
  expect_error([&] { TokenShard::open(path("trunc.bin")); }, {"trunc.bin", "token_count", "truncated"});
  // A token id at or above the vocabulary: found on read, with its position.
  const uint16_t id400 = 400;
  const TokenShard s = TokenShard::open(patched("id.bin", 64 + 2 * 2, &id400, 2));
  std::vector<int32_t> out(4);
  s.read(0, 2, out.data());  // the tokens before it read fine
  expect_error([&] { s.read(0, 4, out.data()); }, {"id.bin", "tokens[2]", "400", "vocab_size 300"});
  expect_error([&] { TokenShard::open(path("missing.bin")); }, {"missing.bin"});
}

TEST_F(TokenDataFiles, AtomicWrites) {
  write_token_shard(path("a.bin"), {1, 2, 3}, 10, 1);
  write_token_shard(path("a.bin"), {4, 5}, 10, 1);  // replaces it
  EXPECT_EQ(TokenShard::open(path("a.bin")).read_all(), (std::vector<int32_t>{4, 5}));
  // A refused write leaves the old file and no temporary.
  expect_error([&] { write_token_shard(path("a.bin"), {1, 10}, 10, 1); }, {"a.bin", "tokens[1]", "id 10"});
  expect_error([&] { write_token_shard(path("a.bin"), {1}, 0, 1); }, {"a.bin", "vocab_size"});
  expect_error([&] { write_token_shard(path("nodir/a.bin"), {1}, 10, 1); }, {"nodir", "does not exist"});
  write_file_atomic(path("t.json"), "{}\n");
  EXPECT_EQ(read_file(path("t.json")), "{}\n");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a.bin", "t.json"}));
  EXPECT_EQ(TokenShard::open(path("a.bin")).read_all(), (std::vector<int32_t>{4, 5}));
}

// ---- the corpus ---------------------------------------------------------------------------------------------------

TEST_F(TokenDataFiles, CorpusTextAndJsonl) {
  write_file(path("a.txt"), "first document\nline two\n");
  write_file(path("empty.txt"), "");
  write_file(path("b.jsonl"), "{\"text\": \"doc one\"}\n\n  \n{\"text\": \"\", \"x\": 1}\r\n{\"id\": 3, \"text\": \"doc\\ntwo\"}");
  const Corpus c = Corpus::load({path("a.txt"), path("empty.txt"), path("b.jsonl")});
  ASSERT_EQ(c.docs().size(), 3u);
  EXPECT_EQ(c.docs()[0].text, "first document\nline two\n");
  EXPECT_EQ(c.docs()[1].text, "doc one");
  EXPECT_EQ(c.docs()[1].line, 1);
  EXPECT_EQ(c.docs()[2].text, "doc\ntwo");
  EXPECT_EQ(c.docs()[2].line, 5);
  EXPECT_EQ(c.sources()[2].documents, 2);
  EXPECT_TRUE(c.sources()[2].jsonl);
  EXPECT_EQ(c.bytes(), 24 + 7 + 7);
  // --format text reads a .jsonl file as one text document; another field name.
  CorpusOptions text;
  text.format = "text";
  EXPECT_EQ(Corpus::load({path("b.jsonl")}, text).docs().size(), 1u);
  write_file(path("c.jsonl"), "\xEF\xBB\xBF{\"body\": \"x\"}\n");  // a byte order mark is skipped
  CorpusOptions body;
  body.jsonl_field = "body";
  EXPECT_EQ(Corpus::load({path("c.jsonl")}, body).docs()[0].text, "x");
}

TEST_F(TokenDataFiles, CorpusErrors) {
  write_file(path("bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"unterminated\n");
  expect_error([&] { Corpus::load({path("bad.jsonl")}); }, {"bad.jsonl:2:", "not valid JSON"});
  write_file(path("nofield.jsonl"), "{\"text\": \"ok\"}\n\n{\"txt\": \"x\"}\n");
  expect_error([&] { Corpus::load({path("nofield.jsonl")}); }, {"nofield.jsonl:3:", "no string field \"text\""});
  write_file(path("num.jsonl"), "{\"text\": 5}\n");
  expect_error([&] { Corpus::load({path("num.jsonl")}); }, {"num.jsonl:1:", "no string field"});
  write_file(path("arr.jsonl"), "[1, 2]\n");
  expect_error([&] { Corpus::load({path("arr.jsonl")}); }, {"arr.jsonl:1:", "expected a JSON object"});
  expect_error([&] { Corpus::load({path("nope.txt")}); }, {"nope.txt", "cannot open"});
  write_file(path("e1.txt"), "");
  write_file(path("e2.jsonl"), "\n{\"text\": \"\"}\n");
  expect_error([&] { Corpus::load({path("e1.txt"), path("e2.jsonl")}); }, {"empty corpus"});
}

// ---- chunked encoding ---------------------------------------------------------------------------------------------

Tokenizer fixture_tokenizer(const std::string& name) { return Tokenizer::from_json_file(kTokDir + name + "/tokenizer.json"); }

// Adversarial text: line breaks next to every kind of character the regexes treat specially.
std::string adversarial_text(uint32_t seed, size_t pieces) {
  const std::vector<std::string> p = {"a",  "Zq", "é",   "日本", "1",   "234", " ",   "  ", "\n", "\n", "\n\n", "\r\n",
                                      "\t", ".",  "'s",  "'",    "!?",  "\xC2\xA0", "\xE3\x80\x80", "<|endoftext|>",
                                      "😀", "-",  " \n", "x\n",  "\n ", ";\n"};
  std::mt19937 rng(seed);
  std::string s;
  for (size_t k = 0; k < pieces; ++k) s += p[rng() % p.size()];
  return s;
}

TEST(TokenDataChunks, Boundaries) {
  const std::string t = "ab\ncd  \nef\n gh.\n!x\n\n1\n";
  std::vector<size_t> b;
  for (size_t p = 0; p <= t.size(); ++p)
    if (is_chunk_boundary(t, p)) b.push_back(p);
  EXPECT_EQ(b, (std::vector<size_t>{3, 16}));  // "ab\n|cd" and ".\n|!x"; never after blanks or before a space
  for (size_t target : {1, 2, 5, 100})
    for (size_t cut : chunk_cuts(t, target)) EXPECT_TRUE(is_chunk_boundary(t, cut));
  EXPECT_TRUE(chunk_cuts("no line breaks at all", 2).empty());
}

TEST(TokenDataChunks, Policy) {
  auto pol = [](const std::string& name) { return chunk_policy(read_file(kTokDir + name + "/tokenizer.json")); };
  EXPECT_TRUE(pol("smollm2").chunked) << pol("smollm2").reason;  // Digits + ByteLevel
  EXPECT_TRUE(pol("llama3").chunked) << pol("llama3").reason;    // Split(Llama-3 regex) + ByteLevel
  EXPECT_TRUE(pol("neox").chunked) << pol("neox").reason;        // NFC + ByteLevel
  EXPECT_FALSE(pol("gpt2").chunked);                             // an lstrip added token
  EXPECT_FALSE(pol("roberta").chunked);                          // add_prefix_space
  EXPECT_FALSE(pol("llama2").chunked);                           // Prepend normalizer
  EXPECT_FALSE(pol("llama2_metaspace").chunked);
  EXPECT_FALSE(chunk_policy("not json").chunked);
  EXPECT_FALSE(chunk_policy(read_file(kSrc + "/data/tokenizers/bytes/tokenizer.json")).chunked);  // no regex split
  EXPECT_FALSE(chunk_policy(R"({"pre_tokenizer": {"type": 5}, "model": {"type": "BPE"}})").chunked);
}

// The claim behind chunked encoding: for every pipeline the policy admits, cutting at every chunk boundary gives
// the tokens of the whole text, on real text and on adversarial text.
TEST(TokenDataChunks, ChunkedEqualsWhole) {
  std::vector<std::string> texts = {read_file(kSrc + "/README.md"), read_file(kSrc + "/docs/architecture.md"),
                                    read_file(kSrc + "/tests/fixtures/bpe/corpus.txt")};
  for (uint32_t seed = 1; seed <= 6; ++seed) texts.push_back(adversarial_text(seed, 3000));
  std::vector<std::string_view> views(texts.begin(), texts.end());
  const std::string bpe = bpe_tokenizer_json(train_bpe(count_words({texts[2]}, CountOptions{}), BpeTrainOptions{}));
  std::vector<std::pair<std::string, Tokenizer>> toks = {{"trained", Tokenizer::from_json_string(bpe, "trained")}};
  for (const char* n : {"smollm2", "llama3", "neox"}) toks.emplace_back(n, fixture_tokenizer(n));
  EncodeOptions eo;
  eo.threads = 2;
  eo.chunk_bytes = 1;  // cut at every boundary
  for (const auto& [name, tok] : toks) {
    const auto chunked = encode_texts(tok, views, eo);
    for (size_t i = 0; i < texts.size(); ++i) {
      ASSERT_GT(chunk_cuts(texts[i], 1).size(), 10u);
      EXPECT_EQ(chunked[i], tok.encode(texts[i])) << name << ", text " << i;
    }
  }
  // And why the rule wants non-blank lines: after blanks, the end of the text changes the GPT-2 pieces.
  auto pieces = [](std::string_view s) {
    std::vector<std::string> r;
    for (const auto& [b, e] : tok::gpt2_regex()->find_all(s)) r.emplace_back(s.substr(b, e - b));
    return r;
  };
  EXPECT_EQ(pieces("foo  \n"), (std::vector<std::string>{"foo", "  \n"}));
  EXPECT_EQ(pieces("foo  \nbar"), (std::vector<std::string>{"foo", "  ", "\n", "bar"}));
  EXPECT_EQ(pieces("foo.\n"), (std::vector<std::string>{"foo", ".", "\n"}));
  EXPECT_EQ(pieces("foo.\nbar"), (std::vector<std::string>{"foo", ".", "\n", "bar"}));
}

TEST(TokenDataChunks, ThreadsAndChunkingDoNotChangeTokens) {
  const std::string tj = read_file(kTokDir + "smollm2/tokenizer.json");
  const Tokenizer tok = Tokenizer::from_json_string(tj, "smollm2");
  // Large enough (8x the tokenizer.json) for the workers to load their own copies of the tokenizer.
  const std::string part = read_file(kSrc + "/README.md") + read_file(kSrc + "/docs/format.md");
  std::string text;
  while (text.size() <= 8 * tj.size()) text += part;
  EncodeOptions one;
  one.threads = 1;
  one.chunked = false;
  EncodeOptions many;
  many.threads = 2;
  many.chunk_bytes = 4096;
  int64_t last_done = 0, total = 0;
  many.progress = [&](int64_t d, int64_t t) {
    EXPECT_GE(d, last_done);
    last_done = d;
    total = t;
  };
  const auto want = encode_texts(tok, {text}, one);
  EXPECT_EQ(want, encode_texts(tok, {text}, many));
  EXPECT_EQ(last_done, int64_t(text.size()));
  EXPECT_EQ(total, int64_t(text.size()));
  EncodeOptions copies = many;
  copies.tokenizer_json = tj;
  copies.progress = nullptr;
  EXPECT_EQ(want, encode_texts(tok, {text}, copies));
}

// ---- the split ----------------------------------------------------------------------------------------------------

std::vector<int32_t> concat(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::vector<int32_t> r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

TEST(TokenDataSplit, ManyDocuments) {
  const Tokenizer tok = fixture_tokenizer("smollm2");
  const std::string tj = read_file(kTokDir + "smollm2/tokenizer.json");
  const int32_t eos = document_separator(tok, "smollm2");
  EXPECT_EQ(eos, *tok.token_to_id("<|endoftext|>"));
  std::vector<std::string> docs;
  for (uint32_t k = 0; k < 30; ++k) docs.push_back(adversarial_text(100 + k, 20 + 15 * k));
  const std::vector<std::string_view> views(docs.begin(), docs.end());
  const Corpus c = Corpus::from_texts(views);
  std::vector<int32_t> whole;
  for (const std::string& d : docs) {
    whole = concat(whole, tok.encode(d));
    whole.push_back(eos);
  }
  for (double f : {0.01, 0.1, 0.5, 0.9, 0.99}) {
    EncodeOptions eo;
    eo.threads = 2;
    eo.chunk_bytes = 64;
    const TokenData td = make_token_data(c, tok, tj, eos, f, eo);
    EXPECT_TRUE(td.split.by_document);
    EXPECT_TRUE(td.chunked);
    ASSERT_GE(td.split.doc, 1u);
    ASSERT_LT(td.split.doc, docs.size());
    // The boundary is the document boundary nearest to (1 - f) of the bytes.
    const double target = (1 - f) * double(c.bytes());
    int64_t cum = 0;
    for (size_t k = 1; k < docs.size(); ++k) {
      cum += int64_t(docs[k - 1].size());
      EXPECT_GE(std::abs(double(cum) - target) + 1e-9, std::abs(double(td.split.train_bytes) - target));
    }
    // Disjoint, contiguous, and together exactly the whole corpus's encoding.
    EXPECT_EQ(concat(td.train, td.val), whole);
    EXPECT_FALSE(td.train.empty());
    EXPECT_FALSE(td.val.empty());
    EXPECT_EQ(td.train.back(), eos);
    EXPECT_EQ(td.val.back(), eos);
  }
}

TEST(TokenDataSplit, OneDocumentAtALineBoundary) {
  const std::string text = read_file(kSrc + "/tests/fixtures/bpe/corpus.txt");
  const Corpus c = Corpus::from_texts({text});
  for (const char* name : {"smollm2", "llama3"}) {
    const Tokenizer tok = fixture_tokenizer(name);
    const std::string tj = read_file(kTokDir + name + "/tokenizer.json");
    const int32_t eos = document_separator(tok, name);
    std::vector<int32_t> whole = tok.encode(text);
    whole.push_back(eos);
    EncodeOptions eo;
    eo.threads = 2;
    eo.chunk_bytes = 2000;
    const TokenData td = make_token_data(c, tok, tj, eos, 0.1, eo);
    EXPECT_FALSE(td.split.by_document);
    EXPECT_TRUE(is_chunk_boundary(text, td.split.offset));
    EXPECT_NEAR(double(td.split.val_bytes) / double(text.size()), 0.1, 0.01);
    EXPECT_EQ(td.split.train_bytes + td.split.val_bytes, int64_t(text.size()));
    EXPECT_EQ(concat(td.train, td.val), whole) << name;  // the cut changed no token
    EXPECT_EQ(tok.decode(td.val), text.substr(td.split.offset) + "<|endoftext|>");
  }
}

TEST(TokenDataSplit, Errors) {
  const Tokenizer tok = fixture_tokenizer("smollm2");
  const Corpus two = Corpus::from_texts({"one", "two"});
  for (double f : {0.0, 1.0, -0.5, 2.0, std::nan("")})
    expect_error([&] { plan_split(two, f); }, {"must be in (0, 1)"});
  const Corpus one_line = Corpus::from_texts({"a single line without a break"});
  expect_error([&] { plan_split(one_line, 0.1); }, {"without a line break"});
  // Without a boundary between non-blank lines, any line start will do.
  const SplitPoint sp = plan_split(Corpus::from_texts({"  a\n  b\n  c\n  d\n"}), 0.5);
  EXPECT_EQ(sp.offset, 8u);
  // A tokenizer with neither <|endoftext|> nor an EOS token cannot separate documents.
  const Tokenizer bytes = Tokenizer::from_json_file(kSrc + "/data/tokenizers/bytes/tokenizer.json");
  expect_error([&] { document_separator(bytes, "bytes.json"); }, {"bytes.json", "<|endoftext|>"});
  const Tokenizer llama2 = fixture_tokenizer("llama2");
  EXPECT_EQ(document_separator(llama2, "llama2"), *llama2.token_to_id("</s>"));
}

TEST(TokenDataSplit, UnchunkablePipelineStillSplits) {
  // Llama-2 (SentencePiece-style, a Prepend normalizer) is not chunked; the split still holds.
  const Tokenizer tok = fixture_tokenizer("llama2");
  const std::string tj = read_file(kTokDir + "llama2/tokenizer.json");
  std::vector<std::string> docs = {"The first document.", "A second one, longer than the first.", "Third."};
  const Corpus c = Corpus::from_texts(std::vector<std::string_view>(docs.begin(), docs.end()));
  const int32_t eos = document_separator(tok, "llama2");
  EncodeOptions eo;
  const TokenData td = make_token_data(c, tok, tj, eos, 0.2, eo);
  EXPECT_FALSE(td.chunked);
  EXPECT_NE(td.chunk_note.find("normalizer"), std::string::npos) << td.chunk_note;
  std::vector<int32_t> whole;
  for (const std::string& d : docs) {
    whole = concat(whole, tok.encode(d));
    whole.push_back(eos);
  }
  EXPECT_EQ(concat(td.train, td.val), whole);
  EXPECT_EQ(td.split.doc, 2u);
}

}  // namespace
}  // namespace sllm::train
