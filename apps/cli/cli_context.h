// State shared by the CLI's subcommands: global options and the lazily created engine.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <atomic>

#include <CLI/CLI.hpp>

#include "candor/analyzer.h"
#include "candor/collections.h"
#include "candor/engine.h"
#include "candor/parallel.h"

namespace candor::cli {

struct CliContext {
  EngineOptions engine_options;
  ImageLimits limits;
  int opencv_threads = 0;  // 0: OpenCV's default
  int exit_code = 0;       // set by a subcommand: 0 ok, 1 expected failure
  std::string index_spec = CollectionsOptions{}.index_spec;  // 1:N index of each collection

  // The engine and the analyser, created on first use. On failure print the error and exit 1.
  const Engine& engine();
  // Before engine(): how many images a bulk command works on at once (requested, or 0 for
  // one per core; at most `jobs`), with a replica of each network per worker. OpenCV's
  // own threads would only compete with the workers, so (unless --threads says
  // otherwise) each inference then runs on one.
  int prepare_workers(int requested, std::size_t jobs);
  const FaceAnalyzer& analyzer();

 private:
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<FaceAnalyzer> analyzer_;
};

// Prints "candor: <code>: <message>" to stderr and returns 1, the exit status of an expected failure.
int fail(const Error& error);

// parallel_for: candor/parallel.h (the library's ingest runs the same loop).
using candor::parallel_for;

// image_files: candor/image.h.

void register_engine_commands(CLI::App& app, CliContext& ctx);
void register_collection_commands(CLI::App& app, CliContext& ctx);
void register_library_commands(CLI::App& app, CliContext& ctx);  // library_commands.cpp

// A one-line bar on stderr, redrawn in place; drawn only when stderr is a terminal, so
// that a log file or a pipe gets no carriage-return noise. Used by bulk embed and enroll.
class ProgressLine {
 public:
  explicit ProgressLine(std::size_t total) : total_(total), on_(total > 1 && ::isatty(STDERR_FILENO) == 1) {}
  // "[####....] done/total images, <tail>". requires: the caller serialises calls.
  void show(std::size_t done, const std::string& tail) const {
    if (!on_) return;
    constexpr std::size_t kWidth = 40;
    const std::size_t filled = kWidth * done / total_;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu images, %s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), done, total_, tail.c_str());
  }
  // Clears the bar, before a message or at the end.
  void clear() const {
    if (on_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  std::size_t total_;
  bool on_;
};

}  // namespace candor::cli
