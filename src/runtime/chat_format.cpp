#include "runtime/chat_format.h"

#include "core/error.h"  // Error

namespace sllm {

const char* chat_style_name(ChatStyle s) {
  switch (s) {
    case ChatStyle::ChatML: return "chatml";
    case ChatStyle::Llama3: return "llama3";
    case ChatStyle::Llama2: return "llama2";
    case ChatStyle::Mistral: return "mistral";
    case ChatStyle::Zephyr: return "zephyr";
    case ChatStyle::Gemma: return "gemma";
    case ChatStyle::Plain: return "plain";
  }
  return "?";
}

ChatStyle parse_chat_style(const std::string& n) {
  for (ChatStyle s : {ChatStyle::ChatML, ChatStyle::Llama3, ChatStyle::Llama2, ChatStyle::Mistral, ChatStyle::Zephyr,
                      ChatStyle::Gemma, ChatStyle::Plain})
    if (n == chat_style_name(s)) return s;
  throw Error("unknown chat format '" + n + "' (expected chatml, llama3, llama2, mistral, zephyr, gemma or plain)");
}

std::string ChatFormat::begin() const {
  switch (style) {
    case ChatStyle::Llama3: return "<|begin_of_text|>";
    case ChatStyle::Gemma: return "<bos>";
    default: return "";
  }
}

bool ChatFormat::system_in_user() const {
  return style == ChatStyle::Llama2 || style == ChatStyle::Mistral || style == ChatStyle::Gemma;
}

std::string ChatFormat::message(const std::string& role, const std::string& content, bool first) const {
  switch (style) {
    case ChatStyle::ChatML: return "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    case ChatStyle::Llama3:
      return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content + "<|eot_id|>";
    case ChatStyle::Llama2:
    case ChatStyle::Mistral:
      // The system prompt is merged into the first user message by the caller (system_in_user()).
      if (role == "user") return (style == ChatStyle::Llama2 || first ? "<s>[INST] " : "[INST] ") + content + " [/INST]";
      return " " + content + " </s>";
    case ChatStyle::Zephyr: return "<|" + role + "|>\n" + content + "</s>\n";
    case ChatStyle::Gemma:
      return "<start_of_turn>" + std::string(role == "assistant" ? "model" : "user") + "\n" + content +
             "<end_of_turn>\n";
    case ChatStyle::Plain:
      if (role == "system") return content + "\n\n";
      return std::string(role == "user" ? "User: " : "Assistant: ") + content + "\n";
  }
  return content;
}

std::string ChatFormat::assistant_prefix() const {
  switch (style) {
    case ChatStyle::ChatML: return "<|im_start|>assistant\n";
    case ChatStyle::Llama3: return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatStyle::Llama2:
    case ChatStyle::Mistral: return "";
    case ChatStyle::Zephyr: return "<|assistant|>\n";
    case ChatStyle::Gemma: return "<start_of_turn>model\n";
    case ChatStyle::Plain: return "Assistant:";
  }
  return "";
}

std::string ChatFormat::assistant_suffix() const {
  switch (style) {
    case ChatStyle::ChatML: return "<|im_end|>\n";
    case ChatStyle::Llama3: return "<|eot_id|>";
    case ChatStyle::Llama2:
    case ChatStyle::Mistral: return " </s>";
    case ChatStyle::Zephyr: return "</s>\n";
    case ChatStyle::Gemma: return "<end_of_turn>\n";
    case ChatStyle::Plain: return "\n";
  }
  return "";
}

namespace {

bool has(const std::string& s, const char* x) { return s.find(x) != std::string::npos; }

// A default system prompt hard-coded in a ChatML template: the text between "<|im_start|>system\n" and
// "<|im_end|>" inside a string literal of the template (SmolLM2, Qwen2 do this).
std::string chatml_default_system(const std::string& t) {
  const std::string open = "<|im_start|>system\n";
  size_t p = t.find(open);
  while (p != std::string::npos) {
    const size_t b = p + open.size();
    const size_t e = t.find("<|im_end|>", b);
    if (e == std::string::npos) break;
    const std::string body = t.substr(b, e - b);
    // Skip the generic branch that prints the user's own system message ("' + message['content'] + '").
    if (!has(body, "{{") && !has(body, "message") && !has(body, "'") && !has(body, "+")) return body;
    p = t.find(open, e);
  }
  return "";
}

}  // namespace

ChatFormat chat_format_from_template(const std::string& t) {
  ChatFormat f;
  if (has(t, "<|im_start|>")) {
    f.style = ChatStyle::ChatML;
    f.default_system = chatml_default_system(t);
  } else if (has(t, "<|start_header_id|>")) {
    f.style = ChatStyle::Llama3;
  } else if (has(t, "<<SYS>>")) {
    f.style = ChatStyle::Llama2;
  } else if (has(t, "[INST]")) {
    f.style = ChatStyle::Mistral;
  } else if (has(t, "<start_of_turn>")) {
    f.style = ChatStyle::Gemma;
  } else if (has(t, "<|user|>") && has(t, "<|assistant|>")) {
    f.style = ChatStyle::Zephyr;
  }
  return f;
}

}  // namespace sllm
