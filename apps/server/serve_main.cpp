// `candor-server`: the server commands on their own (serve, key), for deployments
// and benchmarks that do not need the whole `candor` CLI.
#include <CLI/CLI.hpp>

#include "candor/platform.h"
#include "server_commands.h"

int main(int argc, char** argv) {
  candor::ensure_vector_blas_kernel(argv);  // before anything else: it may restart the process
  CLI::App app{"Candor REST server"};
  app.require_subcommand(1);
  candor::EngineOptions engine_options;
  candor::add_model_options(app, engine_options);
  candor::register_server_commands(app, engine_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
