// Fuzz target: safetensors (src/formats/safetensors.h). The bytes become a file (memfd), SafetensorsArchive::open
// maps and checks it; every tensor the archive accepts is then read in full and compared with the input bytes at
// the offsets its header names (an independent oracle for the pointer arithmetic: a view one byte off, or past the
// end of the file, is a finding even where the page tail would hide it from the sanitizers).
#include <cstring>            // std::memcmp
#include <nlohmann/json.hpp>  // nlohmann::json

#include "formats/safetensors.h"  // SafetensorsArchive
#include "fuzz_util.h"            // MemFile, expect_ok_or_error, touch

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sllm;
  fuzz::MemFile file(data, size);
  fuzz::expect_ok_or_error("safetensors", file.path(), [&] {
    const SafetensorsArchive a = SafetensorsArchive::open(file.path());
    // Accepted: the header is a JSON object and every entry was checked. Re-read it here, independently.
    uint64_t hlen = 0;
    std::memcpy(&hlen, data, 8);
    const size_t data_start = 8 + size_t(hlen);
    const auto h = nlohmann::json::parse(data + 8, data + data_start);
    size_t total = 0;
    for (const std::string& name : a.names()) {
      const Tensor t = a.get(name);
      if (a.where(name) != file.path()) std::abort();
      const size_t bytes = t.bytes();
      const uint64_t b = h.at(name).at("data_offsets").at(0).get<uint64_t>();
      if (data_start + b + bytes > size || (bytes && std::memcmp(t.data, data + data_start + b, bytes) != 0)) {
        std::fprintf(stderr, "FINDING: tensor '%s' view does not match the file bytes at its offsets\n", name.c_str());
        std::abort();
      }
      fuzz::touch(t.data, bytes);
      total += bytes;
    }
    if (total > size || a.total_bytes() != size) std::abort();
  });
  return 0;
}
