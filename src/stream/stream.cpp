// A camera stream: grabber and worker threads, tracks, decisions (candor/stream.h).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <time.h>

#include "candor/analyzer.h"
#include "candor/deblur.h"
#include "candor/stream.h"
#include "snapshots.h"
#include "tracker.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

// CPU time of the calling thread, seconds: what a frame costs whatever else the machine runs.
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
using stream_detail::Detection;
using stream_detail::Evidence;
using stream_detail::TrackEvidence;

// A stream's name goes into every event and audit entry: a label, not a payload.
constexpr std::size_t kMaxStreamNameBytes = 128;

struct Grabbed {
  cv::Mat bgr;
  std::int64_t index = 0;
  Clock::time_point at;
  double fps = 0;  // the source's announced frame rate (0: unknown)
};

// What the worker knows of one open track.
struct TrackRecord {
  explicit TrackRecord(std::size_t capacity) : evidence(capacity) {}
  Clock::time_point first_seen;
  Clock::time_point last_seen;
  Box last_box;
  TrackEvidence evidence;
  std::size_t decisions = 0;
  bool recognised = false;
  std::string outcome;  // of the latest decision: the subject, or "unknown"
  std::size_t frames_at_decision = 0;
  float face_at_decision = 0;
  bool early_tried = false;  // the first good frame was searched and did not clear the margin
  // With snapshots on: the largest whole face of its evidence frames, with its context
  // (snapshot_region). In memory while the track is open, written only if it is recognised.
  cv::Mat best_view;
  float best_view_px = 0;
};

class StreamImpl final : public Stream {
 public:
  StreamImpl(const Engine& engine, const FaceAnalyzer* analyzer, Collections& collections,
             std::unique_ptr<FrameSource> source, EventSink& sink, StreamOptions options, bool liveness_required,
             std::optional<stream_detail::SnapshotWriter> snapshots)
      : engine_(engine),
        analyzer_(analyzer),
        collections_(collections),
        source_(std::move(source)),
        sink_(sink),
        options_(std::move(options)),
        liveness_required_(liveness_required),
        snapshots_(std::move(snapshots)),
        tracker_(options_.tracker) {}

  ~StreamImpl() override { stop(); }

  void begin() {
    last_frame_at_ = Clock::now();
    last_sweep_ = last_frame_at_;  // start() has just swept
    grabber_ = std::thread([this] { grab(); });
    worker_ = std::thread([this] { work(); });
  }

  void stop() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    std::lock_guard join_lock(join_mutex_);
    if (grabber_.joinable()) grabber_.join();
    if (worker_.joinable()) worker_.join();
  }

  bool wait(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [this] { return status_.finished; });
  }

  StreamStatus status() const override {
    std::lock_guard lock(mutex_);
    return status_;
  }

 private:
  void publish(StreamEvent e) {
    e.stream = options_.name;
    e.time = now_ms();
    sink_.publish(e);
  }

  // Sleeps for `d` unless the stream stops first. ensures: false when stopping.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex_);
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  // The grabber: reads the source, keeps only the newest frame, reconnects with backoff.
  void grab() {
    bool open = false, ever_opened = false;
    int ends = 0;
    std::int64_t index = 0;
    auto delay = options_.reconnect_initial;
    auto source_failed = [&](const Error& e) {
      {
        std::lock_guard lock(mutex_);
        status_.last_error = e;
        interrupted_ = true;
      }
      StreamEvent ev;
      ev.kind = StreamEvent::Kind::kSourceError;
      ev.message = e.message;
      ev.retry_in_ms = static_cast<double>(delay.count());
      publish(ev);
    };
    // One more end of the source. ensures: true when that was the last (stop_after_ends).
    auto ended = [&](const Error* error) {
      if (options_.stop_after_ends <= 0 || ++ends < options_.stop_after_ends) return false;
      std::lock_guard lock(mutex_);
      if (error != nullptr) status_.last_error = *error;
      source_done_ = true;
      cv_.notify_all();
      return true;
    };
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) break;
      }
      if (!open) {
        if (auto st = source_->open(); !st) {
          // A source that could never be opened has ended too: a missing or corrupt file
          // played --once finishes with its error instead of being retried for ever
          // (StreamFiles.ACorruptFile...). One that opened before is retried (a camera back).
          if (!ever_opened && ended(&st.error())) break;
          source_failed(st.error());
          if (!pause(delay)) break;
          delay = std::min(delay * 2, options_.reconnect_max);
          continue;
        }
        open = ever_opened = true;
        {
          std::lock_guard lock(mutex_);
          if (index > 0) ++status_.reconnects;
        }
      }
      auto frame = source_->read();
      if (!frame) {
        if (frame.error().code == ErrorCode::kImageCorrupt) {
          std::lock_guard lock(mutex_);
          ++status_.frames_corrupt;
          continue;
        }
        open = false;
        if (ended(nullptr)) break;  // a file that ended is not an error
        source_failed(frame.error());
        if (!pause(delay)) break;
        delay = std::min(delay * 2, options_.reconnect_max);
        continue;
      }
      delay = options_.reconnect_initial;
      std::unique_lock lock(mutex_);
      if (options_.lossless) {
        cv_.wait(lock, [this] { return stopping_ || buffer_.size() < options_.buffer_frames; });
        if (stopping_) break;  // woken by stop(): the frames held were not dropped
      }
      status_.grab_cpu_s = thread_cpu_s();
      if (buffer_.size() >= options_.buffer_frames) {  // the worker never took it: the newest frames win
        buffer_.pop_front();
        ++status_.frames_dropped;
      }
      buffer_.push_back(Grabbed{std::move(*frame), index++, Clock::now(), source_->fps()});
      ++status_.frames_read;
      last_frame_at_ = buffer_.back().at;
      cv_.notify_all();
    }
  }

  // The worker: takes the oldest frame held, watches for stalls, runs detection and decisions.
  void work() {
    const auto tick = std::clamp(options_.stall_after / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(250));
    for (;;) {
      std::optional<Grabbed> frame;
      bool stalled_now = false, resumed = false;
      {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, tick, [this] { return stopping_ || source_done_ || !buffer_.empty(); });
        if (!buffer_.empty() && !stopping_) {  // stop() does not wait for the frames held
          frame = std::move(buffer_.front());
          buffer_.pop_front();
          cv_.notify_all();  // a lossless grabber waits for room
          ++status_.frames_processed;
          if (status_.stalled || interrupted_) resumed = true;
          status_.stalled = false;
          interrupted_ = false;
        } else if (stopping_ || source_done_) {
          break;
        } else if (!status_.stalled && Clock::now() - last_frame_at_ >= options_.stall_after) {
          status_.stalled = stalled_now = true;
        }
      }
      if (stalled_now) {
        StreamEvent e;
        e.kind = StreamEvent::Kind::kStreamStalled;
        e.message = "no frame for " + std::to_string(options_.stall_after.count()) + " ms";
        publish(e);
      }
      if (resumed) {
        StreamEvent e;
        e.kind = StreamEvent::Kind::kStreamResumed;
        publish(e);
      }
      if (frame) {
        const auto t0 = Clock::now();
        const double cpu0 = thread_cpu_s();
        process(*frame);
        const double cpu = thread_cpu_s() - cpu0;
        const double busy = std::chrono::duration<double>(Clock::now() - t0).count();
        std::lock_guard lock(mutex_);
        status_.busy_s += busy;
        status_.busy_cpu_s += cpu;
      }
    }
    finish_tracks();
    std::lock_guard lock(mutex_);
    status_.finished = true;
    status_.open_tracks = 0;
    cv_.notify_all();
  }

  // A track whose identity is settled: recognised, or unknown with no re-decision left.
  bool settled(const TrackRecord& r) const {
    return r.recognised || r.decisions > options_.decision.max_redecisions;
  }

  void process(const Grabbed& frame) {
    if (last_detect_ >= 0 && frame.index - last_detect_ < options_.detect_every) return;
    last_detect_ = frame.index;
    DetectOptions boxes_only = options_.detect;
    boxes_only.landmarks = false;  // located below, only for the faces embedded
    const double detect_cpu0 = thread_cpu_s();
    std::vector<Face> faces = engine_.detect(frame.bgr, boxes_only);
    const double detect_cpu = thread_cpu_s() - detect_cpu0;
    std::vector<Box> boxes;
    for (const Face& f : faces) boxes.push_back(f.box);
    // Templates are what appearance matching and the decisions need; a face that clearly
    // continues one track that needs no evidence (one prediction overlaps it, well) is not
    // embedded. Of those embedded, only the faces that can be evidence (whole, large
    // enough) are analysed: quality weighs evidence and nothing else.
    std::vector<Face> to_embed;
    std::vector<std::size_t> embedded_index;
    std::vector<bool> whole(faces.size(), false);
    for (std::size_t i = 0; i < faces.size(); ++i) {
      whole[i] = std::min(faces[i].box.width, faces[i].box.height) >= options_.decision.min_face &&
                 stream_detail::whole_face(faces[i].box, frame.bgr.size(), boxes);
    }
    for (bool candidates : {true, false}) {  // the faces to analyse first: a prefix of to_embed
      for (std::size_t i = 0; i < faces.size(); ++i) {
        if (whole[i] == candidates && !needs_no_evidence(faces[i].box, frame.index)) {
          to_embed.push_back(faces[i]);
          embedded_index.push_back(i);
        }
      }
    }
    const auto analysed = static_cast<std::size_t>(
        std::count_if(embedded_index.begin(), embedded_index.end(), [&](std::size_t i) { return whole[i]; }));
    std::size_t deblurred = 0;
    std::vector<Motion> motion(to_embed.size(), Motion::kStill);
    if (!to_embed.empty()) {
      const cv::Mat seen = undo_motion_blur(frame, to_embed, motion);
      deblurred = static_cast<std::size_t>(std::count(motion.begin(), motion.end(), Motion::kDeblurred));
      engine_.locate_landmarks(seen, to_embed);
      engine_.embed(seen, to_embed);
      if (analyzer_ != nullptr && analysed > 0) {
        AnalysisRequest request;
        request.liveness = liveness_required_;
        // The pose only weighs a frame: the fit to the 68 landmarks located above costs
        // nothing beside the pose network run twice (with its mirror image), ~50 ms a face.
        request.pose_source = PoseSource::kLandmarks;
        analyzer_->analyze(seen, std::span<Face>(to_embed).first(analysed), request);
      }
    }
    std::vector<Detection> detections(faces.size());
    for (std::size_t i = 0; i < faces.size(); ++i) detections[i].box = faces[i].box;
    for (std::size_t k = 0; k < to_embed.size(); ++k) detections[embedded_index[k]].embedding = to_embed[k].embedding;
    const auto update = tracker_.update(detections, frame.index);
    for (std::size_t i = 0; i < faces.size(); ++i) {
      const std::int64_t id = update.track_of[i];
      auto [it, added] = tracks_.try_emplace(id, options_.decision.max_evidence);
      TrackRecord& r = it->second;
      if (added) r.first_seen = frame.at;
      r.last_seen = frame.at;
      r.last_box = faces[i].box;
      if (options_.on_track_box) options_.on_track_box(id, frame.index, faces[i].box);
    }
    for (std::size_t k = 0; k < to_embed.size(); ++k) {
      TrackRecord& r = tracks_.at(update.track_of[embedded_index[k]]);
      const Face& f = to_embed[k];
      Evidence e;
      e.weight = whole[embedded_index[k]] ? stream_detail::quality_weight(f, options_.decision.min_face) : 0.0f;
      if (e.weight <= 0 || settled(r)) continue;
      e.embedding = f.embedding;
      e.face_px = std::min(f.box.width, f.box.height);
      e.frame = frame.index;
      e.motion_unknown = motion[k] == Motion::kUnknown;
      if (f.liveness) e.liveness = f.liveness->score;
      if (snapshots_ && e.face_px > r.best_view_px) {
        r.best_view = frame.bgr(stream_detail::snapshot_region(f.box, frame.bgr.size())).clone();
        r.best_view_px = e.face_px;
      }
      r.evidence.add(std::move(e));
      // The track moves fast enough to smear: its frames embedded before its motion was
      // measured were smeared too, and not undone. Without them, 3 more of the 200 people
      // of `candor bench stream --people 200` are named (README "Camera streams").
      if (motion[k] == Motion::kDeblurred) r.evidence.drop_unmeasured_motion();
    }
    for (Face& f : to_embed) std::fill(f.embedding.begin(), f.embedding.end(), 0.0f);
    for (auto& [id, r] : tracks_) {
      if (settled(r)) continue;
      const std::size_t good = r.evidence.good_frames();
      const bool first = r.decisions == 0 && good >= options_.decision.frames;
      const bool early = r.decisions == 0 && good >= 1 && !first && !r.early_tried && options_.decision.early_margin;
      const bool again = r.decisions > 0 && good >= r.frames_at_decision + options_.decision.redecide_after &&
                         r.evidence.largest_face() >= options_.decision.regrow * r.face_at_decision;
      if (first || again) decide(id, r, frame.index, 0.0f);
      else if (early) decide(id, r, frame.index, *options_.decision.early_margin);
    }
    for (std::int64_t id : update.ended) end_track(id, frame.index);
    if (snapshots_ && Clock::now() - last_sweep_ >= kSweepEvery) sweep_snapshots();
    std::lock_guard lock(mutex_);
    ++status_.detections_run;
    status_.detect_cpu_s += detect_cpu;
    status_.faces_embedded += to_embed.size();
    status_.faces_analysed += analyzer_ != nullptr ? analysed : 0;
    status_.faces_deblurred += deblurred;
    status_.open_tracks = tracks_.size();
  }

  // What undo_motion_blur() did with a face: left it (the stream is not told the shutter,
  // or the smear is under kMinMotionBlurPx or longer than the face), deblurred it, or left
  // it because it starts a track and its motion is not measured yet.
  enum class Motion { kStill, kDeblurred, kUnknown };

  // The frame the landmarks and templates are computed on: with StreamOptions::shutter_s
  // set and the frame rate known, a copy in which the region of each face whose track
  // smears at least kMinMotionBlurPx during the exposure is deblurred; otherwise the frame
  // itself. The track is the one whose prediction overlaps the face most; a face that
  // starts a track has no motion yet and stays as seen. ensures: motion[k] says which,
  // for faces[k]. requires: motion.size() == faces.size(), each kStill.
  cv::Mat undo_motion_blur(const Grabbed& frame, std::span<const Face> faces, std::vector<Motion>& motion) const {
    if (options_.shutter_s <= 0 || frame.fps <= 0) return frame.bgr;
    // The tracker's velocity is per detection round (detect_every frames). A shutter is
    // open at most one frame period, whatever a misconfigured shutter_s says: the smear is
    // at most a frame's motion.
    const float per_round = static_cast<float>(std::min(1.0, frame.fps * options_.shutter_s) / options_.detect_every);
    const cv::Rect whole(0, 0, frame.bgr.cols, frame.bgr.rows);
    cv::Mat seen;
    for (std::size_t k = 0; k < faces.size(); ++k) {
      const Face& f = faces[k];
      const stream_detail::TrackState* track = nullptr;
      float best = options_.tracker.min_iou;
      for (const auto& t : tracker_.tracks()) {
        const float overlap = iou(stream_detail::Tracker::predict(t, tracker_.rounds_to(t, frame.index)), f.box);
        if (overlap >= best) best = overlap, track = &t;
      }
      if (track == nullptr) {  // a new face: no motion measured yet
        motion[k] = Motion::kUnknown;
        continue;
      }
      // The motion as the tracker will take it from this detection.
      const cv::Point2f velocity =
          stream_detail::Tracker::velocity_after(*track, f.box, tracker_.rounds_to(*track, frame.index));
      const cv::Point2f smear = velocity * per_round;
      const float length = std::hypot(smear.x, smear.y);
      // A smear longer than the face itself has left nothing of it to restore (and would
      // only cost a large transform): such a face stays as seen.
      if (length < kMinMotionBlurPx || length > std::max(f.box.width, f.box.height)) continue;
      // The face with half its size around it (what landmarks and alignment read) and
      // the smear's reach beyond that.
      const float margin = 0.5f * std::max(f.box.width, f.box.height) + length;
      const cv::Rect region =
          cv::Rect(cv::Point(static_cast<int>(std::floor(f.box.x - margin)), static_cast<int>(std::floor(f.box.y - margin))),
                   cv::Point(static_cast<int>(std::ceil(f.box.right() + margin)),
                             static_cast<int>(std::ceil(f.box.bottom() + margin)))) &
          whole;
      if (region.empty()) continue;
      if (seen.empty()) seen = frame.bgr.clone();
      deblur_motion(frame.bgr(region), smear).copyTo(seen(region));
      motion[k] = Motion::kDeblurred;
    }
    return seen.empty() ? frame.bgr : seen;
  }

  // A face that clearly continues one track (one prediction overlaps it at IoU >= 0.5)
  // whose decision no frame of this size can change: settled, or decided unknown and not
  // yet grown by DecisionOptions::regrow (only a clearly larger view is decided again).
  bool needs_no_evidence(const Box& box, std::int64_t frame) const {
    const stream_detail::TrackState* only = nullptr;
    for (const auto& t : tracker_.tracks()) {
      const float overlap = iou(stream_detail::Tracker::predict(t, tracker_.rounds_to(t, frame)), box);
      if (overlap < options_.tracker.min_iou) continue;
      if (only != nullptr || overlap < 0.5f) return false;  // two candidates, or a loose fit: look
      only = &t;
    }
    if (only == nullptr) return false;
    auto it = tracks_.find(only->id);
    if (it == tracks_.end()) return false;
    const TrackRecord& r = it->second;
    return settled(r) ||
           (r.decisions > 0 && std::min(box.width, box.height) < options_.decision.regrow * r.face_at_decision);
  }

  // One audited search on the track's evidence. `margin` > 0 is an early decision (the
  // first good frame alone): it names someone only when the similarity clears the
  // threshold by the margin, and otherwise leaves the track undecided, without an event,
  // to be decided on DecisionOptions::frames good frames.
  void decide(std::int64_t id, TrackRecord& r, std::int64_t frame_index, float margin) {
    std::vector<float> combined = r.evidence.combined();
    TemplateProbe probe;
    probe.embedding = combined;
    probe.box = r.last_box;
    probe.source = "stream " + options_.name + " track " + std::to_string(id);
    probe.purpose = options_.purpose;
    probe.frames = r.evidence.size();
    probe.margin = margin;  // the audit entry's match is then the stream's
    if (liveness_required_ && analyzer_ != nullptr) {
      const auto score = r.evidence.liveness();
      probe.live = score && *score >= analyzer_->liveness_threshold();
    }
    SearchOptions search;
    search.top_k = 1;
    search.admit_faces = options_.admit;
    if (options_.decision.strangers_named) {
      search.fpir = *options_.decision.strangers_named / static_cast<double>(1 + options_.decision.max_redecisions);
    }
    auto found = collections_.search_template(options_.collection, probe, search, options_.context);
    std::fill(combined.begin(), combined.end(), 0.0f);
    {
      std::lock_guard lock(mutex_);
      ++status_.decisions;
      if (!found) status_.last_error = found.error();
    }
    const bool match = found && !found->matches.empty() && found->matches.front().match;
    if (margin > 0 && !match) {
      r.early_tried = true;  // not sure enough on one frame: wait for more
      return;
    }
    const std::string previous = r.decisions > 0 ? r.outcome : std::string();
    ++r.decisions;
    r.frames_at_decision = r.evidence.good_frames();
    r.face_at_decision = r.evidence.largest_face();
    const auto now = Clock::now();
    StreamEvent e;
    e.track = id;
    e.duration_s = std::chrono::duration<double>(now - r.first_seen).count();
    e.face_px = r.evidence.largest_face();
    if (!match) {
      r.outcome = "unknown";
      if (!previous.empty()) return;  // still unknown: nothing new to say
      e.kind = StreamEvent::Kind::kUnknown;
      publish(e);
      return;
    }
    const SubjectMatch& m = found->matches.front();
    r.recognised = true;
    r.outcome = m.subject;
    {
      std::lock_guard lock(mutex_);
      ++status_.recognised;
    }
    e.kind = StreamEvent::Kind::kRecognised;
    e.subject = m.subject;
    e.similarity = m.similarity;
    e.threshold = m.threshold;
    e.frames_used = probe.frames;
    e.decision_ms = std::chrono::duration<double, std::milli>(now - r.first_seen).count();
    e.frame = frame_index;
    e.upgrade_of = previous;
    if (snapshots_ && !r.best_view.empty()) {
      auto written = snapshots_->write(r.best_view, now_ms(), id);
      if (written) {
        e.snapshot = *written;
      } else {
        std::lock_guard lock(mutex_);
        status_.last_error = written.error();
      }
      r.best_view.release();  // recognised is final: no later decision needs it
    }
    publish(e);
  }

  void sweep_snapshots() {
    last_sweep_ = Clock::now();
    snapshots_->sweep(now_ms());
  }

  void end_track(std::int64_t id, std::int64_t frame_index) {
    auto it = tracks_.find(id);
    if (it == tracks_.end()) return;
    TrackRecord& r = it->second;
    if (r.decisions == 0 && r.evidence.good_frames() > 0) decide(id, r, frame_index, 0.0f);
    StreamEvent e;
    e.kind = StreamEvent::Kind::kTrackEnded;
    e.track = id;
    e.duration_s = std::chrono::duration<double>(r.last_seen - r.first_seen).count();
    e.outcome = r.decisions == 0 ? "undecided" : (r.recognised ? "recognised" : "unknown");
    r.evidence.clear();
    tracks_.erase(it);
    {
      std::lock_guard lock(mutex_);
      ++status_.tracks;
    }
    publish(e);
  }

  void finish_tracks() {
    for (std::int64_t id : tracker_.end_all()) end_track(id, last_detect_);
  }

  const Engine& engine_;
  const FaceAnalyzer* analyzer_;
  Collections& collections_;
  std::unique_ptr<FrameSource> source_;
  EventSink& sink_;
  const StreamOptions options_;
  const bool liveness_required_;

  // Snapshots' retention is enforced at start and then at least this often while frames arrive.
  static constexpr std::chrono::minutes kSweepEvery{1};
  std::optional<stream_detail::SnapshotWriter> snapshots_;

  // Worker-only state.
  Clock::time_point last_sweep_{};
  stream_detail::Tracker tracker_;
  std::map<std::int64_t, TrackRecord> tracks_;
  std::int64_t last_detect_ = -1;

  // Shared between the threads, under mutex_.
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Grabbed> buffer_;   // the newest frames, not yet taken, oldest first (at most buffer_frames)
  Clock::time_point last_frame_at_;
  bool stopping_ = false;
  bool source_done_ = false;
  bool interrupted_ = false;     // a source error since the last frame taken
  StreamStatus status_;

  std::mutex join_mutex_;        // stop() from two threads joins once
  std::thread grabber_;
  std::thread worker_;
};

}  // namespace

Result<std::unique_ptr<Stream>> Stream::start(const Engine& engine, const FaceAnalyzer* analyzer,
                                              Collections& collections, std::unique_ptr<FrameSource> source,
                                              EventSink& sink, StreamOptions options) {
  if (!source) throw std::invalid_argument("Stream::start: no source");
  if (auto ok = check_audit_context(options.context, true); !ok) return ok.error();
  if (options.name.empty() || options.name.size() > kMaxStreamNameBytes) {
    return Error{ErrorCode::kInvalidArgument, "a stream's name is 1..128 bytes"};
  }
  if (options.detect_every < 1) return Error{ErrorCode::kInvalidArgument, "detect_every must be at least 1"};
  if (!(options.shutter_s >= 0 && options.shutter_s <= 1)) {
    return Error{ErrorCode::kInvalidArgument, "shutter_s is the exposure time in seconds, 0..1 (0: unknown)"};
  }
  if (options.buffer_frames < 1 || options.buffer_frames > kMaxBufferFrames) {
    return Error{ErrorCode::kInvalidArgument, "buffer_frames must be 1.." + std::to_string(kMaxBufferFrames)};
  }
  if (options.decision.frames == 0 || options.decision.max_evidence == 0) {
    return Error{ErrorCode::kInvalidArgument, "a decision needs at least one frame"};
  }
  if (const auto& f = options.decision.strangers_named; f && !(*f > 0 && *f < 1)) {
    return Error{ErrorCode::kInvalidArgument, "strangers_named is a fraction of tracks in (0, 1)"};
  }
  auto collection = collections.store().get_collection(options.collection);
  if (!collection) return collection.error();
  if (options.purpose != collection->purpose) {
    return Error{ErrorCode::kConsentRequired, "the stream's purpose is not collection " + options.collection +
                                                  "'s (\"" + collection->purpose +
                                                  "\"): its subjects consented to that purpose only"};
  }
  if (collection->liveness_required && analyzer == nullptr) {
    return Error{ErrorCode::kInvalidArgument, "collection " + options.collection +
                                                  " requires liveness: the stream needs the face analyser"};
  }
  options.tracker.frames_per_round = options.detect_every;
  std::optional<stream_detail::SnapshotWriter> snapshots;
  if (options.snapshots) {
    auto writer = stream_detail::SnapshotWriter::open(*options.snapshots, options.name);
    if (!writer) return writer.error();
    writer->sweep(now_ms());  // what expired while no stream ran
    snapshots = std::move(*writer);
  }
  auto s = std::make_unique<StreamImpl>(engine, analyzer, collections, std::move(source), sink, std::move(options),
                                        collection->liveness_required, std::move(snapshots));
  s->begin();
  return std::unique_ptr<Stream>(std::move(s));
}

}  // namespace candor
