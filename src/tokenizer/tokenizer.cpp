// streamllm: public tokenizer API and the streaming decoder. The pipeline itself lives in pipeline.cpp (encode),
// decode.cpp and load_json.cpp.
#include "tokenizer/tokenizer.h"

#include <algorithm>  // std::find
#include <fstream>    // std::ifstream

#include "core/error.h"  // Error
#include "tokenizer/pipeline.h"

namespace sllm {

namespace {

constexpr std::streamoff kMaxTokenizerJson = std::streamoff(1) << 30;  // real files are < 20 MB

// StreamDecoder::push: relax holding after this many held ids, never hold more than kMaxPending, and look at most
// kMaxContext ids back for a context.
constexpr size_t kRelaxAfter = 64;
constexpr size_t kMaxPending = 1024;
constexpr size_t kMaxContext = 32;

// Names under which families spell their beginning / end of text tokens.
const char* const kBosNames[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|endoftext|>"};
const char* const kEosNames[] = {"</s>", "<|endoftext|>", "<|im_end|>", "<|end_of_text|>", "<eos>", "<|eot_id|>"};
const char* const kStopNames[] = {"</s>",       "<|endoftext|>", "<|im_end|>", "<|end_of_text|>", "<eos>",
                                  "<|eot_id|>", "<|end|>",       "<|eom_id|>", "<end_of_turn>"};

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const tok::Impl> impl) : impl_(std::move(impl)) {
  bos_id_ = impl_->bos_id;
  eos_id_ = impl_->eos_id;
}

Tokenizer Tokenizer::from_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(path + ": cannot open tokenizer file");
  const std::streamoff size = f.tellg();
  if (size < 0) throw Error(path + ": cannot read tokenizer file");
  if (size > kMaxTokenizerJson) throw Error(path + ": tokenizer file larger than 1 GiB");
  std::string text(size_t(size), '\0');
  f.seekg(0);
  if (!f.read(text.data(), size)) throw Error(path + ": short read");
  return from_json_string(text, path);
}

Tokenizer Tokenizer::from_json_string(const std::string& json, const std::string& name_for_errors) {
  std::unique_ptr<tok::Impl> impl = tok::load_tokenizer_json(json, name_for_errors);
  tok::Impl& t = *impl;
  // bos / eos: the special tokens the post-processor wraps the text in, else well-known names.
  for (const tok::PostProcessorOp& op : t.post_processor) {
    if (op.kind == tok::PostProcessorOp::kClsSep) {
      t.bos_id = op.cls;
      t.eos_id = op.sep;
    } else {
      bool seen_seq = false;
      for (const auto& piece : op.single) {
        if (piece.is_sequence)
          seen_seq = true;
        else if (!piece.ids.empty() && !seen_seq && t.bos_id < 0)
          t.bos_id = piece.ids.front();
        else if (!piece.ids.empty() && seen_seq && t.eos_id < 0)
          t.eos_id = piece.ids.front();
      }
    }
  }
  auto lookup = [&](const char* name) -> int32_t {
    auto it = t.added_by_content.find(std::string_view(name));
    if (it != t.added_by_content.end()) return t.added[size_t(it->second)].id;
    return t.model->token_to_id(name).value_or(-1);
  };
  for (const char* n : kBosNames)
    if (t.bos_id < 0) t.bos_id = lookup(n);
  for (const char* n : kEosNames)
    if (t.eos_id < 0) t.eos_id = lookup(n);
  return Tokenizer(std::shared_ptr<const tok::Impl>(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  impl_->encode(text, add_special, ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  return impl_->decode(ids.data(), ids.size(), skip_special);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::vector<int32_t> Tokenizer::stop_ids() const {
  std::vector<int32_t> r;
  if (eos_id_ >= 0) r.push_back(eos_id_);
  for (const char* n : kStopNames) {
    auto it = impl_->added_by_content.find(std::string_view(n));
    if (it == impl_->added_by_content.end()) continue;
    const tok::AddedToken& a = impl_->added[size_t(it->second)];
    if (a.special && std::find(r.begin(), r.end(), a.id) == r.end()) r.push_back(a.id);
  }
  return r;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view tok) const {
  auto it = impl_->added_by_content.find(tok);
  if (it != impl_->added_by_content.end()) return impl_->added[size_t(it->second)].id;
  return impl_->model->token_to_id(tok);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  const std::string* t = impl_->id_to_token(id);
  if (!t) return std::nullopt;
  return *t;
}

bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->added_index_by_id.size()) return false;
  const int32_t k = impl_->added_index_by_id[size_t(id)];
  return k >= 0 && impl_->added[size_t(k)].special;
}

// ------------------------------------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : impl_(tok.impl_), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  pending_.push_back(id);
  std::vector<int32_t> window = context_;
  window.insert(window.end(), pending_.begin(), pending_.end());
  tok::DecodeTail tail;
  std::string text = impl_->decode(window.data(), window.size(), skip_special_, &tail);
  // Hold text while more ids could still change its end. After kRelaxAfter held ids (a long run of <0xXX> byte
  // tokens) we only wait for the current character to complete: otherwise a long run of byte-fallback CJK would
  // print nothing until the run ends. Only an invalid byte joining such a run later can then make the stream differ
  // from decode() (which prints the whole invalid run as U+FFFD).
  if (tail.incomplete || (tail.unstable && pending_.size() < kRelaxAfter)) {
    if (pending_.size() < kMaxPending) return {};
  }

  std::string out;
  if (text.compare(0, context_text_.size(), context_text_) == 0) {
    out = text.substr(context_text_.size());
  } else {  // only after a relaxed emit; print what is new rather than repeat text
    size_t k = 0;
    while (k < text.size() && k < context_text_.size() && text[k] == context_text_[k]) ++k;
    while (k > 0 && (uint8_t(text[k]) & 0xC0) == 0x80) --k;
    out = text.substr(k);
  }
  if (out.empty()) {
    // Ids that print nothing (skipped specials, empty tokens) do not influence what follows a non-empty context.
    if (!context_text_.empty() || pending_.size() >= kMaxPending) pending_.clear();
    return out;
  }
  // New context: the shortest tail of the window that decodes, on its own, to a non-empty end of `text` (so it
  // does not start inside a character or swallow a stripped leading space).
  const size_t max_k = std::min(window.size(), kMaxContext);
  for (size_t k = 1; k <= max_k; ++k) {
    std::string t = impl_->decode(window.data() + window.size() - k, k, skip_special_);
    const bool ends_text = t.size() <= text.size() && text.compare(text.size() - t.size(), t.size(), t) == 0;
    if ((!t.empty() && ends_text) || k == max_k) {
      context_.assign(window.end() - long(k), window.end());
      context_text_ = std::move(t);
      break;
    }
  }
  pending_.clear();
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!pending_.empty()) {
    std::vector<int32_t> window = context_;
    window.insert(window.end(), pending_.begin(), pending_.end());
    std::string text = impl_->decode(window.data(), window.size(), skip_special_);
    if (text.compare(0, context_text_.size(), context_text_) == 0) out = text.substr(context_text_.size());
  }
  context_.clear();
  context_text_.clear();
  pending_.clear();
  return out;
}

}  // namespace sllm
