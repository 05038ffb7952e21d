// Fuzz target: GGUF (src/formats/gguf.h). The bytes become a file (memfd) and go through the whole import:
//   1. GgufFile::open (header, metadata, tensor infos, data section checks); every metadata value is then read
//      through the typed getters and every tensor's bytes are compared with the input at the offset the file
//      names (an oracle for the view arithmetic) and dequantised when small;
//   2. tokenizer_json_from_gguf and Tokenizer::from_json_string on its output, when tokenizer.ggml.model is set;
//   3. load_gguf (config from llama.* metadata, weights through the visitor, Q/K un-permutation).
#include <cstring>  // std::memcmp
#include <vector>   // std::vector

#include "formats/gguf.h"         // GgufFile, tokenizer_json_from_gguf, dequantize
#include "fuzz_util.h"            // MemFile, expect_ok_or_error, touch
#include "model/bundle.h"         // load_gguf
#include "tokenizer/tokenizer.h"  // Tokenizer

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sllm;
  fuzz::MemFile file(data, size);
  bool opened = false;
  fuzz::expect_ok_or_error("gguf open", file.path(), [&] {
    const gguf::GgufFile f = gguf::GgufFile::open(file.path());
    opened = true;
    for (const auto& kv : f.metadata()) {
      const std::string& key = kv.first;
      // Each getter either returns or refuses with an Error; none may do anything else.
      fuzz::expect_ok_or_error("get_int", file.path(), [&] { (void)f.get_int(key, INT64_MIN, INT64_MAX); });
      fuzz::expect_ok_or_error("get_float", file.path(), [&] { (void)f.get_float(key); });
      fuzz::expect_ok_or_error("get_string", file.path(), [&] { (void)f.get_string(key); });
      fuzz::expect_ok_or_error("get_bool", file.path(), [&] { (void)f.get_bool(key, false); });
      fuzz::expect_ok_or_error("get_strings", file.path(), [&] { (void)f.get_strings(key); });
      fuzz::expect_ok_or_error("get_f32s", file.path(), [&] { (void)f.get_f32s(key); });
      fuzz::expect_ok_or_error("get_i32s", file.path(), [&] { (void)f.get_i32s(key); });
    }
    std::vector<float> tmp;
    for (const gguf::TensorInfo& t : f.tensors()) {
      const uint64_t at = f.data_offset() + t.offset;
      if (at > size || t.nbytes > size - at || std::memcmp(t.data, data + at, size_t(t.nbytes)) != 0) {
        std::fprintf(stderr, "FINDING: tensor '%s' view does not match the file bytes at its offset\n", t.name.c_str());
        std::abort();
      }
      fuzz::touch(t.data, size_t(t.nbytes));
      (void)t.shape();
      if (t.numel() <= (int64_t(1) << 16)) {
        tmp.resize(size_t(t.numel()));
        gguf::dequantize(t.type, t.data, t.numel(), tmp.data());
      }
    }
    if (f.has("tokenizer.ggml.model")) {
      fuzz::expect_ok_or_error("gguf tokenizer", file.path(), [&] {
        const std::string tj = gguf::tokenizer_json_from_gguf(f);
        const Tokenizer tok = Tokenizer::from_json_string(tj, file.path() + " (tokenizer.ggml.*)");
        fuzz::expect_ok_or_error("encode", "",
                                 [&] { (void)tok.decode(tok.encode("Hello world, caf\xc3\xa9 123", true)); });
      });
    }
  });
  if (opened)
    fuzz::expect_ok_or_error("load_gguf", file.path(), [&] { (void)load_gguf(file.path(), LoadOptions{}); });
  return 0;
}
