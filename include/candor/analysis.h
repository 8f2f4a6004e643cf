// Candor: what analysis says about a face, for trusting recognition.
//
// Deliberately absent: age, gender, emotion and ethnicity. See README "What Candor
// will not infer" before adding any attribute here. The model pack ships networks for
// some of them (fr_age, fr_gender, fr_expression); Candor never loads them.
//
// The analyser that fills these in is include/candor/analyzer.h; its header documents
// how each figure is measured and the thresholds that turn them into a level.
#pragma once

#include <optional>
#include <string>

namespace candor {

enum class QualityLevel { kLow = 0, kMedium = 1, kHigh = 2 };

// Head pose in degrees, in image terms (established by experiment; analyzer.h):
//   yaw   > 0: the subject turns towards the image's left (their nose points left in the
//              picture); a horizontal flip negates it.
//   pitch > 0: the subject looks up.
//   roll  > 0: the face is rotated clockwise in the picture (the eye on the image's
//              right is lower than the other); rotating the image counter-clockwise by
//              t degrees lowers roll by t.
struct HeadPose {
  float yaw = 0;    // degrees
  float pitch = 0;  // degrees
  float roll = 0;   // degrees
};

struct FaceQuality {
  QualityLevel level = QualityLevel::kLow;
  float face_size_px = 0;     // inter-ocular-independent size: the box's shorter side
  float sharpness = 0;        // variance of the Laplacian on the aligned crop
  float brightness = 0;       // mean luma on the aligned crop, 0..255
  float dark_clipped = 0;     // fraction of crop pixels <= 5
  float bright_clipped = 0;   // fraction of crop pixels >= 250
  std::optional<HeadPose> pose;
  std::optional<bool> left_eye_open;   // the eye on the image's left (the subject's right eye)
  std::optional<bool> right_eye_open;  // the eye on the image's right
  std::string limiting_factor;  // the figure that decided a level below high; empty for high
  // Extensions (issue 5), not yet in the JSON shape:
  std::optional<float> left_eye_open_probability;   // softmax of the eye network's "open" class
  std::optional<float> right_eye_open_probability;
};

struct Liveness {
  float score = 0;    // probability-like score that the face is a live presentation
  bool live = false;  // score >= the threshold in force
  float threshold = 0;
};

}  // namespace candor
