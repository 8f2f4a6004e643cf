// StreamManager (stream_manager.h): leases, local streams, SSE fan-out.
#include "stream_manager.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <mutex>
#include <set>

#include <opencv2/core/utils/logger.hpp>

#include <nlohmann/json.hpp>

#include "server_context.h"

namespace candor::server {
namespace {

// The user-info of a URL ("user:password" of "rtsp://user:password@host/"), or "".
std::string user_info(const std::string& source) {
  const auto scheme = source.find("://");
  if (scheme == std::string::npos) return {};
  const auto start = scheme + 3;
  const auto end = source.find_first_of("/?#", start);
  const auto at = source.rfind('@', end == std::string::npos ? std::string::npos : end);
  if (at == std::string::npos || at < start) return {};
  return source.substr(start, at - start);
}

void replace_all(std::string& text, const std::string& what, const std::string& with) {
  if (what.empty()) return;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + with.size())) {
    text.replace(pos, what.size(), with);
  }
}

// `message` with every part of the source's credentials masked: the URL, the user-info,
// its user and its password, wherever a library quoted them.
std::string scrub(std::string message, const std::string& source) {
  replace_all(message, source, mask_credentials(source));
  const std::string info = user_info(source);
  replace_all(message, info, "***");
  const auto colon = info.find(':');
  if (colon != std::string::npos) {
    replace_all(message, info.substr(colon + 1), "***");
    replace_all(message, info.substr(0, colon), "***");
  } else {
    replace_all(message, info, "***");
  }
  return message;
}

}  // namespace

// The events of one stream, to this node's SSE clients of it.
class StreamManager::Hub final : public EventSink {
 public:
  explicit Hub(std::size_t queue)
      : queue_(queue),
        epoch_(std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count())) {}

  void set_source(std::string source) {
    std::lock_guard lock(mutex_);
    source_ = std::move(source);
  }

  void publish(const StreamEvent& event) override {
    std::lock_guard lock(mutex_);
    StreamEvent e = event;
    e.message = scrub(std::move(e.message), source_);  // a source error may quote the URL
    const SseEvent line{epoch_ + "-" + std::to_string(++count_), stream_event_to_json(e)};
    // Kept for clients that reconnect with a Last-Event-ID: as many as one client may have
    // unsent, in memory only (a stranger's event holds no identity, see stream.h).
    recent_.push_back(line);
    if (recent_.size() > queue_) recent_.pop_front();
    for (const auto& c : clients_) {
      std::lock_guard client_lock(c->mutex);
      if (c->closed || c->dropped) continue;
      if (c->lines.size() >= queue_) {
        c->dropped = true;  // a slow client is dropped, never waited for
        c->lines.clear();
      } else {
        c->lines.push_back(line);
      }
      c->cv.notify_all();
    }
  }

  void add(std::shared_ptr<SseClient> c, const std::string& last_event_id) {
    std::lock_guard lock(mutex_);
    if (!last_event_id.empty()) replay(*c, last_event_id);
    clients_.push_back(std::move(c));
  }
  bool remove(const std::shared_ptr<SseClient>& c) {
    std::lock_guard lock(mutex_);
    const auto it = std::find(clients_.begin(), clients_.end(), c);
    if (it == clients_.end()) return false;
    clients_.erase(it);
    return true;
  }
  void close_all() {
    std::lock_guard lock(mutex_);
    for (const auto& c : clients_) {
      std::lock_guard client_lock(c->mutex);
      c->closed = true;
      c->cv.notify_all();
    }
  }

 private:
  // Queues for `c` the held events after `last` (requires: mutex_ held).
  void replay(SseClient& c, const std::string& last) {
    std::lock_guard client_lock(c.mutex);
    const std::string prefix = epoch_ + "-";
    std::uint64_t n = 0;
    const auto [end, error] = std::from_chars(last.data() + std::min(prefix.size(), last.size()), last.data() + last.size(), n);
    if (!last.starts_with(prefix) || error != std::errc() || end != last.data() + last.size() || n > count_) {
      c.gap = true;  // another hub's id (a restart, another node) or garbage: nothing to resume from
      return;
    }
    const std::uint64_t first_held = count_ - recent_.size() + 1;
    c.gap = n + 1 < first_held;
    const std::size_t skip = static_cast<std::size_t>(std::max(n + 1, first_held) - first_held);
    c.lines.insert(c.lines.end(), recent_.begin() + static_cast<std::ptrdiff_t>(skip), recent_.end());
  }

  const std::size_t queue_;
  const std::string epoch_;
  std::mutex mutex_;
  std::string source_;
  std::uint64_t count_ = 0;      // events published, the newest's number
  std::deque<SseEvent> recent_;  // the last queue_ of them
  std::vector<std::shared_ptr<SseClient>> clients_;
};

struct StreamManager::Running {
  std::unique_ptr<WebhookSink> webhook;
  std::unique_ptr<MqttSink> mqtt;
  std::unique_ptr<EventSink> fanout;
  std::unique_ptr<Stream> stream;
  std::string source;  // for scrubbing messages
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point renewed = started;  // the last claim that held the lease
};

StreamManager::StreamManager(Context& ctx, std::string node, std::chrono::milliseconds lease, std::size_t queue,
                             std::size_t max_clients)
    : ctx_(ctx), node_(std::move(node)), lease_(lease), queue_(queue), max_clients_(max_clients) {}

StreamManager::~StreamManager() { stop_all(); }

void StreamManager::begin() {
  std::lock_guard lock(mutex_);
  if (stopping_ || supervisor_.joinable()) return;
  supervisor_ = std::thread([this] { supervise(); });
}

void StreamManager::poke() {
  std::lock_guard lock(mutex_);
  poked_ = true;
  wake_.notify_all();
}

void StreamManager::close_clients() {
  std::lock_guard lock(mutex_);
  closing_ = true;
  for (auto& [id, hub] : hubs_) hub->close_all();
}

void StreamManager::stop_all() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
    for (auto& [id, hub] : hubs_) hub->close_all();
  }
  if (supervisor_.joinable()) supervisor_.join();
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, r] : running_) ids.push_back(id);
  }
  for (const auto& id : ids) stop_local(id);
}

void StreamManager::supervise() {
  // Renewed three times a lease, so one late round does not lose it.
  const auto period = std::max(std::chrono::milliseconds(50), lease_ / 3);
  for (;;) {
    round();
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, period, [this] { return stopping_ || poked_; });
    poked_ = false;
    if (stopping_) return;
  }
}

void StreamManager::round() {
  std::lock_guard round_lock(round_mutex_);
  auto streams = ctx_.store->list_streams();
  if (!streams) {
    ctx_.log->warn("streams: cannot read the store", {{"code", error_code_name(streams.error().code)}});
    return;
  }
  std::set<std::string> present;
  for (const StreamRecord& s : *streams) {
    present.insert(s.id);
    bool local = false;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      local = running_.count(s.id) != 0;
    }
    if (!s.running) {
      if (local) stop_local(s.id);
      continue;
    }
    auto claimed = ctx_.store->claim_stream(s.id, node_, ctx_.now(), lease_);
    if (!claimed) {
      // Unreachable store: a running stream keeps running while its lease lasts, then stops,
      // since another node may take it over once it has expired.
      ctx_.log->warn("streams: cannot renew a lease", {{"stream", s.id}, {"code", error_code_name(claimed.error().code)}});
      bool lapsed = false;
      {
        std::lock_guard lock(mutex_);
        auto it = running_.find(s.id);
        lapsed = it != running_.end() && std::chrono::steady_clock::now() - it->second->renewed >= lease_;
      }
      if (lapsed) stop_local(s.id);
      continue;
    }
    if (*claimed && local) {
      std::lock_guard lock(mutex_);
      if (auto it = running_.find(s.id); it != running_.end()) it->second->renewed = std::chrono::steady_clock::now();
    }
    if (*claimed && !local) start_local(s);
    if (!*claimed && local) stop_local(s.id);  // another node took it over
  }
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, r] : running_) {
      if (present.count(id) == 0) gone.push_back(id);
    }
  }
  for (const auto& id : gone) stop_local(id);
}

void StreamManager::start_local(const StreamRecord& record) {
  // OpenCV's own log (stderr, not the server's) quotes a source it failed to open, whole:
  // cv::VideoCapture with CAP_ANY tries every backend, and CAP_IMAGES reports "can't find
  // starting number (in the name of file): rtsp://user:password@..." at ERROR level
  // (StreamsTest.TheSourcePasswordAppearsInNoResponseLogAuditOrDatabase reads stderr). A
  // server that runs streams keeps only OpenCV's fatal messages.
  static std::once_flag quiet;
  std::call_once(quiet, [] { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_FATAL); });
  auto fail = [&](const std::string& message) {
    std::lock_guard lock(mutex_);
    auto& last = start_errors_[record.id];
    if (last != message) ctx_.log->warn("stream did not start", {{"stream", record.id}, {"message", message}});
    last = message;
  };
  auto secrets = ctx_.store->stream_secrets(record.id);
  if (!secrets) return fail(secrets.error().message);
  const nlohmann::json outputs = nlohmann::json::parse(secrets->outputs_json, nullptr, false);
  auto r = std::make_unique<Running>();
  if (outputs.is_object() && outputs.contains("webhook")) {
    WebhookOptions w;
    w.url = outputs["webhook"].value("url", "");
    w.secret = outputs["webhook"].value("secret", "");
    auto sink = WebhookSink::create(w);
    if (!sink) return fail("webhook: " + scrub(sink.error().message, w.url));
    r->webhook = std::move(*sink);
  }
  if (outputs.is_object() && outputs.contains("mqtt")) {
    MqttOptions m;
    m.url = outputs["mqtt"].value("url", "");
    m.stream = record.name;
    m.username = outputs["mqtt"].value("username", "");
    m.password = outputs["mqtt"].value("password", "");
    auto sink = MqttSink::create(m);  // a broker that is down is no error: the sink connects when it is up
    if (!sink) return fail("mqtt: " + sink.error().message);
    r->mqtt = std::move(*sink);
  }
  auto source = make_video_source(secrets->source);
  if (!source) return fail(scrub(source.error().message, secrets->source));
  Hub* hub = nullptr;
  {
    std::lock_guard lock(mutex_);
    hub = &hub_of(record.id);
  }
  hub->set_source(secrets->source);
  EventSink* sink = hub;
  std::vector<EventSink*> sinks{hub};
  if (r->webhook) sinks.push_back(r->webhook.get());
  if (r->mqtt) sinks.push_back(r->mqtt.get());
  if (sinks.size() > 1) {
    r->fanout = make_fanout_sink(sinks);
    sink = r->fanout.get();
  }
  StreamOptions o;
  if (outputs.is_object() && outputs.contains("snapshots") && !ctx_.options.stream_snapshot_dir.empty()) {
    o.snapshots = SnapshotOptions{ctx_.options.stream_snapshot_dir / record.id,
                                  std::chrono::hours(outputs["snapshots"].value("retention_hours", 24))};
  }
  o.name = record.name;
  if (record.detect_every) o.detect_every = *record.detect_every;
  if (record.buffer_frames) o.buffer_frames = static_cast<std::size_t>(*record.buffer_frames);
  if (record.shutter_s) o.shutter_s = *record.shutter_s;
  if (record.strangers_named) o.decision.strangers_named = strangers_named_share(*record.strangers_named);
  o.collection = record.collection;
  o.purpose = record.purpose;
  o.context = {record.created_by, record.reason};
  const std::string actor = record.created_by;
  o.admit = [this, actor](std::size_t faces) -> Status {
    // The budget of the key that created the stream, looked up at each decision: a key
    // deleted or cut down since applies at once.
    auto keys = ctx_.keys->list(nullptr);
    if (!keys) return keys.error();
    const auto key = std::find_if(keys->begin(), keys->end(), [&](const ApiKey& k) { return "key:" + k.name == actor; });
    if (key == keys->end()) return Error{ErrorCode::kPermissionDenied, "the key that created this stream is gone"};
    const int n = static_cast<int>(faces);
    auto decision = ctx_.budget->admit(*key, actor, n);
    if (!decision) return decision.error();
    // The search is recorded (and so counted) by the same call that asked: the in-flight
    // mark is released at once rather than after it, which a request's handler does.
    ctx_.budget->finish(actor, n);
    if (!decision->allowed) {
      return Error{ErrorCode::kRateLimited, "search budget of the stream's key spent (per " + decision->window + ")"};
    }
    return ok_status();
  };
  const Engine* engine = ctx_.engine.load();
  if (engine == nullptr || !ctx_.collections) return fail("the server is still loading");
  auto stream = Stream::start(*engine, ctx_.analyzer.load(), *ctx_.collections, std::move(*source), *sink, std::move(o));
  if (!stream) return fail(scrub(stream.error().message, secrets->source));
  r->stream = std::move(*stream);
  r->source = secrets->source;
  std::lock_guard lock(mutex_);
  start_errors_.erase(record.id);
  running_[record.id] = std::move(r);
  ctx_.log->info("stream started", {{"stream", record.id}, {"node", node_}});
}

void StreamManager::stop_local(const std::string& id) {
  std::unique_ptr<Running> r;
  {
    std::lock_guard lock(mutex_);
    auto it = running_.find(id);
    if (it == running_.end()) return;
    r = std::move(it->second);
    running_.erase(it);
  }
  r->stream->stop();  // joins its threads: outside mutex_, which its sinks never take
  r.reset();
  if (auto st = ctx_.store->release_stream(id, node_); !st) {
    ctx_.log->warn("streams: cannot release a lease", {{"stream", id}, {"code", error_code_name(st.error().code)}});
  }
  ctx_.log->info("stream stopped", {{"stream", id}, {"node", node_}});
}

StreamManager::Hub& StreamManager::hub_of(const std::string& id) {
  auto& h = hubs_[id];
  if (!h) h = std::make_unique<Hub>(queue_);
  return *h;
}

std::optional<LiveStatus> StreamManager::live_status(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = running_.find(id);
  if (it == running_.end()) return std::nullopt;
  LiveStatus l;
  l.status = it->second->stream->status();
  l.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second->started).count();
  if (l.uptime_s > 0) l.fps = static_cast<double>(l.status.frames_processed) / l.uptime_s;
  // A source error may quote the URL.
  if (l.status.last_error) l.status.last_error->message = scrub(l.status.last_error->message, it->second->source);
  return l;
}

std::optional<std::string> StreamManager::start_error(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = start_errors_.find(id);
  if (it == start_errors_.end()) return std::nullopt;
  return it->second;
}

std::shared_ptr<SseClient> StreamManager::subscribe(const std::string& id, const std::string& last_event_id) {
  std::lock_guard lock(mutex_);
  if (stopping_ || closing_ || clients_ >= max_clients_) return nullptr;
  auto c = std::make_shared<SseClient>();
  hub_of(id).add(c, last_event_id);
  ++clients_;
  return c;
}

void StreamManager::unsubscribe(const std::string& id, const std::shared_ptr<SseClient>& client) {
  std::lock_guard lock(mutex_);
  auto it = hubs_.find(id);
  if (it != hubs_.end() && it->second->remove(client)) --clients_;
}

}  // namespace candor::server
