// streamllm: the small amount of Unicode the tokenizer needs: UTF-8 decoding with the "maximal subpart"
// replacement rule (what Rust's String::from_utf8_lossy and Python's errors="replace" do), the White_Space
// property, and NFC normalization (tables generated from Python's unicodedata into nfc_tables.inc).
#pragma once
#include <cstddef>      // size_t
#include <cstdint>      // uint32_t, uint8_t
#include <string>       // std::string
#include <string_view>  // std::string_view

namespace sllm::tok {

// Decodes the code point starting at s[i] if s[i..] begins with a well-formed UTF-8 sequence; returns its length
// in bytes (1-4), or 0 if ill-formed there (then *cp is untouched).
size_t utf8_decode(std::string_view s, size_t i, uint32_t* cp);
// Appends the UTF-8 encoding of cp (cp must be a Unicode scalar value).
void utf8_append(std::string& out, uint32_t cp);
// Length of the UTF-8 sequence introduced by lead byte b in a *valid* string (1 for continuation bytes).
inline size_t utf8_len_valid(uint8_t b) { return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

// Appends bytes to out, replacing every maximal ill-formed subpart by U+FFFD (Rust from_utf8_lossy semantics).
void append_utf8_lossy(std::string& out, std::string_view bytes);
bool is_valid_utf8(std::string_view s);
// True when s ends with a proper prefix of a well-formed UTF-8 sequence, i.e. more bytes could complete it.
bool utf8_incomplete_tail(std::string_view s);

// Unicode White_Space property (Rust char::is_whitespace, regex \s).
bool is_white_space(uint32_t cp);

// NFC (canonical decomposition, canonical ordering, canonical composition). Input must be valid UTF-8.
std::string nfc(std::string_view s);

}  // namespace sllm::tok
