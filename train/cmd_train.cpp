// `streamllm train --config configs/<name>.toml [--<option> value ...]`: pre-trains a sink-token model
// (train/trainer.h). Every option is a flag and a key of the TOML config file (flags given on the command line
// win over the file). docs/training.md describes the options, the output directory and resuming.
#include <cstdio>   // std::printf, std::fprintf
#include <cstdlib>  // std::exit
#include <memory>   // std::unique_ptr

#include "core/error.h"  // Error
#include "infer/common.h"
#include "train/comm.h"     // make_comm, on_every_rank, SharedError
#include "train/trainer.h"  // TrainOptions, run_training

namespace sllm::cli {

namespace {

// Applies a TOML config file to the subcommand's options that the command line did not set (the command line
// wins). CLI11's own set_config does not reach a subcommand's options in the CLI11 release Debian ships
// (2.1.2), so the file is read with CLI11's TOML reader and applied here. Unknown keys and sections are errors.
void apply_config(CLI::App& sub, const std::string& path) {
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::Error& e) {
    throw Error(path + ": cannot read the config file (" + e.what() + ")");
  }
  for (const CLI::ConfigItem& it : items) {
    if (!it.parents.empty() && !(it.parents.size() == 1 && it.parents[0] == "train"))
      throw Error(path + ": unknown section [" + it.parents[0] + "] (options go at the top level)");
    if (it.name == "++" || it.name == "--") continue;  // section markers
    CLI::Option* opt = nullptr;
    try {
      opt = sub.get_option("--" + it.name);
    } catch (const CLI::Error&) {
      throw Error(path + ": unknown option '" + it.name + "' (see `streamllm train --help`)");
    }
    if (it.name == "config") throw Error(path + ": a config file cannot name another config file");
    if (opt->count() > 0) continue;  // given on the command line
    try {
      opt->add_result(it.inputs);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      throw Error(path + ": option '" + it.name + "': " + e.what());
    }
  }
}

}  // namespace

void register_train(CLI::App& app) {
  auto o = std::make_shared<train::TrainOptions>();
  CLI::App* sub = app.add_subcommand("train", "Pre-train a model (Pythia or Llama block, any attention-sink variant)");
  auto config = std::make_shared<std::string>();
  sub->add_option("--config", *config, "TOML file of options (keys are the long flag names without --; flags win)")
      ->check(CLI::ExistingFile);
  sub->option_defaults()->group("Model");
  sub->add_option("--family", o->family, "Block type: gpt_neox (Pythia) or llama")->capture_default_str();
  sub->add_option("--hidden", o->hidden, "Model width d_model")->capture_default_str();
  sub->add_option("--layers", o->layers, "Number of blocks")->capture_default_str();
  sub->add_option("--heads", o->heads, "Attention heads")->capture_default_str();
  sub->add_option("--kv-heads", o->kv_heads, "Key/value heads (llama GQA; 0 = heads)")->capture_default_str();
  sub->add_option("--ffn", o->ffn, "MLP width (0 = 4 x hidden for gpt_neox, 8/3 x hidden for llama)")
      ->capture_default_str();
  sub->add_option("--rotary-pct", o->rotary_pct, "Fraction of head dims rotated (<0: 0.25 gpt_neox, 1 llama)")
      ->capture_default_str();
  sub->add_option("--rope-theta", o->rope_theta, "RoPE base")->capture_default_str();
  sub->add_flag("--tied-head,!--untied-head", o->tied_head, "Share the embedding with the output head (llama)");
  sub->add_option("--sink", o->sink, "Attention-sink variant: vanilla, zero_sink, learnable_sink, sink_logit")
      ->capture_default_str();
  sub->add_option("--sink-tokens", o->sink_tokens, "learnable_sink: sink tokens prepended to every sample")
      ->capture_default_str();
  sub->option_defaults()->group("Data");
  sub->add_option("--data", o->data, "Directory from `streamllm data` (train.bin, val.bin, tokenizer.json)");
  sub->add_option("--seq-len", o->seq_len, "Text tokens per sample (sink tokens come on top)")->capture_default_str();
  sub->add_option("--batch", o->batch, "Samples per micro-batch")->capture_default_str();
  sub->add_option("--accum", o->accum, "Micro-batches per optimizer step (gradient accumulation; over all MPI ranks, each computes accum / ranks)")
      ->capture_default_str();
  sub->add_flag("--shuffle,!--no-shuffle", o->shuffle, "Random windows (seeded) instead of consecutive ones")
      ->capture_default_str();
  sub->option_defaults()->group("Optimisation");
  sub->add_option("--steps", o->steps, "Optimizer steps")->capture_default_str();
  sub->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  sub->add_option("--min-lr-ratio", o->min_lr_ratio, "Cosine floor as a fraction of --lr")->capture_default_str();
  sub->add_option("--warmup", o->warmup, "Linear warmup steps")->capture_default_str();
  sub->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay (matrices only)")
      ->capture_default_str();
  sub->add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  sub->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--eps", o->eps, "AdamW epsilon")->capture_default_str();
  sub->add_option("--clip", o->clip, "Gradient clipping: global L2 norm (0 = off)")->capture_default_str();
  sub->add_option("--seed", o->seed, "Seed of the initialisation and the sampler")->capture_default_str();
  sub->option_defaults()->group("Run");
  sub->add_option("--out", o->out, "Run directory (checkpoints, metrics.jsonl, model.h5)")->capture_default_str();
  sub->add_flag("--resume", o->resume, "Continue from the newest checkpoint in --out (bit-identically)");
  sub->add_option("--eval-every", o->eval_every, "Validation every N steps (0 = at the end only)")
      ->capture_default_str();
  sub->add_option("--eval-tokens", o->eval_tokens, "Validation tokens per evaluation")->capture_default_str();
  sub->add_option("--save-every", o->save_every, "Checkpoint every N steps (0 = at the end only)")
      ->capture_default_str();
  sub->add_option("--keep", o->keep, "Checkpoints kept (0 = all)")->capture_default_str();
  sub->add_option("--log-every", o->log_every, "Print a progress line every N steps")->capture_default_str();
  sub->add_option("--threads", o->threads, "CPU threads (0 = all cores)")->capture_default_str();
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N (under MPI, `cuda` is each rank's local GPU)")
      ->capture_default_str();
  sub->add_flag("--quiet", o->quiet, "Only the summary");
  sub->callback([o, config, sub] {
    // Several ranks when started by an MPI launcher (`mpirun -np 2 streamllm train ...`): train/comm.h.
    std::unique_ptr<train::Comm> comm = train::make_comm();
    try {
      train::on_every_rank(*comm, [&] {
        if (!config->empty()) apply_config(*sub, *config);
      });
      train::install_stop_handlers();
      train::run_training(*o, *comm);
    } catch (const train::SharedError&) {
      if (comm->rank() == 0) throw;  // every rank has it: printed once
      comm.reset();                  // leaves MPI cleanly
      std::exit(1);
    } catch (const std::exception& e) {
      if (comm->size() == 1) throw;
      // Only this rank knows: the others would wait for it forever.
      std::fflush(stdout);
      std::fprintf(stderr, "streamllm: error (rank %d of %d): %s\n", comm->rank(), comm->size(), e.what());
      std::fflush(stderr);
      comm->abort(1);
    }
  });
}

}  // namespace sllm::cli
