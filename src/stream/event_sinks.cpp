// Stream events as JSON, and the JSON Lines sink.
#include <mutex>
#include <ostream>

#include <nlohmann/json.hpp>

#include "candor/json.h"
#include "candor/stream.h"

namespace candor {

std::string_view stream_event_kind_name(StreamEvent::Kind kind) noexcept {
  switch (kind) {
    case StreamEvent::Kind::kRecognised: return "recognised";
    case StreamEvent::Kind::kUnknown: return "unknown";
    case StreamEvent::Kind::kTrackEnded: return "track_ended";
    case StreamEvent::Kind::kStreamStalled: return "stream_stalled";
    case StreamEvent::Kind::kStreamResumed: return "stream_resumed";
    case StreamEvent::Kind::kSourceError: return "source_error";
  }
  return "unknown";
}

std::string stream_event_to_json(const StreamEvent& e) {
  nlohmann::json j = {{"event", stream_event_kind_name(e.kind)}, {"stream", e.stream}, {"time", format_time(e.time)}};
  auto round_ms = [](double v) { return std::round(v * 10) / 10; };
  switch (e.kind) {
    case StreamEvent::Kind::kRecognised:
      j["track"] = e.track;
      j["subject"] = e.subject;
      j["similarity"] = score_to_json(e.similarity);
      j["threshold"] = score_to_json(e.threshold);
      j["frames_used"] = e.frames_used;
      j["decision_ms"] = round_ms(e.decision_ms);
      j["duration_s"] = round_ms(e.duration_s);
      j["face_px"] = std::round(e.face_px);
      if (!e.upgrade_of.empty()) j["upgrade_of"] = e.upgrade_of;
      if (!e.snapshot.empty()) j["snapshot"] = e.snapshot;
      break;
    case StreamEvent::Kind::kUnknown:  // a stranger: when, which track, how long, how large; nothing else
      j["track"] = e.track;
      j["duration_s"] = round_ms(e.duration_s);
      j["face_px"] = std::round(e.face_px);
      break;
    case StreamEvent::Kind::kTrackEnded:
      j["track"] = e.track;
      j["outcome"] = e.outcome;
      j["duration_s"] = round_ms(e.duration_s);
      break;
    case StreamEvent::Kind::kSourceError:
      j["message"] = e.message;
      j["retry_in_ms"] = round_ms(e.retry_in_ms);
      break;
    case StreamEvent::Kind::kStreamStalled:
    case StreamEvent::Kind::kStreamResumed:
      if (!e.message.empty()) j["message"] = e.message;
      break;
  }
  return j.dump();
}

namespace {

class JsonLinesSink final : public EventSink {
 public:
  explicit JsonLinesSink(std::ostream& out) : out_(out) {}
  void publish(const StreamEvent& event) override {
    const std::string line = stream_event_to_json(event);
    std::lock_guard lock(mutex_);
    out_ << line << '\n';
    out_.flush();
  }

 private:
  std::ostream& out_;
  std::mutex mutex_;
};

class FanoutSink final : public EventSink {
 public:
  explicit FanoutSink(std::vector<EventSink*> sinks) : sinks_(std::move(sinks)) {}
  void publish(const StreamEvent& event) override {
    for (EventSink* s : sinks_) s->publish(event);
  }

 private:
  std::vector<EventSink*> sinks_;
};

}  // namespace

std::unique_ptr<EventSink> make_fanout_sink(std::vector<EventSink*> sinks) {
  return std::make_unique<FanoutSink>(std::move(sinks));
}

std::unique_ptr<EventSink> make_json_lines_sink(std::ostream& out) { return std::make_unique<JsonLinesSink>(out); }

}  // namespace candor
