// What the harnesses share: one engine and analyser per process, and a scratch directory.
#pragma once

#include <filesystem>

#include "candor/analyzer.h"
#include "candor/engine.h"

namespace candor::fuzz {

// Loaded on first use from the default model pack (models/, config/models.json) with one
// replica of each network and OpenCV's thread pool off: libFuzzer runs one input at a
// time, and the machine's cores are better spent on more fuzz processes.
const Engine& shared_engine();
const FaceAnalyzer& shared_analyzer();

// A per-process directory under /dev/shm when there is one (SQLite's fsyncs cost nothing
// there), else under the system temp directory. Removed at exit.
const std::filesystem::path& scratch_dir();

}  // namespace candor::fuzz
