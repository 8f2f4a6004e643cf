// Header probing and guarded decoding. See include/candor/image.h for the contract.
#include <algorithm>
#include <fstream>
#include <string>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/image.h"

namespace candor {
namespace {

using Bytes = std::span<const std::uint8_t>;

std::uint32_t be16(Bytes b, std::size_t at) { return (std::uint32_t{b[at]} << 8) | b[at + 1]; }
std::uint32_t be32(Bytes b, std::size_t at) { return (be16(b, at) << 16) | be16(b, at + 2); }
std::uint32_t le16(Bytes b, std::size_t at) { return std::uint32_t{b[at]} | (std::uint32_t{b[at + 1]} << 8); }
std::uint32_t le24(Bytes b, std::size_t at) { return le16(b, at) | (std::uint32_t{b[at + 2]} << 16); }
std::uint32_t le32(Bytes b, std::size_t at) { return le16(b, at) | (le16(b, at + 2) << 16); }

bool starts_with(Bytes b, std::initializer_list<std::uint8_t> magic, std::size_t at = 0) {
  if (b.size() < at + magic.size()) return false;
  return std::equal(magic.begin(), magic.end(), b.begin() + static_cast<std::ptrdiff_t>(at));
}

Error corrupt(std::string_view format, std::string_view why) {
  return {ErrorCode::kImageCorrupt, std::string(format) + " header is corrupt: " + std::string(why)};
}

// JPEG (ITU T.81 B.1): walk the marker segments to the first SOFn frame header.
Result<ImageInfo> probe_jpeg(Bytes b) {
  std::size_t at = 2;
  while (at + 4 <= b.size()) {
    if (b[at] != 0xFF) return corrupt("JPEG", "marker expected");
    const std::uint8_t marker = b[at + 1];
    if (marker == 0xFF) { ++at; continue; }  // fill byte
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { at += 2; continue; }  // no length
    if (marker == 0xD9 || marker == 0xDA) break;  // EOI or SOS before any frame header
    const std::uint32_t length = be16(b, at + 2);
    if (length < 2) return corrupt("JPEG", "segment length < 2");
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (at + 9 > b.size() || length < 7) return corrupt("JPEG", "frame header cut short");
      ImageInfo info{ImageFormat::kJpeg, static_cast<int>(be16(b, at + 7)), static_cast<int>(be16(b, at + 5))};
      if (info.width == 0 || info.height == 0) return corrupt("JPEG", "zero width or height");
      return info;
    }
    at += 2 + length;
  }
  return corrupt("JPEG", "no frame header");
}

// A JPEG whose entropy-coded data is cut short still "decodes" in libjpeg (the rest
// is filled with grey, with only a warning), so truncation is checked explicitly:
// an end-of-image marker must follow the first start-of-scan.
bool jpeg_has_end_marker(Bytes b) {
  // Trailing bytes after EOI are common (camera padding) and tolerated, up to 4 KiB.
  const std::size_t start = b.size() > 4096 ? b.size() - 4096 : 0;
  for (std::size_t i = b.size(); i >= start + 2; --i) {
    if (b[i - 2] == 0xFF && b[i - 1] == 0xD9) return true;
  }
  return false;
}

Result<ImageInfo> probe_png(Bytes b) {
  // PNG spec 11.2.2: IHDR is the first chunk; width and height are big-endian at 16 and 20.
  if (b.size() < 24 || !starts_with(b, {'I', 'H', 'D', 'R'}, 12)) return corrupt("PNG", "IHDR missing");
  const std::uint32_t w = be32(b, 16), h = be32(b, 20);
  if (w == 0 || h == 0 || w > 0x7FFFFFFF || h > 0x7FFFFFFF) return corrupt("PNG", "bad dimensions");
  return ImageInfo{ImageFormat::kPng, static_cast<int>(std::min<std::uint32_t>(w, 1u << 30)),
                   static_cast<int>(std::min<std::uint32_t>(h, 1u << 30))};
}

// WebP container (RFC 9649): RIFF, then one of VP8 (lossy), VP8L (lossless), VP8X (extended).
Result<ImageInfo> probe_webp(Bytes b) {
  if (b.size() < 30) return corrupt("WebP", "cut short");
  if (starts_with(b, {'V', 'P', '8', ' '}, 12)) {
    if (!starts_with(b, {0x9D, 0x01, 0x2A}, 23)) return corrupt("WebP", "VP8 start code missing");
    return ImageInfo{ImageFormat::kWebp, static_cast<int>(le16(b, 26) & 0x3FFF),
                     static_cast<int>(le16(b, 28) & 0x3FFF)};
  }
  if (starts_with(b, {'V', 'P', '8', 'L'}, 12)) {
    if (b[20] != 0x2F) return corrupt("WebP", "VP8L signature missing");
    const std::uint32_t bits = le32(b, 21);
    return ImageInfo{ImageFormat::kWebp, static_cast<int>((bits & 0x3FFF) + 1),
                     static_cast<int>(((bits >> 14) & 0x3FFF) + 1)};
  }
  if (starts_with(b, {'V', 'P', '8', 'X'}, 12)) {
    return ImageInfo{ImageFormat::kWebp, static_cast<int>(le24(b, 24) + 1), static_cast<int>(le24(b, 27) + 1)};
  }
  return corrupt("WebP", "unknown chunk");
}

Result<ImageInfo> probe_bmp(Bytes b) {
  if (b.size() < 26) return corrupt("BMP", "cut short");
  const std::uint32_t dib = le32(b, 14);
  if (dib == 12) return ImageInfo{ImageFormat::kBmp, static_cast<int>(le16(b, 18)), static_cast<int>(le16(b, 20))};
  if (dib < 40 || b.size() < 26) return corrupt("BMP", "unknown DIB header");
  const auto w = static_cast<std::int32_t>(le32(b, 18));
  const auto h = static_cast<std::int32_t>(le32(b, 22));  // negative: rows stored top-down
  if (w <= 0 || h == 0 || h == INT32_MIN) return corrupt("BMP", "bad dimensions");
  return ImageInfo{ImageFormat::kBmp, w, h < 0 ? -h : h};
}

cv::Mat to_bgr8(const cv::Mat& decoded) {
  cv::Mat img = decoded;
  if (img.depth() == CV_16U) img.convertTo(img, CV_8U, 1.0 / 257.0);
  else if (img.depth() != CV_8U) img.convertTo(img, CV_8U);
  cv::Mat out;
  switch (img.channels()) {
    case 1: cv::cvtColor(img, out, cv::COLOR_GRAY2BGR); break;
    case 3: out = img; break;
    case 4: {
      // Transparent pixels carry arbitrary colour; composite on white as a viewer shows them.
      cv::Mat bgr, alpha, white(img.size(), CV_8UC3, cv::Scalar::all(255));
      cv::cvtColor(img, bgr, cv::COLOR_BGRA2BGR);
      cv::extractChannel(img, alpha, 3);
      cv::Mat a3;
      cv::cvtColor(alpha, a3, cv::COLOR_GRAY2BGR);
      cv::Mat af, bf, wf;
      a3.convertTo(af, CV_32F, 1.0 / 255.0);
      bgr.convertTo(bf, CV_32F);
      white.convertTo(wf, CV_32F);
      cv::Mat mixed = bf.mul(af) + wf.mul(cv::Scalar::all(1.0) - af);
      mixed.convertTo(out, CV_8U);
      break;
    }
    default: return {};
  }
  return out.isContinuous() ? out : out.clone();
}

}  // namespace

std::string_view image_format_name(ImageFormat format) noexcept {
  switch (format) {
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kBmp: return "BMP";
  }
  return "unknown";
}

Result<ImageInfo> probe_image(Bytes bytes) {
  if (bytes.empty()) return Error{ErrorCode::kImageEmpty, "the image is empty (0 bytes)"};
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return probe_jpeg(bytes);
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})) return probe_png(bytes);
  if (starts_with(bytes, {'R', 'I', 'F', 'F'}) && starts_with(bytes, {'W', 'E', 'B', 'P'}, 8)) return probe_webp(bytes);
  if (starts_with(bytes, {'B', 'M'})) return probe_bmp(bytes);
  return Error{ErrorCode::kImageUnsupported, "not a JPEG, PNG, WebP or BMP image"};
}

Result<cv::Mat> decode_image(Bytes bytes, const ImageLimits& limits) {
  if (bytes.size() > limits.max_bytes) {
    return Error{ErrorCode::kImageTooLarge, "the image is " + std::to_string(bytes.size()) +
                                                " bytes; the limit is " + std::to_string(limits.max_bytes)};
  }
  auto info = probe_image(bytes);
  if (!info) return info.error();
  const std::int64_t pixels = std::int64_t{info->width} * info->height;
  if (pixels > limits.max_pixels) {
    return Error{ErrorCode::kImageTooLarge,
                 std::string(image_format_name(info->format)) + " of " + std::to_string(info->width) + "x" +
                     std::to_string(info->height) + " pixels exceeds the limit of " +
                     std::to_string(limits.max_pixels) + " pixels"};
  }
  if (std::min(info->width, info->height) < limits.min_side) {
    return Error{ErrorCode::kImageTooSmall, "the image is " + std::to_string(info->width) + "x" +
                                                std::to_string(info->height) + "; each side must be at least " +
                                                std::to_string(limits.min_side) + " pixels"};
  }
  if (info->format == ImageFormat::kJpeg && !jpeg_has_end_marker(bytes)) {
    return Error{ErrorCode::kImageCorrupt, "JPEG is truncated (no end-of-image marker)"};
  }
  // JPEG: IMREAD_COLOR applies the EXIF orientation. The others rarely carry EXIF and
  // need IMREAD_UNCHANGED to keep alpha and 16-bit samples for a correct conversion.
  const int flags = info->format == ImageFormat::kJpeg ? cv::IMREAD_COLOR : cv::IMREAD_UNCHANGED;
  cv::Mat decoded;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<std::uint8_t*>(bytes.data()));
    decoded = cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    return Error{ErrorCode::kImageCorrupt, std::string(image_format_name(info->format)) + " does not decode: " + e.what()};
  }
  if (decoded.empty()) {
    return Error{ErrorCode::kImageCorrupt, std::string(image_format_name(info->format)) + " does not decode"};
  }
  cv::Mat bgr = to_bgr8(decoded);
  if (bgr.empty()) return Error{ErrorCode::kImageUnsupported, "unsupported channel layout"};
  return bgr;
}

Result<std::vector<std::uint8_t>> read_file_bytes(const std::filesystem::path& path, std::size_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Error{ErrorCode::kIoError, "cannot read " + path.string() + ": " + ec.message()};
  if (size > max_bytes) {
    return Error{ErrorCode::kImageTooLarge, path.string() + " is " + std::to_string(size) +
                                                " bytes; the limit is " + std::to_string(max_bytes)};
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorCode::kIoError, "cannot open " + path.string()};
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::size_t>(in.gcount()) != bytes.size()) {
    return Error{ErrorCode::kIoError, "short read from " + path.string()};
  }
  return bytes;
}

Result<cv::Mat> read_image(const std::filesystem::path& path, const ImageLimits& limits) {
  auto bytes = read_file_bytes(path, limits.max_bytes);
  if (!bytes) return bytes.error();
  return decode_image(*bytes, limits);
}

}  // namespace candor
