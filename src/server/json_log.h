// Structured logs: one JSON object per line (to stderr unless a sink is given).
//
// What may be logged is deliberately narrow: route templates (not raw paths, which
// carry subject ids), methods, statuses, durations, client IPs, key *names*, error
// codes. Never images, templates, API key secrets, subject ids or request bodies.
// The callers pass fields; this class only formats and serialises the writes.
//
// Thread safety: all members may be called concurrently.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace candor::server {

class JsonLog {
 public:
  explicit JsonLog(std::function<void(std::string_view)> sink);
  // Adds "ts" (UTC, ms), "level" and "msg" to `fields` and writes one line.
  void write(std::string_view level, std::string_view msg, nlohmann::json fields = nlohmann::json::object());
  void info(std::string_view msg, nlohmann::json fields = nlohmann::json::object()) { write("info", msg, std::move(fields)); }
  void warn(std::string_view msg, nlohmann::json fields = nlohmann::json::object()) { write("warn", msg, std::move(fields)); }
  void error(std::string_view msg, nlohmann::json fields = nlohmann::json::object()) { write("error", msg, std::move(fields)); }

 private:
  std::mutex mutex_;
  std::function<void(std::string_view)> sink_;
};

}  // namespace candor::server
