// Candor: `candor bench store`, throughput of the system of record.
//
// Measures, on a fresh database in a temporary directory (or --dir):
// enrollment through the store in faces/s with synthetic templates, for
// batch sizes 1 and 32 (one transaction + one audit entry per batch);
// load_faces (decrypt everything) for the faces enrolled; and audited
// record_search appends per second; the latency of search_count and
// existing_faces (the reads on the search path). Each figure is the median of
// --repeat runs. --store postgresql://... runs the same on PostgreSQL, in a
// fresh database created (and dropped) on that server for each run.
//
// Thread safety: registration and the command run on the CLI's thread.
#pragma once

#include <CLI/CLI.hpp>

namespace candor {

// Adds the `store` subcommand to `bench` (the CLI's `candor bench` command).
void register_store_bench_commands(CLI::App& bench);

}  // namespace candor
