#include "runtime/chat_session.h"

#include <algorithm>  // std::find, std::min

#include "core/error.h"  // Error

namespace sllm {

ChatSession::ChatSession(const Model& m, const Tokenizer& tok, Backend& be, const ChatOptions& o)
    : m_(m), tok_(tok), o_(o), be_(be), dec_(m, be, o.chunk),
      cache_(be, m.cfg, cache_sinks(m.cfg, o.sinks), o.window, o.chunk, o.kv_dtype), sampler_(o.sampler) {
  stops_ = tok.stop_ids();
  if (m.cfg.eos_id >= 0) stops_.push_back(int32_t(m.cfg.eos_id));
  if (stops_.empty()) throw Error("chat: the tokenizer has no end-of-turn token");
  if (o_.system.empty()) o_.system = o_.format.default_system;
  feed_ids(sink_prefix(m.cfg));  // a learnable-sink model's sink tokens, at stream positions 0..k-1
  std::string opening = o_.format.begin();
  if (!o_.system.empty() && !o_.format.system_in_user()) opening += o_.format.message("system", o_.system, true);
  if (!opening.empty()) feed(opening);
}

const float* ChatSession::feed_ids(const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); i += size_t(o_.chunk)) {
    const int64_t T = std::min<int64_t>(o_.chunk, int64_t(ids.size() - i));
    logits_ = dec_.forward(ids.data() + i, T, cache_, Logits::LastOnDevice);
  }
  return logits_;
}

void ChatSession::feed(const std::string& text) { feed_ids(tok_.encode(text, false)); }

std::string ChatSession::send(const std::string& user, const std::function<void(const std::string&)>& on_piece) {
  std::string content = user;
  if (o_.format.system_in_user() && turns_ == 0 && !o_.system.empty()) {
    if (o_.format.style == ChatStyle::Llama2)
      content = "<<SYS>>\n" + o_.system + "\n<</SYS>>\n\n" + user;
    else
      content = o_.system + "\n\n" + user;
  }
  const bool first = turns_ == 0 && (o_.system.empty() || o_.format.system_in_user());
  feed(o_.format.message("user", content, first) + o_.format.assistant_prefix());
  ++turns_;
  StreamDecoder out(tok_, true);
  std::string reply;
  const int64_t V = sample_vocab(m_.cfg);  // never a sink token
  for (int64_t n = 0; o_.max_reply < 0 || n < o_.max_reply; ++n) {
    const int32_t id = sampler_.sample(be_, logits_, V);  // on a GPU only the id crosses to the host
    if (std::find(stops_.begin(), stops_.end(), id) != stops_.end()) break;
    const std::string piece = out.push(id);
    reply += piece;
    if (!piece.empty()) on_piece(piece);
    logits_ = dec_.forward(&id, 1, cache_, Logits::LastOnDevice);
  }
  const std::string rest = out.flush();
  reply += rest;
  if (!rest.empty()) on_piece(rest);
  feed(o_.format.assistant_suffix());  // close the turn in the transcript the cache holds
  return reply;
}

}  // namespace sllm
