// State shared by the CLI's subcommands: global options and the lazily created engine.
#pragma once

#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor::cli {

struct CliContext {
  EngineOptions engine_options;
  ImageLimits limits;
  int opencv_threads = 0;  // 0: OpenCV's default
  int exit_code = 0;       // set by a subcommand: 0 ok, 1 expected failure

  // The engine, created on first use. On failure prints the error and exits 1.
  const Engine& engine();

 private:
  std::unique_ptr<Engine> engine_;
};

// Prints "candor: <code>: <message>" to stderr and returns 1, the exit status of an expected failure.
int fail(const Error& error);

void register_engine_commands(CLI::App& app, CliContext& ctx);
void register_collection_commands(CLI::App& app, CliContext& ctx);

}  // namespace candor::cli
