#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "candor/image.h"
#include "test_support.h"

namespace candor {
namespace {

std::vector<std::uint8_t> encode(const cv::Mat& m, const std::string& ext, std::vector<int> params = {}) {
  std::vector<std::uint8_t> out;
  EXPECT_TRUE(cv::imencode(ext, m, out, params));
  return out;
}

cv::Mat gradient(int w, int h) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) m.at<cv::Vec3b>(y, x) = {static_cast<uchar>(x), static_cast<uchar>(y), 128};
  return m;
}

// A PNG signature plus an IHDR chunk claiming width x height, and nothing else.
std::vector<std::uint8_t> png_header(std::uint32_t width, std::uint32_t height) {
  std::vector<std::uint8_t> b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {width, height}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
  }
  for (std::uint8_t v : {8, 2, 0, 0, 0, 0, 0, 0, 0}) b.push_back(v);  // depth, colour type, ..., CRC
  return b;
}

TEST(ImageIo, EmptyInputIsImageEmpty) {
  auto r = decode_image({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageEmpty);
}

TEST(ImageIo, RandomBytesAreUnsupported) {
  std::mt19937 rng(7);
  std::vector<std::uint8_t> bytes(4096);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  bytes[0] = 0x00;  // not any image magic
  auto r = decode_image(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageUnsupported);
}

TEST(ImageIo, RandomBytesBehindAJpegMagicAreCorrupt) {
  std::mt19937 rng(11);
  std::vector<std::uint8_t> bytes = {0xFF, 0xD8, 0xFF};
  for (int i = 0; i < 4096; ++i) bytes.push_back(static_cast<std::uint8_t>(rng()));
  auto r = decode_image(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageCorrupt) << r.error().message;
}

TEST(ImageIo, TruncatedJpegIsCorrupt) {
  auto full = encode(gradient(200, 150), ".jpg");
  ASSERT_TRUE(decode_image(full).ok());
  for (std::size_t keep : {full.size() / 2, full.size() - 10, std::size_t{100}, std::size_t{4}}) {
    std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(keep));
    auto r = decode_image(cut);
    ASSERT_FALSE(r.ok()) << "kept " << keep << " bytes";
    EXPECT_EQ(r.error().code, ErrorCode::kImageCorrupt) << r.error().message;
  }
}

TEST(ImageIo, TruncatedPngIsCorrupt) {
  auto full = encode(gradient(200, 150), ".png");
  std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(full.size() / 2));
  auto r = decode_image(cut);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageCorrupt);
}

TEST(ImageIo, OnePixelImageIsTooSmall) {
  auto r = decode_image(encode(cv::Mat(1, 1, CV_8UC3, cv::Scalar::all(9)), ".png"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageTooSmall);
  EXPECT_NE(r.error().message.find("1x1"), std::string::npos) << r.error().message;
}

TEST(ImageIo, HugeDimensionsAreRefusedBeforeDecoding) {
  auto r = decode_image(png_header(30000, 30000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageTooLarge);
  EXPECT_NE(r.error().message.find("30000x30000"), std::string::npos) << r.error().message;
}

TEST(ImageIo, PngBombIsRefusedByItsHeader) {
  // 10000 x 10000 of one colour: ~0.3 MB of PNG that would inflate to 300 MB.
  cv::Mat big(10000, 10000, CV_8UC3, cv::Scalar::all(0));
  auto bytes = encode(big, ".png", {cv::IMWRITE_PNG_COMPRESSION, 9});
  big.release();
  ASSERT_LT(bytes.size(), 2u << 20);
  auto r = decode_image(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageTooLarge);
}

TEST(ImageIo, ByteLimitIsEnforced) {
  ImageLimits limits;
  limits.max_bytes = 1000;
  auto r = decode_image(encode(gradient(300, 300), ".png"), limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageTooLarge);
}

TEST(ImageIo, DecodesEachSupportedFormatToBgr8) {
  const cv::Mat src = gradient(64, 48);
  for (const char* ext : {".png", ".jpg", ".webp", ".bmp"}) {
    auto info = probe_image(encode(src, ext));
    ASSERT_TRUE(info.ok()) << ext << ": " << info.error().message;
    EXPECT_EQ(info->width, 64) << ext;
    EXPECT_EQ(info->height, 48) << ext;
    auto r = decode_image(encode(src, ext));
    ASSERT_TRUE(r.ok()) << ext << ": " << r.error().message;
    EXPECT_EQ(r->type(), CV_8UC3);
    EXPECT_EQ(r->size(), src.size());
  }
}

TEST(ImageIo, GrayscaleAndSixteenBitAreExpanded) {
  cv::Mat gray(40, 40, CV_8UC1, cv::Scalar(77));
  auto r = decode_image(encode(gray, ".png"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type(), CV_8UC3);
  EXPECT_EQ(r->at<cv::Vec3b>(5, 5), cv::Vec3b(77, 77, 77));
  cv::Mat deep(40, 40, CV_16UC3, cv::Scalar(65535, 0, 32896));
  r = decode_image(encode(deep, ".png"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at<cv::Vec3b>(5, 5), cv::Vec3b(255, 0, 128));
}

TEST(ImageIo, TransparentPixelsBecomeWhite) {
  cv::Mat rgba(40, 40, CV_8UC4, cv::Scalar(0, 0, 255, 0));  // red, fully transparent
  rgba(cv::Rect(0, 0, 20, 40)).setTo(cv::Scalar(0, 0, 255, 255));  // left half opaque red
  auto r = decode_image(encode(rgba, ".png"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at<cv::Vec3b>(10, 5), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(r->at<cv::Vec3b>(10, 35), cv::Vec3b(255, 255, 255));
}

// Inserts an APP1 Exif segment with one IFD entry, Orientation = value, after SOI.
std::vector<std::uint8_t> with_exif_orientation(const std::vector<std::uint8_t>& jpeg, std::uint16_t value) {
  const std::vector<std::uint8_t> tiff = {'M', 'M', 0, 42, 0, 0, 0, 8,  // big-endian TIFF, IFD at 8
                                          0, 1,                          // one entry
                                          0x01, 0x12, 0, 3, 0, 0, 0, 1,  // tag 0x0112 SHORT x1
                                          static_cast<std::uint8_t>(value >> 8), static_cast<std::uint8_t>(value), 0, 0,
                                          0, 0, 0, 0};                   // no next IFD
  std::vector<std::uint8_t> app1 = {'E', 'x', 'i', 'f', 0, 0};
  app1.insert(app1.end(), tiff.begin(), tiff.end());
  const std::size_t len = app1.size() + 2;
  std::vector<std::uint8_t> out = {0xFF, 0xD8, 0xFF, 0xE1, static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)};
  out.insert(out.end(), app1.begin(), app1.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());
  return out;
}

TEST(ImageIo, ExifOrientationIsApplied) {
  auto jpeg = encode(gradient(120, 60), ".jpg");
  auto upright = decode_image(jpeg);
  ASSERT_TRUE(upright.ok());
  EXPECT_EQ(upright->size(), cv::Size(120, 60));
  auto rotated = decode_image(with_exif_orientation(jpeg, 6));  // 6: rotate 90 degrees clockwise to display
  ASSERT_TRUE(rotated.ok()) << rotated.error().message;
  EXPECT_EQ(rotated->size(), cv::Size(60, 120));
}

TEST(ImageIo, MissingFileIsIoError) {
  auto r = read_image("/nonexistent/candor/face.jpg");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIoError);
}

TEST(ImageIo, ReadsTheNpmSampleImages) {
  const auto path = test::testdata("face-api/sample1.jpg");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent: run `make setup`";
  auto r = read_image(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->size(), cv::Size(1920, 1280));
}

}  // namespace
}  // namespace candor
