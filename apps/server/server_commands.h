// `candor serve` and `candor key create|list|delete`.
#pragma once

#include <CLI/CLI.hpp>

#include "candor/engine.h"

namespace candor {

// Adds the `serve` and `key` subcommands to `app`. `engine_options` is read when
// `serve` runs (after parsing), so global options such as --models apply.
// A failing command throws CLI::RuntimeError(1) after printing the error to stderr.
void register_server_commands(CLI::App& app, const EngineOptions& engine_options);

// Adds --models and --manifest, whose help names the defaults in force: the folders come
// from $CANDOR_MODEL_DIR / $CANDOR_MANIFEST or the build, never the working directory.
void add_model_options(CLI::App& app, EngineOptions& engine_options);

}  // namespace candor
