// candor collection | consent | enroll | search | subject | retention | audit
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cmath>
#include <ctime>
#include <mutex>
#include <thread>

#include <pwd.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "candor/calibration.h"
#include "candor/collections.h"
#include "candor/crypto.h"
#include "candor/json.h"
#include "candor/stream.h"
#include "cli_context.h"
#include "store_args.h"

namespace candor::cli {
namespace {

// Opens the store, and (when the command needs the engine) the collections over it.
struct Session {
  std::unique_ptr<Store> store;
  std::unique_ptr<Collections> collections;
};

Result<Session> open_session(CliContext& ctx, const StoreArgs& args, bool with_engine) {
  Session session;
  auto store = open_cli_store(args);
  if (!store) return store.error();
  session.store = std::move(*store);
  if (with_engine) {
    CollectionsOptions options;
    options.analyzer = &ctx.analyzer();
    options.limits = ctx.limits;
    options.index_spec = ctx.index_spec;
    auto collections = Collections::open(ctx.engine(), *session.store, options);
    if (!collections) return collections.error();
    session.collections = std::move(*collections);
  }
  return session;
}


// Runs `body` with an opened session, mapping errors to exit status 1.
template <typename Body>
std::function<void()> with_session(CliContext& ctx, std::shared_ptr<StoreArgs> args, bool engine, Body body) {
  return [&ctx, args, engine, body] {
    if (args->store.empty()) args->store = default_store();
    if (args->actor.empty()) args->actor = default_actor();
    auto session = open_session(ctx, *args, engine);
    if (!session) {
      ctx.exit_code = fail(session.error());
      return;
    }
    ctx.exit_code = body(*session);
  };
}

struct CalibrateArgs {
  std::string collection, dir, reason;
  bool reset = false;
  int workers = 0;
};

// What `candor calibrate` prints: per point and photo count, the shipped and the
// measured threshold, the difference and the TAR reached (JSON null: no genuine pair).
nlohmann::json calibration_report_json(const CalibrationReport& r) {
  nlohmann::json points = nlohmann::json::array();
  for (const CalibratedPoint& p : r.collection.calibration->points) {
    const OperatingPoint* shipped = nullptr;
    for (const OperatingPoint& s : r.shipped) {
      if (s.name == p.point.name) shipped = &s;
    }
    nlohmann::json by_photos = nlohmann::json::array();
    for (std::size_t i = 0; i < p.point.subject_thresholds.size(); ++i) {
      const float measured = p.point.subject_thresholds[i];
      nlohmann::json row = {{"photos", i + 1},
                            {"threshold", score_to_json(measured)},
                            {"tar", std::isnan(p.tar[i]) ? nlohmann::json(nullptr) : nlohmann::json(score_to_json(p.tar[i]))},
                            {"extrapolated", static_cast<bool>(p.extrapolated[i])}};
      if (shipped) {
        row["shipped"] = score_to_json(subject_threshold(*shipped, i + 1));
        row["difference"] = score_to_json(measured - subject_threshold(*shipped, i + 1));
      }
      by_photos.push_back(std::move(row));
    }
    points.push_back({{"name", p.point.name}, {"fmr", p.point.fmr}, {"by_photos", std::move(by_photos)}});
  }
  const CollectionCalibration& c = *r.collection.calibration;
  return {{"collection", r.collection.name},
          {"people", c.people},
          {"images", c.images},
          {"impostor_comparisons", c.impostor_scores},
          {"genuine_comparisons", c.genuine_scores},
          {"points", std::move(points)},
          {"decides_at", {{"name", r.decides_at.name},
                          {"threshold", score_to_json(r.decides_at.threshold)},
                          {"before", score_to_json(r.previous.threshold)}}}};
}

// Embeds the largest face of every photo of DIR's sub-folders (one per person) and has
// the collection calibrated on them; the photos and templates are dropped afterwards.
void run_calibrate(CliContext& ctx, const std::shared_ptr<StoreArgs>& a, const CalibrateArgs& k) {
  if (k.reset) {
    with_session(ctx, a, true, [&](Session& s) {
      auto r = s.collections->reset_calibration(k.collection, {a->actor, k.reason});
      if (!r) return fail(r.error());
      print_json({{"collection", r->name}, {"calibration", nullptr}, {"match_threshold", score_to_json(r->match_threshold)}});
      return 0;
    })();
    return;
  }
  if (k.dir.empty()) {
    ctx.exit_code = fail({ErrorCode::kInvalidArgument, "give a folder of folders (one per person), or --reset"});
    return;
  }
  std::vector<std::vector<std::filesystem::path>> people;
  std::error_code ec;
  std::vector<std::filesystem::path> dirs;
  for (const auto& d : std::filesystem::directory_iterator(k.dir, ec)) {
    if (d.is_directory()) dirs.push_back(d.path());
  }
  if (ec) {
    ctx.exit_code = fail({ErrorCode::kInvalidArgument, k.dir + ": " + ec.message()});
    return;
  }
  std::sort(dirs.begin(), dirs.end());
  std::vector<std::pair<std::size_t, std::filesystem::path>> photos;  // (person, file)
  for (const auto& d : dirs) {
    for (const auto& f : image_files(d, false)) photos.emplace_back(people.size(), f);
    people.emplace_back();
  }
  const int workers = ctx.prepare_workers(k.workers, photos.size());
  with_session(ctx, a, true, [&](Session& s) {
    const Engine& engine = ctx.engine();
    std::vector<std::vector<float>> templates(photos.size());
    std::mutex mutex;
    std::size_t done = 0, unreadable = 0;
    const ProgressLine progress(photos.size());
    parallel_for(photos.size(), workers, [&](std::size_t i) {
      auto image = read_image(photos[i].second.string(), ctx.limits);
      std::vector<Face> faces;
      if (image) faces = engine.analyze(*image);
      std::lock_guard lock(mutex);
      if (const Face* f = primary_face(faces)) {
        templates[i] = f->embedding;
      } else {
        ++unreadable;
      }
      progress.show(++done, std::to_string(unreadable) + " without a face");
    });
    progress.clear();
    std::vector<std::vector<std::vector<float>>> by_person(people.size());
    for (std::size_t i = 0; i < photos.size(); ++i) by_person[photos[i].first].push_back(std::move(templates[i]));
    if (unreadable > 0) std::fprintf(stderr, "%zu of %zu photos gave no face and were skipped\n", unreadable, photos.size());
    auto r = s.collections->calibrate(k.collection, by_person, {a->actor, k.reason});
    if (!r) return fail(r.error());
    print_json(calibration_report_json(*r));
    return 0;
  })();
}

struct WatchArgs {
  std::string source, collection, purpose, reason, name = "stream";
  int detect_every = StreamOptions{}.detect_every;
  std::size_t buffer_frames = StreamOptions{}.buffer_frames;
  double shutter_s = 0;
  std::size_t frames = DecisionOptions{}.frames;
  double strangers_named = DecisionOptions{}.strangers_named.value_or(0);
  double stall_after_s = 5;
  bool once = false;
  bool fast = false;
  std::string webhook;  // URL; its secret from $CANDOR_WEBHOOK_SECRET (not an argument: ps shows those)
  std::string mqtt;     // URL; its username and password from $CANDOR_MQTT_USERNAME/_PASSWORD, as above
  std::string snapshots;  // directory; empty: off
  int snapshot_hours = 24;
};

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::atomic<bool> g_interrupted{false};

// candor watch: the stream runs until Ctrl-C (or, with --once, until a file ends); events
// go to stdout as JSON Lines, the final status to stderr.
int run_watch(CliContext& ctx, Session& s, const StoreArgs& a, const WatchArgs& w) {
  VideoSourceOptions source_options;
  source_options.realtime = !w.fast;
  auto source = make_video_source(w.source, source_options);
  if (!source) return fail(source.error());
  StreamOptions options;
  options.name = w.name;
  options.collection = w.collection;
  options.purpose = w.purpose;
  options.context = {a.actor, w.reason};
  options.detect_every = w.detect_every;
  options.buffer_frames = w.buffer_frames;
  options.shutter_s = w.shutter_s;
  options.decision.frames = w.frames;
  options.decision.strangers_named = strangers_named_share(w.strangers_named);
  options.stall_after = std::chrono::milliseconds(static_cast<std::int64_t>(w.stall_after_s * 1000));
  options.stop_after_ends = w.once ? 1 : 0;
  if (!w.snapshots.empty()) options.snapshots = SnapshotOptions{w.snapshots, std::chrono::hours(w.snapshot_hours)};
  auto lines = make_json_lines_sink(std::cout);
  std::vector<EventSink*> sinks{lines.get()};
  std::unique_ptr<WebhookSink> webhook;
  if (!w.webhook.empty()) {
    WebhookOptions wo;
    wo.url = w.webhook;
    wo.secret = env_or_empty("CANDOR_WEBHOOK_SECRET");
    auto created = WebhookSink::create(wo);
    if (!created) return fail({created.error().code, created.error().message + " (the secret is $CANDOR_WEBHOOK_SECRET)"});
    webhook = std::move(*created);
    sinks.push_back(webhook.get());
  }
  std::unique_ptr<MqttSink> mqtt;
  if (!w.mqtt.empty()) {
    MqttOptions mo;
    mo.url = w.mqtt;
    mo.stream = w.name;
    mo.username = env_or_empty("CANDOR_MQTT_USERNAME");
    mo.password = env_or_empty("CANDOR_MQTT_PASSWORD");
    auto created = MqttSink::create(mo);
    if (!created) return fail(created.error());
    mqtt = std::move(*created);
    sinks.push_back(mqtt.get());
  }
  auto sink = make_fanout_sink(sinks);
  auto stream = Stream::start(ctx.engine(), &ctx.analyzer(), *s.collections, std::move(*source), *sink, options);
  if (!stream) return fail(stream.error());
  g_interrupted = false;
  std::signal(SIGINT, [](int) { g_interrupted = true; });
  std::signal(SIGTERM, [](int) { g_interrupted = true; });
  while (!(*stream)->wait(std::chrono::milliseconds(200)) && !g_interrupted) {
  }
  (*stream)->stop();
  const StreamStatus st = (*stream)->status();
  nlohmann::json j = {{"frames_read", st.frames_read},           {"frames_processed", st.frames_processed},
                      {"frames_dropped", st.frames_dropped},     {"frames_corrupt", st.frames_corrupt},
                      {"detections_run", st.detections_run},     {"reconnects", st.reconnects},
                      {"tracks", st.tracks},                     {"decisions", st.decisions},
                      {"recognised", st.recognised},             {"faces_deblurred", st.faces_deblurred}};
  if (mqtt) {
    const MqttStatus ms = mqtt->status();
    j["mqtt_dropped"] = ms.dropped;
    if (!ms.refused.empty()) j["mqtt_refused"] = ms.refused;
  }
  if (st.last_error) j["last_error"] = {{"code", error_code_name(st.last_error->code)}, {"message", st.last_error->message}};
  std::cerr << j.dump() << "\n";
  // A source that never delivered a frame and gave up (--once: a missing or corrupt file)
  // is a failure, with its error; a stream that ran is not.
  if (st.frames_read == 0 && st.finished && st.last_error && !g_interrupted) return fail(*st.last_error);
  return 0;
}

}  // namespace

void register_collection_commands(CLI::App& app, CliContext& ctx) {
  // ---- watch
  {
    auto a = std::make_shared<StoreArgs>();
    auto w = std::make_shared<WatchArgs>();
    CLI::App* c = app.add_subcommand("watch", "Recognise consenting people in a camera stream (JSON Lines on stdout)");
    c->add_option("source", w->source, "Video file, rtsp://, http(s):// MJPEG, or a V4L2 device (/dev/video0 or 0)")
        ->required();
    c->add_option("--collection", w->collection)->required();
    c->add_option("--purpose", w->purpose, "The stream's purpose: must be the collection's")->required();
    c->add_option("--reason", w->reason, "Why the stream is watched (each decision's audit entry)")->required();
    c->add_option("--name", w->name, "The stream's name in events and the audit log")->capture_default_str();
    c->add_option("--detect-every", w->detect_every, "Detect faces on every n-th frame")->capture_default_str();
    c->add_option("--buffer-frames", w->buffer_frames,
                  "Frames held for the worker; when full the oldest is dropped (1.." + std::to_string(kMaxBufferFrames) + ")")
        ->check(CLI::Range(std::size_t{1}, kMaxBufferFrames))
        ->capture_default_str();
    c->add_option("--shutter", w->shutter_s,
                  "The camera's exposure time in seconds (1/50 s: 0.02), to deblur moving faces; 0: unknown, none")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    c->add_option("--frames", w->frames, "Good frames a track collects before it is decided")->capture_default_str();
    c->add_option("--strangers-named", w->strangers_named,
                  "The most fraction of strangers' tracks named as someone, whatever the collection's size "
                  "(the threshold rises with it); 0: the collection's operating point alone")
        ->check(CLI::Range(0.0, kMaxStrangersNamed))
        ->capture_default_str();
    c->add_option("--stall-after", w->stall_after_s, "Seconds without a frame before stream_stalled")
        ->capture_default_str();
    c->add_flag("--once", w->once, "Stop when the source ends (a file played once) instead of reconnecting");
    c->add_flag("--fast", w->fast, "Read a file as fast as it decodes, not at its frame rate");
    c->add_option("--webhook", w->webhook, "Also POST each event to this http:// URL, signed with $CANDOR_WEBHOOK_SECRET");
    c->add_option("--mqtt", w->mqtt,
                  "Also publish events over MQTT (mqtt[s]://host[:port][/prefix], Home Assistant discovery); "
                  "credentials from $CANDOR_MQTT_USERNAME and $CANDOR_MQTT_PASSWORD");
    c->add_option("--snapshots", w->snapshots,
                  "Keep a JPEG of each recognised person's best view in this directory (off by default; "
                  "strangers never); the event names the file");
    c->add_option("--snapshot-retention", w->snapshot_hours, "Hours a snapshot is kept before it is deleted")
        ->capture_default_str();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, true, [a, w, &ctx](Session& s) { return run_watch(ctx, s, *a, *w); }));
  }

  // ---- collection
  CLI::App* coll = app.add_subcommand("collection", "Create, list, show and delete collections");
  coll->require_subcommand(1);
  {
    auto a = std::make_shared<StoreArgs>();
    a->may_create = true;
    auto spec = std::make_shared<NewCollection>();
    auto point = std::make_shared<std::string>("fmr-1e-4");
    CLI::App* c = coll->add_subcommand("create", "Create a collection for one stated purpose");
    c->add_option("name", spec->name, "Name: [a-z0-9_-]{1,64}")->required();
    c->add_option("--purpose", spec->purpose, "The purpose consents must name")->required();
    c->add_option("--retention-days", spec->retention_days, "Templates are purged after this many days (<= 1095)")
        ->capture_default_str();
    c->add_option("--operating-point", *point, "Match threshold: fmr-1e-3 or fmr-1e-4")->capture_default_str();
    c->add_flag("--liveness", spec->liveness_required, "Require a passive liveness check on probes and enrollments");
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, true, [a, spec, point](Session& s) {
      auto r = s.collections->create_collection(*spec, *point, {a->actor, ""});
      if (!r) return fail(r.error());
      print_json(collection_to_json(*r));
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    CLI::App* c = coll->add_subcommand("list", "List collections");
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [](Session& s) {
      auto r = s.store->list_collections();
      if (!r) return fail(r.error());
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : *r) out.push_back(collection_to_json(item));
      print_json(out);
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    CLI::App* c = coll->add_subcommand("show", "Describe a collection");
    c->add_option("name", *name)->required();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [name](Session& s) {
      auto r = s.store->get_collection(*name);
      if (!r) return fail(r.error());
      auto faces = s.store->load_faces(*name);
      auto consents = s.store->list_consents(*name, "");
      nlohmann::json j = collection_to_json(*r);
      if (faces) j["faces"] = faces->size();
      if (consents) j["consents"] = consents->size();
      print_json(j);
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    CLI::App* c = coll->add_subcommand("delete", "Delete a collection with all its templates and consents");
    c->add_option("name", *name)->required();
    c->add_option("--reason", *reason, "Why (audited)")->required();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [a, name, reason](Session& s) {
      auto r = s.store->delete_collection(*name, {a->actor, *reason});
      if (!r) return fail(r.error());
      print_json({{"deleted_collection", *name}, {"deleted_faces", r->size()}});
      return 0;
    }));
  }

  // ---- consent
  CLI::App* consent = app.add_subcommand("consent", "Record, revoke and list consents");
  consent->require_subcommand(1);
  {
    auto a = std::make_shared<StoreArgs>();
    auto c_args = std::make_shared<NewConsent>();
    auto evidence = std::make_shared<std::string>();
    auto expires = std::make_shared<std::string>();
    CLI::App* c = consent->add_subcommand("grant", "Record a subject's consent (the evidence file's SHA-256 is kept, not the file)");
    c->add_option("--collection", c_args->collection)->required();
    c->add_option("--subject", c_args->subject)->required();
    c->add_option("--evidence", *evidence, "The signed consent form (file); only its SHA-256 is stored")->required();
    c->add_option("--expires", *expires, "Last day of validity, YYYY-MM-DD");
    c->add_option("--collected-by", c_args->collected_by, "Who collected it")->required();
    c->add_option("--purpose", c_args->purpose, "The purpose consented to (default: the collection's)");
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [a, c_args, evidence, expires](Session& s) {
      NewConsent n = *c_args;
      auto bytes = read_file_bytes(*evidence, 256u << 20);
      if (!bytes) return fail({bytes.error().code, "evidence: " + bytes.error().message});
      n.evidence_sha256 = sha256_hex(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes->data()), bytes->size()));
      if (!expires->empty()) {
        auto t = parse_time(*expires);
        if (!t) return fail(t.error());
        n.expires_at = *t;
      }
      auto r = s.store->grant_consent(n, {a->actor, ""});  // an empty purpose is the collection's
      if (!r) return fail(r.error());
      auto shared = subjects_sharing_evidence(*s.store, *r);
      if (!shared) return fail(shared.error());
      const nlohmann::json out = granted_consent_to_json(*r, *shared);
      if (out.contains("warnings")) std::fprintf(stderr, "warning: %s\n", out["warnings"][0].get<std::string>().c_str());
      print_json(out);
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto coll_name = std::make_shared<std::string>();
    auto subject = std::make_shared<std::string>();
    CLI::App* c = consent->add_subcommand("revoke", "Revoke a consent: the subject's templates are deleted at once");
    c->add_option("--collection", *coll_name)->required();
    c->add_option("--subject", *subject)->required();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [a, coll_name, subject](Session& s) {
      auto r = s.store->revoke_consent(*coll_name, *subject, {a->actor, "consent revoked"});
      if (!r) return fail(r.error());
      print_json({{"revoked", *subject}, {"deleted_faces", r->size()}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto coll_name = std::make_shared<std::string>();
    auto subject = std::make_shared<std::string>();
    CLI::App* c = consent->add_subcommand("list", "List consents of a collection");
    c->add_option("--collection", *coll_name)->required();
    c->add_option("--subject", *subject);
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [coll_name, subject](Session& s) {
      auto r = s.store->list_consents(*coll_name, *subject);
      if (!r) return fail(r.error());
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : *r) out.push_back(consent_to_json(item));
      print_json(out);
      return 0;
    }));
  }

  // ---- enroll
  {
    struct EnrollArgs {
      std::string collection, subject, from_dir;
      std::vector<std::string> images;
      bool subject_from_dirname = false;
      bool allow_outliers = false;
      int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    };
    auto a = std::make_shared<StoreArgs>();
    auto e = std::make_shared<EnrollArgs>();
    CLI::App* c = app.add_subcommand("enroll", "Enroll a consenting subject's photos (templates only; images are not kept)");
    c->add_option("--collection", e->collection)->required();
    c->add_option("--subject", e->subject, "The subject the photos show");
    c->add_option("images", e->images, "Photos, one face each");
    c->add_option("--from-dir", e->from_dir, "Batch: a directory with one sub-directory of photos per subject");
    c->add_flag("--subject-from-dirname", e->subject_from_dirname, "Batch: the sub-directory name is the subject id");
    c->add_option("--threads", e->threads, "Batch: subjects enrolled in parallel")->capture_default_str();
    c->add_flag("--allow-outlier", e->allow_outliers,
                "Enroll photos that do not look like the subject's other photos (refused by default, with the figure)");
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, true, [a, e, &ctx](Session& s) {
      // (subject, files) jobs
      std::vector<std::pair<std::string, std::vector<std::filesystem::path>>> jobs;
      if (!e->from_dir.empty()) {
        if (!e->subject_from_dirname) return fail({ErrorCode::kInvalidArgument, "--from-dir needs --subject-from-dirname"});
        std::vector<std::filesystem::path> dirs;
        for (const auto& d : std::filesystem::directory_iterator(e->from_dir)) {
          if (d.is_directory()) dirs.push_back(d.path());
        }
        std::sort(dirs.begin(), dirs.end());
        for (const auto& d : dirs) jobs.emplace_back(d.filename().string(), image_files(d, false));
      } else {
        if (e->subject.empty() || e->images.empty()) {
          return fail({ErrorCode::kInvalidArgument, "give --subject and photos, or --from-dir DIR --subject-from-dirname"});
        }
        jobs.emplace_back(e->subject, std::vector<std::filesystem::path>(e->images.begin(), e->images.end()));
      }
      std::size_t total = 0;
      for (const auto& j : jobs) total += j.second.size();
      std::atomic<std::size_t> next{0}, done{0}, enrolled{0}, failed{0};
      std::mutex out_mutex;
      nlohmann::json report = nlohmann::json::array();
      const ProgressLine progress(total);  // drawn only on a terminal
      auto worker = [&] {
        for (std::size_t i; (i = next++) < jobs.size();) {
          const auto& [subject, files] = jobs[i];
          std::vector<std::vector<std::uint8_t>> blobs;
          std::vector<EnrollImage> images;
          std::vector<EnrollOutcome> pre_failed;
          for (const auto& f : files) {
            auto bytes = read_file_bytes(f, ctx.limits.max_bytes);
            if (!bytes) pre_failed.push_back({f.string(), std::nullopt, bytes.error()});
            else blobs.push_back(std::move(*bytes)), images.push_back({f.string(), {}});
          }
          for (std::size_t k = 0; k < images.size(); ++k) images[k].bytes = blobs[k];
          // A folder may hold more photos than one enroll() takes: in batches of kMaxEnrollImages.
          Result<std::vector<EnrollOutcome>> r = std::vector<EnrollOutcome>{};
          for (std::size_t from = 0; r && from < images.size(); from += kMaxEnrollImages) {
            const auto batch = std::span<const EnrollImage>(images).subspan(from, std::min(kMaxEnrollImages, images.size() - from));
            auto part = s.collections->enroll(e->collection, subject, batch, EnrollOptions{e->allow_outliers}, {a->actor, ""});
            if (!part) r = part.error();
            else r->insert(r->end(), part->begin(), part->end());
          }
          std::lock_guard lock(out_mutex);
          nlohmann::json j = {{"subject", subject}};
          if (!r) {
            j["error"] = error_to_json(r.error())["error"];
            failed += files.size();
          } else {
            for (auto& o : pre_failed) r->push_back(o);
            for (const auto& o : *r) {
              nlohmann::json jo = {{"image", o.name}};
              if (o.face_id) jo["face_id"] = *o.face_id, ++enrolled;
              if (o.error) jo["error"] = error_to_json(*o.error)["error"], ++failed;
              j["images"].push_back(jo);
            }
          }
          report.push_back(std::move(j));
          done += files.size();
          progress.show(done, std::to_string(enrolled.load()) + " enrolled, " + std::to_string(failed.load()) + " refused");
        }
      };
      std::vector<std::thread> pool;
      for (int t = 0; t < std::max(1, std::min<int>(e->threads, static_cast<int>(jobs.size()))); ++t) pool.emplace_back(worker);
      for (auto& t : pool) t.join();
      progress.clear();
      print_json({{"enrolled", enrolled.load()}, {"refused", failed.load()}, {"subjects", report}});
      return failed > 0 && enrolled == 0 ? 1 : 0;
    }));
  }

  // ---- search
  {
    struct SearchArgs {
      std::string collection, image, reason;
      std::size_t top = 5;
      bool candidates = false;
      bool largest_face = false;
      double fpir = 0;  // 0: the collection's operating point alone
    };
    auto a = std::make_shared<StoreArgs>();
    auto q = std::make_shared<SearchArgs>();
    CLI::App* c = app.add_subcommand("search", "1:N: who in the collection is this? (audited, needs a reason)");
    c->add_option("--collection", q->collection)->required();
    c->add_option("image", q->image, "Probe photo (the largest face is searched)")->required();
    c->add_option("--reason", q->reason, "Why this search is made (written to the audit log)")->required();
    c->add_option("--top", q->top, "How many subjects to return")->capture_default_str();
    c->add_flag("--largest-face", q->largest_face, "Search only the largest face (default: every face in the photo)");
    c->add_flag("--candidates", q->candidates,
                "Also list the most similar subjects below the threshold (audited as a candidate search)");
    c->add_option("--fpir", q->fpir,
                  "The most probability that someone not enrolled is named, for this collection's size: the "
                  "threshold rises with the number of subjects (FMR = FPIR / subjects); 0: the collection's point")
        ->check(CLI::Range(0.0, 0.5));
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, true, [a, q, &ctx](Session& s) {
      auto bytes = read_file_bytes(q->image, ctx.limits.max_bytes);
      if (!bytes) return fail({bytes.error().code, q->image + ": " + bytes.error().message});
      SearchOptions options;
      options.top_k = q->top;
      options.include_candidates = q->candidates;
      options.largest_face_only = q->largest_face;
      if (q->fpir > 0) options.fpir = q->fpir;
      auto r = s.collections->search(q->collection, *bytes, options, {a->actor, q->reason});
      if (!r) return fail(r.error());
      print_json(search_result_to_json(q->collection, *r));
      return 0;
    }));
  }

  // ---- calibrate
  {
    auto a = std::make_shared<StoreArgs>();
    auto k = std::make_shared<CalibrateArgs>();
    CLI::App* c = app.add_subcommand(
        "calibrate", "Measure a collection's operating points on your own people (a folder of folders, one per person)");
    c->add_option("--collection", k->collection)->required();
    c->add_option("dir", k->dir, "One sub-folder of photos per person (photos you may use for this; nothing is kept)");
    c->add_flag("--reset", k->reset, "Go back to the recogniser's shipped operating points");
    c->add_option("--reason", k->reason, "Why (written to the audit log)");
    c->add_option("--workers", k->workers, "Images embedded at once (0: one per core)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    add_store_options(c, *a);
    c->callback([&ctx, a, k] { run_calibrate(ctx, a, *k); });
  }

  // ---- verify
  {
    struct VerifyArgs {
      std::string collection, subject, image, reason;
    };
    auto a = std::make_shared<StoreArgs>();
    auto v = std::make_shared<VerifyArgs>();
    CLI::App* c = app.add_subcommand("verify", "1:1: is this person the subject they claim to be? (audited, needs a reason)");
    c->add_option("--collection", v->collection)->required();
    c->add_option("--subject", v->subject, "The subject the person claims to be")->required();
    c->add_option("image", v->image, "Photo of the person (the largest face is verified)")->required();
    c->add_option("--reason", v->reason, "Why this check is made (written to the audit log)")->required();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, true, [a, v, &ctx](Session& s) {
      auto bytes = read_file_bytes(v->image, ctx.limits.max_bytes);
      if (!bytes) return fail({bytes.error().code, v->image + ": " + bytes.error().message});
      auto r = s.collections->verify(v->collection, v->subject, *bytes, {a->actor, v->reason});
      if (!r) return fail(r.error());
      print_json(verify_result_to_json(v->collection, *r));
      return 0;  // the decision is in the answer, as `candor compare` gives it
    }));
  }

  // ---- subject
  CLI::App* subject = app.add_subcommand("subject", "Export or erase everything held about a subject");
  subject->require_subcommand(1);
  {
    auto a = std::make_shared<StoreArgs>();
    auto coll_name = std::make_shared<std::string>();
    auto id = std::make_shared<std::string>();
    CLI::App* c = subject->add_subcommand("export", "Everything held about a subject, as JSON (GDPR Art. 15)");
    c->add_option("--collection", *coll_name, "Accepted for symmetry; the export covers every collection");
    c->add_option("subject", *id)->required();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [a, id](Session& s) {
      auto r = s.store->export_subject(*id, {a->actor, "subject access request"});
      if (!r) return fail(r.error());
      std::cout << nlohmann::json::parse(*r).dump(2) << "\n";
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto coll_name = std::make_shared<std::string>();
    auto id = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>("erasure requested");
    CLI::App* c = subject->add_subcommand("erase", "Delete a subject's templates and consents (GDPR Art. 17)");
    c->add_option("--collection", *coll_name, "Only this collection (default: every collection)");
    c->add_option("subject", *id)->required();
    c->add_option("--reason", *reason)->capture_default_str();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [a, coll_name, id, reason](Session& s) {
      auto r = s.store->erase_subject(*coll_name, *id, {a->actor, *reason});
      if (!r) return fail(r.error());
      print_json({{"erased", *id}, {"deleted_faces", r->size()}});
      return 0;
    }));
  }

  // ---- retention
  CLI::App* retention = app.add_subcommand("retention", "Enforce retention terms and consent expiry");
  retention->require_subcommand(1);
  {
    auto a = std::make_shared<StoreArgs>();
    CLI::App* c = retention->add_subcommand("run", "Purge templates past their collection's term or their consent");
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [a](Session& s) {
      auto r = s.store->retention_run(now_ms(), {a->actor, "retention schedule"});
      if (!r) return fail(r.error());
      print_json({{"removed_faces", r->removed.size()}, {"expired_by_age", r->expired_by_age},
                  {"without_consent", r->without_consent}, {"library_faces_expired", r->library_faces_expired}});
      return 0;
    }));
  }

  // ---- audit
  CLI::App* audit = app.add_subcommand("audit", "Read and verify the hash-chained audit log");
  audit->require_subcommand(1);
  {
    auto a = std::make_shared<StoreArgs>();
    CLI::App* c = audit->add_subcommand("verify", "Recompute the chain; name the first broken entry");
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [](Session& s) {
      auto r = s.store->audit_verify();
      if (!r) return fail(r.error());
      std::cout << r->summary() << "\n";
      for (const auto& issue : r->issues) {
        std::cout << "  seq " << issue.seq << " (" << audit_break_name(issue.kind) << "): " << issue.message << "\n";
      }
      return r->intact ? 0 : 1;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto filter = std::make_shared<AuditFilter>();
    auto subject_id = std::make_shared<std::string>();
    auto coll_name = std::make_shared<std::string>();
    auto op = std::make_shared<std::string>();
    CLI::App* c = audit->add_subcommand("list", "List audit entries");
    c->add_option("--subject", *subject_id);
    c->add_option("--collection", *coll_name);
    c->add_option("--operation", *op);
    c->add_option("--limit", filter->limit)->capture_default_str();
    add_store_options(c, *a);
    c->callback(with_session(ctx, a, false, [filter, subject_id, coll_name, op](Session& s) {
      AuditFilter f = *filter;
      if (!subject_id->empty()) f.subject = *subject_id;
      if (!coll_name->empty()) f.collection = *coll_name;
      if (!op->empty()) f.operation = *op;
      auto r = s.store->audit_list(f);
      if (!r) return fail(r.error());
      nlohmann::json out = nlohmann::json::array();
      for (const auto& e : *r) out.push_back(audit_entry_to_json(e));
      print_json(out);
      return 0;
    }));
  }
}

}  // namespace candor::cli
