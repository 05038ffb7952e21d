// streamllm: the BPE model of HF tokenizers (models/bpe), byte-level and SentencePiece-style alike.
//
// A word (one pre-token) starts as one symbol per character (plus continuing_subword_prefix / end_of_word_suffix,
// unknown characters become <0xXX> byte tokens with byte_fallback or <unk>, fused with fuse_unk), then the pair of
// adjacent symbols with the lowest merge rank is merged, ties broken by position, until no listed pair remains.
// A min-heap of candidate merges plus a linked list of symbols makes that O(n log n) per word (HF's word.rs);
// stale heap entries are detected by re-checking the pair. Results for short words are cached.
#pragma once
#include <cstdint>        // int32_t, uint64_t
#include <mutex>          // std::mutex
#include <optional>       // std::optional
#include <string>         // std::string
#include <string_view>    // std::string_view
#include <unordered_map>  // std::unordered_map
#include <utility>        // std::pair
#include <vector>         // std::vector

namespace sllm::tok {

// Hash for heterogeneous lookup (find(string_view) on an unordered_map<std::string, ...>).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct BpeConfig {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token -> id, in file order
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  std::optional<std::string> unk_token;
  std::optional<std::string> continuing_subword_prefix;
  std::optional<std::string> end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class Bpe {
 public:
  // Validates and indexes the config; `where` prefixes error messages ("tokenizer.json: model").
  Bpe(BpeConfig cfg, const std::string& where);

  // Appends the ids of one pre-token to out.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view tok) const;
  const std::string* id_to_token(int32_t id) const;  // nullptr when the id is not in the vocab
  size_t size() const { return vocab_.size(); }      // number of vocab entries (HF get_vocab_size)
  int32_t max_id() const { return int32_t(id_to_token_.size()) - 1; }

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;  // dense by id; holes are flagged in has_id_
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left id << 32 | right id) -> (rank, new id)
  BpeConfig cfg_;                                                     // flags and strings (vocab/merges cleared)
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];  // <0xXX> ids for byte_fallback, -1 if absent

  // Cache of short words -> ids, shared by all threads using this tokenizer.
  mutable std::mutex cache_mu_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace sllm::tok
