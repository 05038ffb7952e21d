// Native HDF5 model loading: see issue "Model files". Until the HDF5 reader lands this refuses clearly.
#include "core/error.h"     // Error
#include "model/bundle.h"   // load_h5

namespace sllm {

ModelBundle load_h5(const std::string& path, const LoadOptions&) {
  throw Error(path + ": streamllm .h5 files are not supported yet");
}

}  // namespace sllm
