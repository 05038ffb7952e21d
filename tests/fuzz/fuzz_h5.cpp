// Fuzz target: native .h5 model files, raw bytes (src/formats/h5_model.h, load_h5 in model/bundle.h).
//
// The bytes become a file (memfd) and load_h5 reads it. This feeds arbitrary bytes to the HDF5 C library itself,
// which is NOT hardened against malformed files (it has a long CVE history of out-of-bounds reads and crashes on
// fuzzed files, and the system libhdf5 is not instrumented, so only its crashes, hangs and leaks show). Findings of
// this target inside libhdf5 are reported as such in docs/fuzzing.md; fuzz_h5_fields exercises our own checks on
// well-formed HDF5 containers.
#include "fuzz_util.h"     // MemFile, expect_ok_or_error
#include "model/bundle.h"  // load_h5

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sllm;
  fuzz::MemFile file(data, size, /*named=*/true);
  fuzz::expect_ok_or_error("load_h5", file.path(), [&] {
    const ModelBundle b = load_h5(file.path(), LoadOptions{});
    if (b.tok) (void)b.tok->encode("Hello world");
  });
  return 0;
}
