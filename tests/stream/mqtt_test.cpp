// The MQTT sink against a real mosquitto broker started by the test on a free port, read
// by a real subscriber (libmosquitto): topics and payloads, Home Assistant discovery, a
// stranger's event, the broker killed and restarted, and a video loop that keeps its pace
// while the broker is down.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <mosquitto.h>
#include <nlohmann/json.hpp>

#include "candor/stream.h"
#include "mqtt_broker.h"
#include "stream_env.h"

namespace candor {
namespace {

using test::Broker;
using test::Received;
using test::Subscriber;

template <typename F>
bool eventually(F f, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

StreamEvent event(StreamEvent::Kind kind, std::int64_t track, const std::string& subject = "") {
  StreamEvent e;
  e.kind = kind;
  e.stream = "door 1";
  e.time = now_ms();
  e.track = track;
  e.duration_s = 1.5;
  e.face_px = 96;
  e.subject = subject;  // set on the unknown one too: the sink must not let it out
  e.similarity = 0.61f;
  e.threshold = 0.43f;
  e.frames_used = 3;
  return e;
}

MqttOptions options_for(const Broker& broker, const std::string& prefix = "") {
  MqttOptions o;
  o.url = broker.url(prefix);
  o.stream = "door 1";  // a space: the topics use door_1
  o.reconnect_initial = std::chrono::seconds(1);
  o.reconnect_max = std::chrono::seconds(1);
  return o;
}

std::set<std::string> keys(const nlohmann::json& j) {
  std::set<std::string> k;
  for (const auto& [key, value] : j.items()) k.insert(key);
  return k;
}

TEST(Mqtt, EventsStatesAndHomeAssistantDiscoveryReachARealBroker) {
  Broker broker;
  ASSERT_TRUE(broker.start()) << "mosquitto did not start";
  Subscriber live(broker.port(), "site/#");
  ASSERT_TRUE(eventually([&] { return live.subscribed(); }));
  auto sink = MqttSink::create(options_for(broker, "/site"));
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  (*sink)->publish(event(StreamEvent::Kind::kRecognised, 1, "anna"));
  (*sink)->publish(event(StreamEvent::Kind::kUnknown, 2, "anna"));
  (*sink)->publish(event(StreamEvent::Kind::kStreamStalled, 0));
  ASSERT_TRUE(eventually([&] { return live.on("site/door_1/event").size() == 3; }));
  const auto events = live.on("site/door_1/event");
  const auto recognised = nlohmann::json::parse(events[0].payload);
  EXPECT_EQ(recognised["event"], "recognised");
  EXPECT_EQ(recognised["subject"], "anna");
  EXPECT_EQ(recognised["stream"], "door 1");
  // A stranger: the JSON every sink sends, with nothing about who they resemble.
  const auto stranger = nlohmann::json::parse(events[1].payload);
  EXPECT_EQ(keys(stranger), (std::set<std::string>{"event", "stream", "time", "track", "duration_s", "face_px"}));
  EXPECT_EQ(events[1].payload.find("anna"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(events[2].payload)["event"], "stream_stalled");
  EXPECT_FALSE(events[0].retained);

  // A subscriber that comes later gets the retained states and the discovery configs.
  Subscriber late(broker.port(), "#");
  ASSERT_TRUE(eventually([&] {
    return late.on("site/door_1/unknown_count").size() == 1 && late.on("site/door_1/last_recognised").size() == 1 &&
           late.on("homeassistant/sensor/candor_door_1_unknown_count/config").size() == 1;
  }));
  EXPECT_EQ(late.on("site/door_1/last_recognised")[0].payload, "anna");
  EXPECT_EQ(late.on("site/door_1/unknown_count")[0].payload, "1");
  ASSERT_EQ(late.on("site/door_1/availability").size(), 1u);
  EXPECT_EQ(late.on("site/door_1/availability")[0].payload, "online");
  EXPECT_TRUE(late.on("site/door_1/event").empty()) << "events are not retained";
  for (const std::string what : {"last_recognised", "unknown_count"}) {
    const auto config = late.on("homeassistant/sensor/candor_door_1_" + what + "/config");
    ASSERT_EQ(config.size(), 1u) << what;
    EXPECT_TRUE(config[0].retained);
    const auto j = nlohmann::json::parse(config[0].payload);
    EXPECT_EQ(j["unique_id"], "candor_door_1_" + what);
    EXPECT_EQ(j["state_topic"], "site/door_1/" + what);
    EXPECT_EQ(j["availability_topic"], "site/door_1/availability");
    EXPECT_EQ(j["device"]["identifiers"][0], "candor_door_1");
    EXPECT_TRUE(j["name"].is_string());
  }

  // Closing says goodbye: availability "offline", retained.
  sink->reset();
  Subscriber after(broker.port(), "site/door_1/availability");
  ASSERT_TRUE(eventually([&] { return after.on("site/door_1/availability").size() == 1; }));
  EXPECT_EQ(after.on("site/door_1/availability")[0].payload, "offline");
}

TEST(Mqtt, TheBrokerKilledAndRestartedGetsLaterEventsAndTheRetainedStateAgain) {
  Broker broker;
  ASSERT_TRUE(broker.start());
  auto sink = MqttSink::create(options_for(broker));
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  (*sink)->publish(event(StreamEvent::Kind::kRecognised, 1, "anna"));
  ASSERT_TRUE(eventually([&] { return (*sink)->status().acknowledged >= 5; }));  // 3 announcements, 2 states
  broker.kill();
  ASSERT_TRUE(eventually([&] { return !(*sink)->status().connected; }));
  for (int track = 10; track < 15; ++track) (*sink)->publish(event(StreamEvent::Kind::kUnknown, track));
  ASSERT_TRUE(broker.start());  // same port, no retained messages left
  Subscriber sub(broker.port(), "#");
  ASSERT_TRUE(eventually([&] { return (*sink)->status().connects == 2; }, std::chrono::seconds(15)));
  ASSERT_TRUE(eventually([&] {
    return sub.on("homeassistant/sensor/candor_door_1_last_recognised/config").size() == 1 &&
           sub.on("candor/door_1/unknown_count").size() >= 1 && sub.on("candor/door_1/unknown_count").back().payload == "5";
  }));
  EXPECT_EQ(sub.on("candor/door_1/last_recognised").back().payload, "anna");
  // Events queued while the broker was down arrive once it is back (if the subscriber was
  // in time to see them), and later ones certainly do.
  (*sink)->publish(event(StreamEvent::Kind::kUnknown, 99));
  ASSERT_TRUE(eventually([&] {
    for (const auto& m : sub.on("candor/door_1/event")) {
      if (nlohmann::json::parse(m.payload)["track"] == 99) return true;
    }
    return false;
  }));
  EXPECT_EQ((*sink)->status().dropped, 0u);
}

// No broker: publish() returns at once from any thread, the queue stays bounded and keeps
// the newest; a broker that comes up later gets them.
TEST(Mqtt, ConcurrentPublishersNeverWaitForAMissingBrokerAndTheNewestAreKept) {
  Broker broker;  // not started yet
  auto o = options_for(broker);
  o.queue = 4;
  auto sink = MqttSink::create(o);
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread other([&] {
    for (int i = 0; i < 50; ++i) (*sink)->publish(event(StreamEvent::Kind::kUnknown, 1000 + i));
  });
  for (int i = 0; i < 50; ++i) (*sink)->publish(event(StreamEvent::Kind::kUnknown, i));
  other.join();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 0.5) << "publish() waited for the network";
  EXPECT_EQ((*sink)->status().pending, 4u);
  EXPECT_EQ((*sink)->status().dropped, 96u);
  ASSERT_TRUE(broker.start());
  ASSERT_TRUE(eventually([&] { return (*sink)->status().connected; }, std::chrono::seconds(15)))
      << "the sink did not connect to a broker that came up after it started";
  Subscriber sub(broker.port(), "candor/door_1/event");
  ASSERT_TRUE(eventually([&] { return sub.subscribed(); }));
  ASSERT_TRUE(eventually([&] { return (*sink)->status().pending == 0; }));
  // The subscriber may have subscribed after some were sent; what it saw are the last ones.
  for (const auto& m : sub.on("candor/door_1/event")) {
    const int track = nlohmann::json::parse(m.payload)["track"];
    EXPECT_TRUE((track >= 46 && track < 50) || track >= 1046) << track;
  }
}

TEST(Mqtt, RefusesBadUrlsAndCredentialsInTheUrl) {
  MqttOptions o;
  for (const char* url : {"http://127.0.0.1/x", "mqtt://", "mqtt://host:99999", "mqtt://host/a/+/b"}) {
    o.url = url;
    EXPECT_EQ(MqttSink::create(o).error().code, ErrorCode::kInvalidArgument) << url;
  }
  o.url = "mqtt://user:s3cret@127.0.0.1:1883";
  const auto refused = MqttSink::create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message.find("s3cret"), std::string::npos) << "a password in an error message";
  EXPECT_EQ(mqtt_stream_id("door 1/a+b#"), "door_1_a_b_");
}

// A broker that wants a password: the right one connects, a wrong one is refused and said so.
TEST(Mqtt, CredentialsFromTheOptionsAndARefusalInTheStatus) {
  test::TempDir dir;
  const int port = test::free_port();
  test::ChildProcess passwd;
  ASSERT_TRUE(passwd.start({"mosquitto_passwd", "-c", "-b", dir.file("pw"), "door", "s3cretpw"}));
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(dir.file("pw")) && std::filesystem::file_size(dir.file("pw")) > 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::ofstream(dir.file("auth.conf")) << "listener " << port << " 127.0.0.1\nallow_anonymous false\npassword_file "
                                       << dir.file("pw") << "\npersistence false\nlog_dest none\nuser root\n";
  test::ChildProcess broker;
  ASSERT_TRUE(broker.start({"mosquitto", "-c", dir.file("auth.conf")}));
  ASSERT_TRUE(test::wait_for_port(port, std::chrono::seconds(5)));
  MqttOptions o;
  o.url = "mqtt://127.0.0.1:" + std::to_string(port);
  o.username = "door";
  o.password = "s3cretpw";
  auto good = MqttSink::create(o);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(eventually([&] { return (*good)->status().connected; }));
  o.password = "wrong";
  auto bad = MqttSink::create(o);
  ASSERT_TRUE(bad.ok());
  ASSERT_TRUE(eventually([&] { return !(*bad)->status().refused.empty(); }));
  EXPECT_FALSE((*bad)->status().connected);
  EXPECT_NE((*bad)->status().refused.find("not authorised"), std::string::npos) << (*bad)->status().refused;
  EXPECT_EQ((*bad)->status().refused.find("wrong"), std::string::npos);
}

// mqtts:// verifies the broker against the system's CA certificates. The test's own CA
// stands in for them through SSL_CERT_FILE (OpenSSL's default verify paths read it): with
// it the sink connects, and a sink started before it was set was refused (unknown CA).
TEST(Mqtt, TlsTrustsTheSystemsCertificatesOnly) {
  test::TempDir dir;
  const std::string d = dir.file("");
  const std::string script =
      "cd '" + d + "' && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj '/CN=test CA' "
      "&& openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost "
      "&& printf 'subjectAltName=DNS:localhost\\n' > ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out srv.pem -days 1 -extfile ext && chmod 644 srv.key";
  if (std::system((script + " >/dev/null 2>&1").c_str()) != 0) GTEST_SKIP() << "openssl could not make test certificates";
  const int port = test::free_port();
  std::ofstream(dir.file("tls.conf")) << "listener " << port << " 127.0.0.1\nallow_anonymous true\ncertfile "
                                      << dir.file("srv.pem") << "\nkeyfile " << dir.file("srv.key")
                                      << "\npersistence false\nlog_dest none\nuser root\n";
  test::ChildProcess broker;
  ASSERT_TRUE(broker.start({"mosquitto", "-c", dir.file("tls.conf")}));
  ASSERT_TRUE(test::wait_for_port(port, std::chrono::seconds(5)));
  MqttOptions o;
  o.url = "mqtts://localhost:" + std::to_string(port);
  o.reconnect_max = std::chrono::seconds(1);
  auto untrusted = MqttSink::create(o);
  ASSERT_TRUE(untrusted.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE((*untrusted)->status().connected) << "a certificate of an unknown CA was accepted";
  untrusted->reset();
  ::setenv("SSL_CERT_FILE", dir.file("ca.pem").c_str(), 1);
  auto trusted = MqttSink::create(o);
  ASSERT_TRUE(trusted.ok());
  const bool connected = eventually([&] { return (*trusted)->status().connected; });
  ::unsetenv("SSL_CERT_FILE");
  EXPECT_TRUE(connected);
}

// ---- the video loop while the broker is down

// A source that delivers `per_run` frames, then ends (a camera that drops), over and over:
// every end is a source_error and every return a stream_resumed for the sinks.
class FlakySource final : public FrameSource {
 public:
  explicit FlakySource(int per_run) : per_run_(per_run) {}
  Status open() override {
    left_ = per_run_;
    return ok_status();
  }
  Result<cv::Mat> read() override {
    if (left_-- <= 0) return Error{ErrorCode::kIoError, "camera dropped"};
    return cv::Mat(72, 96, CV_8UC3, cv::Scalar(90, 90, 90));
  }
  double fps() const override { return 25; }
  std::string describe() const override { return "flaky"; }

 private:
  int per_run_;
  int left_ = 0;
};

class NullSink final : public EventSink {
 public:
  void publish(const StreamEvent&) override {}
};

// The same stream (40 camera drops of 20 frames, every frame to the worker) once with no
// sink at all and once with an MQTT sink whose broker is down: the frames processed are
// the same, and so is the time, within the noise of a loaded machine.
TEST(Mqtt, AVideoLoopKeepsItsPaceWhileTheBrokerIsDown) {
  test::StreamEnv env;
  ASSERT_TRUE(env.open().ok());
  auto run = [&](EventSink& sink) {
    StreamOptions o = test::StreamEnv::stream_options();
    o.detect_every = 1000;  // the loop and its events are measured, not the detector
    o.lossless = true;
    o.reconnect_initial = std::chrono::milliseconds(1);
    o.reconnect_max = std::chrono::milliseconds(1);
    o.stop_after_ends = 40;
    const auto t0 = std::chrono::steady_clock::now();
    auto stream = Stream::start(test::shared_engine(), nullptr, *env.collections, std::make_unique<FlakySource>(20), sink, o);
    EXPECT_TRUE(stream.ok());
    EXPECT_TRUE((*stream)->wait(std::chrono::seconds(30)));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::pair{(*stream)->status().frames_processed, s};
  };
  NullSink none;
  const auto [frames_none, s_none] = run(none);
  Broker down;  // never started
  auto o = options_for(down);
  o.queue = 8;
  auto mqtt = MqttSink::create(o);
  ASSERT_TRUE(mqtt.ok());
  const auto [frames_mqtt, s_mqtt] = run(**mqtt);
  EXPECT_EQ(frames_none, 800u);
  EXPECT_EQ(frames_mqtt, frames_none);
  EXPECT_LT(s_mqtt, 2 * s_none + 0.5) << "with the broker down: " << s_mqtt << " s, without a sink: " << s_none << " s";
  EXPECT_GE((*mqtt)->status().dropped, 60u);  // 39 errors and 39 resumptions through a queue of 8
  std::printf("[ measure  ] 800 frames, 40 drops: %.3f s without a sink, %.3f s with the broker down\n", s_none, s_mqtt);
}

}  // namespace
}  // namespace candor
