// The measurements behind FaceAnalyzer, as plain functions so that the tests and the
// bench can time and probe each one.
#pragma once

#include <array>
#include <span>

#include <opencv2/core/mat.hpp>

#include "candor/analysis.h"
#include "candor/face.h"

namespace candor::analysis {

// The 112x112 ArcFace-aligned BGR crop of a face (the recogniser's view), and a mask
// (CV_8U, 255 where the pixel came from inside the image).
// requires: face.landmarks located.
struct AlignedCrop {
  cv::Mat bgr;
  cv::Mat valid;
};
AlignedCrop aligned_crop(const cv::Mat& bgr, const Face& face);

// Sets sharpness, brightness, dark_clipped and bright_clipped of `quality` from an
// aligned crop. Pixels outside the image are excluded (a crop with none inside gives 0s).
void measure_crop(const AlignedCrop& crop, FaceQuality& quality);

// The pose network's view, BGR, resized to `size` (black outside the image): HopeNet's
// test framing around the 68 landmarks, or without them a square 1.5x the box's longer
// side about the box centre (analysis_ops.cpp kPoseK, kPoseFraming).
cv::Mat pose_crop(const cv::Mat& bgr, const Face& face, cv::Size size);

// HopeNet's expected angle: softmax over `logits` (66 bins), sum(p_i * i) * 3 - 99.
// requires: logits.size() == 66 (throws std::invalid_argument otherwise).
float hopenet_angle(std::span<const float> logits);

// Head pose from the 68 landmarks: solvePnP of a generic 3D face (iBUG points) with a
// pinhole camera of focal length = image width. Same sign conventions as HeadPose.
// requires: landmarks68.size() == 68.
HeadPose pose_from_landmarks(std::span<const cv::Point2f> landmarks68, cv::Size image_size);

// Roll from the landmarks alone: the angle of the line from the image-left eye centre to
// the image-right eye centre, degrees, clockwise positive (HeadPose convention).
float roll_from_landmarks(std::span<const cv::Point2f> landmarks68);

// The two 24x24 grayscale eye crops (image-left eye first), as the pack's JS frames them:
// centred on the mean of the four lid points, side 1.6 x the eye's corner-to-corner
// width, here rotated so the eye line is horizontal.
// `image` is grey or BGR; a BGR image is made grey around each eye only (the same pixels
// as converting the whole image first, without its cost on a large photo).
// requires: landmarks68.size() == 68.
std::array<cv::Mat, 2> eye_crops(const cv::Mat& image, std::span<const cv::Point2f> landmarks68);

// The liveness network's view: the box enlarged `scale` times about its centre (the
// scale reduced so the region fits in the image, then shifted inside it, as the pack's
// JS does), resized to `size`, BGR.
cv::Mat liveness_crop(const cv::Mat& bgr, const Box& box, float scale, cv::Size size);

// Softmax of logits, in place.
void softmax(std::span<float> logits);

}  // namespace candor::analysis
