// A real RTSP camera (tests/stream/rtsp_test_server, GStreamer's rtsp-server) read through
// OpenCV by a stream: track events arrive; the camera killed mid-stream (SIGKILL) is
// noticed within seconds, not after FFmpeg's 30 s default; started again, frames resume and
// later events arrive.
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/stream.h"
#include "child_process.h"
#include "stream_env.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

class TimedSink final : public EventSink {
 public:
  void publish(const StreamEvent& e) override {
    std::lock_guard lock(mutex_);
    events_.push_back({e.kind, Clock::now()});
  }
  // The first event of `kind` at or after `since`, if any.
  std::optional<Clock::time_point> first(StreamEvent::Kind kind, Clock::time_point since = {}) {
    std::lock_guard lock(mutex_);
    for (const auto& [k, at] : events_) {
      if (k == kind && at >= since) return at;
    }
    return std::nullopt;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<StreamEvent::Kind, Clock::time_point>> events_;
};

template <typename F>
bool eventually(F f, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

// A doorway with one face in it, `at` px from the left, as the camera's picture.
std::string write_picture(const test::TempDir& dir, const std::vector<std::uint8_t>& face_jpeg, int at,
                          const std::string& name) {
  const cv::Mat face = cv::imdecode(face_jpeg, cv::IMREAD_COLOR);
  cv::Mat frame(360, 640, CV_8UC3, cv::Scalar(70, 110, 90));
  cv::Mat scaled;
  cv::resize(face, scaled, cv::Size(200 * face.cols / face.rows, 200));
  scaled.copyTo(frame(cv::Rect(at, 60, scaled.cols, scaled.rows) & cv::Rect(0, 0, 640, 360)));
  const std::string path = dir.file(name);
  cv::imwrite(path, frame);
  return path;
}

// The test camera on `port` showing `picture`. ensures: it accepts connections.
bool start_camera(test::ChildProcess& camera, int port, const std::string& picture) {
  return camera.start({CANDOR_RTSP_TEST_SERVER, std::to_string(port), picture}) &&
         test::wait_for_port(port, std::chrono::seconds(5));
}

// A source on the test camera with a 2 s read timeout.
std::unique_ptr<FrameSource> camera_source(int port) {
  VideoSourceOptions vo;
  vo.read_timeout = std::chrono::milliseconds(2000);
  auto source = make_video_source("rtsp://127.0.0.1:" + std::to_string(port) + "/cam", vo);
  return source ? std::move(*source) : nullptr;
}

TEST(Rtsp, ACameraKilledMidStreamIsNoticedWithinSecondsAndResumesWhenBack) {
  test::StreamEnv env;
  ASSERT_TRUE(env.open().ok());
  const std::string first = write_picture(env.dir, test::face_crop_jpeg(6, 0, 0.4f), 120, "ben.jpg");
  const std::string second = write_picture(env.dir, test::face_crop_jpeg(3, 1, 0.4f), 360, "anna.jpg");
  const int port = test::free_port();
  test::ChildProcess camera;
  ASSERT_TRUE(start_camera(camera, port, first)) << "the RTSP test server did not start";
  auto source = camera_source(port);
  ASSERT_TRUE(source);
  StreamOptions o = test::StreamEnv::stream_options();
  o.detect_every = 2;
  o.stall_after = std::chrono::milliseconds(2000);
  o.reconnect_initial = std::chrono::milliseconds(200);
  o.reconnect_max = std::chrono::milliseconds(500);
  TimedSink sink;
  auto stream = Stream::start(test::shared_engine(), nullptr, *env.collections, std::move(source), sink, o);
  ASSERT_TRUE(stream.ok()) << stream.error().message;

  // The stranger in the picture is decided (unknown: nobody is enrolled).
  ASSERT_TRUE(eventually([&] { return sink.first(StreamEvent::Kind::kUnknown).has_value(); }, std::chrono::seconds(15)))
      << "frames read: " << (*stream)->status().frames_read;

  camera.kill();
  const auto killed = Clock::now();
  ASSERT_TRUE(eventually([&] { return sink.first(StreamEvent::Kind::kSourceError, killed).has_value() ||
                                      sink.first(StreamEvent::Kind::kStreamStalled, killed).has_value(); },
                         std::chrono::seconds(8)))
      << "a dead camera was not noticed";
  const auto noticed = std::min(sink.first(StreamEvent::Kind::kSourceError, killed).value_or(Clock::time_point::max()),
                                sink.first(StreamEvent::Kind::kStreamStalled, killed).value_or(Clock::time_point::max()));
  const double noticed_s = std::chrono::duration<double>(noticed - killed).count();
  EXPECT_LT(noticed_s, 5.0) << "the read timeout (2 s) did not end a read from a dead camera";

  // Back, with another stranger at another place: frames resume and a new track is decided.
  const auto frames_before = (*stream)->status().frames_read;
  const auto restarted = Clock::now();
  ASSERT_TRUE(start_camera(camera, port, second));
  ASSERT_TRUE(eventually([&] { return sink.first(StreamEvent::Kind::kStreamResumed, restarted).has_value(); },
                         std::chrono::seconds(10)))
      << "frames did not resume";
  ASSERT_TRUE(eventually([&] { return sink.first(StreamEvent::Kind::kUnknown, restarted).has_value(); },
                         std::chrono::seconds(10)))
      << "no decision after the camera came back";
  const StreamStatus st = (*stream)->status();
  EXPECT_GT(st.frames_read, frames_before);
  EXPECT_GE(st.reconnects, 1u);
  (*stream)->stop();
  std::printf("[ measure  ] dead camera noticed after %.2f s; %llu frames read, %llu reconnects\n", noticed_s,
              static_cast<unsigned long long>(st.frames_read), static_cast<unsigned long long>(st.reconnects));
}

// A camera that hangs with its connection open (SIGSTOP: no FIN, no RST, no packets) is the
// case a read timeout is for: FFmpeg's default would block read() for 30 s.
TEST(Rtsp, ACameraThatHangsWithItsConnectionOpenIsLostAfterTheReadTimeout) {
  test::TempDir dir;  // a source alone: no engine, no store
  const std::string picture = write_picture(dir, test::face_crop_jpeg(6, 0, 0.4f), 120, "ben.jpg");
  const int port = test::free_port();
  test::ChildProcess camera;
  ASSERT_TRUE(start_camera(camera, port, picture)) << "the RTSP test server did not start";
  auto source = camera_source(port);
  ASSERT_TRUE(source);
  ASSERT_TRUE(source->open().ok());
  ASSERT_TRUE(source->read().ok());
  camera.signal(SIGSTOP);
  const auto hung = Clock::now();
  Result<cv::Mat> frame = cv::Mat();
  for (int i = 0; i < 100 && frame.ok(); ++i) frame = source->read();  // what was buffered, then the wait
  const double waited_s = std::chrono::duration<double>(Clock::now() - hung).count();
  ASSERT_FALSE(frame.ok()) << "frames kept coming from a stopped camera";
  EXPECT_EQ(frame.error().code, ErrorCode::kIoError);
  EXPECT_LT(waited_s, 6.0) << "a read from a hung camera waited past its 2 s timeout";
  camera.signal(SIGCONT);
  std::printf("[ measure  ] a read from a hung camera returned kIoError after %.2f s\n", waited_s);
}

}  // namespace
}  // namespace candor
