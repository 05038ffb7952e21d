// streamllm: the native model file, HDF5 (format description: docs/format.md).
//
// One file holds the config (our JSON, model/config_json.h), the tokenizer (HF tokenizer.json text and the chat
// template) and every weight the visitor (model/weights.h) lists, under its HF name. load_h5 is declared in
// model/bundle.h, next to the other formats' loaders, and reached through load_bundle.
#pragma once
#include <cstddef>     // size_t
#include <functional>  // std::function
#include <optional>    // std::optional
#include <string>      // std::string

#include "core/dtype.h"    // DType
#include "model/bundle.h"  // ModelBundle

namespace sllm {

namespace h5 {
class File;
}

// Root attribute "streamllm.format": what the file is. A checkpoint (reserved, written by the trainer) is a model
// file plus /optimizer and /train, so load_h5 reads both as models.
inline constexpr const char* kH5FormatModel = "streamllm-model";
inline constexpr const char* kH5FormatCheckpoint = "streamllm-checkpoint";
// Root attributes "streamllm.version" (major) and "streamllm.version_minor". A reader refuses a newer major
// version; a minor version adds things an older reader either ignores or refuses with a clear error, never
// misreads (1.1's block-format datasets: a 1.0 reader says their opaque type is not a float type).
inline constexpr int kH5VersionMajor = 1;
inline constexpr int kH5VersionMinor = 1;  // 1.1: matrices may be stored in the block formats (q8_0, q4_0, q4_1)

// Writes `b` to `path` atomically: everything goes to `<path>.tmp.<pid>`, which is flushed, closed, fsynced and
// renamed over `path`; on any error (including an exception thrown by `progress`) the temporary is removed and
// an existing file at `path` is untouched. Matrices are stored as `storage` (F32, F16 or BF16, converted with
// round-to-nearest-even, or a block format Q8_0 / Q4_0 / Q4_1, quantised as ggml does), or each in its own dtype
// when `storage` is nullopt (sources such as GGUF mix dtypes);
// norms and biases always as f32. `progress(done, total)` counts tensor bytes written (may be empty). Throws
// sllm::Error naming the file and tensor.
//
// `extra`, when given, writes more objects into the same temporary file after the model (the trainer's
// /optimizer and /train groups); the file is then tagged kH5FormatCheckpoint and is still a loadable model.
void save_h5(const ModelBundle& b, const std::string& path, std::optional<DType> storage,
             const std::function<void(size_t done, size_t total)>& progress = {},
             const std::function<void(const h5::File& f)>& extra = {});

}  // namespace sllm
