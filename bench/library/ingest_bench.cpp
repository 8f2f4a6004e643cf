// `candor bench library --ingest N`: photo-library ingest of 12-megapixel JPEGs (issue 13's
// target: >= 3 photos/s on 2 cores, 1-5 faces a photo), and the smallest face it finds.
//
// The photos are made here: a 4000 x 3000 canvas of smooth noise with 1-5 LFW photos
// pasted on it, each scaled so that the face the detector finds in the 250 x 250 LFW
// image becomes 2%, 3%, 5%, 7.5% or 10% of the canvas's short side (60-300 px), in turn;
// written as JPEG (quality 90) to a temporary folder and ingested into a temporary
// SQLite store by ingest_photos(), as `candor library add` does. A planted face counts
// as found when a stored face's box overlaps it (IoU >= 0.3).
//
// The baseline, in the same run on the same files: each photo decoded whole and searched
// at the same minimum face (60 px) without the reduced decode, faces embedded at full
// resolution, nothing stored: what the ingest would cost without libjpeg's scaling.
#include "library/ingest_bench.h"

#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <iostream>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/crypto.h"
#include "candor/parallel.h"
#include "candor/photo_library.h"
#include "engine/lfw_bench.h"

namespace candor::bench {
namespace {

// CPU seconds of this process so far (all threads): on a shared machine the steadier figure.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

constexpr int kWidth = 4000, kHeight = 3000;
constexpr std::array<double, 5> kFractions = {0.02, 0.03, 0.05, 0.075, 0.10};

struct Planted {
  Box box;
  double fraction = 0;
};

// LFW images with one face the detector finds, and that face's box in the 250 x 250 image.
std::vector<std::pair<cv::Mat, Box>> lfw_faces(const Engine& engine, const std::filesystem::path& root, std::size_t n) {
  std::vector<std::filesystem::path> people;
  for (const auto& d : std::filesystem::directory_iterator(root / "lfw")) people.push_back(d.path());
  std::sort(people.begin(), people.end());
  std::vector<std::pair<cv::Mat, Box>> out;
  for (const auto& person : people) {
    if (out.size() >= n) break;
    const auto files = image_files(person, false);
    if (files.empty()) continue;
    cv::Mat img = cv::imread(files.front().string());
    if (img.empty()) continue;
    const auto faces = engine.detect(img);
    if (faces.size() != 1) continue;
    out.emplace_back(img, faces.front().box);
  }
  return out;
}

}  // namespace

void run_ingest(const EngineOptions& base, const std::filesystem::path& lfw, std::size_t photos, int workers, bool as_json) {
  require_lfw(lfw);
  EngineOptions eo = base;
  eo.replicas = std::max(eo.replicas, workers);
  if (workers > 1) cv::setNumThreads(1);
  auto engine = Engine::create(eo);
  if (!engine) die(engine.error().message);
  const auto sources = lfw_faces(**engine, lfw, photos * 5);
  if (sources.empty()) die("no LFW face found");

  std::string tmpl = (std::filesystem::temp_directory_path() / "candor-ingest-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp failed");
  const std::filesystem::path dir = tmpl;
  std::mt19937 rng(13);
  std::map<std::string, std::vector<Planted>> planted;
  std::size_t next_source = 0, faces_planted = 0;
  for (std::size_t p = 0; p < photos; ++p) {
    cv::Mat noise(30, 40, CV_8UC3), canvas;
    cv::randu(noise, cv::Scalar::all(40), cv::Scalar::all(220));
    cv::resize(noise, canvas, cv::Size(kWidth, kHeight), 0, 0, cv::INTER_CUBIC);
    const int faces = 1 + static_cast<int>(p % 5);
    const int cell = kWidth / faces;
    auto& list = planted[(dir / ("photo" + std::to_string(p) + ".jpg")).string()];
    for (int k = 0; k < faces; ++k) {
      const auto& [tile, box] = sources[next_source++ % sources.size()];
      const double fraction = kFractions[(p + static_cast<std::size_t>(k)) % kFractions.size()];
      const double scale = fraction * kHeight / box.width;
      cv::Mat scaled;
      cv::resize(tile, scaled, cv::Size(), scale, scale, scale < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
      const int w = std::min(scaled.cols, cell), h = std::min(scaled.rows, kHeight);
      std::uniform_int_distribution<int> y(0, kHeight - h);
      const int x0 = k * cell + (cell - w) / 2, y0 = y(rng);
      scaled(cv::Rect(0, 0, w, h)).copyTo(canvas(cv::Rect(x0, y0, w, h)));
      list.push_back(Planted{Box{static_cast<float>(x0 + box.x * scale), static_cast<float>(y0 + box.y * scale),
                                 static_cast<float>(box.width * scale), static_cast<float>(box.height * scale)},
                             fraction});
      ++faces_planted;
    }
    cv::imwrite((dir / ("photo" + std::to_string(p) + ".jpg")).string(), canvas, {cv::IMWRITE_JPEG_QUALITY, 90});
  }
  std::vector<std::filesystem::path> files;
  for (const auto& [path, _] : planted) files.emplace_back(path);

  // Candor's ingest, into a store of its own.
  StoreOptions so;
  so.key_hex = SecretKey::generate().to_hex();
  so.use_env_key = false;
  auto store = open_store((dir / "bench.db").string(), so);
  if (!store) die(store.error().message);
  LibraryStore& lib = (*store)->library();
  if (auto c = lib.create_library({"bench", "bench", 1}, {"bench", ""}); !c) die(c.error().message);
  LibraryOptions options;
  options.workers = workers;
  const double cpu0 = cpu_seconds();
  auto report = ingest_photos(**engine, lib, "bench", files, options, {"bench", ""});
  if (!report) die(report.error().message);
  const double ingest_rate = static_cast<double>(report->ingested) / report->seconds;
  const double ingest_cpu = (cpu_seconds() - cpu0) / static_cast<double>(report->ingested);

  // The baseline: whole decode, the same minimum face, no store.
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu1 = cpu_seconds();
  std::mutex mutex;
  std::size_t baseline_faces = 0;
  parallel_for(files.size(), workers, [&](std::size_t i) {
    auto img = read_image(files[i], options.limits);
    if (!img) return;
    DetectOptions d;
    d.min_face_size = static_cast<int>(std::ceil(options.min_face_fraction * std::min(img->cols, img->rows)));
    const auto faces = (*engine)->analyze(*img, d);
    std::lock_guard lock(mutex);
    baseline_faces += faces.size();
  });
  const double baseline_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double baseline_rate = static_cast<double>(files.size()) / baseline_s;
  const double baseline_cpu = (cpu_seconds() - cpu1) / static_cast<double>(files.size());

  // Which planted faces were found, by size.
  auto stored = lib.list_faces("bench", false).value();
  auto rows = lib.list_photos("bench").value();
  std::map<std::int64_t, std::string> path_of;
  for (const auto& r : rows) path_of[r.id] = r.path;
  std::map<double, std::pair<int, int>> by_size;  // fraction -> (found, planted)
  double smallest_found = 0;
  for (const auto& [path, list] : planted) {
    for (const Planted& pf : list) {
      bool found = false;
      for (const LibraryFace& f : stored) {
        if (path_of[f.photo] == path && iou(Box{f.box.x, f.box.y, f.box.w, f.box.h}, pf.box) >= 0.3F) found = true;
      }
      auto& [hit, all] = by_size[pf.fraction];
      ++all;
      if (found) {
        ++hit;
        if (smallest_found == 0 || pf.fraction < smallest_found) smallest_found = pf.fraction;
      }
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);

  nlohmann::json recall = nlohmann::json::object();
  for (const auto& [fraction, counts] : by_size) {
    char key[32];
    std::snprintf(key, sizeof key, "%.1f%% (%d px)", fraction * 100, static_cast<int>(fraction * kHeight));
    recall[key] = {{"found", counts.first}, {"planted", counts.second}};
  }
  const nlohmann::json j = {{"photos", photos},
                            {"size", "4000x3000"},
                            {"workers", workers},
                            {"faces_planted", faces_planted},
                            {"faces_stored", report->faces},
                            {"ingest_photos_per_s", ingest_rate},
                            {"baseline_full_decode_photos_per_s", baseline_rate},
                            {"baseline_faces", baseline_faces},
                            {"speedup", ingest_rate / baseline_rate},
                            {"ingest_cpu_s_per_photo", ingest_cpu},
                            {"baseline_cpu_s_per_photo", baseline_cpu},
                            {"smallest_face_found_fraction", smallest_found},
                            {"smallest_face_found_px", smallest_found * kHeight},
                            {"found_by_size", recall}};
  if (as_json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("ingest of %zu synthetic 12 MP JPEGs (4000x3000, 1-5 LFW faces each), %d workers\n", photos, workers);
  std::printf("  candor library ingest: %.2f photos/s, %.2f CPU s a photo (%zu faces stored of %zu planted)\n",
              ingest_rate, ingest_cpu, report->faces, faces_planted);
  std::printf("  baseline (whole decode, same minimum face, no store): %.2f photos/s, %.2f CPU s a photo (%zu faces);"
              " ratio %.2fx\n",
              baseline_rate, baseline_cpu, baseline_faces, ingest_rate / baseline_rate);
  for (const auto& [fraction, counts] : by_size) {
    std::printf("  faces of %.1f%% of the short side (%d px): %d of %d found\n", fraction * 100,
                static_cast<int>(fraction * kHeight), counts.first, counts.second);
  }
  std::printf("  smallest face found: %.1f%% of the short side (%.0f px)\n", smallest_found * 100, smallest_found * kHeight);
}

}  // namespace candor::bench
