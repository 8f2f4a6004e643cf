// `candor bench deblur`: what undoing a known motion smear (candor/deblur.h) does for the
// recogniser, on LFW, without video: how the Wiener filter's noise-to-signal ratio was
// chosen (kWienerNoiseToSignal) and what a misjudged smear costs. README "Camera streams".
//
// Each person with four or more photos is enrolled from the first three (the subject
// template, as a collection makes it); the last photo is the probe: scaled so that the
// face's shorter side is --face px, smeared horizontally by L px (a box, as a shutter open
// while the face moves), put on a grey canvas with Gaussian noise (sigma 4) and JPEG-coded
// (quality 40), then detected and embedded as seen, and again after deblur_motion() with
// landmarks located afresh. A probe counts as named when it scores at least the k = 3
// fmr-1e-4 threshold against its own subject. One-photo people probe the same way, as
// strangers: their highest score against any subject, at that threshold.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <random>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/collections.h"
#include "candor/deblur.h"
#include "candor/engine.h"
#include "engine/lfw.h"
#include "stream/stream_bench.h"

namespace candor::bench {
namespace {

namespace fs = std::filesystem;

struct DeblurArgs {
  fs::path lfw;
  int people = 100;
  float face = 90;
  unsigned seed = 7;
};

const Face* largest(const std::vector<Face>& faces) {
  if (faces.empty()) return nullptr;
  return &*std::max_element(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.box.area() < b.box.area(); });
}

std::vector<float> template_of(const Engine& engine, const cv::Mat& image) {
  const auto faces = engine.analyze(image);
  const Face* f = largest(faces);
  return f == nullptr ? std::vector<float>{} : f->embedding;
}

void run_deblur_bench(const EngineOptions& options, const DeblurArgs& a) {
  const fs::path lfw = a.lfw.empty() ? stream_bench_shared_dir() / "datasets" / "lfw" : a.lfw;
  if (!fs::is_directory(lfw / "lfw")) {
    std::cerr << "candor bench deblur: LFW is absent at " << lfw
              << ": nothing was measured (the team's copy lives in ../shared/datasets/lfw; --lfw points elsewhere)\n";
    std::exit(1);
  }
  auto created = Engine::create(options);
  if (!created) {
    std::cerr << "candor bench deblur: " << created.error().message << "\n";
    std::exit(1);
  }
  const Engine& engine = **created;
  auto point = find_operating_point(engine.recognizer_spec(), "fmr-1e-4");
  if (!point) {
    std::cerr << "candor bench deblur: " << point.error().message << "\n";
    std::exit(1);
  }
  const float threshold = subject_threshold(*point, 3);

  std::mt19937 rng(a.seed);
  auto [many, single] = shuffled_lfw_people(lfw, 4, rng);
  many.resize(std::min<std::size_t>(many.size(), static_cast<std::size_t>(a.people)));
  single.resize(std::min<std::size_t>(single.size(), static_cast<std::size_t>(a.people)));

  std::vector<std::vector<float>> subjects;
  std::vector<cv::Mat> probes;  // the last photo of each enrolled person, then the strangers'
  for (const std::string& name : many) {
    std::vector<std::vector<float>> faces;
    for (int i = 1; i <= 3; ++i) {
      auto t = template_of(engine, cv::imread(lfw_image_path(lfw, name, i).string()));
      if (!t.empty()) faces.push_back(std::move(t));
    }
    if (faces.empty()) continue;
    subjects.push_back(subject_template(faces));
    const auto n = std::distance(fs::directory_iterator(lfw / "lfw" / name), fs::directory_iterator());
    probes.push_back(cv::imread(lfw_image_path(lfw, name, static_cast<int>(n)).string()));
  }
  const std::size_t enrolled = subjects.size();
  for (const std::string& name : single) probes.push_back(cv::imread(lfw_image_path(lfw, name, 1).string()));

  // The probe as a camera would see it, smeared by `smear` px; empty when no face is found.
  auto degrade = [&](const cv::Mat& image, float smear, unsigned seed) -> cv::Mat {
    const auto faces = engine.detect(image);
    const Face* f = largest(faces);
    if (f == nullptr) return {};
    const double s = a.face / std::min(f->box.width, f->box.height);
    cv::Mat scaled;
    cv::resize(image, scaled, cv::Size(), s, s, s < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
    if (smear >= 1) cv::filter2D(scaled, scaled, -1, motion_kernel({smear, 0}));
    cv::Mat canvas(std::max(scaled.rows + 100, 300), std::max(scaled.cols + 100, 400), CV_8UC3, cv::Scalar(120, 130, 140));
    scaled.copyTo(canvas(cv::Rect(50, 50, scaled.cols, scaled.rows)));
    cv::Mat noise(canvas.size(), CV_16SC3), wide;
    cv::RNG(seed).fill(noise, cv::RNG::NORMAL, 0, 4);
    canvas.convertTo(wide, CV_16SC3);
    wide += noise;
    wide.convertTo(canvas, CV_8UC3);
    std::vector<uchar> jpeg;
    cv::imencode(".jpg", canvas, jpeg, {cv::IMWRITE_JPEG_QUALITY, 40});
    return cv::imdecode(jpeg, cv::IMREAD_COLOR);
  };
  // Enrolled probes named right, strangers named as someone.
  struct Count {
    int named = 0, strangers_named = 0;
  };
  auto tally = [&](Count& c, const std::vector<float>& t, std::size_t probe) {
    if (t.empty()) return;
    if (probe < enrolled) {
      c.named += cosine_similarity(t, subjects[probe]) >= threshold;
      return;
    }
    float best = -1;
    for (const auto& s : subjects) best = std::max(best, cosine_similarity(t, s));
    c.strangers_named += best >= threshold;
  };

  const std::vector<float> smears = {0, 6, 10, 14};
  const std::vector<float> ratios = {0.02f, 0.05f, 0.1f};
  std::cout << "bench deblur: " << enrolled << " enrolled (3 photos each), " << probes.size() - enrolled
            << " strangers; faces of " << a.face << " px; threshold " << threshold << " (fmr-1e-4, k = 3)\n\n";
  std::cout << "| smear px | as seen: named / strangers named |";
  for (float r : ratios) std::cout << " deblurred, ratio " << r << " |";
  std::cout << " ratio " << kWienerNoiseToSignal << ", smear misjudged -2 / +2 px |\n|---|---|";
  for (std::size_t i = 0; i <= ratios.size(); ++i) std::cout << "---|";
  std::cout << "\n";
  for (float smear : smears) {
    Count seen;
    std::vector<Count> deblurred(ratios.size()), misjudged(2);
    for (std::size_t p = 0; p < probes.size(); ++p) {
      const cv::Mat image = degrade(probes[p], smear, static_cast<unsigned>(p) + 11);
      if (image.empty()) continue;
      tally(seen, template_of(engine, image), p);
      if (smear == 0) continue;
      for (std::size_t r = 0; r < ratios.size(); ++r) {
        tally(deblurred[r], template_of(engine, deblur_motion(image, {smear, 0}, ratios[r])), p);
      }
      for (int m = 0; m < 2; ++m) {
        tally(misjudged[static_cast<std::size_t>(m)], template_of(engine, deblur_motion(image, {smear + (m == 0 ? -2.0f : 2.0f), 0})), p);
      }
    }
    auto cell = [&](const Count& c) { return std::to_string(c.named) + " / " + std::to_string(c.strangers_named); };
    std::cout << "| " << smear << " | " << cell(seen) << " |";
    for (const Count& c : deblurred) std::cout << " " << (smear == 0 ? "" : cell(c)) << " |";
    std::cout << " " << (smear == 0 ? "" : cell(misjudged[0]) + ", " + cell(misjudged[1])) << " |\n" << std::flush;
  }
}

}  // namespace

void register_deblur_bench_command(CLI::App& bench, const EngineOptions& options) {
  auto a = std::make_shared<DeblurArgs>();
  CLI::App* c = bench.add_subcommand("deblur", "Motion deblurring on smeared LFW probes: named people and strangers");
  c->add_option("--lfw", a->lfw, "LFW directory (default: $CANDOR_SHARED_DIR or ../shared, datasets/lfw)");
  c->add_option("--people", a->people, "Enrolled people, and as many strangers")->capture_default_str();
  c->add_option("--face", a->face, "The probe face's shorter side, px")->capture_default_str();
  c->add_option("--seed", a->seed, "Choice of people")->capture_default_str();
  c->callback([&options, a] { run_deblur_bench(options, *a); });
}

}  // namespace candor::bench
