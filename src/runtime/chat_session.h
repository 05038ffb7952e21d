// streamllm: a multi-turn conversation streamed through one StreamingLLM cache. Every token — system prompt, user
// turns, the model's answers — goes through the same sink + window cache, evicting per token, so a conversation
// can go on forever in constant memory (the reference's MT-Bench demo evicts between turns only). A learnable-sink
// model's conversation starts with its sink tokens (see stream.h); they are never sampled.
#pragma once
#include <functional>  // std::function
#include <string>      // std::string
#include <vector>      // std::vector

#include "model/decoder.h"        // Decoder
#include "runtime/chat_format.h"  // ChatFormat
#include "runtime/kv_cache.h"     // KVCache
#include "runtime/stream.h"       // Sampler
#include "tokenizer/tokenizer.h"  // Tokenizer

namespace sllm {

struct ChatOptions {
  int64_t sinks = -1, window = 1020, chunk = 256;  // sinks -1: the model's default (cache_sinks)
  DType kv_dtype = DType::F32;
  SamplerOptions sampler;
  int64_t max_reply = 512;  // tokens per answer (-1 = until the model ends its turn)
  std::string system;       // system prompt (empty: the template's default, if any)
  ChatFormat format;
};

class ChatSession {
 public:
  ChatSession(const Model& m, const Tokenizer& tok, Backend& be, const ChatOptions& o);
  // One user turn: feeds it, samples the answer, streams its text to on_piece as it is produced, closes the turn.
  std::string send(const std::string& user, const std::function<void(const std::string&)>& on_piece);
  const KVCache& cache() const { return cache_; }
  int64_t turns() const { return turns_; }

 private:
  void feed(const std::string& text);
  const float* feed_ids(const std::vector<int32_t>& ids);

  const Model& m_;
  const Tokenizer& tok_;
  ChatOptions o_;
  Backend& be_;
  Decoder dec_;
  KVCache cache_;
  Sampler sampler_;
  std::vector<int32_t> stops_;
  const float* logits_ = nullptr;  // the last token's logits, in the backend's memory
  int64_t turns_ = 0;
};

}  // namespace sllm
