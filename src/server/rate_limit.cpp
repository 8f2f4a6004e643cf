#include "rate_limit.h"

#include <algorithm>
#include <stdexcept>

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

Result<std::int64_t> SearchBudget::ms_until_below(const std::string& actor, TimePoint now,
                                                   std::chrono::milliseconds length, std::int64_t limit,
                                                   std::int64_t pending) {
  using std::chrono::minutes;
  // At time t the window counts the buckets from floor(t - length) on; so the window
  // starting at bucket boundary s is the one of time s + length. Search the first
  // boundary s (after the current window's first) whose count is under the limit:
  // counts only fall as s grows, and the bucket after the current one is empty.
  // Searches in flight land in the current bucket (or later), so they count until it.
  const auto floor_minute = [](TimePoint t) { return std::chrono::floor<minutes>(t); };
  const TimePoint current = floor_minute(now);
  std::int64_t lo = 1;                                                    // in minutes after floor(now - length)
  std::int64_t hi = std::chrono::duration_cast<minutes>(current - floor_minute(now - length)).count() + 1;
  const TimePoint first = floor_minute(now - length);
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    const TimePoint s = first + minutes(mid);
    auto n = store_.search_count(actor, s);
    if (!n) return n.error();
    if (*n + (s <= current ? pending : 0) < limit) hi = mid;
    else lo = mid + 1;
  }
  const TimePoint served = first + minutes(lo) + length;
  return std::chrono::duration_cast<std::chrono::milliseconds>(served - now).count();
}

Result<SearchBudget::Decision> SearchBudget::admit(const ApiKey& key, const std::string& actor, int count) {
  if (count < 1) throw std::invalid_argument("SearchBudget::admit: count must be >= 1");
  const TimePoint now = clock_ ? clock_() : now_ms();
  // One mutex across count + reserve: two requests of one key cannot both take the last slot.
  std::lock_guard lock(mutex_);
  const auto it = in_flight_.find(actor);
  // The searches admitted and not yet recorded, plus all but one of those asked for now: the
  // window must have room for every one of them.
  const int pending = (it == in_flight_.end() ? 0 : it->second) + count - 1;
  struct Window {
    const char* name;
    std::chrono::milliseconds length;
    int limit;
  };
  for (const Window w : {Window{"minute", std::chrono::minutes(1), key.searches_per_minute},
                         Window{"day", std::chrono::hours(24), key.searches_per_day}}) {
    auto n = store_.search_count(actor, now - w.length);
    if (!n) return n.error();
    if (*n + pending < w.limit) continue;
    // A budget of 0 never admits: the window's length is as good an answer as any.
    auto wait_ms = w.limit > 0 ? ms_until_below(actor, now, w.length, w.limit, pending)
                               : Result<std::int64_t>(std::chrono::milliseconds(w.length).count());
    if (!wait_ms) return wait_ms.error();
    const std::int64_t seconds = std::max<std::int64_t>(1, (*wait_ms + 999) / 1000);
    return Decision{false, static_cast<int>(seconds), w.name};
  }
  in_flight_[actor] += count;
  return Decision{};
}

void SearchBudget::finish(const std::string& actor, int count) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(actor);
  if (it != in_flight_.end() && (it->second -= count) <= 0) in_flight_.erase(it);
}

}  // namespace candor::server
