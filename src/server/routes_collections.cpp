// Collection routes: collections, consents, enrollment, subjects and 1:N search.
// The Router has already checked the key's scope and that {c} exists and is visible.
#include <cmath>
#include <map>
#include <memory>

#include "candor/json.h"
#include "core/json_number.h"
#include "http_util.h"
#include "server_context.h"

namespace candor::server {
namespace {

template <typename T>
bool get_field(const nlohmann::json& body, const char* name, T& out, Call& call) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return true;
  try {
    out = json_get<T>(*it);  // a number that does not fit T is refused, not cast
    return true;
  } catch (const nlohmann::json::exception&) {
    send_error(call.res, {ErrorCode::kInvalidArgument, std::string("field '") + name + "' has the wrong type or is out of range"});
    return false;
  }
}

// One search admitted against the key's budget, or nullopt after answering 429 (the
// refusal audited as a search of `collection`, not charged) or the store's error.
std::unique_ptr<AdmittedSearches> admit_searches(Context& ctx, Call& call, const std::string& collection,
                                                 const AuditContext& audit) {
  return admit_search(ctx, call, [&](const std::string& window) {
    SearchRecord refused;
    refused.context = audit;
    refused.collection = collection;
    refused.details_json = nlohmann::json({{"window", window}}).dump();
    refused.result = "refused: rate_limited";
    refused.charged = false;  // it never ran: the budget is for searches made
    if (auto st = ctx.store->record_search(refused); !st) {
      ctx.log->error("could not audit a refused search", {{"code", error_code_name(st.error().code)}});
    }
  });
}

}  // namespace

std::unique_ptr<AdmittedSearches> admit_search(Context& ctx, Call& call,
                                               const std::function<void(const std::string& window)>& audit_refusal) {
  auto decision = ctx.budget->admit(*call.key, call.actor);
  if (!decision) {
    send_error(call.res, decision.error());
    return nullptr;
  }
  if (!decision->allowed) {
    audit_refusal(decision->window);
    ctx.metrics.count_refused_search("rate_limited");
    send_error(call.res, {ErrorCode::kRateLimited, "search budget of this key spent (per " + decision->window + ")"},
               decision->retry_after_s);
    return nullptr;
  }
  return std::make_unique<AdmittedSearches>(ctx, call.actor);
}

void register_collection_routes(Router& router) {
  router.add({"GET", "/v1/collections", Access::kAnyKey, "", false}, [](Context& ctx, Call& call) {
    auto list = ctx.store->list_collections();
    if (!list) return send_error(call.res, list.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : *list) {
      if (call.key->sees_collection(c.name)) out.push_back(collection_to_json(c));
    }
    send_json(call.res, 200, {{"collections", out}});
  });

  router.add({"POST", "/v1/collections", Access::kScoped, "admin", true}, [](Context& ctx, Call& call) {
    auto body = json_body(call.req);
    if (!body) return send_error(call.res, body.error());
    NewCollection spec;
    std::string point = "fmr-1e-4";
    if (!get_field(*body, "name", spec.name, call) || !get_field(*body, "purpose", spec.purpose, call) ||
        !get_field(*body, "retention_days", spec.retention_days, call) ||
        !get_field(*body, "operating_point", point, call) ||
        !get_field(*body, "liveness_required", spec.liveness_required, call)) {
      return;
    }
    auto created = ctx.collections->create_collection(spec, point, call.audit());
    if (!created) return send_error(call.res, created.error());
    send_json(call.res, 201, collection_to_json(*created));
  });

  router.add({"GET", "/v1/collections/{c}", Access::kAnyKey, "", false}, [](Context& ctx, Call& call) {
    auto c = ctx.store->get_collection(call.param("c"));
    if (!c) return send_error(call.res, c.error());
    nlohmann::json out = collection_to_json(*c);
    if (ctx.loaded.load()) out["faces"] = ctx.collections->indexed_faces(c->name);
    if (auto consents = ctx.store->list_consents(c->name, "")) {
      out["consents"] = std::count_if(consents->begin(), consents->end(), [](const Consent& k) { return !k.revoked_at; });
    }
    send_json(call.res, 200, out);
  });

  router.add({"DELETE", "/v1/collections/{c}", Access::kScoped, "admin", true}, [](Context& ctx, Call& call) {
    const std::string reason = call.req.has_param("reason") ? call.req.get_param_value("reason") : "deleted via API";
    auto deleted = ctx.collections->delete_collection(call.param("c"), call.audit(reason));
    if (!deleted) return send_error(call.res, deleted.error());
    send_json(call.res, 200, {{"deleted_faces", deleted->size()}});
  });

  router.add({"GET", "/v1/collections/{c}/consents", Access::kScoped, "consents", false}, [](Context& ctx, Call& call) {
    const std::string subject = call.req.has_param("subject") ? call.req.get_param_value("subject") : "";
    auto list = ctx.store->list_consents(call.param("c"), subject);
    if (!list) return send_error(call.res, list.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : *list) out.push_back(consent_to_json(c));
    send_json(call.res, 200, {{"consents", out}});
  });

  router.add({"POST", "/v1/collections/{c}/consents", Access::kScoped, "consents", false}, [](Context& ctx, Call& call) {
    auto body = json_body(call.req);
    if (!body) return send_error(call.res, body.error());
    NewConsent n;
    n.collection = call.param("c");
    std::string expires;
    if (!get_field(*body, "subject", n.subject, call) || !get_field(*body, "evidence_sha256", n.evidence_sha256, call) ||
        !get_field(*body, "collected_by", n.collected_by, call) || !get_field(*body, "purpose", n.purpose, call) ||
        !get_field(*body, "expires_at", expires, call)) {
      return;
    }
    if (!expires.empty()) {
      auto t = parse_time(expires);
      if (!t) return send_error(call.res, t.error());
      n.expires_at = *t;
    }
    // An empty purpose is the collection's; another one is refused by the store.
    auto granted = ctx.store->grant_consent(n, call.audit());
    if (!granted) return send_error(call.res, granted.error());
    auto shared = subjects_sharing_evidence(*ctx.store, *granted);
    if (!shared) return send_error(call.res, shared.error());
    send_json(call.res, 201, granted_consent_to_json(*granted, *shared));
  });

  router.add({"DELETE", "/v1/collections/{c}/consents/{s}", Access::kScoped, "consents", true},
             [](Context& ctx, Call& call) {
               auto deleted = ctx.collections->revoke_consent(call.param("c"), call.param("s"), call.audit("consent revoked"));
               if (!deleted) return send_error(call.res, deleted.error());
               send_json(call.res, 200, {{"revoked", call.param("s")}, {"deleted_faces", deleted->size()}});
             });

  router.add({"POST", "/v1/collections/{c}/subjects/{s}/faces", Access::kScoped, "enroll", true},
             [](Context& ctx, Call& call) {
               // Counted before any is decoded; the consent is checked before any inference.
               auto images = images_from(call.req, "images", true, kMaxEnrollImages);
               if (!images && call.req.is_multipart_form_data()) images = images_from(call.req, "image", true, kMaxEnrollImages);
               if (!images) return send_error(call.res, images.error());
               auto allow_outliers = bool_param(call.req, "allow_outliers");
               if (!allow_outliers) return send_error(call.res, allow_outliers.error());
               std::vector<EnrollImage> batch;
               for (const auto& img : *images) batch.push_back({img.name, img.bytes});
               auto ticket = admit_inference(ctx, call);
               if (!ticket) return;
               auto outcomes = ctx.collections->enroll(call.param("c"), call.param("s"), batch,
                                                       EnrollOptions{*allow_outliers}, call.audit());
               if (!outcomes) return send_error(call.res, outcomes.error());
               std::size_t enrolled = 0;
               nlohmann::json list = nlohmann::json::array();
               for (const auto& o : *outcomes) {
                 nlohmann::json j = {{"image", o.name}};
                 if (o.face_id) j["face_id"] = *o.face_id, ++enrolled;
                 if (o.error) j["error"] = error_to_json(*o.error)["error"];
                 list.push_back(std::move(j));
               }
               send_json(call.res, 200, {{"enrolled", enrolled}, {"images", list}});
             });

  router.add({"GET", "/v1/collections/{c}/subjects", Access::kScoped, "consents", false}, [](Context& ctx, Call& call) {
    // Subjects with an active consent or with faces: counted by the store, no template decrypted.
    auto subjects = ctx.store->list_subjects(call.param("c"));
    if (!subjects) return send_error(call.res, subjects.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& k : *subjects) {
      out.push_back({{"subject", k.subject},
                     {"faces", k.faces},
                     {"consent_active", k.consent_active},
                     {"consent_expires_at", k.consent_expires_at ? nlohmann::json(format_time(*k.consent_expires_at))
                                                                 : nlohmann::json(nullptr)}});
    }
    send_json(call.res, 200, {{"subjects", out}});
  });

  router.add({"DELETE", "/v1/collections/{c}/subjects/{s}", Access::kScoped, "consents", true},
             [](Context& ctx, Call& call) {
               const std::string reason =
                   call.req.has_param("reason") ? call.req.get_param_value("reason") : "erasure requested";
               auto deleted = ctx.collections->erase_subject(call.param("c"), call.param("s"), call.audit(reason));
               if (!deleted) return send_error(call.res, deleted.error());
               send_json(call.res, 200, {{"erased", call.param("s")}, {"deleted_faces", deleted->size()}});
             });

  // 1:N search. Order of refusals: bad request (400: reason, top, candidates scope,
  // fpir, image) before the budget (429, audited as rate_limited, not charged), the budget
  // before the worker queue (503), so a refused request costs no inference. Every face
  // searched is one search of the budget: the first is admitted before any work, the
  // others once detection has counted them (else 429, and nothing is searched).
  router.add({"POST", "/v1/collections/{c}/search", Access::kScoped, "search", true}, [](Context& ctx, Call& call) {
    const std::string collection = call.param("c");
    const AuditContext audit = call.audit(text_param(call.req, "reason").value_or(""));
    if (auto ok = check_audit_context(audit, true); !ok) {
      return send_error(call.res, {ErrorCode::kInvalidArgument, ok.error().message +
                                                                    " (form field, query or JSON 'reason')"});
    }
    auto top = int_param(call.req, "top", 5, 1, 100);
    if (!top) return send_error(call.res, top.error());
    SearchOptions options;
    options.top_k = static_cast<std::size_t>(*top);
    auto largest = bool_param(call.req, "largest_face");
    if (!largest) return send_error(call.res, largest.error());
    options.largest_face_only = *largest;
    if (auto asked = bool_param(call.req, "candidates"); !asked) {
      return send_error(call.res, asked.error());
    } else if (*asked) {
      if (!call.key->allows("candidates")) {
        return send_error(call.res, {ErrorCode::kPermissionDenied,
                                     "below-threshold candidates need a key with the 'candidates' scope"});
      }
      options.include_candidates = true;
    }
    auto fpir = fraction_param(call.req, "fpir");
    if (!fpir) return send_error(call.res, fpir.error());
    options.fpir = *fpir;
    auto images = images_from(call.req, "image", false);
    if (!images) return send_error(call.res, images.error());
    auto budget = admit_searches(ctx, call, collection, audit);
    if (!budget) return;
    int retry_after_s = 0;
    options.admit_faces = [&](std::size_t faces) -> Status {
      if (faces <= 1) return ok_status();
      const int more = static_cast<int>(faces - 1);
      auto decision = ctx.budget->admit(*call.key, call.actor, more);
      if (!decision) return decision.error();
      if (!decision->allowed) {
        retry_after_s = decision->retry_after_s;
        ctx.metrics.count_refused_search("rate_limited");
        return Error{ErrorCode::kRateLimited,
                     "the photo holds " + std::to_string(faces) + " faces, each one search, and the budget of this key"
                     " (per " + decision->window + ") does not cover them: send largest_face=true, or wait"};
      }
      budget->searches += more;
      return ok_status();
    };
    auto ticket = ctx.gate->enter();
    if (!ticket) {
      ctx.metrics.count_refused_search("overloaded");
      return send_error(call.res, {ErrorCode::kOverloaded, "inference queue full; retry shortly"}, 1);
    }
    auto found = ctx.collections->search(collection, (*images)[0].bytes, options, audit);
    if (!found) return send_error(call.res, found.error(), retry_after_s);
    send_json(call.res, 200, search_result_to_json(collection, *found));
  });

  // 1:1 against one subject ("is this person who they claim to be?"): audited and charged
  // like a search.
  router.add({"POST", "/v1/collections/{c}/subjects/{s}/verify", Access::kScoped, "search", true},
             [](Context& ctx, Call& call) {
               const std::string collection = call.param("c");
               const AuditContext audit = call.audit(text_param(call.req, "reason").value_or(""));
               if (auto ok = check_audit_context(audit, true); !ok) {
                 return send_error(call.res, {ErrorCode::kInvalidArgument,
                                              ok.error().message + " (form field, query or JSON 'reason')"});
               }
               auto images = images_from(call.req, "image", false);
               if (!images) return send_error(call.res, images.error());
               auto budget = admit_searches(ctx, call, collection, audit);
               if (!budget) return;
               auto ticket = ctx.gate->enter();
               if (!ticket) return send_error(call.res, {ErrorCode::kOverloaded, "inference queue full; retry shortly"}, 1);
               auto verified = ctx.collections->verify(collection, call.param("s"), (*images)[0].bytes, audit);
               if (!verified) return send_error(call.res, verified.error());
               send_json(call.res, 200, verify_result_to_json(collection, *verified));
             });
}

}  // namespace candor::server
