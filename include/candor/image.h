// Candor: reading images safely.
//
// Every image Candor sees may be hostile: a truncated upload, random bytes, a
// 30000x30000 header on a 100-byte file, a PNG that inflates to gigabytes. The
// header is parsed by Candor itself (probe_image) and checked against the limits
// before the decoder allocates anything; only then does OpenCV decode it.
//
// What one decode may cost is bounded by construction, for every format:
//  - memory: probe_image works out from the header what decoding will allocate
//    (ImageInfo::decode_bytes: the decoder's own whole-image buffers plus the BGR
//    result; the conversion to BGR runs row by row in integers, without temporaries)
//    and decode_image refuses an image over ImageLimits::max_decode_bytes;
//  - time: each decoder's work is linear in the pixels and the bytes it reads, except
//    JPEG, whose every scan walks all blocks of its components again (a repeated scan
//    of 65 bytes costs 27-65 ms at 40 MP), so the scans are counted and limited
//    (ImageLimits::max_scans); and PNG, whose ancillary chunks libpng inflates and
//    keeps (1,000 zTXt chunks of 7.7 KB each inflate to 7.6 GB in 128 s), so only
//    the chunks that carry pixels (IHDR, PLTE, tRNS, IDAT, IEND and any unknown
//    critical chunk) reach the decoder.
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
  std::int64_t max_pixels = 40'000'000;         // 40 MP: a 7300x5470 sensor; memory is bounded below
  // What one decode may allocate (ImageInfo::decode_bytes). 384 MiB lets every 8-bit
  // image of 40 MP through (a progressive 4:2:0 JPEG with an EXIF rotation needs 9
  // bytes per pixel, 360 MB), and with the input itself (<= max_bytes) keeps a decode
  // under 400 MiB; a 16-bit RGBA PNG (11 bytes per pixel) is refused above 36 MP.
  std::int64_t max_decode_bytes = 384ll << 20;
  // JPEG scans (start-of-scan markers before the end of image). Real encoders write 1
  // (baseline), 3 (non-interleaved), 6 (libjpeg's progressive grey), 10 (its progressive
  // colour) or 24 (progressive CMYK). At 7300x5470 on the 2-core machine, 10 scans
  // decode in 0.74 s, 32 in 2.2 s, 610 in 56 s (README "Decoding and detection limits").
  int max_scans = 32;
  int min_side = 16;                             // below this no face can be found
};

// Netpbm's PGM (grey) and PPM (colour), binary (P5, P6) or ASCII (P2, P3), are kPnm.
enum class ImageFormat { kJpeg, kPng, kWebp, kBmp, kPnm };
std::string_view image_format_name(ImageFormat format) noexcept;

struct ImageInfo {
  ImageFormat format;
  int width = 0;   // as stored, before EXIF orientation is applied
  int height = 0;
  // An upper bound on the bytes decode_image allocates at once for this image: the
  // decoder's whole-image buffers (JPEG: the coefficients of a multi-scan image and the
  // copy an EXIF rotation makes; WebP lossless: its ARGB plane), its output at the
  // header's bit depth and channels, and the 8-bit BGR result when that is another
  // matrix. Row buffers and tables (a few rows) are not counted.
  std::int64_t decode_bytes = 0;
  int scans = 1;   // JPEG: start-of-scan markers before the end of image; 1 otherwise
};

// Reads the format, the dimensions and the cost of decoding from the header without
// decoding pixels (JPEG: walks the marker segments and scans; PNG: the chunk list).
// Linear in bytes.size(); allocates nothing in proportion to it.
// ensures: an error is kImageEmpty, kImageUnsupported (unknown magic) or
//          kImageCorrupt (a known format whose header is cut short or inconsistent).
Result<ImageInfo> probe_image(std::span<const std::uint8_t> bytes);

// Decodes an encoded image to 8-bit BGR (CV_8UC3), the layout every stage expects.
// EXIF orientation is applied; grayscale is expanded; alpha is composited on white;
// 16-bit samples are scaled to 8 bits.
// ensures: on success, the result is CV_8UC3, continuous, within `limits`; the
//          decode allocated at most probe_image's decode_bytes <= limits.max_decode_bytes
//          (plus row buffers) and its time is linear in the pixels times the scans.
//          Errors: kImageEmpty, kImageUnsupported, kImageCorrupt, kImageTooLarge
//          (bytes, pixels, decode bytes or JPEG scans over the limit: checked before
//          decoding), kImageTooSmall.
Result<cv::Mat> decode_image(std::span<const std::uint8_t> bytes, const ImageLimits& limits = {});

// decode_image at 1/reduction of each side (reduction 1, 2, 4 or 8), for a detector that
// need not see every pixel: a JPEG goes through libjpeg's scaled decoding (OpenCV's
// IMREAD_REDUCED_COLOR_<reduction>, sides rounded up), which skips most of the inverse
// DCT's work; other formats decode whole and are shrunk (INTER_AREA). The limits are
// checked as decode_image checks them (on the full image: they bound the input).
// requires: reduction in {1, 2, 4, 8} (else std::invalid_argument).
// ensures: as decode_image, the result ceil(width / reduction) x ceil(height / reduction).
Result<cv::Mat> decode_image_reduced(std::span<const std::uint8_t> bytes, const ImageLimits& limits, int reduction);

// Reads a file (at most limits.max_bytes + 1 bytes are read) and decodes it.
// ensures: in addition to decode_image's errors, kIoError when the file cannot be read.
Result<cv::Mat> read_image(const std::filesystem::path& path, const ImageLimits& limits = {});

// The image files in `dir` (and, when recursive, its sub-folders), by extension: every
// format read_image decodes (JPEG, PNG, WebP, BMP, PGM, PPM); sorted by path.
// Throws std::filesystem::filesystem_error when `dir` cannot be listed.
std::vector<std::filesystem::path> image_files(const std::filesystem::path& dir, bool recursive);

// Reads a whole file, refusing one larger than max_bytes (kImageTooLarge) without reading it all.
Result<std::vector<std::uint8_t>> read_file_bytes(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace candor
