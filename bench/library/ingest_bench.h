// `candor bench library --ingest N`: ingest of synthetic 12-megapixel photos (ingest_bench.cpp).
#pragma once

#include <cstddef>
#include <filesystem>

#include "candor/engine.h"

namespace candor::bench {

// Makes `photos` 4000x3000 JPEGs from the LFW faces under `lfw`, ingests them on
// `workers` workers, and prints photos/s beside a whole-decode baseline and the faces
// found by size.
void run_ingest(const EngineOptions& options, const std::filesystem::path& lfw, std::size_t photos, int workers,
                bool as_json);

}  // namespace candor::bench
