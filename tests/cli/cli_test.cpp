// The `candor` binary on bad input: a clear error naming the reason, exit status 1,
// never a crash. Runs the real binary built next to the tests.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "../common/run_command.h"

namespace {

using candor::test::CommandRun;
using candor::test::run_command;

CommandRun run(const std::string& args) { return run_command(std::string(CANDOR_BINARY) + " " + args); }

class CliBadInput : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& name, const std::string& bytes) {
    const auto p = dir_ / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("candor-cli-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(CliBadInput, EachBadImageIsAClearErrorNotACrash) {
  std::vector<std::uint8_t> jpeg;
  cv::imencode(".jpg", cv::Mat(200, 200, CV_8UC3, cv::Scalar(10, 200, 30)), jpeg);
  std::mt19937 rng(3);
  std::string noise(5000, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());
  noise[0] = 'x';
  const std::vector<std::pair<std::filesystem::path, std::string>> cases = {
      {write("empty.jpg", ""), "image_empty"},
      {write("truncated.jpg", std::string(jpeg.begin(), jpeg.begin() + 300)), "image_corrupt"},
      {write("noise.bin", noise), "image_unsupported"},
      {dir_ / "missing.jpg", "io_error"},
  };
  for (const auto& [path, code] : cases) {
    const CommandRun r = run("detect " + path.string());
    EXPECT_EQ(r.status, 1) << path << ": " << r.output;
    EXPECT_NE(r.output.find(code), std::string::npos) << path << ": " << r.output;
    EXPECT_NE(r.output.find(path.filename().string()), std::string::npos) << "the message names the file";
  }
}

TEST_F(CliBadInput, CompareWithoutAFaceSaysSo) {
  std::vector<std::uint8_t> png;
  cv::imencode(".png", cv::Mat(300, 300, CV_8UC3, cv::Scalar::all(128)), png);
  const auto blank = write("blank.png", std::string(png.begin(), png.end()));
  const CommandRun r = run("compare " + blank.string() + " " + blank.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("no_face"), std::string::npos) << r.output;
}

TEST_F(CliBadInput, UnknownSubcommandIsAUsageError) {
  const CommandRun r = run("frobnicate");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.status, 1) << "usage errors are not expected-failure exits";
}

TEST(Cli, DetectPrintsJsonForEveryFace) {
  const auto sample = std::filesystem::path(CANDOR_TESTDATA_DIR) / "face-api/sample4.jpg";
  if (!std::filesystem::exists(sample)) GTEST_SKIP() << "run `make setup`";
  const CommandRun r = run("detect --json " + sample.string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::size_t boxes = 0;
  for (std::size_t at = 0; (at = r.output.find("\"box\"", at)) != std::string::npos; ++at) ++boxes;
  EXPECT_EQ(boxes, 4u);
}

}  // namespace
