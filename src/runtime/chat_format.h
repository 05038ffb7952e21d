// streamllm: chat formats recognised from a model's chat template string (no Jinja engine: the common formats are
// recognised by their markers and rendered by hand, which is exact for plain text messages).
#pragma once
#include <cstdint>  // uint8_t
#include <string>   // std::string

namespace sllm {

enum class ChatStyle : uint8_t { ChatML, Llama3, Llama2, Mistral, Zephyr, Gemma, Plain };

const char* chat_style_name(ChatStyle s);
ChatStyle parse_chat_style(const std::string& name);  // "chatml", "llama3", ...; throws sllm::Error otherwise

struct ChatFormat {
  ChatStyle style = ChatStyle::Plain;
  std::string default_system;  // a system prompt the template inserts when the conversation has none

  // Text that opens the conversation (e.g. Llama-3's <|begin_of_text|>), before the first message.
  std::string begin() const;
  // One complete message. `first` is true for the first message of the conversation.
  std::string message(const std::string& role, const std::string& content, bool first) const;
  // What follows the user's message to make the model answer (the generation prompt).
  std::string assistant_prefix() const;
  // What closes the assistant's answer in the transcript (the end-of-turn token and newline); the answer itself
  // stops when the model samples its first token.
  std::string assistant_suffix() const;
  // For formats that fold the system prompt into the first user message (Llama-2, Mistral, Gemma): the user
  // message text for turn `first`, with the system prompt merged in.
  bool system_in_user() const;
};

// Recognises the format from a Jinja chat template (ChatML <|im_start|>, Llama-3 headers, Llama-2 [INST] <<SYS>>,
// Mistral [INST], Zephyr <|user|>, Gemma <start_of_turn>), and a default system prompt the template hard-codes.
// An empty or unrecognised template gives Plain ("User: ...\nAssistant:").
ChatFormat chat_format_from_template(const std::string& jinja);

}  // namespace sllm
