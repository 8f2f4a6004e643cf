// The warp that puts a face into the ArcFace frame, shared by the recogniser's crop
// and the quality measures so that both look at exactly the same pixels.
#pragma once

#include <array>

#include <opencv2/core/mat.hpp>

namespace candor {

struct FaceWarp {
  cv::Mat source;     // the image to warp: bgr itself, or an area-filtered smaller copy
  cv::Mat transform;  // 2x3 CV_64F, source pixels -> crop pixels
};

// The similarity transform taking `landmarks` (Landmark5 order) onto the ArcFace
// template scaled to `size`. Shrinking by more than 2x with a bilinear warp aliases,
// so in that case the image is first reduced with an area filter and the reduction
// folded into the transform.
// Only the part of bgr the warp samples is reduced (face_warp_region), so the cost does
// not grow with the photo: source is then that part, reduced.
FaceWarp face_warp(const cv::Mat& bgr, const std::array<cv::Point2f, 5>& landmarks, cv::Size size);

// The pixels of an image of size `image` that a warp by `transform` (image -> crop) into
// a crop of `size` samples: the crop's corners mapped back, widened by `margin` pixels
// each side, within the image (empty when the crop lies wholly outside it).
cv::Rect face_warp_region(const cv::Mat& transform, cv::Size size, cv::Size image, int margin);

}  // namespace candor
