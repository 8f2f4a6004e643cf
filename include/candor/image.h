// Candor: reading images safely.
//
// Every image Candor sees may be hostile: a truncated upload, random bytes, a
// 30000x30000 header on a 100-byte file, a PNG that inflates to gigabytes. The
// header is parsed by Candor itself (probe_image) and checked against the limits
// before the decoder allocates anything; only then does OpenCV decode it.
//
// Thread safety: all functions are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "candor/result.h"

namespace candor {

struct ImageLimits {
  std::size_t max_bytes = 20u * 1024u * 1024u;  // 20 MB: larger than any camera JPEG
  std::int64_t max_pixels = 40'000'000;         // 40 MP: 8 bytes/px decoded stays < 400 MB
  int min_side = 16;                             // below this no face can be found
};

enum class ImageFormat { kJpeg, kPng, kWebp, kBmp };
std::string_view image_format_name(ImageFormat format) noexcept;

struct ImageInfo {
  ImageFormat format;
  int width = 0;   // as stored, before EXIF orientation is applied
  int height = 0;
};

// Reads the format and dimensions from the header without decoding pixels.
// ensures: an error is kImageEmpty, kImageUnsupported (unknown magic) or
//          kImageCorrupt (a known format whose header is cut short or inconsistent).
Result<ImageInfo> probe_image(std::span<const std::uint8_t> bytes);

// Decodes an encoded image to 8-bit BGR (CV_8UC3), the layout every stage expects.
// EXIF orientation is applied; grayscale is expanded; alpha is composited on white;
// 16-bit samples are scaled to 8 bits.
// ensures: on success, the result is CV_8UC3, continuous, within `limits`.
//          Errors: kImageEmpty, kImageUnsupported, kImageCorrupt, kImageTooLarge
//          (bytes or pixels over the limit: checked before decoding), kImageTooSmall.
Result<cv::Mat> decode_image(std::span<const std::uint8_t> bytes, const ImageLimits& limits = {});

// Reads a file (at most limits.max_bytes + 1 bytes are read) and decodes it.
// ensures: in addition to decode_image's errors, kIoError when the file cannot be read.
Result<cv::Mat> read_image(const std::filesystem::path& path, const ImageLimits& limits = {});

// Reads a whole file, refusing one larger than max_bytes (kImageTooLarge) without reading it all.
Result<std::vector<std::uint8_t>> read_file_bytes(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace candor
