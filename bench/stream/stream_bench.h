// `candor bench stream` (issue 12): ground-truth videos made from LFW, played as camera
// streams through a temporary store and collection; recognition per track, strangers,
// latency, dropped frames, and the same run decided on the first good frame alone.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor::bench {

// Adds `candor bench stream` and `candor bench deblur` to `bench`. `options` is read when
// the command runs.
void register_stream_bench_commands(CLI::App& bench, const EngineOptions& options);

// `candor bench deblur` (deblur_bench.cpp): motion deblurring on smeared LFW probes.
void register_deblur_bench_command(CLI::App& bench, const EngineOptions& options);

// The LFW people with at least `min_photos` photos (`many`) and with one (`single`), each
// list sorted by name and then shuffled with `rng` (many first): which people a bench
// takes depends on the seed alone.
struct LfwPeople {
  std::vector<std::string> many, single;
};
LfwPeople shuffled_lfw_people(const std::filesystem::path& lfw, int min_photos, std::mt19937& rng);

// $CANDOR_SHARED_DIR when set, else the ../shared the build was configured with.
std::filesystem::path stream_bench_shared_dir();

}  // namespace candor::bench
