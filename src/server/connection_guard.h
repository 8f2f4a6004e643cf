// The connection layer under cpp-httplib: limits that httplib 0.11 (Debian 12) does
// not enforce itself.
//
// httplib reads each connection on one of its threads with a *per-read* timeout, so
// a client sending one header byte every few seconds (slowloris) is never cut off;
// it grows a header line without bound until a newline arrives; it reads chunked
// bodies into memory with no size limit; it reads and discards a body whose
// Content-Length is over the limit before answering 413; and its thread pool queues
// accepted connections without bound. GuardedServer<Base> replaces httplib's
// per-connection loop (process_and_close_socket, a virtual of httplib::Server) with
// one that reads through a stream enforcing:
//   - a deadline for the request line and headers (header_timeout) and a byte cap
//     on them (max_header_bytes): 408 / 431, then the connection is closed;
//   - a deadline for the body (body_timeout) and a byte cap on what is read of it
//     (max_body_bytes plus framing), which also bounds chunked bodies: 408 / 413;
//   - per-read and per-write inactivity timeouts (idle_timeout, write_timeout);
//   - a bounded connection queue (BoundedTaskQueue): beyond `threads` connections
//     being served and `queue` waiting, a new connection gets 503 and is closed;
//   - a waiting room: a plain-HTTP connection waits for the whole of its request line
//     and headers (and, kept alive, for its next request) in one poll() thread, not on
//     a connection thread, so idle and slowloris connections hold no connection
//     thread; at most `max_waiting` wait there (beyond: 503), each until its deadline.
// The Server's pre-routing handler calls headers_received(), which moves the
// current request from its header phase to its body phase; an early refusal
// (413 on a declared Content-Length) calls close_after_response() so the unread
// body is never parsed as a next request.
//
// TLS: GuardedServer<httplib::SSLServer> does the handshake itself (under the
// header deadline) with the SSL_CTX httplib loaded, then reads through the same limits.
//
// Thread safety: the per-request state is thread-local to the connection thread
// (httplib runs each request's handlers on the thread that reads it).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include <httplib.h>

namespace candor::server {

struct ConnectionLimits {
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{60'000};
  std::chrono::milliseconds idle_timeout{10'000};  // one read or write making no progress
  std::chrono::milliseconds write_timeout{10'000};
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::size_t keep_alive_max_requests = 100;
  std::size_t max_header_bytes = 32u * 1024u;
  std::size_t max_body_bytes = 20u * 1024u * 1024u;
  std::size_t threads = 16;       // connection threads
  std::size_t queue = 64;         // connections with complete headers waiting for a thread
  std::size_t max_waiting = 512;  // connections in the waiting room (plain HTTP)
  // Sent with the responses the guard writes itself (security headers).
  httplib::Headers default_headers;
  // Told about every connection or request the guard refuses: (status, reason, client ip).
  std::function<void(int, const std::string&, const std::string&)> on_refused;
};

// Why the guard stopped reading the current request.
enum class Violation { kNone, kHeaderTimeout, kHeadersTooLarge, kBodyTimeout, kBodyTooLarge };

// The request on this thread has all its headers: apply the body limits from here on.
void headers_received();
// Close the connection after this response (its body, if any, is left unread).
void close_after_response();
// What the guard saw wrong with the request on this thread (kNone outside a request).
Violation current_violation();
// The HTTP status and message for a violation (408, 431, 413).
int violation_status(Violation v);
std::string violation_message(Violation v, std::size_t max_body_bytes);

namespace detail {
using ProcessRequest = std::function<bool(httplib::Stream&, bool, bool&)>;
class WaitingRoom;
}  // namespace detail

// httplib's TaskQueue with a bound: `threads` workers and at most `queue` jobs waiting,
// and (when `process_request` is given) the waiting room in front of them.
// A connection beyond that is answered 503 on the accepting thread and closed.
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(const ConnectionLimits& limits, detail::ProcessRequest process_request);
  ~BoundedTaskQueue() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

 private:
  void work();
  const std::size_t queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool shutdown_ = false;
  std::unique_ptr<detail::WaitingRoom> room_;
};

namespace detail {
// One connection, plain or TLS, served through httplib's process_request. `early`
// holds bytes already read from it (by the waiting room).
bool serve_connection(int sock, void* ssl_ctx, const ConnectionLimits& limits, const ProcessRequest& process_request,
                      std::string early = {});
}  // namespace detail

// What the Server needs of a GuardedServer whatever its base.
class ListenControl {
 public:
  virtual ~ListenControl() = default;
  // httplib listens with a backlog of 5 (a compile-time constant of the library): a
  // burst of connections overflows it, and the kernel drops SYNs that clients resend
  // only after 1 s, 3 s... Listening again on the bound socket raises it.
  virtual bool set_backlog(int backlog) = 0;
};

// httplib's Server (or SSLServer) with its connection loop and task queue replaced.
template <typename Base>
class GuardedServer final : public Base, public ListenControl {
 public:
  template <typename... Args>
  explicit GuardedServer(ConnectionLimits limits, Args&&... args)
      : Base(std::forward<Args>(args)...), limits_(std::move(limits)) {
    process_ = [this](httplib::Stream& s, bool close, bool& closed) {
      return this->process_request(s, close, closed, nullptr);
    };
    // TLS connections are served on their threads from the handshake on (the waiting
    // room reads plain bytes only).
    constexpr bool kTls = std::is_base_of_v<httplib::SSLServer, Base>;
    this->new_task_queue = [this] { return new BoundedTaskQueue(limits_, kTls ? nullptr : process_); };
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    void* ctx = nullptr;
    if constexpr (std::is_base_of_v<httplib::SSLServer, Base>) ctx = this->ssl_context();
    return detail::serve_connection(sock, ctx, limits_, process_);
  }

  bool set_backlog(int backlog) override {
    const int fd = this->svr_sock_;
    return fd >= 0 && ::listen(fd, backlog) == 0;
  }

  ConnectionLimits limits_;
  detail::ProcessRequest process_;
};

}  // namespace candor::server
