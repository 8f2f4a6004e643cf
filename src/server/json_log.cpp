#include "json_log.h"

#include <cstdio>

#include "candor/audit.h"

namespace candor::server {

JsonLog::JsonLog(std::function<void(std::string_view)> sink) : sink_(std::move(sink)) {
  if (!sink_) {
    sink_ = [](std::string_view line) {
      std::fwrite(line.data(), 1, line.size(), stderr);
      std::fflush(stderr);
    };
  }
}

void JsonLog::write(std::string_view level, std::string_view msg, nlohmann::json fields) {
  nlohmann::json line = {{"ts", format_time(now_ms())}, {"level", level}, {"msg", msg}};
  if (fields.is_object()) line.update(fields);
  // Replace invalid UTF-8 rather than throw: a log line must never take a request down.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard lock(mutex_);
  sink_(text);
}

}  // namespace candor::server
