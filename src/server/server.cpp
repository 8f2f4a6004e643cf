// Server: wiring of httplib, the shared Context and the routes; start-up, loading
// and graceful shutdown.
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <mutex>
#include <thread>

#include "candor/crypto.h"
#include "candor/json.h"
#include "candor/models.h"
#include "candor/server.h"
#include "connection_guard.h"
#include "http_util.h"
#include "server_context.h"
#include "stream_manager.h"

#ifndef CANDOR_WEB_DIR
#define CANDOR_WEB_DIR ""
#endif

namespace candor {
namespace {

using server::Context;

constexpr const char* kCsp =
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'";

std::chrono::steady_clock::time_point& request_start() {
  thread_local std::chrono::steady_clock::time_point start{};
  return start;
}

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override {
    stop();
    if (loader_.joinable()) loader_.join();
    if (retention_.joinable()) retention_.join();
  }

  // open_store, tried again while the store is unreachable, for up to store_wait_s.
  Result<std::unique_ptr<Store>> open_store_waiting(const ServerOptions& options, const StoreOptions& store_options) {
    // The schedule of the PostgreSQL store's own reconnection (pg_store.cpp).
    constexpr std::chrono::milliseconds kFirstRetry{100};
    constexpr std::chrono::milliseconds kMaxRetry{5000};
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::seconds(std::max(0, options.store_wait_s));
    auto delay = kFirstRetry;
    for (int attempt = 1;; ++attempt) {
      auto store = open_store(options.store_uri, store_options);
      if (store || store.error().code != ErrorCode::kStoreUnavailable || Clock::now() + delay > deadline) return store;
      ctx_.log->warn("the store is unreachable; trying again",
                     {{"attempt", attempt}, {"retry_in_ms", delay.count()}, {"detail", store.error().message}});
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, kMaxRetry);
    }
  }

  Status init(const ServerOptions& options) {
    ctx_.options = options;
    ctx_.log = std::make_unique<server::JsonLog>(options.log_sink);
    if (options.tls_cert.empty() != options.tls_key.empty()) {
      return Error{ErrorCode::kInvalidArgument, "TLS needs both --tls-cert and --tls-key"};
    }
    if (options.workers < 0 || options.queue < -1 || options.http_threads < 0 || options.max_body_bytes == 0 ||
        options.port < 0 || options.port > 65535) {
      return Error{ErrorCode::kInvalidArgument, "workers, queue, http threads, port or body limit out of range"};
    }
    if (options.read_timeout_s <= 0 || options.write_timeout_s <= 0 || options.keep_alive_timeout_s <= 0 ||
        options.header_timeout_s <= 0 || options.body_timeout_s <= 0 || options.max_header_bytes < 1024 ||
        options.connection_queue < 0 || options.max_waiting_connections < 0 || options.max_waiting_connections > 768) {
      return Error{ErrorCode::kInvalidArgument,
                   "timeouts must be > 0, max_header_bytes >= 1024, connection_queue >= 0, "
                   "max_waiting_connections in [0, 768]"};
    }
    auto proxies = server::TrustedProxies::parse(options.trusted_proxies);
    if (!proxies) return proxies.error();
    ctx_.proxies = std::move(*proxies);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int workers = options.workers > 0 ? options.workers : cores;
    const int queue = options.queue >= 0 ? options.queue : 2 * workers;
    const int threads = options.http_threads > 0 ? options.http_threads : std::max(16, 4 * workers);
    ctx_.options.workers = workers;
    ctx_.options.queue = queue;
    ctx_.options.http_threads = threads;

    auto key_options = server::key_store_options(options.store_uri, options.pepper_file, options.key_file);
    if (!key_options) return key_options.error();
    StoreOptions store_options;
    store_options.key_file = options.key_file.string();
    store_options.clock = options.clock;
    auto store = open_store_waiting(options, store_options);
    if (!store) return store.error();
    ctx_.store = std::move(*store);
    auto keys = server::KeyStore::open(*ctx_.store, *key_options);  // API keys live in the store, shared by nodes
    if (!keys) return keys.error();
    ctx_.keys = std::move(*keys);
    auto count = ctx_.keys->count();
    if (!count) return count.error();
    if (*count == 0) {
      server::ApiKey admin;
      admin.name = "admin";
      admin.collections = {"*"};
      admin.operations = {"admin"};
      auto secret = ctx_.keys->create(admin, nullptr, {"server", "first admin key of a store without keys"});
      // kAlreadyExists: another node starting on the same store made it a moment ago.
      if (!secret && secret.error().code != ErrorCode::kAlreadyExists) return secret.error();
      if (secret) {
        bootstrap_ = std::move(*secret);
        ctx_.log->info("created the first admin key", {{"key_name", "admin"}});
      }
    }
    ctx_.throttle = std::make_unique<server::AuthThrottle>(options.auth_failures_allowed,
                                                           std::chrono::seconds(options.auth_failure_window_s));
    ctx_.budget = std::make_unique<server::SearchBudget>(*ctx_.store, options.clock);
    if (options.stream_lease_ms < 100 || options.stream_max_event_clients < 0 || options.stream_event_queue < 1) {
      return Error{ErrorCode::kInvalidArgument, "stream lease under 100 ms, or negative event clients or queue"};
    }
    ctx_.streams = std::make_unique<server::StreamManager>(
        ctx_, options.node_id.empty() ? default_node_id() : options.node_id,
        std::chrono::milliseconds(options.stream_lease_ms), static_cast<std::size_t>(options.stream_event_queue),
        static_cast<std::size_t>(options.stream_max_event_clients));
    ctx_.gate = std::make_unique<server::AdmissionGate>(workers, queue,
                                                        std::chrono::milliseconds(options.queue_timeout_ms));

    // Default: the installed console (installed_or, candor/models.h), else the source tree's.
    const std::filesystem::path web = options.web_dir.empty() ? installed_or("web", CANDOR_WEB_DIR) : options.web_dir;
    std::error_code ec;
    if (!web.empty()) ctx_.web_root = std::filesystem::canonical(web, ec);
    if (ctx_.web_root.empty() || ec) {
      ctx_.web_root.clear();
      ctx_.log->warn("web console directory not found; / will answer 404", {{"web_dir", web.string()}});
    }

    if (!options.tls_cert.empty()) {
      auto ssl = std::make_unique<server::GuardedServer<httplib::SSLServer>>(
          connection_limits(), options.tls_cert.c_str(), options.tls_key.c_str());
      if (!ssl->is_valid()) return Error{ErrorCode::kIoError, "cannot load the TLS certificate or key"};
      http_ = std::move(ssl);
      tls_ = true;
    } else {
      http_ = std::make_unique<server::GuardedServer<httplib::Server>>(connection_limits());
    }
    configure_http(threads);

    router_ = std::make_unique<server::Router>(*http_, ctx_);
    server::register_ops_routes(*router_);
    server::register_engine_routes(*router_);
    server::register_collection_routes(*router_);
    server::register_audit_routes(*router_);
    server::register_key_routes(*router_);
    server::register_stream_routes(*router_);
    server::register_library_routes(*router_);
    server::register_static_files(*http_, ctx_);  // last: the GET fallback

    if (options.port == 0) {
      port_ = http_->bind_to_any_port(options.host);
      if (port_ < 0) return Error{ErrorCode::kIoError, "cannot bind " + options.host};
    } else {
      if (!http_->bind_to_port(options.host, options.port)) {
        return Error{ErrorCode::kIoError, "cannot bind " + options.host + ":" + std::to_string(options.port)};
      }
      port_ = options.port;
    }
    if (auto* control = dynamic_cast<server::ListenControl*>(http_.get()); control == nullptr || !control->set_backlog(256)) {
      ctx_.log->warn("could not raise the listen backlog", {{"backlog", 256}});
    }
    return ok_status();
  }

  Status run() override {
    run_called_ = true;
    loader_ = std::thread([this] { load(); });
    ctx_.log->info("listening", {{"url", url()},
                                 {"workers", ctx_.options.workers},
                                 {"queue", ctx_.options.queue},
                                 {"http_threads", ctx_.options.http_threads}});
    bool listened = true;
    if (!stop_requested_) listened = http_->listen_after_bind();
    listen_returned_ = true;
    if (ctx_.streams) ctx_.streams->stop_all();  // the streams stop cleanly, their leases released
    // listen_after_bind returns after the connection threads have finished their requests.
    if (loader_.joinable()) loader_.join();
    {
      std::lock_guard lock(retention_mutex_);
      retention_wakeup_.notify_all();
    }
    if (retention_.joinable()) retention_.join();
    ctx_.log->info("stopped");
    if (load_error_) return *load_error_;
    if (!listened && !stop_requested_) return Error{ErrorCode::kIoError, "the server stopped listening"};
    return ok_status();
  }

  void stop() override {
    stop_requested_ = true;
    {
      std::lock_guard lock(retention_mutex_);
      retention_wakeup_.notify_all();
    }
    if (!http_) return;
    // Event streams never end by themselves: end them so that httplib's stop, which waits
    // for in-flight responses, returns.
    if (ctx_.streams) ctx_.streams->close_clients();
    // run() may be between its stop check and httplib marking itself running.
    while (run_called_ && !listen_returned_ && !http_->is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    http_->stop();
  }

  int port() const override { return port_; }
  std::string url() const override {
    const std::string host = ctx_.options.host.find(':') != std::string::npos ? "[" + ctx_.options.host + "]"
                                                                               : ctx_.options.host;
    return std::string(tls_ ? "https" : "http") + "://" + host + ":" + std::to_string(port_) + "/";
  }
  std::optional<std::string> take_bootstrap_key() override {
    std::lock_guard lock(bootstrap_mutex_);
    auto key = std::move(bootstrap_);
    bootstrap_.reset();
    return key;
  }
  bool ready() const override { return ctx_.loaded.load(); }
  std::vector<RouteInfo> routes() const override { return router_->routes(); }
  httplib::Server& http() { return *http_; }

 private:
  // What httplib does not bound itself (connection_guard.h).
  server::ConnectionLimits connection_limits() {
    const auto& o = ctx_.options;
    server::ConnectionLimits l;
    l.header_timeout = std::chrono::seconds(o.header_timeout_s);
    l.body_timeout = std::chrono::seconds(o.body_timeout_s);
    l.idle_timeout = std::chrono::seconds(o.read_timeout_s);
    l.write_timeout = std::chrono::seconds(o.write_timeout_s);
    l.keep_alive_timeout = std::chrono::seconds(o.keep_alive_timeout_s);
    l.keep_alive_max_requests = std::max<std::size_t>(1, o.keep_alive_max_requests);
    l.max_header_bytes = o.max_header_bytes;
    l.max_body_bytes = o.max_body_bytes;
    l.threads = static_cast<std::size_t>(o.http_threads);
    l.queue = static_cast<std::size_t>(o.connection_queue);
    l.max_waiting = static_cast<std::size_t>(o.max_waiting_connections);
    l.default_headers = {{"Content-Security-Policy", kCsp}, {"X-Content-Type-Options", "nosniff"},
                         {"X-Frame-Options", "DENY"},       {"Referrer-Policy", "no-referrer"},
                         {"Cache-Control", "no-store"}};
    l.on_refused = [this](int status, const std::string& reason, const std::string& ip) {
      ctx_.metrics.observe_request("(refused)", "-", status, 0.0);
      ctx_.log->warn("connection refused", {{"status", status}, {"reason", reason}, {"ip", ip}});
    };
    return l;
  }

  // A declared body over the limit is refused before any of it is read.
  bool body_too_large(const httplib::Request& req) const {
    if (!req.has_header("Content-Length")) return false;
    const std::string v = req.get_header_value("Content-Length");
    std::uint64_t n = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    return ec == std::errc::result_out_of_range || (ec == std::errc() && n > ctx_.options.max_body_bytes);
  }

  void configure_http(int threads) {
    const auto& o = ctx_.options;
    (void)threads;  // the connection threads and their queue: connection_limits()
    http_->set_payload_max_length(o.max_body_bytes);
    // Responses go out as a header write and a body write; with Nagle's algorithm the
    // body waits for the client's delayed ACK (40 ms on Linux) on keep-alive connections.
    http_->set_tcp_nodelay(true);
    http_->set_read_timeout(o.read_timeout_s, 0);
    http_->set_write_timeout(o.write_timeout_s, 0);
    http_->set_keep_alive_timeout(o.keep_alive_timeout_s);
    http_->set_keep_alive_max_count(o.keep_alive_max_requests);
    http_->set_default_headers({{"Content-Security-Policy", kCsp},
                                {"X-Content-Type-Options", "nosniff"},
                                {"X-Frame-Options", "DENY"},
                                {"Referrer-Policy", "no-referrer"},
                                {"Cache-Control", "no-store"}});
    // "Expect: 100-continue" with a body over the limit: 413 before the client sends it.
    http_->set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!body_too_large(req)) return 100;
      server::close_after_response();
      res.status = 413;
      return 413;
    });
    http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      request_start() = std::chrono::steady_clock::now();
      server::current_route().clear();
      server::current_key_name().clear();
      server::forget_parsed_body();
      server::headers_received();
      if (body_too_large(req)) {
        // Answered at once; the connection closes so the unread body is never parsed.
        server::close_after_response();
        server::send_error(res, {ErrorCode::kImageTooLarge, "request body over the limit of " +
                                                                std::to_string(ctx_.options.max_body_bytes) + " bytes"});
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Responses httplib makes itself (404 no route, 413 body too large, 400 bad
    // request line) get the same JSON error shape as the handlers' own.
    http_->set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request&,
                                                                          httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      Error e{ErrorCode::kInvalidArgument, "malformed request"};
      if (const auto v = server::current_violation(); v != server::Violation::kNone) {
        // The guard stopped reading (a body over the cap or too slow): say so, not "400".
        res.status = server::violation_status(v);
        e = {res.status == 413 ? ErrorCode::kImageTooLarge : ErrorCode::kInvalidArgument,
             server::violation_message(v, ctx_.options.max_body_bytes)};
      } else if (res.status == 404) e = {ErrorCode::kNotFound, "no such route"};
      else if (res.status == 405) e = {ErrorCode::kInvalidArgument, "method not allowed"};
      else if (res.status == 413) {
        e = {ErrorCode::kImageTooLarge,
             "request body over the limit of " + std::to_string(ctx_.options.max_body_bytes) + " bytes"};
      } else if (res.status == 414) e = {ErrorCode::kInvalidArgument, "request URI too long"};
      else if (res.status >= 500) e = {ErrorCode::kInternal, "internal error"};
      res.set_content(error_to_json(e).dump(), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));
    http_->set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      ctx_.log->error("unhandled exception", {{"route", server::current_route()}});
      server::send_error(res, {ErrorCode::kInternal, "internal error"});
    });
    // Access log and request metrics: route templates only, never raw paths or bodies. This runs as
    // httplib's post-routing handler, i.e. after the error handler and before the response is written,
    // so a request is counted before its client can see the answer (the logger hook runs after the
    // write, which let a client's next request race its own metrics). The duration therefore ends
    // when the response is ready, not when its last byte has left.
    http_->set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const std::string route = server::current_route().empty() ? "(unmatched)" : server::current_route();
      auto& start = request_start();
      const double secs = start == std::chrono::steady_clock::time_point{}
                              ? 0.0
                              : std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      start = {};
      ctx_.metrics.observe_request(route, req.method, res.status, secs);
      nlohmann::json fields = {{"method", req.method},  {"route", route},        {"status", res.status},
                               {"ms", std::round(secs * 1e4) / 10.0}, {"ip", server::client_address(ctx_, req)}};
      if (!ctx_.proxies.empty() && fields["ip"] != req.remote_addr) fields["peer"] = req.remote_addr;
      if (!server::current_key_name().empty()) fields["key_name"] = server::current_key_name();
      if (res.status >= 400) {
        auto body = nlohmann::json::parse(res.body, nullptr, false);
        if (body.is_object() && body.contains("error")) fields["error"] = body["error"].value("code", "");
      }
      ctx_.log->write(res.status >= 500 ? "error" : "info", "request", std::move(fields));
      server::current_route().clear();
      server::current_key_name().clear();
      server::forget_parsed_body();  // a parse of a large body is not kept until this thread's next request
    });
  }

  void load() {
    const Engine* engine = ctx_.options.engine;
    if (engine == nullptr) {
      auto created = Engine::create(ctx_.options.engine_options);
      if (!created) return fail_load(created.error());
      ctx_.owned_engine = std::move(*created);
      engine = ctx_.owned_engine.get();
    }
    const FaceAnalyzer* analyzer = ctx_.options.analyzer;
    if (analyzer == nullptr) {
      AnalyzerOptions analyzer_options;
      analyzer_options.model_dir = ctx_.options.engine_options.model_dir;
      analyzer_options.manifest = ctx_.options.engine_options.manifest;
      auto created = FaceAnalyzer::create(analyzer_options);
      if (!created) return fail_load(created.error());
      ctx_.owned_analyzer = std::move(*created);
      analyzer = ctx_.owned_analyzer.get();
    }
    ctx_.analyzer = analyzer;
    ctx_.engine = engine;
    CollectionsOptions collections_options;
    collections_options.analyzer = analyzer;
    collections_options.index_spec = ctx_.options.index_spec;
    collections_options.follow_changes = ctx_.options.follow_changes;  // other nodes' changes reach this one
    collections_options.served = ctx_.options.collections;
    auto collections = Collections::open(*engine, *ctx_.store, collections_options);
    if (!collections) return fail_load(collections.error());
    ctx_.collections = std::move(*collections);
    ctx_.loaded = true;
    ctx_.log->info("ready");
    ctx_.streams->begin();  // the streams whose desired state is running, this node's share
    if (ctx_.options.retention_interval_min > 0) retention_ = std::thread([this] { retention_schedule(); });
  }

  // "<hostname>:<pid>:<8 hex>": unique per process, readable in a lease row.
  static std::string default_node_id() {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    std::array<unsigned char, 4> r{};
    randombytes_buf(r.data(), r.size());
    return std::string(host) + ":" + std::to_string(getpid()) + ":" + to_hex(r);
  }

  // Purges what is past its retention term or consent, at start-up and every
  // retention_interval_min, until the server stops.
  void retention_schedule() {
    const auto interval = std::chrono::minutes(ctx_.options.retention_interval_min);
    while (!stop_requested_) {
      auto report = ctx_.collections->retention_run(ctx_.now(), {"server:retention", "retention schedule"});
      if (report) {
        ctx_.log->info("retention run", {{"removed_faces", report->removed.size()},
                                         {"expired_by_age", report->expired_by_age},
                                         {"without_consent", report->without_consent},
                                         {"library_faces_expired", report->library_faces_expired}});
      } else {
        ctx_.log->error("retention run failed", {{"code", error_code_name(report.error().code)}});
      }
      std::unique_lock lock(retention_mutex_);
      retention_wakeup_.wait_for(lock, interval, [this] { return stop_requested_.load(); });
    }
  }

  // A server that cannot load its models or collections is of no use: say why and stop.
  void fail_load(const Error& error) {
    ctx_.load_failed = true;
    load_error_ = error;
    ctx_.log->error("loading failed", {{"code", error_code_name(error.code)}, {"message", error.message}});
    stop();
  }

  Context ctx_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<server::Router> router_;
  bool tls_ = false;
  int port_ = 0;
  std::mutex bootstrap_mutex_;
  std::optional<std::string> bootstrap_;
  std::thread loader_;
  std::thread retention_;
  std::mutex retention_mutex_;
  std::condition_variable retention_wakeup_;
  std::optional<Error> load_error_;
  std::atomic<bool> run_called_{false};
  std::atomic<bool> listen_returned_{false};
  std::atomic<bool> stop_requested_{false};
};

}  // namespace

namespace server {
// Every Server is a ServerImpl: Server::create is the only way to make one.
httplib::Server& http_server_of(Server& s) { return static_cast<ServerImpl&>(s).http(); }
}  // namespace server

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options) {
  auto server = std::make_unique<ServerImpl>();
  if (auto st = server->init(options); !st) return st.error();
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace candor
