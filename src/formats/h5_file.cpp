// The HDF5 C API behind RAII handles and checked calls. See h5_file.h for the contract.
#include "formats/h5_file.h"

#include <algorithm>  // std::replace
#include <cstring>    // std::memchr, strnlen

#include "core/error.h"  // Error

// H5Pset_file_locking appeared in 1.10.7 and 1.12.1.
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || \
    (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 12 && H5_VERS_RELEASE >= 1) || H5_VERSION_GE(1, 13, 0)
#define SLLM_H5_HAS_FILE_LOCKING 1
#endif

namespace sllm::h5 {

std::unique_lock<std::recursive_mutex> lock() {
  static std::recursive_mutex m;
  return std::unique_lock<std::recursive_mutex>(m);
}

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

// The innermost message of HDF5's error stack ("truncated file: eof = ...", "file signature not found"), which is
// the most specific one; the outer frames only say "unable to open file".
herr_t innermost(unsigned, const H5E_error2_t* e, void* data) {
  if (e->desc && e->desc[0]) *static_cast<std::string*>(data) = e->desc;
  return 0;
}

std::string hdf5_detail() {
  std::string msg;
  const hid_t st = H5Eget_current_stack();  // also clears the default stack
  if (st >= 0) {
    H5Ewalk2(st, H5E_WALK_DOWNWARD, innermost, &msg);
    H5Eclose_stack(st);
  }
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  return msg;
}

void check(herr_t r, const std::string& where, const std::string& what) {
  if (r < 0) fail(where, what);
}

Id check(hid_t id, const std::string& where, const std::string& what) {
  if (id < 0) fail(where, what);
  return Id(id);
}

std::string join(const std::string& loc, const std::string& name) {
  return (loc.empty() || loc == "/") ? "/" + name : loc + "/" + name;
}

Id plist(hid_t cls) {
  const hid_t p = H5Pcreate(cls);
  if (p < 0) fail("HDF5", "cannot create a property list");
  return Id(p);
}

Id fapl() {
  Id p = plist(H5P_FILE_ACCESS);
  // SEMI: H5Fclose fails instead of silently keeping the file open when a handle is still open (a bug here).
  H5Pset_fclose_degree(p.get(), H5F_CLOSE_SEMI);
#ifdef SLLM_H5_HAS_FILE_LOCKING
  // Writers never share a file (each writes its own temporary and renames it into place), so HDF5's flock adds
  // nothing but failures on file systems without locks.
  H5Pset_file_locking(p.get(), false, true);
#endif
  return p;
}

// Object creation list shared by groups and datasets: no access/modification times, so output is reproducible.
void no_times(hid_t ocpl) { H5Pset_obj_track_times(ocpl, false); }

// One or more bytes read from a string object (fixed or variable length) of `type` / `space`.
template <class ReadFn>
std::string read_str(const std::string& where, hid_t type, hid_t space, size_t max_bytes, ReadFn&& read) {
  if (H5Tget_class(type) != H5T_STRING) fail(where, "is not a string (" + describe_type(type) + ")");
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n != 1) throw Error(where + ": expected one string, found " + std::to_string(n) + " elements");
  const htri_t var = H5Tis_variable_str(type);
  if (var < 0) fail(where, "cannot read the string type");
  if (var) {
    Id mem = check(H5Tcopy(H5T_C_S1), where, "cannot make a string type");
    check(H5Tset_size(mem.get(), H5T_VARIABLE), where, "cannot make a string type");
    // Same character set as the file (h5py writes UTF-8): HDF5 does not convert between ASCII and UTF-8.
    check(H5Tset_cset(mem.get(), H5Tget_cset(type)), where, "cannot make a string type");
    char* p = nullptr;
    check(read(mem.get(), &p), where, "cannot read the string");
    std::string s;
    const size_t len = p ? strnlen(p, max_bytes + 1) : 0;
    if (len <= max_bytes) s.assign(p ? p : "", len);
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space, H5P_DEFAULT, &p);
#else
    H5Dvlen_reclaim(mem.get(), space, H5P_DEFAULT, &p);
#endif
    if (len > max_bytes) throw Error(where + ": string longer than the limit of " + std::to_string(max_bytes) + " bytes");
    return s;
  }
  const size_t size = H5Tget_size(type);
  if (size == 0) fail(where, "cannot read the string type");
  if (size > max_bytes) throw Error(where + ": string of " + std::to_string(size) + " bytes is longer than the limit of " +
                                    std::to_string(max_bytes) + " bytes");
  std::string s(size, '\0');
  // The file's own type as the memory type: no conversion (HDF5 converts neither ASCII <-> UTF-8 nor needs to).
  check(read(type, s.data()), where, "cannot read the string");
  // Fixed-length strings are padded with NULs (or spaces for H5T_STR_SPACEPAD); drop the padding.
  const H5T_str_t pad = H5Tget_strpad(type);
  const char padc = pad == H5T_STR_SPACEPAD ? ' ' : '\0';
  if (pad == H5T_STR_NULLTERM) {
    if (const void* z = std::memchr(s.data(), '\0', s.size())) s.resize(size_t(static_cast<const char*>(z) - s.data()));
  } else {
    while (!s.empty() && s.back() == padc) s.pop_back();
  }
  return s;
}

Id string_type(size_t len) {
  Id t = check(H5Tcopy(H5T_C_S1), "HDF5", "cannot make a string type");
  check(H5Tset_size(t.get(), std::max<size_t>(len, 1)), "HDF5", "cannot size a string type");
  check(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "HDF5", "cannot make a string type");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "HDF5", "cannot make a string type");
  return t;
}

}  // namespace

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  const std::string d = hdf5_detail();
  throw Error(where + ": " + what + (d.empty() ? std::string() : " (HDF5: " + d + ")"));
}

Id& Id::operator=(Id&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

bool Id::reset() {
  if (id_ < 0) return true;
  herr_t r = 0;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: r = H5Fclose(id_); break;
    case H5I_GROUP: r = H5Gclose(id_); break;
    case H5I_DATASET: r = H5Dclose(id_); break;
    case H5I_DATATYPE: r = H5Tclose(id_); break;
    case H5I_DATASPACE: r = H5Sclose(id_); break;
    case H5I_ATTR: r = H5Aclose(id_); break;
    case H5I_GENPROP_LST: r = H5Pclose(id_); break;
    case H5I_ERROR_STACK: r = H5Eclose_stack(id_); break;
    default: r = H5Idec_ref(id_); break;
  }
  id_ = H5I_INVALID_HID;
  return r >= 0;
}

// ---- files ----

File File::create(const std::string& path) {
  quiet();
  Id fa = fapl();
  // v1.8 object formats: superblock v2 and v2 object headers carry checksums, so a damaged header is detected
  // rather than misread; HDF5 1.8 and later read them.
  check(H5Pset_libver_bounds(fa.get(), H5F_LIBVER_V18, H5F_LIBVER_V18), path, "cannot set the format version bounds");
  // Every allocation on a 64-byte boundary, and no sub-allocation of small raw data from a shared block (which
  // would defeat the alignment): contiguous tensors can then be memory-mapped as aligned arrays.
  check(H5Pset_alignment(fa.get(), 1, 64), path, "cannot set the alignment");
  check(H5Pset_small_data_block_size(fa.get(), 0), path, "cannot set the small data block size");
  Id fc = plist(H5P_FILE_CREATE);
  no_times(fc.get());
  File f;
  f.path_ = path;
  f.id_ = check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fc.get(), fa.get()), path, "cannot create the HDF5 file");
  return f;
}

static File open_file(const std::string& path, unsigned flags) {
  quiet();
  Id fa = fapl();
  const hid_t id = H5Fopen(path.c_str(), flags, fa.get());
  if (id < 0) {
    const std::string d = hdf5_detail();
    if (d.find("signature") != std::string::npos) throw Error(path + ": not an HDF5 file (" + d + ")");
    throw Error(path + ": cannot open as an HDF5 file" + (d.empty() ? std::string() : " (HDF5: " + d + ")"));
  }
  return File::adopt(Id(id), path);
}

File File::adopt(Id id, const std::string& path) {
  File f;
  f.id_ = std::move(id);
  f.path_ = path;
  return f;
}

File File::open_read(const std::string& path) { return open_file(path, H5F_ACC_RDONLY); }
File File::open_rw(const std::string& path) { return open_file(path, H5F_ACC_RDWR); }

void File::flush_and_close() {
  check(H5Fflush(id_.get(), H5F_SCOPE_GLOBAL), path_, "cannot flush the HDF5 file");
  if (!id_.reset()) fail(path_, "cannot close the HDF5 file");
}

uint64_t File::userblock() const {
  Id fc = check(H5Fget_create_plist(id_.get()), path_, "cannot read the file creation properties");
  hsize_t ub = 0;
  check(H5Pget_userblock(fc.get(), &ub), path_, "cannot read the user block size");
  return uint64_t(ub);
}

// ---- groups and links ----

Id create_group(const File& f, hid_t loc, const std::string& name, bool track_order) {
  Id gc = plist(H5P_GROUP_CREATE);
  no_times(gc.get());
  if (track_order) H5Pset_link_creation_order(gc.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  return check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, gc.get(), H5P_DEFAULT), f.path() + ":/" + name,
               "cannot create the group");
}

bool exists(const File& f, hid_t loc, const std::string& name) {
  const htri_t r = H5Lexists(loc, name.c_str(), H5P_DEFAULT);
  if (r < 0) fail(f.path() + ": '" + name + "'", "cannot look up the link");
  if (r == 0) return false;
  // Only hard links: a soft or external link could point into another file, which a model file must never do.
  H5L_info_t li;
  if (H5Lget_info(loc, name.c_str(), &li, H5P_DEFAULT) < 0) fail(f.path() + ": '" + name + "'", "cannot read the link");
  if (li.type != H5L_TYPE_HARD)
    throw Error(f.path() + ": '" + name + "' is a soft or external link (only objects stored in the file are read)");
  return true;
}

Id open_group(const File& f, hid_t loc, const std::string& name) {
  Id g = check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), f.path() + ": '" + name + "'", "cannot open the group");
  return g;
}

Id open_dataset(const File& f, hid_t loc, const std::string& loc_path, const std::string& name) {
  return check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), f.path() + ":" + join(loc_path, name),
               "cannot open the dataset");
}

namespace {
struct ListState {
  std::vector<std::string>* out;
  size_t limit;
};
herr_t collect(hid_t, const char* name, const H5L_info_t*, void* data) {
  auto* st = static_cast<ListState*>(data);
  if (st->out->size() >= st->limit) return 1;  // stop: too many links for a model file
  st->out->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> list(const File& f, hid_t group, const std::string& group_path) {
  std::vector<std::string> names;
  ListState st{&names, size_t(1) << 22};
  hsize_t idx = 0;
  const herr_t r = H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &st);
  if (r < 0) fail(f.path() + ":" + group_path, "cannot list the group");
  if (r > 0) throw Error(f.path() + ":" + group_path + ": more than " + std::to_string(st.limit) + " links");
  return names;
}

uint64_t count(const File& f, hid_t group, const std::string& group_path) {
  H5G_info_t gi;
  check(H5Gget_info(group, &gi), f.path() + ":" + group_path, "cannot read the group");
  return uint64_t(gi.nlinks);
}

void unlink(const File& f, hid_t loc, const std::string& name) {
  check(H5Ldelete(loc, name.c_str(), H5P_DEFAULT), f.path() + ": '" + name + "'", "cannot delete the link");
}

H5I_type_t kind(hid_t obj) { return H5Iget_type(obj); }

// ---- attributes ----

bool has_attr(const File& f, hid_t obj, const std::string& name) {
  const htri_t r = H5Aexists(obj, name.c_str());
  if (r < 0) fail(f.path(), "cannot look up the attribute '" + name + "'");
  return r > 0;
}

namespace {
Id fresh_attr(const File& f, hid_t obj, const std::string& where, const std::string& name, hid_t type) {
  if (has_attr(f, obj, name)) check(H5Adelete(obj, name.c_str()), where, "cannot replace the attribute '" + name + "'");
  Id sp = check(H5Screate(H5S_SCALAR), where, "cannot make a dataspace");
  return check(H5Acreate2(obj, name.c_str(), type, sp.get(), H5P_DEFAULT, H5P_DEFAULT), where,
               "cannot create the attribute '" + name + "'");
}
}  // namespace

void write_attr(const File& f, hid_t obj, const std::string& obj_path, const std::string& name, const std::string& v) {
  const std::string where = f.path() + ":" + obj_path;
  Id t = string_type(v.size());
  Id a = fresh_attr(f, obj, where, name, t.get());
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  check(H5Awrite(a.get(), t.get(), buf.data()), where, "cannot write the attribute '" + name + "'");
}

void write_attr(const File& f, hid_t obj, const std::string& obj_path, const std::string& name, int64_t v) {
  const std::string where = f.path() + ":" + obj_path;
  Id a = fresh_attr(f, obj, where, name, H5T_STD_I64LE);
  check(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), where, "cannot write the attribute '" + name + "'");
}

std::optional<std::string> read_string_attr(const File& f, hid_t obj, const std::string& obj_path,
                                            const std::string& name, size_t max_bytes) {
  if (!has_attr(f, obj, name)) return std::nullopt;
  const std::string where = f.path() + ":" + obj_path + ": attribute '" + name + "'";
  Id a = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where, "cannot open");
  Id t = check(H5Aget_type(a.get()), where, "cannot read the type");
  Id sp = check(H5Aget_space(a.get()), where, "cannot read the dataspace");
  return read_str(where, t.get(), sp.get(), max_bytes,
                  [&](hid_t mem, void* buf) { return H5Aread(a.get(), mem, buf); });
}

std::optional<int64_t> read_int_attr(const File& f, hid_t obj, const std::string& obj_path, const std::string& name) {
  if (!has_attr(f, obj, name)) return std::nullopt;
  const std::string where = f.path() + ":" + obj_path + ": attribute '" + name + "'";
  Id a = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where, "cannot open");
  Id t = check(H5Aget_type(a.get()), where, "cannot read the type");
  Id sp = check(H5Aget_space(a.get()), where, "cannot read the dataspace");
  if (H5Tget_class(t.get()) != H5T_INTEGER) throw Error(where + ": expected an integer, found " + describe_type(t.get()));
  if (H5Sget_simple_extent_npoints(sp.get()) != 1) throw Error(where + ": expected a single integer");
  int64_t v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), where, "cannot read");
  return v;
}

// ---- string datasets ----

void write_string(const File& f, hid_t loc, const std::string& loc_path, const std::string& name, const std::string& v) {
  const std::string where = f.path() + ":" + join(loc_path, name);
  Id t = string_type(v.size());
  Id sp = check(H5Screate(H5S_SCALAR), where, "cannot make a dataspace");
  Id dc = plist(H5P_DATASET_CREATE);
  no_times(dc.get());
  Id d = check(H5Dcreate2(loc, name.c_str(), t.get(), sp.get(), H5P_DEFAULT, dc.get(), H5P_DEFAULT), where,
               "cannot create the dataset");
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  check(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), where, "cannot write the dataset");
}

std::string read_string(const File& f, hid_t loc, const std::string& loc_path, const std::string& name,
                        size_t max_bytes) {
  const std::string where = f.path() + ":" + join(loc_path, name);
  Id d = open_dataset(f, loc, loc_path, name);
  Id t = check(H5Dget_type(d.get()), where, "cannot read the type");
  Id sp = check(H5Dget_space(d.get()), where, "cannot read the dataspace");
  return read_str(where, t.get(), sp.get(), max_bytes, [&](hid_t mem, void* buf) {
    return H5Dread(d.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  });
}

// ---- float tensors ----

namespace {
struct FloatLayout {
  DType t;
  size_t size, spos, epos, esize, mpos, msize, ebias;
};
// IEEE binary32, IEEE binary16 and bfloat16 (binary32's sign and exponent, top 7 mantissa bits), little-endian.
constexpr FloatLayout kFloats[] = {
    {DType::F32, 4, 31, 23, 8, 0, 23, 127},
    {DType::F16, 2, 15, 10, 5, 0, 10, 15},
    {DType::BF16, 2, 15, 7, 8, 0, 7, 127},
};
}  // namespace

Id float_type(DType t) {
  for (const auto& L : kFloats) {
    if (L.t != t) continue;
    Id ft = check(H5Tcopy(H5T_IEEE_F32LE), "HDF5", "cannot copy a float type");
    if (t != DType::F32) {
      // Order matters: fields first (they fit in 32 bits), then shrink to 2 bytes (precision follows), then bias.
      check(H5Tset_fields(ft.get(), L.spos, L.epos, L.esize, L.mpos, L.msize), "HDF5", "cannot make a float type");
      check(H5Tset_size(ft.get(), L.size), "HDF5", "cannot make a float type");
      check(H5Tset_ebias(ft.get(), L.ebias), "HDF5", "cannot make a float type");
    }
    return ft;
  }
  throw Error(std::string("HDF5: no float type for dtype ") + dtype_name(t));
}

// Block formats: an opaque element of one block's bytes, tagged with the format's name, in a dataset of shape
// (rows, K / 32) blocks. The tag is what h5dump prints; docs/format.md gives the block layouts.
const char* block_tag(DType t) {
  switch (t) {
    case DType::Q8_0: return "streamllm.ggml.q8_0";
    case DType::Q4_0: return "streamllm.ggml.q4_0";
    case DType::Q4_1: return "streamllm.ggml.q4_1";
    default: return nullptr;
  }
}

Id tensor_type(DType t) {
  if (!is_quantized(t)) return float_type(t);
  Id ot = check(H5Tcreate(H5T_OPAQUE, dtype_block_bytes(t)), "HDF5", "cannot make an opaque type");
  check(H5Tset_tag(ot.get(), block_tag(t)), "HDF5", "cannot tag an opaque type");
  return ot;
}

std::optional<DType> classify_block(hid_t type) {
  if (H5Tget_class(type) != H5T_OPAQUE) return std::nullopt;
  char* tag = H5Tget_tag(type);
  if (!tag) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  const std::string s(tag);
  H5free_memory(tag);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1})
    if (s == block_tag(t) && H5Tget_size(type) == dtype_block_bytes(t)) return t;
  return std::nullopt;
}

Shape stored_shape(DType t, const Shape& shape) {
  Shape s = shape;
  if (is_quantized(t)) s.d[size_t(s.ndim - 1)] /= kQuantBlock;
  return s;
}

std::optional<DType> classify_float(hid_t type) {
  if (H5Tget_class(type) != H5T_FLOAT || H5Tget_order(type) != H5T_ORDER_LE) return std::nullopt;
  size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) return std::nullopt;
  const size_t size = H5Tget_size(type), prec = H5Tget_precision(type), ebias = H5Tget_ebias(type);
  if (H5Tget_offset(type) != 0 || H5Tget_norm(type) != H5T_NORM_IMPLIED || prec != size * 8) return std::nullopt;
  for (const auto& L : kFloats)
    if (size == L.size && spos == L.spos && epos == L.epos && esize == L.esize && mpos == L.mpos &&
        msize == L.msize && ebias == L.ebias)
      return L.t;
  return std::nullopt;
}

std::string describe_type(hid_t type) {
  const size_t bits = H5Tget_size(type) * 8;
  const char* be = H5Tget_order(type) == H5T_ORDER_BE ? " big-endian" : "";
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      if (auto d = classify_float(type)) return dtype_name(*d);
      return std::to_string(bits) + "-bit float" + be;
    case H5T_INTEGER: return std::to_string(bits) + "-bit integer" + be;
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_OPAQUE: return "opaque";
    case H5T_ARRAY: return "array";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    default: return "unknown type";
  }
}

Id create_tensor(const File& f, hid_t loc, const std::string& loc_path, const std::string& name, DType t,
                 const Shape& shape) {
  const std::string where = f.path() + ":" + join(loc_path, name);
  const Shape st = stored_shape(t, shape);
  hsize_t dims[kMaxDims];
  for (int i = 0; i < st.ndim; ++i) dims[i] = hsize_t(st[i]);
  Id sp = check(H5Screate_simple(st.ndim, dims, nullptr), where, "cannot make a dataspace");
  Id dc = plist(H5P_DATASET_CREATE);
  no_times(dc.get());
  check(H5Pset_layout(dc.get(), H5D_CONTIGUOUS), where, "cannot set the layout");
  check(H5Pset_fill_time(dc.get(), H5D_FILL_TIME_NEVER), where, "cannot set the fill time");  // written once
  Id ft = tensor_type(t);
  return check(H5Dcreate2(loc, name.c_str(), ft.get(), sp.get(), H5P_DEFAULT, dc.get(), H5P_DEFAULT), where,
               "cannot create the dataset");
}

void write_rows(const Where& w, hid_t dset, DType t, const Shape& shape, int64_t row0, int64_t nrows,
                const void* data) {
  hsize_t start[kMaxDims] = {}, count[kMaxDims];
  const Shape st = stored_shape(t, shape);
  for (int i = 0; i < st.ndim; ++i) count[i] = hsize_t(st[i]);
  start[0] = hsize_t(row0);
  count[0] = hsize_t(nrows);
  Id fs = check(H5Dget_space(dset), w.str(), "cannot read the dataspace");
  check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), w.str(), "cannot select rows");
  Id ms = check(H5Screate_simple(st.ndim, count, nullptr), w.str(), "cannot make a dataspace");
  Id mt = tensor_type(t);
  check(H5Dwrite(dset, mt.get(), ms.get(), fs.get(), H5P_DEFAULT, data), w.str(), "cannot write the data");
}

TensorInfo tensor_info(const Where& w, hid_t dset) {
  TensorInfo info;
  Id sp = check(H5Dget_space(dset), w.str(), "cannot read the dataspace");
  if (H5Sget_simple_extent_type(sp.get()) != H5S_SIMPLE) throw Error(w.str() + ": not an array (scalar or empty dataspace)");
  const int nd = H5Sget_simple_extent_ndims(sp.get());
  if (nd < 1 || nd > kMaxDims) throw Error(w.str() + ": rank " + std::to_string(nd) + " is not supported (1 to 4)");
  hsize_t dims[kMaxDims];
  check(H5Sget_simple_extent_dims(sp.get(), dims, nullptr), w.str(), "cannot read the dims");
  info.shape.ndim = nd;
  for (int i = 0; i < nd; ++i) {
    if (dims[i] > hsize_t(1) << 40) throw Error(w.str() + ": dimension " + std::to_string(dims[i]) + " is too large");
    info.shape.d[size_t(i)] = int64_t(dims[i]);
  }
  Id t = check(H5Dget_type(dset), w.str(), "cannot read the type");
  info.is_float = H5Tget_class(t.get()) == H5T_FLOAT;
  info.exact = classify_float(t.get());
  info.type_desc = describe_type(t.get());
  if (const auto q = classify_block(t.get())) {  // (rows, blocks) of a block format: the tensor is (rows, 32 blocks)
    info.exact = q;
    info.is_float = true;
    info.type_desc = dtype_name(*q);
    int64_t& last = info.shape.d[size_t(nd - 1)];
    if (last > (int64_t(1) << 40) / kQuantBlock) throw Error(w.str() + ": dimension " + std::to_string(last) + " is too large");
    last *= kQuantBlock;
  }

  Id dc = check(H5Dget_create_plist(dset), w.str(), "cannot read the dataset properties");
  const H5D_layout_t layout = H5Pget_layout(dc.get());
  // External raw data files and virtual datasets read other files named inside this one: never for a model file.
  if (layout == H5D_VIRTUAL) throw Error(w.str() + ": virtual datasets are not allowed in a model file");
  if (H5Pget_external_count(dc.get()) != 0)
    throw Error(w.str() + ": data stored in external files is not allowed in a model file");
  H5D_space_status_t status;
  check(H5Dget_space_status(dset, &status), w.str(), "cannot read the allocation status");
  // Chunked datasets may report PART_ALLOCATED even when every element was written; only "nothing stored" is
  // refused (it would read as fill values).
  info.allocated = status != H5D_SPACE_STATUS_NOT_ALLOCATED;
  if (layout == H5D_CONTIGUOUS && H5Pget_nfilters(dc.get()) == 0 && status == H5D_SPACE_STATUS_ALLOCATED) {
    const haddr_t off = H5Dget_offset(dset);
    if (off != HADDR_UNDEF) info.contiguous_offset = uint64_t(off);
    else H5Eclear2(H5E_DEFAULT);
  }
  return info;
}

void read_all(const Where& w, hid_t dset, DType as, void* dst) {
  Id mt = tensor_type(as);
  check(H5Dread(dset, mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, dst), w.str(), "cannot read the data");
}

}  // namespace sllm::h5
