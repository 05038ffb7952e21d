// streamllm: error handling. Library code throws; only the CLI turns an exception into a message + exit code.
#pragma once
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string

namespace sllm {

// Every recoverable failure (bad file, bad flag, bad shape) is an Error whose message names what is wrong:
// the file, the field or tensor, expected vs. got. One line, no trailing newline.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace sllm

// SLLM_CHECK(cond, msg-expression): throw sllm::Error with the message when cond is false.
#define SLLM_CHECK(cond, msg)                 \
  do {                                        \
    if (!(cond)) throw ::sllm::Error((msg));  \
  } while (0)
