// streamllm trainer: token shards, the corpus, chunked parallel encoding and the train / validation split (see
// token_data.h for the rules; docs/format.md for the shard layout; docs/training.md for the commands).
#include "train/token_data.h"

#include <algorithm>          // std::min, std::max
#include <atomic>             // std::atomic
#include <bit>                // std::endian
#include <cerrno>             // errno
#include <cmath>              // std::isfinite, std::llround
#include <cstdio>             // std::rename, std::remove
#include <cstring>            // std::memcpy, std::strerror
#include <exception>          // std::exception_ptr
#include <fcntl.h>            // open
#include <filesystem>         // std::filesystem
#include <mutex>              // std::mutex
#include <nlohmann/json.hpp>  // nlohmann::json
#include <omp.h>              // omp_get_max_threads
#include <optional>           // std::optional
#include <thread>             // std::thread
#include <unistd.h>           // write, fsync, close, getpid

#include "core/error.h"  // Error

namespace sllm::train {

static_assert(std::endian::native == std::endian::little, "token shards are little-endian; so is this code");

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- token shards -------------------------------------------------------------------------------------------------

uint64_t tokenizer_id(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV-1a 64 prime
  }
  return h;
}

namespace {

// Header byte offsets (docs/format.md, "Token shards").
constexpr size_t kOffVersion = 8, kOffHeaderSize = 12, kOffBytesPerToken = 16, kOffCount = 24, kOffVocab = 32,
                 kOffTokId = 40;

template <class T>
T load_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store_le(unsigned char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": write failed (" + std::strerror(errno) + ")");
    }
    p += w;
    n -= size_t(w);
  }
}

// Writes a file through a uniquely named temporary next to it: fill(fd) writes the contents, then fsync, rename,
// and a best-effort fsync of the directory. The temporary is removed on any failure.
template <class Fill>
void atomic_write(const std::string& path, Fill fill) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw Error(path + ": the directory '" + parent.string() + "' does not exist");
  static std::atomic<uint64_t> serial{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(serial++);
  struct Guard {
    const std::string& p;
    bool done = false;
    ~Guard() {
      if (!done) std::remove(p.c_str());
    }
  } guard{tmp};
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.fd < 0) throw Error(path + ": cannot create '" + tmp + "' (" + std::strerror(errno) + ")");
    fill(f.fd, tmp);
    if (::fsync(f.fd) != 0) throw Error(tmp + ": fsync failed (" + std::strerror(errno) + ")");
    const int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) throw Error(tmp + ": close failed (" + std::strerror(errno) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(path + ": cannot move the finished file into place (" + std::strerror(errno) + ")");
  guard.done = true;
  Fd d{::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd >= 0) (void)::fsync(d.fd);  // the file is complete either way; only the rename's durability is at stake
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view bytes) {
  atomic_write(path, [&](int fd, const std::string& tmp) { write_all(fd, bytes.data(), bytes.size(), tmp); });
}

void write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size,
                       uint64_t tok_id) {
  if (vocab_size < 1 || vocab_size > int64_t(INT32_MAX) + 1)
    throw Error(path + ": vocab_size " + std::to_string(vocab_size) + " is outside [1, 2^31]");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_size)
      throw Error(path + ": tokens[" + std::to_string(i) + "]: id " + std::to_string(tokens[i]) +
                  " is outside [0, vocab_size " + std::to_string(vocab_size) + ")");
  const uint32_t bpt = vocab_size <= 65536 ? 2 : 4;
  unsigned char h[kShardHeaderBytes] = {};
  std::memcpy(h, kShardMagic, 8);
  store_le<uint32_t>(h + kOffVersion, kShardVersion);
  store_le<uint32_t>(h + kOffHeaderSize, kShardHeaderBytes);
  store_le<uint32_t>(h + kOffBytesPerToken, bpt);
  store_le<uint64_t>(h + kOffCount, tokens.size());
  store_le<uint64_t>(h + kOffVocab, uint64_t(vocab_size));
  store_le<uint64_t>(h + kOffTokId, tok_id);
  atomic_write(path, [&](int fd, const std::string& tmp) {
    write_all(fd, h, sizeof h, tmp);
    if (bpt == 4) {
      write_all(fd, tokens.data(), tokens.size() * 4, tmp);
      return;
    }
    std::vector<uint16_t> block;  // narrowed in blocks: bounded memory whatever the shard size
    for (size_t i = 0; i < tokens.size(); i += block.size()) {
      const size_t n = std::min<size_t>(tokens.size() - i, size_t(1) << 20);
      block.resize(n);
      for (size_t k = 0; k < n; ++k) block[k] = uint16_t(tokens[i + k]);
      write_all(fd, block.data(), n * 2, tmp);
    }
  });
}

TokenShard TokenShard::open(const std::string& path) {
  TokenShard s;
  s.map_ = MappedFile(path);
  const unsigned char* p = s.map_.data();
  const size_t size = s.map_.size();
  if (size < kShardHeaderBytes)
    throw Error(path + ": header: truncated (" + std::to_string(size) + " bytes, a token shard header is " +
                std::to_string(kShardHeaderBytes) + ")");
  if (std::memcmp(p, kShardMagic, 8) != 0) throw Error(path + ": magic: not a streamllm token shard");
  const uint32_t version = load_le<uint32_t>(p + kOffVersion);
  if (version == 0 || version > kShardVersion)
    throw Error(path + ": version: format version " + std::to_string(version) + (version ? " is newer than" : " is not") +
                " supported (this build reads version " + std::to_string(kShardVersion) + ")");
  const uint32_t header = load_le<uint32_t>(p + kOffHeaderSize);
  if (header < kShardHeaderBytes || header % 8 != 0 || header > size)
    throw Error(path + ": header_size: " + std::to_string(header) + " is not a multiple of 8 in [" +
                std::to_string(kShardHeaderBytes) + ", file size " + std::to_string(size) + "]");
  const uint32_t bpt = load_le<uint32_t>(p + kOffBytesPerToken);
  if (bpt != 2 && bpt != 4) throw Error(path + ": bytes_per_token: " + std::to_string(bpt) + " (expected 2 or 4)");
  const uint64_t vocab = load_le<uint64_t>(p + kOffVocab);
  if (vocab < 1 || vocab > (bpt == 2 ? 65536ULL : uint64_t(INT32_MAX) + 1))
    throw Error(path + ": vocab_size: " + std::to_string(vocab) + " does not fit " + std::to_string(bpt) +
                "-byte tokens");
  const uint64_t count = load_le<uint64_t>(p + kOffCount);
  const uint64_t payload = size - header;
  if (count > payload / bpt || count * bpt != payload)
    throw Error(path + ": token_count: " + std::to_string(count) + " tokens of " + std::to_string(bpt) +
                " bytes do not match the " + std::to_string(payload) + " bytes after the header (truncated file?)");
  s.count_ = int64_t(count);
  s.vocab_ = int64_t(vocab);
  s.tok_id_ = load_le<uint64_t>(p + kOffTokId);
  s.bpt_ = int(bpt);
  // Tokens start at header_size; remember it through the data pointer offset.
  s.header_ = header;
  return s;
}

void TokenShard::read(int64_t pos, int64_t n, int32_t* out) const {
  if (pos < 0 || n < 0 || pos > count_ || n > count_ - pos)
    throw Error(path() + ": read of tokens [" + std::to_string(pos) + ", " + std::to_string(pos) + "+" +
                std::to_string(n) + ") is outside the shard's " + std::to_string(count_) + " tokens");
  const unsigned char* base = map_.data() + header_ + size_t(pos) * size_t(bpt_);
  uint32_t bad = 0;  // OR of out-of-range flags, checked once after the loop
  if (bpt_ == 2) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t v = load_le<uint16_t>(base + 2 * i);
      out[i] = int32_t(v);
      bad |= uint32_t(int64_t(v) >= vocab_);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t v = load_le<uint32_t>(base + 4 * i);
      out[i] = int32_t(v);
      bad |= uint32_t(int64_t(v) >= vocab_);
    }
  }
  if (bad)
    for (int64_t i = 0; i < n; ++i)
      if (uint32_t(out[i]) >= uint64_t(vocab_))
        throw Error(path() + ": tokens[" + std::to_string(pos + i) + "]: id " + std::to_string(uint32_t(out[i])) +
                    " is not below vocab_size " + std::to_string(vocab_));
}

std::vector<int32_t> TokenShard::read_all() const {
  std::vector<int32_t> v(static_cast<size_t>(count_));
  read(0, count_, v.data());
  return v;
}

// ---- the corpus -------------------------------------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

}  // namespace

Corpus Corpus::load(const std::vector<std::string>& files, const CorpusOptions& opt) {
  if (opt.format != "auto" && opt.format != "text" && opt.format != "jsonl")
    throw Error("input format must be auto, text or jsonl, not '" + opt.format + "'");
  if (files.empty()) throw Error("no input files");
  Corpus c;
  for (const std::string& path : files) {
    Source src;
    src.path = path;
    src.jsonl = opt.format == "jsonl" || (opt.format == "auto" && (ends_with(path, ".jsonl") || ends_with(path, ".ndjson")));
    MappedFile m(path);
    const int32_t si = int32_t(c.sources_.size());
    std::string_view all(reinterpret_cast<const char*>(m.data()), m.size());
    if (!src.jsonl) {
      if (!all.empty()) {
        c.docs_.push_back({all, si, 0});
        src.documents = 1;
        src.bytes = int64_t(all.size());
      }
      c.maps_.push_back(std::move(m));  // the document points into the mapping: keep it
    } else {
      int64_t line = 0;
      if (all.substr(0, 3) == "\xEF\xBB\xBF") all.remove_prefix(3);  // a UTF-8 byte order mark
      for (size_t b = 0; b < all.size();) {
        size_t e = all.find('\n', b);
        if (e == std::string_view::npos) e = all.size();
        std::string_view l = all.substr(b, e - b);
        b = e + 1;
        ++line;
        if (blank(l)) continue;
        const std::string at = path + ":" + std::to_string(line) + ": ";
        json j;
        try {
          j = json::parse(l.begin(), l.end());
        } catch (const json::parse_error& ex) {
          throw Error(at + "not valid JSON (error at byte " + std::to_string(ex.byte) + " of the line)");
        }
        if (!j.is_object()) throw Error(at + "expected a JSON object, got " + j.type_name());
        auto it = j.find(opt.jsonl_field);
        if (it == j.end() || !it->is_string())
          throw Error(at + "no string field \"" + opt.jsonl_field + "\"");
        auto text = std::make_unique<std::string>(std::move(it->get_ref<std::string&>()));
        if (text->empty()) continue;
        c.docs_.push_back({*text, si, line});
        ++src.documents;
        src.bytes += int64_t(text->size());
        c.owned_.push_back(std::move(text));
      }
    }
    c.sources_.push_back(std::move(src));
  }
  if (c.docs_.empty())
    throw Error("empty corpus: the " + std::to_string(files.size()) + " input file" + (files.size() > 1 ? "s hold" : " holds") +
                " no text");
  return c;
}

Corpus Corpus::from_texts(const std::vector<std::string_view>& texts) {
  Corpus c;
  Source src;
  src.path = "<memory>";
  for (std::string_view t : texts) {
    if (t.empty()) continue;
    c.docs_.push_back({t, 0, 0});
    ++src.documents;
    src.bytes += int64_t(t.size());
  }
  c.sources_.push_back(std::move(src));
  return c;
}

int64_t Corpus::bytes() const {
  int64_t n = 0;
  for (const Source& s : sources_) n += s.bytes;
  return n;
}

// ---- chunked encoding ---------------------------------------------------------------------------------------------

namespace {

bool graphic_ascii(char c) { return c >= '!' && c <= '~'; }

// The pre-tokenizer regexes whose behaviour at chunk boundaries token_data.h argues for.
const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Appends the members of a (possibly nested) Sequence under `key`, or the item itself.
void flatten(const json& j, const char* key, std::vector<const json*>& out) {
  if (j.is_object() && j.value("type", "") == "Sequence" && j.contains(key) && j[key].is_array()) {
    for (const json& m : j[key]) flatten(m, key, out);
  } else {
    out.push_back(&j);
  }
}

std::string check_pipeline(const json& t) {
  if (!t.is_object()) return "tokenizer.json is not an object";
  if (t.contains("normalizer") && !t["normalizer"].is_null()) {
    std::vector<const json*> ops;
    flatten(t["normalizer"], "normalizers", ops);
    for (const json* op : ops)
      if (!op->is_object() || op->value("type", "") != "NFC") return "normalizer " + op->value("type", std::string("?"));
  }
  if (!t.contains("pre_tokenizer") || t["pre_tokenizer"].is_null()) return "no pre-tokenizer";
  std::vector<const json*> ops;
  flatten(t["pre_tokenizer"], "pretokenizers", ops);
  bool splits_lines = false;  // some stage cuts the text with one of the two regexes
  for (const json* op : ops) {
    if (!op->is_object()) return "pre-tokenizer is not an object";
    const std::string type = op->value("type", "");
    if (type == "ByteLevel") {
      if (op->value("add_prefix_space", false)) return "ByteLevel add_prefix_space";
      splits_lines |= op->value("use_regex", true);
    } else if (type == "Digits") {
    } else if (type == "Split") {
      const json& pat = op->value("pattern", json());
      const std::string re = pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string() ? pat["Regex"].get<std::string>() : "";
      if (re != kGpt2Regex && re != kLlama3Regex) return "Split pattern not known to respect line boundaries";
      if (op->value("behavior", "") != "Isolated" || op->value("invert", false)) return "Split behavior";
      splits_lines = true;
    } else {
      return "pre-tokenizer " + type;
    }
  }
  // Without such a cut a whole line run is one word, and BPE may merge across the line break.
  if (!splits_lines) return "no pre-tokenizer regex splits the text at line breaks";
  const json& model = t.value("model", json());
  if (!model.is_object() || model.value("type", "BPE") != "BPE") return "model is not BPE";
  if (t.contains("added_tokens") && t["added_tokens"].is_array())
    for (const json& a : t["added_tokens"]) {
      if (!a.is_object()) continue;
      if (a.value("lstrip", false)) return "added token with lstrip";
      if (a.value("content", std::string()).find('\n') != std::string::npos) return "added token containing a line break";
    }
  return "";
}

}  // namespace

bool is_chunk_boundary(std::string_view text, size_t p) {
  return p >= 2 && p < text.size() && text[p - 1] == '\n' && graphic_ascii(text[p - 2]) && graphic_ascii(text[p]);
}

std::vector<size_t> chunk_cuts(std::string_view text, size_t target_bytes) {
  std::vector<size_t> cuts;
  target_bytes = std::max<size_t>(target_bytes, 1);
  size_t last = 0;
  while (text.size() - last > target_bytes + target_bytes / 2) {  // leave no tiny last piece
    size_t p = last + target_bytes;
    // The next '\n' at or after p-1 whose neighbours qualify.
    size_t q = p - 1;
    for (;;) {
      q = text.find('\n', q);
      if (q == std::string_view::npos || is_chunk_boundary(text, q + 1)) break;
      ++q;
    }
    if (q == std::string_view::npos || q + 1 >= text.size()) break;
    cuts.push_back(q + 1);
    last = q + 1;
  }
  return cuts;
}

ChunkPolicy chunk_policy(const std::string& tokenizer_json) {
  json t;
  try {
    t = json::parse(tokenizer_json);
  } catch (const json::exception&) {
    return {false, "tokenizer.json does not parse"};
  }
  std::string why;
  try {
    why = check_pipeline(t);
  } catch (const json::exception&) {  // a field of an unexpected type
    why = "unexpected tokenizer.json structure";
  }
  return {why.empty(), why};
}

int worker_count(int threads, size_t n) {
  if (threads <= 0) threads = omp_get_max_threads();
  return int(std::max<size_t>(1, std::min<size_t>(size_t(threads), n)));
}

void parallel_tasks(size_t n, int threads, const std::function<void(size_t, int)>& fn) {
  const int workers = worker_count(threads, n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first;
  std::mutex mu;
  auto worker = [&](int w) {
    for (;;) {
      const size_t i = next++;
      if (i >= n || failed) return;
      try {
        fn(i, w);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
        failed = true;
        return;
      }
    }
  };
  if (workers == 1) {
    worker(0);
  } else {
    std::vector<std::thread> pool;
    for (int k = 0; k < workers; ++k) pool.emplace_back(worker, k);
    for (std::thread& th : pool) th.join();
  }
  if (first) std::rethrow_exception(first);
}

std::vector<std::vector<int32_t>> encode_texts(const Tokenizer& tok, const std::vector<std::string_view>& texts,
                                               const EncodeOptions& opt) {
  struct Task {
    size_t text, b, e;
  };
  std::vector<Task> tasks;
  int64_t total = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    total += int64_t(texts[i].size());
    size_t b = 0;
    if (opt.chunked)
      for (size_t cut : chunk_cuts(texts[i], opt.chunk_bytes)) {
        tasks.push_back({i, b, cut});
        b = cut;
      }
    tasks.push_back({i, b, texts[i].size()});
  }
  std::vector<std::vector<int32_t>> parts(tasks.size());
  std::mutex mu;
  int64_t done = 0;
  const bool own_copies = !opt.tokenizer_json.empty() && total >= 8 * int64_t(opt.tokenizer_json.size());
  std::vector<std::optional<Tokenizer>> own(size_t(worker_count(opt.threads, tasks.size())));
  parallel_tasks(tasks.size(), opt.threads, [&](size_t k, int w) {
    const Task& t = tasks[k];
    const Tokenizer* tk = &tok;
    if (w > 0 && own_copies) {
      if (!own[size_t(w)]) own[size_t(w)] = Tokenizer::from_json_string(std::string(opt.tokenizer_json), "tokenizer");
      tk = &*own[size_t(w)];
    }
    parts[k] = tk->encode(texts[t.text].substr(t.b, t.e - t.b));
    if (opt.progress) {
      std::lock_guard<std::mutex> lock(mu);
      done += int64_t(t.e - t.b);
      opt.progress(done, total);
    }
  });
  std::vector<std::vector<int32_t>> out(texts.size());
  for (size_t k = 0; k < tasks.size(); ++k) {
    std::vector<int32_t>& o = out[tasks[k].text];
    if (o.empty())
      o = std::move(parts[k]);
    else
      o.insert(o.end(), parts[k].begin(), parts[k].end());
    std::vector<int32_t>().swap(parts[k]);
  }
  return out;
}

// ---- the split --------------------------------------------------------------------------------------------------

SplitPoint plan_split(const Corpus& corpus, double val_fraction) {
  if (!(val_fraction > 0 && val_fraction < 1))
    throw Error("the validation fraction must be in (0, 1), got " + std::to_string(val_fraction));
  const std::vector<Document>& docs = corpus.docs();
  if (docs.empty()) throw Error("empty corpus: nothing to split");
  int64_t total = 0;
  for (const Document& d : docs) total += int64_t(d.text.size());
  const double target = (1 - val_fraction) * double(total);
  SplitPoint sp;
  if (docs.size() >= 2) {
    int64_t cum = 0;
    double best = -1;
    for (size_t k = 1; k < docs.size(); ++k) {
      cum += int64_t(docs[k - 1].text.size());
      const double dist = std::abs(double(cum) - target);
      if (best < 0 || dist < best) {
        best = dist;
        sp.doc = k;
        sp.train_bytes = cum;
      }
    }
    sp.by_document = true;
    sp.val_bytes = total - sp.train_bytes;
    return sp;
  }
  // One document: the chunk boundary nearest the target, else the nearest line start.
  const std::string_view text = docs[0].text;
  if (text.size() < 2)
    throw Error(corpus.sources()[size_t(docs[0].source)].path + ": the corpus is one document of " +
                std::to_string(text.size()) + " byte: too small to split into train and validation");
  const size_t t = size_t(std::llround(std::clamp(target, 1.0, double(text.size() - 1))));
  auto nearest = [&](auto ok) -> size_t {  // 0 when none
    size_t lo = t, hi = t;
    while (lo > 0 && !ok(lo)) --lo;
    while (hi < text.size() && !ok(hi)) ++hi;
    const bool has_lo = lo > 0, has_hi = hi < text.size();
    if (!has_lo && !has_hi) return 0;
    if (!has_lo) return hi;
    if (!has_hi) return lo;
    return t - lo <= hi - t ? lo : hi;
  };
  size_t p = nearest([&](size_t q) { return is_chunk_boundary(text, q); });
  if (p == 0) p = nearest([&](size_t q) { return q > 0 && q < text.size() && text[q - 1] == '\n'; });
  if (p == 0)
    throw Error(corpus.sources()[size_t(docs[0].source)].path +
                ": the corpus is one document without a line break: it cannot be split into train and validation "
                "(give several documents or files)");
  sp.by_document = false;
  sp.doc = 0;
  sp.offset = p;
  sp.train_bytes = int64_t(p);
  sp.val_bytes = total - int64_t(p);
  return sp;
}

TokenData make_token_data(const Corpus& corpus, const Tokenizer& tok, const std::string& tokenizer_json, int32_t eos,
                          double val_fraction, const EncodeOptions& opt) {
  TokenData td;
  td.split = plan_split(corpus, val_fraction);
  const ChunkPolicy pol = chunk_policy(tokenizer_json);
  EncodeOptions eo = opt;
  eo.chunked = opt.chunked && pol.chunked;
  eo.tokenizer_json = tokenizer_json;
  td.chunked = eo.chunked;
  td.chunk_note = !opt.chunked ? "chunking off" : pol.chunked ? "" : pol.reason;
  const std::vector<Document>& docs = corpus.docs();
  std::vector<std::string_view> texts;
  if (td.split.by_document) {
    for (const Document& d : docs) texts.push_back(d.text);
  } else {
    texts.push_back(docs[0].text.substr(0, td.split.offset));
    texts.push_back(docs[0].text.substr(td.split.offset));
  }
  std::vector<std::vector<int32_t>> enc = encode_texts(tok, texts, eo);
  auto append = [](std::vector<int32_t>& dst, std::vector<int32_t>& src) {
    dst.insert(dst.end(), src.begin(), src.end());
    std::vector<int32_t>().swap(src);
  };
  if (td.split.by_document) {
    for (size_t k = 0; k < enc.size(); ++k) {
      std::vector<int32_t>& dst = k < td.split.doc ? td.train : td.val;
      append(dst, enc[k]);
      dst.push_back(eos);
    }
  } else {
    append(td.train, enc[0]);
    append(td.val, enc[1]);
    td.val.push_back(eos);
  }
  return td;
}

int32_t document_separator(const Tokenizer& tok, const std::string& name) {
  if (auto id = tok.token_to_id("<|endoftext|>")) return *id;
  if (tok.eos_id() >= 0) return tok.eos_id();
  throw Error(name + ": the tokenizer has no <|endoftext|> or end-of-sequence token to separate documents");
}

}  // namespace sllm::train
