// The face tracker and a track's evidence (tracker.h).
#include "tracker.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "candor/collections.h"
#include "candor/engine.h"

namespace candor::stream_detail {
namespace {

float appearance(const TrackState& t, const Detection& d) {
  if (t.appearance.empty() || d.embedding.empty() || t.appearance.size() != d.embedding.size()) return -2;  // unknown
  return cosine_similarity(t.appearance, d.embedding);
}

}  // namespace

Box Tracker::predict(const TrackState& t, float rounds_ahead) {
  const float grow = std::pow(t.size_rate, rounds_ahead);
  const cv::Point2f c = t.box.center() + t.velocity * rounds_ahead;
  const float w = t.box.width * grow, h = t.box.height * grow;
  return Box{c.x - w / 2, c.y - h / 2, w, h};
}

cv::Point2f Tracker::velocity_after(const TrackState& t, const Box& box, float rounds) {
  const cv::Point2f moved = (box.center() - t.box.center()) / rounds;
  return t.rounds == 0 ? moved : (t.velocity + moved) * 0.5f;
}

float Tracker::rounds_to(const TrackState& t, std::int64_t frame) const {
  return std::max(1.0f, static_cast<float>(frame - t.last_frame) / static_cast<float>(std::max(1, options_.frames_per_round)));
}

Tracker::Update Tracker::update(std::span<const Detection> detections, std::int64_t frame) {
  Update out;
  out.track_of.assign(detections.size(), 0);
  // Every allowed (track, detection) pair with its score, best first.
  std::vector<std::tuple<float, std::size_t, std::size_t>> pairs;
  for (std::size_t ti = 0; ti < tracks_.size(); ++ti) {
    const TrackState& t = tracks_[ti];
    const float rounds = rounds_to(t, frame);
    const Box p = predict(t, rounds);
    for (std::size_t di = 0; di < detections.size(); ++di) {
      const float overlap = iou(p, detections[di].box);
      const float cosine = appearance(t, detections[di]);
      const bool known = cosine > -2;
      if (known && cosine < options_.min_appearance) continue;  // another face, whatever the overlap
      const cv::Point2f jump = detections[di].box.center() - p.center();
      const bool near = std::hypot(jump.x, jump.y) <= options_.max_jump * std::max(p.width, 1.0f) * rounds;
      if (overlap < options_.min_iou && !(known && near)) continue;
      pairs.emplace_back(overlap + (known ? cosine : 0.0f), ti, di);
    }
  }
  std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
  std::vector<bool> track_taken(tracks_.size(), false), det_taken(detections.size(), false);
  for (const auto& [score, ti, di] : pairs) {
    if (track_taken[ti] || det_taken[di]) continue;
    track_taken[ti] = det_taken[di] = true;
    TrackState& t = tracks_[ti];
    const Detection& d = detections[di];
    const float rounds = rounds_to(t, frame);
    const float grow = t.box.width > 0 ? std::pow(d.box.width / t.box.width, 1.0f / rounds) : 1.0f;
    // Smoothed (half old, half new) so one jittery box does not throw the prediction.
    t.velocity = velocity_after(t, d.box, rounds);
    t.size_rate = t.rounds == 0 ? grow : (t.size_rate + grow) * 0.5f;
    t.box = d.box;
    if (!d.embedding.empty()) t.appearance = d.embedding;
    t.missed = 0;
    t.last_frame = frame;
    ++t.rounds;
    out.track_of[di] = t.id;
  }
  for (std::size_t ti = 0; ti < tracks_.size(); ++ti) {
    if (!track_taken[ti]) ++tracks_[ti].missed;
  }
  for (std::size_t di = 0; di < detections.size(); ++di) {
    if (det_taken[di]) continue;
    TrackState t;
    t.id = next_id_++;
    t.box = detections[di].box;
    t.appearance = detections[di].embedding;
    t.last_frame = frame;
    tracks_.push_back(std::move(t));
    out.track_of[di] = tracks_.back().id;
  }
  std::erase_if(tracks_, [&](const TrackState& t) {
    if (t.missed <= options_.max_missed) return false;
    out.ended.push_back(t.id);
    return true;
  });
  return out;
}

std::vector<std::int64_t> Tracker::end_all() {
  std::vector<std::int64_t> ids;
  for (const TrackState& t : tracks_) ids.push_back(t.id);
  tracks_.clear();
  return ids;
}

float quality_weight(const Face& face, float min_face) {
  const float px = std::min(face.box.width, face.box.height);
  if (px < min_face) return 0;
  constexpr float kRecognizerInput = 112;  // the ArcFace crop: larger faces add no detail
  float w = std::min(1.0f, px / kRecognizerInput);
  if (!face.quality) return w;
  const FaceQuality& q = *face.quality;
  if (q.level == QualityLevel::kLow) return 0;
  constexpr float kSharpHigh = 60;  // QualityThresholds::min_sharpness_high
  w *= std::clamp(q.sharpness / kSharpHigh, 0.1f, 1.0f);
  if (q.pose) {
    constexpr float kDeg = 3.14159265f / 180;
    w *= std::max(0.1f, std::cos(q.pose->yaw * kDeg) * std::cos(q.pose->pitch * kDeg));
  }
  if (q.left_eye_open == std::optional<bool>(false) && q.right_eye_open == std::optional<bool>(false)) w *= 0.5f;
  return w;
}

bool whole_face(const Box& box, cv::Size frame, std::span<const Box> others) {
  if (box.x < kEdgeMargin || box.y < kEdgeMargin || box.right() > static_cast<float>(frame.width) - kEdgeMargin ||
      box.bottom() > static_cast<float>(frame.height) - kEdgeMargin) {
    return false;
  }
  const float area = box.area();
  for (const Box& o : others) {
    if (o.area() <= area) continue;  // not nearer (the same box, or a smaller face behind)
    if (intersection_area(box, o) > kMaxOccluded * area) return false;
  }
  return true;
}

bool TrackEvidence::add(Evidence e) {
  if (e.weight <= 0) return false;
  ++good_frames_;
  largest_face_ = std::max(largest_face_, e.face_px);
  if (kept_.size() < capacity_) {
    kept_.push_back(std::move(e));
    return true;
  }
  auto worst = std::min_element(kept_.begin(), kept_.end(),
                                [](const Evidence& a, const Evidence& b) { return a.weight < b.weight; });
  if (worst->weight >= e.weight) return false;
  *worst = std::move(e);
  return true;
}

std::vector<float> TrackEvidence::combined() const {
  std::vector<std::vector<float>> templates;
  std::vector<float> weights;
  for (const Evidence& e : kept_) {
    templates.push_back(e.embedding);
    weights.push_back(e.weight);
  }
  return subject_template(templates, weights);
}

std::optional<float> TrackEvidence::liveness() const {
  float sum = 0;
  int n = 0;
  for (const Evidence& e : kept_) {
    if (e.liveness) {
      sum += *e.liveness;
      ++n;
    }
  }
  if (n == 0) return std::nullopt;
  return sum / static_cast<float>(n);
}

void TrackEvidence::drop_unmeasured_motion() {
  for (Evidence& e : kept_) {
    if (e.motion_unknown) std::fill(e.embedding.begin(), e.embedding.end(), 0.0f);
  }
  std::erase_if(kept_, [](const Evidence& e) { return e.motion_unknown; });
}

void TrackEvidence::clear() {
  for (Evidence& e : kept_) std::fill(e.embedding.begin(), e.embedding.end(), 0.0f);
  kept_.clear();
}

}  // namespace candor::stream_detail
