// streamllm: the command-line front door. Subcommands live in infer/cmd_*.cpp; every error reaching here becomes
// one line on stderr and exit code 1 (2 for bad flags, as CLI11 does).
#include <CLI/CLI.hpp>  // CLI::App
#include <cstdio>       // std::fprintf
#include <exception>    // std::exception
#include <string>       // std::string

#include "infer/common.h"

namespace {

// A default is shown in --help unless it says nothing: a required option's, an empty list's, or a placeholder
// whose meaning the description already gives ("default: all cores" for 0, "default: the model's own" for -1).
void hide_placeholder_defaults(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    const std::string d = o->get_default_str();
    if (o->get_required() || d == "[]" || d == "-1" || o->get_description().find("default") != std::string::npos)
      o->default_str("");
  }
  for (CLI::App* sub : app.get_subcommands({})) hide_placeholder_defaults(*sub);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"streamllm: stream language models through a StreamingLLM KV cache (attention sinks + rolling window)"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows the options' defaults (inherited by commands)
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
  hide_placeholder_defaults(app);
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
