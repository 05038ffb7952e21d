// streamllm: the tokenizer's internal pipeline, mirroring HF tokenizers' TokenizerImpl:
//
//   encode: added tokens are cut out of the raw text (leftmost-longest) -> each remaining segment is normalized ->
//           added tokens with normalized=true are cut out of the normalized text -> pre-tokenizers split segments
//           into words -> BPE turns each word into ids -> the post-processor adds special tokens.
//   decode: ids -> token strings (added tokens first, then the model vocab; unknown ids are skipped) -> the decoder
//           chain (a list of steps over the token strings) -> concatenation.
//
// Every component is a plain struct of parameters in a flat list: HF's Sequence(...) of normalizers,
// pre-tokenizers, decoders or post-processors applies its members one after another, so nesting flattens.
#pragma once
#include <array>        // std::array
#include <cstdint>      // int32_t, uint32_t
#include <memory>       // std::shared_ptr, std::unique_ptr
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <vector>       // std::vector

#include "tokenizer/bpe.h"         // Bpe, StringMap
#include "tokenizer/pcre_regex.h"  // Regex

namespace sllm::tok {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class PrependScheme { kAlways, kFirst, kNever };

// A string-or-regex pattern (HF's {"String": ...} / {"Regex": ...}). Literal patterns are searched directly.
struct Pattern {
  bool is_literal = true;
  std::string literal;
  std::shared_ptr<const Regex> regex;
};

struct NormalizerOp {
  enum Kind { kPrepend, kReplace, kStrip, kNfc } kind;
  std::string text;                  // Prepend: the prefix; Replace: the replacement
  Pattern pattern;                   // Replace
  bool left = false, right = false;  // Strip
};

struct PreTokenizerOp {
  enum Kind { kByteLevel, kSplit, kDigits, kMetaspace, kWhitespaceSplit } kind;
  bool add_prefix_space = false;                      // ByteLevel
  bool use_regex = true;                              // ByteLevel
  std::shared_ptr<const Regex> regex;                 // Split (pattern), Digits (\p{N}), ByteLevel (GPT-2 regex)
  SplitBehavior behavior = SplitBehavior::kIsolated;  // Split, Digits
  bool invert = false;                                // Split
  uint32_t replacement = 0x2581;                      // Metaspace ("▁")
  PrependScheme prepend = PrependScheme::kAlways;     // Metaspace
  bool split = true;                                  // Metaspace
};

struct DecoderOp {
  enum Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip } kind;
  uint32_t ch = 0x2581;                            // Metaspace: replacement; Strip: content
  PrependScheme prepend = PrependScheme::kAlways;  // Metaspace
  Pattern pattern;                                 // Replace
  std::string content;                             // Replace
  size_t start = 0, stop = 0;                      // Strip
};

struct PostProcessorOp {
  enum Kind { kTemplate, kClsSep } kind;  // kClsSep: RobertaProcessing / BertProcessing
  struct Piece {
    bool is_sequence;
    std::vector<int32_t> ids;  // special token ids (empty for the sequence)
  };
  std::vector<Piece> single;  // Template
  int32_t cls = -1, sep = -1;
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  std::string form;  // what is matched and what decode prints: content, or normalize(content) if normalized
};

// Added tokens of one kind (raw or normalized), bucketed by first byte, longest form first.
struct AddedMatcher {
  std::vector<int32_t> bucket[256];  // indices into Impl::added
  bool empty = true;
};

// What decode() knows about the end of its text, for the StreamDecoder.
struct DecodeTail {
  bool unstable = false;    // more ids could change the end (a trailing <0xXX> group, a partial character, ...)
  bool incomplete = false;  // the text ends in a partial UTF-8 character (implies unstable)
};

struct Impl {
  std::string name;  // for error messages

  std::vector<NormalizerOp> normalizer;
  std::vector<PreTokenizerOp> pre_tokenizer;
  std::unique_ptr<Bpe> model;
  std::vector<PostProcessorOp> post_processor;
  std::vector<DecoderOp> decoder;
  bool has_decoder = false;  // without a decoder HF joins token strings with " "

  std::vector<AddedToken> added;
  std::vector<int32_t> added_index_by_id;  // id -> index into added, -1 if none (sized vocab_size)
  StringMap<int32_t> added_by_content;     // content -> index into added
  StringMap<bool> special_contents;        // contents of special added tokens (decode skips by string, like HF)
  AddedMatcher raw_matcher, normalized_matcher;
  std::shared_ptr<const Regex> word_char;  // \w as in Rust's regex crate, for single_word

  int32_t vocab_size = 0;  // max id + 1 over the model vocab and added tokens
  int32_t bos_id = -1, eos_id = -1;

  // Encoding (pipeline.cpp).
  void encode(std::string_view text, bool add_special, std::vector<int32_t>& out) const;
  std::string normalize(std::string s) const;

  // Decoding (decode.cpp). `tail`, if given, says whether more ids could still change the end of the text.
  std::string decode(const int32_t* ids, size_t n, bool skip_special, DecodeTail* tail = nullptr) const;
  const std::string* id_to_token(int32_t id) const;
};

// A pattern's matches and the gaps between them, covering s (HF's Pattern::find_matches).
struct Span {
  size_t b, e;
  bool match;
};
std::vector<Span> pattern_spans(const Pattern& p, std::string_view s);
// Every match of p in s replaced by content (HF's NormalizedString::replace and the Replace decoder).
std::string replace_all(const std::string& s, const Pattern& p, const std::string& content);

// Builds the pipeline from tokenizer.json text (load_json.cpp). Throws sllm::Error naming `name` and the field.
std::unique_ptr<Impl> load_tokenizer_json(const std::string& json_text, const std::string& name);

// GPT-2's bytes_to_unicode(): the UTF-8 text of the character that stands for each byte in byte-level vocabularies.
const std::array<std::string, 256>& byte_chars();
// GPT-2's pre-tokenizer regex, compiled once.
const std::shared_ptr<const Regex>& gpt2_regex();

}  // namespace sllm::tok
