// `candor bench library`: grouping the faces of a photo library (issue 13) on LFW
// against the baselines of the table, and its speed on synthetic templates.
#pragma once

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor::bench {

void register_library_bench_commands(CLI::App& bench, const EngineOptions& options);

}  // namespace candor::bench
