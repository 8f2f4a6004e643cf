// The webhook sink (candor/stream.h): a bounded queue and one delivery thread.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <regex>
#include <thread>

#include <httplib.h>
#include <sodium.h>

#include "candor/stream.h"

namespace candor {
namespace {

constexpr std::size_t kMinSecretBytes = 16;

class WebhookSinkImpl final : public WebhookSink {
 public:
  WebhookSinkImpl(WebhookOptions options, std::string host, int port, std::string path)
      : options_(std::move(options)), host_(std::move(host)), port_(port), path_(std::move(path)) {
    thread_ = std::thread([this] { deliver(); });
  }

  ~WebhookSinkImpl() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void publish(const StreamEvent& event) override {
    std::string body = stream_event_to_json(event);
    std::lock_guard lock(mutex_);
    if (queue_.size() >= options_.queue) {
      queue_.pop_front();
      ++status_.dropped;
    }
    queue_.push_back(std::move(body));
    cv_.notify_all();
  }

  WebhookStatus status() const override {
    std::lock_guard lock(mutex_);
    WebhookStatus s = status_;
    s.pending = queue_.size() + (in_flight_ ? 1 : 0);
    return s;
  }

 private:
  bool post(httplib::Client& client, const std::string& body) {
    const std::int64_t ts = now_ms().time_since_epoch().count();
    httplib::Headers headers = {{"X-Candor-Timestamp", std::to_string(ts)},
                                {"X-Candor-Signature", webhook_signature(options_.secret, ts, body)}};
    auto res = client.Post(path_, headers, body, "application/json");
    return res && res->status >= 200 && res->status < 300;
  }

  void deliver() {
    httplib::Client client(host_, port_);
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(options_.timeout).count();
    const auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout).count() % 1000000;
    client.set_connection_timeout(secs, usecs);
    client.set_read_timeout(secs, usecs);
    client.set_write_timeout(secs, usecs);
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      std::string body = std::move(queue_.front());
      queue_.pop_front();
      in_flight_ = true;
      auto delay = options_.retry_initial;
      bool done = false;
      for (int attempt = 1; attempt <= options_.max_attempts && !done; ++attempt) {
        lock.unlock();
        done = post(client, body);
        lock.lock();
        if (done) break;
        ++status_.attempts_failed;
        if (stopping_) break;  // one try each while shutting down
        if (attempt < options_.max_attempts) {
          cv_.wait_for(lock, delay, [this] { return stopping_; });
          delay = std::min(delay * 2, options_.retry_max);
        }
      }
      in_flight_ = false;
      if (done) ++status_.delivered;
      else ++status_.given_up;
    }
  }

  const WebhookOptions options_;
  const std::string host_;
  const int port_;
  const std::string path_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool in_flight_ = false;
  bool stopping_ = false;
  WebhookStatus status_;
  std::thread thread_;
};

}  // namespace

std::string webhook_signature(const std::string& secret, std::int64_t timestamp_ms, const std::string& body) {
  const std::string message = std::to_string(timestamp_ms) + "." + body;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(message.data()), message.size());
  crypto_auth_hmacsha256_final(&state, mac);
  char hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  return std::string("sha256=") + hex;
}

Result<std::unique_ptr<WebhookSink>> WebhookSink::create(WebhookOptions options) {
  if (options.secret.size() < kMinSecretBytes) {
    return Error{ErrorCode::kInvalidArgument, "a webhook secret is at least 16 bytes"};
  }
  if (options.queue == 0 || options.max_attempts < 1) {
    return Error{ErrorCode::kInvalidArgument, "a webhook needs a queue of at least one event and one attempt"};
  }
  static const std::regex kUrl(R"(^http://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\])(?::([0-9]{1,5}))?(/[^\s]*)?$)");
  std::smatch m;
  if (!std::regex_match(options.url, m, kUrl)) {
    return Error{ErrorCode::kInvalidArgument, "a webhook URL is http://host[:port][/path]: " + mask_credentials(options.url)};
  }
  const int port = m[2].matched ? std::stoi(m[2].str()) : 80;
  if (port < 1 || port > 65535) return Error{ErrorCode::kInvalidArgument, "a webhook port is 1..65535"};
  const std::string path = m[3].matched ? m[3].str() : "/";
  if (sodium_init() < 0) return Error{ErrorCode::kInternal, "libsodium did not initialise"};
  return std::unique_ptr<WebhookSink>(std::make_unique<WebhookSinkImpl>(std::move(options), m[1].str(), port, path));
}

}  // namespace candor
