// What one piece of work costs in time and peak memory, for tests that bound it.
//
// The peak is the process's VmHWM (/proc/self/status) after resetting it to the current
// resident size (`5` into /proc/self/clear_refs, Linux >= 4.0), less that size: what the
// work added at its highest, whatever the test process held before. Free heap memory is
// returned to the system first (glibc's malloc_trim), or the work would reuse resident
// pages unseen. Measured in-process, not in a forked child: OpenCV's TBB pool is not
// safe to use after fork.
//
// Under a sanitizer both are inflated (ASan's shadow memory and quarantine, its slower
// code), so tests scale their bounds by kSanitizerSlack.
//
// Thread safety: one measurement at a time per process; other threads must be idle.
#pragma once

#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

namespace candor::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr double kSanitizerSlack = 4.0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr double kSanitizerSlack = 4.0;
#else
inline constexpr double kSanitizerSlack = 1.0;
#endif
#else
inline constexpr double kSanitizerSlack = 1.0;
#endif

struct Cost {
  double seconds = 0;           // wall time of the work
  std::int64_t peak_bytes = 0;  // the highest resident size during the work, above its start
};

// "VmHWM" or "VmRSS" of this process, in bytes; -1 when /proc does not say.
inline std::int64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  return -1;
}

template <typename Work>
Cost measure_cost(Work&& work) {
  ::malloc_trim(0);
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const std::int64_t start = proc_status_bytes("VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  work();
  Cost cost;
  cost.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  cost.peak_bytes = proc_status_bytes("VmHWM") - start;
  return cost;
}

}  // namespace candor::test
