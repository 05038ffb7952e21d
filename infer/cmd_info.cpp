// `streamllm info -m MODEL`: what a model holds.
#include <cstdio>  // std::printf

#include "infer/common.h"

namespace sllm::cli {

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model: family, sizes, parameters, dtype");
  auto a = std::make_shared<ModelArgs>();
  add_model_args(*cmd, *a);
  cmd->callback([a] {
    Loaded l = load(*a, false);
    const ModelConfig& c = l.model.cfg;
    const char* pos = c.pos == PosKind::ALiBi ? "alibi" : "rope";
    std::printf("model        %s\n", l.model.source.c_str());
    std::printf("family       %s (model_type %s)\n", family_name(c.family), c.model_type.c_str());
    std::printf("parameters   %.2fM\n", double(c.n_params()) / 1e6);
    std::printf("layers       %lld\n", (long long)c.n_layers);
    std::printf("hidden       %lld\n", (long long)c.hidden);
    std::printf("heads        %lld query, %lld key/value, head_dim %lld\n", (long long)c.n_heads,
                (long long)c.n_kv_heads, (long long)c.head_dim);
    std::printf("ffn          %lld (%s)\n", (long long)c.ffn, c.mlp == MlpKind::SwiGLU ? "swiglu" : "gelu");
    std::printf("norm         %s, eps %g\n", c.norm == NormKind::RMSNorm ? "rmsnorm" : "layernorm", c.norm_eps);
    std::printf("residual     %s\n", c.parallel_residual ? (c.shared_norm ? "parallel (one norm)" : "parallel (two norms)") : "sequential");
    if (c.pos == PosKind::RoPE)
      std::printf("positions    rope, theta %g, %lld of %lld dims rotated\n", c.rope_theta, (long long)c.rot_dims,
                  (long long)c.head_dim);
    else
      std::printf("positions    %s, bias max %g\n", pos, c.alibi_bias_max);
    if (c.sink == SinkKind::LearnableSink)
      std::printf("attn sink    %s (%lld token%s, ids %lld..%lld, the cache's sinks by default)\n",
                  sink_name(c.sink), (long long)c.sink_tokens, c.sink_tokens == 1 ? "" : "s",
                  (long long)c.first_sink_id(), (long long)(c.vocab_size - 1));
    else
      std::printf("attn sink    %s (%s)\n", sink_name(c.sink),
                  c.sink == SinkKind::ZeroSink    ? "softmax-off-by-one"
                  : c.sink == SinkKind::SinkLogit ? "a learned per-head logit in every softmax denominator"
                                                  : "plain softmax");
    std::printf("vocab        %lld%s\n", (long long)c.vocab_size, c.tied_head ? " (tied head)" : "");
    std::printf("trained ctx  %lld\n", (long long)c.max_positions);
    std::printf("weights      %s, %s\n", l.model.weight_dtypes_str().c_str(), human_bytes(double(l.model.weight_bytes())).c_str());
    std::printf("tokenizer    %s\n", l.tok ? ("tokenizer.json, " + std::to_string(l.tok->vocab_size()) + " tokens").c_str() : "none");
  });
}

}  // namespace sllm::cli
