// Candor: the typed result of looking at a face.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include <opencv2/core/types.hpp>

#include "candor/analysis.h"

namespace candor {

// An axis-aligned box in image pixels (x, y: top-left corner).
struct Box {
  float x = 0, y = 0, width = 0, height = 0;
  float right() const noexcept { return x + width; }
  float bottom() const noexcept { return y + height; }
  float area() const noexcept { return width > 0 && height > 0 ? width * height : 0.0f; }
  cv::Point2f center() const noexcept { return {x + width / 2, y + height / 2}; }
};

// The area two boxes share; 0 for disjoint ones.
inline float intersection_area(const Box& a, const Box& b) noexcept {
  const float ix = std::max(0.0f, std::min(a.right(), b.right()) - std::max(a.x, b.x));
  const float iy = std::max(0.0f, std::min(a.bottom(), b.bottom()) - std::max(a.y, b.y));
  return ix * iy;
}

// Intersection over union; 0 for disjoint or empty boxes. Inline: the store (forgotten
// library faces) compares boxes too, and does not link the detector.
inline float iou(const Box& a, const Box& b) noexcept {
  const float inter = intersection_area(a, b);
  const float uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

// The five points of the ArcFace alignment, in this order. "Left" and "right" are as
// seen in the image (the subject's right eye is the image's left eye).
enum Landmark5 : int { kLeftEye = 0, kRightEye = 1, kNoseTip = 2, kMouthLeft = 3, kMouthRight = 4 };

struct Face {
  Box box;                                  // detector box, image pixels
  float score = 0;                          // detector confidence in [0, 1]
  std::array<cv::Point2f, 5> landmarks{};   // Landmark5 order, image pixels
  std::vector<cv::Point2f> landmarks68;     // iBUG 300-W order, image pixels; empty before landmarking
  std::vector<float> embedding;             // L2-normalised template; empty until embedded
  // The recogniser's output norm before L2 normalisation; 0 until embedded. It is a
  // quality signal, not an identity: with margin-softmax training (ArcFace, MagFace)
  // blurred, small or turned faces come out with smaller norms (Meng et al., "MagFace",
  // CVPR 2021; Ranjan et al., "L2-constrained softmax", 2017). The library's grouping
  // uses it (include/candor/library.h, qual=).
  float embedding_norm = 0;
  std::optional<FaceQuality> quality;       // set by the analyser
  std::optional<Liveness> liveness;         // set only when liveness was requested
};

// The face a one-face operation uses when a photo shows several: the largest box (the
// person nearest the camera). ensures: nullptr for no face; the first of equal largest.
inline const Face* primary_face(const std::vector<Face>& faces) noexcept {
  const Face* best = nullptr;
  for (const Face& f : faces) {
    if (best == nullptr || f.box.area() > best->box.area()) best = &f;
  }
  return best;
}

}  // namespace candor
