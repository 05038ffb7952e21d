// Crafted bad files: every parser that reads untrusted files refuses each one with a single sllm::Error line that
// names the file and the field (DESIGN.md section 4, "Every parser reads untrusted files"). The files live under
// tests/fixtures/bad/<format>/ and are made by scripts/make_bad_files.py; the table below says, for each, which
// words the error must contain besides the file's path. Fuzzing (docs/fuzzing.md) explores the space around them.
#include <gtest/gtest.h>

#include <cctype>      // std::isalnum
#include <cstdio>      // std::fopen, std::fwrite, std::fclose
#include <filesystem>  // std::filesystem
#include <iterator>    // std::size
#include <ostream>     // std::ostream
#include <set>         // std::set
#include <string>      // std::string
#include <typeinfo>    // typeid
#include <unistd.h>    // getpid
#include <vector>      // std::vector

#include "core/error.h"           // Error
#include "formats/mapped_file.h"  // read_text_file
#include "formats/safetensors.h"  // SafetensorsArchive
#include "model/bundle.h"         // load_gguf, load_h5, load_bundle
#include "model/config.h"         // config_from_hf_json
#include "model/config_json.h"    // config_from_json
#include "tokenizer/tokenizer.h"  // Tokenizer

namespace sllm {
namespace {

namespace fs = std::filesystem;

const std::string kBad = std::string(SLLM_SOURCE_DIR) + "/tests/fixtures/bad/";

struct Case {
  const char* file;                 // under tests/fixtures/bad/; the first path component picks the reader
  std::vector<const char*> expect;  // substrings of the message besides the path (the field, the problem)
  const char* path_in_message = nullptr;  // the file the message must name, when not `file` (sharded archives)
};

// clang-format off
const Case kCases[] = {
    // ---- safetensors: SafetensorsArchive::open (a file, or a directory with a sharded index) ----
    {"safetensors/empty.safetensors", {"truncated safetensors file (0 bytes"}},
    {"safetensors/truncated_length.safetensors", {"truncated safetensors file (4 bytes"}},
    {"safetensors/header_beyond_file.safetensors", {"header length 1000 exceeds the file size 81"}},
    {"safetensors/header_length_huge.safetensors", {"header length 9223372036854775808 exceeds"}},
    {"safetensors/header_not_json.safetensors", {"header is not valid JSON"}},
    {"safetensors/header_not_object.safetensors", {"header is not a JSON object"}},
    {"safetensors/non_utf8_name.safetensors", {"header is not valid JSON", "ill-formed UTF-8"}},
    {"safetensors/truncated_data.safetensors", {"tensor '", "data_offsets", "out of range (data section is 42 bytes)"}},
    {"safetensors/huge_shape.safetensors", {"tensor 'w'", "shape [1099511627776,1099511627776] is absurdly large"}},
    {"safetensors/shape_vs_offsets.safetensors", {"tensor 'w'", "span 16 bytes but shape [4,4] of f32 needs 64"}},
    {"safetensors/overlapping.safetensors", {"tensors overlap", "offset 8"}},
    {"safetensors/offsets_past_end.safetensors", {"tensor 'w'", "data_offsets [0, 1099511627776] out of range"}},
    {"safetensors/offsets_reversed.safetensors", {"tensor 'w'", "data_offsets [16, 0] out of range"}},
    {"safetensors/offsets_negative.safetensors", {"tensor 'w'", "data_offsets must be two non-negative integers"}},
    {"safetensors/wrong_dtype.safetensors", {"tensor 'w'", "unsupported dtype 'F8_E4M3'"}},
    {"safetensors/dtype_not_string.safetensors", {"tensor 'w'", "dtype must be a string"}},
    {"safetensors/negative_dim.safetensors", {"tensor 'w'", "shape entries must be non-negative integers"}},
    {"safetensors/five_dims.safetensors", {"tensor 'w'", "at most 4 dims"}},
    {"safetensors/missing_offsets.safetensors", {"tensor 'w'", "needs dtype, shape and data_offsets"}},
    {"safetensors/sharded_escape", {"weight_map['w']", "invalid shard '../model.safetensors'"},
     "safetensors/sharded_escape/model.safetensors.index.json"},
    {"safetensors/sharded_missing_shard", {"cannot open"}, "safetensors/sharded_missing_shard/model-1.safetensors"},
    {"safetensors/sharded_missing_tensor", {"tensor 'v' is not in shard model-1.safetensors"},
     "safetensors/sharded_missing_tensor/model.safetensors.index.json"},
    {"safetensors/sharded_duplicate", {"tensor 'w'", "appears twice"},
     "safetensors/sharded_duplicate/model-2.safetensors"},

    // ---- config.json: config_from_hf_json ----
    {"config/not_json.json", {"not valid JSON"}},
    {"config/not_object.json", {"expected a JSON object"}},
    {"config/missing_model_type.json", {"missing field 'model_type'"}},
    {"config/unknown_model_type.json", {"model_type 'bert' is not supported"}},
    {"config/model_type_not_string.json", {"field 'model_type' must be a string"}},
    {"config/absurd_vocab.json", {"vocab_size must be in [1, 2^31), got 1099511627776"}},
    {"config/absurd_hidden.json", {"hidden size must be in [1, 65536], got 1073741824"}},
    {"config/absurd_layers.json", {"number of layers must be in [1, 1024], got 100000"}},
    {"config/zero_heads.json", {"number of attention heads must be in [1, 1024], got 0"}},
    {"config/negative_ffn.json", {"intermediate size must be in [1, 2^20], got -128"}},
    {"config/hidden_as_string.json", {"field 'hidden_size' must be an integer"}},
    {"config/layers_as_float.json", {"field 'num_hidden_layers' must be an integer"}},
    {"config/missing_hidden.json", {"missing field 'hidden_size'"}},
    {"config/heads_not_dividing.json", {"key/value heads (3) must divide the attention heads (4)"}},
    {"config/head_dim_absurd.json", {"head_dim must be in [1, 1024], got 1048576"}},
    {"config/rope_theta_negative.json", {"rope theta must be positive"}},
    {"config/rope_scaling_linear.json", {"rope_scaling type 'linear' is not supported"}},
    {"config/hidden_act_gelu.json", {"hidden_act 'gelu' is not supported for llama"}},
    {"config/hidden_act_not_string.json", {"field 'hidden_act' must be a string"}},
    {"config/tie_not_bool.json", {"field 'tie_word_embeddings' must be true or false"}},
    {"config/mistral_sliding_window.json", {"sliding_window"}},
    {"config/neox_rotary_odd.json", {"rotary dims (3) must be even"}},
    {"config/falcon_alibi.json", {"alibi=true is not supported"}},
    {"config/mpt_attn_config_not_object.json", {"attn_config must be an object"}},
    {"config/mpt_learned_positions.json", {"attn_config.alibi=false"}},
    {"config/deep_nesting.json", {"field 'hidden_size' must be an integer"}},
    // These three overflowed (float to int, signed) while the config was derived, before validation; fuzz_config
    // found them (docs/fuzzing.md, finding 1).
    {"config/mpt_expansion_ratio_huge.json", {"expansion_ratio must be in (0, 64]"}},
    {"config/neox_rotary_pct_huge.json", {"rotary_pct / partial_rotary_factor must be in [0, 1]"}},
    {"config/neox_hidden_huge_default_ffn.json", {"field 'hidden_size' is absurdly large"}},

    // ---- tokenizer.json: Tokenizer::from_json_file ("<file>: <json path>: <what>") ----
    {"tokenizer/empty.json", {"invalid JSON"}},
    {"tokenizer/truncated.json", {"invalid JSON"}},
    {"tokenizer/not_object.json", {"expected a JSON object"}},
    {"tokenizer/no_model.json", {"model: missing"}},
    {"tokenizer/model_type_unknown.json", {"model.type: unsupported model type \"WordPiece\""}},
    {"tokenizer/model_type_unigram.json", {"model.type: unsupported model type \"Unigram\""}},
    {"tokenizer/merge_unknown_token.json", {"model.merges[0]: token \"b\" is not in the vocab"}},
    {"tokenizer/merge_result_missing.json", {"model.merges[0]: merged token \"ab\" is not in the vocab"}},
    {"tokenizer/merge_not_pair.json", {"model.merges[1]: expected \"a b\" pair"}},
    {"tokenizer/merge_wrong_type.json", {"model.merges[0]: expected"}},
    {"tokenizer/merges_not_array.json", {"model.merges: expected an array"}},
    {"tokenizer/vocab_not_object.json", {"model.vocab: expected an object"}},
    {"tokenizer/vocab_negative_id.json", {"model.vocab[\"a\"]: value -3 out of range"}},
    {"tokenizer/vocab_huge_id.json", {"model.vocab: id 2000000000 is far beyond"}},
    {"tokenizer/byte_fallback_not_bool.json", {"model.byte_fallback: expected a boolean"}},
    {"tokenizer/normalizer_unknown.json", {"normalizer.type: unsupported normalizer \"Lowercase\""}},
    {"tokenizer/pre_tokenizer_unknown.json", {"pre_tokenizer.type: unsupported pre-tokenizer \"BertPreTokenizer\""}},
    {"tokenizer/pre_tokenizer_not_object.json", {"pre_tokenizer: expected an object"}},
    {"tokenizer/decoder_unknown.json", {"decoder.type: unsupported decoder \"WordPiece\""}},
    {"tokenizer/regex_does_not_compile.json", {"normalizer.pattern.Regex: regex does not compile"}},
    {"tokenizer/split_behavior_unknown.json", {"pre_tokenizer.behavior: unknown split behavior \"Sideways\""}},
    {"tokenizer/post_processor_unknown_special.json",
     {"post_processor.single[0].SpecialToken.id: \"<s>\" is not in special_tokens"}},
    {"tokenizer/added_tokens_not_array.json", {"added_tokens: expected an array"}},
    {"tokenizer/added_token_no_content.json", {"added_tokens[0].content: missing"}},
    {"tokenizer/deep_sequence.json", {"normalizer.normalizers[0]", "nested too deeply"}},
    {"tokenizer/deep_brackets.json", {"invalid JSON"}},
    {"tokenizer/non_utf8_vocab.json", {"invalid JSON", "ill-formed UTF-8"}},

    // ---- GGUF: load_gguf (the container checks of GgufFile::open, then the llama import) ----
    {"gguf/empty.gguf", {"header: truncated: the file is 0 bytes"}},
    {"gguf/bad_magic.gguf", {"header: bad magic"}},
    {"gguf/truncated_header.gguf", {"header: truncated: the file is 12 bytes"}},
    {"gguf/version1.gguf", {"header: GGUF version 1 is not supported"}},
    {"gguf/big_endian.gguf", {"header: version field is byte-swapped"}},
    {"gguf/version_future.gguf", {"header: unsupported GGUF version 4"}},
    {"gguf/kv_count_huge.gguf", {"header: metadata count 1152921504606846976 cannot fit"}},
    {"gguf/tensor_count_huge.gguf", {"header: tensor count 1152921504606846976 cannot fit"}},
    {"gguf/key_too_long.gguf", {"metadata[0]: key length 70000 exceeds the limit of 65535"}},
    {"gguf/key_empty.gguf", {"metadata[0]: empty key"}},
    {"gguf/string_past_end.gguf", {"metadata 'general.name'", "needs 1000 bytes", "the file ends at 60"}},
    {"gguf/string_length_huge.gguf", {"metadata 'general.name'", "18446744073709551615 bytes"}},
    {"gguf/array_count_huge.gguf", {"metadata 'tokenizer.ggml.tokens': array of 2305843009213693952 STRING"}},
    {"gguf/array_nested_too_deep.gguf", {"metadata 'x'", "arrays nested more than 8 deep"}},
    {"gguf/array_element_type_unknown.gguf", {"metadata 'x': unknown array element type 77"}},
    {"gguf/value_type_unknown.gguf", {"metadata 'general.name': unknown value type 99"}},
    {"gguf/bool_not_0_or_1.gguf", {"metadata 'general.flag': bool value 2 is not 0 or 1"}},
    {"gguf/duplicate_key.gguf", {"metadata 'general.name': duplicate key"}},
    {"gguf/alignment_not_power_of_two.gguf", {"metadata 'general.alignment': alignment 48 is not a power of two"}},
    {"gguf/alignment_wrong_type.gguf", {"metadata 'general.alignment': expected UINT32, got STRING"}},
    {"gguf/n_dims_5.gguf", {"tensor 'w': n_dims 5 is not in [1, 4]"}},
    {"gguf/dim_zero.gguf", {"tensor 'w': dimension 1 is 0"}},
    {"gguf/dims_overflow.gguf", {"tensor 'w': the product of the dimensions overflows"}},
    {"gguf/type_unsupported.gguf", {"tensor 'w': tensor type Q4_K (12) is not supported"}},
    {"gguf/row_not_whole_blocks.gguf", {"tensor 'w': row length 33 is not a multiple of the Q8_0 block size 32"}},
    {"gguf/offset_misaligned.gguf", {"tensor 'w': data offset 4 is not a multiple of the alignment 32"}},
    {"gguf/offset_past_end.gguf", {"tensor 'w': data [1099511627904, 1099511628160) beyond the file (size 128)"}},
    {"gguf/duplicate_tensor.gguf", {"tensor 'w': duplicate tensor name"}},
    {"gguf/overlapping_tensors.gguf", {"tensor 'v'", "overlaps tensor 'w'"}},
    {"gguf/name_too_long.gguf", {"tensor[0]: name of 64 bytes exceeds ggml's limit of 63"}},
    {"gguf/name_empty.gguf", {"tensor[0]: empty name"}},
    {"gguf/truncated_data.gguf", {"tensor 'output_norm.weight'", "beyond the file (size 7100)"}},
    {"gguf/architecture_gpt2.gguf", {"general.architecture 'gpt2' is not supported"}},
    {"gguf/missing_embedding_length.gguf", {"missing metadata 'llama.embedding_length'"}},
    {"gguf/embedding_length_huge.gguf", {"metadata 'llama.embedding_length': value 1099511627776 out of range"}},
    {"gguf/block_count_string.gguf", {"metadata 'llama.block_count': expected an integer, got STRING"}},
    {"gguf/heads_not_dividing_hidden.gguf", {"llama.attention.head_count (5) does not divide llama.embedding_length"}},
    {"gguf/kv_heads_not_dividing.gguf", {"key/value heads (3) must divide the attention heads (4)"}},
    {"gguf/epsilon_wrong_type.gguf", {"metadata 'llama.attention.layer_norm_rms_epsilon': expected FLOAT32"}},
    {"gguf/vocab_size_disagrees.gguf", {"llama.vocab_size (53) differs from the 52 tokens"}},
    {"gguf/rope_scaling_yarn.gguf", {"llama.rope.scaling.type 'yarn' is not supported"}},
    {"gguf/missing_tensor.gguf", {"missing tensor 'blk.0.ffn_up.weight'"}},
    {"gguf/unexpected_tensor.gguf", {"tensor 'blk.7.attn_q.weight' is not part of a llama model"}},
    {"gguf/tensor_shape_mismatch.gguf", {"tensor 'blk.0.attn_q.weight'", "does not match the config"}},
    {"gguf/tokenizer_model_unknown.gguf", {"metadata 'tokenizer.ggml.model': tokenizer 'bert' is not supported"}},
    {"gguf/token_not_utf8.gguf", {"metadata 'tokenizer.ggml.tokens'[5]: not valid UTF-8"}},
    {"gguf/token_type_short.gguf", {"metadata 'tokenizer.ggml.token_type': 3 types for 52 tokens"}},
    {"gguf/merge_not_a_pair.gguf", {"metadata 'tokenizer.ggml.merges'[0]: expected \"a b\""}},
    {"gguf/pre_tokenizer_missing.gguf", {"metadata 'tokenizer.ggml.pre' is missing"}},
    {"gguf/pre_tokenizer_unknown.gguf", {"metadata 'tokenizer.ggml.pre': pre-tokenizer 'chameleon'"}},
    {"gguf/bos_out_of_range.gguf", {"metadata 'tokenizer.ggml.bos_token_id': value 57 out of range [0, 51]"}},
    {"gguf/spm_score_nan.gguf", {"tokenizer.ggml.scores[7] is NaN"}},
    {"gguf/spm_scores_short.gguf", {"metadata 'tokenizer.ggml.scores': 5 scores for 272 tokens"}},

    // ---- native .h5: load_h5, on byte-level damage to a file our save_h5 wrote (test_h5.cpp covers the
    //      well-formed HDF5 files with wrong contents) ----
    {"h5/empty.h5", {"not an HDF5 file"}},
    {"h5/signature_only.h5", {"cannot open as an HDF5 file"}},
    {"h5/truncated_superblock.h5", {"cannot open as an HDF5 file"}},
    {"h5/truncated_half.h5", {"cannot open as an HDF5 file", "truncated file"}},
    {"h5/truncated_last_byte.h5", {"cannot open as an HDF5 file", "truncated file"}},
    {"h5/bad_signature.h5", {"not an HDF5 file"}},
    {"h5/superblock_version_9.h5", {"cannot open as an HDF5 file", "bad superblock version number"}},
    {"h5/eof_address_huge.h5", {"cannot open as an HDF5 file", "checksum"}},
    {"h5/superblock_checksum.h5", {"cannot open as an HDF5 file", "checksum"}},
};
// clang-format on

void PrintTo(const Case& c, std::ostream* os) { *os << c.file; }

std::string format_of(const std::string& file) { return file.substr(0, file.find('/')); }

void read_with(const std::string& format, const std::string& path) {
  if (format == "safetensors") {
    (void)SafetensorsArchive::open(path);
  } else if (format == "config") {
    (void)config_from_hf_json(read_text_file(path), path);
  } else if (format == "tokenizer") {
    (void)Tokenizer::from_json_file(path);
  } else if (format == "gguf") {
    (void)load_gguf(path, {});
  } else if (format == "h5") {
    (void)load_h5(path, {});
  } else {
    FAIL() << "no reader for " << format;
  }
}

// Runs `fn` and checks it throws one sllm::Error line containing every string in `expect`.
template <class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& expect) {
  try {
    fn();
    ADD_FAILURE() << "accepted; expected an error containing: " << expect.front();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& s : expect) EXPECT_NE(msg.find(s), std::string::npos) << "message: " << msg << "\nmissing: " << s;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw " << typeid(e).name() << " instead of sllm::Error: " << e.what();
  }
}

class BadFile : public ::testing::TestWithParam<Case> {};

TEST_P(BadFile, RefusedWithFileAndField) {
  const Case& c = GetParam();
  const std::string path = kBad + c.file;
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: run scripts/make_bad_files.py";
  std::vector<std::string> expect = {kBad + (c.path_in_message ? c.path_in_message : c.file)};
  expect.insert(expect.end(), c.expect.begin(), c.expect.end());
  expect_error([&] { read_with(format_of(c.file), path); }, expect);
  // The format-detecting entry point refuses the single files too (with its own words for a bad signature).
  if ((format_of(c.file) == "gguf" || format_of(c.file) == "h5")) {
    expect_error([&] { (void)load_bundle(path); }, {kBad + c.file});
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.file;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Crafted, BadFile, ::testing::ValuesIn(kCases), case_name);

// Every file under tests/fixtures/bad/ is in the table (a case that is generated but never checked is a gap), and
// every format directory has cases.
TEST(BadFiles, EveryFileIsListed) {
  std::set<std::string> listed;
  for (const Case& c : kCases) listed.insert(c.file);
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(kBad)) {
    if (!e.is_regular_file()) continue;
    ++n;
    std::string rel = fs::relative(e.path(), kBad).generic_string();
    bool found = listed.count(rel) != 0;
    for (std::string dir = rel; !found && dir.find('/') != std::string::npos;) {
      dir = dir.substr(0, dir.rfind('/'));
      found = listed.count(dir) != 0;
    }
    EXPECT_TRUE(found) << rel << " is not in the table of test_bad_files.cpp";
  }
  EXPECT_GE(n, std::size(kCases));
}

// Deep nesting beyond what a file in the repository should hold: no parser may recurse on it.
TEST(BadFiles, DeepNestingInMemory) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  expect_error(
      [&] { (void)config_from_hf_json("{\"model_type\": \"llama\", \"vocab_size\": " + deep + "}", "deep.json"); },
      {"deep.json", "vocab_size"});
  expect_error([&] { (void)config_from_json("{\"hidden\": " + deep + "}", "deep.h5:/config"); }, {"deep.h5:/config"});
  expect_error([&] { (void)Tokenizer::from_json_string("{\"model\": " + deep + "}", "deep-tokenizer.json"); },
               {"deep-tokenizer.json", "model"});
  // A safetensors header whose shape nests 200000 deep.
  const fs::path p = fs::temp_directory_path() / ("sllm_bad_deep_" + std::to_string(::getpid()) + ".safetensors");
  const std::string h = "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, " + deep + "], \"data_offsets\": [0, 4]}}";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((h.size() >> (8 * i)) & 0xFF);
  bytes += h + std::string(4, '\0');
  {
    std::FILE* f = std::fopen(p.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  expect_error([&] { (void)SafetensorsArchive::open(p.string()); }, {p.string(), "tensor 'w'"});
  fs::remove(p);
}

// ---- Findings of the fuzzers that the crafted files above do not cover (docs/fuzzing.md) ----

std::string temp_file(const std::string& name, const std::string& bytes) {
  const fs::path p = fs::temp_directory_path() / ("sllm_bad_" + std::to_string(::getpid()) + "_" + name);
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (f) {
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  return p.string();
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((v >> (8 * i)) & 0xFF);
  return s;
}

// Finding 6: names read from the file go into messages raw, so a name with a newline or a terminal escape breaks
// the one-line message (and can recolour or rewrite the user's terminal). The tokenizer already escapes (\x0A).
TEST(BadFiles, NamesFromTheFileAreEscapedInMessages) {
  const std::string name = "w\n\x1b[31mred";
  const std::string h = "{\"w\\n\\u001b[31mred\": {\"dtype\": \"F8\", \"shape\": [1], \"data_offsets\": [0, 4]}}";
  const std::string st = temp_file("name.safetensors", le64(h.size()) + h + std::string(4, '\0'));
  expect_error([&] { (void)SafetensorsArchive::open(st); }, {st, "unsupported dtype"});
  // GGUF: one metadata key with the same bytes and an unknown value type.
  const std::string g = temp_file("name.gguf", std::string("GGUF") + std::string("\x03\0\0\0", 4) + le64(0) + le64(1) +
                                                   le64(name.size()) + name + std::string("\x63\0\0\0", 4) + le64(0));
  expect_error([&] { (void)load_gguf(g, {}); }, {g, "unknown value type 99"});
  for (const auto& p : {st, g}) {
    try {
      if (p == st) (void)SafetensorsArchive::open(p);
      else (void)load_gguf(p, {});
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\x1b'), std::string::npos) << "raw escape byte in: " << e.what();
    }
    fs::remove(p);
  }
}

// Finding 2: a float field of our native config beyond the float range becomes inf, is accepted, and is written
// back as null.
TEST(BadFiles, NativeConfigFloatsOutOfRange) {
  const std::string base = R"({"config_version": 1, "family": "llama", "vocab_size": 16, "hidden": 8, "n_layers": 1,
      "n_heads": 2, "n_kv_heads": 1, "head_dim": 4, "ffn": 8)";
  expect_error([&] { (void)config_from_json(base + R"(, "attn_scale": 1e300})", "m.h5:/config"); },
               {"m.h5:/config", "attn_scale"});
  expect_error([&] { (void)config_from_json(base + R"(, "clip_qkv": -1e39})", "m.h5:/config"); },
               {"m.h5:/config", "clip_qkv"});
}

}  // namespace
}  // namespace sllm
