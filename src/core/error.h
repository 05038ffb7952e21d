// streamllm: error handling. Library code throws; only the CLI turns an exception into a message + exit code.
#pragma once
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string

namespace sllm {

// Every recoverable failure (bad file, bad flag, bad shape) is an Error whose message names what is wrong:
// the file, the field or tensor, expected vs. got. One line, no trailing newline.
// Control characters (newlines, terminal escapes) that a hostile file put into a name are shown as \xNN, so a
// message always stays one line and can never rewrite the user's terminal.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(escape(what)) {}

 private:
  static std::string escape(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
      if (c < 0x20 || c == 0x7f) {
        static const char* hex = "0123456789ABCDEF";
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
      } else {
        out += char(c);
      }
    }
    return out;
  }
};

}  // namespace sllm

// SLLM_CHECK(cond, msg-expression): throw sllm::Error with the message when cond is false.
#define SLLM_CHECK(cond, msg)                 \
  do {                                        \
    if (!(cond)) throw ::sllm::Error((msg));  \
  } while (0)
