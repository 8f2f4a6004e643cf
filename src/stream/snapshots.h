// Snapshots of recognised people (StreamOptions::snapshots): the JPEG files a stream writes
// when a track is recognised, and their retention. Internal to candor_stream.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include <opencv2/core/mat.hpp>

#include "candor/audit.h"
#include "candor/result.h"
#include "candor/stream.h"

namespace candor::stream_detail {

// The part of `frame` a snapshot shows: the face box grown by half its size on every side
// (the head and some context, as a door log shows a person), clipped to the frame.
cv::Rect snapshot_region(const Box& face, cv::Size frame);

// Writes and expires one stream's snapshots in SnapshotOptions::directory. Files are named
// "<stream id>-<UTC yyyymmddThhmmss.mmmZ>-t<track>.jpg" (the id: mqtt_stream_id of the
// stream's name), so one directory may serve several streams and a sweep touches only its
// own stream's files.
// Thread safety: none; a stream calls it from its worker only.
class SnapshotWriter {
 public:
  // Creates the directory (owner only, 0700) when it is missing.
  // ensures: kInvalidArgument for an empty directory, a retention under one hour or a JPEG
  //          quality outside 1..100; kIoError naming the directory when it cannot be made.
  static Result<SnapshotWriter> open(const SnapshotOptions& options, const std::string& stream);

  // Writes `pixels` (CV_8UC3) taken at `time` for `track`; the file is readable by its
  // owner only (0600). ensures: the file's name, or kIoError naming it.
  Result<std::string> write(const cv::Mat& pixels, TimePoint time, std::int64_t track) const;

  // Deletes this stream's snapshots whose time (in the name) is older than `now` minus the
  // retention. ensures: how many were deleted; a file that cannot be deleted is left for
  // the next sweep.
  std::size_t sweep(TimePoint now) const;

 private:
  SnapshotWriter(SnapshotOptions options, std::string prefix) : options_(std::move(options)), prefix_(std::move(prefix)) {}
  SnapshotOptions options_;
  std::string prefix_;  // "<stream id>-"
};

}  // namespace candor::stream_detail
