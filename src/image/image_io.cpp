// Header probing and guarded decoding. See include/candor/image.h for the contract.
#include <algorithm>
#include <cctype>
#include <set>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
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

bool is_jpeg_frame_header(std::uint8_t marker) {
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

// The bytes libjpeg's whole-image coefficient buffer takes (jdcoefct.c): per component,
// its blocks rounded up to whole MCUs, 64 coefficients of 2 bytes each. A decoder needs
// it only for an image of several scans (progressive, or one scan per component).
// requires: the SOF segment at `at` holds its components (checked by the caller).
std::int64_t jpeg_coefficient_bytes(Bytes b, std::size_t at, int width, int height) {
  const int components = b[at + 9];
  int h_max = 1, v_max = 1;
  auto factor = [](int f) { return std::clamp(f, 1, 4); };  // T.81 B.2.2: 1..4
  for (int c = 0; c < components; ++c) {
    h_max = std::max(h_max, factor(b[at + 11 + 3 * c] >> 4));
    v_max = std::max(v_max, factor(b[at + 11 + 3 * c] & 15));
  }
  auto blocks = [](std::int64_t extent, int f, int f_max) {
    const std::int64_t n = (extent * f + 8 * f_max - 1) / (8 * f_max);
    return (n + f - 1) / f * f;
  };
  std::int64_t total = 0;
  for (int c = 0; c < components; ++c) {
    const int h = factor(b[at + 11 + 3 * c] >> 4), v = factor(b[at + 11 + 3 * c] & 15);
    total += blocks(width, h, h_max) * blocks(height, v, v_max) * 64 * 2;
  }
  return total;
}

// JPEG (ITU T.81 B.1): walks every marker segment to the end-of-image marker, reading
// the frame header and counting the scans. After a start-of-scan header the
// entropy-coded data runs to the next marker: a 0xFF byte there is followed by 0x00
// (a stuffed data byte) or by a marker, so markers are found as libjpeg finds them
// (jdhuff.c, jdmarker.c next_marker), including its skipping of stray bytes between
// segments, and every scan libjpeg would decode is counted.
Result<ImageInfo> probe_jpeg(Bytes b) {
  std::optional<ImageInfo> info;
  std::int64_t coefficients = 0;
  bool exif = false;
  int scans = 0;
  std::size_t at = 2;
  while (at + 2 <= b.size()) {
    if (b[at] != 0xFF) {  // libjpeg skips stray bytes with a warning; before the frame they are corruption
      if (!info) return corrupt("JPEG", "marker expected");
      ++at;
      continue;
    }
    const std::uint8_t marker = b[at + 1];
    if (marker == 0xFF) { ++at; continue; }  // fill byte
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { at += 2; continue; }  // no length
    if (marker == 0xD9) break;  // EOI: libjpeg reads no further
    if (marker == 0xD8) return corrupt("JPEG", "a second start-of-image marker");
    if (marker == 0xDA && !info) break;  // a scan before any frame header
    if (at + 4 > b.size()) break;
    const std::uint32_t length = be16(b, at + 2);
    if (length < 2) return corrupt("JPEG", "segment length < 2");
    if (is_jpeg_frame_header(marker) && !info) {
      if (at + 10 > b.size() || length < 8) return corrupt("JPEG", "frame header cut short");
      const int components = b[at + 9];
      if (components == 0 || length < 8u + 3u * static_cast<std::uint32_t>(components) ||
          at + 11 + 3 * static_cast<std::size_t>(components) > b.size()) {
        return corrupt("JPEG", "frame header cut short");
      }
      info = ImageInfo{ImageFormat::kJpeg, static_cast<int>(be16(b, at + 7)), static_cast<int>(be16(b, at + 5))};
      if (info->width == 0 || info->height == 0) return corrupt("JPEG", "zero width or height");
      coefficients = jpeg_coefficient_bytes(b, at, info->width, info->height);
    } else if (marker == 0xE1 && length >= 8 && starts_with(b, {'E', 'x', 'i', 'f', 0, 0}, at + 4)) {
      exif = true;
    }
    at += 2 + length;
    if (marker != 0xDA) continue;
    ++scans;
    for (; at + 1 < b.size(); ++at) {  // the entropy-coded data, up to the next marker
      if (b[at] != 0xFF) continue;
      std::size_t next = at + 1;
      while (next < b.size() && b[next] == 0xFF) ++next;  // fill bytes
      if (next < b.size() && b[next] != 0x00 && (b[next] < 0xD0 || b[next] > 0xD7)) {
        at = next - 1;
        break;
      }
      at = next;
    }
  }
  if (!info) return corrupt("JPEG", "no frame header");
  const std::int64_t pixels = std::int64_t{info->width} * info->height;
  // OpenCV decodes into the BGR result; an EXIF rotation (loadsave.cpp) makes a copy.
  info->decode_bytes = 3 * pixels * (exif ? 2 : 1) + (scans > 1 ? coefficients : 0);
  info->scans = std::max(scans, 1);
  return *info;
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

// The pixels decoded at `bytes_per_pixel`, plus the 8-bit BGR result unless that is the
// same matrix (8-bit, 3 channels).
std::int64_t decoded_plus_result(std::int64_t pixels, int channels, int bytes_per_sample) {
  const std::int64_t decoded = pixels * channels * bytes_per_sample;
  return channels == 3 && bytes_per_sample == 1 ? decoded : decoded + 3 * pixels;
}

bool png_chunk_is(Bytes b, std::size_t at, std::string_view type) {
  return std::equal(type.begin(), type.end(), b.begin() + static_cast<std::ptrdiff_t>(at + 4));
}

// libpng inflates and keeps every zTXt, iTXt, iCCP and sPLT chunk it reads (up to 8 MB
// each, 1,000 of them: a 7.7 MB file made it allocate 7.6 GB over 128 s), none of which
// changes the pixels OpenCV asks for. Only the chunks that do reach it: the critical
// ones (PNG spec 5.4: an upper-case first letter, unknown ones included, so libpng
// still refuses what it cannot read) and tRNS, up to IEND.
template <typename Visit>
void for_each_png_chunk(Bytes b, Visit visit) {
  for (std::size_t at = 8; at + 8 <= b.size();) {
    const std::size_t end = std::min<std::size_t>(b.size(), at + 12 + std::size_t{be32(b, at)});
    const bool keep = (b[at + 4] & 0x20) == 0 || png_chunk_is(b, at, "tRNS");
    visit(at, end, keep);
    if (png_chunk_is(b, at, "IEND")) break;
    at = end;
  }
}

std::vector<std::uint8_t> png_pixel_chunks(Bytes b) {
  std::vector<std::uint8_t> out(b.begin(), b.begin() + 8);
  for_each_png_chunk(b, [&](std::size_t at, std::size_t end, bool keep) {
    if (keep) out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(end));
  });
  return out;
}

Result<ImageInfo> probe_png(Bytes b) {
  // PNG spec 11.2.2: IHDR is the first chunk; width and height are big-endian at 16 and
  // 20, then bit depth and colour type.
  if (b.size() < 26 || !starts_with(b, {'I', 'H', 'D', 'R'}, 12)) return corrupt("PNG", "IHDR missing");
  const std::uint32_t w = be32(b, 16), h = be32(b, 20);
  if (w == 0 || h == 0 || w > 0x7FFFFFFF || h > 0x7FFFFFFF) return corrupt("PNG", "bad dimensions");
  ImageInfo info{ImageFormat::kPng, static_cast<int>(std::min<std::uint32_t>(w, 1u << 30)),
                 static_cast<int>(std::min<std::uint32_t>(h, 1u << 30))};
  bool transparency = false;
  std::size_t kept = 8;
  for_each_png_chunk(b, [&](std::size_t at, std::size_t end, bool keep) {
    transparency = transparency || png_chunk_is(b, at, "tRNS");
    if (keep) kept += end - at;
  });
  // OpenCV's PNG decoder (grfmt_png.cpp) gives grey 1 channel, colour and palette 3,
  // and 4 when there is alpha (colour types 4 and 6) or a tRNS chunk; 16-bit stays 16.
  const int colour_type = b[25];
  const int channels = colour_type == 4 || colour_type == 6 || transparency ? 4 : (colour_type == 0 ? 1 : 3);
  const std::int64_t pixels = std::int64_t{info.width} * info.height;
  info.decode_bytes = static_cast<std::int64_t>(kept) + decoded_plus_result(pixels, channels, b[24] == 16 ? 2 : 1);
  return info;
}

// WebP container (RFC 9649): RIFF, then one of VP8 (lossy), VP8L (lossless), VP8X (extended).
// Lossy VP8 is decoded row by row into the BGR result. Lossless keeps a whole ARGB plane
// (libwebp vp8l_dec.c, 4 bytes per pixel), and alpha makes OpenCV return BGRA.
Result<ImageInfo> probe_webp(Bytes b) {
  if (b.size() < 30) return corrupt("WebP", "cut short");
  std::optional<ImageInfo> info;
  if (starts_with(b, {'V', 'P', '8', ' '}, 12)) {
    if (!starts_with(b, {0x9D, 0x01, 0x2A}, 23)) return corrupt("WebP", "VP8 start code missing");
    info = ImageInfo{ImageFormat::kWebp, static_cast<int>(le16(b, 26) & 0x3FFF), static_cast<int>(le16(b, 28) & 0x3FFF)};
    info->decode_bytes = 3 * std::int64_t{info->width} * info->height;
    return *info;
  }
  if (starts_with(b, {'V', 'P', '8', 'L'}, 12)) {
    if (b[20] != 0x2F) return corrupt("WebP", "VP8L signature missing");
    const std::uint32_t bits = le32(b, 21);
    info = ImageInfo{ImageFormat::kWebp, static_cast<int>((bits & 0x3FFF) + 1), static_cast<int>(((bits >> 14) & 0x3FFF) + 1)};
  } else if (starts_with(b, {'V', 'P', '8', 'X'}, 12)) {
    info = ImageInfo{ImageFormat::kWebp, static_cast<int>(le24(b, 24) + 1), static_cast<int>(le24(b, 27) + 1)};
  } else {
    return corrupt("WebP", "unknown chunk");
  }
  info->decode_bytes = 4 * std::int64_t{info->width} * info->height +
                       decoded_plus_result(std::int64_t{info->width} * info->height, 4, 1);
  return *info;
}

Result<ImageInfo> probe_bmp(Bytes b) {
  if (b.size() < 30) return corrupt("BMP", "cut short");
  const std::uint32_t dib = le32(b, 14);
  std::optional<ImageInfo> info;
  int bits = 0;
  if (dib == 12) {
    info = ImageInfo{ImageFormat::kBmp, static_cast<int>(le16(b, 18)), static_cast<int>(le16(b, 20))};
    bits = static_cast<int>(le16(b, 24));
  } else {
    if (dib < 40) return corrupt("BMP", "unknown DIB header");
    const auto w = static_cast<std::int32_t>(le32(b, 18));
    const auto h = static_cast<std::int32_t>(le32(b, 22));  // negative: rows stored top-down
    if (w <= 0 || h == 0 || h == INT32_MIN) return corrupt("BMP", "bad dimensions");
    info = ImageInfo{ImageFormat::kBmp, w, h < 0 ? -h : h};
    bits = static_cast<int>(le16(b, 28));
  }
  // OpenCV's BMP decoder (grfmt_bmp.cpp) gives BGRA for 32 bits, grey for a grey
  // palette, BGR otherwise.
  const std::int64_t pixels = std::int64_t{info->width} * info->height;
  info->decode_bytes = bits == 32 ? decoded_plus_result(pixels, 4, 1) : decoded_plus_result(pixels, 1, 1);
  return *info;
}

bool is_pnm_space(std::uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Netpbm PGM and PPM (netpbm.sourceforge.net/doc/pgm.html, ppm.html): "P2" or "P5" grey,
// "P3" or "P6" colour, then width, height and maxval in ASCII decimal separated by
// whitespace, where '#' starts a comment running to the end of its line. A maxval above
// 255 means 16-bit samples, which OpenCV's PxM decoder keeps.
Result<ImageInfo> probe_pnm(Bytes b) {
  std::int64_t values[3] = {0, 0, 0};  // width, height, maxval
  std::size_t at = 2;
  for (std::int64_t& value : values) {
    while (at < b.size() && (is_pnm_space(b[at]) || b[at] == '#')) {
      if (b[at] == '#') {
        while (at < b.size() && b[at] != '\n' && b[at] != '\r') ++at;
      } else {
        ++at;
      }
    }
    if (at == b.size() || b[at] < '0' || b[at] > '9') return corrupt("PGM/PPM", "width, height and maxval expected");
    for (; at < b.size() && b[at] >= '0' && b[at] <= '9'; ++at) {
      value = value * 10 + (b[at] - '0');
      if (value > (1 << 30)) return corrupt("PGM/PPM", "a number is too large");
    }
  }
  if (values[0] == 0 || values[1] == 0) return corrupt("PGM/PPM", "zero width or height");
  if (values[2] == 0 || values[2] > 65535) return corrupt("PGM/PPM", "maxval is not in 1..65535");
  ImageInfo info{ImageFormat::kPnm, static_cast<int>(values[0]), static_cast<int>(values[1])};
  const bool grey = b[1] == '2' || b[1] == '5';
  info.decode_bytes = decoded_plus_result(values[0] * values[1], grey ? 1 : 3, values[2] > 255 ? 2 : 1);
  return info;
}

// Converts one row of decoded samples (grey, BGR or BGRA at 8 or 16 bits) to 8-bit BGR.
// Transparent pixels carry arbitrary colour, so alpha is composited on white as a viewer
// shows them, in integers at the samples' own depth: c' = (c * a + max * (max - a)) / max.
// 16-bit values become 8-bit ones by v / 257 rounded (65535 = 255 * 257).
template <typename T>
void row_to_bgr8(const T* in, int channels, int width, std::uint8_t* out) {
  constexpr std::uint64_t kMax = std::numeric_limits<T>::max();
  auto to8 = [](std::uint64_t v) { return static_cast<std::uint8_t>(kMax == 255 ? v : (v + 128) / 257); };
  for (int x = 0; x < width; ++x, in += channels, out += 3) {
    if (channels == 1) {
      out[0] = out[1] = out[2] = to8(in[0]);
    } else if (channels == 3) {
      for (int c = 0; c < 3; ++c) out[c] = to8(in[c]);
    } else {
      const std::uint64_t a = in[3];
      for (int c = 0; c < 3; ++c) out[c] = to8((in[c] * a + kMax * (kMax - a) + kMax / 2) / kMax);
    }
  }
}

// The decoded image as continuous 8-bit BGR, written row by row into one new matrix:
// at no time is more allocated than the decoded image and the result (no float or
// per-channel temporaries). Empty for a layout no accepted format produces.
cv::Mat to_bgr8(const cv::Mat& decoded) {
  if (decoded.type() == CV_8UC3) return decoded.isContinuous() ? decoded : decoded.clone();
  const int channels = decoded.channels();
  if ((decoded.depth() != CV_8U && decoded.depth() != CV_16U) || (channels != 1 && channels != 3 && channels != 4)) {
    return {};
  }
  cv::Mat out(decoded.size(), CV_8UC3);
  for (int y = 0; y < decoded.rows; ++y) {
    if (decoded.depth() == CV_8U) {
      row_to_bgr8(decoded.ptr<std::uint8_t>(y), channels, decoded.cols, out.ptr<std::uint8_t>(y));
    } else {
      row_to_bgr8(decoded.ptr<std::uint16_t>(y), channels, decoded.cols, out.ptr<std::uint8_t>(y));
    }
  }
  return out;
}

}  // namespace

std::string_view image_format_name(ImageFormat format) noexcept {
  switch (format) {
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kBmp: return "BMP";
    case ImageFormat::kPnm: return "PGM/PPM";
  }
  return "unknown";
}

Result<ImageInfo> probe_image(Bytes bytes) {
  if (bytes.empty()) return Error{ErrorCode::kImageEmpty, "the image is empty (0 bytes)"};
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return probe_jpeg(bytes);
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})) return probe_png(bytes);
  if (starts_with(bytes, {'R', 'I', 'F', 'F'}) && starts_with(bytes, {'W', 'E', 'B', 'P'}, 8)) return probe_webp(bytes);
  if (starts_with(bytes, {'B', 'M'})) return probe_bmp(bytes);
  if (bytes.size() >= 3 && bytes[0] == 'P' && std::string_view("2356").find(static_cast<char>(bytes[1])) != std::string_view::npos &&
      is_pnm_space(bytes[2])) {
    return probe_pnm(bytes);
  }
  return Error{ErrorCode::kImageUnsupported, "not a JPEG, PNG, WebP, BMP, PGM or PPM image"};
}

namespace {
Result<cv::Mat> decode_scaled(Bytes bytes, const ImageLimits& limits, int reduction);
}  // namespace

Result<cv::Mat> decode_image(Bytes bytes, const ImageLimits& limits) { return decode_scaled(bytes, limits, 1); }

Result<cv::Mat> decode_image_reduced(Bytes bytes, const ImageLimits& limits, int reduction) {
  if (reduction != 1 && reduction != 2 && reduction != 4 && reduction != 8) {
    throw std::invalid_argument("decode_image_reduced: reduction must be 1, 2, 4 or 8");
  }
  return decode_scaled(bytes, limits, reduction);
}

namespace {
Result<cv::Mat> decode_scaled(Bytes bytes, const ImageLimits& limits, int reduction) {
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
  const std::string name(image_format_name(info->format));
  if (info->decode_bytes > limits.max_decode_bytes) {
    constexpr std::int64_t kMiB = 1 << 20;
    return Error{ErrorCode::kImageTooLarge,
                 name + " of " + std::to_string(info->width) + "x" + std::to_string(info->height) + " would need " +
                     std::to_string((info->decode_bytes + kMiB - 1) / kMiB) + " MiB to decode; the limit is " +
                     std::to_string(limits.max_decode_bytes / kMiB) + " MiB"};
  }
  if (info->scans > limits.max_scans) {
    return Error{ErrorCode::kImageTooLarge, "JPEG has " + std::to_string(info->scans) + " scans; the limit is " +
                                                std::to_string(limits.max_scans)};
  }
  if (info->format == ImageFormat::kJpeg && !jpeg_has_end_marker(bytes)) {
    return Error{ErrorCode::kImageCorrupt, "JPEG is truncated (no end-of-image marker)"};
  }
  std::vector<std::uint8_t> pixel_chunks;  // PNG: what libpng may read (png_pixel_chunks)
  if (info->format == ImageFormat::kPng) {
    pixel_chunks = png_pixel_chunks(bytes);
    bytes = pixel_chunks;
  }
  // JPEG: IMREAD_COLOR applies the EXIF orientation. The others rarely carry EXIF and
  // need IMREAD_UNCHANGED to keep alpha and 16-bit samples for a correct conversion.
  const bool jpeg = info->format == ImageFormat::kJpeg;
  const int reduced_jpeg = reduction == 2 ? cv::IMREAD_REDUCED_COLOR_2
                           : reduction == 4 ? cv::IMREAD_REDUCED_COLOR_4
                           : reduction == 8 ? cv::IMREAD_REDUCED_COLOR_8
                                            : cv::IMREAD_COLOR;
  const int flags = jpeg ? reduced_jpeg : cv::IMREAD_UNCHANGED;
  cv::Mat decoded;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<std::uint8_t*>(bytes.data()));
    decoded = cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    return Error{ErrorCode::kImageCorrupt, name + " does not decode: " + e.what()};
  }
  if (decoded.empty()) return Error{ErrorCode::kImageCorrupt, name + " does not decode"};
  cv::Mat bgr = to_bgr8(decoded);
  if (bgr.empty()) return Error{ErrorCode::kImageUnsupported, "unsupported channel layout"};
  if (!jpeg && reduction > 1) {
    cv::Mat small;
    cv::resize(bgr, small, cv::Size((bgr.cols + reduction - 1) / reduction, (bgr.rows + reduction - 1) / reduction), 0, 0,
               cv::INTER_AREA);
    return small;
  }
  return bgr;
}
}  // namespace

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

std::vector<std::filesystem::path> image_files(const std::filesystem::path& dir, bool recursive) {
  static const std::set<std::string> kExtensions = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".ppm"};
  std::vector<std::filesystem::path> files;
  auto keep = [&](const std::filesystem::directory_entry& e) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (e.is_regular_file() && kExtensions.count(ext) != 0) files.push_back(e.path());
  };
  if (recursive) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) keep(e);
  } else {
    for (const auto& e : std::filesystem::directory_iterator(dir)) keep(e);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace candor
