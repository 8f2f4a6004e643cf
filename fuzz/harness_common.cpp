#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include <opencv2/core/utility.hpp>

#include "harness_internal.h"

namespace candor::fuzz {
namespace {

// A harness that cannot load its models cannot fuzz anything: stop loudly rather than
// report thousands of meaningless iterations.
[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "candor fuzz harness: %s\n", what.c_str());
  std::abort();
}

struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    std::error_code ec;
    const std::filesystem::path base =
        std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                      : std::filesystem::temp_directory_path();
    std::string pattern = (base / "candor-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) fail("cannot create a scratch directory under " + base.string());
    path = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace

const Engine& shared_engine() {
  static const std::unique_ptr<Engine> engine = [] {
    cv::setNumThreads(1);
    EngineOptions options;
    options.replicas = 1;
    auto created = Engine::create(options);
    if (!created) fail("the engine does not load (run `make setup`): " + created.error().message);
    return std::move(*created);
  }();
  return *engine;
}

const FaceAnalyzer& shared_analyzer() {
  static const std::unique_ptr<FaceAnalyzer> analyzer = [] {
    cv::setNumThreads(1);
    AnalyzerOptions options;
    options.replicas = 1;
    auto created = FaceAnalyzer::create(options);
    if (!created) fail("the face analyser does not load (run `make setup`): " + created.error().message);
    return std::move(*created);
  }();
  return *analyzer;
}

const std::filesystem::path& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

}  // namespace candor::fuzz
