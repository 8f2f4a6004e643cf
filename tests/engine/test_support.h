// Paths and shared fixtures for the engine tests.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "candor/engine.h"

namespace candor::test {

inline std::filesystem::path testdata(const std::string& rel) { return std::filesystem::path(CANDOR_TESTDATA_DIR) / rel; }
inline std::filesystem::path lfw_root() { return std::filesystem::path(CANDOR_SHARED_DIR) / "datasets" / "lfw"; }
inline bool have_lfw() { return std::filesystem::is_regular_file(lfw_root() / "pairs.txt"); }

// One engine for the whole test program: loading and hashing the models once.
inline const Engine& shared_engine() {
  static std::unique_ptr<Engine> engine = [] {
    auto e = Engine::create();
    if (!e) throw std::runtime_error("engine: " + e.error().message + " (run `make setup`)");
    return std::move(*e);
  }();
  return *engine;
}

#define CANDOR_REQUIRE_LFW()                                                                        \
  if (!::candor::test::have_lfw())                                                                  \
  GTEST_SKIP() << "LFW is absent at " << ::candor::test::lfw_root()                                 \
               << ": the LFW checks did not run (the team's copy lives in ../shared/datasets/lfw)"

}  // namespace candor::test
