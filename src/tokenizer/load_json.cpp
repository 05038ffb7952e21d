// streamllm: tokenizer.json -> tokenizer pipeline (see pipeline.h).
//
// The file is untrusted: every field is type-checked and every error is one sllm::Error line naming the file and
// the JSON path ("tokenizer.json: model.merges[17]: expected \"a b\" pair"). Components we do not implement are
// refused by name rather than silently ignored, since a missing normalizer would change the ids. Only the fields
// that change ids or text are read; offsets-only options (trim_offsets) and truncation/padding are ignored.
#include <algorithm>          // std::sort, std::max
#include <nlohmann/json.hpp>  // nlohmann::json

#include "core/error.h"  // Error
#include "tokenizer/pipeline.h"
#include "tokenizer/unicode.h"  // utf8_decode

namespace sllm::tok {

namespace {

using json = nlohmann::json;

constexpr int kMaxNesting = 16;  // Sequence inside Sequence ...

class Loader {
 public:
  explicit Loader(const std::string& name) : name_(name) {}

  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw Error(name_ + ": " + path + ": " + msg);
  }

  static std::string type_name(const json& v) { return v.type_name(); }

  const json& object(const json& v, const std::string& path) const {
    if (!v.is_object()) fail(path, "expected an object, got " + type_name(v));
    return v;
  }
  const json& array(const json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, "expected an array, got " + type_name(v));
    return v;
  }
  // Field `key` of object `o`, or nullptr when absent or null.
  static const json* find(const json& o, const char* key) {
    auto it = o.find(key);
    return (it == o.end() || it->is_null()) ? nullptr : &*it;
  }
  const json& required(const json& o, const std::string& path, const char* key) const {
    const json* v = find(o, key);
    if (!v) fail(path.empty() ? std::string(key) : path + "." + key, "missing");
    return *v;
  }
  std::string str(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string, got " + type_name(v));
    return v.get<std::string>();
  }
  std::string str_field(const json& o, const std::string& path, const char* key) const {
    return str(required(o, path, key), path + "." + key);
  }
  std::optional<std::string> opt_str(const json& o, const std::string& path, const char* key) const {
    const json* v = find(o, key);
    if (!v) return std::nullopt;
    return str(*v, path + "." + key);
  }
  bool boolean(const json& o, const std::string& path, const char* key, bool dflt) const {
    const json* v = find(o, key);
    if (!v) return dflt;
    if (!v->is_boolean()) fail(path + "." + key, "expected a boolean, got " + type_name(*v));
    return v->get<bool>();
  }
  int64_t integer(const json& v, const std::string& path, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) fail(path, "expected an integer, got " + type_name(v));
    const int64_t x =
        v.is_number_unsigned() ? int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(INT64_MAX))) : v.get<int64_t>();
    if (x < lo || x > hi)
      fail(path,
           "value " + std::to_string(x) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  // A string holding exactly one character (Metaspace replacement, Strip content).
  uint32_t one_char(const json& o, const std::string& path, const char* key) const {
    const std::string s = str_field(o, path, key);
    uint32_t cp = 0;
    if (s.empty() || utf8_decode(s, 0, &cp) != s.size()) fail(path + "." + key, "expected a single character");
    return cp;
  }
  std::string type(const json& o, const std::string& path) const {
    object(o, path);
    return str_field(o, path, "type");
  }
  std::shared_ptr<const Regex> regex(const std::string& pattern, const std::string& path) const {
    return Regex::compile(pattern, name_ + ": " + path);
  }
  // {"String": "..."} or {"Regex": "..."}.
  Pattern pattern(const json& o, const std::string& path) const {
    const json& p = object(required(o, path, "pattern"), path + ".pattern");
    Pattern r;
    if (const json* s = find(p, "String")) {
      r.literal = str(*s, path + ".pattern.String");
      if (r.literal.empty()) fail(path + ".pattern.String", "empty pattern");
      r.regex = Regex::literal(r.literal, name_ + ": " + path + ".pattern");
    } else if (const json* re = find(p, "Regex")) {
      r.is_literal = false;
      r.regex = regex(str(*re, path + ".pattern.Regex"), path + ".pattern.Regex");
    } else {
      fail(path + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    }
    return r;
  }
  PrependScheme prepend_scheme(const json& o, const std::string& path) const {
    PrependScheme s = PrependScheme::kAlways;
    if (auto v = opt_str(o, path, "prepend_scheme")) {
      if (*v == "always")
        s = PrependScheme::kAlways;
      else if (*v == "first")
        s = PrependScheme::kFirst;
      else if (*v == "never")
        s = PrependScheme::kNever;
      else
        fail(path + ".prepend_scheme", "expected \"always\", \"first\" or \"never\", got \"" + *v + "\"");
    }
    // Older files: add_prefix_space=false means "never" (HF refuses a contradicting prepend_scheme).
    if (!boolean(o, path, "add_prefix_space", true)) {
      if (find(o, "prepend_scheme") && s != PrependScheme::kNever)
        fail(path + ".add_prefix_space", "false contradicts prepend_scheme");
      s = PrependScheme::kNever;
    }
    return s;
  }

  void normalizers(const json& o, const std::string& path, std::vector<NormalizerOp>& out, int depth) const {
    if (depth > kMaxNesting) fail(path, "nested too deeply");
    const std::string t = type(o, path);
    if (t == "Sequence") {
      const json& list = array(required(o, path, "normalizers"), path + ".normalizers");
      for (size_t i = 0; i < list.size(); ++i)
        normalizers(list[i], path + ".normalizers[" + std::to_string(i) + "]", out, depth + 1);
    } else if (t == "Prepend") {
      out.push_back({NormalizerOp::kPrepend, str_field(o, path, "prepend"), {}});
    } else if (t == "Replace") {
      out.push_back({NormalizerOp::kReplace, str_field(o, path, "content"), pattern(o, path)});
    } else if (t == "Strip") {
      NormalizerOp op{NormalizerOp::kStrip, {}, {}};
      op.left = boolean(o, path, "strip_left", false);
      op.right = boolean(o, path, "strip_right", false);
      out.push_back(op);
    } else if (t == "NFC") {
      out.push_back({NormalizerOp::kNfc, {}, {}});
    } else {
      fail(path + ".type", "unsupported normalizer \"" + t + "\" (supported: Sequence, Prepend, Replace, Strip, NFC)");
    }
  }

  void pre_tokenizers(const json& o, const std::string& path, std::vector<PreTokenizerOp>& out, int depth) const {
    if (depth > kMaxNesting) fail(path, "nested too deeply");
    const std::string t = type(o, path);
    PreTokenizerOp op{};
    if (t == "Sequence") {
      const json& list = array(required(o, path, "pretokenizers"), path + ".pretokenizers");
      for (size_t i = 0; i < list.size(); ++i)
        pre_tokenizers(list[i], path + ".pretokenizers[" + std::to_string(i) + "]", out, depth + 1);
      return;
    } else if (t == "ByteLevel") {
      op.kind = PreTokenizerOp::kByteLevel;
      op.add_prefix_space = boolean(o, path, "add_prefix_space", true);
      op.use_regex = boolean(o, path, "use_regex", true);
      op.regex = gpt2_regex();
    } else if (t == "Split") {
      op.kind = PreTokenizerOp::kSplit;
      Pattern p = pattern(o, path);
      op.regex = p.regex;  // String patterns are escaped into a regex, exactly as HF does
      op.behavior = behavior(str_field(o, path, "behavior"), path + ".behavior");
      op.invert = boolean(o, path, "invert", false);
    } else if (t == "Digits") {
      op.kind = PreTokenizerOp::kDigits;
      op.behavior =
          boolean(o, path, "individual_digits", false) ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
      static const std::shared_ptr<const Regex> digit = Regex::compile("\\p{N}", "Digits");
      op.regex = digit;
    } else if (t == "Metaspace") {
      op.kind = PreTokenizerOp::kMetaspace;
      op.replacement = one_char(o, path, "replacement");
      op.prepend = prepend_scheme(o, path);
      op.split = boolean(o, path, "split", true);
    } else if (t == "WhitespaceSplit") {
      op.kind = PreTokenizerOp::kWhitespaceSplit;
    } else {
      fail(path + ".type", "unsupported pre-tokenizer \"" + t +
                               "\" (supported: Sequence, ByteLevel, Split, Digits, Metaspace, WhitespaceSplit)");
    }
    out.push_back(op);
  }

  SplitBehavior behavior(const std::string& b, const std::string& path) const {
    if (b == "Removed") return SplitBehavior::kRemoved;
    if (b == "Isolated") return SplitBehavior::kIsolated;
    if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
    if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
    if (b == "Contiguous") return SplitBehavior::kContiguous;
    fail(path, "unknown split behavior \"" + b + "\"");
  }

  void decoders(const json& o, const std::string& path, std::vector<DecoderOp>& out, int depth) const {
    if (depth > kMaxNesting) fail(path, "nested too deeply");
    const std::string t = type(o, path);
    DecoderOp op{};
    if (t == "Sequence") {
      const json& list = array(required(o, path, "decoders"), path + ".decoders");
      for (size_t i = 0; i < list.size(); ++i)
        decoders(list[i], path + ".decoders[" + std::to_string(i) + "]", out, depth + 1);
      return;
    } else if (t == "ByteLevel") {
      op.kind = DecoderOp::kByteLevel;
    } else if (t == "ByteFallback") {
      op.kind = DecoderOp::kByteFallback;
    } else if (t == "Fuse") {
      op.kind = DecoderOp::kFuse;
    } else if (t == "Metaspace") {
      op.kind = DecoderOp::kMetaspace;
      op.ch = one_char(o, path, "replacement");
      op.prepend = prepend_scheme(o, path);
    } else if (t == "Replace") {
      op.kind = DecoderOp::kReplace;
      op.pattern = pattern(o, path);
      op.content = str_field(o, path, "content");
    } else if (t == "Strip") {
      op.kind = DecoderOp::kStrip;
      op.ch = one_char(o, path, "content");
      op.start = size_t(integer(required(o, path, "start"), path + ".start", 0, INT32_MAX));
      op.stop = size_t(integer(required(o, path, "stop"), path + ".stop", 0, INT32_MAX));
    } else {
      fail(path + ".type", "unsupported decoder \"" + t +
                               "\" (supported: Sequence, ByteLevel, ByteFallback, Fuse, Metaspace, Replace, Strip)");
    }
    out.push_back(op);
  }

  // ["<s>", 0] as used by RobertaProcessing / BertProcessing.
  int32_t token_pair_id(const json& o, const std::string& path, const char* key) const {
    const json& p = array(required(o, path, key), path + "." + key);
    if (p.size() != 2) fail(path + "." + key, "expected [token, id]");
    str(p[0], path + "." + key + "[0]");
    return int32_t(integer(p[1], path + "." + key + "[1]", 0, INT32_MAX));
  }

  void post_processors(const json& o, const std::string& path, std::vector<PostProcessorOp>& out, int depth) const {
    if (depth > kMaxNesting) fail(path, "nested too deeply");
    const std::string t = type(o, path);
    if (t == "Sequence") {
      const json& list = array(required(o, path, "processors"), path + ".processors");
      for (size_t i = 0; i < list.size(); ++i)
        post_processors(list[i], path + ".processors[" + std::to_string(i) + "]", out, depth + 1);
    } else if (t == "ByteLevel") {
      // Offsets only.
    } else if (t == "RobertaProcessing" || t == "BertProcessing") {
      PostProcessorOp op{PostProcessorOp::kClsSep, {}};
      op.cls = token_pair_id(o, path, "cls");
      op.sep = token_pair_id(o, path, "sep");
      out.push_back(op);
    } else if (t == "TemplateProcessing") {
      out.push_back(template_processing(o, path));
    } else {
      fail(path + ".type", "unsupported post-processor \"" + t +
                               "\" (supported: Sequence, ByteLevel, TemplateProcessing, RobertaProcessing, "
                               "BertProcessing)");
    }
  }

  PostProcessorOp template_processing(const json& o, const std::string& path) const {
    PostProcessorOp op{PostProcessorOp::kTemplate, {}};
    const json& specials = object(required(o, path, "special_tokens"), path + ".special_tokens");
    const json& single = array(required(o, path, "single"), path + ".single");
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string pp = path + ".single[" + std::to_string(i) + "]";
      const json& piece = object(single[i], pp);
      if (const json* seq = find(piece, "Sequence")) {
        const std::string id = str_field(object(*seq, pp + ".Sequence"), pp + ".Sequence", "id");
        if (id != "A") fail(pp + ".Sequence.id", "a single-sequence template can only use $A, got \"" + id + "\"");
        op.single.push_back({true, {}});
      } else if (const json* sp = find(piece, "SpecialToken")) {
        const std::string id = str_field(object(*sp, pp + ".SpecialToken"), pp + ".SpecialToken", "id");
        auto it = specials.find(id);
        if (it == specials.end()) fail(pp + ".SpecialToken.id", "\"" + id + "\" is not in special_tokens");
        const std::string sp_path = path + ".special_tokens[\"" + id + "\"]";
        const json& ids = array(required(object(*it, sp_path), sp_path, "ids"), sp_path + ".ids");
        PostProcessorOp::Piece p{false, {}};
        for (size_t k = 0; k < ids.size(); ++k)
          p.ids.push_back(int32_t(integer(ids[k], sp_path + ".ids[" + std::to_string(k) + "]", 0, INT32_MAX)));
        op.single.push_back(std::move(p));
      } else {
        fail(pp, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    return op;
  }

  BpeConfig model(const json& o, const std::string& path) const {
    object(o, path);
    const json* t = find(o, "type");
    // HF guesses the type of an untyped (old) model from its fields; BPE is the one with merges.
    if (!t && !find(o, "merges"))
      fail(path + ".type", "missing (only BPE models, with vocab and merges, are supported)");
    const std::string type_str = t ? str(*t, path + ".type") : std::string("BPE");
    if (type_str != "BPE") fail(path + ".type", "unsupported model type \"" + type_str + "\" (only BPE is supported)");
    BpeConfig c;
    if (const json* d = find(o, "dropout")) {
      if (!d->is_number()) fail(path + ".dropout", "expected a number, got " + type_name(*d));
      const double p = d->get<double>();
      if (!(p >= 0.0 && p <= 1.0)) fail(path + ".dropout", "must be in [0, 1]");
      if (p > 0.0) fail(path + ".dropout", "BPE dropout is not supported (it makes encoding random)");
    }
    c.unk_token = opt_str(o, path, "unk_token");
    c.continuing_subword_prefix = opt_str(o, path, "continuing_subword_prefix");
    c.end_of_word_suffix = opt_str(o, path, "end_of_word_suffix");
    c.fuse_unk = boolean(o, path, "fuse_unk", false);
    c.byte_fallback = boolean(o, path, "byte_fallback", false);
    c.ignore_merges = boolean(o, path, "ignore_merges", false);

    const json& vocab = object(required(o, path, "vocab"), path + ".vocab");
    c.vocab.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
      c.vocab.emplace_back(it.key(), int32_t(integer(it.value(), path + ".vocab[\"" + it.key() + "\"]", 0, INT32_MAX)));

    const json& merges = array(required(o, path, "merges"), path + ".merges");
    c.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string mp = path + ".merges[" + std::to_string(i) + "]";
      const json& m = merges[i];
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        if (s.rfind("#version", 0) == 0) continue;  // merges.txt header kept by some converters
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) fail(mp, "expected \"a b\" pair");
        c.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        c.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail(mp, "expected \"a b\" pair or [\"a\", \"b\"]");
      }
    }
    return c;
  }

 private:
  std::string name_;
};

// Indices of tokens in `which`, bucketed by first byte, longest form first (leftmost-longest matching).
void build_matcher(const Impl& t, bool normalized, AddedMatcher& m) {
  for (size_t i = 0; i < t.added.size(); ++i) {
    const AddedToken& a = t.added[i];
    if (a.normalized != normalized || a.form.empty()) continue;
    // Two tokens with the same form: the first one wins (HF refuses to build such a trie at all).
    auto& b = m.bucket[uint8_t(a.form[0])];
    bool dup = false;
    for (int32_t k : b) dup |= t.added[size_t(k)].form == a.form;
    if (dup) continue;
    b.push_back(int32_t(i));
    m.empty = false;
  }
  for (auto& b : m.bucket)
    std::stable_sort(b.begin(), b.end(), [&](int32_t x, int32_t y) {
      return t.added[size_t(x)].form.size() > t.added[size_t(y)].form.size();
    });
}

}  // namespace

std::unique_ptr<Impl> load_tokenizer_json(const std::string& text, const std::string& name) {
  Loader L(name);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(name + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(name + ": expected a JSON object at the top level, got " + root.type_name());

  auto t = std::make_unique<Impl>();
  t->name = name;
  try {
    t->model = std::make_unique<Bpe>(L.model(L.required(root, "", "model"), "model"), name + ": model");
    if (const json* n = Loader::find(root, "normalizer")) L.normalizers(*n, "normalizer", t->normalizer, 0);
    if (const json* p = Loader::find(root, "pre_tokenizer")) L.pre_tokenizers(*p, "pre_tokenizer", t->pre_tokenizer, 0);
    if (const json* p = Loader::find(root, "post_processor"))
      L.post_processors(*p, "post_processor", t->post_processor, 0);
    if (const json* d = Loader::find(root, "decoder")) {
      t->has_decoder = true;
      L.decoders(*d, "decoder", t->decoder, 0);
    }

    // Added tokens. Like HF (AddedVocabulary::add_tokens), the id comes from the model vocab when the content is
    // there, else the next free id after the vocab; the "id" field of the file is not trusted.
    const int64_t model_size = int64_t(t->model->size());
    int64_t max_id = t->model->max_id();
    if (const json* at = Loader::find(root, "added_tokens")) {
      L.array(*at, "added_tokens");
      int64_t next_id = model_size;
      for (size_t i = 0; i < at->size(); ++i) {
        const std::string ap = "added_tokens[" + std::to_string(i) + "]";
        const json& o = L.object((*at)[i], ap);
        if (const json* id = Loader::find(o, "id")) L.integer(*id, ap + ".id", 0, INT32_MAX);
        AddedToken a;
        a.content = L.str_field(o, ap, "content");
        if (a.content.empty()) continue;  // HF ignores empty tokens
        a.special = L.boolean(o, ap, "special", false);
        a.single_word = L.boolean(o, ap, "single_word", false);
        a.lstrip = L.boolean(o, ap, "lstrip", false);
        a.rstrip = L.boolean(o, ap, "rstrip", false);
        a.normalized = L.boolean(o, ap, "normalized", !a.special);
        a.form = a.normalized ? t->normalize(a.content) : a.content;
        if (a.form.empty()) a.form = a.content;
        auto prev = t->added_by_content.find(a.content);
        if (prev != t->added_by_content.end()) {
          a.id = t->added[size_t(prev->second)].id;  // same content again: update its properties
          t->added[size_t(prev->second)] = a;
        } else {
          if (auto mid = t->model->token_to_id(a.content)) {
            a.id = *mid;
          } else {
            if (next_id > INT32_MAX) L.fail(ap, "too many added tokens");
            a.id = int32_t(next_id++);
          }
          t->added_by_content.emplace(a.content, int32_t(t->added.size()));
          t->added.push_back(a);
        }
        max_id = std::max<int64_t>(max_id, a.id);
      }
    }
    t->vocab_size = int32_t(max_id + 1);
    t->added_index_by_id.assign(size_t(t->vocab_size), -1);
    for (size_t i = 0; i < t->added.size(); ++i) {
      t->added_index_by_id[size_t(t->added[i].id)] = int32_t(i);
      if (t->added[i].special) t->special_contents.emplace(t->added[i].content, true);
    }
    build_matcher(*t, false, t->raw_matcher);
    build_matcher(*t, true, t->normalized_matcher);
  } catch (const json::exception& e) {  // should not happen after the checks above, but never escape as non-Error
    throw Error(name + ": " + e.what());
  }

  // \w as in Rust's regex crate (Alphabetic, marks, decimal digits, connector punctuation, joiners).
  try {
    t->word_char = Regex::compile("^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]", "single_word");
  } catch (const Error&) {
    t->word_char = Regex::compile("^[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]", "single_word");
  }
  return t;
}

}  // namespace sllm::tok
