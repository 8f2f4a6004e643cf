// `candor migrate` and `candor store copy`, end to end with the real binary: a
// populated SQLite store is copied into PostgreSQL and back (re-encrypted
// under another key on the way back); both copies hold the same records, the
// audit chain verifies on each, and a search still finds the enrolled person.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "../common/run_command.h"
#include "../store/backend_fixture.h"

namespace candor::test {
namespace {

CommandRun run(const std::string& env, const std::string& args) {
  return run_command(env + " " + std::string(CANDOR_BINARY) + " --models " + CANDOR_MODEL_DIR + " " + args);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// "copied 1 collections, 2 consents, 2 faces, ..." without the re-encryption note.
std::string counts_of(const std::string& output) {
  const std::string line = output.substr(0, output.find('\n'));
  const auto note = line.find(" (re-encrypted");
  if (note == std::string::npos) return line;
  const auto close = line.find(')', note);
  return line.substr(0, note) + (close == std::string::npos ? "" : line.substr(close + 1));
}

class StoreCopyCli : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = test_pg_uri();
    if (server_.empty()) {
      if (running_in_ci()) FAIL() << "needs the PostgreSQL test cluster (ctest fixture pg_cluster); CI=true";
      GTEST_SKIP() << "no PostgreSQL test cluster (run under ctest, or set CANDOR_TEST_PG_URI)";
    }
    pg_ = std::make_unique<PgTestDatabase>(server_);
  }

  // Two single-face photos cut from a group photo of the npm sample set.
  std::vector<std::string> face_crops() {
    const std::string group = std::string(CANDOR_TESTDATA_DIR) + "/face-api/sample1.jpg";
    CommandRun detect = run("", "detect --json " + group);
    EXPECT_EQ(detect.status, 0) << detect.output;
    const nlohmann::json faces = nlohmann::json::parse(detect.output)[0]["faces"];  // one object per image
    const cv::Mat image = cv::imread(group);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < 2 && i < faces.size(); ++i) {
      const nlohmann::json& b = faces[i]["box"];
      const double cx = b["x"].get<double>() + b["width"].get<double>() / 2;
      const double cy = b["y"].get<double>() + b["height"].get<double>() / 2;
      const double side = std::max(b["width"].get<double>(), b["height"].get<double>()) * 1.6;
      cv::Rect r(static_cast<int>(cx - side / 2), static_cast<int>(cy - side / 2), static_cast<int>(side),
                 static_cast<int>(side));
      r &= cv::Rect(0, 0, image.cols, image.rows);
      const std::string path = dir_.file("face" + std::to_string(i) + ".jpg");
      cv::imwrite(path, image(r));
      out.push_back(path);
    }
    return out;
  }

  TempDir dir_;
  std::string server_;
  std::unique_ptr<PgTestDatabase> pg_;
};

TEST_F(StoreCopyCli, SqliteToPostgresqlAndBack) {
  const std::string key_env = "CANDOR_KEY=" + std::string(kTestKey);
  const std::string a = dir_.file("a.db");
  const std::string pg = quoted(pg_->uri());

  CommandRun m1 = run(key_env, "migrate --store " + pg);
  ASSERT_EQ(m1.status, 0) << m1.output;
  // The newest version this build knows, as the command states it: a new database goes there.
  const std::string newest_tag = "newest this build knows: ";
  const std::size_t at = m1.output.find(newest_tag);
  ASSERT_NE(at, std::string::npos) << m1.output;
  const std::string newest = m1.output.substr(at + newest_tag.size(), m1.output.find(')', at) - at - newest_tag.size());
  EXPECT_NE(m1.output.find("before: 0"), std::string::npos) << m1.output;
  EXPECT_NE(m1.output.find("after:  " + newest), std::string::npos) << m1.output;
  CommandRun m2 = run(key_env, "migrate --store " + pg);
  EXPECT_NE(m2.output.find("before: " + newest), std::string::npos) << "idempotent: " << m2.output;

  // A populated SQLite store: two people, a search, a revocation, an API key.
  const std::vector<std::string> crops = face_crops();
  ASSERT_EQ(crops.size(), 2u);
  std::ofstream(dir_.file("form.pdf")) << "signed";
  const std::string s = " --store " + a;
  ASSERT_EQ(run(key_env, "collection create staff --purpose 'door access' --retention-days 30" + s).status, 0);
  for (const char* who : {"alice", "bob", "carol"}) {
    CommandRun g = run(key_env, std::string("consent grant --collection staff --subject ") + who + " --evidence " +
                                    dir_.file("form.pdf") + " --collected-by hr" + s);
    ASSERT_EQ(g.status, 0) << g.output;
  }
  CommandRun e1 = run(key_env, "enroll --collection staff --subject alice " + crops[0] + s);
  ASSERT_EQ(e1.status, 0) << e1.output;
  ASSERT_EQ(run(key_env, "enroll --collection staff --subject bob " + crops[1] + s).status, 0);
  ASSERT_EQ(run(key_env, "enroll --collection staff --subject carol " + crops[1] + s).status, 0);
  ASSERT_EQ(run(key_env, "consent revoke --collection staff --subject carol" + s).status, 0);
  ASSERT_EQ(run(key_env, "search --collection staff --reason 'door 3' " + crops[0] + s).status, 0);
  CommandRun k = run(key_env, "key create door-3 --collections staff --operations search" + s);
  ASSERT_EQ(k.status, 0) << k.output;

  // SQLite -> PostgreSQL, same key: ciphertexts move as they are.
  CommandRun c1 = run(key_env, "store copy --from " + a + " --to " + pg);
  ASSERT_EQ(c1.status, 0) << c1.output;
  EXPECT_NE(c1.output.find("3 consents, 2 faces"), std::string::npos) << c1.output;
  EXPECT_EQ(c1.output.find("re-encrypted"), std::string::npos) << c1.output;
  CommandRun v1 = run(key_env, "audit verify --store " + pg);
  EXPECT_EQ(v1.status, 0) << v1.output;
  EXPECT_NE(v1.output.find("intact"), std::string::npos) << v1.output;
  EXPECT_EQ(pg_->scalar("SELECT COUNT(*) FROM faces"), 2);
  EXPECT_EQ(pg_->scalar("SELECT COUNT(*) FROM api_keys WHERE name = 'door-3'"), 1);
  EXPECT_GT(pg_->scalar("SELECT COUNT(*) FROM search_counters"), 0);
  // The feed continues at the source's version: the head's seq.
  EXPECT_EQ(pg_->scalar("SELECT MAX(version) FROM face_changes"),
            pg_->scalar("SELECT MAX(seq) FROM audit_log WHERE operation = 'revoke_consent'"));

  // A non-empty destination is refused.
  CommandRun again = run(key_env, "store copy --from " + a + " --to " + pg);
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find("not empty"), std::string::npos) << again.output;

  // PostgreSQL -> a new SQLite store under another key: templates re-encrypted.
  const std::string key_file = dir_.file("pg.key");
  {
    std::ofstream(key_file) << kTestKey << "\n";
    ::chmod(key_file.c_str(), 0600);
  }
  const std::string b = dir_.file("b.db");
  CommandRun c2 = run("CANDOR_KEY=", "store copy --from " + pg + " --from-key-file " + key_file + " --to " + b);
  ASSERT_EQ(c2.status, 0) << c2.output;
  EXPECT_NE(c2.output.find("re-encrypted"), std::string::npos) << c2.output;
  EXPECT_EQ(counts_of(c2.output), counts_of(c1.output)) << "the same records both ways";
  EXPECT_TRUE(std::filesystem::exists(b + ".key")) << "the new store's key file";
  CommandRun v2 = run("CANDOR_KEY=", "audit verify --store " + b);
  EXPECT_EQ(v2.status, 0) << v2.output;
  EXPECT_NE(v2.output.find("intact"), std::string::npos) << v2.output;
  EXPECT_EQ(v2.output.substr(v2.output.find("head")), v1.output.substr(v1.output.find("head"))) << "the same chain";
  CommandRun found = run("CANDOR_KEY=", "search --collection staff --reason 'after the copy' " + crops[0] + " --store " + b);
  ASSERT_EQ(found.status, 0) << found.output;
  EXPECT_NE(found.output.find("alice"), std::string::npos) << "re-encrypted templates decrypt and match: " << found.output;
  // The copy's sequences continue: a new enrolment gets a fresh id, not a revoked face's.
  CommandRun e4 = run("CANDOR_KEY=", "enroll --collection staff --subject bob " + crops[1] + " --store " + b);
  ASSERT_EQ(e4.status, 0) << e4.output;
  EXPECT_EQ(RawDb(b).scalar("SELECT MAX(id) FROM faces"), 4) << "ids 1-3 were used in the source (3 was revoked)";
}

}  // namespace
}  // namespace candor::test
