// streamllm: a thin RAII + error-checked layer over the HDF5 C API (serial libhdf5 1.10 or newer).
//
// Every HDF5 call that can fail is checked; a failure becomes one sllm::Error line
//   "<file>:<object>: <what we tried> (HDF5: <innermost message of HDF5's error stack>)"
// and HDF5's own stderr printing is switched off (H5Eset_auto). Handles (hid_t) are owned by `Id`, which closes
// them with the right H5*close function, so an exception on any path leaks nothing and a file is really closed
// when its last handle goes.
//
// Serial HDF5 is not thread-safe: hold `h5::lock()` around any sequence of calls (save_h5 / load_h5 do).
// Only what the native model format (formats/h5_model.cpp, docs/format.md) needs is here.
#pragma once
#include <hdf5.h>  // hid_t, herr_t, H5*

#include <cstdint>   // int64_t
#include <mutex>     // std::recursive_mutex, std::unique_lock
#include <optional>  // std::optional
#include <string>    // std::string
#include <vector>    // std::vector

#include "core/dtype.h"   // DType
#include "core/tensor.h"  // Shape

namespace sllm::h5 {

// Serialises all HDF5 use in the process (the serial library keeps global state). Recursive: nested is fine.
std::unique_lock<std::recursive_mutex> lock();

// Turns HDF5's automatic error printing off (idempotent; every entry point calls it).
void quiet();

// Throws sllm::Error "<where>: <what> (HDF5: <innermost message>)" and clears HDF5's error stack.
[[noreturn]] void fail(const std::string& where, const std::string& what);

// An owned HDF5 identifier. Move-only; closes with the function matching its kind.
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Id& operator=(Id&& o) noexcept;
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns false when HDF5 reports a failure (the handle is gone either way).
  bool reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// A file (the root group is the file id itself). `path` names the file in every error.
class File {
 public:
  // Creates (truncating) a file for writing: libver bounds v1.8 (superblock v2 and object headers with checksums,
  // readable by HDF5 >= 1.8), 64-byte aligned raw data (so contiguous tensors can be memory-mapped), no object
  // timestamps (two writes of the same model give identical bytes), no file locking (writes go to a private
  // temporary file; see h5_model.cpp).
  static File create(const std::string& path);
  static File open_read(const std::string& path);
  static File open_rw(const std::string& path);  // tests and tools that patch a file in place
  static File adopt(Id id, const std::string& path);

  hid_t id() const { return id_.get(); }
  const std::string& path() const { return path_; }
  // Writes HDF5's caches to the OS (H5Fflush) and closes; throws on failure. The destructor closes quietly.
  void flush_and_close();
  // Size of the user block before the HDF5 superblock (0 for files we write).
  uint64_t userblock() const;

 private:
  Id id_;
  std::string path_;
};

// Error context for objects inside a file: "<file>" + ":" + "<object path>" in messages.
struct Where {
  const File& f;
  std::string obj;  // "/weights/model.norm.weight"
  std::string str() const { return f.path() + ":" + obj; }
};

// ---- groups and links ----
Id create_group(const File& f, hid_t loc, const std::string& name, bool track_order);
Id open_group(const File& f, hid_t loc, const std::string& name);
Id open_dataset(const File& f, hid_t loc, const std::string& loc_path, const std::string& name);
// True when `loc` has a link `name` (one path component) that resolves to an object.
bool exists(const File& f, hid_t loc, const std::string& name);
// Names of the links in a group, in the group's name order. Not for untrusted files: libhdf5 1.10 frees an
// uninitialised pointer when a damaged link table fails to decode (found by fuzzing under ASan). Loaders count
// links with `count` instead.
std::vector<std::string> list(const File& f, hid_t group, const std::string& group_path);
// Number of links in a group (read from the group's link info; no link is decoded).
uint64_t count(const File& f, hid_t group, const std::string& group_path);
void unlink(const File& f, hid_t loc, const std::string& name);
// H5I type of an open object (H5I_GROUP, H5I_DATASET, ...).
H5I_type_t kind(hid_t obj);

// ---- attributes ----
bool has_attr(const File& f, hid_t obj, const std::string& name);
void write_attr(const File& f, hid_t obj, const std::string& obj_path, const std::string& name, const std::string& v);
void write_attr(const File& f, hid_t obj, const std::string& obj_path, const std::string& name, int64_t v);
// Reads a string attribute (fixed or variable length, as h5py writes it); nullopt when absent. Refuses values
// longer than max_bytes before allocating.
std::optional<std::string> read_string_attr(const File& f, hid_t obj, const std::string& obj_path,
                                            const std::string& name, size_t max_bytes = 1 << 16);
// Reads a scalar (or one-element) integer attribute of any integer type; nullopt when absent.
std::optional<int64_t> read_int_attr(const File& f, hid_t obj, const std::string& obj_path, const std::string& name);

// ---- string datasets (scalar, UTF-8) ----
void write_string(const File& f, hid_t loc, const std::string& loc_path, const std::string& name, const std::string& v);
std::string read_string(const File& f, hid_t loc, const std::string& loc_path, const std::string& name,
                        size_t max_bytes);

// ---- float tensors ----
// File/memory type for F32 / F16 / BF16, little-endian. F16 and BF16 are HDF5 custom float types (bit layout
// described in docs/format.md), so h5dump and h5py read them as numbers and HDF5 converts them to f32 on request.
Id float_type(DType t);
// Which of our three types `type` is exactly (bit-identical layout, little-endian); nullopt for any other type.
std::optional<DType> classify_float(hid_t type);
// File/memory type of any tensor dtype: float_type, or for a block format (Q8_0 / Q4_0 / Q4_1) an opaque element
// of one block's bytes tagged "streamllm.ggml.<name>"; such a dataset's last dimension counts blocks (K / 32).
Id tensor_type(DType t);
// The block format an opaque type is (tag and size), or nullopt.
std::optional<DType> classify_block(hid_t type);
// "f32", "f64 big-endian", "32-bit integer", ... for messages.
std::string describe_type(hid_t type);

// Creates a contiguous dataset of `shape` with element type `t`, fill writing off, no timestamps.
Id create_tensor(const File& f, hid_t loc, const std::string& loc_path, const std::string& name, DType t,
                 const Shape& shape);
// Writes rows [row0, row0 + nrows) of a dataset whose first dimension is rows (a vector: elements). `data` is in
// the dataset's own type `t`.
void write_rows(const Where& w, hid_t dset, DType t, const Shape& shape, int64_t row0, int64_t nrows,
                const void* data);

struct TensorInfo {
  Shape shape;                   // the tensor's dims (a block format: last dim = stored blocks x 32; rank <= kMaxDims)
  std::optional<DType> exact;    // one of our types bit for bit, or nullopt (then read with conversion)
  bool is_float = false;         // H5T_FLOAT class or a block format (only those are tensors)
  std::string type_desc;         // for messages
  // Set when the data is one contiguous, unfiltered, allocated block at this absolute file offset, so it can be
  // memory-mapped instead of read.
  std::optional<uint64_t> contiguous_offset;
  bool allocated = false;        // some storage exists (a dataset never written reads as fill values: refused)
};
TensorInfo tensor_info(const Where& w, hid_t dset);
// Reads the whole dataset into dst as `as` (HDF5 converts other float types; `as` must be one of ours; a block
// format is read as itself only).
void read_all(const Where& w, hid_t dset, DType as, void* dst);

}  // namespace sllm::h5
