// streamllm: BPE model. See bpe.h; this is a line-by-line port of HF tokenizers' models/bpe (model.rs merge_word
// and word.rs merge_all) so that ties, unknown characters and byte fallback behave identically.
#include "tokenizer/bpe.h"

#include <algorithm>  // std::min, std::max
#include <cstdio>     // std::snprintf
#include <queue>      // std::priority_queue

#include "core/error.h"         // Error
#include "tokenizer/unicode.h"  // utf8_len_valid

namespace sllm::tok {

namespace {

constexpr size_t kCacheMaxWordBytes = 256;    // HF caches words shorter than this (MAX_LENGTH)
constexpr size_t kCacheMaxEntries = 1 << 17;  // then stops inserting

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

std::string quoted(std::string_view s) {
  std::string r = "\"";
  for (char c : s.substr(0, 80)) {
    if (uint8_t(c) < 0x20 || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", unsigned(uint8_t(c)));
      r += buf;
    } else {
      r += c;
    }
  }
  return r + (s.size() > 80 ? "...\"" : "\"");
}

struct Symbol {
  int32_t id;
  int32_t prev, next;  // neighbours in the linked list, -1 at the ends
  uint32_t len;        // bytes covered; 0 marks a symbol merged into its left neighbour
};

struct Merge {
  int32_t pos, rank, new_id;
};
// priority_queue puts the "largest" on top: make that the lowest rank, then the leftmost position.
struct MergeAfter {
  bool operator()(const Merge& a, const Merge& b) const { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; }
};

}  // namespace

Bpe::Bpe(BpeConfig cfg, const std::string& where) : cfg_(std::move(cfg)) {
  const size_t n = cfg_.vocab.size();
  int64_t max_id = -1;
  vocab_.reserve(n);
  for (const auto& [tok, id] : cfg_.vocab) {
    if (id < 0) throw Error(where + ".vocab[" + quoted(tok) + "]: negative id " + std::to_string(id));
    vocab_[tok] = id;
    max_id = std::max<int64_t>(max_id, id);
  }
  // Ids index a dense table: refuse absurdly sparse ids instead of allocating from an unchecked number.
  if (max_id >= int64_t(16 * n + 65536))
    throw Error(where + ".vocab: id " + std::to_string(max_id) + " is far beyond the " + std::to_string(n) +
                " entries");
  id_to_token_.resize(size_t(max_id + 1));
  has_id_.assign(size_t(max_id + 1), false);
  for (const auto& [tok, id] : cfg_.vocab) {
    if (has_id_[size_t(id)]) continue;  // two tokens share an id: keep the first
    id_to_token_[size_t(id)] = tok;
    has_id_[size_t(id)] = true;
  }

  const size_t prefix_len = cfg_.continuing_subword_prefix ? cfg_.continuing_subword_prefix->size() : 0;
  merges_.reserve(cfg_.merges.size());
  for (size_t i = 0; i < cfg_.merges.size(); ++i) {
    const auto& [a, b] = cfg_.merges[i];
    const std::string at = where + ".merges[" + std::to_string(i) + "]: ";
    auto ia = vocab_.find(a);
    if (ia == vocab_.end()) throw Error(at + "token " + quoted(a) + " is not in the vocab");
    auto ib = vocab_.find(b);
    if (ib == vocab_.end()) throw Error(at + "token " + quoted(b) + " is not in the vocab");
    if (b.size() < prefix_len) throw Error(at + "token " + quoted(b) + " is shorter than continuing_subword_prefix");
    const std::string merged = a + b.substr(prefix_len);
    auto im = vocab_.find(merged);
    if (im == vocab_.end()) throw Error(at + "merged token " + quoted(merged) + " is not in the vocab");
    if (i > size_t(INT32_MAX)) throw Error(at + "too many merges");
    merges_[pair_key(ia->second, ib->second)] = {int32_t(i), im->second};  // a repeated pair keeps the last rank
  }
  cfg_.vocab.clear();
  cfg_.vocab.shrink_to_fit();
  cfg_.merges.clear();
  cfg_.merges.shrink_to_fit();

  // HF looks the unk token up lazily and only fails when it is needed; so do we (see merge_word).
  if (cfg_.unk_token) {
    auto it = vocab_.find(*cfg_.unk_token);
    if (it != vocab_.end()) unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(std::string_view(name));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

std::optional<int32_t> Bpe::token_to_id(std::string_view tok) const {
  auto it = vocab_.find(tok);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size() || !has_id_[size_t(id)]) return nullptr;
  return &id_to_token_[size_t(id)];
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (cfg_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheMaxEntries)
      cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + long(start), out.end()));
  }
}

void Bpe::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  sym.reserve(w.size());
  auto add = [&sym](int32_t id, uint32_t len) {
    const int32_t n = int32_t(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back({id, n - 1, -1, len});
  };

  bool have_unk = false;
  int32_t unk_id = -1;
  uint32_t unk_len = 0;
  std::string buf;
  for (size_t i = 0; i < w.size();) {
    const size_t n = std::min(utf8_len_valid(uint8_t(w[i])), w.size() - i);
    const bool is_first = i == 0, is_last = i + n == w.size();
    std::string_view s = w.substr(i, n);
    if ((!is_first && cfg_.continuing_subword_prefix) || (is_last && cfg_.end_of_word_suffix)) {
      buf.clear();
      if (!is_first && cfg_.continuing_subword_prefix) buf += *cfg_.continuing_subword_prefix;
      buf += s;
      if (is_last && cfg_.end_of_word_suffix) buf += *cfg_.end_of_word_suffix;
      s = buf;
    }
    i += n;

    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (have_unk) {
        add(unk_id, unk_len);
        have_unk = false;
      }
      add(it->second, uint32_t(n));
      continue;
    }
    if (cfg_.byte_fallback) {
      bool all = true;
      for (char c : s) all &= byte_ids_[uint8_t(c)] >= 0;
      if (all) {
        // Like HF, a pending <unk> is not flushed before the byte tokens.
        for (char c : s) add(byte_ids_[uint8_t(c)], 1);
        continue;
      }
    }
    if (cfg_.unk_token) {
      if (unk_id_ < 0) throw Error("tokenizer: model.unk_token " + quoted(*cfg_.unk_token) + " is not in the vocab");
      if (have_unk && cfg_.fuse_unk) {
        unk_len += uint32_t(n);
      } else {
        if (have_unk) add(unk_id, unk_len);
        have_unk = true;
        unk_id = unk_id_;
        unk_len = uint32_t(n);
      }
    }
    // No unk token: the character is dropped, as in HF.
  }
  if (have_unk) add(unk_id, unk_len);

  std::priority_queue<Merge, std::vector<Merge>, MergeAfter> queue;
  for (size_t i = 0; i + 1 < sym.size(); ++i) {
    auto it = merges_.find(pair_key(sym[i].id, sym[i + 1].id));
    if (it != merges_.end()) queue.push({int32_t(i), it->second.first, it->second.second});
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = sym[size_t(top.pos)];
    if (cur.len == 0 || cur.next == -1) continue;
    const size_t next_pos = size_t(cur.next);
    const Symbol right = sym[next_pos];
    auto it = merges_.find(pair_key(cur.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale entry

    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    sym[next_pos].len = 0;
    if (right.next >= 0) sym[size_t(right.next)].prev = top.pos;

    if (cur.prev >= 0) {
      auto ip = merges_.find(pair_key(sym[size_t(cur.prev)].id, cur.id));
      if (ip != merges_.end()) queue.push({cur.prev, ip->second.first, ip->second.second});
    }
    if (cur.next >= 0) {
      auto in = merges_.find(pair_key(cur.id, sym[size_t(cur.next)].id));
      if (in != merges_.end()) queue.push({top.pos, in->second.first, in->second.second});
    }
  }
  for (const Symbol& s : sym)
    if (s.len != 0) out.push_back(s.id);
}

}  // namespace sllm::tok
