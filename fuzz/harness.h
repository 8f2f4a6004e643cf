// Candor's fuzz harnesses: what one fuzz input does, for each target.
//
// The libFuzzer entry points (fuzz_*.cpp, built only with CANDOR_FUZZ) are thin wrappers
// around these functions, so that the regression test (tests/fuzz_regression) can replay
// saved inputs through exactly the same code in the ordinary build and under ASan.
//
// Each harness loads what it needs (models, a server on a scratch store) on first use and
// keeps it for the life of the process; the init_* functions let LLVMFuzzerInitialize pay
// that cost before the clock starts.
//
// Input formats (the seed generator fuzz/make_seeds.cpp writes valid ones):
//   image      the bytes of an encoded image
//   json       "<METHOD> <target>\n<body>", sent with Content-Type: application/json
//   multipart  "<METHOD> <target>\n<boundary>\n<body>", sent as multipart/form-data
//   manifest   the bytes of a model manifest (config/models.json's format)
//   onnx       the bytes of an ONNX model (src/infer/onnx_model.h)
//
// Thread safety: none; one fuzz input at a time (libFuzzer's model).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace candor::fuzz {

using Bytes = std::span<const std::uint8_t>;

// What a harness reached with one input, for tests that check it goes where it should.
struct Outcome {
  bool parsed = false;  // image: decoded; manifest: loaded; server: a handler answered 2xx
  int status = 0;       // server targets: the HTTP status (0 when httplib wrote no response)
};

void init_image();
Outcome image_input(Bytes data);

void init_server();
Outcome json_input(Bytes data);
Outcome multipart_input(Bytes data);

Outcome manifest_input(Bytes data);

// parsed: the bytes are an ONNX model the oneDNN runtime accepts (every op supported).
Outcome onnx_input(Bytes data);
// A valid ONNX model of 100-odd bytes (Conv then Relu), the fuzz_onnx seed.
std::vector<std::uint8_t> onnx_seed();

// The image seeds, as (file name, bytes): tiny images in every format and layout
// decode_image accepts (JPEG baseline, progressive and EXIF-rotated; PNG 8-bit, grey,
// alpha, 16-bit and 16-bit RGBA; BMP; WebP lossy and lossless; PGM and PPM, binary,
// ASCII and 16-bit) and inputs that reach each cost limit of README "Decoding and
// detection limits" (a progressive JPEG with its last scan repeated past max_scans, a
// PNG with compressed text chunks). fuzz_make_seeds writes them; tests/fuzz_regression
// replays them under a time and memory budget. Throws when OpenCV cannot encode.
std::vector<std::pair<std::string, std::vector<std::uint8_t>>> image_seeds();

// The limits the image harness decodes with: small images keep each iteration fast,
// and anything over them is refused before decoding (which is itself under test).
inline constexpr std::size_t kImageMaxBytes = 64 * 1024;
inline constexpr std::int64_t kImageMaxPixels = 256 * 256;
// The request body limit of the fuzzed server (ServerOptions::max_body_bytes), below
// the multipart and JSON targets' -max_len so that the 413 path is reached too.
inline constexpr std::size_t kServerMaxBody = 24 * 1024;

}  // namespace candor::fuzz
