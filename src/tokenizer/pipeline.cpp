// streamllm: the encoding half of the tokenizer pipeline (see pipeline.h). Each function names the HF tokenizers
// code it ports; the details (which splits keep empty pieces, where a prefix space goes, how added tokens strip
// whitespace) are what makes the ids identical, so they are kept literally rather than simplified.
#include "tokenizer/pipeline.h"

#include <algorithm>  // std::max
#include <array>      // std::array

#include "core/error.h"         // Error
#include "tokenizer/unicode.h"  // utf8_decode, is_white_space, nfc, append_utf8_lossy

namespace sllm::tok {

namespace {

// A piece of text during pre-tokenization. `first`: it starts at offset 0 of the original input (Metaspace's
// prepend_scheme "first" only adds the ▁ there).
struct Piece {
  std::string s;
  bool first;
};

// tokenizer/pattern.rs: a regex's matches and the gaps between them, covering s.
std::vector<Span> regex_spans(const Regex& re, std::string_view s) {
  if (s.empty()) return {{0, 0, false}};
  std::vector<Span> out;
  size_t prev = 0;
  for (const auto& [b, e] : re.find_all(s)) {
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev != s.size()) out.push_back({prev, s.size(), false});
  return out;
}

std::vector<Span> literal_spans(std::string_view lit, std::string_view s) {
  if (s.empty()) return {{0, 0, false}};
  std::vector<Span> out;
  size_t prev = 0;
  for (size_t at = s.find(lit); !lit.empty() && at != std::string_view::npos; at = s.find(lit, at + lit.size())) {
    if (prev != at) out.push_back({prev, at, false});
    out.push_back({at, at + lit.size(), true});
    prev = at + lit.size();
  }
  if (prev != s.size()) out.push_back({prev, s.size(), false});
  return out;
}

}  // namespace

std::vector<Span> pattern_spans(const Pattern& p, std::string_view s) {
  return p.is_literal ? literal_spans(p.literal, s) : regex_spans(*p.regex, s);
}

namespace {

// tokenizer/pattern.rs `impl Pattern for Fn(char) -> bool`: every matching character is its own match.
template <class Pred>
std::vector<Span> char_spans(std::string_view s, Pred pred) {
  if (s.empty()) return {{0, 0, false}};
  std::vector<Span> out;
  size_t last_offset = 0, i = 0;
  while (i < s.size()) {
    uint32_t cp = 0xFFFD;
    const size_t n = std::max<size_t>(utf8_decode(s, i, &cp), 1);
    if (pred(cp)) {
      if (last_offset < i) out.push_back({last_offset, i, false});
      out.push_back({i, i + n, true});
      last_offset = i + n;
    }
    i += n;
  }
  if (s.size() > last_offset) out.push_back({last_offset, s.size(), false});
  return out;
}

// NormalizedString::split: turn matches into the kept ranges according to the delimiter behavior.
std::vector<std::pair<size_t, size_t>> apply_behavior(const std::vector<Span>& m, SplitBehavior behavior) {
  std::vector<std::pair<size_t, size_t>> out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Span& x : m) out.emplace_back(x.b, x.e);
      break;
    case SplitBehavior::kRemoved:
      for (const Span& x : m)
        if (!x.match) out.emplace_back(x.b, x.e);
      break;
    case SplitBehavior::kContiguous: {
      bool prev = false;
      for (const Span& x : m) {
        if (x.match == prev && !out.empty())
          out.back().second = x.e;
        else
          out.emplace_back(x.b, x.e);
        prev = x.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool prev = false;
      for (const Span& x : m) {
        if (x.match && !prev && !out.empty())
          out.back().second = x.e;
        else
          out.emplace_back(x.b, x.e);
        prev = x.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev = false;
      for (size_t k = m.size(); k-- > 0;) {
        const Span& x = m[k];
        if (x.match && !prev && !out.empty())
          out.back().first = x.b;
        else
          out.emplace_back(x.b, x.e);
        prev = x.match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

// PreTokenizedString::split: replace each piece by its (non-empty) sub-pieces.
template <class SpansFn>
void split_pieces(std::vector<Piece>& pieces, SplitBehavior behavior, SpansFn spans_of) {
  std::vector<Piece> next;
  next.reserve(pieces.size());
  for (Piece& p : pieces) {
    const auto ranges = apply_behavior(spans_of(std::string_view(p.s)), behavior);
    if (ranges.size() == 1 && ranges[0].first == 0 && ranges[0].second == p.s.size()) {
      if (!p.s.empty()) next.push_back(std::move(p));
      continue;
    }
    for (const auto& [b, e] : ranges)
      if (e > b) next.push_back({p.s.substr(b, e - b), p.first && b == 0});
  }
  pieces = std::move(next);
}

size_t leading_white_space(std::string_view s) {
  size_t i = 0;
  uint32_t cp;
  while (i < s.size()) {
    const size_t n = utf8_decode(s, i, &cp);
    if (n == 0 || !is_white_space(cp)) break;
    i += n;
  }
  return i;
}

size_t trailing_white_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t b = end - 1;
    while (b > 0 && (uint8_t(s[b]) & 0xC0) == 0x80) --b;
    uint32_t cp;
    if (utf8_decode(s, b, &cp) != end - b || !is_white_space(cp)) break;
    end = b;
  }
  return end;
}

struct Segment {
  size_t b, e;
  int32_t id;  // added token id, or -1 for text
};

}  // namespace

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 and up.
const std::array<std::string, 256>& byte_chars() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      utf8_append(t[size_t(b)], printable ? uint32_t(b) : uint32_t(256 + n++));
    }
    return t;
  }();
  return table;
}

std::string replace_all(const std::string& s, const Pattern& p, const std::string& content) {
  std::string r;
  r.reserve(s.size());
  for (const Span& x : pattern_spans(p, s)) {
    if (x.match)
      r += content;
    else
      r.append(s, x.b, x.e - x.b);
  }
  return r;
}

const std::shared_ptr<const Regex>& gpt2_regex() {
  static const std::shared_ptr<const Regex> re =
      Regex::compile(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "ByteLevel");
  return re;
}

std::string Impl::normalize(std::string s) const {
  for (const NormalizerOp& op : normalizer) {
    switch (op.kind) {
      case NormalizerOp::kPrepend:
        if (!s.empty()) s.insert(0, op.text);
        break;
      case NormalizerOp::kReplace:
        s = replace_all(s, op.pattern, op.text);
        break;
      case NormalizerOp::kStrip: {
        const size_t b = op.left ? leading_white_space(s) : 0;
        const size_t e = op.right ? trailing_white_space_start(s) : s.size();
        s = e > b ? s.substr(b, e - b) : std::string();
        break;
      }
      case NormalizerOp::kNfc:
        s = nfc(s);
        break;
    }
  }
  return s;
}

namespace {

// AddedVocabulary::find_matches: split s into text and added-token segments.
std::vector<Segment> find_added(const Impl& t, const AddedMatcher& m, std::string_view s) {
  if (m.empty) return {{0, s.size(), -1}};
  std::vector<Segment> out;
  auto is_word_char_at = [&](size_t i) {  // the character starting at byte i
    uint32_t cp;
    const size_t n = utf8_decode(s, i, &cp);
    return n > 0 && t.word_char->search(s.substr(i, n));
  };
  size_t start_offset = 0, pos = 0;
  while (pos < s.size()) {
    int32_t hit = -1;
    for (int32_t idx : m.bucket[uint8_t(s[pos])]) {
      const std::string& f = t.added[size_t(idx)].form;
      if (s.compare(pos, f.size(), f) == 0) {  // bucket is longest first: the first hit is leftmost-longest
        hit = idx;
        break;
      }
    }
    if (hit < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = t.added[size_t(hit)];
    size_t start = pos, stop = pos + tok.form.size();
    pos = stop;  // the automaton resumes after the raw match, whatever happens to it below
    if (tok.single_word) {
      size_t prev = start > 0 ? start - 1 : 0;  // first byte of the character before the match
      while (prev > 0 && (uint8_t(s[prev]) & 0xC0) == 0x80) --prev;
      const bool start_space = start == 0 || !is_word_char_at(prev);
      const bool stop_space = stop == s.size() || !is_word_char_at(stop);
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) start = std::max(trailing_white_space_start(s.substr(0, start)), start_offset);
    if (tok.rstrip) stop += leading_white_space(s.substr(stop));
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset != s.size()) out.push_back({start_offset, s.size(), -1});
  return out;
}

}  // namespace

void Impl::encode(std::string_view text, bool add_special, std::vector<int32_t>& out) const {
  if (text.size() > (size_t(1) << 30)) throw Error("tokenizer: input text larger than 1 GiB");
  // HF takes Rust strings, which are valid UTF-8 by construction; we replace invalid bytes by U+FFFD first.
  std::string cleaned;
  if (!is_valid_utf8(text)) {
    append_utf8_lossy(cleaned, text);
    text = cleaned;
  }

  std::vector<int32_t> ids;
  std::vector<Piece> pieces;
  auto run_model = [&](std::string_view seg, bool first) {
    if (pre_tokenizer.empty()) {
      model->tokenize(seg, ids);
      return;
    }
    pieces.clear();
    pieces.push_back({std::string(seg), first});
    for (const PreTokenizerOp& op : pre_tokenizer) {
      switch (op.kind) {
        case PreTokenizerOp::kByteLevel: {
          if (op.add_prefix_space)
            for (Piece& p : pieces)
              if (p.s.empty() || p.s[0] != ' ') p.s = " " + p.s;
          if (op.use_regex)
            split_pieces(pieces, SplitBehavior::kIsolated,
                         [&](std::string_view s) { return regex_spans(*op.regex, s); });
          const auto& bc = byte_chars();
          for (Piece& p : pieces) {
            std::string mapped;
            mapped.reserve(p.s.size() * 2);
            for (char c : p.s) mapped += bc[uint8_t(c)];
            p.s = std::move(mapped);
          }
          break;
        }
        case PreTokenizerOp::kSplit:
          split_pieces(pieces, op.behavior, [&](std::string_view s) {
            std::vector<Span> sp = regex_spans(*op.regex, s);
            if (op.invert)
              for (Span& x : sp) x.match = !x.match;
            return sp;
          });
          break;
        case PreTokenizerOp::kDigits:
          split_pieces(pieces, op.behavior, [&](std::string_view s) { return regex_spans(*op.regex, s); });
          break;
        case PreTokenizerOp::kWhitespaceSplit:
          split_pieces(pieces, SplitBehavior::kRemoved,
                       [](std::string_view s) { return char_spans(s, [](uint32_t c) { return is_white_space(c); }); });
          break;
        case PreTokenizerOp::kMetaspace: {
          std::string rep;
          utf8_append(rep, op.replacement);
          for (Piece& p : pieces) {
            p.s = replace_all(p.s, Pattern{true, " ", nullptr}, rep);
            const bool starts = p.s.compare(0, rep.size(), rep) == 0;
            if (!starts && (op.prepend == PrependScheme::kAlways || (op.prepend == PrependScheme::kFirst && p.first)))
              p.s.insert(0, rep);
          }
          if (op.split)
            split_pieces(pieces, SplitBehavior::kMergedWithNext, [&](std::string_view s) {
              return char_spans(s, [&](uint32_t c) { return c == op.replacement; });
            });
          break;
        }
      }
    }
    for (const Piece& p : pieces) model->tokenize(p.s, ids);
  };

  for (const Segment& seg : find_added(*this, raw_matcher, text)) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    if (seg.e == seg.b) continue;
    const std::string norm = normalize(std::string(text.substr(seg.b, seg.e - seg.b)));
    for (const Segment& sub : find_added(*this, normalized_matcher, norm)) {
      if (sub.id >= 0)
        ids.push_back(sub.id);
      else if (sub.e > sub.b)
        run_model(std::string_view(norm).substr(sub.b, sub.e - sub.b), seg.b == 0 && sub.b == 0);
    }
  }

  for (const PostProcessorOp& op : post_processor) {
    if (op.kind == PostProcessorOp::kTemplate) {
      std::vector<int32_t> r;
      r.reserve(ids.size() + 4);
      for (const auto& piece : op.single) {
        if (piece.is_sequence)
          r.insert(r.end(), ids.begin(), ids.end());
        else if (add_special)
          r.insert(r.end(), piece.ids.begin(), piece.ids.end());
      }
      ids = std::move(r);
    } else if (add_special) {
      ids.insert(ids.begin(), op.cls);
      ids.push_back(op.sep);
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace sllm::tok
