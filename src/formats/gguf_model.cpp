// GGUF -> ModelBundle for the `llama` architecture: config from llama.* metadata, weights through the weight visitor
// (so names and shapes are checked exactly as for HF directories), tokenizer from tokenizer.ggml.*.
//
// Q/K rows. llama.cpp's HF->GGUF converter permutes the rows of attn_q / attn_k inside every head so that ggml's
// interleaved-pair RoPE (rotating dims 2i, 2i+1) computes what HF's rotate-half RoPE (dims i, i + d/2) computes on
// the original rows: GGUF row h*d + 2i + j holds HF row h*d + j*d/2 + i (j in {0, 1}). We undo that at load, so the
// weights equal HF's, the model runs with rotate-half RoPE (`rope_interleaved = false`) on the same well-tested
// path as HF checkpoints, and a GGUF model written back out (native files) is indistinguishable from its HF
// original. Keeping the permuted rows with `rope_interleaved = true` would be exact too; un-permuting costs one row
// copy per head at load and nothing afterwards. The permutation moves whole rows, and quantisation blocks never span
// rows, so it is equally valid for weights kept quantised later.
//
// Tokenizer. The metadata is turned into an HF tokenizer.json text (stored in ModelBundle::tokenizer_json, which
// native files keep) equivalent to the one transformers builds from the same file (integrations/gguf/
// gguf_tokenizer_mapping.py): byte-level BPE for "gpt2", with the pre-tokenizer llama.cpp assigns to
// `tokenizer.ggml.pre`; SentencePiece-style BPE with byte fallback for "llama", with merges derived from the scores
// the way transformers' generate_merges() derives them.
#include <algorithm>          // std::stable_sort, std::min
#include <cstdint>            // uintptr_t
#include <cstring>            // std::memcpy, std::strlen
#include <memory>             // std::make_shared
#include <nlohmann/json.hpp>  // nlohmann::json
#include <unordered_map>      // std::unordered_map
#include <vector>             // std::vector

#include "core/error.h"         // Error
#include "formats/gguf.h"       // GgufFile, dequantize
#include "model/bundle.h"       // load_gguf, ModelBundle
#include "tokenizer/unicode.h"  // tok::is_valid_utf8, tok::utf8_append, tok::utf8_decode

namespace sllm {

namespace {

using gguf::GgmlType;
using gguf::GgufFile;
using gguf::TensorInfo;
using json = nlohmann::json;

// ==== Model ====

// HF name (as the weight visitor spells it) -> llama.cpp tensor name; "" when there is none.
std::string gguf_tensor_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const char* const kLayer = "model.layers.";
  if (hf.rfind(kLayer, 0) != 0) return "";
  const size_t a = std::strlen(kLayer), dot = hf.find('.', a);
  if (dot == std::string::npos) return "";
  const std::string idx = hf.substr(a, dot - a);
  const size_t last = hf.rfind('.');
  const std::string module = hf.substr(dot + 1, last - dot - 1), suffix = hf.substr(last);  // ".weight" / ".bias"
  static const std::pair<const char*, const char*> kMap[] = {
      {"input_layernorm", "attn_norm"},      {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},        {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},         {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  for (const auto& [h, g] : kMap)
    if (module == h) return "blk." + idx + "." + g + suffix;
  return "";
}

ModelConfig llama_config(const GgufFile& f) {
  const std::string a = "llama.";
  ModelConfig c;
  c.family = Family::Llama;
  c.model_type = "llama";
  c.hidden = f.get_int(a + "embedding_length", 1, 65536);
  c.n_layers = f.get_int(a + "block_count", 1, 1024);
  c.ffn = f.get_int(a + "feed_forward_length", 1, int64_t(1) << 20);
  c.n_heads = f.get_int(a + "attention.head_count", 1, 1024);
  c.n_kv_heads = f.get_int(a + "attention.head_count_kv", 1, 1024, c.n_heads);
  if (c.hidden % c.n_heads != 0)
    throw Error(f.where("llama.attention.head_count (" + std::to_string(c.n_heads) +
                        ") does not divide llama.embedding_length (" + std::to_string(c.hidden) + ")"));
  c.head_dim = f.get_int(a + "attention.key_length", 1, 1024, c.hidden / c.n_heads);
  if (f.get_int(a + "attention.value_length", 1, 1024, c.head_dim) != c.head_dim)
    throw Error(f.where("llama.attention.value_length differs from the key length (not supported)"));
  c.max_positions = f.get_int(a + "context_length", 1, int64_t(1) << 40, 2048);
  c.norm = NormKind::RMSNorm;
  c.norm_eps = float(f.get_float(a + "attention.layer_norm_rms_epsilon"));
  c.mlp = MlpKind::SwiGLU;
  c.qkv = QkvLayout::Separate;
  c.pos = PosKind::RoPE;
  c.rope_theta = f.get_float(a + "rope.freq_base", 10000.0);
  c.rot_dims = f.get_int(a + "rope.dimension_count", 0, 1024, c.head_dim);
  if (c.rot_dims != c.head_dim)
    throw Error(f.where("llama.rope.dimension_count " + std::to_string(c.rot_dims) + " differs from head_dim " +
                        std::to_string(c.head_dim) + " (partial rotary is not supported for llama)"));
  c.rope_interleaved = false;  // Q/K rows are un-permuted at load (see the top of this file)
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  if (scaling != "none")
    throw Error(f.where("llama.rope.scaling.type '" + scaling + "' is not supported (only plain RoPE)"));
  if (f.get_float(a + "rope.scale_linear", 1.0) != 1.0)
    throw Error(f.where("llama.rope.scale_linear is not supported (only plain RoPE)"));
  if (f.get_int(a + "expert_count", 0, int64_t(1) << 20, 0) > 0)
    throw Error(f.where("llama.expert_count > 0: mixture-of-experts models are not supported"));
  if (f.tensor("rope_freqs.weight"))
    throw Error(f.where("tensor 'rope_freqs.weight' (RoPE frequency scaling) is not supported"));

  // Vocabulary: the token list is the source of truth; llama.vocab_size, when given, must agree.
  if (f.has("tokenizer.ggml.tokens")) {
    c.vocab_size = int64_t(f.get_strings("tokenizer.ggml.tokens").size());
    if (f.has(a + "vocab_size") && f.get_int(a + "vocab_size", 0, INT32_MAX) != c.vocab_size)
      throw Error(f.where("llama.vocab_size (" + std::to_string(f.get_int(a + "vocab_size", 0, INT32_MAX)) +
                          ") differs from the " + std::to_string(c.vocab_size) + " tokens of tokenizer.ggml.tokens"));
  } else if (f.has(a + "vocab_size")) {
    c.vocab_size = f.get_int(a + "vocab_size", 1, INT32_MAX);
  } else if (const TensorInfo* e = f.tensor("token_embd.weight"); e && e->n_dims == 2) {
    c.vocab_size = int64_t(e->ne[1]);
  }
  c.tied_head = f.tensor("output.weight") == nullptr;
  c.bos_id = f.get_int("tokenizer.ggml.bos_token_id", 0, INT32_MAX, -1);
  c.eos_id = f.get_int("tokenizer.ggml.eos_token_id", 0, INT32_MAX, -1);
  c.validate(f.path());
  return c;
}

// The file's own dtype (block formats stay quantised in memory).
DType native_dtype(GgmlType t) {
  switch (t) {
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    case GgmlType::Q8_0: return DType::Q8_0;
    case GgmlType::Q4_0: return DType::Q4_0;
    case GgmlType::Q4_1: return DType::Q4_1;
    default: return DType::F32;
  }
}

// Decodes a whole tensor into an owned buffer of dtype `to` (a float or block dtype), in parallel chunks.
Tensor decode_tensor(const TensorInfo& t, DType to, const Shape& shape, ModelWeights& w) {
  if (to != DType::F32 && to != DType::F16 && to != DType::BF16 && !is_quantized(to))
    throw Error(std::string("GGUF: cannot store weights as ") + dtype_name(to));
  const int64_t n = t.numel();
  check_whole_blocks(to, shape);
  Buffer b(dtype_bytes(to, n));
  if (native_dtype(t.type) == to) {
    std::memcpy(b.data(), t.data, size_t(t.nbytes));  // same representation: a plain copy
  } else {
    constexpr int64_t kChunk = int64_t(1) << 14;  // a multiple of every block size
    static_assert(kChunk % gguf::kQK == 0);
    const int64_t be = gguf::ggml_block_elems(t.type), bb = gguf::ggml_block_bytes(t.type);
    const int64_t n_chunks = (n + kChunk - 1) / kChunk;
    char* out = static_cast<char*>(b.data());
#pragma omp parallel
    {
      std::vector<float> tmp(to == DType::F32 ? 0 : size_t(kChunk));  // (a multiple of every block)
#pragma omp for schedule(static)
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t start = c * kChunk, m = std::min(kChunk, n - start);  // m is a multiple of be (ne0 % be == 0)
        float* dst = to == DType::F32 ? reinterpret_cast<float*>(out) + start : tmp.data();
        gguf::dequantize(t.type, t.data + start / be * bb, m, dst);
        if (to != DType::F32) from_f32(dst, size_t(m), to, out + dtype_bytes(to, start));
      }
    }
  }
  Tensor r{b.data(), to, shape};
  w.owned.push_back(std::move(b));
  return r;
}

// Undoes the converter's Q/K permutation: row h*d + 2i + j of the file becomes row h*d + j*d/2 + i.
void unpermute_rows(const Tensor& t, int64_t n_heads) {
  const int64_t rows = t.shape[0], d = rows / n_heads;
  const size_t rb = dtype_bytes(t.dtype, t.shape[1]);
  char* base = static_cast<char*>(t.data);
  std::vector<char> head(size_t(d) * rb);
  for (int64_t h = 0; h < n_heads; ++h) {
    char* p = base + size_t(h * d) * rb;
    std::memcpy(head.data(), p, head.size());
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(p + size_t(j * (d / 2) + i) * rb, head.data() + size_t(2 * i + j) * rb, rb);
  }
}

std::string dims_str(const TensorInfo& t) {
  std::string s = "[";
  for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[size_t(i)]);
  return s + "]";
}

Model load_llama(const GgufFile& f, const LoadOptions& opt) {
  Model m;
  m.source = f.path();
  m.cfg = llama_config(f);
  std::vector<char> used(f.tensors().size(), 0);
  bool mapped = false;  // some matrix points into the file's mapping
  for_each_weight(m.cfg, m.w, [&](const WeightSlot& s) {
    const std::string name = s.name.empty() ? std::string() : gguf_tensor_name(s.name);
    const TensorInfo* t = name.empty() ? nullptr : f.tensor(name);
    if (!t) {
      if (s.required) throw Error(f.where("missing tensor '" + name + "' (" + s.name + ")"));
      return;
    }
    used[size_t(t - f.tensors().data())] = 1;
    const std::string where = "tensor '" + name + "'";
    const Shape shape = t->shape();
    if (!(shape == s.shape))
      throw Error(f.where(where + ": GGML dims " + dims_str(*t) + " are the matrix " + shape.str() +
                          ", which does not match the config (expected " + s.shape.str() + ")"));
    const DType to = s.is_vector ? DType::F32 : opt.dtype ? *opt.dtype : native_dtype(t->type);
    const bool is_q = name.find(".attn_q.") != std::string::npos, is_k = name.find(".attn_k.") != std::string::npos;
    const bool aligned = is_quantized(to) || reinterpret_cast<uintptr_t>(t->data) % dtype_size(to) == 0;
    if (!s.is_vector && !is_q && !is_k && to == native_dtype(t->type) && aligned) {
      // Stored as we compute with it: used in place in the mapped file (no copy; pages are read on first use).
      // Block formats are read with unaligned loads; a float tensor must sit on its element size (general.alignment
      // may be any power of two), else it is copied below.
      *s.dst = Tensor{const_cast<unsigned char*>(t->data), to, shape};
      mapped = true;
      return;
    }
    Tensor out;
    try {
      out = decode_tensor(*t, to, shape, m.w);
    } catch (const Error& e) {  // (a block format that does not fit the rows)
      throw Error(f.where(where + ": " + e.what()));
    }
    if (is_q || is_k) {  // weights and biases alike: the converter permuted their rows (a bias as rows of one)
      const Tensor rows{out.data, out.dtype, s.is_vector ? Shape{out.shape[0], 1} : out.shape};
      unpermute_rows(rows, is_q ? m.cfg.n_heads : m.cfg.n_kv_heads);
    }
    *s.dst = out;
  });
  for (size_t i = 0; i < used.size(); ++i)
    if (!used[i])
      throw Error(f.where("tensor '" + f.tensors()[i].name + "' is not part of a llama model (unexpected name)"));
  if (mapped) m.w.keep_alive.push_back(f.mapping());
  if (m.cfg.tied_head) m.w.lm_head = m.w.embed;
  m.storage = m.weight_dtypes().front().first;  // the dtype of most weight bytes (files may mix types)
  return m;
}

// ==== Tokenizer ====

// GPT-2's byte -> printable character map (bytes_to_unicode), as UTF-8 strings.
const std::vector<std::string>& byte_chars() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      tok::utf8_append(t[size_t(b)], printable ? uint32_t(b) : uint32_t(256 + extra++));
    }
    return t;
  }();
  return table;
}

// True when every character of s is one of the 256 byte-level characters.
bool byte_level_spelled(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t n = tok::utf8_decode(s, i, &cp);
    if (n == 0) return false;
    const bool printable = (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF);
    if (!printable && !(cp >= 256 && cp < 256 + 68)) return false;
    i += n;
  }
  return true;
}

std::string byte_level_respell(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += byte_chars()[c];
  return out;
}

constexpr size_t kMaxTokenBytes = 1024;
constexpr int kTypeNormal = 1, kTypeUnknown = 2, kTypeControl = 3, kTypeUserDefined = 4;

struct Vocab {
  std::vector<std::string> tokens;  // as the tokenizer.json vocab spells them
  std::vector<int32_t> types;       // llama.cpp token types (1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte)
  std::unordered_map<std::string, int32_t> ids;
};

const std::string kPre = "tokenizer.ggml.pre";

// Pre-tokenizer for a byte-level vocabulary, from llama.cpp's meaning of tokenizer.ggml.pre (llama-vocab.cpp),
// written the way the original HF tokenizer.json files of those models write it. Sets ignore_merges like llama.cpp.
json byte_level_pre_tokenizer(const GgufFile& f, bool* ignore_merges) {
  static const char* const kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* const kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                           {"use_regex", true}};
  const json byte_level_bare = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                {"use_regex", false}};
  auto split = [&](const char* re) {
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 {{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}},
                  byte_level_bare}}};
  };
  *ignore_merges = false;
  if (!f.has(kPre))
    throw Error(f.where("metadata '" + kPre + "' is missing: the pre-tokenizer of this byte-level vocabulary is "
                        "unknown (llama.cpp's 'default' guess is not reproducible; re-convert the model)"));
  const std::string pre = f.get_string(kPre);
  auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (pre == n) return true;
    return false;
  };
  // GPT-2's regex alone.
  if (is({"gpt-2", "phi-2", "mpt", "olmo", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "exaone4"}))
    return byte_level;
  // Every digit on its own, then GPT-2's regex (SmolLM, StarCoder). HF writes this as Digits + ByteLevel.
  if (is({"smollm", "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "command-r"}))
    return json{{"type", "Sequence"},
                {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"})) {
    *ignore_merges = true;
    return split(kLlama3);
  }
  if (is({"dbrx", "smaug-bpe"})) return split(kLlama3);
  if (is({"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"})) return split(kQwen2);
  throw Error(f.where("metadata '" + kPre + "': pre-tokenizer '" + pre +
                      "' is not supported (supported: gpt-2, smollm, starcoder, llama-bpe/llama3, qwen2 and their "
                      "aliases)"));
}

// transformers' generate_merges(vocab, scores): for every token in file order, each split into two vocabulary
// pieces (by code points) ordered by the pieces' ids; then all of them stably sorted by (score, len(left),
// len(right)) descending.
std::vector<std::pair<int32_t, int32_t>> merges_from_scores(const GgufFile& f, const Vocab& v,
                                                             const std::vector<float>& scores) {
  struct M {
    int32_t l, r;
    float score;
    int32_t len_l, len_r;
  };
  std::vector<M> all;
  std::vector<size_t> bounds;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    const std::string& t = v.tokens[id];
    if (scores[id] != scores[id]) throw Error(f.where("tokenizer.ggml.scores[" + std::to_string(id) + "] is NaN"));
    bounds.clear();
    for (size_t i = 0; i < t.size();) {
      uint32_t cp;
      i += tok::utf8_decode(t, i, &cp);  // valid UTF-8 (checked when the vocabulary was read)
      bounds.push_back(i);
    }
    const size_t first = all.size();
    for (size_t k = 0; k + 1 < bounds.size(); ++k) {
      auto l = v.ids.find(t.substr(0, bounds[k]));
      if (l == v.ids.end()) continue;
      auto r = v.ids.find(t.substr(bounds[k]));
      if (r == v.ids.end()) continue;
      all.push_back({l->second, r->second, scores[id], int32_t(k + 1), int32_t(bounds.size() - k - 1)});
    }
    std::sort(all.begin() + long(first), all.end(),
              [](const M& a, const M& b) { return a.l != b.l ? a.l < b.l : a.r < b.r; });
  }
  std::stable_sort(all.begin(), all.end(), [](const M& a, const M& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.len_l != b.len_l) return a.len_l > b.len_l;
    return a.len_r > b.len_r;
  });
  std::vector<std::pair<int32_t, int32_t>> out;
  out.reserve(all.size());
  for (const M& m : all) out.emplace_back(m.l, m.r);
  return out;
}

json template_processing(const Vocab& v, int64_t bos, int64_t eos, bool add_bos, bool add_eos) {
  json single = json::array(), specials = json::object();
  auto special = [&](int64_t id) {
    const std::string& s = v.tokens[size_t(id)];
    specials[s] = {{"id", s}, {"ids", {id}}, {"tokens", {s}}};
    return json{{"SpecialToken", {{"id", s}, {"type_id", 0}}}};
  };
  if (add_bos && bos >= 0) single.push_back(special(bos));
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (add_eos && eos >= 0) single.push_back(special(eos));
  return {{"type", "TemplateProcessing"}, {"single", single}, {"special_tokens", specials}};
}

}  // namespace

namespace gguf {

std::string tokenizer_json_from_gguf(const GgufFile& f) {
  const std::string kind = f.get_string("tokenizer.ggml.model");
  if (kind != "gpt2" && kind != "llama")
    throw Error(f.where("metadata 'tokenizer.ggml.model': tokenizer '" + kind +
                        "' is not supported (supported: gpt2, llama)"));
  const bool byte_level = kind == "gpt2";
  const auto& raw = f.get_strings("tokenizer.ggml.tokens");
  if (raw.empty() || raw.size() > size_t(INT32_MAX))
    throw Error(f.where("metadata 'tokenizer.ggml.tokens': " + std::to_string(raw.size()) + " tokens"));
  const size_t n = raw.size();

  Vocab v;
  v.types.assign(n, kTypeNormal);
  if (f.has("tokenizer.ggml.token_type")) {
    const std::vector<int32_t> tt = f.get_i32s("tokenizer.ggml.token_type");
    if (tt.size() < n)
      throw Error(f.where("metadata 'tokenizer.ggml.token_type': " + std::to_string(tt.size()) + " types for " +
                          std::to_string(n) + " tokens"));
    std::copy(tt.begin(), tt.begin() + long(n), v.types.begin());
  }
  v.tokens.reserve(n);
  v.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string_view t = raw[i];
    const std::string at = "metadata 'tokenizer.ggml.tokens'[" + std::to_string(i) + "]";
    if (!tok::is_valid_utf8(t)) throw Error(f.where(at + ": not valid UTF-8"));
    if (t.empty()) throw Error(f.where(at + ": empty token"));
    // Real vocabularies stay far below this; the bound keeps deriving merges (quadratic in a token's length) cheap
    // on a hostile file.
    if (t.size() > kMaxTokenBytes)
      throw Error(f.where(at + ": token of " + std::to_string(t.size()) + " bytes (at most " +
                          std::to_string(kMaxTokenBytes) + ")"));
    // transformers re-spells a byte-level token that uses characters outside the byte alphabet from its UTF-8 bytes.
    v.tokens.push_back(byte_level && !byte_level_spelled(t) ? byte_level_respell(t) : std::string(t));
    if (!v.ids.emplace(v.tokens.back(), int32_t(i)).second)
      throw Error(f.where(at + ": duplicate token '" + v.tokens.back() + "' (also id " +
                          std::to_string(v.ids[v.tokens.back()]) + ")"));
  }
  const int64_t nn = int64_t(n) - 1;
  auto id_of = [&](const char* key) { return f.get_int(std::string("tokenizer.ggml.") + key, 0, nn, -1); };
  const int64_t bos = id_of("bos_token_id"), eos = id_of("eos_token_id"), unk = id_of("unknown_token_id"),
                pad = id_of("padding_token_id");

  json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}};
  json vocab = json::object();
  for (size_t i = 0; i < n; ++i) vocab[v.tokens[i]] = int32_t(i);
  json merges = json::array();
  if (f.has("tokenizer.ggml.merges")) {
    const auto& ms = f.get_strings("tokenizer.ggml.merges");
    for (size_t i = 0; i < ms.size(); ++i) {
      const std::string_view s = ms[i];
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string_view::npos;
      if (sp == std::string_view::npos || sp + 1 >= s.size() || !tok::is_valid_utf8(s))
        throw Error(f.where("metadata 'tokenizer.ggml.merges'[" + std::to_string(i) + "]: expected \"a b\""));
      merges.push_back({std::string(s.substr(0, sp)), std::string(s.substr(sp + 1))});
    }
  } else if (byte_level) {
    throw Error(f.where("missing metadata 'tokenizer.ggml.merges' (required for a gpt2 tokenizer)"));
  } else {
    std::vector<float> scores = f.get_f32s("tokenizer.ggml.scores");
    if (scores.size() < n)
      throw Error(f.where("metadata 'tokenizer.ggml.scores': " + std::to_string(scores.size()) + " scores for " +
                          std::to_string(n) + " tokens"));
    for (const auto& [l, r] : merges_from_scores(f, v, scores))
      merges.push_back({v.tokens[size_t(l)], v.tokens[size_t(r)]});
  }

  // Added tokens, as transformers adds them: control tokens (and the named bos/eos/unk/pad) special, user-defined
  // ones plain. In a byte-level vocabulary a token outside the byte alphabet cannot be one (it was re-spelled).
  json added = json::array();
  for (size_t i = 0; i < n; ++i) {
    const bool named = int64_t(i) == bos || int64_t(i) == eos || int64_t(i) == unk || int64_t(i) == pad;
    const bool special = v.types[i] == kTypeControl || named;
    if (!special && v.types[i] != kTypeUserDefined) continue;
    if (byte_level && !byte_level_spelled(raw[i])) continue;
    added.push_back({{"id", int32_t(i)}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", special}});
  }

  json root = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
               {"normalizer", nullptr}};
  if (byte_level) {
    bool ignore_merges = false;
    root["pre_tokenizer"] = byte_level_pre_tokenizer(f, &ignore_merges);
    root["post_processor"] = template_processing(v, bos, eos, f.get_bool("tokenizer.ggml.add_bos_token", false),
                                                 f.get_bool("tokenizer.ggml.add_eos_token", false));
    root["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    model["fuse_unk"] = false;
    model["byte_fallback"] = false;
    model["ignore_merges"] = ignore_merges;
  } else {
    const bool prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    root["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                             {"prepend_scheme", prefix ? "first" : "never"}, {"split", false}};
    root["post_processor"] = template_processing(v, bos, eos, f.get_bool("tokenizer.ggml.add_bos_token", true),
                                                 f.get_bool("tokenizer.ggml.add_eos_token", false));
    json dec = {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                {{"type", "ByteFallback"}},
                {{"type", "Fuse"}}};
    if (prefix) dec.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    root["decoder"] = {{"type", "Sequence"}, {"decoders", dec}};
    model["fuse_unk"] = true;
    model["byte_fallback"] = true;
    model["ignore_merges"] = false;
  }
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);
  root["model"] = std::move(model);
  return root.dump();
}

}  // namespace gguf

ModelBundle load_gguf(const std::string& path, const LoadOptions& opt) {
  const GgufFile f = GgufFile::open(path);
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama")
    throw Error(f.where("general.architecture '" + arch + "' is not supported (supported: llama)"));
  ModelBundle b;
  b.format = ModelFormat::GGUF;
  b.model = load_llama(f, opt);
  if (f.has("tokenizer.ggml.model")) {
    b.tokenizer_json = gguf::tokenizer_json_from_gguf(f);
    b.tok = Tokenizer::from_json_string(b.tokenizer_json, path + " (tokenizer.ggml.*)");
    if (b.model.cfg.bos_id >= 0) b.tok->set_bos_id(int32_t(b.model.cfg.bos_id));
    if (b.model.cfg.eos_id >= 0) b.tok->set_eos_id(int32_t(b.model.cfg.eos_id));
  }
  b.chat_template = f.get_string("tokenizer.chat_template", "");
  return b;
}

}  // namespace sllm
