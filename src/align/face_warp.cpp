#include "align/face_warp.h"

#include <cmath>

#include <opencv2/imgproc.hpp>

#include "candor/engine.h"

namespace candor {

FaceWarp face_warp(const cv::Mat& bgr, const std::array<cv::Point2f, 5>& landmarks, cv::Size size) {
  auto target = arcface_template_112();
  for (auto& p : target) {
    p = {p.x * static_cast<float>(size.width) / 112.0f, p.y * static_cast<float>(size.height) / 112.0f};
  }
  FaceWarp w{bgr, similarity_transform(landmarks, target)};
  const double scale = std::sqrt(std::abs(cv::determinant(w.transform.colRange(0, 2))));
  if (scale < 0.5) {
    const double pre = std::min(1.0, 2.0 * scale);
    cv::resize(bgr, w.source, cv::Size(), pre, pre, cv::INTER_AREA);
    w.transform.colRange(0, 2) /= pre;
  }
  return w;
}

}  // namespace candor
