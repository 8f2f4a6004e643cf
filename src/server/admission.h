// The admission gate in front of inference.
//
// cpp-httplib gives each connection a thread; without a gate, N slow uploads would
// start N inferences on 2 cores and every one of them would slow down. The gate
// lets `workers` inferences run and `queue` more wait; anything beyond gets
// kOverloaded at once (the handler answers 503 with Retry-After) instead of
// queueing without limit. Waiting is also bounded in time (queue_timeout).
//
// Thread safety: all members may be called concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>

namespace candor::server {

class AdmissionGate {
 public:
  // requires: workers >= 1, queue >= 0.
  AdmissionGate(int workers, int queue, std::chrono::milliseconds queue_timeout)
      : workers_(workers), queue_(queue), timeout_(queue_timeout) {}

  // Held while the inference runs; releases the worker slot when destroyed.
  class Ticket {
   public:
    explicit Ticket(AdmissionGate* gate) : gate_(gate) {}
    Ticket(Ticket&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    Ticket& operator=(Ticket&&) = delete;
    Ticket(const Ticket&) = delete;
    ~Ticket() {
      if (gate_ != nullptr) gate_->release();
    }

   private:
    AdmissionGate* gate_;
  };

  // ensures: a ticket once a worker slot is free; nullopt at once when `queue` others
  //          already wait, or after queue_timeout without a slot.
  std::optional<Ticket> enter() {
    std::unique_lock lock(mutex_);
    if (active_ < workers_) {
      ++active_;
      return Ticket(this);
    }
    if (waiting_ >= queue_) return std::nullopt;
    ++waiting_;
    const bool got = cv_.wait_for(lock, timeout_, [&] { return active_ < workers_; });
    --waiting_;
    if (!got) return std::nullopt;
    ++active_;
    return Ticket(this);
  }

  int active() const {
    std::lock_guard lock(mutex_);
    return active_;
  }
  int waiting() const {
    std::lock_guard lock(mutex_);
    return waiting_;
  }
  int workers() const { return workers_; }
  int queue_capacity() const { return queue_; }

 private:
  void release() {
    {
      std::lock_guard lock(mutex_);
      --active_;
    }
    cv_.notify_one();
  }

  const int workers_;
  const int queue_;
  const std::chrono::milliseconds timeout_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int active_ = 0;
  int waiting_ = 0;
};

}  // namespace candor::server
