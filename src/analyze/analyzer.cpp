// The default FaceAnalyzer: manifest-selected pose, eye-state and liveness networks.
#include "candor/analyzer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "analyze/analysis_ops.h"
#include "infer/net_pool.h"

namespace candor {
namespace {

// fr_eye.onnx output classes, established on the face-api samples (analyzer tests,
// README "Face analysis"): class 1 is "open" — open eyes score p(1) > 0.99 — and class 0
// "closed": eyes covered by a drawn black bar score p(0) = 1.000 on all 8 faces, a face
// looking down with lowered lids (sample2) p(0) > 0.98. The pack's JS flag
// (class 0 > class 1) therefore means "closed".
constexpr int kEyeOpenClass = 1;
constexpr float kEyeOpenProbability = 0.5f;  // the argmax of two classes

// fr_liveness.onnx output classes, established on synthetic re-captures (bench
// `quality`, README "Face analysis"): class 0 is "live" (the pack's JS reports it as its
// score), class 1 rises when the face is re-displayed on a screen or a print, class 2
// (a third attack type in Silent-Face's training) stays below 0.05 throughout.
constexpr int kLiveClass = 0;
// The box enlarged 2.7x about its centre: fr_liveness.js (scale_value 2.7), as
// Silent-Face-Anti-Spoofing's "2.7_80x80_MiniFASNetV2".
constexpr float kLivenessScale = 2.7f;

// HopeNet's normalisation: ImageNet mean and standard deviation on RGB in [0, 1]
// (fr_pose.js preprocessPose; Ruiz et al. 2018 train with torchvision's Normalize).
const cv::Scalar kImageNetMean(0.485, 0.456, 0.406);
const cv::Scalar kImageNetStd(0.229, 0.224, 0.225);

std::vector<float> forward(const NetPool& pool, const cv::Mat& blob, const std::string& output) {
  const cv::Mat out = pool.run(blob, {output}).front();
  return {out.ptr<float>(), out.ptr<float>() + out.total()};
}

struct Network {
  ModelSpec spec;
  std::unique_ptr<NetPool> pool;
};

class DefaultAnalyzer final : public FaceAnalyzer {
 public:
  DefaultAnalyzer(Network pose, Network eye, std::optional<Network> live, const AnalyzerOptions& options)
      : pose_(std::move(pose)), eye_(std::move(eye)), live_(std::move(live)), options_(options) {}

  void analyze(const cv::Mat& bgr, std::span<Face> faces, const AnalysisRequest& request) const override {
    if (bgr.empty() || bgr.type() != CV_8UC3) throw std::invalid_argument("FaceAnalyzer::analyze: bgr must be CV_8UC3");
    if (request.liveness && !live_) {
      throw std::invalid_argument("FaceAnalyzer::analyze: liveness requested but the analyser was created without it");
    }
    for (Face& face : faces) {
      FaceQuality q;
      q.face_size_px = std::min(face.box.width, face.box.height);
      analysis::measure_crop(analysis::aligned_crop(bgr, face), q);
      if (request.pose) q.pose = pose(bgr, face, request.pose_source.value_or(options_.pose_source));
      if (request.eyes && face.landmarks68.size() == 68) {
        const auto open = eyes(bgr, face);  // grey around the eyes only (eye_crops)
        q.left_eye_open_probability = open[0], q.right_eye_open_probability = open[1];
        q.left_eye_open = open[0] >= kEyeOpenProbability, q.right_eye_open = open[1] >= kEyeOpenProbability;
      }
      assign_quality_level(q, options_.thresholds);
      face.quality = std::move(q);
      if (request.liveness) face.liveness = liveness(bgr, face);
    }
  }

  const QualityThresholds& thresholds() const override { return options_.thresholds; }
  float liveness_threshold() const override { return options_.liveness_threshold; }

 private:
  HeadPose pose(const cv::Mat& bgr, const Face& face, PoseSource source) const {
    if (source == PoseSource::kLandmarks) {
      if (face.landmarks68.size() == 68) return analysis::pose_from_landmarks(face.landmarks68, bgr.size());
    }
    const InputSpec& in = pose_.spec.input;
    cv::Mat crop = analysis::pose_crop(bgr, face, cv::Size(in.width, in.height));
    auto run = [&](const cv::Mat& c) {
      cv::Mat rgb;
      cv::cvtColor(c, rgb, cv::COLOR_BGR2RGB);
      rgb.convertTo(rgb, CV_32FC3, 1.0 / 255);
      cv::subtract(rgb, kImageNetMean, rgb);
      cv::divide(rgb, kImageNetStd, rgb);
      const cv::Mat blob = cv::dnn::blobFromImage(rgb);
      const std::vector<cv::Mat> outs = pose_.pool->run(blob, {pose_.spec.outputs.at("yaw"), pose_.spec.outputs.at("pitch")});
      auto angle = [](const cv::Mat& m) { return analysis::hopenet_angle({m.ptr<float>(), m.total()}); };
      return std::pair{angle(outs[0]), angle(outs[1])};
    };
    HeadPose p;
    auto [yaw, pitch] = run(crop);
    if (options_.pose_flip_average) {
      // The mirror image has the opposite yaw and the same pitch; averaging the two
      // halves the network's left-right inconsistency (README "Face analysis").
      cv::Mat mirrored;
      cv::flip(crop, mirrored, 1);
      auto [yaw_m, pitch_m] = run(mirrored);
      yaw = (yaw - yaw_m) / 2, pitch = (pitch + pitch_m) / 2;
    }
    p.yaw = yaw, p.pitch = pitch;
    // Roll from the eye line: exact under image rotation, where the network's roll is off
    // by a median 2.4 and up to 17.6 degrees (the probe's +-15 degree rotations, 25 LFW faces).
    const cv::Point2f d = face.landmarks[kRightEye] - face.landmarks[kLeftEye];
    p.roll = static_cast<float>(std::atan2(d.y, d.x) * 180.0 / CV_PI);
    return p;
  }

  std::array<float, 2> eyes(const cv::Mat& bgr, const Face& face) const {
    const auto crops = analysis::eye_crops(bgr, face.landmarks68);
    const InputSpec& in = eye_.spec.input;
    std::array<float, 2> open{};
    auto probability = [&](std::span<float> logits) {
      if (logits.size() != 2) throw std::runtime_error("eye network " + eye_.spec.id + ": expected 2 logits");
      analysis::softmax(logits);
      return logits[kEyeOpenClass];
    };
    const cv::Size size(in.width, in.height);
    if (eye_.spec.batchable) {
      const std::vector<cv::Mat> batch(crops.begin(), crops.end());
      auto v = forward(*eye_.pool, cv::dnn::blobFromImages(batch, in.scale, size, cv::Scalar::all(in.mean)),
                       eye_.spec.outputs.at("logits"));
      if (v.size() != 4) throw std::runtime_error("eye network " + eye_.spec.id + ": expected 2x2 logits");
      open[0] = probability({v.data(), 2}), open[1] = probability({v.data() + 2, 2});
    } else {
      for (std::size_t i = 0; i < 2; ++i) {
        auto v = forward(*eye_.pool, cv::dnn::blobFromImage(crops[i], in.scale, size, cv::Scalar::all(in.mean)),
                         eye_.spec.outputs.at("logits"));
        open[i] = probability(v);
      }
    }
    return open;
  }

  Liveness liveness(const cv::Mat& bgr, const Face& face) const {
    const InputSpec& in = live_->spec.input;
    const cv::Mat crop = analysis::liveness_crop(bgr, face.box, kLivenessScale, cv::Size(in.width, in.height));
    auto v = forward(*live_->pool,
                     cv::dnn::blobFromImage(crop, in.scale, cv::Size(), cv::Scalar::all(in.mean), in.color == ColorOrder::kRgb),
                     live_->spec.outputs.at("logits"));
    if (v.size() < 2) throw std::runtime_error("liveness network " + live_->spec.id + ": too few logits");
    analysis::softmax(v);
    Liveness l;
    l.score = v[kLiveClass];
    l.threshold = options_.liveness_threshold;
    l.live = l.score >= l.threshold;
    return l;
  }

  Network pose_;
  Network eye_;
  std::optional<Network> live_;
  AnalyzerOptions options_;
};

}  // namespace

Result<std::unique_ptr<FaceAnalyzer>> FaceAnalyzer::create(const AnalyzerOptions& options) {
  const std::filesystem::path model_dir = resolve_model_dir(options.model_dir);
  const std::filesystem::path manifest_path = resolve_manifest(options.manifest);
  auto manifest = load_manifest(manifest_path);
  if (!manifest) return manifest.error();
  const int replicas = options.replicas > 0 ? options.replicas
                                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto load = [&](ModelRole role, const std::string& id, const std::string& type,
                  std::initializer_list<const char*> outputs) -> Result<Network> {
    auto spec = manifest->find(role, id);
    if (!spec) return spec.error();
    if (spec->type != type) {
      return Error{ErrorCode::kInvalidArgument, std::string(model_role_name(role)) + " model " + spec->id + " has type '" +
                                                    spec->type + "'; the analyser supports '" + type + "'"};
    }
    for (const char* o : outputs) {
      if (!spec->outputs.contains(o)) {
        return Error{ErrorCode::kInvalidArgument, "model " + spec->id + " in " + manifest_path.string() +
                                                      " names no '" + o + "' output"};
      }
    }
    auto file = locate_model(*spec, model_dir, options.verify_hashes);
    if (!file) return file.error();
    auto pool = NetPool::load(*file, replicas);
    if (!pool) return pool.error();
    return Network{std::move(*spec), std::move(*pool)};
  };
  auto pose = load(ModelRole::kPose, options.pose_id, "hopenet", {"yaw", "pitch", "roll"});
  if (!pose) return pose.error();
  auto eye = load(ModelRole::kEye, options.eye_id, "eye_state", {"logits"});
  if (!eye) return eye.error();
  std::optional<Network> live;
  if (options.load_liveness) {
    auto l = load(ModelRole::kLiveness, options.liveness_id, "minifasnet", {"logits"});
    if (!l) return l.error();
    live = std::move(*l);
  }
  std::unique_ptr<FaceAnalyzer> analyzer =
      std::make_unique<DefaultAnalyzer>(std::move(*pose), std::move(*eye), std::move(live), options);
  return analyzer;
}

}  // namespace candor
