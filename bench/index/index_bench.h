// `candor bench search`: build time, memory, latency and accuracy of the 1:N
// index types (include/candor/index.h) on face-template-like galleries.
#pragma once

#include <CLI/CLI.hpp>

namespace candor::bench {

// Adds the `search` subcommand to `bench` (the CLI's `candor bench`).
void register_index_bench_commands(CLI::App& bench);

}  // namespace candor::bench
