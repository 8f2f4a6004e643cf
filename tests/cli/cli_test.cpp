// The `candor` binary on bad input: a clear error naming the reason, exit status 1,
// never a crash. Runs the real binary built next to the tests.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "../common/run_command.h"
#include "candor/platform.h"

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

std::filesystem::path sample(int n) {
  return std::filesystem::path(CANDOR_TESTDATA_DIR) / ("face-api/sample" + std::to_string(n) + ".jpg");
}

// Exactly what a 4-decimal rounding gives: no float expansion such as 0.41280001401901245.
bool printed_to_4_decimals(double v) { return std::round(v * 10000.0) / 10000.0 == v; }

std::vector<nlohmann::json> json_lines(const std::filesystem::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A fresh folder per test, removed afterwards; commands run with it as working directory
// and without the CANDOR_STORE / CANDOR_KEY of the caller's environment.
class CliInFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(sample(4))) GTEST_SKIP() << "run `make setup`";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = std::filesystem::temp_directory_path() /
            ("candor-cli-" + std::to_string(::getpid()) + "-" + info->name());
    std::filesystem::remove_all(root_);
    work_ = root_ / "work";
    inputs_ = root_ / "inputs";
    std::filesystem::create_directories(work_);
    std::filesystem::create_directories(inputs_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  CommandRun run_here(const std::string& args) const {
    // Braces: run_command's 2>&1 then applies to the group, so `args` may send stdout to a file.
    return run_command("{ cd " + work_.string() + " && env -u CANDOR_STORE -u CANDOR_KEY " + CANDOR_BINARY + " " +
                       args + "; }");
  }
  std::vector<std::string> work_entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(work_)) names.push_back(e.path().filename().string());
    return names;
  }
  std::filesystem::path root_, work_, inputs_;
};

TEST_F(CliInFolder, CommandsOnAStoreThatDoesNotExistCreateNothing) {
  const auto evidence = inputs_ / "form.pdf";
  std::ofstream(evidence) << "signed";
  const std::string probe = sample(4).string();
  const std::vector<std::string> commands = {
      "search --collection x " + probe + " --reason r",
      "enroll --collection x --subject s " + probe,
      "collection list",
      "collection show x",
      "collection delete x --reason r",
      "consent grant --collection x --subject s --evidence " + evidence.string() + " --collected-by me",
      "consent revoke --collection x --subject s",
      "consent list --collection x",
      "subject export s",
      "subject erase s",
      "retention run",
      "audit verify",
      "audit list",
      "key list",
      "key delete k",
  };
  for (const std::string& c : commands) {
    for (const std::string& store : {std::string(), " --store " + (work_ / "elsewhere.db").string()}) {
      const CommandRun r = run_here(c + store);
      EXPECT_EQ(r.status, 1) << c << store << ": " << r.output;
      EXPECT_NE(r.output.find("not_found"), std::string::npos) << c << store << ": " << r.output;
      EXPECT_EQ(work_entries(), std::vector<std::string>{}) << c << store << " left files behind";
      std::filesystem::remove_all(work_);
      std::filesystem::create_directories(work_);
    }
  }
}

TEST_F(CliInFolder, CollectionCreateMakesTheStoreAndPrintsItsThresholdTo4Decimals) {
  const CommandRun created = run_here("collection create doors --purpose 'door access'");
  ASSERT_EQ(created.status, 0) << created.output;
  EXPECT_TRUE(std::filesystem::exists(work_ / "candor.db"));
  EXPECT_TRUE(std::filesystem::exists(work_ / "candor.db.key"));
  const CommandRun listed = run_here("collection list");
  ASSERT_EQ(listed.status, 0) << listed.output;
  const auto list = nlohmann::json::parse(listed.output);
  ASSERT_EQ(list.size(), 1u) << listed.output;
  EXPECT_TRUE(printed_to_4_decimals(list[0]["match_threshold"].get<double>())) << listed.output;
}

// Issue 17 (#4): the CLI refuses a consent for another purpose, naming both (the store's
// check), records the collection's purpose by default, and warns of a reused evidence file.
TEST_F(CliInFolder, ConsentForAnotherPurposeIsRefusedAndReusedEvidenceWarns) {
  ASSERT_EQ(run_here("collection create doors --purpose 'door access'").status, 0);
  const auto evidence = inputs_ / "form.pdf";
  std::ofstream(evidence) << "signed";
  const std::string grant = "consent grant --collection doors --evidence " + evidence.string() + " --collected-by me";
  const CommandRun wrong = run_here(grant + " --subject ana --purpose 'Marketing analytics'");
  EXPECT_EQ(wrong.status, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("Marketing analytics"), std::string::npos) << wrong.output;
  EXPECT_NE(wrong.output.find("door access"), std::string::npos) << wrong.output;
  const CommandRun ok = run_here(grant + " --subject ana");
  ASSERT_EQ(ok.status, 0) << ok.output;
  EXPECT_EQ(ok.output.find("warning"), std::string::npos) << ok.output;
  const CommandRun reused = run_here(grant + " --subject ben");
  ASSERT_EQ(reused.status, 0) << reused.output;
  EXPECT_NE(reused.output.find("warning: the same evidence file"), std::string::npos) << reused.output;
}

TEST_F(CliInFolder, CompareThresholdIsPrintedTo4Decimals) {
  const CommandRun r = run_here("compare --json " + sample(4).string() + " " + sample(4).string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_TRUE(printed_to_4_decimals(j["operating_point"]["threshold"].get<double>())) << r.output;
  EXPECT_TRUE(printed_to_4_decimals(j["similarity"].get<double>())) << r.output;
  EXPECT_EQ(j["faces_in_image"]["a"], 4) << r.output;
}

TEST_F(CliInFolder, DetectJsonIsAnArrayForOneImageAsForSeveral) {
  const CommandRun one = run_here("detect --json --no-quality " + sample(4).string());
  ASSERT_EQ(one.status, 0) << one.output;
  const auto j1 = nlohmann::json::parse(one.output);
  ASSERT_TRUE(j1.is_array()) << one.output;
  ASSERT_EQ(j1.size(), 1u);
  EXPECT_EQ(j1[0]["faces"].size(), 4u);
  EXPECT_FALSE(j1[0]["faces"][0].contains("quality")) << "--no-quality";
  const CommandRun two = run_here("detect --json --no-quality " + sample(4).string() + " " + sample(1).string());
  ASSERT_EQ(two.status, 0) << two.output;
  const auto j2 = nlohmann::json::parse(two.output);
  ASSERT_TRUE(j2.is_array());
  EXPECT_EQ(j2.size(), 2u);
  EXPECT_EQ(j2[0], j1[0]);
}

TEST_F(CliInFolder, DetectGivesThe68LandmarksOnRequest) {
  const CommandRun plain = run_here("detect --json --no-quality " + sample(4).string());
  ASSERT_EQ(plain.status, 0) << plain.output;
  EXPECT_FALSE(nlohmann::json::parse(plain.output)[0]["faces"][0].contains("landmarks68"));
  const CommandRun r = run_here("detect --json --no-quality --landmarks 68 --draw drawn.png " + sample(4).string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto faces = nlohmann::json::parse(r.output)[0]["faces"];
  ASSERT_EQ(faces.size(), 4u);
  for (const auto& f : faces) {
    ASSERT_EQ(f["landmarks68"].size(), 68u) << f.dump();
    EXPECT_TRUE(f.contains("landmarks")) << "the 5 points stay";
  }
  EXPECT_TRUE(std::filesystem::exists(work_ / "drawn.png"));
  const CommandRun bad = run_here("detect --landmarks 7 " + sample(4).string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.status, 1) << "a usage error: " << bad.output;
}

TEST_F(CliInFolder, HelpNamesTheRealDefaults) {
  const CommandRun top = run_here("--help");
  ASSERT_EQ(top.status, 0) << top.output;
  EXPECT_EQ(top.output.find("./models"), std::string::npos) << "models are not looked for in the working folder";
  EXPECT_NE(top.output.find("CANDOR_MODEL_DIR"), std::string::npos) << top.output;
  const CommandRun detect = run_here("detect --help");
  ASSERT_EQ(detect.status, 0) << detect.output;
  EXPECT_NE(detect.output.find("--no-quality"), std::string::npos) << detect.output;
  EXPECT_EQ(detect.output.find("{false}"), std::string::npos) << detect.output;
}

TEST_F(CliInFolder, EmbedAFolderGivesJsonLinesInOrderLikeOneByOne) {
  const auto folder = inputs_ / "photos";
  std::filesystem::create_directories(folder / "sub");
  std::filesystem::copy_file(sample(4), folder / "a.jpg");
  std::filesystem::copy_file(sample(1), folder / "sub" / "c.jpg");
  std::vector<std::uint8_t> png;
  cv::imencode(".png", cv::Mat(120, 120, CV_8UC3, cv::Scalar::all(128)), png);
  std::ofstream(folder / "b.png", std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                                        static_cast<std::streamsize>(png.size()));
  std::ofstream(folder / "notes.txt") << "not an image";

  const CommandRun r = run_here("embed --workers 2 " + folder.string() + " > out.jsonl");
  ASSERT_NE(r.status, 0) << "the blank image has no face: " << r.output;
  const auto lines = json_lines(work_ / "out.jsonl");
  ASSERT_EQ(lines.size(), 3u) << r.output;
  EXPECT_EQ(lines[0]["image"], (folder / "a.jpg").string());
  EXPECT_EQ(lines[0]["faces_in_image"], 4);
  EXPECT_EQ(lines[1]["image"], (folder / "b.png").string());
  EXPECT_EQ(lines[1]["error"]["code"], "no_face");
  EXPECT_EQ(lines[2]["image"], (folder / "sub" / "c.jpg").string());
  EXPECT_NE(r.output.find("images/s"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\r'), std::string::npos) << "no progress bar when stderr is not a terminal";

  // The same template as the one-image form gives.
  const CommandRun single = run_here("embed " + (folder / "a.jpg").string() + " > one.jsonl");
  ASSERT_EQ(single.status, 0) << single.output;
  const auto one = json_lines(work_ / "one.jsonl");
  ASSERT_EQ(one.size(), 1u);
  const auto a = lines[0]["embedding"].get<std::vector<float>>();
  const auto b = one[0]["embedding"].get<std::vector<float>>();
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  double dot = 0;
  for (std::size_t i = 0; i < a.size(); ++i) dot += static_cast<double>(a[i]) * b[i];
  EXPECT_NEAR(dot, 1.0, 1e-4);

  const CommandRun raw = run_here("embed --format raw " + folder.string());
  EXPECT_EQ(raw.status, 1);
  EXPECT_NE(raw.output.find("invalid_argument"), std::string::npos) << raw.output;
}

TEST_F(CliInFolder, EmbedDrawsItsProgressBarOnlyOnATerminal) {
  if (run_command("command -v script").status != 0) GTEST_SKIP() << "no `script` (util-linux) to give a terminal";
  std::filesystem::copy_file(sample(4), inputs_ / "a.jpg");
  std::filesystem::copy_file(sample(1), inputs_ / "b.jpg");
  const std::string embed = "embed " + inputs_.string() + " > out.jsonl";
  // `script` runs the command on a pseudo-terminal: stderr is a TTY there.
  const CommandRun tty = run_command("cd " + work_.string() + " && script -qec '" + CANDOR_BINARY + " " + embed +
                                     "' /dev/null");
  EXPECT_EQ(tty.status, 0) << tty.output;
  EXPECT_NE(tty.output.find("\r["), std::string::npos) << tty.output;
  EXPECT_NE(tty.output.find("2/2 images"), std::string::npos) << tty.output;
  EXPECT_EQ(json_lines(work_ / "out.jsonl").size(), 2u) << "the bar never reaches stdout";
  const CommandRun piped = run_here(embed);
  EXPECT_EQ(piped.status, 0) << piped.output;
  EXPECT_EQ(piped.output.find("images, "), std::string::npos) << piped.output;
  EXPECT_NE(piped.output.find("images/s"), std::string::npos) << "the rate is reported either way";
}

}  // namespace

namespace {

// Debian 12's OpenBLAS falls back to its generic SSE3 kernels on CPU models it does not
// know (README "Speed of the engine"); the binary restarts itself with OPENBLAS_CORETYPE
// set. Without that restart this machine's `candor version` says "Prescott kernels".
TEST(CliPlatform, TheBinaryRunsOpenBlasVectorKernelsWhenTheCpuHasThem) {
  const std::string best = candor::best_blas_coretype();
  if (best.empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512: the generic kernels are right";
  const CommandRun r = run_command("env -u OPENBLAS_CORETYPE " + std::string(CANDOR_BINARY) + " version");
  ASSERT_EQ(r.status, 0) << r.output;
  if (r.output.find("(not OpenBLAS)") != std::string::npos) GTEST_SKIP() << "libblas.so.3 is not OpenBLAS here";
  EXPECT_EQ(r.output.find("Prescott"), std::string::npos) << r.output;
  const bool vector = r.output.find(best) != std::string::npos || r.output.find("Cooperlake") != std::string::npos ||
                      r.output.find("SapphireRapids") != std::string::npos;
  EXPECT_TRUE(vector) << "expected " << best << " or newer kernels:\n" << r.output;
  // An operator's own choice is kept as it is.
  const CommandRun forced = run_command("OPENBLAS_CORETYPE=Prescott " + std::string(CANDOR_BINARY) + " version");
  EXPECT_NE(forced.output.find("Prescott"), std::string::npos) << forced.output;
}

}  // namespace
