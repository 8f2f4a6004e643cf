// Crash safety: a writer killed with SIGKILL part-way through a stream of
// enrolments leaves a database that opens, whose audit chain verifies, and
// where every face is either wholly present (decryptable, with its audit
// entry) or absent.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>

#include "store_test_util.h"

namespace candor::test {
namespace {

// Child: enroll one face per transaction, reporting each committed id on `fd`.
[[noreturn]] void enroll_forever(const std::string& path, int fd) {
  Result<std::unique_ptr<Store>> s = open_store(path, options_with_key());
  if (!s) _exit(2);
  for (std::uint32_t i = 0; i < 1'000'000; ++i) {
    Result<std::vector<FaceId>> ids = (*s)->enroll("staff", "alice", {synthetic_face(i, 128)}, who());
    if (!ids) _exit(3);
    const FaceId id = ids->front();
    if (::write(fd, &id, sizeof id) != sizeof id) _exit(4);
  }
  _exit(0);
}

TEST(CrashSafety, KilledWriterLeavesWholeFacesOnly) {
  TempDir dir;
  const std::string path = dir.file("candor.db");
  {
    std::unique_ptr<Store> s = open_or_die(path, options_with_key());
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
  }

  std::set<FaceId> reported;
  for (int round = 0; round < 3; ++round) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(pipe_fds[0]);
      enroll_forever(path, pipe_fds[1]);
    }
    ::close(pipe_fds[1]);
    // Let it commit a varying number of faces, then kill it mid-stream.
    const std::size_t target = reported.size() + 20 + static_cast<std::size_t>(round) * 37;
    FaceId id = 0;
    while (reported.size() < target && ::read(pipe_fds[0], &id, sizeof id) == sizeof id) reported.insert(id);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with status " << WEXITSTATUS(status);
    while (::read(pipe_fds[0], &id, sizeof id) == sizeof id) reported.insert(id);
    ::close(pipe_fds[0]);
  }

  const std::set<FaceId> stored = reopen_and_check(path, 128).stored;
  for (FaceId id : reported) EXPECT_TRUE(stored.count(id)) << "committed face " << id << " lost";
  EXPECT_GE(stored.size(), reported.size());
  EXPECT_LE(stored.size(), reported.size() + 3);  // at most one commit per round not yet reported
}

}  // namespace
}  // namespace candor::test
