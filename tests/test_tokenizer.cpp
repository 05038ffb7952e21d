// Tokenizer tests: golden ids and texts from HF `tokenizers` for small trained tokenizers of every supported
// family (tests/fixtures/tokenizers/*, made by scripts/make_tokenizer_fixtures.py), the streaming decoder against
// decode(), and malformed tokenizer.json files.
#include <gtest/gtest.h>

#include <fstream>            // std::ifstream
#include <nlohmann/json.hpp>  // nlohmann::json
#include <random>             // std::mt19937
#include <sstream>            // std::stringstream
#include <string>             // std::string
#include <thread>             // std::thread
#include <vector>             // std::vector

#include "core/error.h"           // Error
#include "tokenizer/tokenizer.h"  // Tokenizer, StreamDecoder

namespace sllm {
namespace {

using json = nlohmann::json;

const std::string kDir = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/tokenizers/";
const char* const kFixtures[] = {"gpt2", "neox", "roberta", "llama3", "smollm2", "llama2", "llama2_metaspace"};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json golden(const std::string& name) { return json::parse(read_file(kDir + name + "/golden.json")); }
Tokenizer load(const std::string& name) { return Tokenizer::from_json_file(kDir + name + "/tokenizer.json"); }

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// Independent strict UTF-8 validator (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      n = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      n = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      n = 4;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::string show(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  s += ']';
  return s;
}

// Streams ids through a StreamDecoder; checks each chunk is valid UTF-8 and returns the concatenation.
std::string stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, bool* all_valid) {
  StreamDecoder d(tok, skip);
  std::string all;
  *all_valid = true;
  for (int32_t id : ids) {
    const std::string piece = d.push(id);
    *all_valid &= valid_utf8(piece);
    all += piece;
  }
  const std::string rest = d.flush();
  *all_valid &= valid_utf8(rest);
  return all + rest;
}

TEST(TokenizerGolden, EncodeMatchesHF) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const Tokenizer tok = load(name);
    const json g = golden(name);
    ASSERT_GE(g["encode"].size(), 40u);
    int failures = 0;
    for (const json& c : g["encode"]) {
      const std::string text = c["text"];
      const auto got = tok.encode(text, false);
      const auto got_sp = tok.encode(text, true);
      const auto want = ids_of(c["ids"]), want_sp = ids_of(c["ids_special"]);
      EXPECT_EQ(got, want) << "text " << json(text).dump() << "\n got  " << show(got) << "\n want " << show(want);
      EXPECT_EQ(got_sp, want_sp) << "text " << json(text).dump() << " (add_special)";
      failures += (got != want) + (got_sp != want_sp);
      if (failures > 6) FAIL() << "too many mismatches for " << name;
    }
  }
}

TEST(TokenizerGolden, DecodeMatchesHF) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const Tokenizer tok = load(name);
    const json g = golden(name);
    for (const json& c : g["encode"]) {
      const auto ids = ids_of(c["ids_special"]);
      EXPECT_EQ(tok.decode(ids, false), c["decoded"].get<std::string>()) << show(ids);
      EXPECT_EQ(tok.decode(ids, true), c["decoded_skip"].get<std::string>()) << show(ids);
    }
    for (const json& c : g["decode"]) {  // random ids: partial characters, byte tokens, specials, unknown ids
      const auto ids = ids_of(c["ids"]);
      EXPECT_EQ(tok.decode(ids, false), c["decoded"].get<std::string>()) << show(ids);
      EXPECT_EQ(tok.decode(ids, true), c["decoded_skip"].get<std::string>()) << show(ids);
    }
    EXPECT_EQ(tok.vocab_size(), g["vocab_size_with_added"].get<int32_t>());
  }
}

TEST(TokenizerStream, ReproducesDecodeOnGoldenIds) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const Tokenizer tok = load(name);
    const json g = golden(name);
    std::vector<std::vector<int32_t>> seqs;
    for (const json& c : g["encode"]) seqs.push_back(ids_of(c["ids_special"]));
    for (const json& c : g["decode"]) seqs.push_back(ids_of(c["ids"]));
    for (const auto& ids : seqs) {
      for (bool skip : {false, true}) {
        bool valid = false;
        EXPECT_EQ(stream(tok, ids, skip, &valid), tok.decode(ids, skip)) << show(ids) << " skip " << skip;
        EXPECT_TRUE(valid) << show(ids);
      }
    }
  }
}

// Random id streams, biased toward the low ids where the byte tokens and specials live: the hard cases.
TEST(TokenizerStream, ReproducesDecodeOnRandomIds) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const Tokenizer tok = load(name);
    std::mt19937 rng(7);
    for (int trial = 0; trial < 60; ++trial) {
      std::vector<int32_t> ids(size_t(1 + rng() % 80));
      for (int32_t& id : ids) {
        const uint32_t r = rng() % 10;
        id = r < 2   ? int32_t(rng() % 8)
             : r < 6 ? int32_t(rng() % 300)
                     : int32_t(rng() % uint32_t(tok.vocab_size() + 3));
      }
      for (bool skip : {false, true}) {
        bool valid = false;
        EXPECT_EQ(stream(tok, ids, skip, &valid), tok.decode(ids, skip)) << show(ids) << " skip " << skip;
        EXPECT_TRUE(valid) << show(ids);
      }
    }
  }
}

TEST(TokenizerStream, HoldsBytesOfSplitCharacters) {
  for (const char* name : {"gpt2", "llama2"}) {
    SCOPED_TRACE(name);
    const Tokenizer tok = load(name);
    const auto ids = tok.encode("日本語 ok");  // CJK characters are split over byte tokens in both vocabularies
    ASSERT_GT(ids.size(), 4u);
    StreamDecoder d(tok);
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(d.push(id));
    pieces.push_back(d.flush());
    std::string all;
    for (const auto& p : pieces) {
      EXPECT_TRUE(valid_utf8(p));
      all += p;
    }
    EXPECT_EQ(all, tok.decode(ids));
    EXPECT_EQ(pieces[0], "");  // the first token holds only part of 日
  }
}

// Hundreds of <0xXX> tokens in a row (CJK outside a SentencePiece vocab) must not be held until the run ends.
TEST(TokenizerStream, LongByteFallbackRunsStreamBeforeTheyEnd) {
  const Tokenizer tok = load("llama2");
  std::string text;
  for (int i = 0; i < 100; ++i) text += "語日";
  const auto ids = tok.encode(text);
  ASSERT_GT(ids.size(), 500u);
  StreamDecoder d(tok);
  std::string all;
  size_t early = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string p = d.push(ids[i]);
    EXPECT_TRUE(valid_utf8(p));
    if (i + 1 < ids.size()) early += p.size();
    all += p;
  }
  all += d.flush();
  EXPECT_EQ(all, tok.decode(ids));
  EXPECT_GT(early, text.size() / 2);
}

TEST(TokenizerBasics, EncodeIsThreadSafe) {
  const Tokenizer tok = load("llama3");
  const std::string text = read_file(kDir + "llama3/golden.json").substr(0, 20000);
  const auto want = tok.encode(text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) got[t] = Tokenizer(tok).encode(text);
    });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(TokenizerBasics, SpecialTokensAndIds) {
  const Tokenizer l2 = load("llama2");
  EXPECT_EQ(l2.bos_id(), 1);
  EXPECT_EQ(l2.eos_id(), 2);
  EXPECT_TRUE(l2.is_special(1));
  EXPECT_FALSE(l2.is_special(100));
  EXPECT_EQ(l2.token_to_id("<0x41>"), 3 + 0x41);
  EXPECT_EQ(l2.id_to_token(3 + 0x41), "<0x41>");
  EXPECT_EQ(l2.token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(l2.id_to_token(1 << 30), std::nullopt);
  EXPECT_EQ(l2.encode("hi", true).front(), 1);

  const Tokenizer g2 = load("gpt2");
  const int32_t eot = *g2.token_to_id("<|endoftext|>");
  EXPECT_EQ(g2.bos_id(), eot);
  EXPECT_EQ(g2.eos_id(), eot);
  EXPECT_EQ(g2.encode("a<|endoftext|>b").at(1), eot);

  const Tokenizer l3 = load("llama3");
  EXPECT_EQ(l3.bos_id(), *l3.token_to_id("<|begin_of_text|>"));
  const auto stops = l3.stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), *l3.token_to_id("<|im_end|>")), stops.end());

  const Tokenizer rb = load("roberta");
  EXPECT_EQ(rb.bos_id(), *rb.token_to_id("<s>"));
  EXPECT_EQ(rb.eos_id(), *rb.token_to_id("</s>"));
}

TEST(TokenizerBasics, InvalidUtf8InputReadsAsReplacementCharacter) {
  for (const char* name : {"gpt2", "llama2"}) {
    const Tokenizer tok = load(name);
    EXPECT_EQ(tok.encode("a\xff\xe6\x97 b\xc0"), tok.encode("a\xEF\xBF\xBD\xEF\xBF\xBD b\xEF\xBF\xBD")) << name;
  }
}

TEST(TokenizerBasics, RoundTripsLongText) {
  // (Not starting with a space: Metaspace would legitimately lose it.)
  const std::string text =
      "GPL: " + read_file("/usr/share/common-licenses/GPL-3").substr(0, 60000) + " 日本語 👨‍👩‍👧";
  if (text.size() < 2000) GTEST_SKIP() << "no license text on this machine";
  for (const char* name : {"gpt2", "neox", "llama3", "smollm2", "llama2", "llama2_metaspace"}) {
    const Tokenizer tok = load(name);
    const std::string back = tok.decode(tok.encode(text));
    size_t k = 0;
    while (k < back.size() && k < text.size() && back[k] == text[k]) ++k;
    EXPECT_TRUE(back == text) << name << ": differs at byte " << k << ": " << json(back.substr(k, 40)).dump() << " vs "
                              << json(text.substr(k, 40)).dump();
  }
}

// --------------------------------------------------------------------------------------------------------------
// Malformed files.

void expect_error(const std::string& json_text, const std::string& needle) {
  try {
    Tokenizer::from_json_string(json_text, "tokenizer.json");
    ADD_FAILURE() << "no error for: " << json_text.substr(0, 200);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected to contain: " << needle;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("tokenizer.json", 0), 0u) << msg;
  }
}

std::string minimal(const std::string& model_extra = "", const std::string& top_extra = "") {
  return R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"])" + model_extra + "}" +
         top_extra + "}";
}

TEST(TokenizerErrors, MalformedFilesThrowWithContext) {
  // The minimal file itself is fine.
  EXPECT_EQ(Tokenizer::from_json_string(minimal(), "t").encode("ab"), std::vector<int32_t>{2});

  const std::string good = read_file(kDir + "gpt2/tokenizer.json");
  for (size_t cut : {size_t(0), size_t(1), good.size() / 3, good.size() / 2, good.size() - 2})
    expect_error(good.substr(0, cut), "invalid JSON");
  expect_error("[1, 2]", "expected a JSON object");
  expect_error(std::string(100000, '['), "invalid JSON");  // deep nesting must not blow the stack
  expect_error("{}", "model: missing");

  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})", "model.merges[0]: token \"b\"");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})",
               "model.merges[0]: merged token \"ab\"");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "ab"]}})",
               "model.merges[1]: expected \"a b\" pair");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [17]}})", "model.merges[0]");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a"]]}})",
               "model.merges[0]");
  expect_error(R"({"model": {"type": "BPE", "vocab": ["a", "b"], "merges": []}})", "model.vocab: expected an object");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})", "model.vocab[\"a\"]");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})", "model.vocab[\"a\"]");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 2000000000}, "merges": []}})", "far beyond");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": {}}})", "model.merges: expected an array");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", "model.merges: missing");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})",
               "model.type: unsupported model type \"WordPiece\"");
  expect_error(R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})", "unsupported model type \"Unigram\"");
  expect_error(minimal(R"(, "dropout": 0.1)"), "model.dropout");
  expect_error(minimal(R"(, "byte_fallback": "yes")"), "model.byte_fallback: expected a boolean");

  // Top-level components (`with` adds one field next to the minimal model).
  auto with = [](const std::string& field) { return minimal("", ", " + field); };
  expect_error(with(R"("normalizer": {"type": "Lowercase"})"), "normalizer.type: unsupported normalizer \"Lowercase\"");
  expect_error(with(R"("normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "NFKC"}]})"),
               "normalizer.normalizers[1].type: unsupported normalizer \"NFKC\"");
  expect_error(with(R"("normalizer": {"type": "Replace", "pattern": {"Regex": "(unclosed"}, "content": ""})"),
               "normalizer.pattern.Regex: regex does not compile");
  expect_error(with(R"("pre_tokenizer": {"type": "BertPreTokenizer"})"), "pre_tokenizer.type: unsupported");
  expect_error(with(R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"})"),
               "pre_tokenizer.behavior: unknown split behavior");
  expect_error(with(R"("pre_tokenizer": {"type": "Metaspace", "replacement": "ab"})"),
               "pre_tokenizer.replacement: expected a single character");
  expect_error(with(R"("pre_tokenizer": 7)"), "pre_tokenizer: expected an object");
  expect_error(with(R"("decoder": {"type": "WordPiece"})"), "decoder.type: unsupported decoder \"WordPiece\"");
  expect_error(with(R"("decoder": {"type": "Strip", "content": " ", "start": -1, "stop": 0})"), "decoder.start");
  expect_error(with(R"("post_processor": {"type": "TemplateProcessing", "special_tokens": {},)"
                    R"( "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}]})"),
               "post_processor.single[0].SpecialToken.id: \"<s>\" is not in special_tokens");
  expect_error(with(R"("added_tokens": {"content": "x"})"), "added_tokens: expected an array");
  expect_error(with(R"("added_tokens": [{"id": 3}])"), "added_tokens[0].content: missing");
  expect_error(with(R"("added_tokens": [{"id": 3, "content": 5}])"), "added_tokens[0].content: expected a string");
  // Deep nesting in a field we do not read must not blow the stack either.
  EXPECT_NO_THROW(Tokenizer::from_json_string(
      with(R"("truncation": )" + std::string(100000, '[') + std::string(100000, ']')), "t"));

  std::string deep = R"({"type": "NFC"})";
  for (int i = 0; i < 40; ++i) deep = R"({"type": "Sequence", "normalizers": [)" + deep + "]}";
  expect_error(with(R"("normalizer": )" + deep), "nested too deeply");

  EXPECT_THROW(Tokenizer::from_json_file(kDir + "does-not-exist/tokenizer.json"), Error);
}

// A missing unk token only matters when a character needs it, exactly as in HF.
TEST(TokenizerErrors, UnknownCharacterWithoutUnkInVocab) {
  const Tokenizer t = Tokenizer::from_json_string(minimal(R"(, "unk_token": "<unk>")"), "t");
  EXPECT_EQ(t.encode("ab"), std::vector<int32_t>{2});
  EXPECT_THROW(t.encode("abc"), Error);
  // No unk token at all: unknown characters are dropped.
  EXPECT_EQ(Tokenizer::from_json_string(minimal(), "t").encode("xaby"), std::vector<int32_t>{2});
}

}  // namespace
}  // namespace sllm
