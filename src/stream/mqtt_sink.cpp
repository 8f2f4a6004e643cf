// The MQTT sink (candor/stream.h): a bounded queue, a hand-over thread of its own, and
// libmosquitto's network thread for the connection, its keep-alive and its reconnects.
//
// Why a thread of our own between publish() and libmosquitto: mosquitto_publish() with
// QoS 1 keeps every message it is given (in memory, unbounded) until the broker
// acknowledges it, also while the broker is down; handing over only while connected and
// at most max_inflight at a time keeps the bound ours. And libmosquitto runs its
// callbacks on its network thread with its own locks held, so they only change our state
// and wake our thread: no mosquitto_publish() from inside a callback, no lock-order cycle.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <regex>
#include <thread>

#include <mosquitto.h>
#include <nlohmann/json.hpp>

#include "candor/stream.h"

namespace candor {
namespace {

constexpr int kQos = 1;  // at least once: an event survives a dropped TCP connection

struct Message {
  std::string topic;
  std::string payload;
  bool retain = false;
};

class MqttSinkImpl final : public MqttSink {
 public:
  MqttSinkImpl(MqttOptions options, std::string host, int port, bool tls, std::string prefix)
      : options_(std::move(options)), host_(std::move(host)), port_(port), tls_(tls) {
    const std::string id = mqtt_stream_id(options_.stream);
    const std::string base = prefix + "/" + id;
    event_topic_ = base + "/event";
    availability_topic_ = base + "/availability";
    last_recognised_topic_ = base + "/last_recognised";
    unknown_count_topic_ = base + "/unknown_count";
    discovery_ = {discovery_config(id, "last_recognised", "last person recognised", last_recognised_topic_),
                  discovery_config(id, "unknown_count", "unknown people seen", unknown_count_topic_)};
  }

  // Sets up the client and starts both threads. ensures: kInternal when libmosquitto refuses.
  Status start() {
    mosq_ = mosquitto_new(nullptr, true, this);  // a random client id, a clean session
    if (mosq_ == nullptr) return Error{ErrorCode::kInternal, "libmosquitto could not create a client"};
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    if (!options_.username.empty() &&
        mosquitto_username_pw_set(mosq_, options_.username.c_str(),
                                  options_.password.empty() ? nullptr : options_.password.c_str()) != MOSQ_ERR_SUCCESS) {
      return Error{ErrorCode::kInternal, "libmosquitto refused the MQTT username"};  // never the password
    }
    if (tls_ && mosquitto_int_option(mosq_, MOSQ_OPT_TLS_USE_OS_CERTS, 1) != MOSQ_ERR_SUCCESS) {
      return Error{ErrorCode::kInternal, "libmosquitto cannot use the system's CA certificates"};
    }
    // The broker says "offline" for us when we vanish without a DISCONNECT (crash, network).
    if (mosquitto_will_set(mosq_, availability_topic_.c_str(), 7, "offline", kQos, true) != MOSQ_ERR_SUCCESS) {
      return Error{ErrorCode::kInternal, "libmosquitto refused the Last Will"};
    }
    mosquitto_reconnect_delay_set(mosq_, static_cast<unsigned>(std::max<std::int64_t>(1, options_.reconnect_initial.count())),
                                  static_cast<unsigned>(std::max<std::int64_t>(1, options_.reconnect_max.count())), true);
    mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) { static_cast<MqttSinkImpl*>(self)->on_connect(rc); });
    mosquitto_disconnect_callback_set(mosq_, [](mosquitto*, void* self, int) { static_cast<MqttSinkImpl*>(self)->on_disconnect(); });
    mosquitto_publish_callback_set(mosq_, [](mosquitto*, void* self, int) { static_cast<MqttSinkImpl*>(self)->on_acknowledged(); });
    // A broker that is down now is not an error: the hand-over thread connects when it is up.
    sender_ = std::thread([this] { hand_over(); });
    return ok_status();
  }

  ~MqttSinkImpl() override {
    if (sender_.joinable()) {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, options_.flush_timeout, [this] { return !connected_ || (queue_.empty() && in_flight_ == 0); });
      stopping_ = true;
      lock.unlock();
      cv_.notify_all();
      sender_.join();
    }
    if (mosq_ != nullptr) {
      bool connected, loop_started;
      {
        std::lock_guard lock(mutex_);
        connected = connected_;
        loop_started = loop_started_;
      }
      if (loop_started) {
        if (connected) mosquitto_publish(mosq_, nullptr, availability_topic_.c_str(), 7, "offline", kQos, true);
        mosquitto_disconnect(mosq_);  // sent after the publish above: one ordered packet queue
        mosquitto_loop_stop(mosq_, false);
      }
      mosquitto_destroy(mosq_);
    }
  }

  void publish(const StreamEvent& event) override {
    std::string body = stream_event_to_json(event);
    std::lock_guard lock(mutex_);
    if (event.kind == StreamEvent::Kind::kRecognised) {
      last_recognised_ = event.subject;
      state_dirty_ = true;
    } else if (event.kind == StreamEvent::Kind::kUnknown) {
      ++unknown_count_;
      state_dirty_ = true;
    }
    if (queue_.size() >= options_.queue) {
      queue_.pop_front();
      ++status_.dropped;
    }
    queue_.push_back({event_topic_, std::move(body), false});
    cv_.notify_all();
  }

  MqttStatus status() const override {
    std::lock_guard lock(mutex_);
    MqttStatus s = status_;
    s.connected = connected_;
    s.pending = queue_.size();
    return s;
  }

 private:
  std::string discovery_config(const std::string& id, const std::string& what, const std::string& label,
                               const std::string& state_topic) const {
    const std::string unique = "candor_" + id + "_" + what;
    nlohmann::json j = {{"name", label},
                        {"unique_id", unique},
                        {"object_id", unique},
                        {"state_topic", state_topic},
                        {"availability_topic", availability_topic_},
                        {"payload_available", "online"},
                        {"payload_not_available", "offline"},
                        {"device",
                         {{"identifiers", {"candor_" + id}},
                          {"name", "Candor " + options_.stream},
                          {"manufacturer", "Candor"},
                          {"model", "candor watch"}}}};
    if (what == "unknown_count") {
      j["state_class"] = "total_increasing";  // restarts at 0 with the sink: HA reads a drop as a reset
      j["icon"] = "mdi:account-question";
    } else {
      j["icon"] = "mdi:account-check";
    }
    return j.dump();
  }

  // libmosquitto's network thread: only state changes and a wake-up.
  void on_connect(int rc) {
    std::lock_guard lock(mutex_);
    if (rc != 0) {  // refused (bad credentials, ...): libmosquitto retries
      status_.refused = mosquitto_connack_string(rc);
      return;
    }
    status_.refused.clear();
    connected_ = true;
    announce_ = true;
    state_dirty_ = true;
    in_flight_ = 0;  // what the last connection had in flight, libmosquitto resends itself
    ++status_.connects;
    cv_.notify_all();
  }
  void on_disconnect() {
    std::lock_guard lock(mutex_);
    connected_ = false;
    cv_.notify_all();
  }
  void on_acknowledged() {
    std::lock_guard lock(mutex_);
    if (in_flight_ > 0) --in_flight_;
    ++status_.acknowledged;
    cv_.notify_all();
  }

  // The first connection. libmosquitto 2.0.11's network thread reconnects a connection it
  // has had, but when the first mosquitto_connect_async() fails at once (a local broker
  // that is down: ECONNREFUSED), the thread started after it never retries
  // (Mqtt.ConcurrentPublishersNeverWaitForAMissingBrokerAndTheNewestAreKept). So the
  // first connect is ours, with the same doubling delays, and the thread starts after it.
  // requires: the lock held. ensures: false when stopping.
  bool first_connect(std::unique_lock<std::mutex>& lock) {
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(options_.reconnect_initial, std::chrono::seconds(1)));
    const auto max_delay = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(options_.reconnect_max, std::chrono::seconds(1)));
    while (!stopping_) {
      lock.unlock();
      int rc = mosquitto_connect_async(mosq_, host_.c_str(), port_, static_cast<int>(options_.keepalive.count()));
      if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_start(mosq_);
      lock.lock();
      if (rc == MOSQ_ERR_SUCCESS) {
        loop_started_ = true;
        return true;
      }
      cv_.wait_for(lock, delay, [this] { return stopping_; });
      delay = std::min(delay * 2, max_delay);
    }
    return false;
  }

  // Our thread: connects first, then hands queued messages to libmosquitto while
  // connected, in order.
  void hand_over() {
    std::unique_lock lock(mutex_);
    if (!first_connect(lock)) return;
    for (;;) {
      cv_.wait(lock, [this] {
        return stopping_ ||
               (connected_ && (announce_ || state_dirty_ || (!queue_.empty() && in_flight_ < options_.max_inflight)));
      });
      if (stopping_) return;
      std::vector<Message> batch;
      const bool announced = announce_, states = state_dirty_;
      if (announce_) {
        batch.push_back({availability_topic_, "online", true});
        batch.push_back({options_.discovery_prefix + "/sensor/candor_" + mqtt_stream_id(options_.stream) +
                             "_last_recognised/config", discovery_[0], true});
        batch.push_back({options_.discovery_prefix + "/sensor/candor_" + mqtt_stream_id(options_.stream) +
                             "_unknown_count/config", discovery_[1], true});
        announce_ = false;
      }
      if (state_dirty_) {
        if (!last_recognised_.empty()) batch.push_back({last_recognised_topic_, last_recognised_, true});
        batch.push_back({unknown_count_topic_, std::to_string(unknown_count_), true});
        state_dirty_ = false;
      }
      const std::size_t fixed = batch.size();
      while (!queue_.empty() && in_flight_ + (batch.size() - fixed) < options_.max_inflight) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_flight_ += batch.size();
      lock.unlock();
      std::size_t sent = 0;
      for (; sent < batch.size(); ++sent) {
        const Message& m = batch[sent];
        const int rc = mosquitto_publish(mosq_, nullptr, m.topic.c_str(), static_cast<int>(m.payload.size()),
                                         m.payload.data(), kQos, m.retain);
        if (rc != MOSQ_ERR_SUCCESS) break;  // the connection went: the rest waits for the next one
      }
      lock.lock();
      if (sent < batch.size()) {
        in_flight_ -= batch.size() - sent;
        for (std::size_t i = batch.size(); i-- > std::max(sent, fixed);) queue_.push_front(std::move(batch[i]));
        if (sent < fixed) {  // an announcement or a state not sent: send them all again
          announce_ = announce_ || announced;
          state_dirty_ = state_dirty_ || states;
        }
        while (queue_.size() > options_.queue) {
          queue_.pop_front();
          ++status_.dropped;
        }
        // Wait for libmosquitto to report the connection state rather than spin.
        cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
      }
    }
  }

  const MqttOptions options_;
  const std::string host_;
  const int port_;
  const bool tls_;
  std::string event_topic_, availability_topic_, last_recognised_topic_, unknown_count_topic_;
  std::vector<std::string> discovery_;
  mosquitto* mosq_ = nullptr;

  mutable std::mutex mutex_;
  bool loop_started_ = false;
  std::condition_variable cv_;
  std::deque<Message> queue_;
  std::size_t in_flight_ = 0;
  bool connected_ = false;
  bool announce_ = false;
  bool state_dirty_ = false;
  bool stopping_ = false;
  std::string last_recognised_;
  std::uint64_t unknown_count_ = 0;
  MqttStatus status_;
  std::thread sender_;
};

}  // namespace

std::string mqtt_stream_id(const std::string& stream) {
  std::string id = stream;
  for (char& c : id) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!safe) c = '_';
  }
  return id;
}

namespace {

struct Broker {
  std::string host;
  int port = 0;
  bool tls = false;
  std::string prefix;
};

Result<Broker> parse_options(const MqttOptions& options) {
  static const std::regex kUrl(R"(^(mqtts?)://([^/@\s]+@)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\])(?::([0-9]{1,5}))?(/[^\s]*)?$)");
  std::smatch m;
  if (!std::regex_match(options.url, m, kUrl)) {
    return Error{ErrorCode::kInvalidArgument, "an MQTT URL is mqtt(s)://host[:port][/prefix]: " + mask_credentials(options.url)};
  }
  if (m[2].matched) {
    return Error{ErrorCode::kInvalidArgument,
                 "credentials do not go in the MQTT URL (ps and logs show it): " + mask_credentials(options.url)};
  }
  Broker b;
  b.tls = m[1].str() == "mqtts";
  b.port = m[4].matched ? std::stoi(m[4].str()) : (b.tls ? 8883 : 1883);  // IANA's MQTT ports
  if (b.port < 1 || b.port > 65535) return Error{ErrorCode::kInvalidArgument, "an MQTT port is 1..65535"};
  b.prefix = m[5].matched ? m[5].str().substr(1) : "candor";
  while (!b.prefix.empty() && b.prefix.back() == '/') b.prefix.pop_back();
  if (b.prefix.empty()) b.prefix = "candor";
  if (b.prefix.find_first_of("+#") != std::string::npos || options.discovery_prefix.find_first_of("+#") != std::string::npos) {
    return Error{ErrorCode::kInvalidArgument, "an MQTT topic prefix holds no '+' or '#' (wildcards)"};
  }
  if (options.stream.empty()) return Error{ErrorCode::kInvalidArgument, "an MQTT sink needs the stream's name"};
  if (options.queue == 0 || options.max_inflight == 0) {
    return Error{ErrorCode::kInvalidArgument, "an MQTT sink needs a queue and an in-flight window of at least one"};
  }
  b.host = m[3].str();
  if (b.host.front() == '[') b.host = b.host.substr(1, b.host.size() - 2);
  return b;
}

}  // namespace

Status MqttSink::check(const MqttOptions& options) {
  auto parsed = parse_options(options);
  if (!parsed) return parsed.error();
  return ok_status();
}

Result<std::unique_ptr<MqttSink>> MqttSink::create(MqttOptions options) {
  auto b = parse_options(options);
  if (!b) return b.error();
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });  // not thread safe itself; never cleaned up
  auto sink = std::make_unique<MqttSinkImpl>(std::move(options), std::move(b->host), b->port, b->tls, std::move(b->prefix));
  if (auto st = sink->start(); !st) return st.error();
  return std::unique_ptr<MqttSink>(std::move(sink));
}

}  // namespace candor
