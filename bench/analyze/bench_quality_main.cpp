// `bench_quality [LFW dir] [--pairs ...] [--threads N]`: the `candor bench quality`
// command on its own, for use before the CLI links candor_bench_analyze.
#include "analyze/analyze_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"candor bench (analysis)"};
  app.require_subcommand(1);
  static candor::EngineOptions options;
  candor::bench::register_analyze_bench_commands(app, options);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
