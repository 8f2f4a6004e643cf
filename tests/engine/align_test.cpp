#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "align/face_warp.h"
#include "align/landmarker.h"
#include "candor/engine.h"
#include "test_support.h"

namespace candor {
namespace {

TEST(SimilarityTransform, RecoversAKnownTransform) {
  const auto from = arcface_template_112();
  const double angle = 0.3, scale = 2.5, tx = 40, ty = -12;
  std::array<cv::Point2f, 5> to{};
  for (std::size_t i = 0; i < from.size(); ++i) {
    const double x = from[i].x, y = from[i].y;
    to[i] = {static_cast<float>(scale * (std::cos(angle) * x - std::sin(angle) * y) + tx),
             static_cast<float>(scale * (std::sin(angle) * x + std::cos(angle) * y) + ty)};
  }
  const cv::Mat m = similarity_transform(from, to);
  EXPECT_NEAR(m.at<double>(0, 0), scale * std::cos(angle), 1e-4);
  EXPECT_NEAR(m.at<double>(0, 1), -scale * std::sin(angle), 1e-4);
  EXPECT_NEAR(m.at<double>(1, 0), scale * std::sin(angle), 1e-4);
  EXPECT_NEAR(m.at<double>(0, 2), tx, 1e-3);
  EXPECT_NEAR(m.at<double>(1, 2), ty, 1e-3);
}

TEST(SimilarityTransform, NeverReflects) {
  // A mirrored point set: the best similarity is a rotation with a positive determinant.
  std::array<cv::Point2f, 3> from{cv::Point2f{0, 0}, cv::Point2f{1, 0}, cv::Point2f{0, 1}};
  std::array<cv::Point2f, 3> to{cv::Point2f{0, 0}, cv::Point2f{-1, 0}, cv::Point2f{0, 1}};
  const cv::Mat m = similarity_transform(from, to);
  EXPECT_GT(cv::determinant(m.colRange(0, 2)), 0);
}

TEST(SimilarityTransform, RejectsDegenerateInput) {
  std::array<cv::Point2f, 2> same{cv::Point2f{3, 3}, cv::Point2f{3, 3}};
  EXPECT_THROW(similarity_transform(same, same), std::invalid_argument);
  std::array<cv::Point2f, 3> three{};
  EXPECT_THROW(similarity_transform(same, three), std::invalid_argument);
}

TEST(FivePoints, AverageTheEyeContours) {
  std::vector<cv::Point2f> p(68);
  for (int i = 0; i < 68; ++i) p[static_cast<std::size_t>(i)] = {static_cast<float>(i), static_cast<float>(2 * i)};
  const auto five = five_points_from_68(p);
  EXPECT_FLOAT_EQ(five[kLeftEye].x, 38.5f);   // mean of 36..41
  EXPECT_FLOAT_EQ(five[kRightEye].x, 44.5f);  // mean of 42..47
  EXPECT_FLOAT_EQ(five[kNoseTip].y, 60.0f);
  EXPECT_FLOAT_EQ(five[kMouthLeft].x, 48.0f);
  EXPECT_FLOAT_EQ(five[kMouthRight].x, 54.0f);
}

TEST(CropResized, PadsOutsideTheImageWithBlack) {
  cv::Mat img(10, 10, CV_8UC1, cv::Scalar(200));
  const cv::Mat out = crop_resized(img, {-10, 0, 20, 20}, {20, 20});
  EXPECT_EQ(out.at<uchar>(5, 2), 0);
  EXPECT_EQ(out.at<uchar>(5, 15), 200);
}

TEST(CropResized, ConvertingTheRegionEqualsConvertingTheWholeImage) {
  cv::Mat bgr(60, 80, CV_8UC3);
  cv::randu(bgr, cv::Scalar::all(0), cv::Scalar::all(256));
  cv::Mat gray;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  for (const cv::Rect r : {cv::Rect(10, 5, 30, 30), cv::Rect(-8, 40, 32, 32), cv::Rect(70, -5, 9, 9)}) {
    for (const cv::Size size : {cv::Size(64, 64), cv::Size(16, 16)}) {
      const cv::Mat whole = crop_resized(gray, r, size), region = crop_resized(bgr, r, size, cv::COLOR_BGR2GRAY);
      ASSERT_EQ(region.type(), CV_8UC1);
      EXPECT_EQ(cv::norm(whole, region, cv::NORM_INF), 0) << r << " " << size;
    }
  }
}

// The reference: the aligned crop as it was made before face_warp reduced only the face's
// region (the whole image area-reduced, the reduction folded into the transform).
cv::Mat aligned_from_whole_image(const cv::Mat& bgr, const std::array<cv::Point2f, 5>& landmarks) {
  cv::Mat transform = similarity_transform(landmarks, arcface_template_112());
  const double scale = std::sqrt(std::abs(cv::determinant(transform.colRange(0, 2))));
  cv::Mat source = bgr;
  if (scale < 0.5) {
    const double pre = std::min(1.0, 2.0 * scale);
    cv::resize(bgr, source, cv::Size(), pre, pre, cv::INTER_AREA);
    transform.colRange(0, 2) /= pre;
  }
  cv::Mat crop;
  cv::warpAffine(source, crop, transform, {112, 112}, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return crop;
}

// A large face in a 12 MP photo: the warp reduces only the part of the photo it samples
// (the whole photo reduced cost ~60 ms a face), and the crop is the one the whole-image
// reduction gives, but for resampling differences; also for faces at and past the edge.
TEST(FaceWarp, ReducesOnlyThePartOfALargePhotoItSamples) {
  cv::Mat noise(150, 200, CV_8UC3), photo;
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(256));
  cv::resize(noise, photo, cv::Size(4000, 3000), 0, 0, cv::INTER_CUBIC);  // smooth: resampling shows little
  const auto tpl = arcface_template_112();
  for (const cv::Point2f at : {cv::Point2f(1800, 1300), cv::Point2f(-150, 2900), cv::Point2f(3900, -100)}) {
    for (const float size : {300.0f, 700.0f}) {  // face widths: crop scale 0.37 and 0.16
      std::array<cv::Point2f, 5> landmarks{};
      const float angle = 0.2f, k = size / 112.0f;
      for (std::size_t i = 0; i < tpl.size(); ++i) {
        landmarks[i] = at + cv::Point2f(k * (std::cos(angle) * tpl[i].x - std::sin(angle) * tpl[i].y),
                                        k * (std::sin(angle) * tpl[i].x + std::cos(angle) * tpl[i].y));
      }
      const FaceWarp w = face_warp(photo, landmarks, {112, 112});
      EXPECT_LT(w.source.total(), photo.total() / 50) << at << " " << size << ": the whole photo was reduced";
      cv::Mat crop;
      cv::warpAffine(w.source, crop, w.transform, {112, 112}, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
      const cv::Mat reference = aligned_from_whole_image(photo, landmarks);
      cv::Mat diff;
      cv::absdiff(crop, reference, diff);
      EXPECT_LT(cv::mean(diff)[0], 2.0) << at << " " << size;
      // Black (outside the photo) exactly where the reference is black.
      cv::Mat black_ref, black;
      cv::inRange(reference, cv::Scalar::all(0), cv::Scalar::all(0), black_ref);
      cv::inRange(crop, cv::Scalar::all(0), cv::Scalar::all(0), black);
      EXPECT_LT(cv::countNonZero(black_ref != black), 112 * 4) << at << " " << size;
    }
  }
}

TEST(Align, TheAlignedCropIs112SquareAndPutsTheEyesOnTheTemplate) {
  const auto path = test::testdata("face-api/sample1.jpg");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent: run `make setup`";
  auto image = read_image(path);
  ASSERT_TRUE(image.ok());
  const Engine& engine = test::shared_engine();
  auto faces = engine.detect(*image);
  ASSERT_FALSE(faces.empty());
  const cv::Mat crop = engine.align(*image, faces[0]);
  EXPECT_EQ(crop.size(), cv::Size(112, 112));
  EXPECT_EQ(crop.type(), CV_8UC3);
  // The transform maps the detected landmarks close to the template (least-squares residual).
  const cv::Mat m = similarity_transform(faces[0].landmarks, arcface_template_112());
  const auto tpl = arcface_template_112();
  double sum_sq = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    const cv::Point2f p = faces[0].landmarks[i];
    const double x = m.at<double>(0, 0) * p.x + m.at<double>(0, 1) * p.y + m.at<double>(0, 2);
    const double y = m.at<double>(1, 0) * p.x + m.at<double>(1, 1) * p.y + m.at<double>(1, 2);
    const double d = std::hypot(x - tpl[i].x, y - tpl[i].y);
    sum_sq += d * d;
    if (i < 2) {
      EXPECT_LT(d, 6.0) << "eye " << i;  // the eyes anchor the alignment
    }
  }
  // The nose and mouth move with head pose, so the fit is not exact: a few pixels RMS.
  EXPECT_LT(std::sqrt(sum_sq / 5), 8.0);
}

TEST(LandmarkPasses, RefinedCropsFollowTheCount) {
  EXPECT_TRUE(refine_scales(1).empty());
  EXPECT_EQ(refine_scales(2), std::vector<float>({1.10f}));
  EXPECT_EQ(refine_scales(3), std::vector<float>({1.075f, 1.125f}));
  EXPECT_EQ(refine_scales(4), std::vector<float>({1.05f, 1.10f, 1.15f}));
  EXPECT_THROW(refine_scales(kMinLandmarkPasses - 1), std::invalid_argument);
  EXPECT_THROW(refine_scales(kMaxLandmarkPasses + 1), std::invalid_argument);
}

TEST(LandmarkPasses, AnEngineRejectsACountOutOfRangeBeforeLoading) {
  for (int passes : {kMinLandmarkPasses - 1, kMaxLandmarkPasses + 1}) {
    EngineOptions o;
    o.model_dir = "/nonexistent";  // the count is checked first, so no model is looked for
    o.landmark_passes = passes;
    auto e = Engine::create(o);
    ASSERT_FALSE(e.ok()) << passes;
    EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument) << e.error().message;
    EXPECT_NE(e.error().message.find("landmark passes"), std::string::npos) << e.error().message;
  }
}

// Fewer passes move the five points by a little, not to another face part: within 8% of
// the eye distance of the default's (four passes) on a sample face.
TEST(LandmarkPasses, EveryCountPutsThePointsOnTheSameFace) {
  const auto path = test::testdata("face-api/sample1.jpg");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent: run `make setup`";
  auto image = read_image(path);
  ASSERT_TRUE(image.ok());
  auto faces = test::shared_engine().detect(*image);
  ASSERT_FALSE(faces.empty());
  const Face reference = faces[0];
  const float eyes = static_cast<float>(cv::norm(reference.landmarks[0] - reference.landmarks[1]));
  ASSERT_GT(eyes, 10.0f);
  for (int passes = kMinLandmarkPasses; passes < kMaxLandmarkPasses; ++passes) {
    SCOPED_TRACE(passes);
    EngineOptions o;
    o.landmark_passes = passes;
    o.replicas = 1;
    o.verify_hashes = false;
    auto engine = Engine::create(o);
    ASSERT_TRUE(engine.ok()) << engine.error().message;
    std::vector<Face> one{reference};
    (*engine)->locate_landmarks(*image, one);
    ASSERT_EQ(one[0].landmarks68.size(), 68u);
    float moved = 0;
    for (std::size_t i = 0; i < 5; ++i) moved = std::max(moved, static_cast<float>(cv::norm(one[0].landmarks[i] - reference.landmarks[i])));
    EXPECT_LT(moved, 0.08f * eyes);
    EXPECT_GT(moved, 0.0f);  // a different count is a different computation
  }
}

}  // namespace
}  // namespace candor
