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
#include "json_log.h"
#include "metrics.h"
#include "rate_limit.h"

namespace candor::server {

struct Context {
  ServerOptions options;
  std::unique_ptr<Engine> owned_engine;
  std::atomic<const Engine*> engine{nullptr};
  std::unique_ptr<FaceAnalyzer> owned_analyzer;
  std::atomic<const FaceAnalyzer*> analyzer{nullptr};  // quality, pose, eyes, liveness
  std::unique_ptr<Store> store;
  std::unique_ptr<Collections> collections;  // set once by the loader before `loaded`
  std::unique_ptr<KeyStore> keys;
  std::unique_ptr<AuthThrottle> throttle;
  std::unique_ptr<SearchBudget> budget;
  std::unique_ptr<AdmissionGate> gate;
  Metrics metrics;
  StoreHealth store_health;  // /readyz, /metrics: the store's ping, cached ~1 s
  std::unique_ptr<JsonLog> log;
  std::atomic<bool> loaded{false};      // engine + collections in place
  std::atomic<bool> load_failed{false};
  std::filesystem::path web_root;       // canonical
};

// One authenticated request: the key, its audit actor, and the path parameters.
struct Call {
  const httplib::Request& req;
  httplib::Response& res;
  const ApiKey* key = nullptr;  // null on routes without auth
  std::string actor;            // "key:<name>"
  std::map<std::string, std::string> params;

  const std::string& param(const std::string& name) const { return params.at(name); }
  AuditContext audit(std::string reason = "") const { return AuditContext{actor, std::move(reason)}; }
};

enum class Access {
  kPublic,  // no key: health, metrics, openapi
  kAnyKey,  // any valid key
  kScoped,  // a key holding `operation` (admin implies all)
};

struct RouteSpec {
  std::string method;     // GET, POST, DELETE
  std::string path;       // template: "/v1/collections/{c}/search"
  Access access = Access::kScoped;
  std::string operation;  // for kScoped
  bool needs_engine = false;  // 503 until the engine and collections are loaded
};

using Handler = std::function<void(Context&, Call&)>;

class Router {
 public:
  Router(httplib::Server& http, Context& ctx) : http_(http), ctx_(ctx) {}
  // Registers the route with httplib. A {c} parameter is checked against the key's
  // collections and the store before the handler runs: a collection the key may not
  // see and one that does not exist get the same 404 body.
  void add(RouteSpec spec, Handler handler);
  const std::vector<RouteInfo>& routes() const { return routes_; }

 private:
  httplib::Server& http_;
  Context& ctx_;
  std::vector<RouteInfo> routes_;
};

// The body every hidden-or-missing collection gets (identical on purpose).
Error collection_not_found();

// The route template of the request being handled on this thread ("" before routing);
// read by the access logger and the metrics, which must not see raw paths.
std::string& current_route();
// The API key name of the request being handled on this thread ("" if none), for the log.
std::string& current_key_name();

// A worker slot for inference, or nullopt after answering 503 overloaded (routes_engine.cpp).
std::optional<AdmissionGate::Ticket> admit_inference(Context& ctx, Call& call);

// Route registration, one function per area (routes_*.cpp).
void register_ops_routes(Router& router);         // healthz, readyz, metrics, openapi
void register_engine_routes(Router& router);      // detect, compare
void register_collection_routes(Router& router);  // collections, consents, subjects, enroll, search
void register_audit_routes(Router& router);       // audit, export, retention
void register_key_routes(Router& router);         // keys (admin)
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
