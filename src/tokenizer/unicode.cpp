// streamllm: UTF-8 helpers and NFC for the tokenizer. See unicode.h.
//
// NFC follows UAX #15: full canonical decomposition (tables + the Hangul algorithm), canonical ordering of
// combining marks by combining class, then canonical composition with primary composites only (composition
// exclusions are already folded into the table's `compose` flag by the generator). Strings whose bytes are all
// below 0xCC hold only code points < U+0300, which NFC never changes: that fast path covers ASCII and Latin-1.
#include "tokenizer/unicode.h"

#include <algorithm>      // std::lower_bound, std::upper_bound
#include <unordered_map>  // std::unordered_map
#include <vector>         // std::vector

namespace sllm::tok {

namespace {

// Valid range of the second byte for each lead byte (Unicode Table 3-7); later continuation bytes are 80..BF.
bool second_byte_ok(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

// Sequence length announced by a lead byte, or 0 if the byte can never start a well-formed sequence.
size_t lead_len(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Number of bytes of s[i..] that form the longest prefix of a well-formed sequence (the lead byte included).
size_t valid_prefix(std::string_view s, size_t i, size_t need) {
  const uint8_t lead = uint8_t(s[i]);
  size_t k = 1;
  while (k < need && i + k < s.size()) {
    const uint8_t b = uint8_t(s[i + k]);
    const bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++k;
  }
  return k;
}

}  // namespace

size_t utf8_decode(std::string_view s, size_t i, uint32_t* cp) {
  if (i >= s.size()) return 0;
  const uint8_t b0 = uint8_t(s[i]);
  const size_t need = lead_len(b0);
  if (need == 0) return 0;
  if (need == 1) {
    *cp = b0;
    return 1;
  }
  if (valid_prefix(s, i, need) != need) return 0;
  uint32_t c = b0 & (0xFF >> (need + 1));
  for (size_t k = 1; k < need; ++k) c = (c << 6) | (uint8_t(s[i + k]) & 0x3F);
  *cp = c;
  return need;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

void append_utf8_lossy(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Copy the longest run of ASCII / valid sequences in one go.
    size_t j = i;
    uint32_t cp;
    while (j < s.size()) {
      const size_t n = utf8_decode(s, j, &cp);
      if (n == 0) break;
      j += n;
    }
    out.append(s.data() + i, j - i);
    if (j >= s.size()) break;
    const size_t need = lead_len(uint8_t(s[j]));
    const size_t bad = need == 0 ? 1 : valid_prefix(s, j, need);
    out.append("\xEF\xBF\xBD");  // U+FFFD
    i = j + bad;
  }
}

bool is_valid_utf8(std::string_view s) {
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_decode(s, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool utf8_incomplete_tail(std::string_view s) {
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    const size_t p = s.size() - k;
    const uint8_t b = uint8_t(s[p]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation byte: look further back for the lead
    const size_t need = lead_len(b);
    return need > k && valid_prefix(s, p, need) == k;
  }
  return false;
}

bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// ------------------------------------------------------------------------------------------------------------
// NFC

namespace {

struct NfcDecomp {
  uint32_t cp, first, second;  // second == 0: singleton decomposition
  uint8_t compose;             // 1: cp is a primary composite of (first, second)
};
struct NfcClass {
  uint32_t lo, hi;
  uint8_t cls;  // canonical combining class of lo..hi
};
#include "tokenizer/nfc_tables.inc"

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  const NfcClass* end = kNfcClass + sizeof(kNfcClass) / sizeof(kNfcClass[0]);
  const NfcClass* it = std::upper_bound(kNfcClass, end, cp, [](uint32_t c, const NfcClass& e) { return c < e.lo; });
  if (it == kNfcClass) return 0;
  --it;
  return cp <= it->hi ? it->cls : 0;
}

const NfcDecomp* find_decomp(uint32_t cp) {
  const NfcDecomp* end = kNfcDecomp + sizeof(kNfcDecomp) / sizeof(kNfcDecomp[0]);
  const NfcDecomp* it = std::lower_bound(kNfcDecomp, end, cp, [](const NfcDecomp& e, uint32_t c) { return e.cp < c; });
  return (it != end && it->cp == cp) ? it : nullptr;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out, int depth = 0) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const NfcDecomp* d = cp >= 0xC0 && depth < 8 ? find_decomp(cp) : nullptr;
  if (!d) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out, depth + 1);
  if (d->second) decompose(d->second, out, depth + 1);
}

// Primary composite of (a, b), or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  static const std::unordered_map<uint64_t, uint32_t> table = [] {
    std::unordered_map<uint64_t, uint32_t> m;
    for (const NfcDecomp& d : kNfcDecomp)
      if (d.compose) m.emplace((uint64_t(d.first) << 32) | d.second, d.cp);
    return m;
  }();
  auto it = table.find((uint64_t(a) << 32) | b);
  return it == table.end() ? 0 : it->second;
}

}  // namespace

std::string nfc(std::string_view s) {
  bool simple = true;
  for (char c : s) simple &= uint8_t(c) < 0xCC;
  if (simple) return std::string(s);

  std::vector<uint32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0xFFFD;
    const size_t n = utf8_decode(s, i, &cp);
    decompose(cp, cps);
    i += n ? n : 1;
  }
  // Canonical ordering: stable insertion sort of each run of non-starters by combining class.
  std::vector<uint8_t> cls(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) cls[i] = ccc(cps[i]);
  for (size_t i = 1; i < cps.size(); ++i) {
    for (size_t j = i; j > 0 && cls[j] != 0 && cls[j - 1] > cls[j]; --j) {
      std::swap(cps[j], cps[j - 1]);
      std::swap(cls[j], cls[j - 1]);
    }
  }
  // Canonical composition (the UAX #15 sample algorithm).
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  size_t starter = 0;
  int last_cls = -1;  // -1: no starter yet
  for (size_t i = 0; i < cps.size(); ++i) {
    const uint32_t c = cps[i];
    const int cc = cls[i];
    if (last_cls >= 0) {
      const bool blocked = !(last_cls < cc || last_cls == 0) || (last_cls == 0 && out.size() - 1 != starter);
      if (!blocked) {
        if (uint32_t comp = compose(out[starter], c)) {
          out[starter] = comp;
          continue;
        }
      }
    }
    if (cc == 0) {
      starter = out.size();
      last_cls = 0;
    } else if (last_cls >= 0) {
      last_cls = cc;
    }
    out.push_back(c);
  }
  std::string r;
  r.reserve(s.size());
  for (uint32_t c : out) utf8_append(r, c);
  return r;
}

}  // namespace sllm::tok
