// Camera streams through the server (issue 12, /v1/streams): a real server in-process
// over a video file written by the test (a face moving across a plain background, as
// tests/stream does), its events over Server-Sent Events, the source URL's credentials
// kept out of every response, log line and audit entry, a restart that resumes a running
// stream, two nodes on one store that run it once (the lease), and hostile requests.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "candor/analyzer.h"
#include "candor/server.h"
#include "candor/stream.h"
#include "mqtt_broker.h"
#include "test_support.h"

namespace candor {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kPassword = "Pw-9f3kQz";  // must never leave the store in clear
constexpr const char* kUser = "camuser7";

// Sized read (GCC 12 warns falsely of a null dereference in istreambuf_iterator under -Werror).
std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary | std::ios::ate);
  std::string out(static_cast<std::size_t>(std::max<std::streamoff>(0, in.tellg())), '\0');
  in.seekg(0);
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

// Everything the process writes to stderr while it lives (OpenCV's and FFmpeg's own
// warnings go there, not through the server's log).
class StderrCapture {
 public:
  explicit StderrCapture(std::filesystem::path file) : file_(std::move(file)) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~StderrCapture() { stop(); }
  std::string stop() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
    }
    return read_file(file_);
  }

 private:
  std::filesystem::path file_;
  int saved_ = -1;
};

std::string face_crop(int sample_no, int face_index, float margin) {
  const auto bytes = test::face_crop_jpeg(sample_no, face_index, margin);
  return {bytes.begin(), bytes.end()};
}

// A video of one face moving across a plain background (tests/stream's recipe).
void write_video(const std::filesystem::path& path, const std::vector<std::uint8_t>& face_jpeg, int frames) {
  const cv::Mat face = cv::imdecode(face_jpeg, cv::IMREAD_COLOR);
  cv::VideoWriter writer(path.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 25, cv::Size(640, 360));
  if (!writer.isOpened()) throw std::runtime_error("MJPG writer unavailable");
  for (int i = 0; i < frames; ++i) {
    cv::Mat frame(360, 640, CV_8UC3, cv::Scalar(70, 110, 90));
    const int h = 160 + i;
    cv::Mat scaled;
    cv::resize(face, scaled, cv::Size(h * face.cols / face.rows, h));
    const int x = 120 + 4 * i, y = 60;
    scaled.copyTo(frame(cv::Rect(x, y, scaled.cols, scaled.rows) & cv::Rect(0, 0, 640, 360)));
    writer.write(frame);
  }
}

// One analyser for every node of the run: loading its networks is most of a node's start.
const FaceAnalyzer& shared_analyzer() {
  static std::unique_ptr<FaceAnalyzer> a = [] {
    auto created = FaceAnalyzer::create();
    if (!created) throw std::runtime_error("analyzer: " + created.error().message);
    return std::move(*created);
  }();
  return *a;
}

// One node over the store in `dir`, its log captured, serving until destroyed.
class Node {
 public:
  Node(const std::filesystem::path& dir, const std::string& node_id, const std::filesystem::path& snapshots = {}) {
    ServerOptions o;
    o.stream_snapshot_dir = snapshots;
    o.store_uri = (dir / "store.db").string();
    o.port = 0;
    o.engine = &test::shared_engine();
    o.analyzer = &shared_analyzer();
    o.workers = 2;
    o.retention_interval_min = 0;
    o.node_id = node_id;
    o.stream_allow_files = true;
    o.stream_lease_ms = 1500;  // renewed every 0.5 s: a loaded machine's late round keeps it
    o.stream_sse_heartbeat_ms = 200;
    o.stream_max_event_clients = 2;
    o.stream_event_queue = 64;
    o.log_sink = [this](std::string_view line) {
      std::lock_guard lock(mutex_);
      log_ += line;
      log_ += '\n';
    };
    auto created = Server::create(o);
    if (!created) throw std::runtime_error("server: " + created.error().message);
    server_ = std::move(*created);
    if (auto k = server_->take_bootstrap_key()) bootstrap = *k;
    thread_ = std::thread([this] { (void)server_->run(); });
    for (int i = 0; i < 1000 && !server_->ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!server_->ready()) throw std::runtime_error("not ready: " + log());
  }
  ~Node() { stop(); }
  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(30, 0);
    return c;
  }
  std::string log() {
    std::lock_guard lock(mutex_);
    return log_;
  }
  std::string bootstrap;

 private:
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::mutex mutex_;
  std::string log_;
};

class StreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("candor_streams_test_" + std::to_string(::getpid()) + "_" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    video_ = dir_ / "anna.avi";
    write_video(video_, test::face_crop_jpeg(3, 1, 0.4f), 40);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  httplib::Headers auth() const { return {{"X-API-Key", key_}}; }
  httplib::Result post(Node& n, const std::string& path, const json& body) {
    return n.client().Post(path.c_str(), auth(), body.dump(), "application/json");
  }
  json get(Node& n, const std::string& path) {
    auto r = n.client().Get(path.c_str(), auth());
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    return r ? json::parse(r->body, nullptr, false) : json();
  }

  // A collection "staff" with anna enrolled (from other photos than the video's).
  void prepare(Node& n, bool enroll = true) {
    key_ = n.bootstrap;
    ASSERT_EQ(post(n, "/v1/collections", {{"name", "staff"}, {"purpose", "door access"}, {"retention_days", 30}})->status, 201);
    ASSERT_EQ(post(n, "/v1/collections/staff/consents",
                   {{"subject", "anna"}, {"evidence_sha256", std::string(64, 'a')}, {"collected_by", "test"}})
                  ->status,
              201);
    if (!enroll) return;
    auto e = n.client().Post("/v1/collections/staff/subjects/anna/faces", auth(),
                             httplib::MultipartFormDataItems{{"images", face_crop(1, 2, 0.3f), "a1.jpg", "image/jpeg"},
                                                             {"images", face_crop(1, 2, 0.6f), "a2.jpg", "image/jpeg"}});
    ASSERT_EQ(e->status, 200) << e->body;
  }
  json stream_spec(const std::string& source, bool start) const {
    return {{"name", "door-1"}, {"source", source}, {"collection", "staff"}, {"purpose", "door access"},
            {"reason", "door 1 entry control"}, {"start", start}};
  }
  std::string create(Node& n, const std::string& source, bool start) {
    auto r = post(n, "/v1/streams", stream_spec(source, start));
    EXPECT_EQ(r->status, 201) << r->body;
    return json::parse(r->body).value("id", "");
  }
  // Polls `what` until it holds or `limit` passes.
  template <typename F>
  static bool eventually(F what, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto until = Clock::now() + limit;
    while (Clock::now() < until) {
      if (what()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return what();
  }
  // The SSE body until it holds `needle` (or the time passes).
  std::string events_until(Node& n, const std::string& id, const std::string& needle,
                           std::chrono::seconds limit = std::chrono::seconds(30), const std::string& last_event_id = "") {
    std::string body;
    auto c = n.client();
    c.set_read_timeout(static_cast<time_t>(limit.count()), 0);
    const auto until = Clock::now() + limit;
    httplib::Headers headers = auth();
    if (!last_event_id.empty()) headers.emplace("Last-Event-ID", last_event_id);
    c.Get(("/v1/streams/" + id + "/events").c_str(), headers, [&](const char* data, std::size_t len) {
      body.append(data, len);
      return body.find(needle) == std::string::npos && Clock::now() < until;
    });
    return body;
  }

  std::filesystem::path dir_;
  std::filesystem::path video_;
  std::string key_;
};

TEST_F(StreamsTest, CreateStartEventsStatusStopDelete) {
  // The stream's decisions also go to a real MQTT broker, with Home Assistant discovery.
  test::Broker broker;
  ASSERT_TRUE(broker.start());
  test::Subscriber subscriber(broker.port(), "#");
  ASSERT_TRUE(eventually([&] { return subscriber.subscribed(); }));
  Node n(dir_, "node-a");
  prepare(n);
  json spec = stream_spec(video_.string(), false);
  spec["outputs"] = {{"mqtt", {{"url", broker.url("/doors")}}}};
  auto created = post(n, "/v1/streams", spec);
  ASSERT_EQ(created->status, 201) << created->body;
  EXPECT_EQ(json::parse(created->body)["outputs"]["mqtt"]["url"], broker.url("/doors"));
  const std::string id = json::parse(created->body).value("id", "");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(get(n, "/v1/streams/" + id)["state"], "stopped");
  auto started = post(n, "/v1/streams/" + id + "/start", json::object());
  ASSERT_EQ(started->status, 200) << started->body;
  const std::string events = events_until(n, id, "\"event\":\"recognised\"");
  EXPECT_NE(events.find("data: {"), std::string::npos) << events;
  const auto recognised = events.find("\"event\":\"recognised\"");
  ASSERT_NE(recognised, std::string::npos) << events;
  EXPECT_NE(events.find("\"subject\":\"anna\""), std::string::npos) << events;
  // Every event has an id; a client that reconnects with the id of the one before gets the
  // recognised event again, with its id, and one whose id is not this hub's is told of a gap.
  const auto id_at = events.rfind("id: ", recognised);
  ASSERT_NE(id_at, std::string::npos) << events;
  const std::string event_id = events.substr(id_at + 4, events.find('\n', id_at) - id_at - 4);
  const auto dash = event_id.rfind('-');
  ASSERT_NE(dash, std::string::npos) << event_id;
  const std::string before = event_id.substr(0, dash + 1) + std::to_string(std::stoll(event_id.substr(dash + 1)) - 1);
  const std::string replayed = events_until(n, id, "id: " + event_id, std::chrono::seconds(5), before);
  const auto again = replayed.find("id: " + event_id + "\ndata: ");
  ASSERT_NE(again, std::string::npos) << replayed;
  EXPECT_NE(replayed.find("\"event\":\"recognised\"", again), std::string::npos) << replayed;
  EXPECT_EQ(replayed.find("no longer held"), std::string::npos) << replayed;
  std::string foreign;  // (the connections before end when the server next writes to them)
  ASSERT_TRUE(eventually([&] {
    foreign = events_until(n, id, "no longer held", std::chrono::seconds(5), "1-1");
    return foreign.find("overloaded") == std::string::npos;
  }, std::chrono::seconds(10))) << foreign;
  EXPECT_NE(foreign.find(": some events since Last-Event-ID are no longer held"), std::string::npos) << foreign;
  json status;
  ASSERT_TRUE(eventually([&] {
    status = get(n, "/v1/streams/" + id);
    return status.value("running_here", false) && status["status"].value("decisions", 0) >= 1;
  })) << status.dump();
  EXPECT_EQ(status["state"], "running");
  EXPECT_EQ(status["node"], "node-a");
  ASSERT_TRUE(eventually([&] {
    for (const auto& m : subscriber.on("doors/door-1/event")) {
      if (m.payload.find("\"subject\":\"anna\"") != std::string::npos) return true;
    }
    return false;
  })) << subscriber.messages().size() << " MQTT messages, none a recognised anna";
  EXPECT_FALSE(subscriber.on("homeassistant/sensor/candor_door-1_last_recognised/config").empty());
  EXPECT_GE(status["status"].value("recognised", 0), 1);
  EXPECT_GT(status["status"].value("frames_processed", 0), 0);
  ASSERT_EQ(post(n, "/v1/streams/" + id + "/stop", json::object())->status, 200);
  ASSERT_TRUE(eventually([&] { return !get(n, "/v1/streams/" + id).value("running_here", true); }));
  EXPECT_EQ(get(n, "/v1/streams/" + id)["node"], nullptr) << "a stopped stream holds no lease";
  auto deleted = n.client().Delete(("/v1/streams/" + id).c_str(), auth());
  ASSERT_EQ(deleted->status, 200) << deleted->body;
  EXPECT_EQ(n.client().Get(("/v1/streams/" + id).c_str(), auth())->status, 404);
  // Each change audited once, under the creating key.
  const json audit = get(n, "/v1/audit?limit=1000");
  std::map<std::string, int> ops;
  for (const auto& e : audit["entries"]) ++ops[e.value("operation", "")];
  for (const char* op : {"stream_create", "stream_start", "stream_stop", "stream_delete"}) EXPECT_EQ(ops[op], 1) << op;
}

// detect_every and buffer_frames are kept with the stream and run: detecting on every
// frame, the stream runs one detection round per frame it takes (at the default of 3,
// one per three). A stream created without them shows the defaults. The shutter
// (shutter_s) is kept and shown as given, and a stream runs with it; one created without
// it, or with null, shows null (unknown, no deblurring).
TEST_F(StreamsTest, DetectEveryAndBufferFramesAreKeptAndRun) {
  Node n(dir_, "node-a");
  prepare(n);
  json spec = stream_spec(video_.string(), true);
  spec["detect_every"] = 1;
  spec["buffer_frames"] = 5;
  spec["shutter_s"] = 0.02;
  auto created = post(n, "/v1/streams", spec);
  ASSERT_EQ(created->status, 201) << created->body;
  const std::string id = json::parse(created->body).value("id", "");
  json status;
  ASSERT_TRUE(eventually([&] {
    status = get(n, "/v1/streams/" + id);
    return status.value("running_here", false) && status["status"].value("frames_processed", 0) >= 12;
  })) << status.dump();
  EXPECT_EQ(status["detect_every"], 1);
  EXPECT_EQ(status["buffer_frames"], 5);
  EXPECT_EQ(status["shutter_s"], 0.02) << status.dump();
  EXPECT_EQ(json::parse(created->body)["shutter_s"], 0.02) << created->body;
  const auto processed = status["status"].value("frames_processed", 0), detections = status["status"].value("detections", 0);
  EXPECT_GE(detections + 1, processed) << "detect_every 1 skipped frames";
  ASSERT_EQ(post(n, "/v1/streams/" + id + "/stop", json::object())->status, 200);

  json plain = stream_spec(video_.string(), true);
  plain["name"] = "door-2";
  auto second = post(n, "/v1/streams", plain);
  ASSERT_EQ(second->status, 201) << second->body;
  const std::string id2 = json::parse(second->body).value("id", "");
  EXPECT_EQ(json::parse(second->body)["detect_every"], StreamOptions{}.detect_every);
  EXPECT_EQ(json::parse(second->body)["buffer_frames"], StreamOptions{}.buffer_frames);
  ASSERT_TRUE(json::parse(second->body).contains("shutter_s")) << second->body;
  EXPECT_TRUE(json::parse(second->body)["shutter_s"].is_null()) << second->body;
  ASSERT_TRUE(eventually([&] {
    status = get(n, "/v1/streams/" + id2);
    return status.value("running_here", false) && status["status"].value("frames_processed", 0) >= 12;
  })) << status.dump();
  // One round per three frames of the source: frames the grabber dropped under load (a
  // sanitizer's worker beside other jobs) count, since the worker detects by frame number.
  EXPECT_LE(status["status"].value("detections", 0) * 3, status["status"].value("frames_read", 0) + 3) << status.dump();
  ASSERT_TRUE(status.contains("shutter_s")) << status.dump();
  EXPECT_TRUE(status["shutter_s"].is_null()) << status.dump();

  // An integer is a number too (1 s, the longest); null is unset. Both stay stopped.
  for (const auto& [name, shutter] : std::vector<std::pair<std::string, json>>{{"door-3", 1}, {"door-4", nullptr}}) {
    json other = stream_spec(video_.string(), false);
    other["name"] = name;
    other["shutter_s"] = shutter;
    auto made = post(n, "/v1/streams", other);
    ASSERT_EQ(made->status, 201) << name << " " << made->body;
    const json shown = get(n, "/v1/streams/" + json::parse(made->body).value("id", ""));
    if (shutter.is_null()) {
      ASSERT_TRUE(shown.contains("shutter_s")) << shown.dump();
      EXPECT_TRUE(shown["shutter_s"].is_null()) << shown.dump();
    } else {
      EXPECT_EQ(shown["shutter_s"], 1.0) << shown.dump();
    }
  }
  // The list shows each stream's shutter as its GET does. (The list held in a variable: a
  // range-for over a member of a temporary reads it after it is destroyed.)
  const json list = get(n, "/v1/streams");
  ASSERT_TRUE(list.contains("streams")) << list.dump();
  for (const json& s : list["streams"]) {
    if (s["id"] == id) {
      EXPECT_EQ(s["shutter_s"], 0.02) << s.dump();
    } else if (s["id"] == id2) {
      EXPECT_TRUE(s["shutter_s"].is_null()) << s.dump();
    }
  }
}

// strangers_named (DecisionOptions::strangers_named) is kept with the stream, shown as it
// runs, and its decisions are searches at the FPIR it leaves each of a track's three
// decisions (the audit entry's "fpir"); 0 decides at the collection's point alone (no
// "fpir"), and a stream created without it shows and runs the library's default.
TEST_F(StreamsTest, TheStrangersShareIsKeptShownAndDecidedAt) {
  Node n(dir_, "node-a");
  prepare(n);
  const auto decision_fpirs = [&](const std::string& stream_name) {
    std::vector<json> fpirs;
    const json audit = get(n, "/v1/audit?limit=1000");
    for (const auto& e : audit["entries"]) {
      const json& d = e.value("details", json::object());
      if (e.value("operation", "") == "search" && d.value("source", "").find(stream_name) != std::string::npos) {
        fpirs.push_back(d.contains("fpir") ? d["fpir"] : json(nullptr));
      }
    }
    return fpirs;
  };
  const auto run = [&](const std::string& stream_name, const json& share) {
    json spec = stream_spec(video_.string(), true);
    spec["name"] = stream_name;
    if (!share.is_discarded()) spec["strangers_named"] = share;
    auto created = post(n, "/v1/streams", spec);
    EXPECT_EQ(created->status, 201) << created->body;
    const std::string id = json::parse(created->body).value("id", "");
    EXPECT_TRUE(eventually([&] { return !decision_fpirs(stream_name).empty(); }, std::chrono::seconds(30)))
        << "no decision of " << stream_name << " was audited";
    EXPECT_EQ(post(n, "/v1/streams/" + id + "/stop", json::object())->status, 200);
    return get(n, "/v1/streams/" + id);
  };
  const double per_decision = 1.0 / static_cast<double>(1 + DecisionOptions{}.max_redecisions);

  const json shared = run("door-share", 0.03);
  EXPECT_DOUBLE_EQ(shared.value("strangers_named", -1.0), 0.03) << shared.dump();
  for (const json& fpir : decision_fpirs("door-share")) {
    ASSERT_TRUE(fpir.is_number()) << "a decision was not sized: " << fpir.dump();
    EXPECT_NEAR(fpir.get<double>(), 0.03 * per_decision, 1e-12);
  }
  const json alone = run("door-alone", 0);
  EXPECT_EQ(alone.value("strangers_named", -1.0), 0.0) << alone.dump();
  for (const json& fpir : decision_fpirs("door-alone")) EXPECT_TRUE(fpir.is_null()) << fpir.dump();
  const json plain = run("door-plain", json(json::value_t::discarded));
  const double fallback = DecisionOptions{}.strangers_named.value_or(0);
  EXPECT_DOUBLE_EQ(plain.value("strangers_named", -1.0), fallback) << plain.dump();
  for (const json& fpir : decision_fpirs("door-plain")) {
    ASSERT_TRUE(fpir.is_number()) << fpir.dump();
    EXPECT_NEAR(fpir.get<double>(), fallback * per_decision, 1e-12);
  }
  // null is the default too, and the list shows each share as its GET does.
  json null_share = stream_spec(video_.string(), false);
  null_share["name"] = "door-null";
  null_share["strangers_named"] = nullptr;
  auto made = post(n, "/v1/streams", null_share);
  ASSERT_EQ(made->status, 201) << made->body;
  EXPECT_DOUBLE_EQ(json::parse(made->body).value("strangers_named", -1.0), fallback) << made->body;
  const json list = get(n, "/v1/streams");
  ASSERT_EQ(list["streams"].size(), 4U) << list.dump();
  for (const json& st : list["streams"]) {
    const std::string name = st.value("name", "");
    EXPECT_DOUBLE_EQ(st.value("strangers_named", -1.0), name == "door-share" ? 0.03 : name == "door-alone" ? 0.0 : fallback)
        << st.dump();
  }
}

TEST_F(StreamsTest, TheSourcePasswordAppearsInNoResponseLogAuditOrDatabase) {
  StderrCapture err(std::filesystem::temp_directory_path() / ("candor_streams_stderr_" + std::to_string(::getpid())));
  Node n(dir_, "node-a");
  prepare(n);
  // Port 9 on loopback: nothing listens, so the source fails and its errors are reported.
  const std::string source = std::string("rtsp://") + kUser + ":" + kPassword + "@127.0.0.1:9/live";
  json spec = stream_spec(source, true);
  // The MQTT broker's credentials are secrets too (nothing listens there either).
  spec["outputs"] = {{"mqtt", {{"url", "mqtt://127.0.0.1:9"}, {"username", kUser}, {"password", kPassword}}}};
  auto r = post(n, "/v1/streams", spec);
  ASSERT_EQ(r->status, 201) << r->body;
  std::string seen = r->body;
  const std::string id = json::parse(r->body)["id"];
  EXPECT_EQ(json::parse(r->body)["source"], "rtsp://***@127.0.0.1:9/live");
  seen += events_until(n, id, "source_error", std::chrono::seconds(20));
  ASSERT_TRUE(eventually([&] {
    const json s = get(n, "/v1/streams/" + id);
    seen += s.dump();
    return s.contains("status") && !s["status"]["last_error"].is_null();
  })) << seen;
  seen += n.client().Get("/v1/streams", auth())->body;
  seen += n.client().Get("/v1/audit?limit=1000", auth())->body;
  auto bad = post(n, "/v1/streams", stream_spec(std::string("ftp://") + kUser + ":" + kPassword + "@h/x", false));
  EXPECT_EQ(bad->status, 400);
  seen += bad->body;
  n.stop();
  seen += n.log();
  seen += err.stop();
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    if (f.path().extension() != ".avi") seen += read_file(f.path());  // the database, its WAL and keys
  }
  for (const std::string secret : {kPassword, kUser}) {
    const auto at = seen.find(secret);
    EXPECT_EQ(at, std::string::npos) << "in: " << seen.substr(at < 300 ? 0 : at - 300, 400);
  }
  EXPECT_NE(seen.find("source_error"), std::string::npos) << "the failure was reported, redacted";
}

TEST_F(StreamsTest, ARunningStreamResumesAfterARestart) {
  std::string id;
  {
    Node n(dir_, "node-a");
    prepare(n);
    id = create(n, video_.string(), true);
    ASSERT_TRUE(eventually([&] { return get(n, "/v1/streams/" + id).value("running_here", false); }));
  }
  Node again(dir_, "node-a2");
  EXPECT_TRUE(eventually([&] { return get(again, "/v1/streams/" + id).value("running_here", false); }))
      << "a stream whose desired state is running starts with the server (its old lease released on stop)";
  const std::string events = events_until(again, id, "\"event\":\"recognised\"");
  EXPECT_NE(events.find("\"recognised\""), std::string::npos) << events;
}

TEST_F(StreamsTest, TwoNodesOnOneStoreRunAStreamOnceAndTakeOverWhenOneStops) {
  auto a = std::make_unique<Node>(dir_, "node-a");
  prepare(*a);
  Node b(dir_, "node-b");
  const std::string id = create(*a, video_.string(), true);
  ASSERT_TRUE(eventually([&] {
    return get(*a, "/v1/streams/" + id).value("running_here", false) ||
           get(b, "/v1/streams/" + id).value("running_here", false);
  }));
  // Several lease periods: never both.
  for (int i = 0; i < 20; ++i) {
    const bool on_a = get(*a, "/v1/streams/" + id).value("running_here", false);
    const bool on_b = get(b, "/v1/streams/" + id).value("running_here", false);
    ASSERT_NE(on_a, on_b) << "round " << i;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const bool was_on_a = get(*a, "/v1/streams/" + id).value("running_here", false);
  if (was_on_a) {
    a->stop();  // releases its lease: b takes over at its next round
    EXPECT_TRUE(eventually([&] { return get(b, "/v1/streams/" + id).value("running_here", false); }));
  } else {
    SUCCEED() << "node b took it first; the take-over is covered when a runs it";
  }
}

TEST_F(StreamsTest, HostileRequestsGet400AndNoStream) {
  Node n(dir_, "node-a");
  prepare(n, false);
  const std::vector<std::string> sources = {"ftp://h/x",  "file:///etc/passwd", "videotestsrc ! appsink", "concat:/a|/b",
                                            "rtsp://",    "rtsp://h/a b",       "rtsp://h/x!y",           "/dev/sda",
                                            "/etc/../x",  "/no/such/file.avi",  std::string(5000, 'a'),   "\x01rtsp://h"};
  for (const auto& s : sources) {
    auto r = post(n, "/v1/streams", stream_spec(s, false));
    EXPECT_EQ(r->status, 400) << s.substr(0, 40) << " " << r->body;
  }
  json huge = stream_spec(video_.string(), false);
  huge["name"] = std::string(100000, 'n');
  EXPECT_EQ(post(n, "/v1/streams", huge)->status, 400);
  json extra = stream_spec(video_.string(), false);
  extra["owner_node"] = "me";
  EXPECT_EQ(post(n, "/v1/streams", extra)->status, 400);
  json wrong_type = stream_spec(video_.string(), false);
  wrong_type["start"] = "yes";
  EXPECT_EQ(post(n, "/v1/streams", wrong_type)->status, 400);
  json bad_hook = stream_spec(video_.string(), false);
  bad_hook["outputs"] = {{"webhook", {{"url", "gopher://x"}, {"secret", "0123456789abcdef"}}}};
  EXPECT_EQ(post(n, "/v1/streams", bad_hook)->status, 400);
  for (const json& mqtt : {json{{"url", "mqtt://user:pw@broker/x"}}, json{{"url", "mqtt://broker/a/#"}},
                           json{{"url", "http://broker"}}, json{{"url", "mqtt://broker"}, {"port", 1}},
                           json{{"url", "mqtt://broker:99999"}}, json{{"username", "u"}}, json("mqtt://broker")}) {
    json bad_mqtt = stream_spec(video_.string(), false);
    bad_mqtt["outputs"] = {{"mqtt", mqtt}};
    EXPECT_EQ(post(n, "/v1/streams", bad_mqtt)->status, 400) << mqtt.dump();
  }
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"detect_every", 0}, {"detect_every", 31}, {"detect_every", 1.5}, {"detect_every", "2"}, {"detect_every", true},
           {"buffer_frames", 0}, {"buffer_frames", 65}, {"buffer_frames", -1},
           {"shutter_s", 0}, {"shutter_s", 0.0}, {"shutter_s", -0.02}, {"shutter_s", 1.5}, {"shutter_s", 2},
           {"shutter_s", "0.02"}, {"shutter_s", true}, {"shutter_s", json::array({0.02})},
           {"shutter_s", json::object()}, {"strangers_named", -0.005}, {"strangers_named", 0.51},
           {"strangers_named", 1}, {"strangers_named", "0.005"}, {"strangers_named", true},
           {"strangers_named", json::array({0.005})}}) {
    json bad_setting = stream_spec(video_.string(), false);
    bad_setting[field] = value;
    auto r = post(n, "/v1/streams", bad_setting);
    EXPECT_EQ(r->status, 400) << field << " " << value.dump();
    EXPECT_NE(r->body.find(field), std::string::npos) << "the message names the field: " << r->body;
  }
  {
    // A number too large for a double (JSON has no infinity): refused, parsed or not.
    json huge_shutter = stream_spec(video_.string(), false);
    huge_shutter["shutter_s"] = "HUGE";
    std::string text = huge_shutter.dump();
    text.replace(text.find("\"HUGE\""), 6, "1e999");
    auto r = n.client().Post("/v1/streams", auth(), text, "application/json");
    EXPECT_EQ(r->status, 400) << r->body;
  }
  json other_purpose = stream_spec(video_.string(), false);
  other_purpose["purpose"] = "marketing";
  EXPECT_EQ(post(n, "/v1/streams", other_purpose)->status, 409);  // consent_required
  auto malformed = n.client().Post("/v1/streams", auth(), "{\"name\": ", "application/json");
  EXPECT_EQ(malformed->status, 400);
  EXPECT_EQ(n.client().Get("/v1/streams/st_0000000000000000", auth())->status, 404);
  EXPECT_EQ(n.client().Get("/v1/streams/%00", auth())->status, 404);
  EXPECT_EQ(get(n, "/v1/streams")["streams"].size(), 0u);
  // A key without the scope is refused.
  auto k = post(n, "/v1/keys", {{"name", "searcher"}, {"collections", {"staff"}}, {"operations", {"search"}}});
  ASSERT_EQ(k->status, 201);
  auto refused = n.client().Get("/v1/streams", {{"X-API-Key", json::parse(k->body)["key"].get<std::string>()}});
  EXPECT_EQ(refused->status, 403);
}

// Snapshots (outputs.snapshots): the recognised event names a JPEG that this node serves to
// a key that sees the stream; a name not of the form the stream writes is 404 before it
// comes near a path; deleting the stream deletes its snapshots; a server without
// --snapshot-dir refuses a stream that asks for them.
TEST_F(StreamsTest, SnapshotsAreServedByNameAndGoWithTheStream) {
  json spec = stream_spec(video_.string(), true);
  spec["outputs"] = {{"snapshots", {{"retention_hours", 2}}}};
  {
    std::filesystem::create_directories(dir_ / "plain");
    Node plain(dir_ / "plain", "node-p");
    prepare(plain, false);
    auto refused = post(plain, "/v1/streams", spec);
    EXPECT_EQ(refused->status, 400) << refused->body;
    EXPECT_NE(refused->body.find("--snapshot-dir"), std::string::npos) << refused->body;
  }
  const std::filesystem::path shots = dir_ / "snapshots";
  Node n(dir_, "node-a", shots);
  prepare(n);
  for (const json& bad : {json{{"retention_hours", 0}}, json{{"retention_hours", 721}}, json{{"retention_hours", "2"}},
                          json{{"retention_hours", 2}, {"dir", "/tmp"}}, json(2)}) {
    json hostile = spec;
    hostile["outputs"] = {{"snapshots", bad}};
    EXPECT_EQ(post(n, "/v1/streams", hostile)->status, 400) << bad.dump();
  }
  auto created = post(n, "/v1/streams", spec);
  ASSERT_EQ(created->status, 201) << created->body;
  const json stream = json::parse(created->body);
  const std::string id = stream.value("id", "");
  EXPECT_EQ(stream["outputs"]["snapshots"]["retention_hours"], 2);

  const std::string events = events_until(n, id, "\"snapshot\":\"");
  const auto at = events.find("\"snapshot\":\"");
  ASSERT_NE(at, std::string::npos) << events;
  const auto begin = at + std::string("\"snapshot\":\"").size();
  const std::string name = events.substr(begin, events.find('"', begin) - begin);
  EXPECT_TRUE(is_snapshot_name(name)) << name;
  auto shot = n.client().Get(("/v1/streams/" + id + "/snapshots/" + name).c_str(), auth());
  ASSERT_TRUE(shot);
  ASSERT_EQ(shot->status, 200) << shot->body;
  EXPECT_EQ(shot->get_header_value("Content-Type"), "image/jpeg");
  const cv::Mat image = cv::imdecode(std::vector<std::uint8_t>(shot->body.begin(), shot->body.end()), cv::IMREAD_COLOR);
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(test::shared_engine().detect(image).size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(shots / id / name));

  for (const std::string& other : {std::string("..%2F..%2Fstore.db"), std::string("..%2Fstore.db"), std::string(".."),
                                   std::string("store.db"), name + "x", "x" + name.substr(name.find('-')),
                                   std::string("door-1-20261129T000000.000Z-t1.jpg")}) {
    auto r = n.client().Get(("/v1/streams/" + id + "/snapshots/" + other).c_str(), auth());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << other;
    EXPECT_EQ(r->get_header_value("Content-Type").find("image"), std::string::npos) << other;
  }
  auto k = post(n, "/v1/keys", {{"name", "searcher"}, {"collections", {"staff"}}, {"operations", {"search"}}});
  ASSERT_EQ(k->status, 201);
  auto refused = n.client().Get(("/v1/streams/" + id + "/snapshots/" + name).c_str(),
                                {{"X-API-Key", json::parse(k->body)["key"].get<std::string>()}});
  EXPECT_EQ(refused->status, 403);

  ASSERT_EQ(n.client().Delete(("/v1/streams/" + id).c_str(), auth())->status, 200);
  EXPECT_FALSE(std::filesystem::exists(shots / id)) << "the stream's snapshots outlived it";
  EXPECT_EQ(n.client().Get(("/v1/streams/" + id + "/snapshots/" + name).c_str(), auth())->status, 404);
}

TEST_F(StreamsTest, EventClientsAreLimited) {
  Node n(dir_, "node-a");
  prepare(n, false);
  const std::string id = create(n, video_.string(), false);
  std::atomic<int> open{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&] {
      auto c = n.client();
      c.Get(("/v1/streams/" + id + "/events").c_str(), auth(), [&](const char*, std::size_t) {
        static thread_local bool counted = false;
        if (!counted) counted = true, ++open;
        return !done.load();
      });
    });
  }
  ASSERT_TRUE(eventually([&] { return open.load() == 2; }, std::chrono::seconds(10)));
  auto third = n.client().Get(("/v1/streams/" + id + "/events").c_str(), auth());
  EXPECT_EQ(third->status, 503);
  done = true;
  for (auto& t : clients) t.join();
}

}  // namespace
}  // namespace candor
