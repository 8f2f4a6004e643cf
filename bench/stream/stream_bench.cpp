// `candor bench stream`: see stream_bench.h and README "Camera streams (issue 12)".
//
// The videos: LFW photos (250x250, the face ~100 px) composed onto a 1280x720
// background, scaled to the face size of each person's path, with a horizontal motion
// blur of half the frame's displacement (a 1/50 s shutter at 25 fps), Gaussian noise
// (sigma 4) and the best codec OpenCV's writer offers here (H.264 through FFmpeg when it
// opens, else Motion JPEG, said in the output). A face scaled up to 200 px from a 100 px
// crop is blurrier than a real one of that size: the large end of the walk is harder
// than real footage, and the small end (40 px) as hard.
#include "stream/stream_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "candor/analyzer.h"
#include "candor/collections.h"
#include "candor/crypto.h"
#include "candor/store.h"
#include "candor/stream.h"
#include "engine/lfw.h"

namespace candor::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kWidth = 1280, kHeight = 720;
constexpr double kFps = 25;
constexpr int kClipFrames = 75;  // 3 s
constexpr int kEnrollPhotos = 3;
// The bench camera's shutter is open for half of each frame period (1/50 s at 25 fps): a
// face is smeared over half its displacement per frame.
constexpr double kShutterS = 0.5 / kFps;
constexpr const char* kPurpose = "bench: door access for staff";

[[noreturn]] void die(const std::string& message) {
  std::cerr << "candor bench stream: " << message << "\n";
  std::exit(1);
}


struct Args {
  fs::path lfw;
  int people = 12;     // enrolled people
  int strangers = -1;  // -1: half as many as people
  int strangers_from = 0;  // the first of the shuffled one-photo people taken (disjoint runs in parallel)
  int detect_every = StreamOptions{}.detect_every;
  double shutter_s = kShutterS;  // what the streams are told of the camera (0: not told, no deblurring)
  double strangers_named = DecisionOptions{}.strangers_named.value_or(0);  // 0: the collection's point alone
  int max_streams = 3;
  fs::path out;        // where the videos go; empty: a temporary folder, removed after
  bool json = false;
  unsigned seed = 12;
};

struct Person {
  std::string name;
  bool enrolled = false;
  fs::path video_image;
  std::vector<fs::path> enroll_images;
  cv::Mat image;
  Box face;  // in image
};

enum class Path { kTowards, kRightward, kLeftward };

struct Appearance {
  int person = 0;
  Path path = Path::kTowards;
  float y = 340, size0 = 40, size1 = 200;
};

struct Where {
  float cx = 0, cy = 0, size = 0, speed = 0;  // speed: horizontal px per frame
};

Where where(const Appearance& a, int frame) {
  const float t = static_cast<float>(frame) / (kClipFrames - 1);
  switch (a.path) {
    case Path::kTowards: {
      // Walking at constant speed towards the camera: 1/size falls linearly.
      const float inv = (1 - t) / a.size0 + t / a.size1;
      return {kWidth / 2.0f - 60 + 120 * t, a.y - 50 * t, 1 / inv, 1.6f};
    }
    case Path::kRightward: return {-80 + (kWidth + 160) * t, a.y, a.size0, (kWidth + 160.0f) / (kClipFrames - 1)};
    case Path::kLeftward: return {kWidth + 80 - (kWidth + 160) * t, a.y, a.size0, (kWidth + 160.0f) / (kClipFrames - 1)};
  }
  return {};
}

Box truth_box(const Person& p, const Where& w) {
  const float s = w.size / std::min(p.face.width, p.face.height);
  return {w.cx - s * p.face.width / 2, w.cy - s * p.face.height / 2, s * p.face.width, s * p.face.height};
}

cv::Mat make_background(std::mt19937& rng) {
  cv::Mat bg(kHeight, kWidth, CV_8UC3);
  std::uniform_int_distribution<int> tone(60, 190);
  const cv::Scalar top(tone(rng), tone(rng), tone(rng)), bottom(tone(rng), tone(rng), tone(rng));
  for (int y = 0; y < kHeight; ++y) {
    const double t = static_cast<double>(y) / kHeight;
    bg.row(y).setTo(top * (1 - t) + bottom * t);
  }
  std::uniform_int_distribution<int> x(0, kWidth), yy(0, kHeight), w(40, 400);
  for (int i = 0; i < 12; ++i) {  // doors, windows, posters
    cv::rectangle(bg, cv::Rect(x(rng), yy(rng), w(rng), w(rng)), cv::Scalar(tone(rng), tone(rng), tone(rng)), cv::FILLED);
  }
  cv::GaussianBlur(bg, bg, cv::Size(5, 5), 0);
  return bg;
}

void paste(cv::Mat& frame, const Person& p, const Where& w) {
  const float s = w.size / std::min(p.face.width, p.face.height);
  cv::Mat scaled;
  cv::resize(p.image, scaled, cv::Size(), s, s, s < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
  const int blur = static_cast<int>(std::lround(w.speed * kShutterS * kFps));
  if (blur >= 2) cv::blur(scaled, scaled, cv::Size(blur, 1));
  const cv::Point2f fc = p.face.center() * s;
  cv::Mat mask(scaled.size(), CV_32F, cv::Scalar(0));
  cv::ellipse(mask, fc, cv::Size2f(p.face.width * s * 1.5f, p.face.height * s * 1.9f), 0, 0, 360, cv::Scalar(1), cv::FILLED);
  const int k = std::max(3, static_cast<int>(w.size / 6) | 1);
  cv::GaussianBlur(mask, mask, cv::Size(k, k), 0);
  const cv::Point origin(static_cast<int>(std::lround(w.cx - fc.x)), static_cast<int>(std::lround(w.cy - fc.y)));
  const cv::Rect placed(origin, scaled.size());
  const cv::Rect visible = placed & cv::Rect(0, 0, frame.cols, frame.rows);
  if (visible.empty()) return;
  const cv::Rect local(visible.tl() - origin, visible.size());
  cv::Mat dst = frame(visible), src = scaled(local), m = mask(local);
  for (int y = 0; y < dst.rows; ++y) {
    auto* d = dst.ptr<cv::Vec3b>(y);
    const auto* sp = src.ptr<cv::Vec3b>(y);
    const float* mp = m.ptr<float>(y);
    for (int x = 0; x < dst.cols; ++x) {
      for (int c = 0; c < 3; ++c) d[x][c] = cv::saturate_cast<uchar>(d[x][c] * (1 - mp[x]) + sp[x][c] * mp[x]);
    }
  }
}

struct Codec {
  std::string name, extension;
  int fourcc = 0;
  int api = cv::CAP_ANY;
};

// The first codec whose writer opens and whose output reads back here.
Codec pick_codec(const fs::path& dir) {
  const std::vector<Codec> tried = {
      {"H.264 (FFmpeg, avc1)", ".mp4", cv::VideoWriter::fourcc('a', 'v', 'c', '1'), cv::CAP_FFMPEG},
      {"H.264 (FFmpeg, H264)", ".mp4", cv::VideoWriter::fourcc('H', '2', '6', '4'), cv::CAP_FFMPEG},
      {"Motion JPEG", ".avi", cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), cv::CAP_ANY}};
  for (const Codec& c : tried) {
    const fs::path probe = dir / ("codec-probe" + c.extension);
    {
      cv::VideoWriter w(probe.string(), c.api, c.fourcc, kFps, cv::Size(kWidth, kHeight));
      if (!w.isOpened()) continue;
      cv::Mat f(kHeight, kWidth, CV_8UC3, cv::Scalar(100, 120, 140));
      for (int i = 0; i < 5; ++i) w.write(f);
    }
    cv::VideoCapture r(probe.string());
    cv::Mat f;
    const bool readable = r.isOpened() && r.read(f) && !f.empty();
    fs::remove(probe);
    if (readable) return c;
  }
  die("no video codec of OpenCV's writer works here (not even Motion JPEG)");
}

struct Clip {
  fs::path file;
  std::vector<Appearance> people;
  std::string scenario;
};

// Writes the clip's video and its truth (JSON beside it).
void render(Clip& clip, const std::vector<Person>& persons, const Codec& codec, std::mt19937& rng) {
  cv::VideoWriter writer(clip.file.string(), codec.api, codec.fourcc, kFps, cv::Size(kWidth, kHeight));
  if (!writer.isOpened()) die("cannot write " + clip.file.string());
  const cv::Mat bg = make_background(rng);
  nlohmann::json truth = {{"video", clip.file.filename().string()}, {"fps", kFps}, {"size", {kWidth, kHeight}},
                          {"codec", codec.name}, {"scenario", clip.scenario}, {"people", nlohmann::json::array()}};
  std::vector<nlohmann::json> boxes(clip.people.size(), nlohmann::json::array());
  for (int f = 0; f < kClipFrames; ++f) {
    cv::Mat frame = bg.clone();
    std::vector<std::size_t> order(clip.people.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return where(clip.people[a], f).size < where(clip.people[b], f).size;  // the nearer face in front
    });
    for (std::size_t i : order) {
      const Person& p = persons[static_cast<std::size_t>(clip.people[i].person)];
      const Where w = where(clip.people[i], f);
      paste(frame, p, w);
      const Box b = truth_box(p, w);
      boxes[i].push_back({f, std::round(b.x), std::round(b.y), std::round(b.width), std::round(b.height)});
    }
    cv::Mat noise(frame.size(), CV_16SC3), wide;
    cv::randn(noise, 0, 4);
    frame.convertTo(wide, CV_16SC3);
    wide += noise;
    wide.convertTo(frame, CV_8UC3);
    writer.write(frame);
  }
  for (std::size_t i = 0; i < clip.people.size(); ++i) {
    const Person& p = persons[static_cast<std::size_t>(clip.people[i].person)];
    nlohmann::json enroll = nlohmann::json::array();
    for (const auto& e : p.enroll_images) enroll.push_back(e.filename().string());
    truth["people"].push_back({{"name", p.name}, {"enrolled", p.enrolled}, {"video_image", p.video_image.filename().string()},
                               {"enroll_images", enroll}, {"boxes", boxes[i]}});
  }
  std::ofstream(fs::path(clip.file).replace_extension(".json")) << truth.dump(1) << "\n";
}

// Events and boxes of one stream run.
class Recorder final : public EventSink {
 public:
  struct Timed {
    StreamEvent event;
    Clock::time_point at;
  };
  void publish(const StreamEvent& e) override {
    std::lock_guard lock(mutex_);
    events.push_back({e, Clock::now()});
  }
  void box(std::int64_t track, std::int64_t frame, const Box& b) {
    std::lock_guard lock(mutex_);
    boxes.push_back({track, frame, b});
  }
  struct TrackBox {
    std::int64_t track, frame;
    Box box;
  };
  std::vector<Timed> events;
  std::vector<TrackBox> boxes;

 private:
  std::mutex mutex_;
};

struct Run {
  Recorder recorder;
  StreamStatus status;
  Clock::time_point t0;
};

struct Tally {
  int enrolled = 0, right = 0, wrong = 0;
  int strangers = 0, strangers_named = 0;
  int tracks = 0, unmatched_named = 0;
  std::vector<double> latency_ms;  // first frame >= 80 px to the right name (video time + compute)
  // ... from the first frame whose face is >= 80 px and wholly inside the frame: a person
  // walking in sideways is >= 80 px from frame 0, when still outside it.
  std::vector<double> latency_in_frame_ms;
  int decided_before_80 = 0;
  std::vector<std::string> missed;  // enrolled appearances not named right: "name (scenario)"
  // Appearances named wrongly (a stranger named, or the wrong person): how the name came
  // (frames, an upgrade, the margin over the threshold). LFW people in a bench, never a stream's.
  std::vector<std::string> misnamed;
  std::uint64_t frames_read = 0, dropped = 0, decisions = 0, rounds = 0, embedded = 0, analysed = 0, deblurred = 0;
  double busy_s = 0, cpu_s = 0, detect_cpu_s = 0, grab_cpu_s = 0, video_s = 0;
  int named_on_one_frame = 0;  // right or wrong: decided on the first good frame alone
  std::set<float> thresholds;  // those names were given at (one per photo count and kind of decision)
};

// Which person each track followed (the majority of its boxes by IoU with the truth).
std::map<std::int64_t, int> track_people(const Clip& clip, const std::vector<Person>& persons, const Recorder& r) {
  std::map<std::int64_t, std::map<int, int>> votes;
  for (const auto& tb : r.boxes) {
    int best = -1;
    float best_iou = 0.3f;
    for (std::size_t i = 0; i < clip.people.size(); ++i) {
      const Box t = truth_box(persons[static_cast<std::size_t>(clip.people[i].person)],
                              where(clip.people[i], static_cast<int>(tb.frame)));
      const float o = iou(t, tb.box);
      if (o > best_iou) best_iou = o, best = static_cast<int>(i);
    }
    if (best >= 0) ++votes[tb.track][best];
  }
  std::map<std::int64_t, int> out;
  for (const auto& [track, v] : votes) {
    out[track] = std::max_element(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
  }
  return out;
}

void score(const Clip& clip, const std::vector<Person>& persons, const Run& run, Tally& t) {
  const auto people_of = track_people(clip, persons, run.recorder);
  std::map<std::int64_t, std::pair<std::string, std::int64_t>> named;  // track -> first name given, at which frame
  std::map<std::int64_t, const StreamEvent*> naming;                    // track -> that event
  std::set<std::int64_t> tracks;
  for (const auto& te : run.recorder.events) {
    if (te.event.kind == StreamEvent::Kind::kTrackEnded) tracks.insert(te.event.track);
    if (te.event.kind == StreamEvent::Kind::kRecognised && !named.count(te.event.track)) {
      named[te.event.track] = {te.event.subject, te.event.frame};
      naming[te.event.track] = &te.event;
      t.thresholds.insert(te.event.threshold);
    }
  }
  // A decision comes out of the detection round of its frame: that round's compute
  // (this run's mean CPU time per round) follows the frame's arrival.
  const double round_s = run.status.detections_run == 0 ? 0 : run.status.busy_cpu_s / run.status.detections_run;
  t.tracks += static_cast<int>(tracks.size());
  for (const auto& [track, n] : named) {
    if (!people_of.count(track)) ++t.unmatched_named;
  }
  for (std::size_t i = 0; i < clip.people.size(); ++i) {
    const Person& p = persons[static_cast<std::size_t>(clip.people[i].person)];
    bool right = false, wrong = false;
    std::optional<std::int64_t> first_right;
    for (const auto& [track, who] : people_of) {
      if (who != static_cast<int>(i) || !named.count(track)) continue;
      const auto& [subject, at] = named.at(track);  // at: the frame
      if (p.enrolled && subject == p.name) {
        right = true;
        if (!first_right || at < *first_right) first_right = at;
      } else {
        wrong = true;
        const StreamEvent& e = *naming.at(track);
        t.misnamed.push_back(p.name + " (" + clip.scenario + (p.enrolled ? ", enrolled" : ", stranger") + ") as " +
                             subject + " on " + std::to_string(e.frames_used) + " frames" +
                             (e.upgrade_of.empty() ? "" : ", upgrading " + e.upgrade_of) + ", similarity " +
                             std::to_string(e.similarity) + " at threshold " + std::to_string(e.threshold));
      }
    }
    if (!p.enrolled) {
      ++t.strangers;
      if (wrong) ++t.strangers_named;
      continue;
    }
    ++t.enrolled;
    if (right) ++t.right;
    else t.missed.push_back(p.name + " (" + clip.scenario + ")");
    if (wrong) ++t.wrong;
    if (first_right) {
      int f80 = 0;
      while (f80 < kClipFrames && where(clip.people[i], f80).size < 80) ++f80;
      const double ms = ((static_cast<double>(*first_right) - f80) / kFps + round_s) * 1000;
      if (*first_right < f80) ++t.decided_before_80;
      t.latency_ms.push_back(std::max(round_s * 1000, ms));
      const Person& who = persons[static_cast<std::size_t>(clip.people[i].person)];
      auto in_frame = [&](int f) {
        const Box b = truth_box(who, where(clip.people[i], f));
        return b.x >= 0 && b.y >= 0 && b.right() <= kWidth && b.bottom() <= kHeight;
      };
      int seen = f80;
      while (seen < kClipFrames && !in_frame(seen)) ++seen;
      const double ms_seen = ((static_cast<double>(*first_right) - seen) / kFps + round_s) * 1000;
      t.latency_in_frame_ms.push_back(std::max(round_s * 1000, ms_seen));
    }
  }
  t.frames_read += run.status.frames_read;
  t.dropped += run.status.frames_dropped;
  t.decisions += run.status.decisions;
  t.busy_s += run.status.busy_s;
  t.cpu_s += run.status.busy_cpu_s;
  t.grab_cpu_s += run.status.grab_cpu_s;
  t.rounds += run.status.detections_run;
  t.detect_cpu_s += run.status.detect_cpu_s;
  t.embedded += run.status.faces_embedded;
  t.analysed += run.status.faces_analysed;
  t.deblurred += run.status.faces_deblurred;
  for (const auto& te : run.recorder.events) {
    if (te.event.kind == StreamEvent::Kind::kRecognised && te.event.upgrade_of.empty() && te.event.frames_used == 1) {
      ++t.named_on_one_frame;
    }
  }
  t.video_s += kClipFrames / kFps;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(std::min<double>(v.size() - 1, std::floor(q * (v.size() - 1) + 0.5)))];
}

double pct(int a, int b) { return b == 0 ? 0 : 100.0 * a / b; }

// The machine's 1-minute load average: real-time figures mean little on a busy machine.
double load_average() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

struct Setup {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<FaceAnalyzer> analyzer;
  std::unique_ptr<Store> store;
  std::unique_ptr<Collections> collections;
};

// Plays the clips at once, one stream each: in real time (frames dropped when the worker
// falls behind), or lossless and as fast as the worker goes (load-independent accuracy).
void run_streams(Setup& s, const std::vector<const Clip*>& clips, const StreamOptions& base, bool realtime,
                 std::vector<Run>& runs) {
  std::vector<std::unique_ptr<Stream>> streams;
  runs = std::vector<Run>(clips.size());
  for (std::size_t i = 0; i < clips.size(); ++i) {
    VideoSourceOptions vo;
    vo.realtime = realtime;
    auto source = make_video_source(clips[i]->file.string(), vo);
    if (!source) die(source.error().message);
    StreamOptions o = base;
    o.name = "bench-" + std::to_string(i);
    o.stop_after_ends = 1;
    o.lossless = !realtime;
    Recorder* rec = &runs[i].recorder;
    o.on_track_box = [rec](std::int64_t track, std::int64_t frame, const Box& b) { rec->box(track, frame, b); };
    runs[i].t0 = Clock::now();
    auto st = Stream::start(*s.engine, s.analyzer.get(), *s.collections, std::move(*source), runs[i].recorder, o);
    if (!st) die(st.error().message);
    streams.push_back(std::move(*st));
  }
  for (std::size_t i = 0; i < streams.size(); ++i) {
    if (!streams[i]->wait(std::chrono::minutes(5))) die("a stream did not finish in 5 minutes");
    streams[i]->stop();
    runs[i].status = streams[i]->status();
  }
}

void run_stream_bench(const EngineOptions& engine_options, const Args& a) {
  const fs::path lfw = a.lfw.empty() ? stream_bench_shared_dir() / "datasets" / "lfw" : a.lfw;
  if (!fs::is_directory(lfw / "lfw")) {
    die("LFW is absent at " + lfw.string() +
        ": no videos can be made, nothing was measured (the team's copy lives in ../shared/datasets/lfw; "
        "CANDOR_SHARED_DIR or --lfw point elsewhere)");
  }
  cv::setNumThreads(1);  // one core per stream's inference: the figure the issue asks for
  // People with 4+ photos (3 to enrol, another for the video) and one-photo strangers.
  std::mt19937 rng(a.seed);  // then backgrounds and the clips' order
  auto [many, single] = shuffled_lfw_people(lfw, kEnrollPhotos + 1, rng);
  const int n_strangers = a.strangers >= 0 ? a.strangers : std::max(1, a.people / 2);
  if (a.people > static_cast<int>(many.size()) || a.strangers_from < 0 ||
      a.strangers_from + n_strangers > static_cast<int>(single.size())) {
    die("LFW has too few people");
  }

  Setup s;
  EngineOptions eo = engine_options;
  eo.replicas = std::max(1, a.max_streams);
  auto engine = Engine::create(eo);
  if (!engine) die(engine.error().message);
  s.engine = std::move(*engine);
  AnalyzerOptions ao;
  ao.model_dir = engine_options.model_dir;
  ao.manifest = engine_options.manifest;
  ao.replicas = eo.replicas;
  ao.load_liveness = false;
  auto analyzer = FaceAnalyzer::create(ao);
  if (!analyzer) die(analyzer.error().message);
  s.analyzer = std::move(*analyzer);

  const bool temporary = a.out.empty();
  const fs::path dir = temporary ? fs::temp_directory_path() / ("candor-bench-stream-" + std::to_string(::getpid())) : a.out;
  fs::create_directories(dir);
  StoreOptions so;
  so.durability = Durability::kNormal;
  auto store = open_store((dir / "bench.db").string(), so);
  if (!store) die(store.error().message);
  s.store = std::move(*store);
  CollectionsOptions co;
  co.analyzer = s.analyzer.get();
  auto collections = Collections::open(*s.engine, *s.store, co);
  if (!collections) die(collections.error().message);
  s.collections = std::move(*collections);
  const AuditContext admin{"bench:stream", "benchmark set-up"};
  NewCollection spec;
  spec.name = "bench";
  spec.purpose = kPurpose;
  auto created = s.collections->create_collection(spec, "fmr-1e-4", admin);  // Collections' default operating point
  if (!created) die(created.error().message);

  // Each person's video photo, its face box, and (enrolled) three other photos enrolled with consent.
  std::vector<Person> persons;
  auto load = [&](const std::string& name, bool enrolled) {
    Person p;
    p.name = name;
    p.enrolled = enrolled;
    const int count = static_cast<int>(std::distance(fs::directory_iterator(lfw / "lfw" / name), fs::directory_iterator()));
    p.video_image = lfw_image_path(lfw, name, enrolled ? count : 1);
    p.image = cv::imread(p.video_image.string());
    auto faces = s.engine->detect(p.image);
    if (p.image.empty() || faces.empty()) return;
    p.face = std::max_element(faces.begin(), faces.end(), [](const Face& x, const Face& y) { return x.box.area() < y.box.area(); })->box;
    if (enrolled) {
      NewConsent c;
      c.collection = "bench";
      c.subject = name;
      c.purpose = kPurpose;
      c.evidence_sha256 = sha256_hex(std::string_view("bench consent of " + name));
      c.collected_by = "bench";
      if (auto g = s.store->grant_consent(c, admin); !g) die(g.error().message);
      std::vector<std::vector<std::uint8_t>> bytes;
      for (int i = 1; i <= kEnrollPhotos; ++i) {
        p.enroll_images.push_back(lfw_image_path(lfw, name, i));
        std::ifstream in(p.enroll_images.back(), std::ios::binary);
        bytes.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
      std::vector<EnrollImage> images;
      for (std::size_t i = 0; i < bytes.size(); ++i) images.push_back({p.enroll_images[i].filename().string(), bytes[i]});
      auto r = s.collections->enroll("bench", name, images, admin);
      if (!r) die(r.error().message);
      if (std::none_of(r->begin(), r->end(), [](const EnrollOutcome& o) { return o.face_id.has_value(); })) return;
    }
    persons.push_back(std::move(p));
  };
  for (int i = 0; i < a.people; ++i) load(many[static_cast<std::size_t>(i)], true);
  for (int i = 0; i < n_strangers; ++i) load(single[static_cast<std::size_t>(a.strangers_from + i)], false);

  // Clips: walk towards, sideways, two crossing, three at once; people in a shuffled order.
  std::vector<int> order(persons.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::shuffle(order.begin(), order.end(), rng);
  const Codec codec = pick_codec(dir);
  std::vector<Clip> clips;
  std::size_t next = 0;
  for (int k = 0; next < order.size(); ++k) {
    Clip c;
    const int kind = k % 4;
    const std::size_t want = std::min<std::size_t>(kind == 3 ? 3 : kind == 2 ? 2 : 1, order.size() - next);
    auto take = [&] { return order[next++]; };
    if (want == 1 && kind == 1) {
      c.scenario = "sideways";
      c.people.push_back({take(), Path::kRightward, 340, 100, 100});
    } else if (want == 1) {
      c.scenario = "towards";
      c.people.push_back({take(), Path::kTowards, 400, 40, 200});
    } else if (want == 2) {
      c.scenario = "crossing";
      c.people.push_back({take(), Path::kRightward, 330, 95, 95});
      c.people.push_back({take(), Path::kLeftward, 350, 85, 85});
    } else {
      c.scenario = "three";
      c.people.push_back({take(), Path::kTowards, 420, 40, 160});
      c.people.push_back({take(), Path::kRightward, 280, 90, 90});
      c.people.push_back({take(), Path::kLeftward, 380, 80, 80});
    }
    c.file = dir / ("clip" + std::to_string(k) + "-" + c.scenario + codec.extension);
    render(c, persons, codec, rng);
    clips.push_back(std::move(c));
  }
  std::uintmax_t bytes = 0;
  for (const Clip& c : clips) bytes += fs::file_size(c.file);
  const double mbit_s = bytes * 8.0 / (clips.size() * kClipFrames / kFps) / 1e6;
  std::cerr << "bench stream: " << clips.size() << " clips of " << kClipFrames / kFps << " s, " << codec.name << " at "
            << std::round(mbit_s * 100) / 100 << " Mbit/s, in " << dir << "\n";

  // Each clip played in real time, one stream at a time: tracks decided (default), then
  // the same clips decided on the first good frame alone.
  auto play_all = [&](const StreamOptions& base) {
    Tally t;
    for (const Clip& c : clips) {
      std::vector<Run> runs;
      run_streams(s, {&c}, base, false, runs);
      score(c, persons, runs[0], t);
    }
    return t;
  };
  StreamOptions base;
  base.collection = "bench";
  base.purpose = kPurpose;
  base.context = {"bench:stream", "benchmark of camera streams"};
  base.detect_every = a.detect_every;
  base.shutter_s = a.shutter_s;
  base.decision.strangers_named = strangers_named_share(a.strangers_named);
  const Tally tracked = play_all(base);
  StreamOptions first = base;
  first.decision.frames = 1;
  first.decision.max_redecisions = 0;
  const Tally single_frame = play_all(first);

  // Streams at once on the busiest clip (three people), until frames drop.
  const Clip* busiest = &clips.front();
  for (const Clip& c : clips) {
    if (c.people.size() > busiest->people.size()) busiest = &c;
  }
  nlohmann::json parallel = nlohmann::json::array();
  for (int k = 1; k <= a.max_streams; ++k) {
    std::vector<Run> runs;
    run_streams(s, std::vector<const Clip*>(static_cast<std::size_t>(k), busiest), base, true, runs);
    std::uint64_t read = 0, dropped = 0;
    double cpu = 0;
    for (const Run& r : runs) {
      read += r.status.frames_read, dropped += r.status.frames_dropped;
      cpu += r.status.busy_cpu_s + r.status.grab_cpu_s;
    }
    parallel.push_back({{"streams", k}, {"people_per_stream", busiest->people.size()},
                        {"dropped_pct", std::round(pct(static_cast<int>(dropped), static_cast<int>(read)) * 100) / 100},
                        {"cpu_cores_used", std::round(cpu / (kClipFrames / kFps) * 100) / 100}});
  }

  auto summary = [](const Tally& t) {
    // Counts beside the percentages: runs over disjoint strangers (--strangers-from) add up.
    return nlohmann::json{{"enrolled_appearances", t.enrolled},
                          {"recognised_right", t.right},
                          {"wrong_person", t.wrong},
                          {"strangers_named", t.strangers_named},
                          {"recognised_right_pct", std::round(pct(t.right, t.enrolled) * 100) / 100},
                          {"wrong_person_pct", std::round(pct(t.wrong, t.enrolled) * 100) / 100},
                          {"stranger_appearances", t.strangers},
                          {"strangers_named_pct", std::round(pct(t.strangers_named, t.strangers) * 100) / 100},
                          {"tracks", t.tracks},
                          {"named_tracks_matching_nobody", t.unmatched_named},
                          {"latency_ms_median", std::round(quantile(t.latency_ms, 0.5))},
                          {"latency_ms_p95", std::round(quantile(t.latency_ms, 0.95))},
                          {"latency_in_frame_ms_median", std::round(quantile(t.latency_in_frame_ms, 0.5))},
                          {"latency_in_frame_ms_p95", std::round(quantile(t.latency_in_frame_ms, 0.95))},
                          {"named_before_80px", t.decided_before_80},
                          {"decisions", t.decisions},
                          {"missed", t.missed},
                          {"misnamed", t.misnamed},
                          {"detection_rounds", t.rounds},
                          {"cpu_ms_per_round", t.rounds == 0 ? 0.0 : std::round(t.cpu_s / t.rounds * 1000 * 10) / 10},
                          // Where a round's time goes: the detector over the whole frame, and
                          // how many faces got landmarks + a template, and a quality analysis.
                          {"detect_cpu_ms_per_round", t.rounds == 0 ? 0.0 : std::round(t.detect_cpu_s / t.rounds * 1000 * 10) / 10},
                          {"faces_embedded_per_round", t.rounds == 0 ? 0.0 : std::round(100.0 * t.embedded / t.rounds) / 100},
                          {"faces_analysed_per_round", t.rounds == 0 ? 0.0 : std::round(100.0 * t.analysed / t.rounds) / 100},
                          {"faces_deblurred_per_round", t.rounds == 0 ? 0.0 : std::round(100.0 * t.deblurred / t.rounds) / 100},
                          {"named_on_one_frame", t.named_on_one_frame},
                          {"thresholds_named_at", std::vector<float>(t.thresholds.begin(), t.thresholds.end())},
                          // CPU seconds per second of video, worker and grabber (decoding): the share
                          // of one core a stream needs in real time on an unloaded machine.
                          {"cores_per_stream", std::round((t.cpu_s + t.grab_cpu_s) / t.video_s * 1000) / 1000}};
  };
  nlohmann::json out = {{"clips", clips.size()},
                        {"load_average", load_average()},
                        {"codec", codec.name},
                        {"mbit_s", std::round(mbit_s * 100) / 100},
                        {"detect_every", a.detect_every},
                        {"shutter_s", a.shutter_s},
                        {"strangers_named_target", a.strangers_named},
                        {"strangers_from", a.strangers_from},
                        {"tracked", summary(tracked)},
                        {"first_good_frame", summary(single_frame)},
                        {"parallel", parallel}};
  const int err_t = tracked.wrong + tracked.strangers_named, err_f = single_frame.wrong + single_frame.strangers_named;
  out["errors_first_frame_over_tracked"] = err_t == 0 ? nlohmann::json(nullptr) : nlohmann::json(static_cast<double>(err_f) / err_t);
  out["recognised_tracked_over_first_frame"] =
      single_frame.right == 0 ? nlohmann::json(nullptr) : nlohmann::json(static_cast<double>(tracked.right) / single_frame.right);
  if (a.json) {
    std::cout << out.dump(2) << "\n";
  } else {
    auto row = [&](const char* name, const std::string& key) {
      std::cout << "| " << name << " | " << out["tracked"][key] << " | " << out["first_good_frame"][key] << " |\n";
    };
    std::cout << "| figure | track decision | first good frame |\n|---|---|---|\n";
    row("enrolled appearances", "enrolled_appearances");
    row("recognised as the right person, %", "recognised_right_pct");
    row("named as a wrong enrolled person, %", "wrong_person_pct");
    row("stranger appearances", "stranger_appearances");
    row("strangers named as someone, %", "strangers_named_pct");
    row("tracks", "tracks");
    row("latency from face >= 80 px to the name, median ms", "latency_ms_median");
    row("latency, 95th percentile ms", "latency_ms_p95");
    row("latency from the whole face >= 80 px in the frame to the name, median ms", "latency_in_frame_ms_median");
    row("... 95th percentile ms", "latency_in_frame_ms_p95");
    row("named before the face reached 80 px", "named_before_80px");
    row("audited decisions", "decisions");
    row("detection rounds", "detection_rounds");
    row("CPU per detection round (detect, embed, analyse, decide), ms", "cpu_ms_per_round");
    row("... of which the detector, ms", "detect_cpu_ms_per_round");
    row("faces embedded per round", "faces_embedded_per_round");
    row("faces analysed per round", "faces_analysed_per_round");
    row("faces deblurred per round", "faces_deblurred_per_round");
    row("tracks named on one frame", "named_on_one_frame");
    row("cores per stream (CPU s per video s, incl. decoding)", "cores_per_stream");
    std::cout << "\nin real time, " << busiest->people.size() << " people per stream (load average "
              << load_average() << "): " << parallel.dump() << "\n";
    std::cout << "errors (wrong + strangers named), first frame / tracked: " << out["errors_first_frame_over_tracked"]
              << "; right names, tracked / first frame: " << out["recognised_tracked_over_first_frame"] << "\n";
  }
  s.collections.reset();
  s.store.reset();
  if (temporary) fs::remove_all(dir);
}

}  // namespace

LfwPeople shuffled_lfw_people(const std::filesystem::path& lfw, int min_photos, std::mt19937& rng) {
  LfwPeople p;
  for (const auto& d : fs::directory_iterator(lfw / "lfw")) {
    if (!d.is_directory()) continue;
    const auto n = std::distance(fs::directory_iterator(d.path()), fs::directory_iterator());
    if (n >= min_photos) p.many.push_back(d.path().filename().string());
    if (n == 1) p.single.push_back(d.path().filename().string());
  }
  std::sort(p.many.begin(), p.many.end());
  std::sort(p.single.begin(), p.single.end());
  std::shuffle(p.many.begin(), p.many.end(), rng);
  std::shuffle(p.single.begin(), p.single.end(), rng);
  return p;
}

std::filesystem::path stream_bench_shared_dir() {
  const char* env = std::getenv("CANDOR_SHARED_DIR");
  return env != nullptr && *env ? fs::path(env) : fs::path(CANDOR_SHARED_DIR);
}

void register_stream_bench_commands(CLI::App& bench, const EngineOptions& options) {
  register_deblur_bench_command(bench, options);
  auto a = std::make_shared<Args>();
  CLI::App* c = bench.add_subcommand("stream", "Camera streams on ground-truth videos made from LFW (issue 12)");
  c->add_option("--lfw", a->lfw, "LFW directory (default: $CANDOR_SHARED_DIR or ../shared, datasets/lfw)");
  c->add_option("--people", a->people, "Enrolled people in the videos")->capture_default_str();
  c->add_option("--strangers", a->strangers, "One-photo LFW people in the videos (default: half of --people)");
  c->add_option("--strangers-from", a->strangers_from,
                 "Take the strangers from this place in the seed's shuffled list on: runs over disjoint strangers "
                 "(the same enrolled people) can share the cores and be added up")
      ->capture_default_str();
  c->add_option("--detect-every", a->detect_every, "Detect on every n-th frame")->capture_default_str();
  c->add_option("--shutter", a->shutter_s,
                "The camera's exposure time (s) the streams are told, for deblurring moving faces; 0: not told. "
                "The videos are made with 0.02 whatever this says")
      ->capture_default_str();
  c->add_option("--strangers-named", a->strangers_named,
                "The streams' DecisionOptions::strangers_named, the fraction of strangers' tracks the collection's "
                "size may cost; 0: the collection's point alone, whatever its size")
      ->check(CLI::Range(0.0, kMaxStrangersNamed))
      ->capture_default_str();
  c->add_option("--max-streams", a->max_streams, "Most streams run at once for the throughput figure")->capture_default_str();
  c->add_option("--out", a->out, "Keep the videos and truth files in this folder (default: a temporary one, removed)");
  c->add_option("--seed", a->seed, "Choice of people and backgrounds")->capture_default_str();
  c->add_flag("--json", a->json, "Print JSON");
  c->callback([&options, a] { run_stream_bench(options, *a); });
}

}  // namespace candor::bench
