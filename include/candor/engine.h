// Candor: the face engine — from pixels to faces, landmarks and templates.
//
// An Engine owns the networks named by the model manifest (detector, landmarker,
// recogniser) and runs the pipeline:
//
//   detect_boxes      image pyramid + tiles through the detector, NMS across them
//   locate_landmarks  68 points: a box crop, then EngineOptions::landmark_passes - 1
//                     square crops around its points, averaged; reduced to the 5
//                     ArcFace points
//   embed             similarity transform onto the ArcFace 112x112 template,
//                     the recogniser in one batch, L2 normalisation
//
// Thread safety: an Engine is safe to share between threads. Every const member
// may be called concurrently; each network is replicated `replicas` times and an
// inference waits for a free replica, so at most `replicas` inferences of one
// network run at once.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "candor/face.h"
#include "candor/image.h"
#include "candor/inference.h"
#include "candor/models.h"
#include "candor/result.h"

namespace candor {

struct DetectOptions {
  float score_threshold = 0.7f;  // detector confidence; 0.7 finds all 22 faces of the face-api samples, none false
  // Pixels (shorter box side) in the input image; smaller faces are not searched for.
  // Raised to Engine::smallest_min_face(image size) for large images (a bound on work).
  int min_face_size = 24;
  int max_faces = 64;            // the highest-scoring faces are kept
  bool landmarks = true;         // detect(): also locate landmarks
};

// The range of EngineOptions::landmark_passes. Beyond four, more refined crops added
// nothing on LFW View 1 (five scales: 99.41% and TAR@FAR 1e-3 98.19%, as four).
inline constexpr int kMinLandmarkPasses = 1;
inline constexpr int kMaxLandmarkPasses = 4;

struct EngineOptions {
  std::filesystem::path model_dir;  // empty: $CANDOR_MODEL_DIR, else <source>/models
  std::filesystem::path manifest;   // empty: $CANDOR_MANIFEST, else <source>/config/models.json
  std::string detector_id;          // manifest ids; empty: the first entry of each role
  std::string landmarks_id;
  std::string recognizer_id;
  int replicas = 0;                 // concurrent inferences per network; 0: hardware threads
  // Landmark network runs per face, kMinLandmarkPasses..kMaxLandmarkPasses: one on the
  // detector box's square crop, then passes - 1 refined crops around its points
  // (1.10x their extent, with three passes 1.075 and 1.125x, with four 1.05, 1.10 and
  // 1.15x), averaged. The default 4 is the only count that holds LFW View 2 >= 99.30%
  // and TAR at FAR 1e-3 >= 98.0% (README "Speed of the engine": 1, 2 and 4 passes
  // measured on View 2 — 99.23/97.90%, 99.28/98.30%, 99.33/98.23%; 3 not measured);
  // fewer passes cost less per face (~2 ms each on a quiet machine) and give templates
  // that the manifest's operating points were not calibrated on.
  int landmark_passes = 4;
  bool verify_hashes = true;        // check each model's SHA-256 before loading it
  // The runtime of the detector, landmark and recogniser networks. The default, oneDNN with
  // bf16 convolutions, is the fastest that holds LFW View 2 >= 99.30% and TAR at FAR 1e-3
  // >= 98.0% (README "Speed of the engine": 99.33% and 98.20%, against OpenCV's 99.33% and
  // 98.23%; pixels to template 2.2x as fast as OpenCV's plain pipeline in the same run).
  // kOpenCv is the runtime the manifest's operating points were calibrated on.
  InferenceBackend inference = InferenceBackend::kOneDnnBf16;
};

class Engine {
 public:
  // Loads and verifies the networks.
  // ensures: errors are kModelMissing, kModelInvalid (hash or load failure) or
  //          kInvalidArgument (manifest problems, each naming the file; landmark_passes
  //          outside kMinLandmarkPasses..kMaxLandmarkPasses, checked before any loading).
  static Result<std::unique_ptr<Engine>> create(const EngineOptions& options = {});

  virtual ~Engine() = default;

  // Faces sorted by score, best first, at most options.max_faces.
  // requires: bgr is CV_8UC3 (decode_image's output).
  // ensures: every box lies inside the image; with options.landmarks, landmarks are set.
  //   The work is bounded whatever the image and options: the detector's image pyramid
  //   holds at most 18 MP in all (its finest level 8.3 MP, what a 4000x3000 photo needs
  //   for 24-pixel faces), by searching faces from smallest_min_face(size) up when
  //   options.min_face_size is smaller; landmarks and templates cost per face, at most
  //   options.max_faces. When the pyramid finds no face, the image is searched once more
  //   in the middle of a padded canvas (one more detector run), which finds faces that
  //   fill the whole frame (ID-style crops) the plain search misses.
  virtual std::vector<Face> detect(const cv::Mat& bgr, const DetectOptions& options = {}) const = 0;

  // The smallest minimum face size detect() searches for in an image of this size:
  // 20 px x sqrt(pixels / 8.3 M) rounded up, so that the pyramid stays within its bound
  // (8 px up to 1.3 MP, 10 px at 1920x1080, 24 px at 4000x3000, 44 px at 40 MP). A
  // caller that lets users choose the minimum face can refuse a smaller one instead of
  // having it raised.
  virtual int smallest_min_face(cv::Size image) const = 0;

  // The stages, for callers that time or replace one of them.
  virtual std::vector<Face> detect_boxes(const cv::Mat& bgr, const DetectOptions& options = {}) const = 0;
  virtual void locate_landmarks(const cv::Mat& bgr, std::span<Face> faces) const = 0;

  // Sets face.embedding for every face, all faces in one batch.
  // requires: landmarks located (detect with landmarks = true, or locate_landmarks).
  virtual void embed(const cv::Mat& bgr, std::span<Face> faces) const = 0;

  // The 112x112 BGR crop the recogniser sees.
  virtual cv::Mat align(const cv::Mat& bgr, const Face& face) const = 0;

  // detect + embed. An image without faces gives an empty vector (not an error).
  virtual std::vector<Face> analyze(const cv::Mat& bgr, const DetectOptions& options = {}) const = 0;

  virtual const ModelSpec& detector_spec() const = 0;
  virtual const ModelSpec& recognizer_spec() const = 0;
  // The runtime its networks run on (EngineOptions::inference).
  virtual InferenceBackend inference() const = 0;
};

// Cosine similarity of two L2-normalised templates: their inner product.
// requires: a.size() == b.size() (throws std::invalid_argument otherwise).
float cosine_similarity(std::span<const float> a, std::span<const float> b);

struct Verification {
  float similarity = 0;
  OperatingPoint operating_point;
  bool match = false;  // similarity >= operating_point.threshold
};

// Compares two templates at an operating point of the recogniser that made them.
Verification verify(std::span<const float> a, std::span<const float> b, const OperatingPoint& point);

// The operating point named `name` (e.g. "fmr-1e-3"), or kInvalidArgument listing the names
// there are (a name is an option the caller gave, not a resource that may be missing).
Result<OperatingPoint> find_operating_point(const ModelSpec& recognizer, const std::string& name);

// The standard ArcFace 112x112 five-point template (insightface), Landmark5 order.
std::array<cv::Point2f, 5> arcface_template_112();

// The least-squares similarity transform (rotation, uniform scale, translation) taking
// `from` onto `to`: Umeyama, "Least-squares estimation of transformation parameters
// between two point patterns", IEEE TPAMI 13(4), 1991. Returns a 2x3 CV_64F matrix.
// requires: from.size() == to.size() >= 2, points not all coincident.
cv::Mat similarity_transform(std::span<const cv::Point2f> from, std::span<const cv::Point2f> to);

}  // namespace candor
