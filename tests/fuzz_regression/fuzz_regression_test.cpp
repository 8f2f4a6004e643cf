// Fuzz regressions: each saved input is run through the harness of the target that
// found it (fuzz/harness.h), the same code the fuzzer ran. A test passes when the input
// no longer crashes: under ASan (make test-sanitize) that includes memory errors.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "../common/cost.h"
#include "candor/image.h"
#include "harness.h"

namespace candor::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> bytes_of(std::string_view text) { return {text.begin(), text.end()}; }

std::vector<std::uint8_t> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The saved inputs of one target, sorted so that failures name the same file every run.
std::vector<fs::path> regressions(const std::string& target) {
  std::vector<fs::path> files;
  const fs::path dir = fs::path(CANDOR_FUZZ_REGRESSIONS) / target;
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename().string().front() != '.') files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

template <typename Harness>
void replay(const std::string& target, Harness harness) {
  for (const fs::path& file : regressions(target)) {
    SCOPED_TRACE(file.string());
    const auto input = read_all(file);
    (void)harness(Bytes(input));
  }
}

TEST(FuzzRegression, ImageInputs) { replay("fuzz_image", image_input); }

TEST(FuzzRegression, OnnxInputs) { replay("fuzz_onnx", onnx_input); }

// The ONNX harness reaches the runtime: its seed parses and every op is supported; each
// cut of it is refused (none is a whole model).
TEST(FuzzRegression, OnnxSeedParsesAndItsCutsDoNot) {
  const std::vector<std::uint8_t> seed = onnx_seed();
  EXPECT_TRUE(onnx_input(seed).parsed);
  for (std::size_t keep = 0; keep < seed.size(); ++keep) {
    EXPECT_FALSE(onnx_input(Bytes(seed.data(), keep)).parsed) << keep;
  }
}

// The CI check of issue 16: no image input of the seed corpus or the regressions may
// cost more than a set time or memory, neither through the fuzz harness (decoding at
// 256x256 at most, then the whole detect path) nor decoded at the server's own limits
// (where its peak must stay within probe_image's decode_bytes). A decoder or pipeline
// change that makes one input slow or hungry fails here, in `make test` and under ASan.
TEST(FuzzCost, EveryImageSeedAndRegressionStaysWithinItsBudget) {
  constexpr double kHarnessSeconds = 2.0;             // one input through the harness (~0.1 s here)
  constexpr std::int64_t kHarnessPeakBytes = 64 << 20;
  constexpr double kDecodeSeconds = 0.5;               // decode_image alone, at the default limits
  constexpr std::int64_t kDecodeSlackBytes = 4 << 20;  // row buffers and codec state above decode_bytes
  auto inputs = image_seeds();
  for (const fs::path& file : regressions("fuzz_image")) inputs.emplace_back(file.string(), read_all(file));
  ASSERT_GE(inputs.size(), 17u);
  (void)image_input(inputs.front().second);  // loads the networks before anything is measured
  for (const auto& input : inputs) {
    SCOPED_TRACE(input.first);
    const std::vector<std::uint8_t>& bytes = input.second;  // not a structured binding: clang 14 cannot capture one
    const test::Cost harness = test::measure_cost([&] { (void)image_input(bytes); });
    EXPECT_LT(harness.seconds, kHarnessSeconds * test::kSanitizerSlack);
    // Under ASan freed memory waits in quarantine (256 MB) instead of being reused, so the
    // peak of a whole detect path counts every allocation it made: checked without it.
    if (test::kSanitizerSlack == 1.0) {
      EXPECT_LT(harness.peak_bytes, kHarnessPeakBytes);
    }
    auto info = probe_image(bytes);
    Result<cv::Mat> decoded = Error{};
    const test::Cost decode = test::measure_cost([&] { decoded = decode_image(bytes); });
    EXPECT_LT(decode.seconds, kDecodeSeconds * test::kSanitizerSlack);
    const std::int64_t budget = info ? info->decode_bytes : 0;
    EXPECT_LE(decode.peak_bytes, static_cast<std::int64_t>(static_cast<double>(budget) * test::kSanitizerSlack) + kDecodeSlackBytes);
  }
}

// The seeds reach what they were made for: each format decodes, the limits refuse.
TEST(FuzzHarness, ImageSeedsReachTheDecodersAndTheLimits) {
  for (const auto& [name, bytes] : image_seeds()) {
    SCOPED_TRACE(name);
    EXPECT_LE(bytes.size(), 32u << 10);  // fuzz/run.sh's -max_len
    auto r = decode_image(bytes);
    if (name == "repeated_scans.jpg") {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, ErrorCode::kImageTooLarge) << r.error().message;
    } else {
      EXPECT_TRUE(r.ok()) << r.error().message;
    }
  }
}
TEST(FuzzRegression, JsonInputs) { replay("fuzz_json", json_input); }
TEST(FuzzRegression, MultipartInputs) { replay("fuzz_multipart", multipart_input); }
TEST(FuzzRegression, ManifestInputs) { replay("fuzz_manifest", manifest_input); }

// The harnesses must reach the code they fuzz, or a fuzz run proves nothing.
TEST(FuzzHarness, JsonReachesTheRouteHandlers) {
  EXPECT_EQ(json_input(bytes_of("GET /healthz\n")).status, 200);
  EXPECT_EQ(json_input(bytes_of("GET /v1/collections/staff\n")).status, 200);
  EXPECT_EQ(json_input(bytes_of(R"(POST /v1/collections
{"name":"visitors","purpose":"check-in","retention_days":30})")).status, 201);
  EXPECT_EQ(json_input(bytes_of("POST /v1/collections\n{\"name\":")).status, 400);
  EXPECT_EQ(json_input(bytes_of("GET /v1/no such route\n")).status, 404);
}

TEST(FuzzHarness, MultipartIsParsedAndLimited) {
  const std::string form = "POST /v1/collections/staff/search\nBB\n"
                           "--BB\r\nContent-Disposition: form-data; name=\"reason\"\r\n\r\ndoor 3\r\n"
                           "--BB\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n\r\n"
                           "not an image\r\n--BB--\r\n";
  // The form parsed: the reason was found, so the refusal is about the image.
  EXPECT_EQ(multipart_input(bytes_of(form)).status, 400);
  const std::string big = "POST /v1/detect\nBB\n--BB\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n" +
                          std::string(kServerMaxBody, 'x') + "\r\n--BB--\r\n";
  EXPECT_EQ(multipart_input(bytes_of(big)).status, 413);
}

// fuzz_manifest found that nlohmann's get<int>() casts 1e103 to int (undefined behaviour);
// the request bodies read numbers the same way. Out-of-range numbers are now refused.
TEST(FuzzRegression, NumbersThatDoNotFitAreRefusedNotCast) {
  EXPECT_EQ(json_input(bytes_of("POST /v1/collections\n{\"name\":\"big\",\"purpose\":\"p\",\"retention_days\":1e103}"))
                .status,
            400);
  EXPECT_EQ(json_input(bytes_of("POST /v1/keys\n{\"name\":\"big\",\"collections\":[\"*\"],\"operations\":[\"detect\"],"
                                "\"searches_per_minute\":4294967297}"))
                .status,
            400);
  EXPECT_FALSE(manifest_input(bytes_of(R"({"models":[{"id":"d","role":"detector","type":"ultraface","file":"d.onnx",
                                           "input":{"width":128,"height":1e103}}]})"))
                   .parsed);
  EXPECT_FALSE(manifest_input(bytes_of(R"({"models":[{"id":"r","role":"recognizer","type":"embedding","file":"r.onnx",
                                           "input":{"width":112,"height":112,"mean":1e300},"dim":512}]})"))
                   .parsed);
}

TEST(FuzzHarness, ImageAndManifestHarnessesAcceptValidInputs) {
  std::ifstream manifest(fs::path(CANDOR_FUZZ_REGRESSIONS) / "../../config/models.json", std::ios::binary);
  const std::vector<std::uint8_t> text{std::istreambuf_iterator<char>(manifest), std::istreambuf_iterator<char>()};
  EXPECT_TRUE(manifest_input(text).parsed);
  EXPECT_FALSE(manifest_input(bytes_of("{\"models\": [{\"id\": 1}]}")).parsed);
  EXPECT_FALSE(image_input(bytes_of("\x89PNG\r\n\x1a\n")).parsed);
  std::vector<std::uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", cv::Mat(64, 64, CV_8UC3, cv::Scalar(40, 90, 200)), png));
  EXPECT_TRUE(image_input(png).parsed);
}

}  // namespace
}  // namespace candor::fuzz
