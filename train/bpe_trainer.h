// streamllm trainer: a byte-level BPE trainer in the GPT-2 style, writing a tokenizer.json that HF `tokenizers`
// and our own loader (src/tokenizer) read.
//
// The tokenizer: GPT-2's ByteLevel pre-tokenizer (its split regex, every byte shown as one printable character),
// a BPE model over those byte characters, the ByteLevel decoder, no normalizer. Ids: 0..255 are the single bytes
// (id = byte value), 256.. the merged tokens in the order training created them, and the last id is the special
// token <|endoftext|> (the document separator / EOS), like GPT-2's 50256. So vocab = 256 + distinct merged tokens
// + 1.
//
// Training (train_bpe): the corpus is reduced to its distinct pre-tokens ("words") with their counts
// (count_words, multi-threaded over chunks cut at the boundaries of train/token_data.h, where pre-tokenization
// provably does not change; occurrences of the special token are cut out, as encoding matches them as added
// tokens). Then, repeatedly, the most frequent pair of adjacent symbols is merged in every word, left to right,
// non-overlapping. Pair counts live in a hash map updated incrementally: merging pair P visits only the words that
// contain P (an index pair -> words), subtracts their old adjacent pairs and adds the new ones. The best pair comes
// from a max-heap with lazy invalidation: counts of existing pairs only fall (a merge creates new adjacencies only
// next to the new token, and those pairs are pushed after the merge with their counts), so a popped entry whose
// count is stale is re-pushed with the current count and the first entry that is current is the true maximum.
// Ties: the highest count, then the smallest (rank of the left token, rank of the right token), where the rank
// orders the 256 byte tokens by the code point of their printable character (GPT-2's byte-to-unicode map) and
// merged tokens after them in creation order. That is the id order of HF's BpeTrainer, whose ties go to the
// smallest id pair, so on the same words our merges are HF's (scripts/check_bpe_trainer.py checks it). The
// result is a function of the word counts alone: same input, same bytes out, whatever the thread count.
//
// Two different merges can produce the same byte string ("a"+"bc" and "ab"+"c"): both merges are recorded and map
// to the one token (HF's trainer does the same), so that case adds a merge but no vocabulary entry. A pair merged
// earlier that becomes adjacent again this way is merged again without a new merge rule (its rule exists; HF's
// trainer would list it twice, and a repeated rule takes the later rank in both loaders). Neither case showed up
// in the corpora we compared, nor in random search; the tests' brute-force reference has the same rules.
//
// Training stops when the vocabulary is full, no pair is left, or the best pair occurs fewer than min_frequency
// times.
#pragma once
#include <cstdint>      // int32_t, int64_t
#include <functional>   // std::function
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <utility>      // std::pair
#include <vector>       // std::vector

namespace sllm::train {

constexpr const char* kEndOfText = "<|endoftext|>";

struct WordCount {
  std::string word;  // one pre-token's raw bytes (UTF-8)
  int64_t count = 0;
};

struct CountOptions {
  int threads = 0;                       // 0: all cores
  size_t chunk_bytes = size_t(256) << 10;  // texts are counted in pieces of about this size, in parallel
  std::string special = kEndOfText;      // cut out of the texts before counting ("" for none)
  std::function<void(int64_t done_bytes, int64_t total_bytes)> progress;  // under a lock, any thread
};

// Distinct pre-tokens of the texts (GPT-2 regex; invalid UTF-8 read as U+FFFD, as encoding does) with their
// counts, sorted by word bytes.
std::vector<WordCount> count_words(const std::vector<std::string_view>& texts, const CountOptions& opt);

struct BpeTrainOptions {
  int64_t vocab_size = 4096;         // total, including the 256 bytes and the special token (>= 257)
  int64_t min_frequency = 0;         // stop when the best pair occurs fewer times
  std::string special = kEndOfText;  // the special token (last id)
  std::function<void(int64_t merges_done, int64_t merges_max)> progress;
};

struct BpeModel {
  std::vector<std::string> tokens;                 // id -> raw bytes: 0..255 single bytes, then merged tokens
  std::vector<std::pair<int32_t, int32_t>> merges;  // (left id, right id) in rank order
  std::string special;                             // has id tokens.size()
  int64_t vocab_size() const { return int64_t(tokens.size()) + 1; }
};

BpeModel train_bpe(const std::vector<WordCount>& words, const BpeTrainOptions& opt);

// The tokenizer.json text (UTF-8, stable field order, newline-terminated).
std::string bpe_tokenizer_json(const BpeModel& model);

}  // namespace sllm::train
