// Link stubs for formats whose reader is not in the tree yet: model/bundle.cpp calls load_gguf and load_h5.
#include <string>  // std::string

#include "core/error.h"    // Error
#include "model/bundle.h"  // load_gguf, load_h5

namespace sllm {

#if !SLLM_FUZZ_HAVE_GGUF
ModelBundle load_gguf(const std::string& path, const LoadOptions&) { throw Error(path + ": GGUF not built"); }
#endif
#if !SLLM_FUZZ_HAVE_H5
ModelBundle load_h5(const std::string& path, const LoadOptions&) { throw Error(path + ": HDF5 not built"); }
#endif

}  // namespace sllm
