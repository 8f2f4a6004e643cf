// `candor backup` and `candor store verify`, end to end with the real binary: a backup
// SIGKILLed midway leaves no file at OUT (only its ".partial-<pid>"), a finished one
// verifies after a restore, the key is never beside it, and a store newer than the binary
// is refused naming both versions.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "../common/run_command.h"
#include "../store/store_test_util.h"

extern char** environ;

namespace candor::test {
namespace {

std::string cli(const std::string& args) { return "CANDOR_KEY= " + std::string(CANDOR_BINARY) + " " + args; }

// The first file in `dir` whose name starts with `prefix`, or "".
std::filesystem::path first_with_prefix(const std::filesystem::path& dir, const std::string& prefix) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().starts_with(prefix)) return e.path();
  }
  return {};
}

class BackupCli : public ::testing::Test {
 protected:
  // A store of `faces` 512-d templates (about 2.4 KB a face), keyed by its .key file.
  void make_store(int faces) {
    StoreOptions o;
    o.use_env_key = false;
    o.durability = Durability::kNormal;
    std::unique_ptr<Store> s = open_or_die(path_, o);
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
    for (int done = 0; done < faces;) {
      std::vector<NewFace> batch;
      for (int i = 0; i < 1000 && done < faces; ++i, ++done) batch.push_back(synthetic_face(static_cast<std::uint32_t>(done)));
      ASSERT_TRUE(s->enroll("staff", "alice", batch, who()).ok());
    }
    ASSERT_TRUE(s->checkpoint().ok());
  }
  TempDir dir_;
  std::string path_ = dir_.file("candor.db");
};

TEST_F(BackupCli, ASigkilledBackupLeavesNoFileThatLooksComplete) {
  make_store(40'000);  // ~100 MB: the copy takes long enough to be caught midway
  if (HasFatalFailure()) return;
  const std::string out = dir_.file("backup.db");
  // Caught midway: once the partial copy holds 8 MB; retried if a run finishes first.
  bool killed_midway = false;
  for (int attempt = 0; attempt < 5 && !killed_midway; ++attempt) {
    std::vector<std::string> args = {CANDOR_BINARY, "backup", "--store", path_, out};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(::posix_spawn(&pid, CANDOR_BINARY, nullptr, nullptr, argv.data(), environ), 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      const std::filesystem::path partial = first_with_prefix(dir_.path(), "backup.db.partial-");
      if (!partial.empty() && std::filesystem::file_size(partial, ec) > (8U << 20) && !ec) {
        ::kill(pid, SIGKILL);
        killed_midway = true;
        break;
      }
      if (std::filesystem::exists(out)) break;  // finished before we saw it: try again
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (killed_midway) {
      ASSERT_TRUE(WIFSIGNALED(status)) << "the backup finished before the kill landed";
    } else {
      std::filesystem::remove(out);
    }
  }
  ASSERT_TRUE(killed_midway) << "never caught a backup midway";
  EXPECT_FALSE(std::filesystem::exists(out)) << "a killed backup left a file at OUT";
  EXPECT_FALSE(first_with_prefix(dir_.path(), "backup.db.partial-").empty()) << "the partial copy says what it is";

  // The next backup to the same name completes, restores and verifies.
  CommandRun again = run_command(cli("backup --store " + path_ + " " + out));
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("NOT in the backup"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find(path_ + ".key"), std::string::npos) << again.output;
  const std::string restored = dir_.file("restored.db");
  std::filesystem::copy_file(out, restored);
  EXPECT_FALSE(std::filesystem::exists(restored + ".key"));
  // Without the key the restored store does not open, and says what is missing.
  CommandRun keyless = run_command(cli("store verify --store " + restored));
  EXPECT_EQ(keyless.status, 1) << keyless.output;
  EXPECT_NE(keyless.output.find("missing"), std::string::npos) << keyless.output;
  CommandRun verified = run_command(cli("store verify --store " + restored + " --key-file " + path_ + ".key"));
  EXPECT_EQ(verified.status, 0) << verified.output;
  EXPECT_NE(verified.output.find("40000 faces"), std::string::npos) << verified.output;
}

TEST_F(BackupCli, VerifyExitsNonZeroNamingTheFirstProblem) {
  make_store(3);
  if (HasFatalFailure()) return;
  RawDb(path_).exec("UPDATE faces SET template = (SELECT template FROM faces WHERE id = 1) WHERE id = 2");
  CommandRun r = run_command(cli("store verify --store " + path_));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("first problem: collection staff: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("face 2"), std::string::npos) << r.output;
}

TEST_F(BackupCli, AStoreNewerThanTheBinaryIsRefusedNamingBothVersions) {
  make_store(1);
  if (HasFatalFailure()) return;
  const std::int64_t current = RawDb(path_).scalar("SELECT MAX(version) FROM schema_version");
  RawDb(path_).exec("INSERT INTO schema_version (version, applied_at) VALUES (" + std::to_string(current + 1) + ", 0)");
  for (const std::string& command : {"store verify --store " + path_, "migrate --store " + path_}) {
    CommandRun r = run_command(cli(command));
    EXPECT_EQ(r.status, 1) << command << ": " << r.output;
    EXPECT_NE(r.output.find("version " + std::to_string(current + 1)), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("(" + std::to_string(current) + ")"), std::string::npos) << r.output;
  }
}

TEST_F(BackupCli, PostgresqlIsPointedToItsOwnTools) {
  CommandRun r = run_command(cli("backup --store postgresql://localhost/candor " + dir_.file("pg.db")));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("pg_dump"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace candor::test
