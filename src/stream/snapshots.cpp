#include "snapshots.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <system_error>
#include <vector>

#include <opencv2/imgcodecs.hpp>

namespace candor::stream_detail {
namespace {

constexpr std::string_view kSuffix = ".jpg";
constexpr std::string_view kTimeFormat = "%Y%m%dT%H%M%S";  // then ".mmmZ"

std::string compact_utc(TimePoint t) {
  const auto ms = t.time_since_epoch().count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, std::string(kTimeFormat).c_str(), &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

// The time a snapshot's name holds, or nothing for a name this stream did not write.
std::optional<TimePoint> name_time(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix) || !name.ends_with(kSuffix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  const std::string stamp(name.substr(0, 15));  // yyyymmddThhmmss
  std::tm tm{};
  const char* end = strptime(stamp.c_str(), std::string(kTimeFormat).c_str(), &tm);
  if (end == nullptr || *end != '\0' || name.size() < 20 || name[15] != '.') return std::nullopt;
  const std::time_t seconds = timegm(&tm);
  return TimePoint(std::chrono::seconds(seconds));
}

}  // namespace

}  // namespace candor::stream_detail

namespace candor {

bool is_snapshot_name(std::string_view name) noexcept {
  // <id: [A-Za-z0-9_-]+>-<yyyymmddThhmmss>.<mmm>Z-t<digits>.jpg
  constexpr std::string_view suffix = stream_detail::kSuffix;
  if (name.size() > 200 || !name.ends_with(suffix)) return false;
  name.remove_suffix(suffix.size());
  const auto t = name.rfind("-t");
  if (t == std::string_view::npos || t + 2 == name.size()) return false;
  for (char c : name.substr(t + 2)) {
    if (c < '0' || c > '9') return false;
  }
  name = name.substr(0, t);  // <id>-<time>
  constexpr std::size_t kTime = 20;  // yyyymmddThhmmss.mmmZ
  if (name.size() < kTime + 2 || name[name.size() - kTime - 1] != '-') return false;
  const std::string_view time = name.substr(name.size() - kTime), id = name.substr(0, name.size() - kTime - 1);
  for (std::size_t i = 0; i < kTime; ++i) {
    const char c = time[i];
    const bool ok = i == 8 ? c == 'T' : i == 15 ? c == '.' : i == 19 ? c == 'Z' : (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace candor

namespace candor::stream_detail {

cv::Rect snapshot_region(const Box& face, cv::Size frame) {
  const float mx = face.width / 2, my = face.height / 2;
  const cv::Rect grown(cvRound(face.x - mx), cvRound(face.y - my), cvRound(face.width + 2 * mx),
                       cvRound(face.height + 2 * my));
  return grown & cv::Rect(0, 0, frame.width, frame.height);
}

Result<SnapshotWriter> SnapshotWriter::open(const SnapshotOptions& options, const std::string& stream) {
  if (options.directory.empty()) return Error{ErrorCode::kInvalidArgument, "snapshots need a directory"};
  if (options.retention < std::chrono::hours(1)) {
    return Error{ErrorCode::kInvalidArgument, "a snapshot retention is at least one hour"};
  }
  if (options.jpeg_quality < 1 || options.jpeg_quality > 100) {
    return Error{ErrorCode::kInvalidArgument, "a snapshot's JPEG quality is 1..100"};
  }
  std::error_code ec;
  if (!std::filesystem::exists(options.directory, ec)) {
    std::filesystem::create_directories(options.directory, ec);
    if (!ec) {
      std::filesystem::permissions(options.directory, std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::replace, ec);
    }
  }
  if (ec || !std::filesystem::is_directory(options.directory)) {
    return Error{ErrorCode::kIoError, "snapshot directory " + options.directory.string() + ": " +
                                          (ec ? ec.message() : "not a directory")};
  }
  return SnapshotWriter(options, mqtt_stream_id(stream) + "-");
}

Result<std::string> SnapshotWriter::write(const cv::Mat& pixels, TimePoint time, std::int64_t track) const {
  const std::string name = prefix_ + compact_utc(time) + "-t" + std::to_string(track) + std::string(kSuffix);
  const std::filesystem::path path = options_.directory / name;
  std::vector<std::uint8_t> jpeg;
  if (pixels.empty() || !cv::imencode(".jpg", pixels, jpeg, {cv::IMWRITE_JPEG_QUALITY, options_.jpeg_quality})) {
    return Error{ErrorCode::kIoError, "snapshot " + path.string() + ": could not encode"};
  }
  // Created 0600 (the umask may only take bits away), never over an existing file: a
  // snapshot is a photo of a person. open(2)'s mode, not umask(2), which is the process's.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error{ErrorCode::kIoError, "snapshot " + path.string() + ": " + std::strerror(errno)};
  std::size_t done = 0;
  while (done < jpeg.size()) {
    const ssize_t n = ::write(fd, jpeg.data() + done, jpeg.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 || done != jpeg.size()) {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    return Error{ErrorCode::kIoError, "snapshot " + path.string() + ": write failed"};
  }
  return name;
}

std::size_t SnapshotWriter::sweep(TimePoint now) const {
  std::size_t deleted = 0;
  std::error_code ec;
  const TimePoint cutoff = now - std::chrono::duration_cast<std::chrono::milliseconds>(options_.retention);
  for (const auto& entry : std::filesystem::directory_iterator(options_.directory, ec)) {
    const auto t = name_time(entry.path().filename().string(), prefix_);
    if (!t || *t >= cutoff || !entry.is_regular_file(ec)) continue;
    if (std::filesystem::remove(entry.path(), ec)) ++deleted;
  }
  return deleted;
}

}  // namespace candor::stream_detail
