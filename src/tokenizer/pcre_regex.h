// streamllm: a compiled PCRE2 regular expression (UTF + UCP), iterated the way HF tokenizers iterates its
// Oniguruma regexes, so that the split patterns stored in tokenizer.json behave as they do in HF.
#pragma once
#include <cstddef>      // size_t
#include <memory>       // std::shared_ptr
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <utility>      // std::pair
#include <vector>       // std::vector

namespace sllm::tok {

class Regex {
 public:
  // Compiles `pattern` (JIT when available), written for Oniguruma as in tokenizer.json (\s and \S are rewritten
  // to Oniguruma's meaning). `what` names the pattern in the error if it does not compile.
  static std::shared_ptr<const Regex> compile(const std::string& pattern, const std::string& what);
  // Compiles a PCRE2 pattern as is.
  static std::shared_ptr<const Regex> compile_raw(const std::string& pattern, const std::string& what);
  // A pattern that matches `literal` exactly.
  static std::shared_ptr<const Regex> literal(const std::string& literal, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All matches [begin, end) in s, non-overlapping, left to right. An empty match right where the previous match
  // ended is skipped by advancing one character (Oniguruma's FindMatches). s must be valid UTF-8.
  // Thread-safe: each call uses its own match data.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;
  // True if the pattern matches somewhere in s.
  bool search(std::string_view s) const;

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
  std::string what_;
};

}  // namespace sllm::tok
