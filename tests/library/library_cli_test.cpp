// `candor library` with the real binary and models: an add killed with SIGKILL mid-run
// and run again completes without duplicates, a third run skips every photo, and find
// returns the probe's photo and writes its audit entry; and the reduced decoding of a
// large photo finds the faces the full one does, at the same places.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "../common/run_command.h"
#include "../engine/test_support.h"
#include "../store/store_test_util.h"
#include "candor/photo_library.h"

namespace candor::test {
namespace {

bool have_models() { return std::filesystem::exists(std::filesystem::path(CANDOR_MODEL_DIR) / "README.md") ||
                            !std::filesystem::is_empty(CANDOR_MODEL_DIR); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

TEST(LibraryReductionTest, LargestReductionKeepingTheSmallestFaceDetectable) {
  // 2% of 3000 px is 60 px: 30 px at 1/2 (>= 24), 15 px at 1/4 (< 24).
  EXPECT_EQ(library_reduction(3000, 0.02), 2);
  EXPECT_EQ(library_reduction(2000, 0.02), 1);  // 40 px: 20 px at 1/2 is below 24
  EXPECT_EQ(library_reduction(3000, 0.10), 8);  // 300 px: 37.5 px at 1/8
  EXPECT_EQ(library_reduction(480, 0.02), 1);
}

TEST(LibraryIngestTest, ReducedDecodeFindsTheFacesOfTheFullPhoto) {
  if (!have_models()) GTEST_SKIP() << "no models at " << CANDOR_MODEL_DIR;
  const cv::Mat small = cv::imread(testdata("face-api/sample1.jpg").string());
  ASSERT_FALSE(small.empty());
  const double scale = 3000.0 / std::min(small.cols, small.rows);
  cv::Mat large;
  cv::resize(small, large, cv::Size(), scale, scale, cv::INTER_CUBIC);
  std::vector<std::uint8_t> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", large, jpeg, {cv::IMWRITE_JPEG_QUALITY, 92}));
  const PhotoFaces reduced = find_photo_faces(shared_engine(), jpeg, ImageLimits{}, 0.02).value();
  EXPECT_EQ(reduced.reduction, 2);
  EXPECT_EQ(reduced.size, large.size());
  const std::vector<Face> reference = shared_engine().analyze(small);
  ASSERT_FALSE(reference.empty());
  ASSERT_EQ(reduced.faces.size(), reference.size());
  for (const Face& r : reference) {
    const Box expected{r.box.x * static_cast<float>(scale), r.box.y * static_cast<float>(scale),
                       r.box.width * static_cast<float>(scale), r.box.height * static_cast<float>(scale)};
    float best_iou = 0, best_sim = 0;
    for (const Face& f : reduced.faces) {
      if (iou(f.box, expected) > best_iou) {
        best_iou = iou(f.box, expected);
        best_sim = cosine_similarity(f.embedding, r.embedding);
      }
    }
    EXPECT_GT(best_iou, 0.6F);
    EXPECT_GT(best_sim, 0.8F) << "the template of the full-resolution crop should match the original's";
  }
}

TEST(LibraryCliTest, KilledAddResumesWithoutDuplicatesThenFindIsAudited) {
  if (!have_models()) GTEST_SKIP() << "no models at " << CANDOR_MODEL_DIR;
  TempDir dir;
  const std::filesystem::path photos = dir.path() / "photos";
  std::filesystem::create_directories(photos);
  for (int i = 1; i <= 6; ++i) {
    const std::string name = "sample" + std::to_string(i) + ".jpg";
    std::filesystem::copy_file(testdata("face-api/" + name), photos / name);
  }
  const std::string db = dir.file("lib.db");
  ::setenv("CANDOR_MODEL_DIR", CANDOR_MODEL_DIR, 1);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl(CANDOR_BINARY, CANDOR_BINARY, "library", "add", "fam", photos.c_str(), "--store", db.c_str(), "--workers",
            "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Killed once the first photo is committed (each photo is a transaction of its own).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool killed = false;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) break;  // finished before the kill
    if (std::filesystem::exists(db) && RawDb(db).scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'library_photos'") == 1 &&
        RawDb(db).scalar("SELECT COUNT(*) FROM library_photos") >= 1) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      killed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!killed) GTEST_SKIP() << "the add finished before it could be killed";
  const std::int64_t before = RawDb(db).scalar("SELECT COUNT(*) FROM library_photos");
  EXPECT_LT(before, 6) << "the kill came too late to test a resume";

  const std::string add = std::string(CANDOR_BINARY) + " library add fam " + quoted(photos.string()) + " --store " +
                          quoted(db) + " --workers 2";
  const CommandRun resumed = run_command(add);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  RawDb raw(db);
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM library_photos"), 6);
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM (SELECT photo_id, box_x, box_y FROM library_faces"
                       " GROUP BY photo_id, box_x, box_y HAVING COUNT(*) > 1)"),
            0)
      << "a face stored twice";
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM library_photos WHERE faces <> (SELECT COUNT(*) FROM library_faces f"
                       " WHERE f.photo_id = library_photos.id)"),
            0);
  EXPECT_GT(raw.scalar("SELECT COUNT(*) FROM library_faces"), 6);
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM library_faces WHERE group_number IS NULL"), 0) << "faces left ungrouped";

  const CommandRun again = run_command(add);
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("\"unchanged\": 6"), std::string::npos) << again.output;

  // sample1 (face 2, counting from 0) and sample3 (face 1) show the same woman (as in tests/collections):
  // a crop of her finds at least those two photos.
  const std::filesystem::path probe = dir.path() / "probe.jpg";
  {
    const std::vector<std::uint8_t> crop = face_crop_jpeg(3, 1, 0.4F);
    std::ofstream(probe, std::ios::binary).write(reinterpret_cast<const char*>(crop.data()), static_cast<std::streamsize>(crop.size()));
  }
  const CommandRun found = run_command(std::string(CANDOR_BINARY) + " library find fam " + quoted(probe.string()) +
                                       " --reason 'looking for my aunt' --store " + quoted(db));
  ASSERT_EQ(found.status, 0) << found.output;
  EXPECT_NE(found.output.find("sample1.jpg"), std::string::npos) << found.output;
  EXPECT_NE(found.output.find("sample3.jpg"), std::string::npos) << found.output;
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM audit_log WHERE operation = 'library_find' AND reason = 'looking for my aunt'"), 1);
}

}  // namespace
}  // namespace candor::test
