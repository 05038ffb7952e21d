// `streamllm data` and `streamllm tokenizer train`: text files / JSONL -> token shards (train.bin, val.bin,
// tokenizer.json, meta.json), and the byte-level BPE trainer. The work is in train/token_data.cpp and
// train/bpe_trainer.cpp; this file parses flags, draws the progress bars and prints the summaries.
// docs/training.md ("Data and tokenizers") describes both commands.
#include <chrono>             // std::chrono
#include <cstdio>             // std::printf, std::fprintf
#include <filesystem>         // std::filesystem
#include <memory>             // std::make_shared
#include <nlohmann/json.hpp>  // nlohmann::ordered_json
#include <unistd.h>           // isatty

#include "core/error.h"  // Error
#include "infer/common.h"
#include "train/bpe_trainer.h"  // count_words, train_bpe, bpe_tokenizer_json
#include "train/token_data.h"   // Corpus, make_token_data, write_token_shard, tokenizer_id

namespace sllm::cli {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using namespace sllm::train;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A one-line progress bar on stderr, drawn only on a terminal: bytes (MB/s) or a plain count.
class Bar {
 public:
  Bar(std::string label, bool bytes, bool enabled)
      : label_(std::move(label)), bytes_(bytes), on_(enabled && isatty(2)), t0_(now()) {}
  void update(int64_t done, int64_t total) {
    if (!on_) return;
    const double t = now();
    if (t - last_ < 0.1 && done < total) return;
    last_ = t;
    const double frac = total > 0 ? double(done) / double(total) : 1.0;
    const int fill = int(frac * 30);
    const double el = t - t0_;
    if (bytes_)
      std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %.1f/%.1f MB  %.1f MB/s ", label_.c_str(), fill,
                   "##############################", 30 - fill, "", 100 * frac, double(done) / 1e6,
                   double(total) / 1e6, el > 0 ? double(done) / 1e6 / el : 0.0);
    else
      std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %lld/%lld ", label_.c_str(), fill,
                   "##############################", 30 - fill, "", 100 * frac, (long long)done, (long long)total);
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  std::string label_;
  bool bytes_, on_;
  double t0_, last_ = -1;
  bool drawn_ = false;
};

std::string hex64(uint64_t v) {
  char s[24];
  std::snprintf(s, sizeof s, "%016llx", (unsigned long long)v);
  return s;
}

// "1,234,567"
std::string grouped(int64_t v) {
  std::string s = std::to_string(v), r;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0 && s[i - 1] != '-') r += ',';
    r += s[i];
  }
  return r;
}

// ---- streamllm data ---------------------------------------------------------------------------------------------

struct DataArgs {
  std::string out, tokenizer, format = "auto", field = "text";
  std::vector<std::string> files;
  double val_fraction = 0.05;
  int threads = 0;
  bool force = false, no_progress = false;
};

// tokenizer.json text from a tokenizer.json file or from a model (HF directory, .gguf, .h5).
std::string tokenizer_text(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string f = (fs::path(path) / "tokenizer.json").string();
    if (!fs::exists(f, ec)) throw Error(path + ": the model directory has no tokenizer.json");
    return read_text_file(f, size_t(256) << 20);
  }
  if (fs::path(path).extension() == ".json") return read_text_file(path, size_t(256) << 20);
  ModelBundle b = load_bundle(path);
  if (b.tokenizer_json.empty()) throw Error(path + ": the model has no tokenizer");
  return b.tokenizer_json;
}

void run_data(const DataArgs& a) {
  const double t0 = now();
  if (!(a.val_fraction > 0 && a.val_fraction < 1))
    throw Error("--val-fraction must be in (0, 1), got " + std::to_string(a.val_fraction));
  const std::string train_path = (fs::path(a.out) / "train.bin").string();
  const std::string val_path = (fs::path(a.out) / "val.bin").string();
  const std::string tok_path = (fs::path(a.out) / "tokenizer.json").string();
  const std::string meta_path = (fs::path(a.out) / "meta.json").string();
  std::error_code ec;
  if (fs::exists(a.out, ec) && !fs::is_directory(a.out, ec)) throw Error(a.out + ": exists and is not a directory");
  if (!a.force)
    for (const std::string& p : {train_path, val_path, meta_path})
      if (fs::exists(p, ec)) throw Error(p + ": already exists (use --force to overwrite)");

  const std::string tj = tokenizer_text(a.tokenizer);
  const Tokenizer tok = Tokenizer::from_json_string(tj, a.tokenizer);
  const int32_t eos = document_separator(tok, a.tokenizer);
  CorpusOptions co;
  co.format = a.format;
  co.jsonl_field = a.field;
  const Corpus corpus = Corpus::load(a.files, co);

  Bar bar("tokenizing", true, !a.no_progress);
  EncodeOptions eo;
  eo.threads = a.threads;
  eo.progress = [&bar](int64_t d, int64_t t) { bar.update(d, t); };
  const double t1 = now();
  TokenData td = make_token_data(corpus, tok, tj, eos, a.val_fraction, eo);
  bar.finish();
  const double t2 = now();

  fs::create_directories(a.out, ec);
  if (ec) throw Error(a.out + ": cannot create the directory (" + ec.message() + ")");
  const uint64_t id = tokenizer_id(tj);
  const int64_t vocab = tok.vocab_size();
  write_file_atomic(tok_path, tj);
  write_token_shard(train_path, td.train, vocab, id);
  write_token_shard(val_path, td.val, vocab, id);

  const int64_t n_train = int64_t(td.train.size()), n_val = int64_t(td.val.size()), bytes = corpus.bytes();
  ojson sources = ojson::array();
  for (const Source& s : corpus.sources())
    sources.push_back({{"path", s.path}, {"format", s.jsonl ? "jsonl" : "text"}, {"documents", s.documents},
                       {"bytes", s.bytes}});
  const SplitPoint& sp = td.split;
  ojson split = {
      {"rule", sp.by_document ? "last documents: the document boundary nearest to (1 - val_fraction) of the text bytes"
                              : "one document cut at the line start nearest to (1 - val_fraction) of its bytes"},
      {"val_fraction", a.val_fraction},
      {"boundary", sp.by_document ? ojson{{"kind", "document"}, {"first_val_document", sp.doc}}
                                  : ojson{{"kind", "line"}, {"byte_offset", sp.offset}}},
      {"train", {{"file", "train.bin"}, {"tokens", n_train}, {"bytes", sp.train_bytes},
                 {"documents", sp.by_document ? int64_t(sp.doc) : int64_t(1)}}},
      {"val", {{"file", "val.bin"}, {"tokens", n_val}, {"bytes", sp.val_bytes},
               {"documents", sp.by_document ? int64_t(corpus.docs().size() - sp.doc) : int64_t(1)}}}};
  ojson meta = {{"format", "streamllm-token-data"},
                {"version", 1},
                {"tokenizer", {{"file", "tokenizer.json"}, {"id", "fnv1a64:" + hex64(id)}, {"vocab_size", vocab},
                               {"separator_id", eos}, {"source", a.tokenizer}}},
                {"sources", sources},
                {"documents", corpus.docs().size()},
                {"bytes", bytes},
                {"tokens", n_train + n_val},
                {"split", split},
                {"encoding", {{"chunked", td.chunked}, {"not_chunked_because", td.chunk_note}}}};
  write_file_atomic(meta_path, meta.dump(2) + "\n");  // last: a complete meta.json marks a complete directory

  const double t3 = now();
  const int threads = worker_count(a.threads, size_t(1) << 20);
  std::printf("wrote %s: train %s tokens, val %s tokens (%.2f%%), vocab %lld, %.2f MB of text in %s document%s "
              "from %zu file%s, %.2f bytes/token, %.2f s (tokenizing %.1f MB/s on %d thread%s%s)\n",
              a.out.c_str(), grouped(n_train).c_str(), grouped(n_val).c_str(),
              100.0 * double(n_val) / double(std::max<int64_t>(n_train + n_val, 1)), (long long)vocab,
              double(bytes) / 1e6, grouped(int64_t(corpus.docs().size())).c_str(),
              corpus.docs().size() == 1 ? "" : "s", a.files.size(), a.files.size() == 1 ? "" : "s",
              double(bytes) / double(std::max<int64_t>(n_train + n_val, 1)), t3 - t0,
              double(bytes) / 1e6 / std::max(t2 - t1, 1e-9), threads, threads == 1 ? "" : "s",
              td.chunked ? "" : (", whole documents: " + td.chunk_note).c_str());
  std::fflush(stdout);
  const double got = double(sp.val_bytes) / double(std::max<int64_t>(bytes, 1));
  if (sp.by_document && (got > 2 * a.val_fraction || got < 0.5 * a.val_fraction))
    std::fprintf(stderr,
                 "streamllm: note: the validation set is %.1f%% of the text (asked for %.1f%%): it is whole "
                 "documents, split at the document boundary nearest the split point\n",
                 100 * got, 100 * a.val_fraction);
}

// ---- streamllm tokenizer train ----------------------------------------------------------------------------------

struct TokTrainArgs {
  std::string out, format = "auto", field = "text";
  std::vector<std::string> files;
  int64_t vocab = 0, min_frequency = 0;
  int threads = 0;
  bool no_progress = false;
};

void run_tok_train(const TokTrainArgs& a) {
  const double t0 = now();
  std::error_code ec;
  if (fs::is_directory(a.out, ec)) throw Error(a.out + ": is a directory (give the output file name)");
  BpeTrainOptions bo;
  bo.vocab_size = a.vocab;
  bo.min_frequency = a.min_frequency;
  if (a.vocab < 257 || a.vocab > (int64_t(1) << 24))
    throw Error("--vocab must be in [257, 16777216] (256 bytes + merges + <|endoftext|>), got " +
                std::to_string(a.vocab));
  CorpusOptions co;
  co.format = a.format;
  co.jsonl_field = a.field;
  const Corpus corpus = Corpus::load(a.files, co);
  std::vector<std::string_view> texts;
  for (const Document& d : corpus.docs()) texts.push_back(d.text);

  Bar count_bar("counting words", true, !a.no_progress);
  CountOptions cnt;
  cnt.threads = a.threads;
  cnt.progress = [&count_bar](int64_t d, int64_t t) { count_bar.update(d, t); };
  const std::vector<WordCount> words = count_words(texts, cnt);
  count_bar.finish();
  const double t1 = now();

  Bar merge_bar("merging", false, !a.no_progress);
  bo.progress = [&merge_bar](int64_t d, int64_t t) { merge_bar.update(d, t); };
  const BpeModel m = train_bpe(words, bo);
  merge_bar.finish();
  const double t2 = now();
  write_file_atomic(a.out, bpe_tokenizer_json(m));
  const double t3 = now();

  const int64_t got = m.vocab_size();
  std::printf("trained byte-level BPE: vocab %lld (256 bytes + %lld merged tokens + %s), %zu merges, %s distinct "
              "words from %.2f MB, %.2f s (counting %.2f s, merging %.2f s) -> %s%s\n",
              (long long)got, (long long)(got - 257), m.special.c_str(), m.merges.size(),
              grouped(int64_t(words.size())).c_str(), double(corpus.bytes()) / 1e6, t3 - t0, t1 - t0, t2 - t1,
              a.out.c_str(),
              got < a.vocab ? (a.min_frequency > 0 ? " (stopped early: no pair left above --min-frequency)"
                                                   : " (stopped early: no pair left to merge)")
                            : "");
}

}  // namespace

void register_data(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand(
        "data", "Tokenize text / JSONL files into token shards (train.bin, val.bin) for the trainer");
    auto a = std::make_shared<DataArgs>();
    cmd->add_option("files", a->files, "Input files: text (one document each) or JSONL (one document per line)")
        ->required();
    cmd->add_option("-o,--output", a->out, "Output directory (train.bin, val.bin, tokenizer.json, meta.json)")
        ->required();
    cmd->add_option("--tokenizer", a->tokenizer,
                    "tokenizer.json, or a model (HF directory, .gguf, .h5) whose tokenizer to use")
        ->required();
    cmd->add_option("--val-fraction", a->val_fraction,
                    "Fraction of the corpus, taken from its end, held out as validation (default 0.05)");
    cmd->add_option("--format", a->format, "Input format: auto (JSONL for .jsonl/.ndjson), text or jsonl")
        ->check(CLI::IsMember({"auto", "text", "jsonl"}));
    cmd->add_option("--jsonl-field", a->field, "JSONL field holding the text (default text)");
    cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
    cmd->add_flag("--force", a->force, "Overwrite existing shards in the output directory");
    cmd->add_flag("--no-progress", a->no_progress, "Do not draw the progress bar");
    cmd->callback([a] { run_data(*a); });
  }
  {
    auto* tk = app.add_subcommand("tokenizer", "Tokenizer tools");
    tk->require_subcommand(1);
    auto* cmd = tk->add_subcommand("train", "Train a byte-level BPE tokenizer (GPT-2 style) into tokenizer.json");
    auto a = std::make_shared<TokTrainArgs>();
    cmd->add_option("files", a->files, "Training text: text files or JSONL")->required();
    cmd->add_option("--vocab", a->vocab, "Vocabulary size: 256 bytes + merges + <|endoftext|> (the last id)")
        ->required();
    cmd->add_option("-o,--output", a->out, "Output tokenizer.json (written atomically)")->required();
    cmd->add_option("--min-frequency", a->min_frequency, "Stop when the best pair occurs fewer times (default 0)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--format", a->format, "Input format: auto (JSONL for .jsonl/.ndjson), text or jsonl")
        ->check(CLI::IsMember({"auto", "text", "jsonl"}));
    cmd->add_option("--jsonl-field", a->field, "JSONL field holding the text (default text)");
    cmd->add_option("-t,--threads", a->threads, "Threads for counting (default: all cores)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--no-progress", a->no_progress, "Do not draw the progress bars");
    cmd->callback([a] { run_tok_train(*a); });
  }
}

}  // namespace sllm::cli
