// The training run (see trainer.h).
#include "train/trainer.h"

#include <fcntl.h>     // open
#include <omp.h>       // omp_set_num_threads, omp_get_num_procs
#include <sys/file.h>  // flock
#include <unistd.h>    // close, getpid, sysconf, ftruncate, write

#include <algorithm>          // std::fill, std::max
#include <cerrno>             // errno
#include <cmath>              // std::isfinite, std::ceil
#include <cstring>            // std::strerror
#include <csignal>            // std::signal
#include <ctime>              // clock_gettime
#include <cstdio>             // std::printf
#include <filesystem>         // std::filesystem
#include <fstream>            // std::ifstream, std::ofstream
#include <nlohmann/json.hpp>  // nlohmann::json
#include <optional>           // std::optional
#include <sstream>            // std::stringstream
#include <vector>             // std::vector

#include "core/device.h"         // parse_device
#include "core/error.h"          // Error
#include "formats/mapped_file.h"  // read_text_file
#include "formats/h5_model.h"    // save_h5
#include "model/bundle.h"        // load_bundle
#include "train/checkpoint.h"    // save_checkpoint, ...
#include "train/clock.h"        // now_s, duration_str
#include "train/comm.h"         // Comm, on_every_rank, SharedError
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
  parse_device(device);  // throws "--device: expected cpu, cuda or cuda:N, got '...'"
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
// A second signal leaves at once, unless it comes within a second of the first: that is the same request
// delivered twice (`timeout` or a job scheduler signalling both mpirun and its process group, and mpirun
// forwarding it to the ranks as well). The first signal's time is recorded before the flag is set, so a signal
// interrupting the handler never sees the flag without the time.
std::atomic<long long> first_signal_ns{-1};

long long monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

extern "C" void on_stop_signal(int sig) {
  const long long now = monotonic_ns();
  long long unset = -1;
  first_signal_ns.compare_exchange_strong(unset, now);
  if (!stop_flag().exchange(true)) return;
  if (now - first_signal_ns.load() < 1000000000LL) return;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace

void install_stop_handlers() {
  first_signal_ns = -1;
  stop_flag() = false;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
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
  // The next sample's window start; the state (RNG or data position) moves on. A data-parallel rank advances
  // through the samples of the other ranks' micro-batches too, so every rank keeps the same state.
  int64_t advance(TrainState& st, Rng& rng) {
    if (shuffle_) return int64_t(rng.below(uint64_t(shard_.size() - L_)));
    if (st.data_pos + L_ + 1 > shard_.size()) {
      st.data_pos = 0;
      ++st.epoch;
    }
    const int64_t start = st.data_pos;
    st.data_pos += L_;
    return start;
  }

 private:
  const TokenShard& shard_;
  const ModelConfig& c_;
  int64_t L_;
  bool shuffle_;
  std::vector<int32_t> win_;
};

// Mean validation loss per scored token over consecutive windows from the start of the validation shard. Batch b
// is evaluated by rank b mod size; the per-batch sums are then added in batch order on every rank (the same value
// whatever the number of ranks).
double evaluate(TrainModel& m, const TokenShard& val, const TrainOptions& o, Comm& comm) {
  Sampler s(val, m.cfg(), o.seq_len, false);
  const int64_t avail = (val.size() - 1) / o.seq_len;
  const int64_t want = std::max<int64_t>(1, std::min(avail, (o.eval_tokens + o.seq_len - 1) / o.seq_len));
  const int64_t B = std::min(o.batch, want);
  const int64_t nb = want / B;
  const int64_t T = s.T();
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  std::vector<double> sums(size_t(2 * nb), 0.0);  // (loss sum, scored count) per batch
  for (int64_t b = comm.rank(); b < nb; b += comm.size()) {
    for (int64_t r = 0; r < B; ++r) s.fill((b * B + r) * o.seq_len, ids.data() + r * T, tgt.data() + r * T);
    int64_t cnt = 0;
    sums[size_t(2 * b)] = m.forward_loss(ids.data(), tgt.data(), B, T, &cnt);
    sums[size_t(2 * b + 1)] = double(cnt);
  }
  comm.sum_in_rank_order(sums.data(), sums.size());  // one rank's value + zeros: exact
  double sum = 0, n = 0;
  for (int64_t b = 0; b < nb; ++b) sum += sums[size_t(2 * b)], n += sums[size_t(2 * b + 1)];
  return sum / std::max(n, 1.0);
}

// The default threads of one rank of several. Under a launcher that binds each rank to a few cores (OpenMPI binds
// to a core for 2 ranks, to a socket beyond), OpenMP sees only those: use them all. When every rank sees the whole
// machine (`mpirun --bind-to none`), share its cores between the ranks on it.
int default_rank_threads(int local_ranks) {
  const int visible = omp_get_num_procs();
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online > 0 && visible < online) return std::max(1, visible);
  return std::max(1, visible / std::max(1, local_ranks));
}

// An exclusive lock on <out>/.lock for the lifetime of a run: two runs (or N copies started by a mismatched
// launcher) never write the same directory. Where the file system has no locks, nothing is enforced.
class RunLock {
 public:
  RunLock() = default;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  void acquire(const std::string& dir) {
    const std::string path = (fs::path(dir) / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("--out: cannot create " + path + " (" + std::strerror(errno) + ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        throw Error("--out: " + dir + " is in use by another `streamllm train` (it holds " + path + ")");
      return;  // no locking here (some network file systems)
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) == 0 && ::write(fd_, pid.data(), pid.size()) < 0) {
      // the pid is for people reading the file; the lock is what matters
    }
  }

 private:
  int fd_ = -1;
};

// Runs f on a host view of n floats of backend memory at p: the memory itself when the backend's is host memory,
// else a copy in `tmp`, written back afterwards when `write`. (The ranks of a GPU run exchange through host memory;
// NCCL would keep them on the device.)
template <class F>
void on_host(TrainBackend& be, float* p, size_t n, bool write, std::vector<float>& tmp, F&& f) {
  if (be.host_memory()) {
    f(p);
    return;
  }
  tmp.resize(n);
  be.download(tmp.data(), p, n);
  f(tmp.data());
  if (write) be.upload(p, tmp.data(), n);
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
  auto comm = make_single_comm();
  return run_training(o, *comm, stop_after);
}

TrainResult run_training(const TrainOptions& o, Comm& comm, int64_t stop_after) {
  return run_training(o, comm, stop_after, {});
}

TrainResult run_training(const TrainOptions& o, Comm& comm, int64_t stop_after,
                         const std::function<std::unique_ptr<TrainBackend>()>& make_backend) {
  const int W = comm.size(), rank = comm.rank();
  const bool lead = rank == 0;  // rank 0 writes every file and prints; the others compute
  const bool talk = lead && !o.quiet;

  // ---- set-up: every rank runs it (read-only until the ranks agree), any failure becomes the same error on all
  std::string tok_json;
  std::optional<TokenShard> train_shard, val_shard;
  std::unique_ptr<TrainBackend> be;
  std::unique_ptr<TrainModel> model;
  std::unique_ptr<AdamW> opt_ptr;
  TrainState st;
  std::string resumed_from;
  RunLock lock;  // rank 0 holds --out for the whole run
  std::vector<float> stage;  // host copies of device buffers for the ranks' exchanges (a GPU backend)
  on_every_rank(comm, [&] {
    o.validate();
    if (o.accum % W != 0)
      throw Error("--accum: " + std::to_string(o.accum) + " micro-batches per step do not split over " +
                  std::to_string(W) + " ranks (each rank computes --accum / ranks of them): use a multiple of " +
                  std::to_string(W));
    if (o.threads > 0)
      omp_set_num_threads(o.threads);
    else if (W > 1)
      omp_set_num_threads(default_rank_threads(comm.local_size()));
    be = make_backend ? make_backend() : make_train_backend(o.device, comm.local_rank());
    std::error_code ec;
    if (!fs::is_directory(o.data, ec))
      throw Error("--data: " + o.data + " is not a directory (run `streamllm data` first)");
    const std::string tok_path = (fs::path(o.data) / "tokenizer.json").string();
    tok_json = read_text_file(tok_path);
    const uint64_t tid = tokenizer_id(tok_json);
    train_shard.emplace(TokenShard::open((fs::path(o.data) / "train.bin").string()));
    val_shard.emplace(TokenShard::open((fs::path(o.data) / "val.bin").string()));
    for (const TokenShard* s : {&*train_shard, &*val_shard})
      if (s->tokenizer_id() != tid)
        throw Error(s->path() + ": was encoded with another tokenizer than " + tok_path + " (tokenizer id differs)");
    if (lead) {
      fs::create_directories(o.out, ec);
      if (!fs::is_directory(o.out, ec)) throw Error("--out: cannot create directory " + o.out);
      lock.acquire(o.out);
    }
    const auto existing = list_checkpoints(o.out);
    if (o.resume) {
      if (existing.empty()) throw Error("--resume: no checkpoint (ckpt-*.h5) in " + o.out);
      resumed_from = existing.back();
      const ModelBundle b = load_bundle(resumed_from);
      model = std::make_unique<TrainModel>(b.model.cfg, *be);
      model->load_weights(b.model);
    } else {
      if (!existing.empty())
        throw Error("--out: " + o.out +
                    " already holds checkpoints (pass --resume to continue that run, or choose another --out)");
      model = std::make_unique<TrainModel>(o.model_config(train_shard->vocab_size()), *be);
      model->init({o.seed});
    }
    if (model->cfg().vocab_size - model->cfg().sink_tokens != train_shard->vocab_size())
      throw Error(train_shard->path() + ": vocabulary of " + std::to_string(train_shard->vocab_size()) +
                  " ids does not match the model's " +
                  std::to_string(model->cfg().vocab_size - model->cfg().sink_tokens));
    AdamWOptions ao;
    ao.beta1 = float(o.beta1);
    ao.beta2 = float(o.beta2);
    ao.eps = float(o.eps);
    ao.weight_decay = float(o.weight_decay);
    ao.clip = o.clip;
    opt_ptr = std::make_unique<AdamW>(*model, ao);
    if (o.resume) {
      st = load_checkpoint_state(resumed_from, *opt_ptr, model->n_floats());
      check_resume_options(st.options_json, o, resumed_from);
    } else {
      st.rng = Rng(o.seed ^ 0x5eed5a3b1e5ull).state();
    }
    // both shards must hold one sample (an error here, on every rank, rather than in the loop)
    const Sampler train_check(*train_shard, model->cfg(), o.seq_len, o.shuffle);
    const Sampler val_check(*val_shard, model->cfg(), o.seq_len, false);
  });
  TrainModel& m = *model;
  AdamW& opt = *opt_ptr;
  const TokenShard& train = *train_shard;
  const TokenShard& val = *val_shard;

  // ---- the ranks must be one run: the same options, data, state and starting weights
  if (W > 1) {
    const std::string mine = o.to_json() + "|tokens " + std::to_string(train.size()) + " " +
                             std::to_string(val.size()) + " tokenizer " + std::to_string(train.tokenizer_id()) +
                             "|step " + std::to_string(st.step) + " " + std::to_string(st.data_pos) + " " +
                             std::to_string(st.epoch) + " " + std::to_string(st.rng[0]) + " " +
                             std::to_string(st.rng[1]) + " " + std::to_string(st.rng[2]) + " " +
                             std::to_string(st.rng[3]) + " " + std::to_string(opt.steps()) + "|params " +
                             std::to_string(m.n_floats());
    const std::string lead_view = broadcast_string(comm, mine, 0);
    if (any_rank(comm, mine != lead_view))
      throw SharedError("the ranks disagree on the run (options, data sizes, resumed state or model size differ "
                        "from rank 0's): start every rank with the same command line and the same files");
    for (float* p : {m.params(), opt.m(), opt.v()})
      on_host(*be, p, size_t(m.n_floats()), true, stage,
              [&](float* h) { comm.broadcast(h, size_t(m.n_floats()) * sizeof(float), 0); });
    m.params_changed();
  }
  Rng rng(0);
  rng.set_state(st.rng);
  const std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();
  std::ofstream metrics;
  on_every_rank(comm, [&] {  // rank 0's first writes: a read-only --out fails here, on every rank, cleanly
    if (!lead) return;
    if (const int n = remove_unfinished_checkpoints(o.out); n > 0 && talk)
      std::printf("train: removed %d unfinished checkpoint file%s (ckpt-*.h5.tmp.*) left by a killed run\n", n,
                  n == 1 ? "" : "s");
    if (o.resume)
      truncate_metrics(metrics_path, st.step);
    else
      write_file_atomic(metrics_path, "");
    write_file_atomic((fs::path(o.out) / "options.json").string(), o.to_json() + "\n");
    metrics.open(metrics_path, std::ios::app);
    if (!metrics) throw Error(metrics_path + ": cannot open for appending");
  });
  st.options_json = o.to_json();

  const LrSchedule sched{o.lr, o.min_lr_ratio, o.warmup, o.steps};
  Sampler sampler(train, m.cfg(), o.seq_len, o.shuffle);
  const int64_t T = sampler.T(), B = o.batch;
  const int64_t per_rank = o.accum / W, mine_from = rank * per_rank;  // this rank's micro-batches of a step
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  const double tokens_per_step = double(B * o.accum * o.seq_len);
  const ModelConfig& c = m.cfg();
  if (talk) {
    std::printf("train: %s block, %s, %.2fM parameters, %lld layers x %lld wide, %lld heads (%lld kv), seq %lld%s, "
                "on %s\n",
                family_name(c.family), sink_name(c.sink), double(m.n_floats()) / 1e6, (long long)c.n_layers,
                (long long)c.hidden, (long long)c.n_heads, (long long)c.n_kv_heads, (long long)o.seq_len,
                c.sink_tokens ? (" + " + std::to_string(c.sink_tokens) + " sink token(s)").c_str() : "",
                be->name());
    std::printf("train: %lld tokens per step (%lld x %lld x %lld), %lld steps, train %lld tokens, val %lld tokens%s\n",
                (long long)tokens_per_step, (long long)B, (long long)o.accum, (long long)o.seq_len,
                (long long)o.steps, (long long)train.size(), (long long)val.size(),
                o.resume ? (", resuming at step " + std::to_string(st.step) + " from " + resumed_from).c_str() : "");
    if (W > 1)
      std::printf("train: %d ranks (%s), %lld micro-batch%s each per step, %d thread%s per rank\n", W,
                  comm.name().c_str(), (long long)per_rank, per_rank == 1 ? "" : "es", omp_get_max_threads(),
                  omp_get_max_threads() == 1 ? "" : "s");
    std::fflush(stdout);
  }

  TrainResult res;
  // The ranks hold the same weights and moments by construction; that is checked (a hash) wherever they are
  // saved, so a rank that computed something else (another CPU type, a non-deterministic kernel) is caught.
  auto check_ranks_agree = [&] {
    if (W == 1) return;
    const size_t n = size_t(m.n_floats());
    for (float* p : {m.params(), opt.m(), opt.v()}) {
      bool same = true;
      on_host(*be, p, n, false, stage, [&](float* h) { same = comm.same_on_every_rank(h, n * sizeof(float)); });
      if (!same)
        throw SharedError("after step " + std::to_string(st.step) + " the ranks' weights or moments differ from " +
                          "rank 0's: a rank computed something else (run the same binary on the same CPU type)");
    }
  };
  auto save = [&] {
    check_ranks_agree();
    st.rng = rng.state();
    const std::string p = checkpoint_path(o.out, st.step);
    if (lead) {
      save_checkpoint(p, m, opt, st, tok_json);
      prune_checkpoints(o.out, o.keep);
    }
    res.checkpoint = p;
  };
  const double t0 = now_s();
  const int64_t first = st.step;
  double loss = 0;
  std::vector<double> mb_loss(size_t(o.accum));
  while (st.step < o.steps) {
    const double ts = now_s();
    std::fill(mb_loss.begin(), mb_loss.end(), 0.0);
    for (int64_t a = 0; a < o.accum; ++a) {
      const bool mine = a >= mine_from && a < mine_from + per_rank;
      for (int64_t r = 0; r < B; ++r) {
        const int64_t start = sampler.advance(st, rng);
        if (mine) sampler.fill(start, ids.data() + r * T, tgt.data() + r * T);
      }
      if (!mine) continue;
      const float w = 1.0f / float(o.accum);
      if (a == mine_from) {
        m.zero_grads();
        mb_loss[size_t(a)] = m.forward_backward(ids.data(), tgt.data(), B, T, w) / double(o.accum);
      } else {  // added whole: the sum's association does not depend on the number of ranks (train/comm.h)
        mb_loss[size_t(a)] = m.forward_backward_added(ids.data(), tgt.data(), B, T, w) / double(o.accum);
      }
    }
    if (W > 1)
      on_host(*be, m.grads(), size_t(m.n_floats()), true, stage,
              [&](float* h) { comm.sum_in_rank_order(h, size_t(m.n_floats())); });
    comm.sum_in_rank_order(mb_loss.data(), mb_loss.size());  // one rank's value + zeros: exact
    loss = 0;
    for (double l : mb_loss) loss += l;
    const double norm = opt.grad_norm();
    if (!std::isfinite(loss) || !std::isfinite(norm))
      throw SharedError("step " + std::to_string(st.step + 1) + ": the loss is " + std::to_string(loss) +
                        " and the gradient norm " + std::to_string(norm) + ": training diverged; nothing was written" +
                        (res.checkpoint.empty() ? std::string() : " (last good checkpoint: " + res.checkpoint + ")") +
                        ". Lower --lr or raise --warmup.");
    const double lr = sched.at(st.step);
    opt.step(lr, norm);
    ++st.step;
    const double now = now_s(), dt = now - ts;
    const double tps = double(st.step - first) * tokens_per_step / (now - t0);
    if (lead)
      metrics << json({{"step", st.step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                       {"tokens_per_s", tokens_per_step / dt}, {"elapsed_s", now - t0}})
                     .dump()
              << "\n";
    if (talk && (st.step % o.log_every == 0 || st.step == o.steps)) {
      std::printf("step %6lld/%lld | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | ETA %s\n", (long long)st.step,
                  (long long)o.steps, loss, lr, norm, tokens_per_step / dt,
                  duration_str(double(o.steps - st.step) * tokens_per_step / tps).c_str());
      std::fflush(stdout);
    }
    if (o.eval_every > 0 && st.step % o.eval_every == 0 && st.step < o.steps) {
      const double vl = evaluate(m, val, o, comm);
      if (lead) metrics << json({{"step", st.step}, {"val_loss", vl}}).dump() << "\n";
      if (talk) std::printf("step %6lld | val loss %.4f\n", (long long)st.step, vl);
    }
    if (lead) metrics.flush();
    // A signal may reach the ranks at different steps: they stop together, at the first step any of them saw it.
    if (any_rank(comm, stop_flag() || (stop_after > 0 && st.step >= stop_after))) {
      save();
      res.interrupted = true;
      if (lead)
        std::printf("train: stopped at step %lld; checkpoint %s (continue with --resume)\n", (long long)st.step,
                    res.checkpoint.c_str());
      break;
    }
    if (o.save_every > 0 && st.step % o.save_every == 0 && st.step < o.steps) save();
  }
  res.steps = st.step;
  res.last_loss = loss;
  const double elapsed = now_s() - t0;
  res.tokens_per_s = st.step > first ? double(st.step - first) * tokens_per_step / elapsed : 0.0;
  if (res.interrupted) return res;
  res.val_loss = evaluate(m, val, o, comm);
  save();
  res.model = (fs::path(o.out) / "model.h5").string();
  if (lead) {
    metrics << json({{"step", st.step}, {"val_loss", res.val_loss}}).dump() << "\n";
    metrics.flush();
    ModelBundle b;
    b.model = m.to_model();
    b.tokenizer_json = tok_json;
    save_h5(b, res.model, DType::F32);
    char trained[96];  // a resume already past --steps trains nothing: no train loss or speed to show
    if (st.step > first)
      std::snprintf(trained, sizeof trained, "train loss %.4f, ", res.last_loss);
    else
      std::snprintf(trained, sizeof trained, "no step in this run, ");
    std::printf("train: done: %lld steps, %sval loss %.4f (ppl %.2f), %.0f tok/s, %.1f s\n"
                "train: model %s (use it with `streamllm generate -m` / `ppl -m`), checkpoint %s\n",
                (long long)st.step, trained, res.val_loss, std::exp(res.val_loss), res.tokens_per_s, elapsed,
                res.model.c_str(), res.checkpoint.c_str());
  }
  return res;
}

}  // namespace sllm::train
