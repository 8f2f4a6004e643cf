// Candor: camera streams — faces followed across the frames of a video source and
// decided once per track, not once per frame (issue 12, `candor watch`).
//
// A Stream reads a FrameSource on a grabber thread of its own that keeps only the newest
// few frames (StreamOptions::buffer_frames; a frame pushed out of the full buffer before
// the worker took it is counted as dropped, so latency stays bounded and no backlog
// grows), and runs a worker thread that
//
//   detects    every `detect_every`-th frame it takes, over the whole frame, at
//              min_face px (frames between detections only advance the tracks' clocks);
//   tracks     detections onto tracks by predicted-box overlap (constant velocity) and
//              appearance (template cosine), which bridges short occlusions and people
//              crossing;
//   collects   per track, the templates of its best frames by quality (size, sharpness,
//              pose, eyes: candor/analyzer.h), at most DecisionOptions::max_evidence; a
//              face cut by the frame's border or covered by a nearer face is no evidence;
//   decides    on the first good frame when it clears the threshold by early_margin,
//              else once the track holds `frames` good frames (or when it ends), on
//              the quality-weighted mean of those templates (subject_template()),
//              through Collections::search_template at the collection's operating
//              point, raised for the collection's size (DecisionOptions::strangers_named):
//              one audited search per decision, with the stream's purpose, reason
//              and budget. A track decided `unknown` that later collects clearly better
//              evidence is decided again (an upgrade, which the event says).
//
// Snapshots of recognised people are off unless StreamOptions::snapshots is set: then the
// best view of a track that is recognised is written as a JPEG and deleted after the
// retention; nothing of a track decided unknown is ever written.
//
// Strangers leave nothing: a track's templates live in memory only while it is open
// and are cleared when it ends; an `unknown` event carries the stream, time, track id,
// duration and face size only. Events never carry templates or pixels, and nothing is
// stored per frame. The networks are the Engine's and the analyser's (their NetPool
// leases); a stream owns none.
//
// Thread safety: a Stream's members may be called from any thread. Its two threads
// are started by Stream::start and stopped and joined by stop() or its destructor.
// An EventSink's publish() is called from the stream's threads, one call at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "candor/collections.h"
#include "candor/engine.h"
#include "candor/face.h"
#include "candor/result.h"
#include "candor/store.h"

namespace candor {

class FaceAnalyzer;

// Where frames come from. Implementations need not be thread safe: a Stream calls a
// source from its grabber thread only.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // (Re)opens the source. ensures: kIoError naming the source when it cannot be opened.
  virtual Status open() = 0;
  // The next frame (CV_8UC3). May block until one arrives.
  // ensures: kImageCorrupt for a frame that did not decode (the caller skips it and
  //          reads on); kIoError when the source ended or failed (the caller reopens).
  virtual Result<cv::Mat> read() = 0;
  // Frames per second the source announces; 0 when unknown.
  virtual double fps() const = 0;
  // The source for messages, with any credentials of its URL masked.
  virtual std::string describe() const = 0;
};

struct VideoSourceOptions {
  // Deliver a file's frames at its frame rate (as a camera would) instead of as fast
  // as they decode. Ignored for live sources, whose read() waits for the camera.
  // A file that ends reports kIoError; reopening plays it again from the start.
  bool realtime = true;
  // Network sources (a URI with "://"): how long opening one, and then each read, may wait
  // before the source counts as lost (kIoError, then a reconnect). OpenCV's FFmpeg backend
  // waits 30 s by default (LIBAVFORMAT_INTERRUPT_OPEN/READ_DEFAULT_TIMEOUT_MS in
  // cap_ffmpeg_impl.hpp), and a camera that dies without closing its connection (power,
  // network) sends nothing at all. Opening waits for the first key frame, which cameras
  // send every 1-4 s, hence the longer open; a read of a 25 fps stream waits 40 ms, and 5 s
  // matches StreamOptions::stall_after.
  std::chrono::milliseconds open_timeout{10000};
  std::chrono::milliseconds read_timeout{5000};
};

// A source over OpenCV's video I/O (cv::VideoCapture, Debian's build: FFmpeg and
// GStreamer): a file path, rtsp://, http(s):// (MJPEG), or a V4L2 device ("/dev/video0"
// or its number "0"). Nothing is opened until open().
// ensures: kInvalidArgument for an empty uri.
Result<std::unique_ptr<FrameSource>> make_video_source(const std::string& uri, const VideoSourceOptions& options = {});

// `uri` with its user-info masked ("rtsp://***@host/..."), for messages, events and every
// user-visible copy of a source: the user name and password in a source URL are secrets.
std::string mask_credentials(const std::string& uri);

// What a stream says. Only the fields of its kind are set; see stream_event_to_json.
struct StreamEvent {
  enum class Kind {
    kRecognised,     // a track decided as `subject`
    kUnknown,        // a track decided as nobody enrolled
    kTrackEnded,     // a track left; its final outcome
    kStreamStalled,  // no frame for StreamOptions::stall_after
    kStreamResumed,  // frames arrive again after a stall or a reconnect
    kSourceError,    // the source failed; a reconnect follows after `retry_in_ms`
  };
  Kind kind = Kind::kUnknown;
  std::string stream;
  TimePoint time;              // wall clock, milliseconds
  std::int64_t track = 0;
  double duration_s = 0;        // the track's age at the event
  float face_px = 0;            // the largest face size the track's evidence held
  // kRecognised only:
  std::string subject;
  float similarity = 0;
  float threshold = 0;
  std::size_t frames_used = 0;  // frames whose templates were combined
  double decision_ms = 0;       // from the track's first frame to the decision
  std::int64_t frame = 0;       // the index of the frame that completed the decision
  // kRecognised with snapshots on: the name of the file in SnapshotOptions::directory
  // (empty when none was written).
  std::string snapshot;
  // kRecognised after an earlier decision of the same track: that decision's outcome
  // ("unknown", or the subject it named); empty for a first decision.
  std::string upgrade_of;
  // kTrackEnded: "recognised", "unknown" or "undecided" (no frame was good enough).
  std::string outcome;
  // kSourceError / kStreamStalled: what happened; never the source's credentials.
  std::string message;
  double retry_in_ms = 0;
};

// "recognised", "unknown", "track_ended", "stream_stalled", "stream_resumed", "source_error".
std::string_view stream_event_kind_name(StreamEvent::Kind kind) noexcept;

// The event as one line of JSON (no newline): "event", "stream", "time" (RFC 3339) and
// the fields of its kind only. An unknown track's line holds no subject, similarity or
// frame: nothing that tells who the stranger resembles.
std::string stream_event_to_json(const StreamEvent& event);

// Where events go. publish() must not block for long: it runs on the stream's worker
// (webhook and MQTT sinks queue and return).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void publish(const StreamEvent& event) = 0;
};

// One JSON object per line, flushed per event (candor watch's stdout).
// requires: `out` outlives the sink. thread safety: publish() serialised by a lock.
std::unique_ptr<EventSink> make_json_lines_sink(std::ostream& out);

// Webhooks: each event POSTed as JSON to `url` from a thread of the sink's own, through a
// bounded queue, so publish() never waits for the network. The receiver checks
//   X-Candor-Timestamp: <Unix milliseconds>
//   X-Candor-Signature: sha256=<hex HMAC-SHA256 (libsodium) of "<timestamp>.<body>" under secret>
// (the timestamp signed too, so an old delivery cannot be replayed as new). A delivery that
// fails (no connection, timeout, a status other than 2xx) is retried with doubling delays;
// after max_attempts it is given up (counted). When the queue is full the oldest event is
// dropped (counted): a dead receiver costs events, never the video loop.
struct WebhookOptions {
  std::string url;     // http://host[:port]/path
  std::string secret;  // at least 16 bytes
  std::size_t queue = 256;
  int max_attempts = 5;
  std::chrono::milliseconds retry_initial{200};
  std::chrono::milliseconds retry_max{10000};
  std::chrono::milliseconds timeout{2000};  // connect and read, per attempt
};

struct WebhookStatus {
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;    // pushed out of a full queue
  std::uint64_t given_up = 0;   // failed max_attempts times
  std::uint64_t attempts_failed = 0;
  std::size_t pending = 0;
};

class WebhookSink : public EventSink {
 public:
  // ensures: kInvalidArgument for a URL that is not http://host[:port][/path] or a secret
  //          under 16 bytes. The delivery thread is joined by the destructor, which first
  //          tries the queued events once each within `timeout`.
  static Result<std::unique_ptr<WebhookSink>> create(WebhookOptions options);
  virtual WebhookStatus status() const = 0;
};

// The signature header's value for `body` sent at `timestamp_ms` (for receivers and tests).
std::string webhook_signature(const std::string& secret, std::int64_t timestamp_ms, const std::string& body);

// MQTT (libmosquitto): every event as stream_event_to_json on `<prefix>/<id>/event` (QoS 1),
// where <id> is the stream's name with every character outside [A-Za-z0-9_-] replaced by
// '_' (topics and Home Assistant ids cannot hold '/', '+', '#' or spaces). Retained
// states beside it:
//   <prefix>/<id>/availability     "online", and "offline" as the Last Will and on close;
//   <prefix>/<id>/last_recognised  the subject of the latest recognised event;
//   <prefix>/<id>/unknown_count    tracks decided unknown since the sink started.
// Home Assistant MQTT discovery: two retained sensor configs,
//   <discovery_prefix>/sensor/candor_<id>_last_recognised/config and ..._unknown_count/config,
// with unique_id, a device block naming the stream, state_topic and availability_topic.
// The states, the availability and the configs are sent again on every (re)connect, so a
// broker that lost its retained messages gets them back.
//
// publish() never waits for the network: events go to a bounded queue (when full, the
// oldest is dropped and counted); a thread of the sink's own hands them to libmosquitto,
// at most max_inflight unacknowledged at a time and only while connected, and
// libmosquitto's network thread (mosquitto_loop_start) sends them and reconnects with
// doubling delays. A stranger's event is the JSON every sink sends: no identity fields.
struct MqttOptions {
  std::string url;  // mqtt://host[:port][/prefix] (port 1883) or mqtts:// (8883, the system's CAs)
  std::string stream = "stream";      // the stream's name (events carry it; topics use its id)
  std::string username;               // empty: anonymous. Never in the URL: ps and logs show those
  std::string password;
  std::string discovery_prefix = "homeassistant";  // Home Assistant's default
  std::size_t queue = 256;
  std::size_t max_inflight = 20;      // libmosquitto's own default for QoS 1 in flight
  std::chrono::seconds reconnect_initial{1};  // libmosquitto counts whole seconds
  std::chrono::seconds reconnect_max{30};
  std::chrono::seconds keepalive{30};
  std::chrono::milliseconds flush_timeout{2000};  // the destructor's wait for queued events
};

struct MqttStatus {
  bool connected = false;
  std::uint64_t connects = 0;       // successful CONNACKs, the first included
  std::uint64_t acknowledged = 0;   // messages the broker acknowledged (events, states, configs)
  std::uint64_t dropped = 0;        // events pushed out of a full queue
  std::size_t pending = 0;          // events queued, not yet handed to libmosquitto
  std::string refused;              // the broker's latest refusal ("not authorised", ...); empty once connected
};

class MqttSink : public EventSink {
 public:
  // ensures: kInvalidArgument for a URL that is not mqtt(s)://host[:port][/prefix], a URL
  //          with user-info (credentials go in username/password), a prefix holding '+' or
  //          '#', an empty stream name, a zero queue or max_inflight; kInternal when
  //          libmosquitto cannot set up the client. A broker that is down is not an error:
  //          the sink connects when it comes up. The destructor waits up to flush_timeout
  //          for queued events, publishes "offline" and joins both threads.
  static Result<std::unique_ptr<MqttSink>> create(MqttOptions options);
  // The checks create() makes of the options, without a client or a connection: the
  // server checks a stream's MQTT output when the stream is created, not when it starts.
  static Status check(const MqttOptions& options);
  virtual MqttStatus status() const = 0;
};

// The topic and discovery id of a stream's name (see MqttOptions).
std::string mqtt_stream_id(const std::string& stream);

// Every event to each of `sinks`, in order (stdout and a webhook).
// requires: the sinks outlive the returned one.
std::unique_ptr<EventSink> make_fanout_sink(std::vector<EventSink*> sinks);

struct TrackerOptions {
  // A detection continues a track when its box overlaps the track's predicted box by at
  // least this IoU (0.3: the usual MOT gate, e.g. SORT's), or, when both have templates,
  // when its centre lies within max_jump track widths and the templates agree.
  float min_iou = 0.3f;
  float max_jump = 1.5f;
  // Templates at least this similar are taken for the same face. 0.35 lies above the
  // recogniser's fmr-1e-3 threshold (0.338; config/models.json), so two strangers are
  // seldom joined, while the same face in consecutive frames scores ~0.7 and more.
  float min_appearance = 0.35f;
  // Detection rounds a track survives without a detection (an occlusion, a missed
  // frame) before it ends: 5 rounds at detect_every 3 and 25 fps is 0.6 s.
  int max_missed = 5;
  // Frames from one detection round to the next (a stream sets its detect_every). Motion is
  // predicted, and a jump allowed, for the frames that really passed: when the worker falls
  // behind and frames are dropped, the next round comes many frames later, and a walk
  // predicted one round ahead split into two tracks (two events for one person under ASan
  // on a loaded machine, sessions 9 and 10).
  int frames_per_round = 1;
};

struct DecisionOptions {
  // Good frames a track collects before it is decided (sooner if it ends first). 1
  // decides on the first good frame alone (the baseline `candor bench stream` prints).
  std::size_t frames = 3;
  // A frame is good when its face is at least this large (px, shorter side) and its
  // quality level at least medium (QualityThresholds: 40 px, sharpness 15).
  float min_face = 40;
  // The most templates a track keeps (the best by weight).
  std::size_t max_evidence = 8;
  // A track decided unknown is decided again when it has collected this many good
  // frames more than at its last decision and its largest face grew by `regrow`
  // (a closer, better view); at most max_redecisions times.
  std::size_t redecide_after = 3;
  float regrow = 1.25f;
  std::size_t max_redecisions = 2;
  // An early decision: the first good frame alone is searched, and names someone when its
  // similarity clears the threshold by this margin; otherwise the track waits for `frames`
  // good frames (that first search is audited too). Empty: no early decision.
  // 0.065 is the distance from the shipped fmr-1e-4 point to fmr-1e-5, for a subject of
  // 1 photo (0.4128 -> 0.4777) and of 3 (0.4292 -> 0.4942) alike (config/models.json,
  // `candor bench calibrate` on LFW View 1): one frame names someone only at a tenth of
  // the operating point's false match rate. See README "Camera streams" for what it
  // buys (latency) and what it costs (strangers named, wrong names: both measured).
  std::optional<float> early_margin = 0.065f;
  // The most fraction of strangers' tracks that may be named as someone, whatever the
  // collection's size: each of a track's decisions (the first and up to max_redecisions
  // more) searches at SearchOptions::fpir = strangers_named / (1 + max_redecisions), so
  // their union stays within it (the early search, at early_margin above that, adds about
  // a tenth of one more). The collection's own point is kept when it is stricter (a small
  // collection). 0.005 is issue 12's target. Empty: the collection's point, which names
  // strangers more often the more people it holds (README "Camera streams").
  std::optional<double> strangers_named = 0.005;
};

// Snapshots of recognised people (StreamOptions::snapshots; off by default). When a track
// is recognised, its best view — the largest whole face among its evidence frames, grown
// by half its size on every side — is written into `directory` as
// "<stream id>-<UTC yyyymmddThhmmss.mmmZ>-t<track>.jpg" (owner-only: the directory 0700
// when created, the file 0600), and the recognised event names the file. The view is held
// in memory while the track is open only, and dropped when it ends: nothing of a track
// decided unknown is written. This stream's files older than `retention` are deleted when
// it starts and then once a minute while it runs (the time in the name counts, not the
// file's mtime).
struct SnapshotOptions {
  std::filesystem::path directory;
  std::chrono::hours retention{24};  // at least one hour
  int jpeg_quality = 90;             // 1..100
};

// True when `name` has the form of a snapshot file's name (above): a server checks a name
// from a request with it before the name comes near a path.
bool is_snapshot_name(std::string_view name) noexcept;

// The most DecisionOptions::strangers_named an operator may set (candor watch, a server's
// stream): half of strangers' tracks, split over three decisions, is an FPIR of 1/6 per
// decision, which for a collection of up to 1,666 subjects is already looser than its own
// point at FMR 1e-4 per comparison, so the collection's point decides; more would change
// nothing there and only read as a promise.
inline constexpr double kMaxStrangersNamed = 0.5;

// An operator's share (candor watch --strangers-named, a server stream's strangers_named,
// bench stream's) as DecisionOptions::strangers_named: 0 means the collection's point
// alone, which the library spells as empty (it refuses 0 as a share).
inline std::optional<double> strangers_named_share(double share) noexcept {
  return share > 0 ? std::optional<double>(share) : std::nullopt;
}

// The most frames StreamOptions::buffer_frames may hold: more would only add latency (64
// frames are 2.6 s at 25 fps).
inline constexpr std::size_t kMaxBufferFrames = 64;

struct StreamOptions {
  std::string name = "stream";  // in events and audit details
  std::string collection;
  // The stream's purpose: must be the collection's purpose (its subjects consented to
  // that), checked at start(); written into each decision's audit entry.
  std::string purpose;
  AuditContext context;         // actor and reason of every decision's audit entry
  // Detect on every n-th frame taken (1: every frame). 3 at 25 fps is 8.3 detections a
  // second; see README "Camera streams" for what it costs and what it buys.
  int detect_every = 3;
  // Frames held for the worker, 1..64. When the buffer is full and another frame arrives,
  // the oldest held frame is dropped (counted in StreamStatus::frames_dropped): the newest
  // frames win, and the worker is never more than this many frames behind the camera. A
  // detection round that takes longer than a frame period (new faces to embed and weigh)
  // then loses nothing as long as it ends within buffer_frames periods, and the frames
  // between detections that queued meanwhile cost the worker nothing. 3 = detect_every's
  // default: with one frame (newest only), two 1280x720 streams on 2 cores dropped 1.3% of
  // their frames at 0.63 cores of CPU (README "Measured: `candor bench stream`").
  std::size_t buffer_frames = 3;
  DetectOptions detect = [] {
    DetectOptions d;
    d.min_face_size = 40;  // faces below 40 px are not recognisable (QualityThresholds)
    return d;
  }();
  TrackerOptions tracker;
  DecisionOptions decision;
  // The camera's exposure time per frame in seconds (its shutter speed: 1/50 s is 0.02),
  // 0..1; 0: unknown. When set and the source announces its frame rate, the face of a
  // track that moves is deblurred before its landmarks and template are computed
  // (deblur.h): its smear is the track's motion per frame times the frame rate times the
  // exposure (at most one frame period), and a smear under kMinMotionBlurPx or longer than
  // the face is left alone. A camera's configuration page shows its shutter; one on
  // automatic exposure has none to give (leave 0). A shutter set longer than the camera's
  // makes sharp faces ring: see README "Camera streams" for what deblurring gains at the
  // right shutter and what a misjudged smear costs.
  double shutter_s = 0;
  // A source that delivers nothing for this long raises kStreamStalled (once per stall).
  std::chrono::milliseconds stall_after{5000};
  // Reconnection: first delay, doubling up to the maximum.
  std::chrono::milliseconds reconnect_initial{200};
  std::chrono::milliseconds reconnect_max{10000};
  // Stop after the source ended this many times (0: reconnect for ever); a source that
  // fails to open before it ever opened counts as an end too. 1 makes a file source play
  // once: the stream finishes, wait() returns, and a file that cannot be opened (missing,
  // not a video) leaves its error in last_error instead of being retried for ever.
  int stop_after_ends = 0;
  // For files and measurement: the grabber waits until the worker has taken each frame
  // instead of replacing it, so no frame is dropped and a run does not depend on the
  // machine's load (a camera cannot wait: leave it off for live sources).
  bool lossless = false;
  // Off unless set: see SnapshotOptions.
  std::optional<SnapshotOptions> snapshots;
  // Asked before each decision's search, as SearchOptions::admit_faces (a budget).
  std::function<Status(std::size_t)> admit;
  // For measurement in-process only (`candor bench stream`): called on the worker with
  // each detected box and the track it joined. Never an event, never stored.
  std::function<void(std::int64_t track, std::int64_t frame, const Box& box)> on_track_box;
};

struct StreamStatus {
  std::uint64_t frames_read = 0;      // frames the source delivered
  std::uint64_t frames_processed = 0; // frames the worker took
  std::uint64_t frames_dropped = 0;   // pushed out of a full buffer (buffer_frames) before the worker took them
  std::uint64_t frames_corrupt = 0;   // skipped: did not decode
  std::uint64_t detections_run = 0;
  std::uint64_t faces_embedded = 0;   // faces given landmarks and a template
  std::uint64_t faces_analysed = 0;   // ... of which weighed by quality (those that can be evidence)
  std::uint64_t faces_deblurred = 0;  // ... of which deblurred first (StreamOptions::shutter_s)
  double busy_s = 0;                  // worker wall time spent detecting, embedding and deciding
  double busy_cpu_s = 0;              // ... and the CPU time it took (thread CPU clock: load-independent)
  double detect_cpu_s = 0;            // ... of which the detector's
  double grab_cpu_s = 0;              // CPU time of the grabber (reading and decoding frames)
  std::uint64_t reconnects = 0;
  std::uint64_t open_tracks = 0;
  std::uint64_t tracks = 0;
  std::uint64_t decisions = 0;        // audited searches
  std::uint64_t recognised = 0;       // tracks whose latest decision named someone
  bool stalled = false;
  bool finished = false;              // the worker has stopped (stop(), or stop_after_ends)
  std::optional<Error> last_error;
};

class Stream {
 public:
  // Starts the grabber and worker threads.
  // requires: engine, collections, sink (and analyzer when given) outlive the Stream.
  //   Without an analyser, frames are weighed by size alone and liveness cannot be checked.
  // ensures: kInvalidArgument for a bad context, an empty name, detect_every < 1 or
  //          decision.frames == 0, a shutter_s outside 0..1; kNotFound for an unknown collection; kConsentRequired
  //          when the purpose is not the collection's; kInvalidArgument when the
  //          collection requires liveness and no analyser is given; for snapshots,
  //          kInvalidArgument for an empty directory, a retention under one hour or a JPEG
  //          quality outside 1..100, kIoError when the directory cannot be made.
  static Result<std::unique_ptr<Stream>> start(const Engine& engine, const FaceAnalyzer* analyzer,
                                               Collections& collections, std::unique_ptr<FrameSource> source,
                                               EventSink& sink, StreamOptions options);
  virtual ~Stream() = default;

  // Stops reading, decides the open tracks that hold good frames, ends them, and joins
  // the threads. Idempotent. A source blocked in read() is waited for (OpenCV offers no
  // way to interrupt it); files and the test sources return promptly.
  virtual void stop() = 0;
  // Waits until the stream finishes by itself (stop_after_ends) or `timeout` passes.
  // ensures: true when it finished.
  virtual bool wait(std::chrono::milliseconds timeout) = 0;
  virtual StreamStatus status() const = 0;
};

}  // namespace candor
