// The web console: regular files under the --web directory, at /.
//
// httplib has already percent-decoded the path, so "%2e%2e" arrives as "..". The
// path is split and checked segment by segment before any file-system call, then
// the canonical result must still lie under the canonical root, which also stops
// symlinks pointing outside it.
#include <fstream>
#include <sstream>

#include "http_util.h"
#include "server_context.h"

namespace candor::server {
namespace {

constexpr std::size_t kMaxStaticBytes = 16u << 20;

std::string content_type(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".webmanifest") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".jpg" || ext == ".jpeg") return "image/jpeg";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".woff2") return "font/woff2";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace

std::optional<std::filesystem::path> resolve_static_path(const std::filesystem::path& root, const std::string& path) {
  if (root.empty() || path.empty() || path.front() != '/') return std::nullopt;
  if (path.find('\0') != std::string::npos || path.find('\\') != std::string::npos) return std::nullopt;
  std::filesystem::path rel;
  std::size_t start = 1;
  while (start <= path.size()) {
    const auto end = std::min(path.find('/', start), path.size());
    const std::string seg = path.substr(start, end - start);
    if (!seg.empty()) {
      // "..", "." and dot-files (.git, .env) are never served.
      if (seg.front() == '.') return std::nullopt;
      rel /= seg;
    }
    start = end + 1;
  }
  if (rel.empty()) rel = "index.html";
  std::error_code ec;
  const std::filesystem::path full = std::filesystem::canonical(root / rel, ec);
  if (ec) return std::nullopt;
  // Still under the root after resolving symlinks?
  auto [r, f] = std::mismatch(root.begin(), root.end(), full.begin(), full.end());
  if (r != root.end()) return std::nullopt;
  if (!std::filesystem::is_regular_file(full, ec) || ec) return std::nullopt;
  return full;
}

void register_static_files(httplib::Server& http, Context& ctx) {
  http.Get("/.*", [&ctx](const httplib::Request& req, httplib::Response& res) {
    current_route() = "/{static}";
    if (req.path.rfind("/v1/", 0) == 0 || req.path == "/v1") {
      return send_error(res, {ErrorCode::kNotFound, "no such route"});
    }
    const auto file = resolve_static_path(ctx.web_root, req.path);
    if (!file) return send_error(res, {ErrorCode::kNotFound, "not found"});
    std::error_code ec;
    const auto size = std::filesystem::file_size(*file, ec);
    if (ec || size > kMaxStaticBytes) return send_error(res, {ErrorCode::kNotFound, "not found"});
    std::ifstream in(*file, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    res.status = 200;
    res.set_content(buf.str(), content_type(*file).c_str());
  });
}

}  // namespace candor::server
