// Internal to src/stream: the face tracker and a track's evidence.
//
// Tracker: detections of one detection round are matched to the open tracks greedily by
// score, best pair first. A pair is allowed when the detection overlaps the track's
// predicted box (its last box moved by its velocity for the rounds since, counted in frames
// over TrackerOptions::frames_per_round) by at least min_iou, or when both carry templates
// that agree (cosine >= min_appearance) and the detection's centre lies within max_jump
// track widths of the prediction per round passed. Its score is
// the IoU plus the cosine, so where two faces cross and both overlap both predictions,
// appearance decides; and templates that disagree (cosine below min_appearance) forbid
// the pair whatever the overlap. A track not matched for more than max_missed rounds
// ends; until then a detection may rejoin it (an occlusion bridged).
//
// Thread safety: none (one stream worker owns each).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "candor/face.h"
#include "candor/stream.h"

namespace candor::stream_detail {

struct Detection {
  Box box;
  std::vector<float> embedding;  // may be empty (not embedded this round)
};

struct TrackState {
  std::int64_t id = 0;
  Box box;                   // last detected
  cv::Point2f velocity{};    // centre displacement per round
  float size_rate = 1;       // box growth factor per round
  std::vector<float> appearance;  // the latest template, for matching
  int missed = 0;            // rounds since the last detection
  std::int64_t rounds = 0;   // rounds matched
  std::int64_t last_frame = 0;  // the frame of the last detection
};

class Tracker {
 public:
  explicit Tracker(TrackerOptions options) : options_(options) {}

  struct Update {
    std::vector<std::int64_t> track_of;  // per detection, the track it joined (new or continued)
    std::vector<std::int64_t> ended;     // tracks that ended this round
  };
  // One detection round, on frame `frame` (frame indices increase from round to round).
  Update update(std::span<const Detection> detections, std::int64_t frame);
  // Ends every open track (stream end). ensures: their ids.
  std::vector<std::int64_t> end_all();

  // The box a track is expected at `rounds_ahead` rounds after its last detection.
  static Box predict(const TrackState& t, float rounds_ahead);
  // The track's velocity once `box`, `rounds` rounds after its last detection, joins it:
  // half its velocity and half this move (this move alone on its second detection).
  static cv::Point2f velocity_after(const TrackState& t, const Box& box, float rounds);
  // The rounds from a track's last detection to `frame`: frames over frames_per_round, at least 1.
  float rounds_to(const TrackState& t, std::int64_t frame) const;

  const std::vector<TrackState>& tracks() const { return tracks_; }

 private:
  TrackerOptions options_;
  std::vector<TrackState> tracks_;
  std::int64_t next_id_ = 1;
};

// One frame's evidence for a track's decision.
struct Evidence {
  std::vector<float> embedding;
  float weight = 0;   // quality_weight()
  float face_px = 0;  // shorter box side
  std::int64_t frame = 0;
  std::optional<float> liveness;  // the liveness score, when checked
  // Embedded, by a stream that deblurs (StreamOptions::shutter_s), before the track's motion
  // was measured (its first detection): smeared as seen if the track turns out to move.
  bool motion_unknown = false;
};

// How much a frame's template counts: in (0, 1] for a good frame, 0 for one that is not
// (below min_face or quality level low). Size: linear up to the recogniser's 112 px input;
// sharpness: linear up to QualityThresholds' "high" 60; pose: cos(yaw) * cos(pitch); both
// eyes closed: halved. Without quality (no analyser), size alone.
float quality_weight(const Face& face, float min_face);

// Whether `box` shows a whole face: not cut by the border of a `frame`-sized image (it
// ends within kEdgeMargin of it) and not overlapped by a nearer face (a larger box among
// `others` covering more than kMaxOccluded of it). A cut or covered face's template is
// of part of a face, or of two: such a frame is no evidence (`candor bench stream`: the
// two people its first run missed entered the frame cut by its edge, and their tracks
// were decided on those frames).
inline constexpr float kEdgeMargin = 2;     // px: the detector's box of a cut face ends at the border
inline constexpr float kMaxOccluded = 0.1f; // of the box's area
bool whole_face(const Box& box, cv::Size frame, std::span<const Box> others);

// The templates of a track's best frames, at most `capacity` (the lowest weight is
// replaced by a better frame).
class TrackEvidence {
 public:
  explicit TrackEvidence(std::size_t capacity) : capacity_(capacity) {}
  // Keeps `e` when it is among the best `capacity` seen. ensures: whether it was kept.
  bool add(Evidence e);
  std::size_t good_frames() const { return good_frames_; }  // every good frame offered
  std::size_t size() const { return kept_.size(); }
  float largest_face() const { return largest_face_; }
  // The quality-weighted mean of the kept templates, renormalised (subject_template()).
  std::vector<float> combined() const;
  // The mean liveness score of the kept frames that were checked; none if none was.
  std::optional<float> liveness() const;
  // Drops the kept frames marked motion_unknown, their templates zeroed; good_frames()
  // and largest_face() still count them. For a track whose motion is now known to smear.
  void drop_unmeasured_motion();
  void clear();  // drops every template (a track ends: nothing of it stays)

 private:
  std::size_t capacity_;
  std::vector<Evidence> kept_;
  std::size_t good_frames_ = 0;
  float largest_face_ = 0;
};

}  // namespace candor::stream_detail
