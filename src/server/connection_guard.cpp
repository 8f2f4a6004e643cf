#include "connection_guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "candor/json.h"

namespace candor::server {
namespace {

using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events` or `deadline` passes. ensures: false on timeout or error.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
    if (r > 0) return (p.revents & (events | POLLHUP | POLLERR)) != 0;
    if (r < 0 && errno != EINTR) return false;
  }
}

// Bytes in and out of one connection, plain or TLS; non-blocking underneath, so
// every wait is a poll bounded by the caller's deadline.
class Transport {
 public:
  virtual ~Transport() = default;
  // ensures: > 0 bytes read; 0 at the peer's orderly close; -1 on error or at the deadline.
  virtual ssize_t recv_some(char* buf, std::size_t n, Clock::time_point deadline) = 0;
  virtual bool send_all(const char* p, std::size_t n, Clock::time_point deadline) = 0;
  // Data already decrypted and waiting (TLS): no need to poll the socket for it.
  virtual bool pending() const { return false; }
  virtual void close_notify() {}
};

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  ssize_t recv_some(char* buf, std::size_t n, Clock::time_point deadline) override {
    for (;;) {
      const ssize_t r = ::recv(fd_, buf, n, 0);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      if ((errno != EAGAIN && errno != EWOULDBLOCK) || !wait_fd(fd_, POLLIN, deadline)) return -1;
    }
  }
  bool send_all(const char* p, std::size_t n, Clock::time_point deadline) override {
    while (n > 0) {
      const ssize_t r = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (r > 0) {
        p += r, n -= static_cast<std::size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(fd_, POLLOUT, deadline)) continue;
      return false;
    }
    return true;
  }

 private:
  int fd_;
};

class TlsTransport final : public Transport {
 public:
  TlsTransport(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ~TlsTransport() override { SSL_free(ssl_); }
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  // The handshake, under the header deadline: a client that stalls it is cut off too.
  bool handshake(Clock::time_point deadline) {
    for (;;) {
      ERR_clear_error();
      const int r = SSL_accept(ssl_);
      if (r == 1) return true;
      if (!wait_for(SSL_get_error(ssl_, r), deadline)) return false;
    }
  }
  ssize_t recv_some(char* buf, std::size_t n, Clock::time_point deadline) override {
    for (;;) {
      ERR_clear_error();
      const int r = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(n, 1u << 30)));
      if (r > 0) return r;
      const int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      if (!wait_for(err, deadline)) return -1;
    }
  }
  bool send_all(const char* p, std::size_t n, Clock::time_point deadline) override {
    while (n > 0) {
      ERR_clear_error();
      const int r = SSL_write(ssl_, p, static_cast<int>(std::min<std::size_t>(n, 1u << 30)));
      if (r > 0) {
        p += r, n -= static_cast<std::size_t>(r);
        continue;
      }
      if (!wait_for(SSL_get_error(ssl_, r), deadline)) return false;
    }
    return true;
  }
  bool pending() const override { return SSL_pending(ssl_) > 0; }
  void close_notify() override { SSL_shutdown(ssl_); }

 private:
  bool wait_for(int ssl_error, Clock::time_point deadline) {
    if (ssl_error == SSL_ERROR_WANT_READ) return wait_fd(fd_, POLLIN, deadline);
    if (ssl_error == SSL_ERROR_WANT_WRITE) return wait_fd(fd_, POLLOUT, deadline);
    return false;
  }
  int fd_;
  SSL* ssl_;
};

// Per-request state of the connection this thread serves.
struct RequestState {
  bool headers_received = false;
  bool close = false;
  Violation violation = Violation::kNone;
  class GuardStream* stream = nullptr;
};
thread_local RequestState* t_request = nullptr;
// Set by BoundedTaskQueue while it runs a job it has no room for: answer 503 and close.
thread_local bool t_refuse_connection = false;
// The waiting room of the pool whose worker this thread is (null elsewhere); on the
// accepting thread, while it runs a job the queue has no room for.
thread_local detail::WaitingRoom* t_room = nullptr;

// httplib's view of the connection: reads and writes with the phase deadlines and caps.
class GuardStream final : public httplib::Stream {
 public:
  GuardStream(int fd, Transport& t, const ConnectionLimits& limits, std::string early)
      : fd_(fd), t_(t), limits_(limits), early_(std::move(early)) {
    // httplib's own framing adds little: chunk-size lines, multipart boundaries (in the body cap).
    body_cap_ = limits.max_body_bytes + limits.max_body_bytes / 16 + 64 * 1024;
  }

  void begin_request(RequestState& state) {
    state_ = &state;
    header_bytes_ = body_bytes_ = written_ = 0;
    in_body_ = false;
    deadline_ = Clock::now() + limits_.header_timeout;
  }
  void enter_body() {
    in_body_ = true;
    deadline_ = Clock::now() + limits_.body_timeout;
  }
  std::size_t written() const { return written_; }
  bool buffered() const { return early_pos_ < early_.size() || pos_ < len_ || t_.pending(); }

  bool is_readable() const override { return true; }  // read() waits, bounded by its deadline
  bool is_writable() const override { return true; }

  ssize_t read(char* ptr, std::size_t size) override {
    if (state_ == nullptr || state_->violation != Violation::kNone) return -1;
    if (early_pos_ < early_.size()) return hand_out(ptr, size, early_.data(), early_pos_, early_.size());
    if (pos_ == len_) {
      const auto now = Clock::now();
      const auto deadline = std::min(deadline_, now + limits_.idle_timeout);
      const ssize_t n = t_.recv_some(buf_.data(), buf_.size(), deadline);
      if (n <= 0) {
        // A stall past a deadline, or mid-request past the idle timeout, is the client's
        // doing: answer 408. (Before the first byte there is nobody to answer.)
        if (n < 0 && (in_body_ || header_bytes_ > 0 || Clock::now() >= deadline_)) {
          state_->violation = in_body_ ? Violation::kBodyTimeout : Violation::kHeaderTimeout;
        }
        return n;
      }
      pos_ = 0, len_ = static_cast<std::size_t>(n);
    }
    return hand_out(ptr, size, buf_.data(), pos_, len_);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    if (!t_.send_all(ptr, size, Clock::now() + limits_.write_timeout)) return -1;
    written_ += size;
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
  // Copies what the caller asked for from buffered bytes, counting them against the
  // cap of the phase they belong to.
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  ssize_t hand_out(char* ptr, std::size_t size, const char* src, std::size_t& pos, std::size_t len) {
    const std::size_t k = std::min(size, len - pos);
    std::size_t& counted = in_body_ ? body_bytes_ : header_bytes_;
    if (counted + k > (in_body_ ? body_cap_ : limits_.max_header_bytes)) {
      state_->violation = in_body_ ? Violation::kBodyTooLarge : Violation::kHeadersTooLarge;
      return -1;
    }
    counted += k;
    std::memcpy(ptr, src + pos, k);
    pos += k;
    return static_cast<ssize_t>(k);
  }

  void address(bool remote, std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    auto* sa = reinterpret_cast<sockaddr*>(&addr);
    if ((remote ? ::getpeername(fd_, sa, &len) : ::getsockname(fd_, sa, &len)) != 0) return;
    std::array<char, NI_MAXHOST> host{};
    std::array<char, NI_MAXSERV> serv{};
    if (::getnameinfo(sa, len, host.data(), host.size(), serv.data(), serv.size(), NI_NUMERICHOST | NI_NUMERICSERV) ==
        0) {
      ip = host.data();
      port = std::atoi(serv.data());
    }
  }

  int fd_;
  Transport& t_;
  const ConnectionLimits& limits_;
  std::string early_;  // read by the waiting room before this thread took the connection
  std::size_t early_pos_ = 0;
  std::array<char, 16 * 1024> buf_{};
  std::size_t pos_ = 0, len_ = 0;
  RequestState* state_ = nullptr;
  bool in_body_ = false;
  Clock::time_point deadline_{};
  std::size_t header_bytes_ = 0, body_bytes_ = 0, body_cap_ = 0, written_ = 0;
};

std::string peer_ip(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  std::array<char, NI_MAXHOST> host{};
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      ::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host.data(), host.size(), nullptr, 0, NI_NUMERICHOST) != 0) {
    return "";
  }
  return host.data();
}

// A whole response the guard writes itself, when httplib has not answered.
std::string canned_response(int status, const std::string& reason_phrase, const Error& error,
                            const httplib::Headers& headers) {
  const std::string body = error_to_json(error).dump();
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase + "\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
  return out;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Bad Request";
  }
}

void close_socket(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// Closing with unread input makes the kernel send a reset, which can destroy the
// error response before the client reads it. So: stop sending, then read and drop
// what is still arriving, briefly and boundedly, before closing.
void lingering_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + std::chrono::milliseconds(1000);
  std::array<char, 16 * 1024> sink{};
  std::size_t drained = 0;
  while (drained < (8u << 20) && wait_fd(fd, POLLIN, std::min(until, Clock::now() + std::chrono::milliseconds(200)))) {
    const ssize_t n = ::recv(fd, sink.data(), sink.size(), 0);
    if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN))) break;
    if (n > 0) drained += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

}  // namespace

void headers_received() {
  if (t_request == nullptr) return;
  t_request->headers_received = true;
  t_request->stream->enter_body();
}

void close_after_response() {
  if (t_request != nullptr) t_request->close = true;
}

Violation current_violation() { return t_request != nullptr ? t_request->violation : Violation::kNone; }

int violation_status(Violation v) {
  switch (v) {
    case Violation::kHeaderTimeout:
    case Violation::kBodyTimeout: return 408;
    case Violation::kHeadersTooLarge: return 431;
    case Violation::kBodyTooLarge: return 413;
    case Violation::kNone: break;
  }
  return 400;
}

std::string violation_message(Violation v, std::size_t max_body_bytes) {
  switch (v) {
    case Violation::kHeaderTimeout: return "the request line and headers did not arrive in time";
    case Violation::kBodyTimeout: return "the request body did not arrive in time";
    case Violation::kHeadersTooLarge: return "request headers too large";
    case Violation::kBodyTooLarge:
      return "request body over the limit of " + std::to_string(max_body_bytes) + " bytes";
    case Violation::kNone: break;
  }
  return "malformed request";
}

namespace detail {

// Connections waiting for the rest of their request line and headers, or idle between
// requests, watched by one poll() thread so that they hold no connection thread. A
// connection leaves when its headers are complete (to the task queue, with the bytes
// read so far), when it closes, or at its deadline (keep_alive_timeout while idle,
// header_timeout once its first byte has come: then with a 408).
class WaitingRoom {
 public:
  WaitingRoom(ConnectionLimits limits, ProcessRequest process, std::function<void(std::function<void()>)> dispatch)
      : limits_(std::move(limits)), process_(std::move(process)), dispatch_(std::move(dispatch)) {
    if (::pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("WaitingRoom: pipe2 failed");
    thread_ = std::thread([this] { run(); });
  }
  ~WaitingRoom() {
    stop();
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  WaitingRoom(const WaitingRoom&) = delete;
  WaitingRoom& operator=(const WaitingRoom&) = delete;

  // ensures: false when the room is full or closed (the caller keeps the socket).
  bool park(int sock) {
    {
      std::lock_guard lock(mutex_);
      if (stopped_ || count_ >= limits_.max_waiting) return false;
      ++count_;
      incoming_.push_back(sock);
    }
    wake();
    return true;
  }

  // Closes every waiting connection; park() refuses from now on.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Guest {
    int fd;
    std::string bytes;
    Clock::time_point deadline;
  };

  void wake() {
    const char b = 1;
    (void)!::write(wake_[1], &b, 1);
  }

  void leave(std::vector<Guest>& guests, std::size_t i) {
    guests[i] = std::move(guests.back());
    guests.pop_back();
    std::lock_guard lock(mutex_);
    --count_;
  }

  void run() {
    std::vector<Guest> guests;
    std::vector<pollfd> fds;
    std::array<char, 16 * 1024> buf{};
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (stopped_) break;
        for (const int fd : incoming_) guests.push_back({fd, {}, Clock::now() + limits_.keep_alive_timeout});
        incoming_.clear();
      }
      auto next = Clock::now() + std::chrono::seconds(1);
      fds.assign(1, pollfd{wake_[0], POLLIN, 0});
      for (const auto& g : guests) {
        fds.push_back({g.fd, POLLIN, 0});
        next = std::min(next, g.deadline);
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
      if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(0, wait) + 1)) < 0 && errno != EINTR) break;
      if ((fds[0].revents & POLLIN) != 0) {
        char drain[64];
        while (::read(wake_[0], drain, sizeof drain) > 0) {
        }
      }
      const auto now = Clock::now();
      // Back to front: leave() moves the last guest into the freed slot.
      for (std::size_t i = guests.size(); i-- > 0;) {
        Guest& g = guests[i];
        if ((fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          const ssize_t n = ::recv(g.fd, buf.data(), buf.size(), 0);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_socket(g.fd);
            leave(guests, i);
            continue;
          }
          if (n > 0) {
            if (g.bytes.empty()) g.deadline = now + limits_.header_timeout;  // the request has begun
            const std::size_t from = g.bytes.size() < 3 ? 0 : g.bytes.size() - 3;
            g.bytes.append(buf.data(), static_cast<std::size_t>(n));
            // Whole headers, or more than may be headers (the connection thread answers 431).
            if (g.bytes.find("\r\n\r\n", from) != std::string::npos || g.bytes.size() > limits_.max_header_bytes) {
              hand_over(g);
              leave(guests, i);
              continue;
            }
          }
        }
        if (now >= g.deadline) {
          if (!g.bytes.empty()) refuse_slow(g.fd);  // idle ones just close, as keep-alive ends
          close_socket(g.fd);
          leave(guests, i);
        }
      }
    }
    for (const auto& g : guests) close_socket(g.fd);
    std::lock_guard lock(mutex_);
    for (const int fd : incoming_) close_socket(fd);
    incoming_.clear();
    count_ = 0;
  }

  void hand_over(Guest& g) {
    dispatch_([process = process_, limits = &limits_, fd = g.fd, bytes = std::move(g.bytes)]() mutable {
      serve_connection(fd, nullptr, *limits, process, std::move(bytes));
    });
  }

  void refuse_slow(int fd) {
    const std::string reply =
        canned_response(408, reason_phrase(408),
                        {ErrorCode::kInvalidArgument, violation_message(Violation::kHeaderTimeout, 0)},
                        limits_.default_headers);
    (void)::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (limits_.on_refused) limits_.on_refused(408, violation_message(Violation::kHeaderTimeout, 0), peer_ip(fd));
  }

  const ConnectionLimits limits_;
  const ProcessRequest process_;
  const std::function<void(std::function<void()>)> dispatch_;
  int wake_[2] = {-1, -1};
  std::mutex mutex_;
  std::vector<int> incoming_;
  std::size_t count_ = 0;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace detail

BoundedTaskQueue::BoundedTaskQueue(const ConnectionLimits& limits, detail::ProcessRequest process_request)
    : queue_(limits.queue) {
  if (process_request) {
    room_ = std::make_unique<detail::WaitingRoom>(limits, std::move(process_request),
                                                  [this](std::function<void()> fn) { enqueue(std::move(fn)); });
  }
  for (std::size_t i = 0; i < std::max<std::size_t>(1, limits.threads); ++i) threads_.emplace_back([this] { work(); });
}

BoundedTaskQueue::~BoundedTaskQueue() { shutdown(); }

void BoundedTaskQueue::enqueue(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    if (!shutdown_ && jobs_.size() < queue_) {
      jobs_.push_back(std::move(fn));
      cv_.notify_one();
      return;
    }
  }
  // No room: the job runs here, on the accepting thread, in refusal mode: a new
  // connection may still wait in the waiting room (parking does not block); else a
  // 503 written without blocking, then close. The socket is never leaked.
  t_refuse_connection = true;
  t_room = room_.get();
  fn();
  t_room = nullptr;
  t_refuse_connection = false;
}

void BoundedTaskQueue::shutdown() {
  // The waiting room first: it hands connections to the workers, who are stopping.
  if (room_) room_->stop();
  {
    std::lock_guard lock(mutex_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void BoundedTaskQueue::work() {
  t_room = room_.get();
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return shutdown_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // shut down and drained
      fn = std::move(jobs_.front());
      jobs_.pop_front();
    }
    fn();
  }
}

namespace detail {

bool serve_connection(int sock, void* ssl_ctx, const ConnectionLimits& limits, const ProcessRequest& process_request,
                      std::string early) {
  ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
  const bool may_park = ssl_ctx == nullptr && t_room != nullptr;
  if (t_refuse_connection && !(may_park && early.empty() && t_room->park(sock))) {
    const std::string ip = peer_ip(sock);
    const std::string reply = canned_response(
        503, reason_phrase(503), {ErrorCode::kOverloaded, "too many connections; retry shortly"}, limits.default_headers);
    // Best effort and never blocking: this runs on the accepting thread.
    (void)::send(sock, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close_socket(sock);
    if (limits.on_refused) limits.on_refused(503, "too many connections", ip);
    return false;
  }
  if (t_refuse_connection) return true;  // parked by the accepting thread
  const int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // A new plain connection waits for its headers in the waiting room, not on this thread.
  if (may_park && early.empty() && t_room->park(sock)) return true;

  std::unique_ptr<Transport> transport;
  if (ssl_ctx != nullptr) {
    SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx));
    if (ssl == nullptr || SSL_set_fd(ssl, sock) != 1) {
      if (ssl != nullptr) SSL_free(ssl);
      close_socket(sock);
      return false;
    }
    auto tls = std::make_unique<TlsTransport>(sock, ssl);
    if (!tls->handshake(Clock::now() + limits.header_timeout)) {
      tls.reset();
      close_socket(sock);
      return false;
    }
    transport = std::move(tls);
  } else {
    transport = std::make_unique<PlainTransport>(sock);
  }

  GuardStream stream(sock, *transport, limits, std::move(early));
  bool ok = true;
  bool unread_input = false;  // closing mid-request: the client may still be sending
  bool parked = false;        // handed back to the waiting room, still open
  for (std::size_t left = std::max<std::size_t>(1, limits.keep_alive_max_requests); left > 0; --left) {
    // Between requests an idle connection waits at most keep_alive_timeout for its next
    // byte: in the waiting room when there is one (freeing this thread), else here.
    if (!stream.buffered()) {
      if (may_park && t_room->park(sock)) {
        parked = true;
        break;
      }
      if (!wait_fd(sock, POLLIN, Clock::now() + limits.keep_alive_timeout)) break;
    }
    RequestState state;
    state.stream = &stream;
    stream.begin_request(state);
    t_request = &state;
    bool closed = false;
    ok = process_request(stream, left == 1, closed);
    t_request = nullptr;
    if (state.violation != Violation::kNone && stream.written() == 0) {
      // httplib gave up on the request line or headers without answering: say why.
      const int status = violation_status(state.violation);
      const std::string reply =
          canned_response(status, reason_phrase(status),
                          {ErrorCode::kInvalidArgument, violation_message(state.violation, limits.max_body_bytes)},
                          limits.default_headers);
      stream.write(reply.data(), reply.size());
      if (limits.on_refused) limits.on_refused(status, violation_message(state.violation, limits.max_body_bytes), peer_ip(sock));
    }
    // Without the headers parsed, or after an early refusal, what follows on the
    // socket is not a request boundary: close rather than parse a body as a request.
    if (state.close || state.violation != Violation::kNone || !state.headers_received) {
      unread_input = true;
      break;
    }
    if (!ok || closed) break;
  }
  if (parked) return ok;
  transport->close_notify();
  transport.reset();
  if (unread_input) {
    lingering_close(sock);
  } else {
    close_socket(sock);
  }
  return ok;
}

}  // namespace detail
}  // namespace candor::server
