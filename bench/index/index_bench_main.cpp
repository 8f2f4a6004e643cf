// A stand-alone `candor bench search` for working on the index without the
// full CLI: `candor_index_bench bench search --sizes 100000`.
#include "index/index_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"Candor index benchmark (the `candor bench search` subcommand, stand-alone)"};
  CLI::App* bench = app.add_subcommand("bench", "Measure");
  bench->require_subcommand(1);
  app.require_subcommand(1);
  candor::bench::register_index_bench_commands(*bench);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
