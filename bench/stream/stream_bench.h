// `candor bench stream` (issue 12): ground-truth videos made from LFW, played as camera
// streams through a temporary store and collection; recognition per track, strangers,
// latency, dropped frames, and the same run decided on the first good frame alone.
#pragma once

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor::bench {

// Adds `candor bench stream` to `bench`. `options` is read when the command runs.
void register_stream_bench_commands(CLI::App& bench, const EngineOptions& options);

}  // namespace candor::bench
