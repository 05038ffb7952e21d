// GGUF model loading: see issue "Model files". Until the GGUF reader lands this refuses clearly.
#include "core/error.h"     // Error
#include "model/bundle.h"   // load_gguf

namespace sllm {

ModelBundle load_gguf(const std::string& path, const LoadOptions&) {
  throw Error(path + ": GGUF files are not supported yet");
}

}  // namespace sllm
