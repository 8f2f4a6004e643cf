// A FrameSource over cv::VideoCapture, and the masking of credentials in source URLs.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <thread>

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "candor/stream.h"

namespace candor {
namespace {

class VideoSource final : public FrameSource {
 public:
  VideoSource(std::string uri, VideoSourceOptions options) : uri_(std::move(uri)), options_(options) {}

  Status open() override {
    capture_.release();
    const bool device_number = std::all_of(uri_.begin(), uri_.end(), [](unsigned char c) { return std::isdigit(c); });
    bool opened = false;
    if (device_number) {
      opened = capture_.open(std::stoi(uri_));  // V4L2
    } else if (uri_.find("://") != std::string::npos) {
      // A network source: bounded waits, or a camera that hangs with its connection open
      // blocks read() for FFmpeg's default 30 s (Rtsp.ACameraThatHangsWithItsConnectionOpen...).
      auto ms = [](std::chrono::milliseconds t) { return static_cast<int>(std::clamp<std::int64_t>(t.count(), 1, 1 << 30)); };
      opened = capture_.open(uri_, cv::CAP_FFMPEG,
                             {cv::CAP_PROP_OPEN_TIMEOUT_MSEC, ms(options_.open_timeout), cv::CAP_PROP_READ_TIMEOUT_MSEC,
                              ms(options_.read_timeout)});
    } else {
      // FFmpeg only, for files as for URLs: when FFmpeg cannot open a file, OpenCV's
      // CAP_ANY goes on to its GStreamer backend, which on a cut MP4 waits in open() for a
      // pipeline that never prerolls, for ever (StreamFiles.TruncatedVideosEndWithoutACrash,
      // about one run in five).
      opened = capture_.open(uri_, cv::CAP_FFMPEG);
    }
    if (!opened || !capture_.isOpened()) return Error{ErrorCode::kIoError, "cannot open video source " + describe()};
    file_ = std::filesystem::is_regular_file(uri_);
    fps_ = capture_.get(cv::CAP_PROP_FPS);
    if (!(fps_ > 0 && fps_ < 1000)) fps_ = 0;
    next_due_ = std::chrono::steady_clock::now();
    return ok_status();
  }

  Result<cv::Mat> read() override {
    if (!capture_.isOpened()) return Error{ErrorCode::kIoError, "video source " + describe() + " is not open"};
    if (file_ && options_.realtime && fps_ > 0) {
      // A file paced as the camera it stands for: one frame per 1/fps, not as fast as it decodes.
      std::this_thread::sleep_until(next_due_);
      next_due_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(1.0 / fps_));
    }
    cv::Mat frame;
    if (!capture_.read(frame)) {
      capture_.release();
      return Error{ErrorCode::kIoError, file_ ? "video file " + describe() + " ended" : "video source " + describe() + " lost"};
    }
    if (frame.empty() || frame.depth() != CV_8U) return Error{ErrorCode::kImageCorrupt, "a frame did not decode"};
    if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
    else if (frame.channels() == 4) cv::cvtColor(frame, frame, cv::COLOR_BGRA2BGR);
    else if (frame.channels() != 3) return Error{ErrorCode::kImageCorrupt, "a frame with an unexpected channel count"};
    return frame;
  }

  double fps() const override { return fps_; }
  std::string describe() const override { return mask_credentials(uri_); }

 private:
  std::string uri_;
  VideoSourceOptions options_;
  cv::VideoCapture capture_;
  bool file_ = false;
  double fps_ = 0;
  std::chrono::steady_clock::time_point next_due_;
};

}  // namespace

std::string mask_credentials(const std::string& uri) {
  const auto scheme = uri.find("://");
  if (scheme == std::string::npos) return uri;
  const auto start = scheme + 3;
  // The user-info ends at the last '@' before the path, query or fragment (RFC 3986 3.2).
  const auto end = uri.find_first_of("/?#", start);
  const auto at = uri.rfind('@', end == std::string::npos ? std::string::npos : end);
  if (at == std::string::npos || at < start) return uri;
  return uri.substr(0, start) + "***" + uri.substr(at);
}

Result<std::unique_ptr<FrameSource>> make_video_source(const std::string& uri, const VideoSourceOptions& options) {
  if (uri.empty()) return Error{ErrorCode::kInvalidArgument, "an empty video source"};
  return std::unique_ptr<FrameSource>(std::make_unique<VideoSource>(uri, options));
}

}  // namespace candor
