// `candor bench quality`: what the quality level says about recognition on LFW, the yaw
// distribution there, and the cost of each analysis stage.
#pragma once

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor::bench {

// Adds `quality` to `bench`. `options` is read when the command runs (model directory and
// manifest are shared with the analyser).
void register_analyze_bench_commands(CLI::App& bench, const EngineOptions& options);

}  // namespace candor::bench

namespace candor {
using bench::register_analyze_bench_commands;
}  // namespace candor
