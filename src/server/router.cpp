// Router::add: authentication, scope checks and collection visibility, applied to
// every route before its handler runs.
#include <algorithm>
#include <exception>
#include <regex>

#include "http_util.h"
#include "server_context.h"

namespace candor::server {
namespace {

// The key from "X-API-Key: <key>" or "Authorization: Bearer <key>".
std::string presented_key(const httplib::Request& req) {
  std::string key = req.get_header_value("X-API-Key");
  if (!key.empty()) return key;
  const std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() > kBearer.size() && auth.compare(0, kBearer.size(), kBearer) == 0) return auth.substr(kBearer.size());
  return {};
}

// "/v1/collections/{c}/search" -> "/v1/collections/([^/]+)/search" and {"c"}.
std::string template_to_regex(const std::string& path, std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    const char ch = path[i];
    if (ch == '{') {
      const auto end = path.find('}', i);
      names.push_back(path.substr(i + 1, end - i - 1));
      out += "([^/]+)";
      i = end;
    } else if (std::string_view(".^$|()[]*+?\\").find(ch) != std::string_view::npos) {
      out += '\\', out += ch;
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace

Error collection_not_found() { return Error{ErrorCode::kNotFound, "no such collection"}; }

std::string client_address(const Context& ctx, const httplib::Request& req) {
  if (ctx.proxies.empty()) return req.remote_addr;
  // Every X-Forwarded-For header, in order: a proxy may append a header rather than extend one.
  std::string forwarded;
  const std::size_t n = req.get_header_value_count("X-Forwarded-For");
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) forwarded += ',';
    forwarded += req.get_header_value("X-Forwarded-For", i);
  }
  return ctx.proxies.client_address(req.remote_addr, forwarded);
}

std::string& current_route() {
  thread_local std::string route;
  return route;
}

std::string& current_key_name() {
  thread_local std::string name;
  return name;
}

void Router::add(RouteSpec spec, Handler handler) {
  routes_.push_back({spec.method, spec.path});
  std::vector<std::string> names;
  const std::string pattern = template_to_regex(spec.path, names);
  const bool names_collection = std::find(names.begin(), names.end(), "c") != names.end();
  const Span span = spec.span != Span::kAuto ? spec.span
                    : spec.operation == "admin" && !names_collection ? Span::kAllCollections
                                                                     : Span::kOwnCollections;
  Context& ctx = ctx_;
  auto wrapped = [&ctx, spec, span, names, handler = std::move(handler)](const httplib::Request& req,
                                                                         httplib::Response& res) {
    current_route() = spec.path;
    Call call{req, res, nullptr, {}, {}};
    for (std::size_t i = 0; i < names.size() && i + 1 < req.matches.size(); ++i) {
      call.params[names[i]] = req.matches[i + 1].str();
    }
    std::optional<ApiKey> key;
    const std::string secret = spec.access == Access::kPublic ? std::string() : presented_key(req);
    if (spec.access != Access::kPublic && !(spec.access == Access::kOptional && secret.empty())) {
      const std::string ip = client_address(ctx, req);
      if (const int wait = ctx.throttle->blocked_for(ip); wait > 0) {
        send_error(res, {ErrorCode::kRateLimited, "too many failed authentications from this address"}, wait);
        return;
      }
      if (!secret.empty()) {
        auto verified = ctx.keys->verify(secret);
        if (!verified) return send_error(res, verified.error(), 1);  // store unreachable: 503, not a failed login
        key = std::move(*verified);
      }
      if (!key) {
        ctx.throttle->record_failure(ip);
        ctx.metrics.count_auth_failure();
        send_error(res, {ErrorCode::kUnauthenticated,
                         secret.empty() ? "an API key is required (X-API-Key or Authorization: Bearer)"
                                        : "the API key is not valid"});
        res.set_header("WWW-Authenticate", "Bearer");
        return;
      }
      call.key = &*key;
      call.actor = "key:" + key->name;
      current_key_name() = key->name;
      if ((spec.access == Access::kScoped || spec.access == Access::kOptional) && !key->allows(spec.operation)) {
        send_error(res, {ErrorCode::kPermissionDenied, "this key lacks the '" + spec.operation + "' scope"});
        return;
      }
      // The one place a key's reach is checked (issue 16: an admin key scoped to one
      // collection ran the global retention and created keys for "*"): a route over
      // every collection needs a key that sees every collection.
      if (span == Span::kAllCollections && !key->all_collections()) {
        send_error(res, {ErrorCode::kPermissionDenied,
                         "this request acts on every collection: it needs a key scoped to \"*\""});
        return;
      }
    }
    if (spec.needs_engine && !ctx.loaded.load()) {
      send_error(res, {ErrorCode::kOverloaded, "the server is starting: models and collections are loading"}, 5);
      return;
    }
    try {
      if (auto it = call.params.find("c"); it != call.params.end()) {
        // Out of scope and nonexistent look the same, so a key cannot probe for names.
        if (key && !key->sees_collection(it->second)) {
          send_error(res, collection_not_found());
          return;
        }
        auto found = ctx.store->get_collection(it->second);
        if (!found) {
          send_error(res, found.error().code == ErrorCode::kNotFound || found.error().code == ErrorCode::kInvalidArgument
                              ? collection_not_found()
                              : found.error());
          return;
        }
      }
      handler(ctx, call);
    } catch (const std::exception& e) {
      ctx.log->error("handler failed", {{"route", spec.path}, {"what", e.what()}});
      send_error(res, {ErrorCode::kInternal, "internal error"});
    }
  };
  if (spec.method == "GET") http_.Get(pattern, wrapped);
  else if (spec.method == "POST") http_.Post(pattern, wrapped);
  else if (spec.method == "DELETE") http_.Delete(pattern, wrapped);
  else if (spec.method == "PUT") http_.Put(pattern, wrapped);
  else throw std::logic_error("Router::add: unsupported method " + spec.method);
}

}  // namespace candor::server
