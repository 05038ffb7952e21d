// streamllm: the decoding half of the tokenizer pipeline (see pipeline.h): ids -> token strings -> decoder chain.
// Each step ports the HF tokenizers decoder of the same name (decoders/*.rs, pre_tokenizers/byte_level.rs and
// metaspace.rs), including its odd corners (ByteFallback prints one U+FFFD per byte of an invalid group, Metaspace
// drops every ▁ of the first token, Strip counts characters).
#include <algorithm>  // std::min

#include "tokenizer/pipeline.h"
#include "tokenizer/unicode.h"  // utf8_decode, utf8_append, append_utf8_lossy, utf8_incomplete_tail

namespace sllm::tok {

namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Inverse of byte_chars(): code point -> byte, -1 for characters that do not stand for a byte.
const std::array<int16_t, 0x144>& char_bytes() {
  static const std::array<int16_t, 0x144> table = [] {
    std::array<int16_t, 0x144> t;
    t.fill(-1);
    const auto& bc = byte_chars();
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = 0;
      utf8_decode(bc[size_t(b)], 0, &cp);
      t[cp] = int16_t(b);
    }
    return t;
  }();
  return table;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xAB>" -> 0xAB, as ByteFallback parses it (u8::from_str_radix also takes a "+" sign).
bool parse_byte_token(const std::string& t, uint8_t* byte) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  if (t[3] == '+' && lo >= 0) {
    *byte = uint8_t(lo);
    return true;
  }
  if (hi < 0 || lo < 0) return false;
  *byte = uint8_t(hi * 16 + lo);
  return true;
}

void byte_level(std::vector<std::string>& toks, DecodeTail* tail) {
  const auto& cb = char_bytes();
  std::string bytes;
  for (const std::string& t : toks) {
    const size_t mark = bytes.size();
    bool ok = true;
    for (size_t i = 0; i < t.size() && ok;) {
      uint32_t cp = 0;
      const size_t n = utf8_decode(t, i, &cp);
      ok = n > 0 && cp < cb.size() && cb[cp] >= 0;
      if (ok) bytes.push_back(char(cb[cp]));
      i += n;
    }
    if (!ok) {  // not a byte-level token (e.g. an added token): its own UTF-8 bytes
      bytes.resize(mark);
      bytes += t;
    }
  }
  if (tail && utf8_incomplete_tail(bytes)) tail->unstable = tail->incomplete = true;
  std::string text;
  append_utf8_lossy(text, bytes);
  toks.assign(1, std::move(text));
}

void byte_fallback(std::vector<std::string>& toks, DecodeTail* tail) {
  std::vector<std::string> out;
  std::string group;
  auto flush = [&] {
    if (group.empty()) return;
    if (is_valid_utf8(group)) {
      out.push_back(group);
    } else {
      for (size_t i = 0; i < group.size(); ++i) out.emplace_back(kReplacementChar);
    }
    group.clear();
  };
  for (std::string& t : toks) {
    uint8_t b;
    if (parse_byte_token(t, &b)) {
      group.push_back(char(b));
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  // A trailing group can still grow (and an invalid group prints differently from its valid prefix).
  if (tail && !group.empty()) {
    tail->unstable = true;
    tail->incomplete |= utf8_incomplete_tail(group);
  }
  flush();
  toks = std::move(out);
}

void metaspace(std::vector<std::string>& toks, const DecoderOp& op) {
  for (size_t i = 0; i < toks.size(); ++i) {
    const std::string& t = toks[i];
    std::string r;
    r.reserve(t.size());
    for (size_t k = 0; k < t.size();) {
      uint32_t cp = 0;
      const size_t n = std::max<size_t>(utf8_decode(t, k, &cp), 1);
      if (cp == op.ch) {
        if (!(i == 0 && op.prepend != PrependScheme::kNever)) r.push_back(' ');
      } else {
        r.append(t, k, n);
      }
      k += n;
    }
    toks[i] = std::move(r);
  }
}

void strip(std::vector<std::string>& toks, const DecoderOp& op, DecodeTail* tail) {
  for (std::string& t : toks) {
    std::vector<size_t> starts;  // byte offset of each character, plus the end
    std::vector<uint32_t> cps;
    for (size_t k = 0; k < t.size();) {
      uint32_t cp = 0;
      const size_t n = std::max<size_t>(utf8_decode(t, k, &cp), 1);
      starts.push_back(k);
      cps.push_back(cp);
      k += n;
    }
    starts.push_back(t.size());
    const size_t nc = cps.size();
    size_t start_cut = 0;
    for (size_t i = 0; i < std::min(op.start, nc) && cps[i] == op.ch; ++i) start_cut = i + 1;
    size_t stop_cut = nc;
    for (size_t i = 0; i < std::min(op.stop, nc) && cps[nc - i - 1] == op.ch; ++i) stop_cut = nc - i - 1;
    if (tail && op.stop > 0 && nc > 0 && cps[nc - 1] == op.ch) tail->unstable = true;
    t = start_cut < stop_cut ? t.substr(starts[start_cut], starts[stop_cut] - starts[start_cut]) : std::string();
  }
}

}  // namespace

const std::string* Impl::id_to_token(int32_t id) const {
  if (id >= 0 && size_t(id) < added_index_by_id.size()) {
    const int32_t k = added_index_by_id[size_t(id)];
    if (k >= 0) return &added[size_t(k)].form;
  }
  return model->id_to_token(id);
}

std::string Impl::decode(const int32_t* ids, size_t n, bool skip_special, DecodeTail* tail) const {
  if (tail) *tail = DecodeTail{};
  std::vector<std::string> toks;
  toks.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string* t = id_to_token(ids[i]);
    if (!t) continue;  // unknown id: skipped, as in HF
    if (skip_special && special_contents.count(*t)) continue;
    toks.push_back(*t);
  }
  std::string out;
  if (!has_decoder) {
    for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
    return out;
  }
  for (const DecoderOp& op : decoder) {
    switch (op.kind) {
      case DecoderOp::kByteLevel:
        byte_level(toks, tail);
        break;
      case DecoderOp::kByteFallback:
        byte_fallback(toks, tail);
        break;
      case DecoderOp::kMetaspace:
        metaspace(toks, op);
        break;
      case DecoderOp::kStrip:
        strip(toks, op, tail);
        break;
      case DecoderOp::kReplace:
        for (std::string& t : toks) t = replace_all(t, op.pattern, op.content);
        break;
      case DecoderOp::kFuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        toks.assign(1, std::move(all));
        break;
      }
    }
  }
  for (const std::string& t : toks) out += t;
  return out;
}

}  // namespace sllm::tok
