// A real mosquitto broker started on a free local port and a real libmosquitto subscriber,
// for the tests of the MQTT sink (tests/stream/mqtt_test.cpp) and of streams run by the
// server (tests/server/streams_test.cpp).
#pragma once

#include <atomic>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <mosquitto.h>

#include "../store/store_test_util.h"
#include "child_process.h"

namespace candor::test {

// mosquitto 2 on a local port: anonymous, no persistence (a restart loses every retained
// message, which is what the sink's re-announcement must repair), no log.
class Broker {
 public:
  explicit Broker(int port = free_port()) : port_(port) {
    std::ofstream(dir_.file("mosquitto.conf")) << "listener " << port_ << " 127.0.0.1\n"
                                               << "allow_anonymous true\npersistence false\nlog_dest none\n";
  }
  bool start() {
    return process_.start({"mosquitto", "-c", dir_.file("mosquitto.conf")}) &&
           wait_for_port(port_, std::chrono::seconds(5));
  }
  void kill() { process_.kill(); }
  int port() const { return port_; }
  std::string url(const std::string& prefix = "") const {
    return "mqtt://127.0.0.1:" + std::to_string(port_) + prefix;
  }

 private:
  int port_;
  TempDir dir_;
  ChildProcess process_;
};

struct Received {
  std::string topic;
  std::string payload;
  bool retained = false;
};

// A subscriber to `filter` that keeps what arrives and reconnects on its own.
class Subscriber {
 public:
  Subscriber(int port, std::string filter) : filter_(std::move(filter)) {
    mosquitto_lib_init();
    mosq_ = mosquitto_new(nullptr, true, this);
    mosquitto_reconnect_delay_set(mosq_, 1, 1, false);
    mosquitto_connect_callback_set(mosq_, [](mosquitto* m, void* self, int rc) {
      if (rc == 0) mosquitto_subscribe(m, nullptr, static_cast<Subscriber*>(self)->filter_.c_str(), 1);
    });
    mosquitto_message_callback_set(mosq_, [](mosquitto*, void* self, const mosquitto_message* msg) {
      auto* s = static_cast<Subscriber*>(self);
      std::lock_guard lock(s->mutex_);
      s->messages_.push_back({msg->topic, std::string(static_cast<const char*>(msg->payload), msg->payloadlen), msg->retain});
    });
    mosquitto_subscribe_callback_set(mosq_, [](mosquitto*, void* self, int, int, const int*) {
      static_cast<Subscriber*>(self)->subscribed_ = true;
    });
    mosquitto_connect_async(mosq_, "127.0.0.1", port, 30);
    mosquitto_loop_start(mosq_);
  }
  ~Subscriber() {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
  }
  bool subscribed() const { return subscribed_; }
  std::vector<Received> messages() {
    std::lock_guard lock(mutex_);
    return {messages_.begin(), messages_.end()};
  }
  std::vector<Received> on(const std::string& topic) {
    std::vector<Received> out;
    for (auto& m : messages()) {
      if (m.topic == topic) out.push_back(m);
    }
    return out;
  }

 private:
  std::string filter_;
  mosquitto* mosq_ = nullptr;
  std::atomic<bool> subscribed_{false};
  std::mutex mutex_;
  std::deque<Received> messages_;
};

}  // namespace candor::test
