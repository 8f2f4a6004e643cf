// Stand-alone `candor_store_bench store ...`, equivalent to `candor bench store ...`.
#include "store_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"Candor store benchmark"};
  app.require_subcommand(1);
  candor::register_store_bench_commands(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
