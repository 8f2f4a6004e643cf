// Candor: face analysis — quality for recognition, head pose, eyes, passive liveness.
//
// For every face it is given, the analyser measures
//   size        the detector box's shorter side, pixels
//   sharpness   variance of the 3x3 Laplacian of the luma of the 112x112 ArcFace-aligned
//               crop (the pixels the recogniser sees), over the pixels that come from
//               inside the image
//   exposure    mean luma of that crop and the fractions of it at <= 5 and >= 250
//   head pose   HopeNet (manifest role "pose") for yaw and pitch, on HopeNet's own crop
//               around the 68 landmarks, averaged with the mirror image; roll from the
//               eye line (HeadPose in analysis.h gives the signs). The manifest must map
//               the outputs as established: yaw "output", pitch "617", roll "618".
//   eyes        a 24x24 eye-state network (role "eye") on each eye, cropped from the 68
//               landmarks
// and combines the figures into a QualityLevel with the thresholds of QualityThresholds:
// each figure gets its own level, the face gets the lowest, and limiting_factor names the
// figure (and the threshold it missed) that decided it — the first in the order size,
// exposure, sharpness, pose, eyes among equals (a dark crop is also a soft one: the
// Laplacian scales with contrast, so exposure is named first).
//
// Passive liveness (role "liveness", MiniFASNet-style) is off by default. Its score is
// a single-image presentation-attack cue, calibrated here on synthetic re-captures only
// (there is no spoof data set in the project): treat `live` as a hint, never as proof.
//
// Not built, on purpose: age, gender, emotion, ethnicity (analysis.h).
//
// Thread safety: a FaceAnalyzer is safe to share; analyze() may run concurrently, each
// network being replicated `replicas` times (NetPool).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <opencv2/core/mat.hpp>

#include "candor/analysis.h"
#include "candor/face.h"
#include "candor/models.h"
#include "candor/result.h"

namespace candor {

// The figures that set the level; each pair is (for medium, for high): a figure that
// reaches the "high" bound is high, one that reaches only the "medium" bound is medium,
// anything else is low. Basis of the defaults (`candor bench quality`, LFW View-1
// pairsDevTest, 1,549 images; README "Face analysis"):
//   size       LFW faces are 74..102 px (p1..p90); the recogniser sees 112x112, and below
//              40 px the crop is upsampled ~3x. 80 px keeps 95% of LFW high.
//   sharpness  LFW p1 / p5 / p10 / p50 = 32 / 52 / 65 / 132; a Gaussian blur of sigma 6 on
//              the face-api samples gives < 15. High at 60 (~ p8 of LFW), low below 15.
//   exposure   LFW brightness p1 = 75, p50 = 127; a crop at 20% of its exposure reads < 40.
//   pose       HopeNet degrees; 25 / 50 yaw and 20 / 35 pitch follow the usual enrolment
//              guidance (ISO/IEC 19794-5 asks for frontal within about 5 degrees for
//              passports; recognisers trained on web faces tolerate far more). Roll is
//              removed by alignment: only beyond 30 / 60 does it cost a level.
//   eyes       both eyes closed or covered caps the level at medium.
// On LFW pairsDevTest, pairs whose worse image is medium have twice the FNMR at
// FMR = 1e-3 of pairs where both are high (3.70% vs 1.77%).
struct QualityThresholds {
  float min_face_size_medium = 40;   // px, shorter box side
  float min_face_size_high = 80;
  float min_sharpness_medium = 15;   // Laplacian variance on the aligned crop
  float min_sharpness_high = 60;
  float min_brightness_medium = 40;  // mean luma
  float min_brightness_high = 70;
  float max_brightness_medium = 225;
  float max_brightness_high = 200;
  float max_clipped_medium = 0.25f;  // fraction of the crop at <= 5 or >= 250 (each)
  float max_clipped_high = 0.08f;
  float max_yaw_medium = 50;         // |degrees|
  float max_yaw_high = 25;
  float max_pitch_medium = 35;
  float max_pitch_high = 20;
  float max_roll_medium = 60;        // alignment removes roll; only extreme roll hurts
  float max_roll_high = 30;
  bool eyes_closed_caps_at_medium = true;  // both eyes closed (or covered): at most medium
};

// Where yaw and pitch come from (roll always comes from the eye line, which is exact
// under image rotation). Measured on LFW (README "Face analysis"): the landmark fit is
// the more self-consistent (mirror and rotation), the network the one trained on
// labelled 3D poses (300W-LP) and so the one whose magnitudes mean degrees.
enum class PoseSource {
  kNetwork,    // HopeNet (manifest role "pose"), averaged with its mirror image when pose_flip_average
  kLandmarks,  // solvePnP of a generic 3D face on six of the 68 landmarks
};

struct AnalyzerOptions {
  std::filesystem::path model_dir;  // empty: $CANDOR_MODEL_DIR, else the build's model directory
  std::filesystem::path manifest;   // empty: $CANDOR_MANIFEST, else <source>/config/models.json
  std::string pose_id;              // manifest ids; empty: the first entry of each role
  std::string eye_id;
  std::string liveness_id;
  int replicas = 0;                 // concurrent inferences per network; 0: hardware threads
  bool verify_hashes = true;
  bool load_liveness = true;        // false: the liveness network is not loaded (requests for it throw)
  PoseSource pose_source = PoseSource::kNetwork;
  bool pose_flip_average = true;    // kNetwork: run the network on the mirror image too (twice the cost)
  QualityThresholds thresholds;
  // Liveness::live = score >= this. 0.5 is the argmax point of the live class; on the
  // synthetic re-captures of the probe it is a weak separator (README "Face analysis").
  float liveness_threshold = 0.5f;
};

struct AnalysisRequest {
  bool pose = true;       // run the pose network (quality.pose)
  bool eyes = true;       // run the eye network (quality.*_eye_open); needs landmarks68
  bool liveness = false;  // run the liveness network (face.liveness); off by default
  // Where the pose comes from for this request; empty: AnalyzerOptions::pose_source. A
  // camera stream weighs many faces a second and asks for the landmark fit, which needs no
  // network (HopeNet with its mirror image cost ~50 ms a face there; README "Camera streams").
  std::optional<PoseSource> pose_source = std::nullopt;
};

class FaceAnalyzer {
 public:
  // Loads and verifies the pose, eye and (unless !load_liveness) liveness networks.
  // ensures: errors are kModelMissing, kModelInvalid or kInvalidArgument naming the file
  //          or the manifest entry.
  static Result<std::unique_ptr<FaceAnalyzer>> create(const AnalyzerOptions& options = {});

  virtual ~FaceAnalyzer() = default;

  // Sets face.quality for every face, and face.liveness when request.liveness.
  // requires: bgr is CV_8UC3; every face has its five landmarks located (Engine::detect
  //           with landmarks); for request.eyes, faces without landmarks68 get no eye
  //           figures (not an error). Violations throw std::invalid_argument.
  // requires: !request.liveness or the analyser was created with load_liveness.
  // ensures: face.quality->level and limiting_factor follow thresholds(); faces whose
  //          crops fall wholly outside the image get level low.
  virtual void analyze(const cv::Mat& bgr, std::span<Face> faces, const AnalysisRequest& request = {}) const = 0;

  virtual const QualityThresholds& thresholds() const = 0;
  virtual float liveness_threshold() const = 0;
};

// The level a set of figures earns, and the limiting factor, as analyze() computes it:
// sets quality.level and quality.limiting_factor from the other fields.
void assign_quality_level(FaceQuality& quality, const QualityThresholds& thresholds);

// Whether a face is good enough to enrol: kQualityTooLow naming the figure that decided
// its level (e.g. "quality low (sharpness 12.3 < 15); enrolment needs medium") when its
// level is below `minimum`; kInvalidArgument when the face has not been analysed.
Status check_enrollment_quality(const Face& face, QualityLevel minimum);

}  // namespace candor
