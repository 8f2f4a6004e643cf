// The default Engine: manifest-selected detector, landmarker and recogniser.
#include <cstdlib>
#include <thread>

#include "align/landmarker.h"
#include "candor/engine.h"
#include "detect/ultraface_detector.h"
#include "embed/embedder.h"

namespace candor {
namespace {

class DefaultEngine final : public Engine {
 public:
  DefaultEngine(std::unique_ptr<UltraFaceDetector> detector, std::unique_ptr<Landmarker> landmarker,
                std::unique_ptr<Embedder> embedder, InferenceBackend inference)
      : detector_(std::move(detector)),
        landmarker_(std::move(landmarker)),
        embedder_(std::move(embedder)),
        inference_(inference) {}

  std::vector<Face> detect_boxes(const cv::Mat& bgr, const DetectOptions& options) const override {
    return detector_->detect(bgr, options);
  }

  void locate_landmarks(const cv::Mat& bgr, std::span<Face> faces) const override { landmarker_->locate(bgr, faces); }

  int smallest_min_face(cv::Size image) const override { return detector_->smallest_min_face(image); }

  std::vector<Face> detect(const cv::Mat& bgr, const DetectOptions& options) const override {
    std::vector<Face> faces = detector_->detect(bgr, options);
    if (options.landmarks) landmarker_->locate(bgr, faces);
    return faces;
  }

  void embed(const cv::Mat& bgr, std::span<Face> faces) const override { embedder_->embed(bgr, faces); }

  cv::Mat align(const cv::Mat& bgr, const Face& face) const override { return embedder_->align(bgr, face); }

  std::vector<Face> analyze(const cv::Mat& bgr, const DetectOptions& options) const override {
    DetectOptions with_landmarks = options;
    with_landmarks.landmarks = true;
    std::vector<Face> faces = detect(bgr, with_landmarks);
    embedder_->embed(bgr, faces);
    return faces;
  }

  const ModelSpec& detector_spec() const override { return detector_->spec(); }
  const ModelSpec& recognizer_spec() const override { return embedder_->spec(); }
  InferenceBackend inference() const override { return inference_; }

 private:
  std::unique_ptr<UltraFaceDetector> detector_;
  std::unique_ptr<Landmarker> landmarker_;
  std::unique_ptr<Embedder> embedder_;
  InferenceBackend inference_;
};

}  // namespace

Result<std::unique_ptr<Engine>> Engine::create(const EngineOptions& options) {
  if (options.landmark_passes < kMinLandmarkPasses || options.landmark_passes > kMaxLandmarkPasses) {
    return Error{ErrorCode::kInvalidArgument, "landmark passes must be " + std::to_string(kMinLandmarkPasses) + ".." +
                                                  std::to_string(kMaxLandmarkPasses) + ", not " +
                                                  std::to_string(options.landmark_passes)};
  }
  const std::filesystem::path model_dir = resolve_model_dir(options.model_dir);
  const std::filesystem::path manifest_path = resolve_manifest(options.manifest);
  auto manifest = load_manifest(manifest_path);
  if (!manifest) return manifest.error();
  const int replicas = options.replicas > 0 ? options.replicas
                                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  auto load = [&](ModelRole role, const std::string& id) -> Result<std::pair<ModelSpec, std::unique_ptr<NetPool>>> {
    auto spec = manifest->find(role, id);
    if (!spec) return spec.error();
    auto file = locate_model(*spec, model_dir, options.verify_hashes);
    if (!file) return file.error();
    auto pool = NetPool::load(*file, replicas, options.inference);
    if (!pool) return pool.error();
    return std::make_pair(std::move(*spec), std::move(*pool));
  };

  auto det = load(ModelRole::kDetector, options.detector_id);
  if (!det) return det.error();
  if (det->first.type != "ultraface") {
    return Error{ErrorCode::kInvalidArgument, "detector type '" + det->first.type + "' is not supported (ultraface)"};
  }
  auto lmk = load(ModelRole::kLandmarks, options.landmarks_id);
  if (!lmk) return lmk.error();
  if (lmk->first.type != "pfld68") {
    return Error{ErrorCode::kInvalidArgument, "landmark type '" + lmk->first.type + "' is not supported (pfld68)"};
  }
  auto rec = load(ModelRole::kRecognizer, options.recognizer_id);
  if (!rec) return rec.error();
  if (rec->first.type != "embedding" || rec->first.alignment != "arcface112") {
    return Error{ErrorCode::kInvalidArgument, "recogniser " + rec->first.id +
                                                  " must be of type 'embedding' with alignment 'arcface112'"};
  }
  std::unique_ptr<Engine> engine = std::make_unique<DefaultEngine>(
      std::make_unique<UltraFaceDetector>(std::move(det->first), std::move(det->second)),
      std::make_unique<Landmarker>(std::move(lmk->first), std::move(lmk->second), options.landmark_passes),
      std::make_unique<Embedder>(std::move(rec->first), std::move(rec->second)), options.inference);
  return engine;
}

float cosine_similarity(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) {
    throw std::invalid_argument("cosine_similarity: templates of different lengths (" + std::to_string(a.size()) +
                                " and " + std::to_string(b.size()) + ")");
  }
  double dot = 0;
  for (std::size_t i = 0; i < a.size(); ++i) dot += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(dot);
}

Verification verify(std::span<const float> a, std::span<const float> b, const OperatingPoint& point) {
  Verification v;
  v.similarity = cosine_similarity(a, b);
  v.operating_point = point;
  v.match = v.similarity >= point.threshold;
  return v;
}

Result<OperatingPoint> find_operating_point(const ModelSpec& recognizer, const std::string& name) {
  std::string names;
  for (const OperatingPoint& p : recognizer.operating_points) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  return Error{ErrorCode::kInvalidArgument, "no operating point '" + name + "' for " + recognizer.id + " (there are: " + names + ")"};
}

}  // namespace candor
