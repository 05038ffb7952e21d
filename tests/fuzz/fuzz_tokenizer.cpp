// Fuzz target: tokenizer.json (tokenizer/tokenizer.h). Tokenizer::from_json_string on the bytes; an accepted
// tokenizer then encodes a short fixed text (ASCII, digits, spaces, accents, CJK, an emoji, invalid UTF-8),
// decodes the ids and every id below a bound, and streams them through StreamDecoder. encode may refuse a character
// with an sllm::Error (unk_token missing from the vocab, as HF does); decode must always give valid UTF-8.
#include <algorithm>  // std::min
#include <vector>     // std::vector

#include "fuzz_util.h"            // expect_ok_or_error
#include "tokenizer/tokenizer.h"  // Tokenizer, StreamDecoder
#include "tokenizer/unicode.h"    // tok::is_valid_utf8

namespace {

const char kText[] = "Hello, world!  It's 2024: 12345 caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac "
                     "\xf0\x9f\x98\x80 \xff\xfe <s> </s> <|endoftext|>\n\ttabs";

void check_utf8(const std::string& s) {
  if (!sllm::tok::is_valid_utf8(s)) {
    std::fprintf(stderr, "FINDING: decode produced invalid UTF-8\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sllm;
  const std::string json(reinterpret_cast<const char*>(data), size);
  fuzz::expect_ok_or_error("tokenizer.json", "tokenizer.json", [&] {
    const Tokenizer t = Tokenizer::from_json_string(json, "tokenizer.json");
    const int32_t nv = t.vocab_size();
    for (bool special : {false, true}) {
      fuzz::expect_ok_or_error("encode", "", [&] {
        const std::vector<int32_t> ids = t.encode(kText, special);
        for (int32_t id : ids)
          if (id < 0 || id >= nv) {
            std::fprintf(stderr, "FINDING: encode gave id %d outside [0, %d)\n", id, nv);
            std::abort();
          }
        check_utf8(t.decode(ids, special));
      });
    }
    std::vector<int32_t> all;
    for (int32_t id = -2; id < std::min(nv + 2, 300); ++id) all.push_back(id);
    check_utf8(t.decode(all, false));
    check_utf8(t.decode(all, true));
    StreamDecoder sd(t);
    std::string streamed;
    for (int32_t id : all) streamed += sd.push(id);
    streamed += sd.flush();
    check_utf8(streamed);
    (void)t.stop_ids();
    for (int32_t id = 0; id < std::min(nv, 300); ++id) (void)t.id_to_token(id);
  });
  return 0;
}
