#include "metrics.h"

#include <sstream>
#include <tuple>

namespace candor::server {
namespace {

// Label values escape backslash, double quote and newline (exposition format).
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

void Metrics::observe_request(const std::string& route, const std::string& method, int status, double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, method, status}];
  Histogram& h = latency_[route];
  ++h.count;
  h.sum += seconds;
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      ++h.counts[i];
      break;
    }
  }
}

void Metrics::count_refused_search(const std::string& reason) {
  std::lock_guard lock(mutex_);
  ++refused_[reason];
}

void Metrics::count_auth_failure() {
  std::lock_guard lock(mutex_);
  ++auth_failures_;
}

std::string Metrics::render(const Gauges& g) const {
  std::ostringstream out;
  std::lock_guard lock(mutex_);
  out << "# HELP candor_http_requests_total HTTP requests by route template, method and status.\n"
      << "# TYPE candor_http_requests_total counter\n";
  for (const auto& [k, n] : requests_) {
    out << "candor_http_requests_total{route=\"" << label(std::get<0>(k)) << "\",method=\"" << std::get<1>(k)
        << "\",status=\"" << std::get<2>(k) << "\"} " << n << "\n";
  }
  out << "# HELP candor_http_request_duration_seconds Request latency by route template.\n"
      << "# TYPE candor_http_request_duration_seconds histogram\n";
  for (const auto& [route, h] : latency_) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += h.counts[i];
      out << "candor_http_request_duration_seconds_bucket{route=\"" << label(route) << "\",le=\"" << kBuckets[i]
          << "\"} " << cumulative << "\n";
    }
    out << "candor_http_request_duration_seconds_bucket{route=\"" << label(route) << "\",le=\"+Inf\"} " << h.count
        << "\n";
    out << "candor_http_request_duration_seconds_sum{route=\"" << label(route) << "\"} " << h.sum << "\n";
    out << "candor_http_request_duration_seconds_count{route=\"" << label(route) << "\"} " << h.count << "\n";
  }
  out << "# HELP candor_search_refused_total 1:N searches refused before running, by reason.\n"
      << "# TYPE candor_search_refused_total counter\n";
  for (const char* reason : {"rate_limited", "overloaded"}) {
    auto it = refused_.find(reason);
    out << "candor_search_refused_total{reason=\"" << reason << "\"} " << (it == refused_.end() ? 0 : it->second)
        << "\n";
  }
  out << "# HELP candor_auth_failures_total Requests refused for a missing or wrong API key.\n"
      << "# TYPE candor_auth_failures_total counter\n"
      << "candor_auth_failures_total " << auth_failures_ << "\n";
  out << "# HELP candor_inference_queue_depth Inferences waiting for a worker.\n"
      << "# TYPE candor_inference_queue_depth gauge\n"
      << "candor_inference_queue_depth " << g.inference_waiting << "\n"
      << "# HELP candor_inference_active Inferences running.\n"
      << "# TYPE candor_inference_active gauge\n"
      << "candor_inference_active " << g.inference_active << "\n"
      << "# HELP candor_inference_workers Inference worker slots.\n"
      << "# TYPE candor_inference_workers gauge\n"
      << "candor_inference_workers " << g.inference_workers << "\n"
      << "# HELP candor_inference_queue_capacity Inferences allowed to wait before 503.\n"
      << "# TYPE candor_inference_queue_capacity gauge\n"
      << "candor_inference_queue_capacity " << g.inference_queue_capacity << "\n"
      << "# HELP candor_ready 1 when the engine and collections are loaded.\n"
      << "# TYPE candor_ready gauge\n"
      << "candor_ready " << (g.ready ? 1 : 0) << "\n";
  if (g.templates) {
    out << "# HELP candor_collection_templates Templates held in memory per collection.\n"
        << "# TYPE candor_collection_templates gauge\n";
    for (const auto& [name, n] : *g.templates) {
      out << "candor_collection_templates{collection=\"" << label(name) << "\"} " << n << "\n";
    }
  }
  if (g.store_up) {
    out << "# HELP candor_store_up 1 when the store answered its last ping (checked at most once a second).\n"
        << "# TYPE candor_store_up gauge\n"
        << "candor_store_up " << (*g.store_up ? 1 : 0) << "\n";
  }
  if (g.feed) {
    const FollowStatus& f = *g.feed;
    out << "# HELP candor_feed_following 1 when this node follows the store's change feed.\n"
        << "# TYPE candor_feed_following gauge\n"
        << "candor_feed_following " << (f.following ? 1 : 0) << "\n";
  }
  if (g.feed && g.feed->following) {  // without a follower the figures below would only age
    const FollowStatus& f = *g.feed;
    out << "# HELP candor_feed_applied_version Every change up to this store version is in this node's indexes.\n"
        << "# TYPE candor_feed_applied_version gauge\n"
        << "candor_feed_applied_version " << f.applied_version << "\n"
        << "# HELP candor_feed_lag_seconds Seconds since this node last confirmed its indexes level with the store.\n"
        << "# TYPE candor_feed_lag_seconds gauge\n"
        << "candor_feed_lag_seconds " << f.lag_seconds << "\n"
        << "# HELP candor_feed_changes_applied_total Change-feed entries applied (this node's own included).\n"
        << "# TYPE candor_feed_changes_applied_total counter\n"
        << "candor_feed_changes_applied_total " << f.changes_applied << "\n"
        << "# HELP candor_feed_reloads_total Full reloads after the feed was pruned past this node's version.\n"
        << "# TYPE candor_feed_reloads_total counter\n"
        << "candor_feed_reloads_total " << f.reloads << "\n"
        << "# HELP candor_feed_sync_failures_total Failed attempts to read the change feed.\n"
        << "# TYPE candor_feed_sync_failures_total counter\n"
        << "candor_feed_sync_failures_total " << f.sync_failures << "\n";
  }
  return out.str();
}

Status StoreHealth::check(Store& store) {
  std::lock_guard lock(mutex_);  // held across the ping: concurrent probes wait for its answer
  const auto now = std::chrono::steady_clock::now();
  if (!last_ || now - checked_ >= ttl_) {
    last_ = store.ping();
    checked_ = std::chrono::steady_clock::now();
  }
  return *last_;
}

std::optional<bool> StoreHealth::last() const {
  std::lock_guard lock(mutex_);
  if (!last_) return std::nullopt;
  return last_->ok();
}

}  // namespace candor::server
