// Camera streams (issue 12): /v1/streams and their Server-Sent Events. Every field of a
// request is hostile until checked here; the source URL's credentials are sealed by the
// store and never leave it again but to the node that runs the stream (stream_manager.h).
#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <tuple>

#include "candor/audit.h"
#include "http_util.h"
#include "server_context.h"
#include "stream_manager.h"

namespace candor::server {
namespace {

constexpr std::size_t kMaxNameBytes = 128;     // as StreamOptions' name (src/stream)
constexpr std::size_t kMaxSourceBytes = 2048;  // as the store's limit (store_streams.cpp)
constexpr std::size_t kMaxSecretBytes = 256;

Error bad(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

// The sources OpenCV may open for a stream: network cameras (rtsp, rtsps, http, https with
// a host), V4L2 devices (/dev/videoN), and files only when the operator allowed them (a
// file source reads any path the server can). Nothing else: OpenCV's GStreamer backend
// reads a string with "!" as a pipeline, and FFmpeg knows many protocols (file:, concat:,
// subfile: ...) that read local files.
Status check_source(const std::string& source, bool allow_files) {
  if (source.empty() || source.size() > kMaxSourceBytes) return bad("source: 1.." + std::to_string(kMaxSourceBytes) + " bytes");
  if (!printable(source)) return bad("source: control characters are not allowed");
  static const std::regex device(R"(/dev/video[0-9]{1,3})");
  if (std::regex_match(source, device)) return ok_status();
  // RFC 3986 characters only: no spaces, no '!' (GStreamer pipelines), no quotes.
  static const std::regex url(R"((rtsps?|https?)://[A-Za-z0-9._~%:;=&+$,*'()-]*@?[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~%:;=&+$,/?#@*'()-]*)?)");
  const auto scheme_end = source.find("://");
  if (scheme_end != std::string::npos) {
    const std::string scheme = source.substr(0, scheme_end);
    if (scheme != "rtsp" && scheme != "rtsps" && scheme != "http" && scheme != "https") {
      // The input is not echoed: a malformed URL may hold its credentials anywhere.
      return bad(std::string("source: the scheme is not allowed (rtsp, rtsps, http, https, /dev/videoN") +
                 (allow_files ? ", or a file path)" : "; files only with `candor serve --stream-files`)"));
    }
    if (source.find('!') != std::string::npos || !std::regex_match(source, url)) {
      return bad("source: not a well-formed " + scheme + ":// URL with a host");
    }
    return ok_status();
  }
  if (source.front() == '/' && source.find('!') == std::string::npos) {
    if (!allow_files) {
      return bad("source: file sources are off on this server (start it with `candor serve --stream-files`)");
    }
    if (source.find("/../") != std::string::npos || source.ends_with("/..") || source.rfind("/dev/", 0) == 0) {
      return bad("source: not a plain file path");
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(source, ec)) return bad("source: no such file");
    return ok_status();
  }
  return bad("source: expected rtsp://, rtsps://, http://, https:// or /dev/videoN");
}

// A string field: absent -> fallback; present -> a string of at most `max` printable bytes.
Result<std::string> text_field(const nlohmann::json& body, const char* name, std::size_t max, bool required,
                               std::string fallback = "") {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (required) return bad(std::string("field '") + name + "' is required");
    return fallback;
  }
  if (!it->is_string()) return bad(std::string("field '") + name + "' must be a string");
  std::string v = it->get<std::string>();
  if ((required && v.empty()) || v.size() > max || !printable(v)) {
    return bad(std::string("field '") + name + "': 1.." + std::to_string(max) + " printable bytes");
  }
  return v;
}

// An optional number field: absent or null -> unset; present -> a JSON number for which
// `in_range` holds, else 400 naming `shape`. (is_number() is false for a bool or a
// string; ranges are written as !(lo < x && x <= hi)-style tests, which also refuse NaN.)
Result<std::optional<double>> number_field(const nlohmann::json& body, const char* name, bool (*in_range)(double),
                                           std::string_view shape) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::optional<double>();
  const double v = it->is_number() ? it->get<double>() : 0;
  if (!it->is_number() || !std::isfinite(v) || !in_range(v)) return bad(std::string("field '") + name + "': " + std::string(shape));
  return std::optional<double>(v);
}

nlohmann::json stream_json(Context& ctx, const StreamRecord& s) {
  nlohmann::json j = {{"id", s.id},
                      {"name", s.name},
                      {"source", s.source_redacted},
                      {"collection", s.collection},
                      {"purpose", s.purpose},
                      {"reason", s.reason},
                      {"operating_point", s.operating_point.empty() ? "collection" : s.operating_point},
                      {"outputs", nlohmann::json::parse(s.outputs_redacted_json, nullptr, false)},
                      {"created_by", s.created_by},
                      {"state", s.running ? "running" : "stopped"},
                      {"node", s.owner_node.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.owner_node)},
                      {"created_at", format_time(s.created_at)},
                      // What the stream runs with: its own setting, else the library's default.
                      {"detect_every", s.detect_every.value_or(StreamOptions{}.detect_every)},
                      {"buffer_frames", s.buffer_frames.value_or(static_cast<int>(StreamOptions{}.buffer_frames))},
                      // The camera's exposure time; null: unknown, no deblurring.
                      {"shutter_s", s.shutter_s ? nlohmann::json(*s.shutter_s) : nlohmann::json(nullptr)},
                      // The share of strangers' tracks its collection's size may cost; 0: the
                      // collection's point alone.
                      {"strangers_named", s.strangers_named.value_or(DecisionOptions{}.strangers_named.value_or(0))}};
  if (auto live = ctx.streams->live_status(s.id)) {
    const StreamStatus& st = live->status;
    j["running_here"] = true;
    j["status"] = {{"fps", std::round(live->fps * 10) / 10},
                   {"uptime_s", std::round(live->uptime_s)},
                   {"frames_read", st.frames_read},
                   {"frames_processed", st.frames_processed},
                   {"frames_dropped", st.frames_dropped},
                   {"frames_corrupt", st.frames_corrupt},
                   {"detections", st.detections_run},
                   {"faces_deblurred", st.faces_deblurred},
                   {"reconnects", st.reconnects},
                   {"open_tracks", st.open_tracks},
                   {"tracks", st.tracks},
                   {"decisions", st.decisions},
                   {"recognised", st.recognised},
                   {"stalled", st.stalled},
                   {"last_error", st.last_error ? nlohmann::json(st.last_error->message) : nlohmann::json(nullptr)}};
  } else {
    j["running_here"] = false;
    if (auto e = ctx.streams->start_error(s.id)) j["start_error"] = *e;
  }
  return j;
}

// The stream named by {id}, if the key sees its collection; else 404 (hidden and missing alike).
std::optional<StreamRecord> visible_stream(Context& ctx, Call& call) {
  auto s = ctx.store->get_stream(call.param("id"));
  if (!s) {
    send_error(call.res, s.error().code == ErrorCode::kInvalidArgument ? Error{ErrorCode::kNotFound, "no such stream"}
                                                                        : s.error());
    return std::nullopt;
  }
  if (!call.key->sees_collection(s->collection)) {
    send_error(call.res, {ErrorCode::kNotFound, "no such stream"});
    return std::nullopt;
  }
  return std::move(*s);
}

void create_stream(Context& ctx, Call& call) {
  auto body = json_body(call.req);
  if (!body) return send_error(call.res, body.error());
  static const std::array<std::string_view, 12> kFields = {
      "name",  "source", "collection",   "purpose",       "reason",    "operating_point",
      "outputs", "start", "detect_every", "buffer_frames", "shutter_s", "strangers_named"};
  for (const auto& [k, v] : body->items()) {
    if (std::find(kFields.begin(), kFields.end(), k) == kFields.end()) {
      return send_error(call.res, bad("unknown field '" + k.substr(0, 64) + "'"));
    }
  }
  NewStream spec;
  auto name = text_field(*body, "name", kMaxNameBytes, true);
  if (!name) return send_error(call.res, name.error());
  auto source = text_field(*body, "source", kMaxSourceBytes, true);
  if (!source) return send_error(call.res, Error{ErrorCode::kInvalidArgument, "field 'source': a string of 1..2048 bytes"});
  if (auto st = check_source(*source, ctx.options.stream_allow_files); !st) return send_error(call.res, st.error());
  auto collection = text_field(*body, "collection", 256, true);
  if (!collection) return send_error(call.res, collection.error());
  auto purpose = text_field(*body, "purpose", 1024, true);
  if (!purpose) return send_error(call.res, purpose.error());
  auto reason = text_field(*body, "reason", kMaxReasonBytes, true);
  if (!reason) return send_error(call.res, reason.error());
  auto point = text_field(*body, "operating_point", 64, false, "collection");
  if (!point) return send_error(call.res, point.error());
  if (*point != "collection") {
    return send_error(call.res, bad("operating_point: a stream decides at its collection's operating point "
                                    "(\"collection\"); set the collection's with its creation or `candor calibrate`"));
  }
  // How often the stream detects and how many frames it holds (StreamOptions): an
  // operator trades CPU for latency per camera. A face crossing the frame in 3 s must be
  // seen by several detections, so at most one a second at 30 fps.
  constexpr int kMaxDetectEvery = 30;
  for (const auto& [field, max, out] : {std::tuple{"detect_every", kMaxDetectEvery, &spec.detect_every},
                                        std::tuple{"buffer_frames", static_cast<int>(kMaxBufferFrames), &spec.buffer_frames}}) {
    auto it = body->find(field);
    if (it == body->end() || it->is_null()) continue;
    if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > max) {
      return send_error(call.res, bad(std::string("field '") + field + "': an integer 1.." + std::to_string(max)));
    }
    *out = static_cast<int>(it->get<std::int64_t>());
  }
  // The camera's exposure time (StreamOptions::shutter_s): with it a moving face is
  // deblurred before its template. Absent or null: unknown, no deblurring; 0 is refused
  // rather than read as unknown, so that a typo does not silently turn deblurring off.
  auto shutter = number_field(*body, "shutter_s", [](double x) { return x > 0 && x <= 1; },
                              "the camera's exposure time in seconds, a number > 0 and <= 1 (1/50 s is 0.02); "
                              "null or absent when unknown");
  if (!shutter) return send_error(call.res, shutter.error());
  spec.shutter_s = *shutter;
  // The share of strangers' tracks the collection's size may cost
  // (DecisionOptions::strangers_named): the threshold rises with the collection so that at
  // most this share of strangers is named. Absent or null: the library's default (issue
  // 12's 0.5%); 0: the collection's operating point alone. Up to kMaxStrangersNamed, as
  // candor watch --strangers-named.
  auto strangers = number_field(*body, "strangers_named", [](double x) { return x >= 0 && x <= kMaxStrangersNamed; },
                                "the most fraction of strangers' tracks named, a number 0..0.5 (0.005 is 0.5%; 0: "
                                "the collection's operating point alone); null or absent for the default");
  if (!strangers) return send_error(call.res, strangers.error());
  spec.strangers_named = *strangers;
  bool start = false;
  if (auto it = body->find("start"); it != body->end()) {
    if (!it->is_boolean()) return send_error(call.res, bad("field 'start' must be a boolean"));
    start = it->get<bool>();
  }
  nlohmann::json outputs = nlohmann::json::object(), shown = nlohmann::json::object();
  if (auto it = body->find("outputs"); it != body->end() && !it->is_null()) {
    if (!it->is_object()) return send_error(call.res, bad("field 'outputs' must be an object"));
    for (const auto& [k, v] : it->items()) {
      if (k == "webhook") {
        if (!v.is_object()) return send_error(call.res, bad("outputs.webhook must be an object {url, secret}"));
        auto url = text_field(v, "url", kMaxSourceBytes, true);
        auto secret = text_field(v, "secret", kMaxSecretBytes, true);
        if (!url || !secret || !url->starts_with("http://") || secret->size() < 16 || v.size() != 2) {
          return send_error(call.res, bad("outputs.webhook: {url: http://host[:port]/path, secret: 16..256 bytes}"));
        }
        outputs["webhook"] = {{"url", *url}, {"secret", *secret}};
        shown["webhook"] = {{"url", mask_credentials(*url)}};
      } else if (k == "mqtt") {
        // The broker's user and password are secrets like the source's: sealed with the
        // stream's other outputs, never shown (only whether there are any).
        constexpr std::string_view kShape =
            "outputs.mqtt: {url: mqtt(s)://host[:port][/prefix], username, password} (credentials optional, not in the URL)";
        if (!v.is_object()) return send_error(call.res, bad(std::string(kShape)));
        auto url = text_field(v, "url", kMaxSourceBytes, true);
        auto user = text_field(v, "username", kMaxSecretBytes, false);
        auto password = text_field(v, "password", kMaxSecretBytes, false);
        if (!url || !user || !password || v.size() != 1U + v.count("username") + v.count("password")) {
          return send_error(call.res, bad(std::string(kShape)));
        }
        MqttOptions mqtt;
        mqtt.url = *url;
        mqtt.stream = *name;
        if (auto st = MqttSink::check(mqtt); !st) return send_error(call.res, bad("outputs.mqtt: " + st.error().message));
        outputs["mqtt"] = {{"url", *url}, {"username", *user}, {"password", *password}};
        shown["mqtt"] = {{"url", *url}, {"credentials", !user->empty()}};
      } else if (k == "snapshots") {
        // Pictures of recognised people, kept by this server for a retention of hours
        // (StreamOptions::snapshots): only where the operator gave them a place.
        constexpr std::string_view kShape = "outputs.snapshots: {retention_hours: 1..720}";
        if (ctx.options.stream_snapshot_dir.empty()) {
          return send_error(call.res, bad("outputs.snapshots: this server keeps no snapshots (candor serve --snapshot-dir)"));
        }
        const auto hours = v.is_object() && v.size() == 1 ? v.find("retention_hours") : v.end();
        if (hours == v.end() || !hours->is_number_integer() || hours->get<std::int64_t>() < 1 ||
            hours->get<std::int64_t>() > 720) {
          return send_error(call.res, bad(std::string(kShape)));
        }
        outputs["snapshots"] = {{"retention_hours", hours->get<std::int64_t>()}};
        shown["snapshots"] = outputs["snapshots"];
      } else {
        return send_error(call.res, bad("outputs: unknown output '" + k.substr(0, 64) + "' (webhook, mqtt, snapshots)"));
      }
    }
  }
  // The decisions are searches of this key: it must see the collection and may search.
  if (!call.key->sees_collection(*collection)) return send_error(call.res, collection_not_found());
  if (!call.key->allows("search")) {
    return send_error(call.res, {ErrorCode::kPermissionDenied, "a stream searches: this key lacks the 'search' scope"});
  }
  auto c = ctx.store->get_collection(*collection);
  if (!c) return send_error(call.res, c.error().code == ErrorCode::kInvalidArgument ? collection_not_found() : c.error());
  if (c->purpose != *purpose) {
    return send_error(call.res, {ErrorCode::kConsentRequired, "the stream's purpose is not the collection's: its "
                                                              "subjects consented to that purpose only"});
  }
  spec.name = *name;
  spec.source = *source;
  spec.source_redacted = mask_credentials(*source);
  spec.collection = *collection;
  spec.purpose = *purpose;
  spec.reason = *reason;
  spec.outputs_json = outputs.dump();
  spec.outputs_redacted_json = shown.dump();
  spec.created_by = call.actor;
  spec.running = start;
  auto created = ctx.store->create_stream(spec, call.audit("stream created"));
  if (!created) return send_error(call.res, created.error());
  ctx.log->info("stream created", {{"stream", created->id}, {"source", created->source_redacted}});
  if (start) ctx.streams->poke();
  send_json(call.res, 201, stream_json(ctx, *created));
}

// A snapshot the stream wrote (outputs.snapshots), by the name its recognised event gave.
// The name is checked for the form the stream writes before it is joined to a path, so no
// request reaches another file (`..`, '/', another stream's folder).
void stream_snapshot(Context& ctx, Call& call) {
  auto s = visible_stream(ctx, call);
  if (!s) return;
  const std::string& name = call.params["name"];
  if (ctx.options.stream_snapshot_dir.empty() || !is_snapshot_name(name)) {
    return send_error(call.res, {ErrorCode::kNotFound, "no such snapshot"});
  }
  constexpr std::uintmax_t kMaxSnapshotBytes = 16 << 20;
  const std::filesystem::path path = ctx.options.stream_snapshot_dir / s->id / name;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxSnapshotBytes) return send_error(call.res, {ErrorCode::kNotFound, "no such snapshot"});
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size))) {
    return send_error(call.res, {ErrorCode::kNotFound, "no such snapshot"});  // expired since
  }
  call.res.status = 200;
  call.res.set_header("Cache-Control", "no-store");
  call.res.set_content(std::move(bytes), "image/jpeg");
}

void set_running(Context& ctx, Call& call, bool running) {
  auto s = visible_stream(ctx, call);
  if (!s) return;
  auto updated = ctx.store->set_stream_running(s->id, running, call.audit(running ? "stream started" : "stream stopped"));
  if (!updated) return send_error(call.res, updated.error());
  ctx.streams->poke();
  send_json(call.res, 200, stream_json(ctx, *updated));
}

// One SSE connection: "data: {json}" per event, a comment line as heartbeat.
void stream_events(Context& ctx, Call& call) {
  auto s = visible_stream(ctx, call);
  if (!s) return;
  // A reconnecting EventSource sends the id of the last event it saw (WHATWG HTML, "Server-sent events").
  auto client = ctx.streams->subscribe(s->id, call.req.get_header_value("Last-Event-ID").substr(0, 64));
  if (!client) {
    return send_error(call.res, {ErrorCode::kOverloaded, "too many event clients on this node"}, 5);
  }
  const auto heartbeat = std::chrono::milliseconds(std::max(10, ctx.options.stream_sse_heartbeat_ms));
  auto first = std::make_shared<bool>(true);
  StreamManager* manager = ctx.streams.get();
  const std::string id = s->id;
  call.res.set_header("X-Accel-Buffering", "no");  // proxies (nginx) pass each event on at once
  call.res.set_chunked_content_provider(
      "text/event-stream",
      [client, heartbeat, first](std::size_t, httplib::DataSink& sink) {
        std::string out;
        std::unique_lock lock(client->mutex);
        if (*first) {
          *first = false;
          out = "retry: 3000\n: connected\n\n";  // the headers and this go out at once
          if (client->gap) out += ": some events since Last-Event-ID are no longer held\n\n";
          // Replayed events (Last-Event-ID) follow in the next call, as new ones do.
        } else {
          client->cv.wait_for(lock, heartbeat, [&] { return client->closed || client->dropped || !client->lines.empty(); });
          if (client->dropped) return false;  // a slow client: the connection ends
          if (client->closed) {
            lock.unlock();
            sink.done();
            return true;
          }
          if (client->lines.empty()) out = ": heartbeat\n\n";
          while (!client->lines.empty()) {
            out += "id: " + client->lines.front().id + "\ndata: " + client->lines.front().json + "\n\n";
            client->lines.pop_front();
          }
        }
        lock.unlock();
        return sink.write(out.data(), out.size());
      },
      [manager, id, client](bool) { manager->unsubscribe(id, client); });
}

}  // namespace

void register_stream_routes(Router& router) {
  const auto scoped = [](const char* method, const char* path) {
    return RouteSpec{method, path, Access::kScoped, "streams", false, Span::kOwnCollections};
  };
  router.add(scoped("POST", "/v1/streams"), create_stream);
  router.add(scoped("GET", "/v1/streams"), [](Context& ctx, Call& call) {
    auto all = ctx.store->list_streams();
    if (!all) return send_error(call.res, all.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : *all) {
      if (call.key->sees_collection(s.collection)) out.push_back(stream_json(ctx, s));
    }
    send_json(call.res, 200, {{"streams", out}, {"node", ctx.streams->node()}});
  });
  router.add(scoped("GET", "/v1/streams/{id}"), [](Context& ctx, Call& call) {
    if (auto s = visible_stream(ctx, call)) send_json(call.res, 200, stream_json(ctx, *s));
  });
  router.add(scoped("POST", "/v1/streams/{id}/start"), [](Context& ctx, Call& call) { set_running(ctx, call, true); });
  router.add(scoped("POST", "/v1/streams/{id}/stop"), [](Context& ctx, Call& call) { set_running(ctx, call, false); });
  router.add(scoped("DELETE", "/v1/streams/{id}"), [](Context& ctx, Call& call) {
    auto s = visible_stream(ctx, call);
    if (!s) return;
    if (auto st = ctx.store->delete_stream(s->id, call.audit("stream deleted")); !st) return send_error(call.res, st.error());
    ctx.streams->poke();
    if (!ctx.options.stream_snapshot_dir.empty()) {  // the stream's snapshots go with it
      std::error_code ec;
      std::filesystem::remove_all(ctx.options.stream_snapshot_dir / s->id, ec);
      if (ec) ctx.log->warn("stream snapshots not removed", {{"stream", s->id}, {"error", ec.message()}});
    }
    send_json(call.res, 200, {{"deleted", s->id}});
  });
  router.add(scoped("GET", "/v1/streams/{id}/events"), stream_events);
  router.add(scoped("GET", "/v1/streams/{id}/snapshots/{name}"), stream_snapshot);
}

}  // namespace candor::server
