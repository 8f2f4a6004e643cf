// Least-squares similarity transform (Umeyama 1991) and the ArcFace template.
#include <stdexcept>

#include <opencv2/core.hpp>

#include "candor/engine.h"

namespace candor {

std::array<cv::Point2f, 5> arcface_template_112() {
  // insightface's reference 5 points for 112x112 crops (arcface_torch / face_align.py).
  return {cv::Point2f{38.2946f, 51.6963f}, cv::Point2f{73.5318f, 51.5014f}, cv::Point2f{56.0252f, 71.7366f},
          cv::Point2f{41.5493f, 92.3655f}, cv::Point2f{70.7299f, 92.2041f}};
}

cv::Mat similarity_transform(std::span<const cv::Point2f> from, std::span<const cv::Point2f> to) {
  if (from.size() != to.size() || from.size() < 2) {
    throw std::invalid_argument("similarity_transform: need the same number (>= 2) of points on both sides");
  }
  const double n = static_cast<double>(from.size());
  cv::Point2d mean_from(0, 0), mean_to(0, 0);
  for (std::size_t i = 0; i < from.size(); ++i) {
    mean_from += cv::Point2d(from[i]);
    mean_to += cv::Point2d(to[i]);
  }
  mean_from /= n;
  mean_to /= n;
  double var_from = 0;
  cv::Matx22d cov = cv::Matx22d::zeros();
  for (std::size_t i = 0; i < from.size(); ++i) {
    const cv::Point2d a = cv::Point2d(from[i]) - mean_from;
    const cv::Point2d b = cv::Point2d(to[i]) - mean_to;
    var_from += a.dot(a);
    cov += cv::Matx22d(b.x * a.x, b.x * a.y, b.y * a.x, b.y * a.y);
  }
  var_from /= n;
  cov *= 1.0 / n;
  if (var_from <= 1e-12) throw std::invalid_argument("similarity_transform: source points coincide");

  cv::Matx22d u, vt;
  cv::Matx21d d;
  cv::SVD::compute(cov, d, u, vt);
  // Umeyama eq. 39-43: reflect the last singular direction when det(U V^T) < 0,
  // so the result is a rotation, never a mirror.
  cv::Matx22d s = cv::Matx22d::eye();
  if (cv::determinant(u) * cv::determinant(vt) < 0) s(1, 1) = -1;
  const cv::Matx22d r = u * s * vt;
  const double c = (d(0) * s(0, 0) + d(1) * s(1, 1)) / var_from;
  const cv::Vec2d t = cv::Vec2d(mean_to.x, mean_to.y) - c * (r * cv::Vec2d(mean_from.x, mean_from.y));
  cv::Mat m = (cv::Mat_<double>(2, 3) << c * r(0, 0), c * r(0, 1), t(0), c * r(1, 0), c * r(1, 1), t(1));
  return m;
}

}  // namespace candor
