// streamllm trainer: byte-level BPE training (see bpe_trainer.h for the algorithm, the tie rule and the ids).
#include "train/bpe_trainer.h"

#include <algorithm>          // std::sort
#include <mutex>              // std::mutex
#include <nlohmann/json.hpp>  // nlohmann::ordered_json
#include <queue>              // std::priority_queue
#include <unordered_map>      // std::unordered_map
#include <unordered_set>      // std::unordered_set

#include "core/error.h"          // Error
#include "tokenizer/bpe.h"       // StringMap
#include "tokenizer/pipeline.h"  // byte_chars, gpt2_regex
#include "tokenizer/unicode.h"   // is_valid_utf8, append_utf8_lossy
#include "train/token_data.h"    // chunk_cuts, parallel_tasks, worker_count

namespace sllm::train {

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
int32_t key_left(uint64_t k) { return int32_t(k >> 32); }
int32_t key_right(uint64_t k) { return int32_t(k & 0xffffffffu); }

}  // namespace

std::vector<WordCount> count_words(const std::vector<std::string_view>& texts, const CountOptions& opt) {
  // Work items: pieces of text between special-token occurrences, cut further at chunk boundaries.
  struct Piece {
    std::string_view s;
  };
  std::vector<Piece> pieces;
  int64_t total = 0;
  for (std::string_view t : texts) {
    total += int64_t(t.size());
    size_t b = 0;
    while (b <= t.size()) {
      size_t e = opt.special.empty() ? std::string_view::npos : t.find(opt.special, b);
      if (e == std::string_view::npos) e = t.size();
      const std::string_view seg = t.substr(b, e - b);
      size_t pb = 0;
      for (size_t cut : chunk_cuts(seg, opt.chunk_bytes)) {
        pieces.push_back({seg.substr(pb, cut - pb)});
        pb = cut;
      }
      if (pb < seg.size()) pieces.push_back({seg.substr(pb)});
      b = e + (e < t.size() ? opt.special.size() : 1);
    }
  }

  const int workers = worker_count(opt.threads, pieces.size());
  std::vector<tok::StringMap<int64_t>> local(static_cast<size_t>(workers));
  std::mutex mu;
  int64_t done = 0;
  const tok::Regex& re = *tok::gpt2_regex();
  parallel_tasks(pieces.size(), opt.threads, [&](size_t k, int w) {
    std::string_view s = pieces[k].s;
    std::string cleaned;
    if (!tok::is_valid_utf8(s)) {
      tok::append_utf8_lossy(cleaned, s);
      s = cleaned;
    }
    tok::StringMap<int64_t>& m = local[size_t(w)];
    for (const auto& [b, e] : re.find_all(s)) {
      const std::string_view word = s.substr(b, e - b);
      auto it = m.find(word);
      if (it != m.end())
        ++it->second;
      else
        m.emplace(std::string(word), 1);
    }
    if (opt.progress) {
      std::lock_guard<std::mutex> lock(mu);
      done += int64_t(pieces[k].s.size());
      opt.progress(done, total);
    }
  });

  tok::StringMap<int64_t>& all = local[0];
  for (size_t w = 1; w < local.size(); ++w) {
    for (auto& [word, n] : local[w]) all[word] += n;
    tok::StringMap<int64_t>().swap(local[w]);
  }
  std::vector<WordCount> out;
  out.reserve(all.size());
  for (auto& [word, n] : all) out.push_back({word, n});
  std::sort(out.begin(), out.end(), [](const WordCount& a, const WordCount& b) { return a.word < b.word; });
  return out;
}

BpeModel train_bpe(const std::vector<WordCount>& words, const BpeTrainOptions& opt) {
  if (opt.vocab_size < 257 || opt.vocab_size > (int64_t(1) << 24))
    throw Error("BPE vocabulary size must be in [257, 16777216] (256 bytes + merges + " + opt.special +
                "), got " + std::to_string(opt.vocab_size));
  if (opt.special.empty()) throw Error("BPE training needs a special end-of-text token");
  BpeModel m;
  m.special = opt.special;
  for (int b = 0; b < 256; ++b) m.tokens.push_back(std::string(1, char(b)));
  std::unordered_map<std::string, int32_t> id_of;  // token bytes -> id (to find a merge that repeats a token)
  for (int b = 0; b < 256; ++b) id_of.emplace(m.tokens[size_t(b)], b);

  // Words as symbol sequences; initial pair counts and the pair -> words index.
  std::vector<std::vector<int32_t>> sym(words.size());
  std::vector<int64_t> freq(words.size());
  std::unordered_map<uint64_t, int64_t> count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // words that contained the pair (maybe no more)
  for (size_t w = 0; w < words.size(); ++w) {
    freq[w] = words[w].count;
    for (unsigned char c : words[w].word) sym[w].push_back(int32_t(c));
    const std::vector<int32_t>& s = sym[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      count[k] += freq[w];
      std::vector<int32_t>& ws = where[k];
      if (ws.empty() || ws.back() != int32_t(w)) ws.push_back(int32_t(w));
    }
  }

  // Tie order: HF's BpeTrainer gives the byte characters ids in code point order and merged tokens ids in creation
  // order, and breaks count ties by the smaller (left id, right id). rank[] is that id order, so ties go the same
  // way here and the merges equal HF's (scripts/check_bpe_trainer.py compares them).
  std::vector<int32_t> rank(256);
  {
    const auto& bc = tok::byte_chars();
    std::vector<int32_t> order(256);
    for (int b = 0; b < 256; ++b) order[size_t(b)] = b;
    auto cp = [&bc](int32_t b) {
      uint32_t c = 0;
      tok::utf8_decode(bc[size_t(b)], 0, &c);
      return c;
    };
    std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return cp(x) < cp(y); });
    for (int r = 0; r < 256; ++r) rank[size_t(order[size_t(r)])] = r;
  }
  struct Entry {
    int64_t count;
    int32_t a, b;
  };
  // priority_queue's top is the "largest": the highest count, then the smallest (rank left, rank right).
  auto lower = [&rank](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    if (x.a != y.a) return rank[size_t(x.a)] > rank[size_t(y.a)];
    return rank[size_t(x.b)] > rank[size_t(y.b)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(lower)> heap(lower);
  for (const auto& [k, n] : count)
    if (n > 0) heap.push({n, key_left(k), key_right(k)});

  std::unordered_map<uint64_t, int32_t> merged;  // pair -> token id, for every recorded merge
  const int64_t max_new = opt.vocab_size - 257;
  std::vector<uint64_t> touched;  // pairs next to the new token whose count rose during this merge
  std::unordered_set<uint64_t> touched_set;
  std::vector<std::pair<uint64_t, int64_t>> deltas;
  while (int64_t(m.tokens.size()) + 1 < opt.vocab_size && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const uint64_t key = pair_key(top.a, top.b);
    auto ic = count.find(key);
    const int64_t cur = ic == count.end() ? 0 : ic->second;
    if (cur != top.count) {
      if (cur > 0 && cur < top.count) heap.push({cur, top.a, top.b});  // stale: requeue at its true count
      continue;  // (cur > top.count: an entry with the current count is queued already)
    }
    if (cur <= 0) continue;
    if (cur < opt.min_frequency) break;

    int32_t id;
    if (auto im = merged.find(key); im != merged.end()) {
      id = im->second;  // the pair became adjacent again through a repeated token: its rule exists
    } else {
      const std::string bytes = m.tokens[size_t(top.a)] + m.tokens[size_t(top.b)];
      auto [it, fresh] = id_of.emplace(bytes, int32_t(m.tokens.size()));
      if (fresh) {
        m.tokens.push_back(bytes);
        rank.push_back(int32_t(rank.size()));
      }
      id = it->second;
      merged.emplace(key, id);
      m.merges.emplace_back(top.a, top.b);
    }

    // Rewrite every word that may hold the pair, applying its pair-count changes.
    std::vector<int32_t> ws = std::move(where[key]);
    where.erase(key);
    touched.clear();
    touched_set.clear();
    for (int32_t w : ws) {
      std::vector<int32_t>& s = sym[size_t(w)];
      const int64_t f = freq[size_t(w)];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == top.a && s[i + 1] == top.b;
      if (!has) continue;  // merged away since it was indexed
      deltas.clear();
      for (size_t i = 0; i + 1 < s.size(); ++i) deltas.emplace_back(pair_key(s[i], s[i + 1]), -f);
      size_t o = 0;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == top.a && s[i + 1] == top.b) {
          s[o++] = id;
          i += 2;
        } else {
          s[o++] = s[i++];
        }
      }
      s.resize(o);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        deltas.emplace_back(k, f);
        if (s[i] == id || s[i + 1] == id) {
          std::vector<int32_t>& wk = where[k];
          if (wk.empty() || wk.back() != w) wk.push_back(w);
          if (touched_set.insert(k).second) touched.push_back(k);
        }
      }
      for (const auto& [k, d] : deltas) {
        int64_t& c = count[k];
        c += d;
        if (c == 0) count.erase(k);
      }
    }
    for (uint64_t k : touched) {  // in first-seen order: the heap's contents never depend on hashing
      auto it = count.find(k);
      if (it != count.end() && it->second > 0) heap.push({it->second, key_left(k), key_right(k)});
    }
    if (opt.progress) opt.progress(int64_t(m.tokens.size()) - 256, max_new);
  }
  return m;
}

std::string bpe_tokenizer_json(const BpeModel& m) {
  using ojson = nlohmann::ordered_json;
  const auto& bc = tok::byte_chars();
  auto shown = [&bc](const std::string& bytes) {
    std::string s;
    for (unsigned char c : bytes) s += bc[c];
    return s;
  };
  const int32_t special_id = int32_t(m.tokens.size());
  ojson vocab = ojson::object();
  for (size_t i = 0; i < m.tokens.size(); ++i) vocab[shown(m.tokens[i])] = int32_t(i);
  vocab[m.special] = special_id;
  ojson merges = ojson::array();
  for (const auto& [a, b] : m.merges) merges.push_back({shown(m.tokens[size_t(a)]), shown(m.tokens[size_t(b)])});

  ojson byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = ojson::array({{{"id", special_id},
                                     {"content", m.special},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = byte_level;
  j["post_processor"] = nullptr;
  j["decoder"] = byte_level;
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}};
  return j.dump(2) + "\n";
}

}  // namespace sllm::train
