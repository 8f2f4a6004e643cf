// `candor library` with the real binary and models: an add killed with SIGKILL mid-run
// and run again completes without duplicates, a third run skips every photo, and find
// returns the probe's photo and writes its audit entry; and the reduced decoding of a
// large photo finds the faces the full one does, at the same places. And the HTML report
// and thumbnails (write_library_report, library_face_thumbnail) over a library of testdata
// photos recorded with synthetic templates (no models): groups largest first, names
// escaped, hidden groups and stale thumbnails left out, missing and changed photos counted.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "../common/run_command.h"
#include "../engine/test_support.h"
#include "../store/store_test_util.h"
#include "candor/crypto.h"
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
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM library_faces WHERE NOT (template_norm > 0)"), 0)
      << "a face stored without its template norm (the grouping's quality signal)";

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


// A photo: black, with a white square where the face box is.
TEST(LibraryReportTest, ThumbnailIsTheBoxWithItsMarginAndGreyOutsideThePhoto) {
  cv::Mat photo(200, 300, CV_8UC3, cv::Scalar(0, 0, 0));
  photo(cv::Rect(100, 50, 40, 40)).setTo(cv::Scalar(255, 255, 255));
  ThumbnailOptions o;  // 96 px, margin 0.25: the crop is 60 px, the box its middle 40
  const cv::Mat t = cv::imdecode(face_thumbnail_jpeg(photo, FaceBox{100, 50, 40, 40}, o), cv::IMREAD_COLOR);
  ASSERT_EQ(t.size(), cv::Size(96, 96));
  EXPECT_GT(t.at<cv::Vec3b>(48, 48)[0], 230);  // the face
  EXPECT_LT(t.at<cv::Vec3b>(4, 4)[0], 25);     // the margin: the photo around it
  EXPECT_LT(t.at<cv::Vec3b>(91, 91)[0], 25);
  // A box at the photo's corner: the square's part outside the photo is mid-grey.
  const cv::Mat c = cv::imdecode(face_thumbnail_jpeg(photo, FaceBox{0, 0, 40, 40}, o), cv::IMREAD_COLOR);
  EXPECT_NEAR(c.at<cv::Vec3b>(3, 3)[0], 128, 20);
  EXPECT_LT(c.at<cv::Vec3b>(60, 60)[0], 25);
  o.size = 8;
  EXPECT_THROW((void)face_thumbnail_jpeg(photo, FaceBox{0, 0, 40, 40}, o), std::invalid_argument);
}

class LibraryReportFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(photos_);
    store_ = open_or_die(dir_.file("lib.db"), options_with_key());
    lib_ = &store_->library();
    ASSERT_TRUE(lib_->create_library({"family", "<b>me</b>", 365}, who()).ok());
    // photo 1: A B, 2: C D, 3: E F, 4: G, 5: H J, 6: I (testdata samples 1-6 copied).
    const std::vector<std::vector<std::string>> faces = {{"A", "B"}, {"C", "D"}, {"E", "F"}, {"G"}, {"H", "J"}, {"I"}};
    for (std::size_t p = 0; p < faces.size(); ++p) {
      const auto path = photos_ / ("p" + std::to_string(p + 1) + ".jpg");
      std::filesystem::copy_file(testdata("face-api/sample" + std::to_string(p + 1) + ".jpg"), path);
      LibraryPhoto photo;
      photo.path = path.string();
      photo.sha256 = sha256_hex(std::string_view(read_text(path)));
      photo.size = static_cast<std::int64_t>(std::filesystem::file_size(path));
      photo.ingested = true;
      std::vector<NewLibraryFace> nf;
      for (std::size_t k = 0; k < faces[p].size(); ++k) {
        nf.push_back(NewLibraryFace{FaceBox{20.0F + 60.0F * static_cast<float>(k), 20, 40, 48}, 0.99F,
                                    synthetic_embedding(static_cast<std::uint32_t>(10 * p + k), 64), "synthetic-64"});
      }
      auto added = lib_->add_photo("family", photo, nf, who());
      ASSERT_TRUE(added.ok());
      for (std::size_t k = 0; k < faces[p].size(); ++k) id_[faces[p][k]] = added->faces[k];
    }
    // Group 7: A C E J (4 faces, named with markup), group 2: B D G (3), group 9: I,
    // group 5: F (hidden); H not grouped.
    std::map<std::int64_t, std::int64_t> groups;
    for (const char* f : {"A", "C", "E", "J"}) groups[id_[f]] = 7;
    for (const char* f : {"B", "D", "G"}) groups[id_[f]] = 2;
    groups[id_["I"]] = 9;
    groups[id_["F"]] = 5;
    ASSERT_TRUE(lib_->save_groups("family", groups, who()).ok());
    ASSERT_TRUE(lib_->set_group_label("family", 7, "<script>alert(1)</script>", who()).ok());
    ASSERT_TRUE(lib_->set_group_hidden("family", 5, true, who()).ok());
    std::filesystem::remove(photos_ / "p4.jpg");                            // G's photo: missing
    std::ofstream(photos_ / "p6.jpg", std::ios::binary | std::ios::app) << "edited";  // I's: changed
  }

  static std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }
  std::filesystem::path thumb(const std::string& face) const {
    return out_ / ("face-" + std::to_string(id_.at(face)) + ".jpg");
  }

  TempDir dir_;
  std::filesystem::path photos_ = dir_.path() / "photos";
  std::filesystem::path out_ = dir_.path() / "report";
  std::unique_ptr<Store> store_;
  LibraryStore* lib_ = nullptr;
  std::map<std::string, std::int64_t> id_;
};

TEST_F(LibraryReportFixture, GroupsLargestFirstEscapedAndMissingOrChangedPhotosCounted) {
  // A thumbnail left by an earlier report of the now hidden face must not survive a re-run.
  std::filesystem::create_directories(out_);
  std::ofstream(thumb("F")) << "stale";
  const LibraryReportSummary r = write_library_report(*lib_, "family", out_).value();
  EXPECT_EQ(r.groups, 3U);
  EXPECT_EQ(r.hidden_groups, 1U);
  EXPECT_EQ(r.faces, 7U);  // A B C D E J, and H
  EXPECT_EQ(r.ungrouped, 1U);
  EXPECT_EQ(r.faces_skipped, 2U);  // G, I
  EXPECT_EQ(r.photos_missing, 1U);
  EXPECT_EQ(r.photos_changed, 1U);
  EXPECT_EQ(r.photos_undecodable, 0U);

  const std::string html = read_text(out_ / "index.html");
  const auto g7 = html.find("id=\"group-7\""), g2 = html.find("id=\"group-2\""), g9 = html.find("id=\"group-9\"");
  const auto ungrouped = html.find("id=\"ungrouped\"");
  ASSERT_NE(g7, std::string::npos) << html;
  ASSERT_NE(g2, std::string::npos);
  ASSERT_NE(g9, std::string::npos);
  ASSERT_NE(ungrouped, std::string::npos);
  EXPECT_LT(g7, g2);
  EXPECT_LT(g2, g9);
  EXPECT_LT(g9, ungrouped);
  EXPECT_EQ(html.find("group-5"), std::string::npos) << "a hidden group is shown";
  EXPECT_NE(html.find("4 faces"), std::string::npos);
  EXPECT_NE(html.find("Person 2"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "a name reached the page as markup";
  EXPECT_EQ(html.find("<b>me"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(html.find("2 photo(s) skipped: 1 missing, 1 changed"), std::string::npos);

  for (const char* f : {"A", "B", "C", "D", "E", "H", "J"}) {
    ASSERT_TRUE(std::filesystem::exists(thumb(f))) << f;
    EXPECT_NE(html.find(thumb(f).filename().string()), std::string::npos) << f;
    const cv::Mat t = cv::imread(thumb(f).string());
    ASSERT_FALSE(t.empty()) << f << " does not decode";
    EXPECT_EQ(t.size(), cv::Size(96, 96)) << f;
  }
  for (const char* f : {"F", "G", "I"}) EXPECT_FALSE(std::filesystem::exists(thumb(f))) << f;

  // One function cuts both: the thumbnail of a face is the report's file.
  const auto a = library_face_thumbnail(*lib_, "family", id_["A"], {}).value();
  EXPECT_EQ(std::string(a.begin(), a.end()), read_text(thumb("A")));
  const auto missing = library_face_thumbnail(*lib_, "family", id_["G"], {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message.find(photos_.string()), std::string::npos) << "the path leaked";
  const auto changed = library_face_thumbnail(*lib_, "family", id_["I"], {});
  ASSERT_FALSE(changed.ok());
  EXPECT_NE(changed.error().message.find("changed"), std::string::npos);
  EXPECT_EQ(library_face_thumbnail(*lib_, "family", 999999, {}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(write_library_report(*lib_, "nobody", out_).error().code, ErrorCode::kNotFound);
}

TEST_F(LibraryReportFixture, ForgottenFacesHaveNoThumbnail) {
  ASSERT_TRUE(write_library_report(*lib_, "family", out_).ok());
  ASSERT_TRUE(std::filesystem::exists(thumb("B")));
  ASSERT_TRUE(lib_->forget_group("family", 2, who("she asked")).ok());
  EXPECT_EQ(library_face_thumbnail(*lib_, "family", id_["B"], {}).error().code, ErrorCode::kNotFound);
  const LibraryReportSummary r = write_library_report(*lib_, "family", out_).value();
  EXPECT_EQ(r.groups, 2U);
  EXPECT_FALSE(std::filesystem::exists(thumb("B"))) << "a forgotten face's thumbnail outlived a re-run";
  EXPECT_TRUE(std::filesystem::exists(thumb("A")));
}

}  // namespace
}  // namespace candor::test
