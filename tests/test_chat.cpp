// Chat formats recognised from templates, rendered exactly; a long conversation stays inside the cache.
#include <gtest/gtest.h>

#include <string>  // std::string

#include "core/error.h"             // Error
#include "formats/mapped_file.h"    // read_text_file
#include "model/model.h"            // load_model
#include "runtime/chat_format.h"    // chat_format_from_template
#include "runtime/chat_session.h"   // ChatSession

namespace sllm {
namespace {

// SmolLM2-Instruct's template (as in its tokenizer_config.json / GGUF metadata).
const char* kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatFormat, RecognisesTheCommonTemplates) {
  ChatFormat f = chat_format_from_template(kSmolTemplate);
  EXPECT_EQ(f.style, ChatStyle::ChatML);
  EXPECT_EQ(f.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(chat_format_from_template("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}").style,
            ChatStyle::Llama3);
  EXPECT_EQ(chat_format_from_template("{{ '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>' }}").style, ChatStyle::Llama2);
  EXPECT_EQ(chat_format_from_template("{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}").style,
            ChatStyle::Mistral);
  EXPECT_EQ(chat_format_from_template("{{ '<start_of_turn>' + role + '\\n' }}").style, ChatStyle::Gemma);
  EXPECT_EQ(chat_format_from_template("{{ '<|user|>\\n' }}{{ '<|assistant|>\\n' }}").style, ChatStyle::Zephyr);
  EXPECT_EQ(chat_format_from_template("").style, ChatStyle::Plain);
  EXPECT_THROW(parse_chat_style("jinja"), Error);
}

TEST(ChatFormat, RendersChatMLLikeTheTemplate) {
  ChatFormat f = chat_format_from_template(kSmolTemplate);
  // What the template produces for [user "Hi"] with add_generation_prompt:
  const std::string want =
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(f.begin() + f.message("system", f.default_system, true) + f.message("user", "Hi", false) +
                f.assistant_prefix(),
            want);
  EXPECT_EQ(f.assistant_suffix(), "<|im_end|>\n");
}

// Twenty turns through a 2+24 cache: the stream grows, the cache holds at most 26 tokens and never reallocates.
TEST(ChatSession, LongConversationStaysInTheCache) {
  const std::string src = SLLM_SOURCE_DIR;
  Model m = load_model(src + "/tests/fixtures/models/llama");
  Tokenizer tok = Tokenizer::from_json_file(src + "/data/tokenizers/bytes/tokenizer.json");
  tok.set_eos_id(0);  // the byte tokenizer has no end-of-text token; make NUL one
  ChatOptions o;
  o.sinks = 2;
  o.window = 24;
  o.chunk = 8;
  o.max_reply = 10;
  o.sampler.seed = 3;
  o.format.style = ChatStyle::Plain;
  o.system = "Be brief.";
  ChatSession chat(m, tok, cpu_backend(), o);
  const size_t bytes = chat.cache().bytes();
  int64_t pieces = 0;
  for (int i = 0; i < 20; ++i) chat.send("turn " + std::to_string(i), [&](const std::string&) { ++pieces; });
  EXPECT_EQ(chat.turns(), 20);
  EXPECT_GT(chat.cache().n_past(), 20 * 8);
  EXPECT_EQ(chat.cache().held(), 26);
  EXPECT_EQ(chat.cache().bytes(), bytes);
  EXPECT_GT(pieces, 0);
}

}  // namespace
}  // namespace sllm
