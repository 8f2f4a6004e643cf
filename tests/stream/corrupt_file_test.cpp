// Video files that are not what they claim, played once (candor watch FILE --once): random
// bytes named .mp4, an MP4 cut short, a Motion JPEG AVI cut short. Each stream finishes by
// itself — with the source's error when nothing could be read — and nothing crashes.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/videoio.hpp>

#include "candor/stream.h"
#include "stream_env.h"

namespace candor {
namespace {

class CountingSink final : public EventSink {
 public:
  void publish(const StreamEvent&) override { ++events; }
  std::atomic<int> events{0};
};

class StreamFiles : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(env_.open().ok()); }

  // Plays `path` once; ensures the stream finished by itself within 20 s.
  StreamStatus play_once(const std::string& path) {
    auto source = make_video_source(path, {false});
    EXPECT_TRUE(source.ok());
    StreamOptions o = test::StreamEnv::stream_options();
    o.stop_after_ends = 1;
    CountingSink sink;
    auto stream = Stream::start(test::shared_engine(), nullptr, *env_.collections, std::move(*source), sink, o);
    EXPECT_TRUE(stream.ok());
    EXPECT_TRUE((*stream)->wait(std::chrono::seconds(20))) << path << " did not finish: it was retried";
    (*stream)->stop();
    return (*stream)->status();
  }

  // A short video written by OpenCV (`fourcc`), then cut to `keep` of its bytes.
  std::string truncated(const std::string& name, int fourcc, double keep) {
    const std::string path = env_.dir.file(name);
    {
      cv::VideoWriter writer(path, fourcc, 25, cv::Size(320, 240));
      if (!writer.isOpened()) return "";
      for (int i = 0; i < 50; ++i) writer.write(cv::Mat(240, 320, CV_8UC3, cv::Scalar(i * 5, 100, 200 - i * 4)));
    }
    std::filesystem::resize_file(path, static_cast<std::uintmax_t>(std::filesystem::file_size(path) * keep));
    return path;
  }

  test::StreamEnv env_;
};

TEST_F(StreamFiles, ACorruptFilePlayedOnceEndsWithItsErrorInsteadOfRetrying) {
  const std::string path = env_.dir.file("random.mp4");
  std::mt19937 rng(12);
  std::string bytes(200000, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << bytes;
  const StreamStatus st = play_once(path);
  EXPECT_EQ(st.frames_read, 0u);
  ASSERT_TRUE(st.last_error.has_value());
  EXPECT_EQ(st.last_error->code, ErrorCode::kIoError);
  EXPECT_NE(st.last_error->message.find("random.mp4"), std::string::npos) << st.last_error->message;
}

TEST_F(StreamFiles, TruncatedVideosEndWithoutACrash) {
  const std::string mp4 = truncated("cut.mp4", cv::VideoWriter::fourcc('m', 'p', '4', 'v'), 0.5);
  const std::string avi = truncated("cut.avi", cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 0.5);
  for (const std::string& path : {mp4, avi}) {
    if (path.empty()) continue;  // no writer for that codec here
    const StreamStatus st = play_once(path);
    EXPECT_LT(st.frames_read, 50u) << path;  // at most the frames before the cut
    EXPECT_TRUE(st.frames_read > 0 || st.last_error.has_value()) << path;
  }
}

}  // namespace
}  // namespace candor
