// streamllm: text <-> token ids, from a Hugging Face tokenizer.json, identical to HF `tokenizers`.
//
// Supported (checked token for token against HF tokenizers 0.23 by tests/test_tokenizer.cpp):
//   model          BPE (vocab + merges in "a b" or ["a", "b"] form, unk_token, fuse_unk, byte_fallback,
//                  ignore_merges, continuing_subword_prefix, end_of_word_suffix)
//   normalizer     Sequence, Prepend, Replace, Strip, NFC
//   pre_tokenizer  Sequence, ByteLevel (add_prefix_space, use_regex), Split (String/Regex pattern, all behaviors,
//                  invert), Digits, Metaspace (prepend_scheme, split), WhitespaceSplit
//   post_processor Sequence, ByteLevel, TemplateProcessing (single), RobertaProcessing, BertProcessing
//   decoder        Sequence, ByteLevel, ByteFallback, Fuse, Metaspace, Replace, Strip
//   added_tokens   leftmost-longest matching before the model, lstrip / rstrip / single_word / normalized
// That covers GPT-2, GPT-NeoX / Pythia, SmolLM2, Llama-3, Qwen2 (byte-level BPE) and Llama-2 / Mistral
// (SentencePiece-style BPE with byte fallback). Anything else (WordPiece, Unigram, Lowercase, NFKC, ...) is
// refused with an sllm::Error naming the field. Regex patterns run on PCRE2 (HF uses Oniguruma).
#pragma once
#include <cstdint>      // int32_t
#include <memory>       // std::shared_ptr
#include <optional>     // std::optional
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <vector>       // std::vector

namespace sllm {

namespace tok {
struct Impl;
}

class Tokenizer {
 public:
  // Loads tokenizer.json. Throws sllm::Error ("<path>: <json path>: <what>") on a bad or unsupported file.
  static Tokenizer from_json_file(const std::string& path);
  static Tokenizer from_json_string(const std::string& json, const std::string& name_for_errors);

  // Encodes text. add_special=true applies the post-processor like HF's add_special_tokens=True (Llama-2 prepends
  // <s>; byte-level GPT-2 adds nothing). Invalid UTF-8 in `text` is read as U+FFFD. Thread-safe.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;
  // Equals HF decode(ids, skip_special_tokens=skip_special). Unknown ids are skipped. Always valid UTF-8.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Max id + 1 over the model vocab and the added tokens (the number of embedding rows a model needs).
  int32_t vocab_size() const;
  // -1 when unknown. Taken from the post-processor (the token it puts before / after the text), else from common
  // names (<s>, </s>, <|endoftext|>, <|im_end|>, ...). Override with set_bos_id / set_eos_id (generation_config).
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  void set_bos_id(int32_t id) { bos_id_ = id; }
  void set_eos_id(int32_t id) { eos_id_ = id; }
  // Every special token among the usual end-of-text names (</s>, <|endoftext|>, <|im_end|>, <|eot_id|>, ...)
  // plus eos_id(): where a chat model may stop generating.
  std::vector<int32_t> stop_ids() const;

  std::optional<int32_t> token_to_id(std::string_view tok) const;  // added tokens first, then the model vocab
  std::optional<std::string> id_to_token(int32_t id) const;        // the raw vocab string (e.g. "Ġthe", "▁the")
  bool is_special(int32_t id) const;                               // an added token marked special

 private:
  friend class StreamDecoder;
  explicit Tokenizer(std::shared_ptr<const tok::Impl> impl);
  std::shared_ptr<const tok::Impl> impl_;  // immutable and shared: copies are cheap
  int32_t bos_id_ = -1, eos_id_ = -1;
};

// Incremental decoder for streamed output: push ids one at a time, get back only complete UTF-8 text. Bytes of a
// multi-byte character split across tokens (byte-level pieces, <0xXX> byte-fallback tokens) are held until the
// character is complete. The concatenation of all push() results and flush() equals Tokenizer::decode of all ids
// (with the same skip_special), and every returned string is valid UTF-8.
//
// How: decode(context + pending ids) minus decode(context), where the context is the shortest tail of the ids
// already printed that decodes on its own to the end of the text printed so far. That difference is what the full
// decode adds, for every supported decoder (the leading-space Strip and Metaspace rules only touch the context),
// and the work per push stays bounded however long the stream runs. Text is held while more ids could change its
// end; after 64 held ids (a long run of <0xXX> byte tokens) only until the current character is complete, so only
// an invalid byte later joining such a long run can make the stream differ from decode().
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // whatever is left (incomplete trailing bytes become U+FFFD like HF); then starts afresh

 private:
  std::shared_ptr<const tok::Impl> impl_;
  bool skip_special_;
  std::vector<int32_t> context_;  // ids whose text has been returned already
  std::string context_text_;      // decode(context_)
  std::vector<int32_t> pending_;  // ids after the context whose text has not been returned
};

}  // namespace sllm
