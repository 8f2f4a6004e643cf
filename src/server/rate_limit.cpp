#include "rate_limit.h"

#include <algorithm>

namespace candor::server {

void AuthThrottle::prune(std::deque<std::chrono::steady_clock::time_point>& q,
                         std::chrono::steady_clock::time_point now) const {
  while (!q.empty() && now - q.front() >= window_) q.pop_front();
}

int AuthThrottle::blocked_for(const std::string& ip) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  auto it = failures_.find(ip);
  if (it == failures_.end()) return 0;
  prune(it->second, now);
  if (it->second.empty()) {
    failures_.erase(it);
    return 0;
  }
  if (static_cast<int>(it->second.size()) < allowed_) return 0;
  // Blocked until the oldest counted failure leaves the window.
  const auto wait = std::chrono::duration_cast<std::chrono::seconds>(it->second.front() + window_ - now).count();
  return static_cast<int>(std::max<std::int64_t>(1, wait + 1));
}

void AuthThrottle::record_failure(const std::string& ip) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  if (failures_.size() >= kMaxTrackedIps && failures_.find(ip) == failures_.end()) {
    // Drop entries whose failures have all expired; if none, drop an arbitrary one.
    for (auto it = failures_.begin(); it != failures_.end();) {
      prune(it->second, now);
      it = it->second.empty() ? failures_.erase(it) : std::next(it);
    }
    if (failures_.size() >= kMaxTrackedIps) failures_.erase(failures_.begin());
  }
  auto& q = failures_[ip];
  q.push_back(now);
  // A window never needs more than `allowed_` entries to decide.
  while (static_cast<int>(q.size()) > allowed_) q.pop_front();
}

Result<SearchBudget::Decision> SearchBudget::admit(const ApiKey& key, const std::string& actor) {
  const TimePoint now = now_ms();
  // One mutex across count + reserve: two requests of one key cannot both take the last slot.
  std::lock_guard lock(mutex_);
  const int pending = in_flight_[actor];
  auto minute = store_.search_count(actor, now - std::chrono::minutes(1));
  if (!minute) return minute.error();
  if (*minute + pending >= key.searches_per_minute) {
    // Minute buckets: the oldest counted bucket drops out at the next minute boundary.
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    return Decision{false, static_cast<int>(60 - secs % 60), "minute"};
  }
  auto day = store_.search_count(actor, now - std::chrono::hours(24));
  if (!day) return day.error();
  if (*day + pending >= key.searches_per_day) {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    return Decision{false, static_cast<int>(3600 - secs % 3600), "day"};
  }
  ++in_flight_[actor];
  return Decision{};
}

void SearchBudget::finish(const std::string& actor) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(actor);
  if (it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
}

}  // namespace candor::server
