// Motion deblurring (candor/deblur.h): the filter itself, then what it does for the recogniser.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "candor/deblur.h"
#include "candor/engine.h"
#include "candor/image.h"
#include "test_support.h"

namespace candor {
namespace {

cv::Mat smeared(const cv::Mat& bgr, cv::Point2f smear, double noise_sigma) {
  cv::Mat out;
  cv::filter2D(bgr, out, -1, motion_kernel(smear), {-1, -1}, 0, cv::BORDER_REFLECT_101);
  cv::Mat noise(out.size(), CV_16SC3), wide;
  cv::RNG rng(12);
  rng.fill(noise, cv::RNG::NORMAL, 0, noise_sigma);
  out.convertTo(wide, CV_16SC3);
  wide += noise;
  wide.convertTo(out, CV_8UC3);
  return out;
}

double mean_abs_difference(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  const cv::Scalar m = cv::mean(d);
  return (m[0] + m[1] + m[2]) / 3;
}

TEST(Deblur, TheKernelIsTheSmearsLineAndSumsToOne) {
  const cv::Mat h = motion_kernel({10, 0});
  EXPECT_NEAR(cv::sum(h)[0], 1.0, 1e-5);
  EXPECT_EQ(h.rows % 2, 1);
  const int c = h.rows / 2;
  EXPECT_NEAR(cv::sum(h.row(c))[0], 1.0, 1e-5);  // all of it on the middle row
  int reach = 0;
  for (int x = 0; x < h.cols; ++x) reach += h.at<float>(c, x) > 0;
  EXPECT_GE(reach, 10);
  EXPECT_LE(reach, 12);
  const cv::Mat v = motion_kernel({0, 10});  // the same line, vertical
  EXPECT_LT(cv::norm(v, h.t(), cv::NORM_INF), 1e-6);
  const cv::Mat d = motion_kernel({7, 7});
  EXPECT_GT(d.at<float>(c, c), 0.0f);
  EXPECT_EQ(d.at<float>(0, d.cols - 1), 0.0f);  // a diagonal from top left: the other corner stays empty
  EXPECT_THROW(motion_kernel({2000, 0}), std::invalid_argument);
}

TEST(Deblur, AShortSmearLeavesTheImageAsItIs) {
  auto image = read_image(test::testdata("face-api/sample4.jpg"));
  ASSERT_TRUE(image.ok()) << "run `make setup`";
  const cv::Mat out = deblur_motion(*image, {1.5f, 0.5f});
  ASSERT_EQ(out.size(), image->size());
  EXPECT_EQ(cv::norm(out, *image, cv::NORM_INF), 0);
}

// A known smear, horizontal or diagonal: the deblurred image lies much nearer the sharp one
// than the smeared image does, and still nearer with sensor noise (which the filter must
// not amplify into more error than it removes).
TEST(Deblur, UndoesAKnownSmear) {
  auto image = read_image(test::testdata("face-api/sample4.jpg"));
  ASSERT_TRUE(image.ok()) << "run `make setup`";
  for (const cv::Point2f smear : {cv::Point2f(10, 0), cv::Point2f(-6, 6), cv::Point2f(0, 8)}) {
    for (const auto& [noise, most] : {std::pair{0.0, 0.75}, std::pair{2.0, 1.0}}) {
      const cv::Mat blurred = smeared(*image, smear, noise);
      const cv::Mat restored = deblur_motion(blurred, smear);
      ASSERT_EQ(restored.size(), image->size());
      ASSERT_EQ(restored.type(), CV_8UC3);
      EXPECT_LT(mean_abs_difference(restored, *image), most * mean_abs_difference(blurred, *image))
          << "smear " << smear << ", noise " << noise;
    }
  }
}

// What it is for: a face smeared by a tenth of its width (a walker crossing the frame at
// a 1/50 s shutter, `candor bench stream`) gives a template nearer its sharp one once
// deblurred. Landmarks as found on the sharp face, so that only the pixels differ.
TEST(Deblur, BringsASmearedFacesTemplateBackTowardsTheSharpOne) {
  auto image = read_image(test::testdata("face-api/sample4.jpg"));
  ASSERT_TRUE(image.ok()) << "run `make setup`";
  const std::vector<Face> sharp = test::shared_engine().analyze(*image);
  ASSERT_FALSE(sharp.empty());
  double gained = 0;
  for (std::size_t i = 0; i < sharp.size(); ++i) {
    const cv::Point2f smear(sharp[i].box.width / 10, 0);
    const cv::Mat blurred = smeared(*image, smear, 3);
    Face as_blurred = sharp[i], as_restored = sharp[i];
    test::shared_engine().embed(blurred, std::span<Face>(&as_blurred, 1));
    test::shared_engine().embed(deblur_motion(blurred, smear), std::span<Face>(&as_restored, 1));
    const float before = cosine_similarity(as_blurred.embedding, sharp[i].embedding);
    const float after = cosine_similarity(as_restored.embedding, sharp[i].embedding);
    EXPECT_GT(after, before) << "face " << i << " (" << sharp[i].box.width << " px)";
    gained += after - before;
  }
  EXPECT_GT(gained / static_cast<double>(sharp.size()), 0.03);
}

}  // namespace
}  // namespace candor
