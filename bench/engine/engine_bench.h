// `candor bench lfw | lfw-ident | calibrate | pipeline`: accuracy on LFW and the
// engine's speed, measured by commands a user can run (README "Measuring").
#pragma once

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor::bench {

// Adds the engine's bench subcommands to `bench`. `options` is read when a command runs.
void register_engine_bench_commands(CLI::App& bench, const EngineOptions& options);

}  // namespace candor::bench
