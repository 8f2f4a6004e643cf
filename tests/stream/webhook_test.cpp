// The webhook sink against a real HTTP receiver (cpp-httplib's server on a local port):
// signed deliveries, retries after failures, a bounded queue that drops the oldest.
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "candor/stream.h"

namespace candor {
namespace {

constexpr const char* kSecret = "a webhook secret of the test";

// A receiver that answers 503 to the first `fail_first` requests, then 200.
class Receiver {
 public:
  explicit Receiver(int fail_first) : fail_first_(fail_first) {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mutex_);
      if (seen_++ < fail_first_) {
        res.status = 503;
        return;
      }
      const std::int64_t ts = std::stoll(req.get_header_value("X-Candor-Timestamp"));
      signature_ok_ = signature_ok_ && req.get_header_value("X-Candor-Signature") == webhook_signature(kSecret, ts, req.body);
      bodies_.push_back(req.body);
      res.status = 204;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Receiver() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mutex_);
    return bodies_;
  }
  bool signatures_ok() {
    std::lock_guard lock(mutex_);
    return signature_ok_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  int fail_first_;
  int seen_ = 0;
  bool signature_ok_ = true;
  std::vector<std::string> bodies_;
  std::mutex mutex_;
  std::thread thread_;
};

StreamEvent unknown_event(std::int64_t track) {
  StreamEvent e;
  e.kind = StreamEvent::Kind::kUnknown;
  e.stream = "door";
  e.track = track;
  return e;
}

template <typename F>
bool eventually(F f) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

TEST(Webhook, DeliversSignedEventsAndRetriesAfterFailures) {
  Receiver receiver(2);  // the first two attempts fail
  WebhookOptions o;
  o.url = receiver.url();
  o.secret = kSecret;
  o.retry_initial = std::chrono::milliseconds(10);
  auto sink = WebhookSink::create(o);
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  (*sink)->publish(unknown_event(1));
  (*sink)->publish(unknown_event(2));
  ASSERT_TRUE(eventually([&] { return receiver.bodies().size() == 2; }));
  EXPECT_TRUE(receiver.signatures_ok());
  EXPECT_EQ(nlohmann::json::parse(receiver.bodies()[0])["track"], 1);  // in order, none lost
  EXPECT_EQ(nlohmann::json::parse(receiver.bodies()[1])["track"], 2);
  const WebhookStatus st = (*sink)->status();
  EXPECT_EQ(st.delivered, 2u);
  EXPECT_EQ(st.attempts_failed, 2u);
  EXPECT_EQ(st.given_up, 0u);
}

TEST(Webhook, ASignatureCoversTheTimestampAndTheBody) {
  const std::string s = webhook_signature(kSecret, 1000, "{}");
  EXPECT_EQ(s.rfind("sha256=", 0), 0u);
  EXPECT_EQ(s.size(), 7u + 64u);
  EXPECT_NE(s, webhook_signature(kSecret, 1001, "{}"));
  EXPECT_NE(s, webhook_signature(kSecret, 1000, "{ }"));
  EXPECT_NE(s, webhook_signature("another secret of 16+ bytes", 1000, "{}"));
}

// A dead receiver never blocks publish(): the queue stays bounded and drops the oldest.
TEST(Webhook, ConcurrentPublishersNeverWaitForADeadReceiver) {
  WebhookOptions o;
  o.url = "http://127.0.0.1:9/hook";  // discard port: nothing listens
  o.secret = kSecret;
  o.queue = 4;
  o.max_attempts = 1000;
  o.retry_initial = std::chrono::milliseconds(1000);
  o.timeout = std::chrono::milliseconds(200);
  auto sink = WebhookSink::create(o);
  ASSERT_TRUE(sink.ok());
  const auto t0 = std::chrono::steady_clock::now();
  std::thread other([&] {
    for (int i = 0; i < 50; ++i) (*sink)->publish(unknown_event(1000 + i));
  });
  for (int i = 0; i < 50; ++i) (*sink)->publish(unknown_event(i));
  other.join();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 0.5) << "publish() waited for the network";
  const WebhookStatus st = (*sink)->status();
  EXPECT_LE(st.pending, 5u);  // the queue, and the one in flight
  EXPECT_GE(st.dropped, 95u);
}

TEST(Webhook, RefusesABadUrlOrAShortSecret) {
  WebhookOptions o;
  o.url = "ftp://example.org/x";
  o.secret = kSecret;
  EXPECT_EQ(WebhookSink::create(o).error().code, ErrorCode::kInvalidArgument);
  o.url = "http://example.org:8080/hook";
  o.secret = "short";
  EXPECT_EQ(WebhookSink::create(o).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace candor
