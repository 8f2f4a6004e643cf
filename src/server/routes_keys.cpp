// API key management (admin). The secret is in the 201 answer and nowhere else.
// An admin key scoped to some collections manages keys within them only: KeyStore
// applies the delegation rules (api_keys.h) given the acting key, so these routes
// declare Span::kOwnCollections rather than needing a key scoped to "*".
#include "core/json_number.h"
#include "http_util.h"
#include "server_context.h"

namespace candor::server {

void register_key_routes(Router& router) {
  router.add({"POST", "/v1/keys", Access::kScoped, "admin", false, Span::kOwnCollections}, [](Context& ctx, Call& call) {
    auto body = json_body(call.req);
    if (!body) return send_error(call.res, body.error());
    ApiKey spec;
    try {
      spec.name = body->value("name", "");
      spec.collections = body->value("collections", std::vector<std::string>{});
      spec.operations = body->value("operations", std::vector<std::string>{});
      // json_value: a budget of 1e103 is refused, not cast (undefined behaviour; fuzz_json).
      spec.searches_per_minute = json_value(*body, "searches_per_minute", spec.searches_per_minute);
      spec.searches_per_day = json_value(*body, "searches_per_day", spec.searches_per_day);
    } catch (const nlohmann::json::exception&) {
      return send_error(call.res, {ErrorCode::kInvalidArgument,
                                   "expected {name, collections:[..], operations:[..], searches_per_minute, searches_per_day}"});
    }
    auto secret = ctx.keys->create(spec, call.key, call.audit("API key created"));
    if (!secret) return send_error(call.res, secret.error());
    ctx.log->info("api key created", {{"key_name", spec.name}, {"by", call.key->name}});
    send_json(call.res, 201, {{"name", spec.name}, {"key", *secret}});
  });

  router.add({"GET", "/v1/keys", Access::kScoped, "admin", false, Span::kOwnCollections}, [](Context& ctx, Call& call) {
    auto keys = ctx.keys->list(call.key);
    if (!keys) return send_error(call.res, keys.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& k : *keys) out.push_back(api_key_to_json(k));
    send_json(call.res, 200, {{"keys", out}});
  });

  // The calling key itself, so that a client (the console) shows what it may do and hides
  // the rest; any valid key may ask, and learns nothing it did not hold already.
  router.add({"GET", "/v1/keys/self", Access::kAnyKey, "", false}, [](Context&, Call& call) {
    send_json(call.res, 200, api_key_to_json(*call.key));
  });

  router.add({"DELETE", "/v1/keys/{name}", Access::kScoped, "admin", false, Span::kOwnCollections},
             [](Context& ctx, Call& call) {
    auto st = ctx.keys->remove(call.param("name"), call.key, call.audit("API key deleted"));
    if (!st) return send_error(call.res, st.error());
    ctx.log->info("api key deleted", {{"key_name", call.param("name")}, {"by", call.key->name}});
    send_json(call.res, 200, {{"deleted", call.param("name")}});
  });
}

}  // namespace candor::server
