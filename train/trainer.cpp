// The training run (see trainer.h).
#include "train/trainer.h"

#include <omp.h>  // omp_set_num_threads

#include <cmath>              // std::isfinite, std::ceil
#include <csignal>            // std::signal
#include <cstdio>             // std::printf
#include <filesystem>         // std::filesystem
#include <fstream>            // std::ifstream, std::ofstream
#include <nlohmann/json.hpp>  // nlohmann::json
#include <sstream>            // std::stringstream
#include <vector>             // std::vector

#include "core/error.h"          // Error
#include "formats/mapped_file.h"  // read_text_file
#include "formats/h5_model.h"    // save_h5
#include "model/bundle.h"        // load_bundle
#include "train/checkpoint.h"    // save_checkpoint, ...
#include "train/clock.h"        // now_s, duration_str
#include "train/optimizer.h"     // AdamW
#include "train/rng.h"           // Rng
#include "train/schedule.h"      // LrSchedule
#include "train/token_data.h"    // TokenShard, tokenizer_id
#include "train/train_model.h"   // TrainModel

namespace sllm::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- options ------------------------------------------------------------------------------------------------------

namespace {

SinkKind parse_sink(const std::string& s) {
  for (SinkKind k : {SinkKind::Vanilla, SinkKind::ZeroSink, SinkKind::LearnableSink, SinkKind::SinkLogit})
    if (s == sink_name(k)) return k;
  throw Error("--sink: '" + s + "' is not one of vanilla, zero_sink, learnable_sink, sink_logit");
}

}  // namespace

void TrainOptions::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw Error(what);
  };
  need(family == "gpt_neox" || family == "llama", "--family: '" + family + "' is not one of gpt_neox, llama");
  parse_sink(sink);
  need(hidden >= 1 && hidden <= 16384, "--hidden: must be in [1, 16384], got " + std::to_string(hidden));
  need(layers >= 1 && layers <= 256, "--layers: must be in [1, 256], got " + std::to_string(layers));
  need(heads >= 1 && hidden % heads == 0,
       "--heads: must divide --hidden (" + std::to_string(hidden) + "), got " + std::to_string(heads));
  need(kv_heads >= 0 && (kv_heads == 0 || heads % kv_heads == 0),
       "--kv-heads: must divide --heads (" + std::to_string(heads) + "), got " + std::to_string(kv_heads));
  need(family == "llama" || kv_heads == 0 || kv_heads == heads, "--kv-heads: the gpt_neox block has no GQA");
  need(ffn >= 0 && ffn <= (1 << 20), "--ffn: must be in [0, 2^20] (0 = default), got " + std::to_string(ffn));
  need(rotary_pct < 0 || rotary_pct <= 1.0, "--rotary-pct: must be in [0, 1]");
  need(rope_theta > 0 && std::isfinite(rope_theta), "--rope-theta: must be positive");
  need(!tied_head || family == "llama", "--tied-head: the gpt_neox (Pythia) block has an untied head");
  need(sink != "learnable_sink" || (sink_tokens >= 1 && sink_tokens <= 64),
       "--sink-tokens: must be in [1, 64] for learnable_sink, got " + std::to_string(sink_tokens));
  need(seq_len >= 2 && seq_len <= 65536, "--seq-len: must be in [2, 65536], got " + std::to_string(seq_len));
  need(batch >= 1 && batch <= 65536, "--batch: must be in [1, 65536], got " + std::to_string(batch));
  need(accum >= 1 && accum <= 65536, "--accum: must be in [1, 65536], got " + std::to_string(accum));
  need(steps >= 1, "--steps: must be at least 1, got " + std::to_string(steps));
  need(std::isfinite(lr) && lr > 0, "--lr: must be positive and finite");
  need(min_lr_ratio >= 0 && min_lr_ratio <= 1, "--min-lr-ratio: must be in [0, 1]");
  need(warmup >= 0, "--warmup: must be >= 0");
  need(weight_decay >= 0 && std::isfinite(weight_decay), "--weight-decay: must be >= 0");
  need(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "--beta1/--beta2: must be in [0, 1)");
  need(eps > 0 && std::isfinite(eps), "--eps: must be positive");
  need(clip >= 0 && std::isfinite(clip), "--clip: must be >= 0 (0 = off)");
  need(eval_every >= 0 && save_every >= 0 && eval_tokens >= 1 && log_every >= 1,
       "--eval-every/--save-every: must be >= 0; --eval-tokens/--log-every: >= 1");
  need(keep >= 0, "--keep: must be >= 0 (0 = keep all)");
  need(!data.empty(), "--data: required (a directory written by `streamllm data`)");
  need(!out.empty(), "--out: required");
}

ModelConfig TrainOptions::model_config(int64_t text_vocab) const {
  validate();
  ModelConfig c;
  const bool neox = family == "gpt_neox";
  c.family = neox ? Family::GPTNeoX : Family::Llama;
  c.model_type = family;
  c.sink = parse_sink(sink);
  c.sink_tokens = c.sink == SinkKind::LearnableSink ? sink_tokens : 0;
  c.vocab_size = text_vocab + c.sink_tokens;
  c.hidden = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads > 0 ? kv_heads : heads;
  c.head_dim = hidden / heads;
  c.ffn = ffn > 0 ? ffn : neox ? 4 * hidden : (8 * hidden / 3 + 31) / 32 * 32;
  c.max_positions = seq_len + c.sink_tokens;
  c.norm = neox ? NormKind::LayerNorm : NormKind::RMSNorm;
  c.norm_eps = 1e-5f;
  c.mlp = neox ? MlpKind::GeluErf : MlpKind::SwiGLU;
  c.parallel_residual = neox;
  c.qkv = neox ? QkvLayout::Grouped : QkvLayout::Separate;
  c.pos = PosKind::RoPE;
  c.rope_theta = rope_theta;
  const double pct = rotary_pct >= 0 ? rotary_pct : neox ? 0.25 : 1.0;
  c.rot_dims = int64_t(double(c.head_dim) * pct) / 2 * 2;
  c.tied_head = tied_head;
  c.validate("train options");
  return c;
}

std::string TrainOptions::to_json() const {
  json j = {{"family", family},     {"hidden", hidden},     {"layers", layers},       {"heads", heads},
            {"kv_heads", kv_heads}, {"ffn", ffn},           {"rotary_pct", rotary_pct}, {"rope_theta", rope_theta},
            {"tied_head", tied_head}, {"sink", sink},       {"sink_tokens", sink_tokens}, {"data", data},
            {"seq_len", seq_len},   {"batch", batch},       {"accum", accum},         {"shuffle", shuffle},
            {"steps", steps},       {"lr", lr},             {"min_lr_ratio", min_lr_ratio}, {"warmup", warmup},
            {"weight_decay", weight_decay}, {"beta1", beta1}, {"beta2", beta2},       {"eps", eps},
            {"clip", clip},         {"seed", seed},         {"eval_every", eval_every}, {"eval_tokens", eval_tokens},
            {"save_every", save_every}, {"keep", keep},     {"out", out}};
  return j.dump(2);
}

// ---- signals ------------------------------------------------------------------------------------------------------

std::atomic<bool>& stop_flag() {
  static std::atomic<bool> f{false};
  return f;
}

namespace {
extern "C" void on_stop_signal(int sig) {
  if (stop_flag().exchange(true)) {  // second signal: leave now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

// ---- the run ------------------------------------------------------------------------------------------------------

namespace {

// Training samples: windows of seq_len + 1 text tokens (inputs and shifted targets), the sink tokens
// prepended after cutting (targets -1 there: nothing predicts from or to a sink).
class Sampler {
 public:
  Sampler(const TokenShard& shard, const ModelConfig& c, int64_t L, bool shuffle)
      : shard_(shard), c_(c), L_(L), shuffle_(shuffle) {
    if (shard.size() < L + 1)
      throw Error(shard.path() + ": holds " + std::to_string(shard.size()) + " tokens, fewer than one sample (--seq-len " +
                  std::to_string(L) + " + 1)");
  }
  int64_t T() const { return L_ + c_.sink_tokens; }
  // Fills row r of (ids, tgt), each T() wide, with the window starting at `start`.
  void fill(int64_t start, int32_t* ids, int32_t* tgt) {
    const int64_t k = c_.sink_tokens;
    win_.resize(size_t(L_ + 1));
    shard_.read(start, L_ + 1, win_.data());
    for (int64_t i = 0; i < k; ++i) {
      ids[i] = int32_t(c_.first_sink_id() + i);
      tgt[i] = -1;
    }
    for (int64_t i = 0; i < L_; ++i) {
      ids[k + i] = win_[size_t(i)];
      tgt[k + i] = win_[size_t(i + 1)];
    }
  }
  void next(TrainState& st, Rng& rng, int32_t* ids, int32_t* tgt) {
    int64_t start;
    if (shuffle_) {
      start = int64_t(rng.below(uint64_t(shard_.size() - L_)));
    } else {
      if (st.data_pos + L_ + 1 > shard_.size()) {
        st.data_pos = 0;
        ++st.epoch;
      }
      start = st.data_pos;
      st.data_pos += L_;
    }
    fill(start, ids, tgt);
  }

 private:
  const TokenShard& shard_;
  const ModelConfig& c_;
  int64_t L_;
  bool shuffle_;
  std::vector<int32_t> win_;
};

// Mean validation loss per scored token over consecutive windows from the start of the validation shard.
double evaluate(TrainModel& m, const TokenShard& val, const TrainOptions& o) {
  Sampler s(val, m.cfg(), o.seq_len, false);
  const int64_t avail = (val.size() - 1) / o.seq_len;
  const int64_t want = std::max<int64_t>(1, std::min(avail, (o.eval_tokens + o.seq_len - 1) / o.seq_len));
  const int64_t B = std::min(o.batch, want);
  const int64_t nb = want / B;
  const int64_t T = s.T();
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  double sum = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t r = 0; r < B; ++r) s.fill((b * B + r) * o.seq_len, ids.data() + r * T, tgt.data() + r * T);
    int64_t cnt = 0;
    sum += m.forward_loss(ids.data(), tgt.data(), B, T, &cnt);
    n += cnt;
  }
  return sum / double(std::max<int64_t>(n, 1));
}

// Options that change what is computed: a resume must not change them.
const char* kFixedOnResume[] = {"family", "hidden", "layers", "heads", "kv_heads", "ffn", "rotary_pct", "rope_theta",
                                "tied_head", "sink", "sink_tokens", "seq_len", "batch", "accum", "shuffle", "seed",
                                "weight_decay", "beta1", "beta2", "eps", "clip"};

void check_resume_options(const std::string& saved_json, const TrainOptions& o, const std::string& ckpt) {
  json saved, now = json::parse(o.to_json());
  try {
    saved = json::parse(saved_json);
  } catch (const std::exception&) {
    throw Error(ckpt + ":/train/options.json: not valid JSON");
  }
  for (const char* k : kFixedOnResume)
    if (saved.contains(k) && saved[k] != now[k])
      throw Error("--resume: " + ckpt + " was trained with " + k + " = " + saved[k].dump() + ", these options say " +
                  now[k].dump() + " (a resumed run must compute the same thing)");
}

// Keeps the metrics of steps <= `step` (what the checkpoint being resumed had seen), drops the rest.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      const json j = json::parse(line);
      if (j.value("step", int64_t(0)) <= step) kept += line + "\n";
    } catch (const std::exception&) {
      // a torn last line (killed mid-write) is dropped
    }
  }
  in.close();
  write_file_atomic(path, kept);
}

}  // namespace

TrainResult run_training(const TrainOptions& o, int64_t stop_after) {
  o.validate();
  if (o.threads > 0) omp_set_num_threads(o.threads);
  std::error_code ec;
  if (!fs::is_directory(o.data, ec)) throw Error("--data: " + o.data + " is not a directory (run `streamllm data` first)");
  const std::string tok_path = (fs::path(o.data) / "tokenizer.json").string();
  const std::string tok_json = read_text_file(tok_path);
  const uint64_t tid = tokenizer_id(tok_json);
  const TokenShard train = TokenShard::open((fs::path(o.data) / "train.bin").string());
  const TokenShard val = TokenShard::open((fs::path(o.data) / "val.bin").string());
  for (const TokenShard* s : {&train, &val})
    if (s->tokenizer_id() != tid)
      throw Error(s->path() + ": was encoded with another tokenizer than " + tok_path + " (tokenizer id differs)");
  fs::create_directories(o.out, ec);
  if (!fs::is_directory(o.out, ec)) throw Error("--out: cannot create directory " + o.out);

  auto be = make_cpu_train_backend();
  TrainState st;
  std::unique_ptr<TrainModel> model;
  const auto existing = list_checkpoints(o.out);
  std::string resumed_from;
  if (o.resume) {
    if (existing.empty()) throw Error("--resume: no checkpoint (ckpt-*.h5) in " + o.out);
    resumed_from = existing.back();
    const ModelBundle b = load_bundle(resumed_from);
    model = std::make_unique<TrainModel>(b.model.cfg, *be);
    model->load_weights(b.model);
  } else {
    if (!existing.empty())
      throw Error("--out: " + o.out + " already holds checkpoints (pass --resume to continue that run, or choose another --out)");
    model = std::make_unique<TrainModel>(o.model_config(train.vocab_size()), *be);
    model->init({o.seed});
  }
  TrainModel& m = *model;
  if (m.cfg().vocab_size - m.cfg().sink_tokens != train.vocab_size())
    throw Error(train.path() + ": vocabulary of " + std::to_string(train.vocab_size()) +
                " ids does not match the model's " + std::to_string(m.cfg().vocab_size - m.cfg().sink_tokens));
  AdamWOptions ao;
  ao.beta1 = float(o.beta1);
  ao.beta2 = float(o.beta2);
  ao.eps = float(o.eps);
  ao.weight_decay = float(o.weight_decay);
  ao.clip = o.clip;
  AdamW opt(m, ao);
  Rng rng(o.seed ^ 0x5eed5a3b1e5ull);
  const std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();
  if (o.resume) {
    st = load_checkpoint_state(resumed_from, opt, m.n_floats());
    check_resume_options(st.options_json, o, resumed_from);
    rng.set_state(st.rng);
    truncate_metrics(metrics_path, st.step);
  } else {
    write_file_atomic(metrics_path, "");
  }
  write_file_atomic((fs::path(o.out) / "options.json").string(), o.to_json() + "\n");
  st.options_json = o.to_json();
  std::ofstream metrics(metrics_path, std::ios::app);

  const LrSchedule sched{o.lr, o.min_lr_ratio, o.warmup, o.steps};
  Sampler sampler(train, m.cfg(), o.seq_len, o.shuffle);
  const Sampler val_check(val, m.cfg(), o.seq_len, false);  // refuses a too-short validation shard up front
  const int64_t T = sampler.T(), B = o.batch;
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  const double tokens_per_step = double(B * o.accum * o.seq_len);
  const ModelConfig& c = m.cfg();
  if (!o.quiet) {
    std::printf("train: %s block, %s, %.2fM parameters, %lld layers x %lld wide, %lld heads (%lld kv), seq %lld%s\n",
                family_name(c.family), sink_name(c.sink), double(m.n_floats()) / 1e6, (long long)c.n_layers,
                (long long)c.hidden, (long long)c.n_heads, (long long)c.n_kv_heads, (long long)o.seq_len,
                c.sink_tokens ? (" + " + std::to_string(c.sink_tokens) + " sink token(s)").c_str() : "");
    std::printf("train: %lld tokens per step (%lld x %lld x %lld), %lld steps, train %lld tokens, val %lld tokens%s\n",
                (long long)tokens_per_step, (long long)B, (long long)o.accum, (long long)o.seq_len,
                (long long)o.steps, (long long)train.size(), (long long)val.size(),
                o.resume ? (", resuming at step " + std::to_string(st.step) + " from " + resumed_from).c_str() : "");
    std::fflush(stdout);
  }

  TrainResult res;
  auto save = [&] {
    st.rng = rng.state();
    const std::string p = checkpoint_path(o.out, st.step);
    save_checkpoint(p, m, opt, st, tok_json);
    prune_checkpoints(o.out, o.keep);
    res.checkpoint = p;
  };
  const double t0 = now_s();
  const int64_t first = st.step;
  double loss = 0;
  stop_flag() = false;
  while (st.step < o.steps) {
    const double ts = now_s();
    m.zero_grads();
    loss = 0;
    for (int64_t a = 0; a < o.accum; ++a) {
      for (int64_t r = 0; r < B; ++r) sampler.next(st, rng, ids.data() + r * T, tgt.data() + r * T);
      loss += m.forward_backward(ids.data(), tgt.data(), B, T, 1.0f / float(o.accum)) / double(o.accum);
    }
    const double norm = opt.grad_norm();
    if (!std::isfinite(loss) || !std::isfinite(norm))
      throw Error("step " + std::to_string(st.step + 1) + ": the loss is " + std::to_string(loss) +
                  " and the gradient norm " + std::to_string(norm) + ": training diverged; nothing was written" +
                  (res.checkpoint.empty() ? std::string() : " (last good checkpoint: " + res.checkpoint + ")") +
                  ". Lower --lr or raise --warmup.");
    const double lr = sched.at(st.step);
    opt.step(lr, norm);
    ++st.step;
    const double now = now_s(), dt = now - ts;
    const double tps = double(st.step - first) * tokens_per_step / (now - t0);
    metrics << json({{"step", st.step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                     {"tokens_per_s", tokens_per_step / dt}, {"elapsed_s", now - t0}})
                   .dump()
            << "\n";
    if (!o.quiet && (st.step % o.log_every == 0 || st.step == o.steps)) {
      std::printf("step %6lld/%lld | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | ETA %s\n", (long long)st.step,
                  (long long)o.steps, loss, lr, norm, tokens_per_step / dt,
                  duration_str(double(o.steps - st.step) * tokens_per_step / tps).c_str());
      std::fflush(stdout);
    }
    if (o.eval_every > 0 && st.step % o.eval_every == 0 && st.step < o.steps) {
      const double vl = evaluate(m, val, o);
      metrics << json({{"step", st.step}, {"val_loss", vl}}).dump() << "\n";
      if (!o.quiet) std::printf("step %6lld | val loss %.4f\n", (long long)st.step, vl);
    }
    metrics.flush();
    if (stop_flag() || (stop_after > 0 && st.step >= stop_after)) {
      save();
      res.interrupted = true;
      std::printf("train: stopped at step %lld; checkpoint %s (continue with --resume)\n",
                                (long long)st.step, res.checkpoint.c_str());
      break;
    }
    if (o.save_every > 0 && st.step % o.save_every == 0 && st.step < o.steps) save();
  }
  res.steps = st.step;
  res.last_loss = loss;
  const double elapsed = now_s() - t0;
  res.tokens_per_s = st.step > first ? double(st.step - first) * tokens_per_step / elapsed : 0.0;
  if (res.interrupted) return res;
  res.val_loss = evaluate(m, val, o);
  metrics << json({{"step", st.step}, {"val_loss", res.val_loss}}).dump() << "\n";
  metrics.flush();
  save();
  ModelBundle b;
  b.model = m.to_model();
  b.tokenizer_json = tok_json;
  res.model = (fs::path(o.out) / "model.h5").string();
  save_h5(b, res.model, DType::F32);
  std::printf("train: done: %lld steps, train loss %.4f, val loss %.4f (ppl %.2f), %.0f tok/s, %.1f s\n"
                "train: model %s (use it with `streamllm generate -m` / `ppl -m`), checkpoint %s\n",
                (long long)st.step, res.last_loss, res.val_loss, std::exp(res.val_loss), res.tokens_per_s, elapsed,
                res.model.c_str(), res.checkpoint.c_str());
  return res;
}

}  // namespace sllm::train
