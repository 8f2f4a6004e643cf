// fuzz_json and fuzz_multipart: whole HTTP requests handed to the real server in process.
//
// The server is the one `candor serve` runs (Server::create: the same httplib
// configuration, body limit, Router with authentication and scopes, and route handlers),
// on a scratch SQLite store, with the shared engine. A request goes in through httplib's
// own request parser (request line, headers, Content-Length, multipart/form-data) via
// an in-memory stream instead of a socket, so one input is one synchronous call and
// everything it reaches runs on the fuzzing thread.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "candor/server.h"
#include "harness.h"
#include "harness_internal.h"
#include "server_context.h"

namespace candor::fuzz {
namespace {

// httplib::Server::process_request (one request from a Stream) is protected. Naming it
// through a derived class yields a pointer to the base's member, which may then be
// applied to the server Server::create made (C++20 [class.protected]).
struct ProcessRequest : httplib::Server {
  static auto member() { return &ProcessRequest::process_request; }
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "candor fuzz harness: %s\n", what.c_str());
  std::abort();
}

// State the fuzzer creates (collections, consents, keys, audit entries) accumulates in
// the store; a fresh server every so many requests keeps memory and iteration time flat.
constexpr int kRequestsPerServer = 2000;

class FuzzServer {
 public:
  // What the server borrows is made first, so that it is destroyed last (at exit, in
  // reverse order of construction).
  FuzzServer() {
    (void)scratch_dir();
    (void)shared_engine();
    (void)shared_analyzer();
  }
  ~FuzzServer() { stop(); }
  FuzzServer(const FuzzServer&) = delete;
  FuzzServer& operator=(const FuzzServer&) = delete;

  // The raw response to one request carrying the harness's key (empty when httplib wrote
  // none). The request is built after any restart, so that it carries the new key.
  std::string handle(const std::string& method, const std::string& target, const std::string& content_type,
                     std::string_view body) {
    if (!server_ || handled_ >= kRequestsPerServer) restart();
    return handle_raw(request(method, target, content_type, body));
  }

  static int status_of(const std::string& response) {
    // "HTTP/1.1 200 OK"
    if (response.size() < 12 || response.compare(0, 5, "HTTP/") != 0) return 0;
    return std::atoi(response.c_str() + 9);
  }

 private:
  std::string handle_raw(const std::string& raw) {
    ++handled_;
    httplib::detail::BufferStream stream;
    stream.write(raw.data(), raw.size());
    bool closed = false;
    httplib::Server& http = server::http_server_of(*server_);
    (http.*ProcessRequest::member())(stream, /*close_connection=*/true, closed,
                                     [](httplib::Request& req) { req.remote_addr = "192.0.2.1"; });
    std::string response = stream.get_buffer().substr(raw.size());
    // CANDOR_FUZZ_TRACE=1: every exchange on stderr, to see why a harness check failed.
    static const bool kTrace = std::getenv("CANDOR_FUZZ_TRACE") != nullptr;
    if (kTrace) std::fprintf(stderr, "--- request\n%s\n--- response\n%s\n", raw.substr(0, 400).c_str(), response.c_str());
    // A fuzzed DELETE /v1/keys/fuzz locks the harness out; start again rather than
    // spend the rest of the run on 401s.
    if (status_of(response) == 401) handled_ = kRequestsPerServer;
    return response;
  }

  // "<METHOD> <target> HTTP/1.1" plus the headers every request of the harness carries.
  std::string request(const std::string& method, const std::string& target, const std::string& content_type,
                      std::string_view body) {
    std::string raw = method + " " + target + " HTTP/1.1\r\nHost: fuzz\r\nX-API-Key: " + key_ + "\r\n";
    if (!content_type.empty()) raw += "Content-Type: " + content_type + "\r\n";
    raw += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    raw.append(body);
    return raw;
  }

  void restart() {
    stop();
    const std::filesystem::path dir = scratch_dir() / ("server-" + std::to_string(++generation_));
    std::filesystem::create_directories(dir);
    ServerOptions options;
    options.store_uri = (dir / "candor.db").string();
    options.port = 0;
    options.engine = &shared_engine();
    options.analyzer = &shared_analyzer();
    options.workers = 1;
    options.queue = 1;
    options.http_threads = 1;
    options.max_body_bytes = kServerMaxBody;
    options.retention_interval_min = 0;
    options.log_sink = [](std::string_view) {};
    auto created = Server::create(options);
    if (!created) fail("the server does not start: " + created.error().message);
    server_ = std::move(*created);
    auto admin = server_->take_bootstrap_key();
    if (!admin) fail("the new store has no bootstrap key");
    thread_ = std::thread([this] { (void)server_->run(); });
    for (int i = 0; i < 3000 && !server_->ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!server_->ready()) fail("the server did not become ready");
    handled_ = 0;

    // Something for the routes with {c} and {s} to find, and a key whose search budget
    // the fuzzer cannot spend (the admin key's is 60 a minute).
    key_ = *admin;
    const std::string fuzz_key_body = nlohmann::json{{"name", "fuzz"},
                                                     {"collections", {"*"}},
                                                     {"operations", {"admin"}},
                                                     {"searches_per_minute", 1'000'000},
                                                     {"searches_per_day", 1'000'000'000}}
                                          .dump();
    const std::string created_key = handle_raw(request("POST", "/v1/keys", "application/json", fuzz_key_body));
    const auto body_at = created_key.find("\r\n\r\n");
    const auto reply = nlohmann::json::parse(body_at == std::string::npos ? "" : created_key.substr(body_at + 4),
                                             nullptr, false);
    if (!reply.is_object() || !reply.contains("key")) fail("cannot create the fuzz key: " + created_key);
    key_ = reply["key"].get<std::string>();
    setup("POST", "/v1/collections",
          R"({"name":"staff","purpose":"building access","retention_days":365})");
    setup("POST", "/v1/collections/staff/consents",
          R"({"subject":"emp-1","collected_by":"hr desk","evidence_sha256":")" + std::string(64, 'a') + "\"}");
    handled_ = 0;
  }

  void setup(const std::string& method, const std::string& target, const std::string& body) {
    const std::string response = handle_raw(request(method, target, "application/json", body));
    const int status = status_of(response);
    if (status < 200 || status > 299) fail("setup request " + method + " " + target + " failed: " + response);
  }

  void stop() {
    if (!server_) return;
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(scratch_dir() / ("server-" + std::to_string(generation_)), ec);
  }

  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::string key_;
  int handled_ = 0;
  int generation_ = 0;
};

FuzzServer& fuzz_server() {
  static FuzzServer server;
  return server;
}

// The fuzzed request line: the method as given (httplib answers an unknown one itself),
// the target with bytes that cannot appear in a request line percent-encoded, so the
// input always parses as one request whose path and query are the fuzzer's.
void split_request_line(std::string_view line, std::string& method, std::string& target) {
  const auto space = line.find(' ');
  method.clear();
  for (char c : line.substr(0, space)) {
    if (c >= 'A' && c <= 'Z') method += c;
  }
  if (method.empty()) method = "POST";
  const std::string_view rest = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  target.clear();
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char c : rest) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) {
      target += '%';
      target += kHex[u >> 4];
      target += kHex[u & 15];
    } else {
      target += c;
    }
  }
  if (target.empty() || target.front() != '/') target.insert(0, "/");
}

// Splits off the text up to the first newline (all of it when there is none).
std::string_view take_line(std::string_view& text) {
  const auto nl = text.find('\n');
  const std::string_view line = text.substr(0, nl);
  text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  return line;
}

Outcome send(std::string_view line, const std::string& content_type, std::string_view body) {
  std::string method, target;
  split_request_line(line, method, target);
  FuzzServer& server = fuzz_server();
  const std::string response = server.handle(method, target, content_type, body);
  const int status = FuzzServer::status_of(response);
  return {status >= 200 && status <= 299, status};
}

}  // namespace

void init_server() {
  (void)shared_engine();
  (void)shared_analyzer();
  (void)fuzz_server().handle("GET", "/healthz", "", "");
}

Outcome json_input(Bytes data) {
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  const std::string_view line = take_line(text);
  return send(line, "application/json", text);
}

Outcome multipart_input(Bytes data) {
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  const std::string_view line = take_line(text);
  std::string boundary;
  // A header value cannot hold control characters; the rest of the boundary is the fuzzer's.
  for (char c : take_line(text)) {
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) boundary += c;
  }
  return send(line, "multipart/form-data; boundary=" + boundary, text);
}

}  // namespace candor::fuzz
