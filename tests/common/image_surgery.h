// Byte surgery on encoded images, to build the hostile inputs of issue 16 from what
// OpenCV writes: a JPEG whose last scan repeats, PNG chunks spliced in. Shared by the
// engine and server tests and the fuzz seeds (fuzz/harness_image.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace candor::test {

using Bytes8 = std::vector<std::uint8_t>;

// The JPEG with its last scan repeated `extra` times before the end-of-image marker:
// each copy makes libjpeg walk every block of the image again. Entropy-coded data
// stuffs 0xFF as FF 00, so the last FF DA is the last start-of-scan marker.
// requires: jpeg ends with its end-of-image marker (as OpenCV writes it).
inline Bytes8 with_last_scan_repeated(const Bytes8& jpeg, int extra) {
  std::size_t last = 0;
  for (std::size_t i = 0; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA) last = i;
  }
  const auto scan = jpeg.begin() + static_cast<std::ptrdiff_t>(last), eoi = jpeg.end() - 2;
  Bytes8 out(jpeg.begin(), eoi);
  out.reserve(jpeg.size() + static_cast<std::size_t>(extra) * static_cast<std::size_t>(eoi - scan));
  for (int i = 0; i < extra; ++i) out.insert(out.end(), scan, eoi);
  out.push_back(0xFF);
  out.push_back(0xD9);
  return out;
}

inline std::size_t png_be32(const Bytes8& b, std::size_t at) {
  return (std::size_t{b[at]} << 24) | (std::size_t{b[at + 1]} << 16) | (std::size_t{b[at + 2]} << 8) | b[at + 3];
}

// A PNG chunk (PNG spec 5.3): length, type, data, and the CRC-32 of type and data
// (the spec's Annex D algorithm, bit by bit).
inline Bytes8 png_chunk(const std::string& type, const Bytes8& data) {
  Bytes8 c(12 + data.size());
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) c[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  };
  put32(0, static_cast<std::uint32_t>(data.size()));
  for (std::size_t i = 0; i < 4; ++i) c[4 + i] = static_cast<std::uint8_t>(type[i]);
  for (std::size_t i = 0; i < data.size(); ++i) c[8 + i] = data[i];
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 4; i < 8 + data.size(); ++i) {
    crc ^= c[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  put32(8 + data.size(), ~crc);
  return c;
}

// The zlib stream of a PNG's pixels: its IDAT chunks' data, joined.
inline Bytes8 png_idat_stream(const Bytes8& png) {
  Bytes8 out;
  for (std::size_t at = 8; at + 8 <= png.size(); at += 12 + png_be32(png, at)) {
    if (png[at + 4] == 'I' && png[at + 5] == 'D' && png[at + 6] == 'A' && png[at + 7] == 'T') {
      out.insert(out.end(), png.begin() + static_cast<std::ptrdiff_t>(at + 8),
                 png.begin() + static_cast<std::ptrdiff_t>(at + 8 + png_be32(png, at)));
    }
  }
  return out;
}

// `chunks` spliced in right after IHDR (8 bytes of signature, 25 of IHDR).
inline Bytes8 with_chunks_after_ihdr(Bytes8 png, const Bytes8& chunks) {
  png.insert(png.begin() + 33, chunks.begin(), chunks.end());
  return png;
}

// A zTXt chunk (PNG spec 11.3.4.4: keyword, NUL, compression method 0, zlib data)
// holding `zlib_stream`, which libpng would inflate and keep.
inline Bytes8 png_ztxt_chunk(const Bytes8& zlib_stream) {
  Bytes8 data = {'C', 'o', 'm', 'm', 'e', 'n', 't', 0, 0};
  data.insert(data.end(), zlib_stream.begin(), zlib_stream.end());
  return png_chunk("zTXt", data);
}

}  // namespace candor::test
