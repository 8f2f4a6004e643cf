// Prometheus metrics, exposed at /metrics in the text format (version 0.0.4).
//
// Labels are route templates ("/v1/collections/{c}/search"), never raw paths, so
// neither subject ids nor collection names from URLs multiply the series; the
// per-collection template gauge is the one place collection names appear, and it is
// rendered only for a scrape with a key holding "metrics", over the collections that
// key sees (routes_ops.cpp): an anonymous scrape would otherwise name every
// collection, and a hidden collection must look missing (issue 16).
//
// Thread safety: all members may be called concurrently.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "candor/collections.h"
#include "candor/store.h"

namespace candor::server {

class Metrics {
 public:
  void observe_request(const std::string& route, const std::string& method, int status, double seconds);
  void count_refused_search(const std::string& reason);
  void count_auth_failure();

  // Gauges sampled at scrape time.
  struct Gauges {
    int inference_active = 0;
    int inference_waiting = 0;
    int inference_workers = 0;
    int inference_queue_capacity = 0;
    bool ready = false;
    // Per collection; nullopt: the family is left out (an anonymous scrape).
    std::optional<std::vector<std::pair<std::string, std::size_t>>> templates;
    std::optional<bool> store_up;          // the last (cached) ping; unset before the first
    std::optional<FollowStatus> feed;      // once the collections are loaded
  };
  std::string render(const Gauges& gauges) const;

  // Upper bounds (seconds) of the latency histogram buckets; +Inf is implicit.
  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1.0,  2.5,   5.0,  10.0, 30.0};

 private:
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> counts{};  // per bucket, not cumulative
    std::uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;  // route, method, status
  std::map<std::string, Histogram> latency_;                                      // route
  std::map<std::string, std::uint64_t> refused_;
  std::uint64_t auth_failures_ = 0;
};

// The store's health for /readyz and /metrics: one Store::ping() per `ttl` at
// most, so that load balancers probing every node often cost the database little.
// Concurrent callers share the answer of the one that pings.
class StoreHealth {
 public:
  explicit StoreHealth(std::chrono::milliseconds ttl = std::chrono::seconds(1)) : ttl_(ttl) {}
  // ensures: ok, or the ping's error (kStoreUnavailable while the database is down).
  Status check(Store& store);
  // The last answer without pinging; nullopt before the first check.
  std::optional<bool> last() const;

 private:
  const std::chrono::milliseconds ttl_;
  mutable std::mutex mutex_;
  std::chrono::steady_clock::time_point checked_{};
  std::optional<Status> last_;
};

}  // namespace candor::server
