// Running a shell command from a test, for the tests that drive the `candor` binary or
// a system tool (openssl, curl) the way a user's shell would.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace candor::test {

struct CommandRun {
  int status = -1;     // the exit status; 128 + the signal when killed; -1 when it did not start
  std::string output;  // stdout and stderr, interleaved as written
};

// ensures: the command has run to its end under /bin/sh.
inline CommandRun run_command(const std::string& command) {
  CommandRun r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  for (std::size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace candor::test
