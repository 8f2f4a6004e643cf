// fuzz_image: arbitrary bytes through decode_image and, when they decode, the whole
// pipeline the /v1/detect route runs (detection, landmarks, templates, quality, liveness).
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "../tests/common/image_surgery.h"
#include "candor/image.h"
#include "harness.h"
#include "harness_internal.h"

namespace candor::fuzz {
namespace {

// A broken promise of a header contract is a bug even when nothing crashes yet.
[[noreturn]] void contract_violated(const char* what) {
  std::fprintf(stderr, "candor fuzz harness: contract violated: %s\n", what);
  std::abort();
}

using Blob = std::vector<std::uint8_t>;

Blob encode(const std::string& ext, const cv::Mat& image, const std::vector<int>& params = {}) {
  Blob out;
  if (!cv::imencode(ext, image, out, params)) throw std::runtime_error("OpenCV cannot write " + ext);
  return out;
}

// A small picture with edges and colour, so that every codec has something to encode.
cv::Mat synthetic(int size) {
  cv::Mat image(size, size, CV_8UC3);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<std::uint8_t>(x * 255 / size),
                                            static_cast<std::uint8_t>(y * 255 / size), 128);
    }
  }
  cv::circle(image, {size / 2, size / 2}, size / 4, cv::Scalar(30, 60, 220), -1);
  return image;
}

// The JPEG with an APP1 Exif segment saying "rotate 90° clockwise" (orientation 6),
// which decode_image must apply: OpenCV writes no EXIF, so the segment is spliced in.
Blob with_exif_orientation(const Blob& jpeg) {
  const Blob tiff = {'I', 'I', 42, 0, 8, 0, 0, 0,          // little-endian TIFF, IFD at 8
                     1, 0,                                 // one entry
                     0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,  // Orientation, SHORT, 1, value 6
                     0, 0, 0, 0};                          // no next IFD
  Blob app1 = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
  app1.insert(app1.end(), tiff.begin(), tiff.end());
  const std::size_t length = app1.size() - 2;
  app1[2] = static_cast<std::uint8_t>(length >> 8);
  app1[3] = static_cast<std::uint8_t>(length & 0xFF);
  Blob out(jpeg.begin(), jpeg.begin() + 2);  // SOI
  out.reserve(2 + app1.size() + jpeg.size());
  out.insert(out.end(), app1.begin(), app1.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::vector<std::uint8_t>>> image_seeds() {
  const cv::Mat picture = synthetic(48);
  cv::Mat grey, rgba, deep, deep_rgba, deep_grey;
  cv::cvtColor(picture, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(picture, rgba, cv::COLOR_BGR2BGRA);
  for (int y = 0; y < rgba.rows; ++y) rgba.at<cv::Vec4b>(y, y)[3] = 0;  // some transparency
  picture.convertTo(deep, CV_16UC3, 257.0);
  // 16-bit RGBA at the harness's largest size (256x256), which compresses to a few KB.
  deep_rgba.create(256, 256, CV_16UC4);
  deep_rgba.setTo(cv::Scalar(10000, 20000, 30000, 65535));
  for (int y = 0; y < deep_rgba.rows; ++y) deep_rgba.at<cv::Vec<std::uint16_t, 4>>(y, y)[3] = 0;
  grey.convertTo(deep_grey, CV_16UC1, 257.0);
  const Blob jpeg = encode(".jpg", picture, {cv::IMWRITE_JPEG_QUALITY, 75});
  const Blob progressive = encode(".jpg", picture, {cv::IMWRITE_JPEG_PROGRESSIVE, 1, cv::IMWRITE_JPEG_QUALITY, 60});
  const Blob ztxt = test::png_ztxt_chunk(test::png_idat_stream(
      encode(".png", cv::Mat(2800, 2800, CV_8UC1, cv::Scalar(0)), {cv::IMWRITE_PNG_COMPRESSION, 9})));
  Blob text_chunks;
  for (int i = 0; i < 4; ++i) text_chunks.insert(text_chunks.end(), ztxt.begin(), ztxt.end());
  std::vector<std::pair<std::string, Blob>> seeds = {
      {"baseline.jpg", jpeg},
      {"progressive.jpg", progressive},
      {"exif_rotated.jpg", with_exif_orientation(jpeg)},
      {"grey.jpg", encode(".jpg", grey)},
      {"colour.png", encode(".png", picture, {cv::IMWRITE_PNG_COMPRESSION, 9})},
      {"grey.png", encode(".png", grey)},
      {"alpha.png", encode(".png", rgba)},
      {"16bit.png", encode(".png", deep)},
      {"16bit_rgba.png", encode(".png", deep_rgba)},
      {"colour.bmp", encode(".bmp", synthetic(24))},
      {"grey.bmp", encode(".bmp", grey)},
      {"colour.ppm", encode(".ppm", picture)},
      {"grey.pgm", encode(".pgm", grey)},
      {"ascii.ppm", encode(".ppm", picture, {cv::IMWRITE_PXM_BINARY, 0})},
      {"16bit.pgm", encode(".pgm", deep_grey)},
      // Over max_scans (32): refused after the scans are counted.
      {"repeated_scans.jpg", test::with_last_scan_repeated(progressive, 30)},
      // Text chunks that never reach libpng: 4 of 7.8 MB each inflated, in 31 KB.
      {"text_chunks.png", test::with_chunks_after_ihdr(encode(".png", grey), text_chunks)},
  };
  if (cv::haveImageWriter(".webp")) {
    seeds.emplace_back("lossy.webp", encode(".webp", picture, {cv::IMWRITE_WEBP_QUALITY, 60}));
    seeds.emplace_back("lossless.webp", encode(".webp", picture, {cv::IMWRITE_WEBP_QUALITY, 101}));
  }
  return seeds;
}

void init_image() {
  (void)shared_engine();
  (void)shared_analyzer();
}

Outcome image_input(Bytes data) {
  ImageLimits limits;
  limits.max_bytes = kImageMaxBytes;
  limits.max_pixels = kImageMaxPixels;
  auto bgr = decode_image(data, limits);
  if (!bgr) return {};
  // decode_image's contract, checked here because every later stage relies on it.
  if (bgr->type() != CV_8UC3 || !bgr->isContinuous() || std::int64_t{bgr->cols} * bgr->rows > kImageMaxPixels) {
    contract_violated("decode_image returned something other than a continuous CV_8UC3 within the limits");
  }
  const Engine& engine = shared_engine();
  // A lower threshold lets mutated faces reach the landmark, alignment and embedding
  // stages more often. The minimum face size stays at its default: smaller ones make the
  // detector upscale and tile a 256x256 input into some 25 inferences instead of one.
  DetectOptions options;
  options.score_threshold = 0.5f;
  options.max_faces = 2;
  std::vector<Face> faces = engine.analyze(*bgr, options);
  for (const Face& f : faces) {
    // One pixel of slack: boxes are clamped in floating point.
    const bool inside = f.box.x >= -1.0f && f.box.y >= -1.0f && f.box.right() <= static_cast<float>(bgr->cols) + 1.0f &&
                        f.box.bottom() <= static_cast<float>(bgr->rows) + 1.0f;
    if (!inside) contract_violated("Engine::detect returned a box outside the image");
    if (f.embedding.size() != static_cast<std::size_t>(engine.recognizer_spec().dim)) {
      contract_violated("Engine::analyze returned a face without a full template");
    }
  }
  if (!faces.empty()) {
    AnalysisRequest request;
    request.liveness = true;
    shared_analyzer().analyze(*bgr, faces, request);
  }
  return {true, 0};
}

}  // namespace candor::fuzz
