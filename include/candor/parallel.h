// Candor: the one worker loop of the bulk commands (enroll, calibrate, library ingest).
//
// Thread safety: parallel_for runs fn concurrently on `workers` threads; fn must be
// safe to call so.
#pragma once

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace candor {

// Runs fn(i) for every i in [0, n) on `workers` threads, the calling one among them.
// requires: fn is safe to call concurrently.
template <typename Fn>
void parallel_for(std::size_t n, int workers, Fn fn) {
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i; (i = next++) < n;) fn(i);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < workers; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

}  // namespace candor
