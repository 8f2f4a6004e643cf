#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "../common/cost.h"
#include "../common/image_surgery.h"
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
std::vector<std::uint8_t> png_header(std::uint32_t width, std::uint32_t height, std::uint8_t depth = 8,
                                     std::uint8_t colour_type = 2) {
  std::vector<std::uint8_t> b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {width, height}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
  }
  b.insert(b.end(), {depth, colour_type, 0, 0, 0, 0, 0, 0, 0});  // ..., compression, filter, interlace, CRC
  return b;
}

// A smooth picture that every codec compresses well, so large test images stay quick.
cv::Mat smooth(int w, int h, int type = CV_8UC3) {
  cv::Mat m;
  cv::resize(gradient(16, 16), m, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
  if (CV_MAT_CN(type) == 4) cv::cvtColor(m, m, cv::COLOR_BGR2BGRA);
  if (CV_MAT_CN(type) == 1) cv::cvtColor(m, m, cv::COLOR_BGR2GRAY);
  if (CV_MAT_DEPTH(type) == CV_16U) m.convertTo(m, type, 257.0);
  return m;
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
  for (const char* ext : {".png", ".jpg", ".webp", ".bmp", ".ppm"}) {
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
  out.reserve(out.size() + app1.size() + jpeg.size());
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


// --- Decoding limits (README "Decoding and detection limits") ---

TEST(ImageLimits, RepeatedJpegScansAreRefusedBeforeDecoding) {
  const auto jpeg = encode(smooth(2400, 1800), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  auto info = probe_image(jpeg);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->scans, 10);
  ASSERT_TRUE(decode_image(jpeg).ok());
  const auto hostile = test::with_last_scan_repeated(jpeg, 600);
  info = probe_image(hostile);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->scans, 610);
  Result<cv::Mat> r = Error{};
  const test::Cost cost = test::measure_cost([&] { r = decode_image(hostile); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageTooLarge);
  EXPECT_NE(r.error().message.find("610 scans"), std::string::npos) << r.error().message;
  EXPECT_LT(cost.seconds, 0.2 * test::kSanitizerSlack);  // decoding it took 2.4 s before the bound
  // At the limit it still decodes.
  ImageLimits limits;
  limits.max_scans = 610;
  EXPECT_TRUE(decode_image(hostile, limits).ok());
}

TEST(ImageLimits, ScanCountIsNotFooledBySegmentContents) {
  const auto jpeg = encode(smooth(64, 48), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  // An APP15 segment full of FF DA pairs (libjpeg skips it by its length) ...
  std::vector<std::uint8_t> app = {0xFF, 0xEF, 0x01, 0x92};  // length 402
  for (int i = 0; i < 200; ++i) app.insert(app.end(), {0xFF, 0xDA});
  std::vector<std::uint8_t> padded(jpeg.begin(), jpeg.begin() + 2);
  padded.insert(padded.end(), app.begin(), app.end());
  padded.insert(padded.end(), jpeg.begin() + 2, jpeg.end());
  auto info = probe_image(padded);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->scans, 10);
  EXPECT_TRUE(decode_image(padded).ok());
  // ... and stray bytes between segments, which libjpeg skips to the next marker, hide no scan.
  auto hostile = test::with_last_scan_repeated(jpeg, 40);
  std::vector<std::uint8_t> strayed;
  for (std::size_t i = 0; i < hostile.size(); ++i) {
    if (i > 2 && i + 1 < hostile.size() && hostile[i] == 0xFF && hostile[i + 1] == 0xDA) strayed.insert(strayed.end(), {0x12, 0x34});
    strayed.push_back(hostile[i]);
  }
  info = probe_image(strayed);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->scans, 50);
}

// Decoding allocates no more than probe_image's decode_bytes: for each format, at the
// depths and channel counts that take the widest path, measured as the resident peak.
TEST(ImageLimits, DecodingStaysWithinItsEstimatedMemory) {
  const int w = 1600, h = 1200;  // 1.9 MP: large enough that the estimate dominates the noise
  struct Case {
    const char* name;
    std::vector<std::uint8_t> bytes;
  };
  std::vector<Case> cases = {
      {"16-bit RGBA PNG", encode(smooth(w, h, CV_16UC4), ".png", {cv::IMWRITE_PNG_COMPRESSION, 1})},
      {"8-bit RGBA PNG", encode(smooth(w, h, CV_8UC4), ".png", {cv::IMWRITE_PNG_COMPRESSION, 1})},
      {"16-bit grey PNG", encode(smooth(w, h, CV_16UC1), ".png", {cv::IMWRITE_PNG_COMPRESSION, 1})},
      {"progressive JPEG, EXIF-rotated", with_exif_orientation(encode(smooth(w, h), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}), 6)},
      {"lossless WebP with alpha", encode(smooth(w, h, CV_8UC4), ".webp", {cv::IMWRITE_WEBP_QUALITY, 101})},
      {"32-bit BMP", encode(smooth(w, h, CV_8UC4), ".bmp")},
      {"16-bit PPM", encode(smooth(w, h, CV_16UC3), ".ppm")},
      {"ASCII PGM", encode(smooth(w, h, CV_8UC1), ".pgm", {cv::IMWRITE_PXM_BINARY, 0})},
  };
  // OpenCV's first decode of a process sets up its codecs once (~10 MiB): not the image's cost.
  ASSERT_TRUE(decode_image(encode(gradient(16, 16), ".png")).ok());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto info = probe_image(c.bytes);
    ASSERT_TRUE(info.ok()) << info.error().message;
    Result<cv::Mat> r = Error{};
    ImageLimits limits;
    limits.max_bytes = 64u << 20;  // the uncompressed formats (PPM, BMP) are larger than 20 MB here
    const test::Cost cost = test::measure_cost([&] { r = decode_image(c.bytes, limits); });
    std::printf("%-32s estimated %4lld MiB, peak %4lld MiB, %.3f s\n", c.name,
                static_cast<long long>(info->decode_bytes >> 20), static_cast<long long>(cost.peak_bytes >> 20),
                cost.seconds);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->type(), CV_8UC3);
    // Slack for row buffers, codec state and allocator rounding: 4 MiB.
    EXPECT_LE(cost.peak_bytes, static_cast<std::int64_t>(static_cast<double>(info->decode_bytes) * test::kSanitizerSlack) + (4 << 20))
        << "estimated " << info->decode_bytes / (1 << 20) << " MiB";
    r = Error{};
  }
}

TEST(ImageLimits, SixteenBitRgbaOverTheDecodeBudgetIsRefusedByItsHeader) {
  // Issue 16's 322 KB PNG: 7300x5470 (39.9 MP, under the pixel limit), 16-bit RGBA:
  // 8 bytes per pixel decoded plus 3 of BGR result, 439 MB.
  auto r = decode_image(png_header(7300, 5470, 16, 6));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageTooLarge);
  EXPECT_NE(r.error().message.find("MiB"), std::string::npos) << r.error().message;
  // The same size at 8 bits RGB needs 120 MB: past the budget check, to the decoder (no pixel data: corrupt).
  r = decode_image(png_header(7300, 5470, 8, 2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kImageCorrupt) << r.error().message;
}

TEST(ImageLimits, PngTextChunksDoNotReachTheDecoder) {
  // The zlib stream of a uniform 2800x2800 grey image: 7.8 MB inflated from a few KB.
  const auto big = encode(cv::Mat(2800, 2800, CV_8UC1, cv::Scalar(0)), ".png", {cv::IMWRITE_PNG_COMPRESSION, 9});
  const auto ztxt = test::png_ztxt_chunk(test::png_idat_stream(big));
  std::vector<std::uint8_t> chunks;
  for (int i = 0; i < 100; ++i) chunks.insert(chunks.end(), ztxt.begin(), ztxt.end());
  const cv::Mat small = gradient(64, 64);
  const auto hostile = test::with_chunks_after_ihdr(encode(small, ".png"), chunks);
  ASSERT_LT(hostile.size(), 2u << 20);
  Result<cv::Mat> r = Error{};
  const test::Cost cost = test::measure_cost([&] { r = decode_image(hostile); });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(cv::norm(*r, small, cv::NORM_INF), 0);
  // libpng inflated and kept all 100 texts before: 780 MB and about 2 s.
  EXPECT_LT(cost.peak_bytes, static_cast<std::int64_t>(32 * test::kSanitizerSlack) << 20);
  EXPECT_LT(cost.seconds, 0.25 * test::kSanitizerSlack);
}

TEST(ImageLimits, PngTransparencyChunkStillApplies) {
  cv::Mat src(40, 40, CV_8UC3, cv::Scalar(10, 20, 30));
  src(cv::Rect(0, 0, 20, 40)).setTo(cv::Scalar(200, 100, 50));
  // tRNS for colour type 2 (PNG spec 11.3.2.1): the 16-bit R, G, B that is transparent.
  const auto png = test::with_chunks_after_ihdr(encode(src, ".png"), test::png_chunk("tRNS", {0, 30, 0, 20, 0, 10}));
  auto r = decode_image(png);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->at<cv::Vec3b>(5, 5), cv::Vec3b(200, 100, 50));
  EXPECT_EQ(r->at<cv::Vec3b>(5, 35), cv::Vec3b(255, 255, 255));
}

TEST(ImageIo, ReadsPgmAndPpm) {
  cv::Mat grey(40, 48, CV_8UC1, cv::Scalar(77)), colour(40, 48, CV_8UC3, cv::Scalar(10, 20, 30));
  cv::Mat grey16(40, 48, CV_16UC1, cv::Scalar(32896)), colour16(40, 48, CV_16UC3, cv::Scalar(65535, 0, 257));
  for (int binary : {1, 0}) {
    SCOPED_TRACE(binary ? "binary" : "ASCII");
    struct Case {
      const cv::Mat* image;
      const char* ext;
      cv::Vec3b expected;
    };
    for (const Case& c : {Case{&grey, ".pgm", {77, 77, 77}}, Case{&colour, ".ppm", {10, 20, 30}},
                          Case{&grey16, ".pgm", {128, 128, 128}}, Case{&colour16, ".ppm", {255, 0, 1}}}) {
      const auto bytes = encode(*c.image, c.ext, {cv::IMWRITE_PXM_BINARY, binary});
      auto info = probe_image(bytes);
      ASSERT_TRUE(info.ok()) << info.error().message;
      EXPECT_EQ(info->format, ImageFormat::kPnm);
      EXPECT_EQ(info->width, 48);
      EXPECT_EQ(info->height, 40);
      auto r = decode_image(bytes);
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(r->type(), CV_8UC3);
      EXPECT_EQ(r->at<cv::Vec3b>(3, 3), c.expected) << c.ext << " depth " << c.image->depth();
    }
  }
}

TEST(ImageIo, PgmAndPpmHeadersAreChecked) {
  auto bytes_of = [](const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); };
  auto code_of = [&](const std::string& s) {
    auto r = decode_image(bytes_of(s));
    return r.ok() ? std::string("ok") : std::string(error_code_name(r.error().code));
  };
  EXPECT_EQ(code_of("P5 30000 30000 255\n"), "image_too_large");  // before any pixel is read
  EXPECT_EQ(code_of("P5 10 10 255\n" + std::string(100, 'x')), "image_too_small");
  EXPECT_EQ(code_of("P5 64 64 255\n" + std::string(100, 'x')), "image_corrupt");  // pixels cut short
  EXPECT_EQ(code_of("P5 64 64 0\n" + std::string(4096, 'x')), "image_corrupt");   // maxval 0
  EXPECT_EQ(code_of("P5 64 64 70000\n" + std::string(8192, 'x')), "image_corrupt");
  EXPECT_EQ(code_of("P5 64 99999999999 255\n"), "image_corrupt");
  EXPECT_EQ(code_of("P6 64\n"), "image_corrupt");
  EXPECT_EQ(code_of("P5 # a comment\n64 # another\n 64 255\n" + std::string(4096, 'x')), "ok");
  EXPECT_EQ(code_of("P7\nWIDTH 64\n"), "image_unsupported");  // PAM: not accepted
  EXPECT_EQ(code_of("P4 64 64\n" + std::string(512, 'x')), "image_unsupported");  // PBM: no faces in 1 bit
}
}  // namespace
}  // namespace candor
