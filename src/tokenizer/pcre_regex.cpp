// streamllm: PCRE2 wrapper for the tokenizer's split / replace patterns. See pcre_regex.h.
//
// HF tokenizers runs these patterns with Oniguruma. For the patterns found in real tokenizer.json files (GPT-2,
// Llama-3, Qwen, ...) PCRE2 in UTF + UCP mode agrees: \p{L}, \p{N}, (?i:...), look-ahead, possessive-free
// backtracking. Subjects are always valid UTF-8 (the tokenizer sanitizes its input), so we skip PCRE2's UTF check,
// which would otherwise rescan the whole subject at every match and make long texts quadratic.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pcre_regex.h"

#include <pcre2.h>  // pcre2_compile, pcre2_match, ...

#include "core/error.h"         // Error
#include "tokenizer/unicode.h"  // utf8_len_valid

namespace sllm::tok {

namespace {

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

struct MatchData {
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) throw Error("tokenizer: out of memory creating regex match data");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  pcre2_match_data* md;
};

std::string pcre_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buf);
}

// Oniguruma's \s (Unicode White_Space) differs from PCRE2's in one character: PCRE2 still counts U+180E MONGOLIAN
// VOWEL SEPARATOR (a format character since Unicode 6.3) as horizontal space. Spell \s and \S out explicitly.
constexpr const char* kSpaceSet =
    "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string onig_compatible(const std::string& p) {
  std::string r;
  r.reserve(p.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // index in p just after '[' or '[^'
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[++i];
      if (n == 's')
        r += in_class ? std::string(kSpaceSet) : "[" + std::string(kSpaceSet) + "]";
      else if (n == 'S' && !in_class)
        r += "[^" + std::string(kSpaceSet) + "]";
      else
        (r += '\\') += n;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      r += c;
      if (i + 1 < p.size() && p[i + 1] == '^') r += p[++i];
      class_start = i + 1;
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string::npos) {
        r.append(p, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']' && i != class_start) in_class = false;
    r += c;
  }
  return r;
}

// One match attempt at `start`; returns false on no match. Falls back from JIT to the interpreter if the JIT stack
// is too small for a pathological subject.
bool match_at(const pcre2_code* code, std::string_view s, size_t start, pcre2_match_data* md, const std::string& what,
              size_t* b, size_t* e) {
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
  int rc = pcre2_match(code, subj, s.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code, subj, s.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw Error("tokenizer: regex " + what + ": match failed: " + pcre_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *b = ov[0];
  *e = ov[1];
  if (*b > *e || *e > s.size()) throw Error("tokenizer: regex " + what + ": bad match bounds");  // \K tricks
  return true;
}

}  // namespace

std::shared_ptr<const Regex> Regex::compile(const std::string& pattern, const std::string& what) {
  return compile_raw(onig_compatible(pattern), what);
}

std::shared_ptr<const Regex> Regex::compile_raw(const std::string& pattern, const std::string& what) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, nullptr);
  if (!code) throw Error(what + ": regex does not compile at offset " + std::to_string(off) + ": " + pcre_message(err));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: without JIT the interpreter is used
  std::shared_ptr<Regex> r(new Regex());
  r->code_ = code;
  r->what_ = what;
  return r;
}

std::shared_ptr<const Regex> Regex::literal(const std::string& lit, const std::string& what) {
  // \Q...\E quotes everything except a literal "\E", which we split out.
  std::string p;
  size_t i = 0;
  while (i < lit.size()) {
    size_t j = lit.find("\\E", i);
    if (j == std::string::npos) j = lit.size();
    if (j > i) p += "\\Q" + lit.substr(i, j - i) + "\\E";
    if (j < lit.size()) p += "\\\\E";
    i = j + (j < lit.size() ? 2 : 0);
  }
  return compile_raw(p, what);
}

Regex::~Regex() { pcre2_code_free(as_code(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  MatchData md(as_code(code_));
  size_t pos = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (pos <= s.size()) {
    size_t b, e;
    if (!match_at(as_code(code_), s, pos, md.md, what_, &b, &e)) break;
    if (b == e) {
      // Empty match: the next search starts one character later; an empty match glued to the previous match is
      // dropped (the onig crate's FindMatches, itself copied from the regex crate).
      pos = e + (e < s.size() ? utf8_len_valid(uint8_t(s[e])) : 1);
      if (have_last && last_end == e) continue;
    } else {
      pos = e;
    }
    out.emplace_back(b, e);
    have_last = true;
    last_end = e;
  }
  return out;
}

bool Regex::search(std::string_view s) const {
  MatchData md(as_code(code_));
  size_t b, e;
  return match_at(as_code(code_), s, 0, md.md, what_, &b, &e);
}

}  // namespace sllm::tok
