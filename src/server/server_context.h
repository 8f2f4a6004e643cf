// What the route handlers share: the engine, store, collections, keys, limits,
// metrics and log of one Server, and the Router that registers a route together
// with its scope, so that authentication and authorisation happen in one place
// (before any handler code) rather than in every handler.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <httplib.h>

#include "admission.h"
#include "api_keys.h"
#include "candor/analyzer.h"
#include "candor/collections.h"
#include "candor/server.h"
#include "client_address.h"
#include "json_log.h"
#include "metrics.h"
#include "rate_limit.h"

namespace candor::server {

class StreamManager;

struct Context {
  ServerOptions options;
  std::unique_ptr<Engine> owned_engine;
  std::atomic<const Engine*> engine{nullptr};
  std::unique_ptr<FaceAnalyzer> owned_analyzer;
  std::atomic<const FaceAnalyzer*> analyzer{nullptr};  // quality, pose, eyes, liveness
  std::unique_ptr<Store> store;
  std::unique_ptr<Collections> collections;  // set once by the loader before `loaded`
  std::unique_ptr<KeyStore> keys;
  TrustedProxies proxies;  // from options.trusted_proxies
  std::unique_ptr<AuthThrottle> throttle;
  std::unique_ptr<SearchBudget> budget;
  std::unique_ptr<AdmissionGate> gate;
  Metrics metrics;
  StoreHealth store_health;  // /readyz, /metrics: the store's ping, cached ~1 s
  std::unique_ptr<JsonLog> log;
  std::atomic<bool> loaded{false};      // engine + collections in place
  std::atomic<bool> load_failed{false};
  std::filesystem::path web_root;       // canonical
  // Last, so it is destroyed first: its streams use the engine, collections and store.
  std::unique_ptr<StreamManager> streams;

  // options.clock, else the system clock: the store's and the budgets' time.
  TimePoint now() const { return options.clock ? options.clock() : now_ms(); }
};

// One authenticated request: the key, its audit actor, and the path parameters.
struct Call {
  const httplib::Request& req;
  httplib::Response& res;
  const ApiKey* key = nullptr;  // null on kPublic routes, and on kOptional ones called without a key
  std::string actor;            // "key:<name>"
  std::map<std::string, std::string> params;

  const std::string& param(const std::string& name) const { return params.at(name); }
  AuditContext audit(std::string reason = "") const { return AuditContext{actor, std::move(reason)}; }
};

enum class Access {
  kPublic,    // no key: health, readiness, openapi
  kAnyKey,    // any valid key
  kScoped,    // a key holding `operation` (admin implies all)
  kOptional,  // no key, or a valid key holding `operation` (/metrics: more series with a key)
};

// How much of the server a route acts on, beyond its operation (issue 16).
enum class Span {
  // kAllCollections for an "admin" route without a {c} parameter (it acts on the whole
  // server: retention over every collection, creating a collection, whose name all
  // keys share), else kOwnCollections. Safe by default: a new global admin route needs
  // a key scoped to "*" unless it says otherwise.
  kAuto,
  // The key's own collections: {c} must be one of them (else 404); a handler without
  // {c} limits itself (GET /v1/collections lists the visible ones, KeyStore the keys).
  kOwnCollections,
  // Every collection: only a key scoped to "*" (else 403), e.g. a subject export.
  kAllCollections,
};

struct RouteSpec {
  std::string method;     // GET, POST, DELETE
  std::string path;       // template: "/v1/collections/{c}/search"
  Access access = Access::kScoped;
  std::string operation;  // for kScoped and kOptional
  bool needs_engine = false;  // 503 until the engine and collections are loaded
  Span span = Span::kAuto;
};

using Handler = std::function<void(Context&, Call&)>;

class Router {
 public:
  Router(httplib::Server& http, Context& ctx) : http_(http), ctx_(ctx) {}
  // Registers the route with httplib. Before the handler runs: the key (X-API-Key or
  // Bearer) is verified, with failures throttled per client address (client_address());
  // its operation and span are checked; a {c} parameter is checked against the key's
  // collections and the store: a collection the key may not see and one that does not
  // exist get the same 404 body.
  void add(RouteSpec spec, Handler handler);
  const std::vector<RouteInfo>& routes() const { return routes_; }

 private:
  httplib::Server& http_;
  Context& ctx_;
  std::vector<RouteInfo> routes_;
};

// The address `req` counts against (throttle, access log): the peer, or the client a
// trusted proxy names in X-Forwarded-For (client_address.h).
std::string client_address(const Context& ctx, const httplib::Request& req);

// The body every hidden-or-missing collection gets (identical on purpose).
Error collection_not_found();

// The route template of the request being handled on this thread ("" before routing);
// read by the access logger and the metrics, which must not see raw paths.
std::string& current_route();
// The API key name of the request being handled on this thread ("" if none), for the log.
std::string& current_key_name();

// A worker slot for inference, or nullopt after answering 503 overloaded (routes_engine.cpp).
std::optional<AdmissionGate::Ticket> admit_inference(Context& ctx, Call& call);

// Searches admitted against a key's budget (SearchBudget), released when the request
// ends; the store counts each search that ran when it records it (record_search,
// record_find), so the next admission sees it.
struct AdmittedSearches {
  Context& ctx;
  std::string actor;
  int searches = 1;
  AdmittedSearches(Context& c, std::string a) : ctx(c), actor(std::move(a)) {}
  AdmittedSearches(const AdmittedSearches&) = delete;
  AdmittedSearches& operator=(const AdmittedSearches&) = delete;
  ~AdmittedSearches() { ctx.budget->finish(actor, searches); }
};

// One search admitted against the key's budget before any work, or nullptr after
// answering 429 (audit_refusal(window) records the refusal first; nothing is charged)
// or the store's error (routes_collections.cpp). Every 1:N search route calls it.
std::unique_ptr<AdmittedSearches> admit_search(Context& ctx, Call& call,
                                               const std::function<void(const std::string& window)>& audit_refusal);

// Route registration, one function per area (routes_*.cpp).
void register_ops_routes(Router& router);         // healthz, readyz, metrics, openapi
void register_engine_routes(Router& router);      // detect, compare
void register_collection_routes(Router& router);  // collections, consents, subjects, enroll, search
void register_audit_routes(Router& router);       // audit, export, retention
void register_key_routes(Router& router);         // keys (admin)
void register_stream_routes(Router& router);      // camera streams and their events (issue 12)
void register_library_routes(Router& router);     // photo libraries: groups, corrections, find, thumbnails (issue 13)
// GET fallback serving the web console from ctx.web_root (static_files.cpp).
void register_static_files(httplib::Server& http, Context& ctx);

// Resolves a request path to a regular file under `root` or nullopt: rejects "..",
// ".", empty or hidden segments, backslashes and NULs before touching the file system,
// then checks that the canonical path is still under the canonical root (symlinks).
std::optional<std::filesystem::path> resolve_static_path(const std::filesystem::path& root, const std::string& path);

// The httplib server behind a Server made by Server::create, so that the fuzz targets
// (fuzz/) can hand it a whole request in process, through httplib's own parsing, the
// limits configure_http set and the Router, without a socket.
httplib::Server& http_server_of(Server& server);

}  // namespace candor::server
