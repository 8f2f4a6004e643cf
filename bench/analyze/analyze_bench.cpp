#include "analyze/analyze_bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <opencv2/core/utility.hpp>

#include "analyze/analysis_ops.h"
#include "candor/analyzer.h"
#include "candor/image.h"
#include "engine/lfw.h"

namespace candor::bench {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& message) {
  std::cerr << "candor bench quality: " << message << "\n";
  std::exit(1);
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

struct Args {
  std::filesystem::path root = std::filesystem::path(CANDOR_SHARED_DIR) / "datasets" / "lfw";
  std::string pairs = "pairs.txt";
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int timing_faces = 200;
};

struct ImageResult {
  std::vector<float> embedding;
  std::optional<FaceQuality> quality;
  std::optional<HeadPose> landmark_pose;
  bool fallback_box = false;
};

std::string key_of(const std::string& name, int index) {
  return lfw_image_path("", name, index).lexically_relative("lfw").generic_string();
}

const Face* centre_face(const std::vector<Face>& faces, const cv::Mat& image) {
  const cv::Point2f c(static_cast<float>(image.cols) / 2, static_cast<float>(image.rows) / 2);
  const Face* best = nullptr;
  double bd = 1e18;
  for (const Face& f : faces) {
    const double d = cv::norm(f.box.center() - c);
    if (d < bd) bd = d, best = &f;
  }
  return best;
}

// As bench/engine/lfw_embeddings.cpp: the face nearest the centre, a lower threshold when
// none is found, then LFW's fixed central box.
Face lfw_face(const Engine& engine, const cv::Mat& image, bool& fallback) {
  auto faces = engine.detect_boxes(image);
  if (faces.empty()) {
    DetectOptions low;
    low.score_threshold = 0.3f;
    faces = engine.detect_boxes(image, low);
  }
  Face face;
  fallback = false;
  if (const Face* f = centre_face(faces, image)) {
    face = *f;
  } else {
    fallback = true;
    const float w = static_cast<float>(image.cols), h = static_cast<float>(image.rows);
    face.box = {0.3f * w, 0.28f * h, 0.4f * w, 0.46f * h};
  }
  engine.locate_landmarks(image, std::span<Face>(&face, 1));
  return face;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(std::clamp(p * static_cast<double>(v.size() - 1), 0.0, static_cast<double>(v.size() - 1)))];
}

const char* level_name(QualityLevel l) {
  return l == QualityLevel::kHigh ? "high" : l == QualityLevel::kMedium ? "medium" : "low";
}

void run_quality(const EngineOptions& options, const Args& a) {
  if (!std::filesystem::is_directory(a.root / "lfw")) {
    die("LFW not found at " + a.root.string() + " (expected <dir>/lfw/<Name>/<Name>_NNNN.jpg and the pairs files)");
  }
  auto pairs = read_lfw_pairs(a.root / a.pairs);
  if (!pairs) die(pairs.error().message);
  std::set<std::string> unique;
  for (const auto& p : *pairs) unique.insert(key_of(p.name_a, p.index_a)), unique.insert(key_of(p.name_b, p.index_b));
  const std::vector<std::string> keys(unique.begin(), unique.end());

  EngineOptions eo = options;
  eo.replicas = std::max(1, a.threads);
  auto engine = Engine::create(eo);
  if (!engine) die(engine.error().message);
  AnalyzerOptions ao;
  ao.model_dir = options.model_dir, ao.manifest = options.manifest, ao.replicas = std::max(1, a.threads);
  auto analyzer = FaceAnalyzer::create(ao);
  if (!analyzer) die(analyzer.error().message);

  cv::setNumThreads(1);
  std::vector<ImageResult> results(keys.size());
  std::atomic<std::size_t> next{0}, done{0};
  const auto start = Clock::now();
  auto worker = [&] {
    for (std::size_t i; (i = next++) < keys.size();) {
      auto image = read_image(a.root / "lfw" / keys[i]);
      if (!image) continue;
      ImageResult& r = results[i];
      Face face = lfw_face(**engine, *image, r.fallback_box);
      (*engine)->embed(*image, std::span<Face>(&face, 1));
      (*analyzer)->analyze(*image, std::span<Face>(&face, 1), {});
      r.embedding = std::move(face.embedding);
      r.quality = face.quality;
      r.landmark_pose = analysis::pose_from_landmarks(face.landmarks68, image->size());
      if (const std::size_t n = ++done; n % 1000 == 0) std::cerr << "images: " << n << "/" << keys.size() << "\n";
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, a.threads); ++t) pool.emplace_back(worker);
  for (auto& th : pool) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::map<std::string, std::size_t> at;
  for (std::size_t i = 0; i < keys.size(); ++i) at[keys[i]] = i;

  // Pairs: similarity and the lower level of the two images.
  struct Scored { float s; bool same; QualityLevel level; };
  std::vector<Scored> scored;
  std::vector<float> impostor;
  for (const auto& p : *pairs) {
    const ImageResult& x = results[at[key_of(p.name_a, p.index_a)]];
    const ImageResult& y = results[at[key_of(p.name_b, p.index_b)]];
    const float s = x.embedding.empty() || y.embedding.empty() ? -1.0f : cosine_similarity(x.embedding, y.embedding);
    const QualityLevel la = x.quality ? x.quality->level : QualityLevel::kLow;
    const QualityLevel lb = y.quality ? y.quality->level : QualityLevel::kLow;
    scored.push_back({s, p.same, std::min(la, lb)});
    if (!p.same) impostor.push_back(s);
  }
  const double t_fmr = threshold_at_fmr(impostor, 1e-3);
  // The single threshold that maximises accuracy over all pairs.
  std::vector<float> cands;
  for (const auto& x : scored) cands.push_back(x.s);
  double best_t = 0, best_acc = -1;
  for (float t : cands) {
    std::size_t ok = 0;
    for (const auto& x : scored) ok += (x.s >= t) == x.same;
    const double acc = static_cast<double>(ok) / static_cast<double>(scored.size());
    if (acc > best_acc) best_acc = acc, best_t = t;
  }

  std::printf("candor bench quality: %s, %zu pairs, %zu images, %.0f s wall on %d threads\n", a.pairs.c_str(),
              scored.size(), keys.size(), wall, a.threads);
  std::printf("thresholds: FMR=1e-3 at cosine %.3f (all %zu impostor pairs); best overall accuracy %.2f%% at %.3f\n",
              t_fmr, impostor.size(), 100 * best_acc, best_t);
  std::printf("\n%-8s %8s %8s %10s %14s %12s\n", "level", "genuine", "impostor", "accuracy", "FNMR@FMR1e-3", "FMR@1e-3thr");
  for (QualityLevel l : {QualityLevel::kHigh, QualityLevel::kMedium, QualityLevel::kLow}) {
    std::size_t g = 0, im = 0, ok = 0, fn = 0, fm = 0;
    for (const auto& x : scored) {
      if (x.level != l) continue;
      (x.same ? g : im)++;
      ok += (x.s >= best_t) == x.same;
      if (x.same && x.s < t_fmr) ++fn;
      if (!x.same && x.s >= t_fmr) ++fm;
    }
    const double n = static_cast<double>(g + im);
    std::printf("%-8s %8zu %8zu %9.2f%% %13.2f%% %11.3f%%\n", level_name(l), g, im, n > 0 ? 100.0 * static_cast<double>(ok) / n : 0.0,
                g > 0 ? 100.0 * static_cast<double>(fn) / static_cast<double>(g) : 0.0,
                im > 0 ? 100.0 * static_cast<double>(fm) / static_cast<double>(im) : 0.0);
  }
  std::printf("(the lower level of each pair's two images; accuracy at the overall best threshold)\n");

  // Per-image figures: levels, limiting factors, distributions.
  std::map<std::string, int> levels, factors;
  std::vector<double> sharp, bright, size, yaw_net, yaw_lmk, diff;
  std::size_t fallback = 0;
  std::array<int, 12> hist_net{}, hist_lmk{};
  auto bin = [](float y) { return static_cast<std::size_t>(std::clamp(static_cast<int>(std::floor((y + 90.0f) / 15.0f)), 0, 11)); };
  for (const auto& r : results) {
    if (!r.quality) continue;
    fallback += r.fallback_box;
    const FaceQuality& q = *r.quality;
    ++levels[level_name(q.level)];
    if (!q.limiting_factor.empty()) {
      std::string f = q.limiting_factor.substr(0, q.limiting_factor.find_first_of("0123456789"));
      ++factors[f + "(" + level_name(q.level) + ")"];
    }
    sharp.push_back(q.sharpness), bright.push_back(q.brightness), size.push_back(q.face_size_px);
    if (q.pose) {
      yaw_net.push_back(q.pose->yaw), ++hist_net[bin(q.pose->yaw)];
      if (r.landmark_pose) {
        yaw_lmk.push_back(r.landmark_pose->yaw), ++hist_lmk[bin(r.landmark_pose->yaw)];
        diff.push_back(std::abs(q.pose->yaw - r.landmark_pose->yaw));
      }
    }
  }
  std::printf("\nimages by level:");
  for (const auto& [k, v] : levels) std::printf(" %s %d", k.c_str(), v);
  std::printf(" (fixed central box for %zu without a detection)\nlimiting factors:", fallback);
  for (const auto& [k, v] : factors) std::printf(" [%s] %d", k.c_str(), v);
  std::printf("\npercentiles       p1      p5     p10     p50     p90\n");
  for (auto [name, v] : {std::pair{"sharpness", &sharp}, {"brightness", &bright}, {"face size", &size}}) {
    std::printf("%-12s %7.1f %7.1f %7.1f %7.1f %7.1f\n", name, percentile(*v, 0.01), percentile(*v, 0.05), percentile(*v, 0.10),
                percentile(*v, 0.5), percentile(*v, 0.9));
  }
  std::printf("\nyaw histogram (15-degree bins; network = HopeNet mirror-averaged, landmarks = solvePnP)\n");
  for (std::size_t b = 0; b < 12; ++b) {
    std::printf("  [%4d,%4d) network %5d  landmarks %5d\n", -90 + 15 * static_cast<int>(b), -75 + 15 * static_cast<int>(b),
                hist_net[b], hist_lmk[b]);
  }
  std::printf("  (end bins include everything beyond +-75)\n  |network - landmarks| yaw: median %.1f, p90 %.1f degrees\n",
              percentile(diff, 0.5), percentile(diff, 0.9));

  // Stage cost, one thread, one replica.
  ao.replicas = 1;
  auto single = FaceAnalyzer::create(ao);
  if (!single) die(single.error().message);
  AnalyzerOptions plain = ao;
  plain.pose_flip_average = false;
  auto one_pass = FaceAnalyzer::create(plain);
  if (!one_pass) die(one_pass.error().message);
  std::vector<double> base, pose1, pose2, eyes, live;
  for (std::size_t i = 0; i < keys.size() && static_cast<int>(base.size()) < a.timing_faces; i += std::max<std::size_t>(1, keys.size() / static_cast<std::size_t>(a.timing_faces))) {
    auto image = read_image(a.root / "lfw" / keys[i]);
    if (!image) continue;
    bool fb = false;
    Face face = lfw_face(**engine, *image, fb);
    auto time = [&](const FaceAnalyzer& an, const AnalysisRequest& r) {
      const auto t = Clock::now();
      an.analyze(*image, std::span<Face>(&face, 1), r);
      return ms_since(t);
    };
    const double b = time(**single, {.pose = false, .eyes = false});
    base.push_back(b);
    pose1.push_back(time(**one_pass, {.pose = true, .eyes = false}) - b);
    pose2.push_back(time(**single, {.pose = true, .eyes = false}) - b);
    eyes.push_back(time(**single, {.pose = false, .eyes = true}) - b);
    live.push_back(time(**single, {.pose = false, .eyes = false, .liveness = true}) - b);
  }
  std::printf("\nstage cost per face, median ms, one thread (%zu LFW faces):\n", base.size());
  std::printf("  sharpness + exposure (align, Laplacian)  %6.2f\n", percentile(base, 0.5));
  std::printf("  pose network, one pass                   %6.2f\n", percentile(pose1, 0.5));
  std::printf("  pose network, mirror-averaged (default)  %6.2f\n", percentile(pose2, 0.5));
  std::printf("  eye network (both eyes)                  %6.2f\n", percentile(eyes, 0.5));
  std::printf("  liveness network                         %6.2f\n", percentile(live, 0.5));
}

}  // namespace

void register_analyze_bench_commands(CLI::App& bench, const EngineOptions& options) {
  auto args = std::make_shared<Args>();
  CLI::App* c = bench.add_subcommand("quality", "LFW accuracy split by quality level, yaw distribution, analysis cost");
  c->add_option("dir", args->root, "LFW directory (holds lfw/ and the pairs files)")->capture_default_str();
  c->add_option("--pairs", args->pairs, "pairs.txt (View 2) or pairsDevTest.txt (View 1)")->capture_default_str();
  c->add_option("--threads", args->threads, "Worker threads")->capture_default_str();
  c->add_option("--timing-faces", args->timing_faces, "Faces timed for the stage costs")->capture_default_str();
  c->callback([&options, args] { run_quality(options, *args); });
}

}  // namespace candor::bench
