// Faults at the edge of the store (issue 7): the disk fills during enrollment, and
// the template key file is missing, not a file, unreadable or malformed at start-up.
//
// Disk full: a child process enrolls one face per transaction until a write fails,
// reporting each committed face id on a pipe and then the error it got. The parent
// then reopens the database with no limit and checks that nothing was lost: every
// reported face is there and decrypts, nothing else is (no half-written face), each
// stored face has its audit entry, and the audit chain verifies. The disk runs out
// two ways: a 1 MiB tmpfs (ENOSPC; needs CAP_SYS_ADMIN, skipped without it), and
// RLIMIT_FSIZE with SIGXFSZ ignored (EFBIG; works anywhere).
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "store_test_util.h"

namespace candor::test {
namespace {

namespace fs = std::filesystem;

// What the child tells the parent, one record per line on the pipe.
//   "ok <face id>"              a committed enrollment
//   "fail <code> <message>"     the first enrollment that failed
//   "after <n>"                 faces the child's own store still reads after the failure
void report(int fd, const std::string& line) {
  const std::string text = line + "\n";
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) _exit(9);
}

// Child: enroll until the disk refuses, then check the same Store object still reads.
[[noreturn]] void enroll_until_full(const std::string& path, int fd, std::optional<rlim_t> file_limit) {
  ::signal(SIGXFSZ, SIG_IGN);  // a write past RLIMIT_FSIZE fails with EFBIG instead of killing us
  Result<std::unique_ptr<Store>> s = open_store(path, options_with_key());
  if (!s) _exit(2);
  if (file_limit) {
    rlimit rl{*file_limit, *file_limit};
    if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
  }
  for (std::uint32_t i = 0; i < 200'000; ++i) {
    Result<std::vector<FaceId>> ids = (*s)->enroll("staff", "alice", {synthetic_face(i)}, who());
    if (!ids) {
      report(fd, "fail " + std::string(error_code_name(ids.error().code)) + " " + ids.error().message);
      // A second attempt fails the same way rather than corrupting anything.
      Result<std::vector<FaceId>> again = (*s)->enroll("staff", "alice", {synthetic_face(i + 1)}, who());
      report(fd, again ? "again ok" : "again " + std::string(error_code_name(again.error().code)));
      Result<std::vector<FaceRecord>> faces = (*s)->load_faces("staff");
      report(fd, "after " + std::to_string(faces ? static_cast<long long>(faces->size()) : -1));
      _exit(0);
    }
    report(fd, "ok " + std::to_string(ids->front()));
  }
  _exit(4);  // the disk never filled
}

struct ChildReport {
  std::set<FaceId> committed;
  std::string fail_code, fail_message, again;
  long long after = -2;
  int exit_status = -1;
};

ChildReport run_child(const std::string& path, std::optional<rlim_t> file_limit) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    ::close(fds[0]);
    enroll_until_full(path, fds[1], file_limit);
  }
  ::close(fds[1]);
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) all.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ChildReport r;
  r.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::istringstream lines(all);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("ok ", 0) == 0) r.committed.insert(std::stoll(line.substr(3)));
    if (line.rfind("fail ", 0) == 0) {
      const auto sp = line.find(' ', 5);
      r.fail_code = line.substr(5, sp - 5);
      r.fail_message = sp == std::string::npos ? "" : line.substr(sp + 1);
    }
    if (line.rfind("again ", 0) == 0) r.again = line.substr(6);
    if (line.rfind("after ", 0) == 0) r.after = std::stoll(line.substr(6));
  }
  return r;
}

void create_staff(const std::string& path) {
  std::unique_ptr<Store> s = open_or_die(path, options_with_key());
  ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
  ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
}

// "Nothing lost": what the child committed is exactly what is stored, whole.
void expect_nothing_lost(const std::string& path, const ChildReport& r) {
  ASSERT_EQ(r.exit_status, 0) << "the child crashed or the disk never filled";
  EXPECT_FALSE(r.fail_code.empty());
  EXPECT_TRUE(r.fail_code == "io_error" || r.fail_code == "store_error") << r.fail_code;
  EXPECT_FALSE(r.fail_message.empty());
  EXPECT_NE(r.again, "ok") << "an enrollment succeeded on a full disk";
  EXPECT_EQ(r.after, static_cast<long long>(r.committed.size())) << "the failing store could not read its faces";
  EXPECT_GT(r.committed.size(), 5u) << "the disk filled before the test enrolled anything";
  std::cout << "[ disk full ] " << r.committed.size() << " faces committed, then " << r.fail_code << ": "
            << r.fail_message << "\n";

  ReopenedStore reopened = reopen_and_check(path, 512);
  EXPECT_EQ(reopened.stored, r.committed) << "a committed face lost, or a failed one half-written";
  // And the store takes new work once there is room again.
  EXPECT_TRUE(reopened.store->enroll("staff", "alice", {synthetic_face(999'999)}, who()).ok());
}

TEST(DiskFull, TmpfsRunsOutOfSpaceDuringEnrollment) {
  TempDir dir;
  const fs::path mnt = dir.path() / "small";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "); the RLIMIT_FSIZE test covers this";
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string path = (mnt / "candor.db").string();
  create_staff(path);
  const ChildReport r = run_child(path, std::nullopt);
  EXPECT_NE(r.fail_message.find("full"), std::string::npos) << r.fail_message;
  // Checking needs room for the WAL to be replayed: copy the files out of the full tmpfs.
  const fs::path copy = dir.path() / "copy";
  fs::create_directory(copy);
  for (const auto& e : fs::directory_iterator(mnt)) fs::copy_file(e.path(), copy / e.path().filename());
  expect_nothing_lost((copy / "candor.db").string(), r);
}

TEST(DiskFull, FileSizeLimitHitDuringEnrollment) {
  TempDir dir;
  const std::string path = dir.file("candor.db");
  create_staff(path);
  // Room for a few hundred faces beyond what the files already hold.
  const auto size = static_cast<rlim_t>(fs::file_size(path));
  const ChildReport r = run_child(path, size + 768 * 1024);
  expect_nothing_lost(path, r);
}

// ---------------------------------------------------------------- the key file at start-up

class KeyFileFault : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("candor.db");
    key_path_ = path_ + ".key";
    std::unique_ptr<Store> s = open_or_die(path_, file_keyed());
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
    for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(s->enroll("staff", "alice", {synthetic_face(i)}, who()).ok());
    key_text_ = read_text(key_path_);
  }
  static StoreOptions file_keyed() {
    StoreOptions o;
    o.use_env_key = false;  // the key comes from the file beside the database
    o.durability = Durability::kNormal;
    return o;
  }
  static std::string read_text(const std::string& p) {
    std::string out;
    FILE* f = std::fopen(p.c_str(), "rb");
    if (f == nullptr) return out;
    char buf[512];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    std::fclose(f);
    return out;
  }
  // The refusal names the file and the store still opens, with all its faces, once it is put back.
  void expect_refused_then_recovers(const std::string& must_mention) {
    Result<std::unique_ptr<Store>> r = open_store(path_, file_keyed());
    ASSERT_FALSE(r.ok()) << "opened without its key";
    EXPECT_NE(r.error().message.find(key_path_), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(must_mention), std::string::npos) << r.error().message;
    restore();
    std::unique_ptr<Store> s = open_or_die(path_, file_keyed());
    EXPECT_EQ(s->load_faces("staff")->size(), 3u);
    EXPECT_EQ(read_text(key_path_), key_text_) << "the key file was replaced";
  }
  void restore() {
    std::error_code ec;
    fs::remove_all(key_path_, ec);
    std::ofstream(key_path_) << key_text_;
    ::chmod(key_path_.c_str(), 0600);
  }

  TempDir dir_;
  std::string path_, key_path_, key_text_;
};

TEST_F(KeyFileFault, DirectoryInPlaceOfTheKeyFileIsRefused) {
  fs::remove(key_path_);
  fs::create_directory(key_path_);
  expect_refused_then_recovers("not a regular file");
}

TEST_F(KeyFileFault, SymlinkedKeyFileIsRefused) {
  const std::string elsewhere = dir_.file("elsewhere.key");
  fs::rename(key_path_, elsewhere);
  fs::create_symlink(elsewhere, key_path_);
  expect_refused_then_recovers("cannot read key file");
}

TEST_F(KeyFileFault, MalformedKeyFileIsRefusedNotReplaced) {
  std::ofstream(key_path_, std::ios::trunc) << "not-a-key\n";
  expect_refused_then_recovers("malformed");
  std::ofstream(key_path_, std::ios::trunc).close();  // empty
  Result<std::unique_ptr<Store>> r = open_store(path_, file_keyed());
  EXPECT_FALSE(r.ok());
  restore();
}

// Root reads any file, so the unreadable case runs in a child that drops to `nobody`.
TEST_F(KeyFileFault, UnreadableKeyFileIsRefused) {
  const passwd* nobody = ::getpwnam("nobody");
  if (::geteuid() != 0 || nobody == nullptr) GTEST_SKIP() << "needs root (to drop to nobody)";
  // nobody may use the directory and the database, but not the key file (root's, 0600).
  ::chmod(dir_.path().c_str(), 0777);
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    if (e.path() != key_path_) {
      ::chown(e.path().c_str(), nobody->pw_uid, nobody->pw_gid);
      ::chmod(e.path().c_str(), 0600);
    }
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0) _exit(2);
    Result<std::unique_ptr<Store>> r = open_store(path_, file_keyed());
    const std::string msg = r ? std::string("OPENED") : r.error().message;
    if (::write(fds[1], msg.data(), msg.size()) < 0) _exit(3);
    _exit(0);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[1024];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(msg, "OPENED");
  EXPECT_NE(msg.find("cannot read key file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
  EXPECT_EQ(read_text(key_path_), key_text_);
  std::unique_ptr<Store> s = open_or_die(path_, file_keyed());
  EXPECT_EQ(s->load_faces("staff")->size(), 3u);
}

}  // namespace
}  // namespace candor::test
