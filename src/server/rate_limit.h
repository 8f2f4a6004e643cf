// Rate limits: failed-authentication throttling per client IP, and the per-key
// 1:N search budget.
//
// Thread safety: all members may be called concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "api_keys.h"
#include "candor/store.h"

namespace candor::server {

// Counts failed authentications per client IP in a sliding window. An IP with
// `allowed` failures in the window is refused (429) before its key is even
// checked, so guessing keys costs a minute per ten guesses. Memory is bounded:
// at most kMaxTrackedIps addresses are tracked (the oldest are dropped).
class AuthThrottle {
 public:
  AuthThrottle(int allowed, std::chrono::seconds window) : allowed_(allowed), window_(window) {}

  // ensures: 0 if `ip` may try, else the seconds until it may (for Retry-After).
  int blocked_for(const std::string& ip);
  void record_failure(const std::string& ip);

 private:
  static constexpr std::size_t kMaxTrackedIps = 10'000;
  void prune(std::deque<std::chrono::steady_clock::time_point>& q, std::chrono::steady_clock::time_point now) const;

  const int allowed_;
  const std::chrono::seconds window_;
  std::mutex mutex_;
  std::map<std::string, std::deque<std::chrono::steady_clock::time_point>> failures_;
};

// The 1:N search budget of a key: searches per minute and per day, counted by the
// store (Store::search_count over the "key:<name>" actor's audited searches), so
// the budget holds across restarts and across server processes on one database.
// Searches admitted but not yet recorded are counted too (in_flight), so a burst
// of concurrent requests cannot all slip under the limit.
class SearchBudget {
 public:
  explicit SearchBudget(Store& store) : store_(store) {}

  struct Decision {
    bool allowed = true;
    int retry_after_s = 0;
    std::string window;  // "minute" or "day" when refused
  };

  // On `allowed`, the caller must call finish(actor) once the search is recorded or failed.
  Result<Decision> admit(const ApiKey& key, const std::string& actor);
  void finish(const std::string& actor);

 private:
  Store& store_;
  std::mutex mutex_;
  std::map<std::string, int> in_flight_;
};

}  // namespace candor::server
