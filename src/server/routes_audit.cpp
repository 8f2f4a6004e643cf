// Audit, subject access (export) and retention routes.
#include "candor/json.h"
#include "http_util.h"
#include "server_context.h"

namespace candor::server {

void register_audit_routes(Router& router) {
  // A key scoped to some collections reads only their entries: ?collection= must be one
  // of them (a single-collection key gets its own by default).
  router.add({"GET", "/v1/audit", Access::kScoped, "audit", false}, [](Context& ctx, Call& call) {
    AuditFilter f;
    auto limit = int_param(call.req, "limit", 100, 1, 10'000);
    if (!limit) return send_error(call.res, limit.error());
    f.limit = static_cast<std::size_t>(*limit);
    auto after = int_param(call.req, "after_seq", 0, 0, INT64_MAX);
    if (!after) return send_error(call.res, after.error());
    if (*after > 0) f.after_seq = *after;
    auto before = int_param(call.req, "before_seq", 0, 0, INT64_MAX);
    if (!before) return send_error(call.res, before.error());
    if (*before > 0) f.before_seq = *before;
    const auto text = [&](const char* name) -> std::optional<std::string> {
      if (!call.req.has_param(name) || call.req.get_param_value(name).empty()) return std::nullopt;
      return call.req.get_param_value(name);
    };
    f.subject = text("subject");
    f.operation = text("operation");
    f.collection = text("collection");
    // ?key=NAME: what that API key did (its audit actor); ?actor= any actor, e.g. a CLI user.
    f.actor = text("actor");
    if (auto key = text("key")) f.actor = "key:" + *key;
    for (auto [name, bound] : {std::pair{"since", &f.since}, std::pair{"until", &f.until}}) {
      if (auto t = text(name)) {
        auto parsed = parse_time(*t);
        if (!parsed) return send_error(call.res, {ErrorCode::kInvalidArgument, std::string(name) + ": " + parsed.error().message});
        *bound = *parsed;
      }
    }
    // ?order=newest: the latest entries first (what an operator looks for); oldest first by default.
    const std::string order = text("order").value_or("oldest");
    if (order != "oldest" && order != "newest") {
      return send_error(call.res, {ErrorCode::kInvalidArgument, "order must be 'oldest' or 'newest'"});
    }
    f.newest_first = order == "newest";
    if (!call.key->all_collections()) {
      if (!f.collection) {
        if (call.key->collections.size() != 1) {
          return send_error(call.res, {ErrorCode::kInvalidArgument, "this key is scoped to collections: give ?collection="});
        }
        f.collection = call.key->collections.front();
      } else if (!call.key->sees_collection(*f.collection)) {
        return send_error(call.res, collection_not_found());
      }
    }
    auto entries = ctx.store->audit_list(f);
    if (!entries) return send_error(call.res, entries.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : *entries) out.push_back(audit_entry_to_json(e));
    send_json(call.res, 200, {{"entries", out}});
  });

  // The chain spans every collection (its head hash, its count, the issues anywhere in
  // it), so only a key that sees every collection may ask.
  router.add({"GET", "/v1/audit/verify", Access::kScoped, "audit", false, Span::kAllCollections},
             [](Context& ctx, Call& call) {
    auto v = ctx.store->audit_verify();
    if (!v) return send_error(call.res, v.error());
    nlohmann::json issues = nlohmann::json::array();
    for (const auto& i : v->issues) {
      issues.push_back({{"seq", i.seq}, {"kind", audit_break_name(i.kind)}, {"message", i.message}});
    }
    send_json(call.res, 200,
              {{"intact", v->intact}, {"entries", v->entries}, {"head_hash", v->head_hash}, {"issues", issues}});
  });

  // The export spans every collection, so only a key that sees every collection may ask.
  router.add({"GET", "/v1/subjects/{s}/export", Access::kScoped, "audit", false, Span::kAllCollections},
             [](Context& ctx, Call& call) {
    auto exported = ctx.store->export_subject(call.param("s"), call.audit("subject access request"));
    if (!exported) return send_error(call.res, exported.error());
    call.res.status = 200;
    call.res.set_content(*exported, "application/json");
  });

  // The purge runs over every collection: an admin key scoped to some of them may not start it.
  router.add({"POST", "/v1/retention/run", Access::kScoped, "admin", true, Span::kAllCollections},
             [](Context& ctx, Call& call) {
    auto r = ctx.collections->retention_run(ctx.now(), call.audit("retention schedule"));
    if (!r) return send_error(call.res, r.error());
    send_json(call.res, 200,
              {{"removed_faces", r->removed.size()}, {"expired_by_age", r->expired_by_age},
               {"without_consent", r->without_consent}, {"library_faces_expired", r->library_faces_expired}});
  });
}

}  // namespace candor::server
