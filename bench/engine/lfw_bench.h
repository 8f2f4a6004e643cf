// What the LFW bench commands (engine_bench.cpp, lfw_ident.cpp) share: where LFW is,
// their common options, and how they stop on a missing data set.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <set>
#include <thread>
#include <vector>

#include "candor/engine.h"
#include "engine/lfw.h"

namespace candor::bench {

[[noreturn]] inline void die(const std::string& message) {
  std::cerr << "candor bench: " << message << "\n";
  std::exit(1);
}

inline std::filesystem::path default_lfw() { return std::filesystem::path(CANDOR_SHARED_DIR) / "datasets" / "lfw"; }

inline void require_lfw(const std::filesystem::path& root) {
  if (!std::filesystem::is_directory(root / "lfw")) {
    die("LFW not found at " + root.string() +
        " (expected <dir>/lfw/<Name>/<Name>_NNNN.jpg and pairs.txt; the team's copy lives in ../shared/datasets/lfw)");
  }
}

// "Name/Name_0001.jpg", the key of an image in the template cache.
inline std::string key_of(const std::string& name, int index) {
  return lfw_image_path("", name, index).lexically_relative("lfw").generic_string();
}

// A fraction as a percentage with two decimals, for JSON.
inline double pct(double v) { return std::round(v * 10000.0) / 100.0; }

// The images of LFW View 1 (pairsDevTrain.txt + pairsDevTest.txt), sorted: the
// calibration population. Only these images, not every image of their people, since
// View 1 and View 2 share people.
inline std::vector<std::string> view_one_keys(const std::filesystem::path& root) {
  std::set<std::string> unique;
  for (const char* file : {"pairsDevTrain.txt", "pairsDevTest.txt"}) {
    auto pairs = read_lfw_pairs(root / file);
    if (!pairs) die(pairs.error().message);
    for (const auto& p : *pairs) unique.insert(key_of(p.name_a, p.index_a)), unique.insert(key_of(p.name_b, p.index_b));
  }
  return {unique.begin(), unique.end()};
}

struct LfwArgs {
  std::filesystem::path root = default_lfw();
  std::string pairs = "pairs.txt";
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::filesystem::path cache;
  bool json = false;
  bool subjects = false;  // calibrate: thresholds for subject templates (per enrolled-photo count)
};

struct IdentArgs : LfwArgs {
  // Set when --enroll-images, --aggregate or --all-k is given: the multi-photo protocol
  // (lfw_ident.h); otherwise the one-photo protocol, as before issue 11.
  bool multi_photo = false;
  int enroll_images = 1;
  std::string aggregate = "centroid";
  bool all_k = false;
};

// `candor bench lfw-ident`.
void run_ident(const EngineOptions& options, const IdentArgs& a);

// `candor bench calibrate --subjects`: the operating points' thresholds for subject
// templates of k = 1..kCalibrationPhotos photos, on LFW View 1.
void run_calibrate_subjects(const EngineOptions& options, const LfwArgs& a);

}  // namespace candor::bench
