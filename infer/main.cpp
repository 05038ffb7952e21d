// streamllm: the command-line front door. Subcommands live in infer/cmd_*.cpp; every error reaching here becomes
// one line on stderr and exit code 1 (2 for bad flags, as CLI11 does).
#include <CLI/CLI.hpp>  // CLI::App
#include <cstdio>       // std::fprintf
#include <exception>    // std::exception

#include "infer/common.h"

int main(int argc, char** argv) {
  CLI::App app{"streamllm: stream language models through a StreamingLLM KV cache (attention sinks + rolling window)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "streamllm 0.1.0");
  sllm::cli::register_generate(app);
  sllm::cli::register_ppl(app);
  sllm::cli::register_chat(app);
  sllm::cli::register_info(app);
  sllm::cli::register_convert(app);
  sllm::cli::register_data(app);
  sllm::cli::register_train(app);
  sllm::cli::register_ablate(app);
  sllm::cli::register_sinks(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "streamllm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
