// streamllm trainer: token data. Token shards on disk (the files the trainer reads), the text corpus they are made
// from (text files and JSONL), multi-threaded encoding of that corpus, and the train / validation split.
//
// Token shard = a fixed 64-byte little-endian header, then the tokens as u16 (vocab <= 65536) or u32, little
// endian. docs/format.md has the byte layout. Shards are written atomically (temporary file, fsync, rename) and
// read through a memory map; every header field is checked on open, every token id on read, and each refusal is
// one sllm::Error naming the file and the field.
//
// Parallel encoding splits a document only where splitting provably cannot change the tokens: at a "chunk
// boundary" p (a line start, see is_chunk_boundary) and only for tokenizer pipelines whose every stage is known
// to respect such boundaries (chunk_policy). Everything else is encoded one whole document per task.
#pragma once
#include <cstdint>      // int32_t, int64_t, uint64_t
#include <functional>   // std::function
#include <memory>       // std::unique_ptr
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <vector>       // std::vector

#include "formats/mapped_file.h"  // MappedFile
#include "tokenizer/tokenizer.h"  // Tokenizer

namespace sllm::train {

// ---- token shards -------------------------------------------------------------------------------------------------

constexpr char kShardMagic[8] = {'S', 'L', 'L', 'M', 'T', 'O', 'K', '\0'};
constexpr uint32_t kShardVersion = 1;
constexpr uint32_t kShardHeaderBytes = 64;

// 64-bit FNV-1a of the tokenizer.json text, byte for byte: identifies the tokenizer a shard was encoded with.
uint64_t tokenizer_id(const std::string& tokenizer_json_text);

class TokenShard {  // read-only, memory-mapped
 public:
  // Maps the file and checks the header (magic, version, header size, bytes per token, vocab size, token count
  // against the file size). Throws sllm::Error "<path>: <field>: <what>".
  static TokenShard open(const std::string& path);

  int64_t size() const { return count_; }  // number of tokens
  int64_t vocab_size() const { return vocab_; }
  uint64_t tokenizer_id() const { return tok_id_; }
  int bytes_per_token() const { return bpt_; }
  const std::string& path() const { return map_.path(); }

  // Tokens [pos, pos+n) into out. Throws when the range leaves the shard or a token id is >= vocab_size().
  void read(int64_t pos, int64_t n, int32_t* out) const;
  std::vector<int32_t> read_all() const;

 private:
  MappedFile map_;
  int64_t count_ = 0, vocab_ = 0;
  uint64_t tok_id_ = 0;
  int bpt_ = 2;
  uint32_t header_ = kShardHeaderBytes;  // byte offset of the first token
};

// Writes a shard atomically: tokens must lie in [0, vocab_size); 2 bytes per token when vocab_size <= 65536.
void write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size,
                       uint64_t tok_id);

// Writes bytes to path atomically (temporary file in the same directory, fsync, rename, directory fsync).
void write_file_atomic(const std::string& path, std::string_view bytes);

// ---- the corpus -------------------------------------------------------------------------------------------------

// How input files are read. A text file is one document; a JSONL file holds one document per non-blank line, a
// JSON object whose string field `jsonl_field` is the text. "auto" picks JSONL for .jsonl / .ndjson names.
struct CorpusOptions {
  std::string format = "auto";  // auto | text | jsonl
  std::string jsonl_field = "text";
};

struct Document {
  std::string_view text;  // never empty (empty documents are dropped)
  int32_t source = 0;     // index into Corpus::sources()
  int64_t line = 0;       // 1-based JSONL line; 0 for a text file
};

struct Source {
  std::string path;
  bool jsonl = false;
  int64_t documents = 0, bytes = 0;  // bytes: the documents' text (for JSONL the decoded strings)
};

class Corpus {
 public:
  // Reads every file (text files are memory-mapped). Throws on a missing file or a bad JSONL line ("file:line").
  static Corpus load(const std::vector<std::string>& files, const CorpusOptions& opt = {});
  // A corpus over caller-owned texts (tests): one document per non-empty string, source "<memory>".
  static Corpus from_texts(const std::vector<std::string_view>& texts);

  const std::vector<Document>& docs() const { return docs_; }
  const std::vector<Source>& sources() const { return sources_; }
  int64_t bytes() const;  // total text bytes over all documents

 private:
  std::vector<MappedFile> maps_;
  std::vector<std::unique_ptr<std::string>> owned_;  // decoded JSONL texts (stable addresses)
  std::vector<Document> docs_;
  std::vector<Source> sources_;
};

// ---- chunked encoding ---------------------------------------------------------------------------------------------

// p is a chunk boundary of text when 2 <= p < size, text[p-1] == '\n', and text[p-2] and text[p] are printable
// ASCII, not space ('!'..'~'): a line start between two non-blank lines. For the GPT-2 and Llama-3 pre-tokenizer
// regexes, every match ends at or before p-1 or p, the '\n' is a match of its own in both the whole text and the
// left part, and matching from p sees the same text with no look-behind: so the pieces, hence the tokens, of
// text are exactly those of text[0,p) followed by those of text[p,size).
bool is_chunk_boundary(std::string_view text, size_t p);
// Cut points (chunk boundaries, increasing, excluding 0 and size) that split text into pieces of about
// target_bytes (a piece may be longer when no boundary is near).
std::vector<size_t> chunk_cuts(std::string_view text, size_t target_bytes);

// Whether a tokenizer's pipeline respects chunk boundaries: no normalizer or NFC only; pre-tokenizers among
// ByteLevel (no prefix space), Digits and Split with the GPT-2 or Llama-3 regex (isolated, not inverted), one of
// which really splits with its regex (else a run of lines is one word that BPE may merge across); a BPE model;
// no added token containing '\n' and none with lstrip. `reason` says which part failed.
struct ChunkPolicy {
  bool chunked = false;
  std::string reason;  // why not (empty when chunked)
};
ChunkPolicy chunk_policy(const std::string& tokenizer_json);

struct EncodeOptions {
  int threads = 0;                      // 0: all cores
  size_t chunk_bytes = size_t(256) << 10;  // target piece size when chunking
  bool chunked = true;                  // split long texts at chunk boundaries (only if the pipeline allows)
  // The tokenizer's JSON text. When given and the texts are large (>= 8x the JSON), every worker but the first
  // encodes with its own copy loaded from it: a Tokenizer's word cache is shared by its copies behind one mutex,
  // which busy threads contend for, while a copy costs a load and a cold cache (not worth it for small inputs).
  std::string_view tokenizer_json;
  std::function<void(int64_t done_bytes, int64_t total_bytes)> progress;  // called under a lock, any thread
};

// Encodes each text on its own (no special tokens added), in parallel; result[i] = tokenizer.encode(texts[i]).
std::vector<std::vector<int32_t>> encode_texts(const Tokenizer& tok, const std::vector<std::string_view>& texts,
                                               const EncodeOptions& opt);

// The number of workers parallel_tasks uses for n tasks: min(threads (0: all cores), n), at least 1.
int worker_count(int threads, size_t n);
// Runs fn(task, worker) for task 0..n-1 on worker_count(threads, n) threads; tasks are handed out in order as
// workers free up, and worker < worker_count says which thread runs it (for per-thread state). The first exception
// thrown by a task stops the handing out and is rethrown here.
void parallel_tasks(size_t n, int threads, const std::function<void(size_t task, int worker)>& fn);

// ---- the split --------------------------------------------------------------------------------------------------

// The validation set is the last part of the corpus (documents in input order), contiguous and disjoint from the
// training set. Several documents: the split is the document boundary nearest (in text bytes) to
// (1 - val_fraction) of the corpus, with at least one document on each side. One document: the chunk boundary
// nearest that point (else the nearest line start); then the training part ends without an end-of-text token.
struct SplitPoint {
  bool by_document = true;
  size_t doc = 0;     // first validation document (by_document) or the document that is cut
  size_t offset = 0;  // byte offset of the cut inside docs[doc] (0 when by_document)
  int64_t train_bytes = 0, val_bytes = 0;
};
SplitPoint plan_split(const Corpus& corpus, double val_fraction);

struct TokenData {
  std::vector<int32_t> train, val;
  SplitPoint split;
  bool chunked = false;  // the pipeline allowed chunked encoding (and it was asked for)
  std::string chunk_note;
};

// Encodes the corpus with `eos` after every document and splits it as plan_split says.
TokenData make_token_data(const Corpus& corpus, const Tokenizer& tok, const std::string& tokenizer_json, int32_t eos,
                          double val_fraction, const EncodeOptions& opt);

// The id appended after each document: <|endoftext|> if the tokenizer has it, else its EOS; throws if neither.
int32_t document_separator(const Tokenizer& tok, const std::string& name_for_errors);

}  // namespace sllm::train
