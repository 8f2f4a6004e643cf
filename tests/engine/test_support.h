// Paths and shared fixtures for the engine tests.
#pragma once

#include <filesystem>
#include <memory>
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

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

// One face of a face-api sample photo (faces ordered left to right), cropped with
// `margin` x its box around it and JPEG-encoded: a portrait with exactly one face.
// Two margins give two different images of the same face. The same woman appears in
// sample1 (face 2) and sample3 (face 1): two photographs of one person.
inline std::vector<std::uint8_t> face_crop_jpeg(int sample_no, int face_index, float margin) {
  const auto path = testdata("face-api/sample" + std::to_string(sample_no) + ".jpg");
  const cv::Mat img = cv::imread(path.string());
  if (img.empty()) throw std::runtime_error(path.string() + " is missing: run `make setup`");
  auto faces = shared_engine().detect(img);
  std::sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.box.x < b.box.x; });
  const Face& f = faces.at(static_cast<std::size_t>(face_index));
  const float mx = f.box.width * margin, my = f.box.height * margin;
  cv::Rect r(cv::Point(static_cast<int>(f.box.x - mx), static_cast<int>(f.box.y - my)),
             cv::Point(static_cast<int>(f.box.right() + mx), static_cast<int>(f.box.bottom() + my)));
  r &= cv::Rect(0, 0, img.cols, img.rows);
  std::vector<std::uint8_t> out;
  cv::imencode(".jpg", img(r), out);
  return out;
}

#define CANDOR_REQUIRE_LFW()                                                                        \
  if (!::candor::test::have_lfw())                                                                  \
  GTEST_SKIP() << "LFW is absent at " << ::candor::test::lfw_root()                                 \
               << ": the LFW checks did not run (the team's copy lives in ../shared/datasets/lfw)"

}  // namespace candor::test
