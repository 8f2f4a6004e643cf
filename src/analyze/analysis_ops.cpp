#include "analyze/analysis_ops.h"

#include "align/face_warp.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>

#include "align/landmarker.h"
#include "candor/engine.h"

namespace candor::analysis {
namespace {

constexpr double kDegPerRad = 180.0 / std::numbers::pi;

// The aligned crop's face region, where sharpness and exposure are measured: the ArcFace
// template puts the eyes at y = 51.6, the mouth at y = 92.3 and the eye-to-eye span at
// x = 38..74 in 112x112, so x 16..96 x y 16..112 holds brows to chin and cheek to cheek
// and leaves out most of the background (a blurred background is not a blurred face).
const cv::Rect kMeasureRegion(16, 16, 80, 96);

// Clipping bounds of FaceQuality (analysis.h): <= 5 and >= 250.
constexpr int kDarkLevel = 5;
constexpr int kBrightLevel = 250;

// Pose framing without landmarks: the pack's JS (fr_pose.js) widens the box by a quarter
// of its size on each side (1.5x); we take the same extent as a square.
constexpr float kPoseFraming = 1.5f;
// With landmarks: HopeNet's own test framing (Ruiz et al., code/datasets.py, AFLW2000 with
// k = 0.2): the 68 points' extent widened by 0.6k of its width on each side, 2k of its
// height above and 0.6k below, then Resize(224) + CenterCrop(224), i.e. the centred
// square of the shorter side. The detector box is not mirror-stable enough for this
// network: on the face-api samples its mirror-image yaw differed by up to 15 degrees.
constexpr float kPoseK = 0.2f;

// Eye framing, from fr_eye.js getEyeBBox: side = 1.6 x the eye's corner-to-corner width.
constexpr float kEyeFraming = 1.6f;
constexpr int kEyeSize = 24;  // fr_eye.onnx input

cv::Point2f mean_of(std::span<const cv::Point2f> p, std::initializer_list<int> idx) {
  cv::Point2f m(0, 0);
  for (int i : idx) m += p[static_cast<std::size_t>(i)];
  return m * (1.0f / static_cast<float>(idx.size()));
}

void require68(std::span<const cv::Point2f> p, const char* who) {
  if (p.size() != 68) throw std::invalid_argument(std::string(who) + ": need 68 landmarks");
}

}  // namespace

AlignedCrop aligned_crop(const cv::Mat& bgr, const Face& face) {
  if (face.landmarks[kLeftEye] == face.landmarks[kRightEye]) {
    throw std::invalid_argument("aligned_crop: landmarks must be located first");
  }
  const cv::Size size(112, 112);
  const FaceWarp w = face_warp(bgr, face.landmarks, size);  // the recogniser's own crop
  const cv::Mat& source = w.source;
  const cv::Mat& m = w.transform;
  AlignedCrop out;
  cv::warpAffine(source, out.bgr, m, size, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  cv::Mat inside(source.size(), CV_8U, cv::Scalar(255));
  cv::warpAffine(inside, out.valid, m, size, cv::INTER_NEAREST, cv::BORDER_CONSTANT, cv::Scalar(0));
  return out;
}

void measure_crop(const AlignedCrop& crop, FaceQuality& quality) {
  cv::Mat gray;
  cv::cvtColor(crop.bgr(kMeasureRegion), gray, cv::COLOR_BGR2GRAY);
  const cv::Mat valid = crop.valid(kMeasureRegion);
  const int n = cv::countNonZero(valid);
  quality.sharpness = quality.brightness = quality.dark_clipped = quality.bright_clipped = 0;
  if (n == 0) return;
  cv::Scalar mean = cv::mean(gray, valid);
  quality.brightness = static_cast<float>(mean[0]);
  quality.dark_clipped = static_cast<float>(cv::countNonZero((gray <= kDarkLevel) & valid)) / static_cast<float>(n);
  quality.bright_clipped =
      static_cast<float>(cv::countNonZero((gray >= kBrightLevel) & valid)) / static_cast<float>(n);
  // 3x3 Laplacian (ksize 1: [0 1 0; 1 -4 1; 0 1 0]) where its whole neighbourhood is inside
  // the image, so the edge of a warp's black border does not count as detail.
  cv::Mat lap, inner;
  cv::Laplacian(gray, lap, CV_32F, 1);
  cv::erode(valid, inner, cv::Mat::ones(3, 3, CV_8U), cv::Point(-1, -1), 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  inner.row(0).setTo(0), inner.row(inner.rows - 1).setTo(0), inner.col(0).setTo(0), inner.col(inner.cols - 1).setTo(0);
  if (cv::countNonZero(inner) == 0) return;
  cv::Scalar m, sd;
  cv::meanStdDev(lap, m, sd, inner);
  quality.sharpness = static_cast<float>(sd[0] * sd[0]);
}

cv::Mat pose_crop(const cv::Mat& bgr, const Face& face, cv::Size size) {
  if (face.landmarks68.size() != 68) {
    const float side = kPoseFraming * std::max(face.box.width, face.box.height);
    return crop_resized(bgr, square_region(face.box.center(), side), size);
  }
  float x0 = face.landmarks68[0].x, y0 = face.landmarks68[0].y, x1 = x0, y1 = y0;
  for (const cv::Point2f& p : face.landmarks68) {
    x0 = std::min(x0, p.x), y0 = std::min(y0, p.y), x1 = std::max(x1, p.x), y1 = std::max(y1, p.y);
  }
  const float w = x1 - x0, h = y1 - y0;
  x0 -= 0.6f * kPoseK * w, x1 += 0.6f * kPoseK * w, y0 -= 2 * kPoseK * h, y1 += 0.6f * kPoseK * h;
  const cv::Point2f center((x0 + x1) / 2, (y0 + y1) / 2);
  return crop_resized(bgr, square_region(center, std::max(4.0f, std::min(x1 - x0, y1 - y0))), size);
}

void softmax(std::span<float> logits) {
  if (logits.empty()) return;
  const float top = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float& v : logits) v = std::exp(v - top), sum += v;
  for (float& v : logits) v = static_cast<float>(v / sum);
}

float hopenet_angle(std::span<const float> logits) {
  // HopeNet (Ruiz et al., "Fine-Grained Head Pose Estimation Without Keypoints", 2018):
  // 66 bins of 3 degrees from -99; the expectation over the softmax is the angle.
  if (logits.size() != 66) throw std::invalid_argument("hopenet_angle: need 66 logits");
  std::array<float, 66> p{};
  std::copy(logits.begin(), logits.end(), p.begin());
  softmax(p);
  double e = 0;
  for (std::size_t i = 0; i < p.size(); ++i) e += p[i] * static_cast<double>(i);
  return static_cast<float>(e * 3.0 - 99.0);
}

float roll_from_landmarks(std::span<const cv::Point2f> p) {
  require68(p, "roll_from_landmarks");
  const cv::Point2f l = mean_of(p, {36, 37, 38, 39, 40, 41});
  const cv::Point2f r = mean_of(p, {42, 43, 44, 45, 46, 47});
  return static_cast<float>(std::atan2(r.y - l.y, r.x - l.x) * kDegPerRad);
}

HeadPose pose_from_landmarks(std::span<const cv::Point2f> p, cv::Size image_size) {
  require68(p, "pose_from_landmarks");
  // A generic 3D face (millimetre-like units; the widely used six-point model of
  // Mallick, "Head Pose Estimation using OpenCV and Dlib", LearnOpenCV 2016), written
  // in camera-like axes: x to the image's right, y down, z away from the camera.
  static const std::vector<cv::Point3d> kModel = {
      {0.0, 0.0, 0.0},         // 30 nose tip
      {0.0, 330.0, 65.0},      // 8 chin
      {-225.0, -170.0, 135.0}, // 36 outer corner of the image-left eye
      {225.0, -170.0, 135.0},  // 45 outer corner of the image-right eye
      {-150.0, 150.0, 125.0},  // 48 mouth corner, image left
      {150.0, 150.0, 125.0}};  // 54 mouth corner, image right
  const std::vector<cv::Point2d> image = {p[30], p[8], p[36], p[45], p[48], p[54]};
  const double f = image_size.width;
  const cv::Matx33d camera(f, 0, image_size.width / 2.0, 0, f, image_size.height / 2.0, 0, 0, 1);
  cv::Mat rvec, tvec;
  // Start from a frontal face in front of the camera so ITERATIVE does not flip behind it.
  rvec = cv::Mat::zeros(3, 1, CV_64F);
  tvec = (cv::Mat_<double>(3, 1) << 0, 0, 1000.0 * f / std::max(1.0, cv::norm(image[2] - image[3])) * 0.45);
  cv::solvePnP(kModel, image, camera, cv::noArray(), rvec, tvec, true, cv::SOLVEPNP_ITERATIVE);
  cv::Matx33d r;
  cv::Rodrigues(rvec, r);
  const cv::Vec3d forward = r * cv::Vec3d(0, 0, -1);  // out of the face, towards the viewer when frontal
  const cv::Vec3d across = r * cv::Vec3d(1, 0, 0);    // from the image-left eye to the image-right eye
  HeadPose pose;
  pose.yaw = static_cast<float>(std::atan2(-forward[0], -forward[2]) * kDegPerRad);
  pose.pitch = static_cast<float>(std::atan2(-forward[1], std::hypot(forward[0], forward[2])) * kDegPerRad);
  pose.roll = static_cast<float>(std::atan2(across[1], across[0]) * kDegPerRad);
  return pose;
}

std::array<cv::Mat, 2> eye_crops(const cv::Mat& image, std::span<const cv::Point2f> p) {
  require68(p, "eye_crops");
  const double roll = roll_from_landmarks(p);
  auto one = [&](cv::Point2f center, cv::Point2f a, cv::Point2f b) {
    const float side = std::max(2.0f, kEyeFraming * static_cast<float>(cv::norm(b - a)));
    // An axis-aligned region 1.5x the eye square, area-resized so the eye square is 24 px,
    // then rotated about its centre to level the eye line and cut to 24x24.
    constexpr int kPad = kEyeSize * 3 / 2;
    cv::Mat region = crop_resized(image, square_region(center, side * 1.5f), cv::Size(kPad, kPad),
                                  image.channels() == 3 ? cv::COLOR_BGR2GRAY : -1);
    const cv::Point2f c(kPad / 2.0f, kPad / 2.0f);
    cv::Mat m = cv::getRotationMatrix2D(c, roll, 1.0);
    m.at<double>(0, 2) -= (kPad - kEyeSize) / 2.0;
    m.at<double>(1, 2) -= (kPad - kEyeSize) / 2.0;
    cv::Mat out;
    cv::warpAffine(region, out, m, cv::Size(kEyeSize, kEyeSize), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    return out;
  };
  return {one(mean_of(p, {37, 38, 40, 41}), p[36], p[39]), one(mean_of(p, {43, 44, 46, 47}), p[42], p[45])};
}

cv::Mat liveness_crop(const cv::Mat& bgr, const Box& box, float scale, cv::Size size) {
  // fr_liveness.js alignLivenessImage (and Silent-Face-Anti-Spoofing's CropImage).
  const double w = std::max(1.0f, box.width), h = std::max(1.0f, box.height);
  const double s = std::min({(bgr.rows - 1) / h, (bgr.cols - 1) / w, static_cast<double>(scale)});
  const double nw = w * s, nh = h * s;
  const double cx = box.x + w / 2, cy = box.y + h / 2;
  double x0 = cx - nw / 2, y0 = cy - nh / 2, x1 = cx + nw / 2, y1 = cy + nh / 2;
  if (x0 < 0) x1 -= x0, x0 = 0;
  if (y0 < 0) y1 -= y0, y0 = 0;
  if (x1 > bgr.cols - 1) x0 -= x1 - bgr.cols + 1, x1 = bgr.cols - 1;
  if (y1 > bgr.rows - 1) y0 -= y1 - bgr.rows + 1, y1 = bgr.rows - 1;
  cv::Rect r(static_cast<int>(std::max(0.0, x0)), static_cast<int>(std::max(0.0, y0)),
             static_cast<int>(x1 - x0), static_cast<int>(y1 - y0));
  r &= cv::Rect(0, 0, bgr.cols, bgr.rows);
  if (r.width < 1 || r.height < 1) return cv::Mat(size, bgr.type(), cv::Scalar::all(0));
  cv::Mat out;
  cv::resize(bgr(r), out, size, 0, 0, cv::INTER_LINEAR);
  return out;
}

}  // namespace candor::analysis
