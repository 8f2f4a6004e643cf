// Rate limits: failed-authentication throttling per client IP, and the per-key
// 1:N search budget.
//
// Thread safety: all members may be called concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "api_keys.h"
#include "candor/store.h"

namespace candor::server {

// Counts failed authentications per client IP in a sliding window (the address of
// client_address(): behind a trusted proxy, the client it names). An IP with
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
// of concurrent requests cannot all slip under the limit. Refusals by this budget
// are audited but not counted (Store::record_search), so a client retrying too
// early does not push its own window forward.
//
// The windows are the store's minute buckets: at time t a window of length W holds
// every bucket from the one containing t - W onwards (so up to W + 1 minute of
// searches). A refusal's Retry-After is exact for that rule: the first moment the
// window holds fewer searches than the budget, found from the same counts
// (issue 16: a client that waits what it is told gets served).
class SearchBudget {
 public:
  // `clock`: the store's clock (ServerOptions::clock; tests inject one).
  SearchBudget(Store& store, std::function<TimePoint()> clock) : store_(store), clock_(std::move(clock)) {}

  struct Decision {
    bool allowed = true;
    int retry_after_s = 0;  // when refused: whole seconds, rounded up, >= 1
    std::string window;     // "minute" or "day" when refused
  };

  // Admits `count` searches at once (a probe with several faces is that many searches).
  // On `allowed`, the caller must call finish(actor, count) once they are recorded or failed.
  Result<Decision> admit(const ApiKey& key, const std::string& actor, int count = 1);
  void finish(const std::string& actor, int count = 1);

 private:
  // ms from `now` until the window of `length` holds fewer than `limit` searches.
  // requires: mutex_ held.
  Result<std::int64_t> ms_until_below(const std::string& actor, TimePoint now, std::chrono::milliseconds length,
                                      std::int64_t limit, std::int64_t pending);

  Store& store_;
  const std::function<TimePoint()> clock_;
  std::mutex mutex_;
  std::map<std::string, int> in_flight_;
};

}  // namespace candor::server
