#include "align/face_warp.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "candor/engine.h"

namespace candor {

cv::Rect face_warp_region(const cv::Mat& transform, cv::Size size, cv::Size image, int margin) {
  cv::Mat inverse;
  cv::invertAffineTransform(transform, inverse);
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool first = true;
  for (const cv::Point2d corner : {cv::Point2d(0, 0), cv::Point2d(size.width, 0), cv::Point2d(0, size.height),
                                   cv::Point2d(size.width, size.height)}) {
    const double x = inverse.at<double>(0, 0) * corner.x + inverse.at<double>(0, 1) * corner.y + inverse.at<double>(0, 2);
    const double y = inverse.at<double>(1, 0) * corner.x + inverse.at<double>(1, 1) * corner.y + inverse.at<double>(1, 2);
    x0 = first ? x : std::min(x0, x), y0 = first ? y : std::min(y0, y);
    x1 = first ? x : std::max(x1, x), y1 = first ? y : std::max(y1, y);
    first = false;
  }
  const int left = static_cast<int>(std::floor(x0)) - margin, top = static_cast<int>(std::floor(y0)) - margin;
  const int right = static_cast<int>(std::ceil(x1)) + margin, bottom = static_cast<int>(std::ceil(y1)) + margin;
  return cv::Rect(left, top, std::max(0, right - left), std::max(0, bottom - top)) & cv::Rect(cv::Point(0, 0), image);
}

FaceWarp face_warp(const cv::Mat& bgr, const std::array<cv::Point2f, 5>& landmarks, cv::Size size) {
  auto target = arcface_template_112();
  for (auto& p : target) {
    p = {p.x * static_cast<float>(size.width) / 112.0f, p.y * static_cast<float>(size.height) / 112.0f};
  }
  FaceWarp w{bgr, similarity_transform(landmarks, target)};
  const double scale = std::sqrt(std::abs(cv::determinant(w.transform.colRange(0, 2))));
  if (scale < 0.5) {
    const double pre = std::min(1.0, 2.0 * scale);
    // Only the part of the image the warp samples is reduced, not the whole photo: on a
    // 12 MP photo, reducing all of it took ~60 ms a face, most of the library's embedding
    // time (README "Photo libraries"). The margin covers the area filter's footprint
    // (1/pre source pixels) and the bilinear warp's neighbour, both sides.
    const int margin = static_cast<int>(std::ceil(2.0 / pre)) + 2;
    const cv::Rect region = face_warp_region(w.transform, size, bgr.size(), margin);
    if (region.area() > 0) {
      cv::resize(bgr(region), w.source, cv::Size(), pre, pre, cv::INTER_AREA);
      // Source pixel p = region.tl() + q / pre: the translation takes up the region's origin.
      const cv::Mat linear = w.transform.colRange(0, 2).clone();
      w.transform.col(2) += linear * (cv::Mat_<double>(2, 1) << region.x, region.y);
      w.transform.colRange(0, 2) /= pre;
    } else {  // the face lies wholly outside the image: nothing to sample, the crop is blank
      w.source = cv::Mat::zeros(1, 1, bgr.type());
    }
  }
  return w;
}

}  // namespace candor
