// Photo libraries over HTTP (issue 13): list, groups, name, merge, remove a face, hide,
// forget a person, find, delete, and face thumbnails cut from the owner's photos when
// shown. No ingest: it reads the owner's folders, so it stays with the CLI
// (`candor library add`). Every route needs the "libraries" scope; a key reaches the
// libraries its `collections` name (or all with "*"), and one it may not reach answers
// exactly as a missing one. Every id in a path is hostile until parse_id() has read it.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "candor/audit.h"
#include "candor/json.h"
#include "candor/photo_library.h"
#include "http_util.h"
#include "server_context.h"

namespace candor::server {
namespace {

constexpr const char* kScope = "libraries";

Error bad(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

Error no_library() { return Error{ErrorCode::kNotFound, "no such library"}; }

// Changes of groups reopen the grouping from the store and write it back
// (photo_library.h): two at once on one library could overwrite each other's groups, so
// this node runs them one at a time (corrections are kept either way).
std::mutex& group_changes() {
  static std::mutex m;
  return m;
}

// A positive decimal id of at most 18 digits (an int64 without overflow), else 400.
Result<std::int64_t> parse_id(const std::string& text, const char* what) {
  if (text.empty() || text.size() > 18 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad(std::string(what) + " must be a positive integer");
  }
  const std::int64_t v = std::stoll(text);
  if (v <= 0) return bad(std::string(what) + " must be a positive integer");
  return v;
}

// The library named by {lib} if the key reaches it; else answers 404 (out of reach and
// missing alike) and returns nullopt.
std::optional<PhotoLibrary> visible_library(Context& ctx, Call& call) {
  const std::string& name = call.param("lib");
  if (!call.key->sees_collection(name)) {
    send_error(call.res, no_library());
    return std::nullopt;
  }
  auto lib = ctx.store->library().get_library(name);
  if (!lib) {
    const ErrorCode c = lib.error().code;
    send_error(call.res, c == ErrorCode::kNotFound || c == ErrorCode::kInvalidArgument ? no_library() : lib.error());
    return std::nullopt;
  }
  return std::move(*lib);
}

struct Target {
  PhotoLibrary lib;
  std::int64_t id = 0;  // the {group} or {face} parameter
};

// The visible library and the id named by path parameter `name` ("group" or "face"), or
// nullopt after answering 404 (library) or 400 (id).
std::optional<Target> library_and_id(Context& ctx, Call& call, const char* name) {
  auto lib = visible_library(ctx, call);
  if (!lib) return std::nullopt;
  auto id = parse_id(call.param(name), name);
  if (!id) {
    send_error(call.res, id.error());
    return std::nullopt;
  }
  return Target{std::move(*lib), *id};
}

// The JSON body, refusing fields other than `allowed`; nullopt after answering.
std::optional<nlohmann::json> body_with(Call& call, std::initializer_list<std::string_view> allowed) {
  auto body = json_body(call.req);
  if (!body) {
    send_error(call.res, body.error());
    return std::nullopt;
  }
  for (const auto& [k, v] : body->items()) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      send_error(call.res, bad("unknown field '" + k.substr(0, 64) + "'"));
      return std::nullopt;
    }
  }
  return std::move(*body);
}

// A reason from the query, a form field or the JSON body, required (audited).
std::optional<AuditContext> with_reason(Call& call) {
  AuditContext audit = call.audit(text_param(call.req, "reason").value_or(""));
  if (auto ok = check_audit_context(audit, true); !ok) {
    send_error(call.res, bad(ok.error().message + " (query, form field or JSON 'reason')"));
    return std::nullopt;
  }
  return audit;
}

void list_libraries(Context& ctx, Call& call) {
  auto list = ctx.store->library().list_libraries();
  if (!list) return send_error(call.res, list.error());
  nlohmann::json out = nlohmann::json::array();
  for (const PhotoLibrary& l : *list) {
    if (!call.key->sees_collection(l.name)) continue;
    out.push_back({{"name", l.name}, {"owner", l.owner}, {"retention_days", l.retention_days},
                   {"created_at", format_time(l.created_at)}});
  }
  send_json(call.res, 200, {{"libraries", out}});
}

// The groups, largest first, each with its face and photo ids (for thumbnails and
// corrections); hidden ones only with ?all=true; then the faces not grouped yet.
void list_groups(Context& ctx, Call& call) {
  auto lib = visible_library(ctx, call);
  if (!lib) return;
  auto all = bool_param(call.req, "all");
  if (!all) return send_error(call.res, all.error());
  LibraryStore& store = ctx.store->library();
  auto groups = store.list_groups(lib->name);
  if (!groups) return send_error(call.res, groups.error());
  auto faces = store.list_faces(lib->name, false);
  if (!faces) return send_error(call.res, faces.error());
  std::map<std::int64_t, std::vector<std::int64_t>> face_ids;
  std::map<std::int64_t, std::set<std::int64_t>> photo_ids;
  for (const LibraryFace& f : *faces) {
    face_ids[f.group].push_back(f.id);
    photo_ids[f.group].insert(f.photo);
  }
  nlohmann::json out = nlohmann::json::array();
  for (const LibraryGroup& g : *groups) {
    if (g.hidden && !*all) continue;
    out.push_back({{"group", g.number},
                   {"name", g.label.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.label)},
                   {"hidden", g.hidden},
                   {"faces", g.faces},
                   {"photos", g.photos},
                   {"face_ids", face_ids[g.number]},
                   {"photo_ids", photo_ids[g.number]}});
  }
  send_json(call.res, 200, {{"library", lib->name}, {"groups", out}, {"ungrouped_face_ids", face_ids[0]}});
}

void name_group(Context& ctx, Call& call) {
  auto t = library_and_id(ctx, call, "group");
  if (!t) return;
  auto body = body_with(call, {"name"});
  if (!body) return;
  const auto it = body->find("name");
  if (it == body->end() || !(it->is_string() || it->is_null())) {
    return send_error(call.res, bad("field 'name' is required: a string (empty or null removes the name)"));
  }
  const std::string label = it->is_null() ? "" : it->get<std::string>();
  if (!printable(label)) return send_error(call.res, bad("field 'name': control characters are not allowed"));
  if (auto s = ctx.store->library().set_group_label(t->lib.name, t->id, label, call.audit()); !s) {
    return send_error(call.res, s.error());
  }
  send_json(call.res, 200, {{"group", t->id}, {"name", label.empty() ? nlohmann::json(nullptr) : nlohmann::json(label)}});
}

void hide_group(Context& ctx, Call& call) {
  auto t = library_and_id(ctx, call, "group");
  if (!t) return;
  auto body = body_with(call, {"hidden"});
  if (!body) return;
  bool hidden = true;
  if (auto it = body->find("hidden"); it != body->end()) {
    if (!it->is_boolean()) return send_error(call.res, bad("field 'hidden' must be true or false"));
    hidden = it->get<bool>();
  }
  if (auto s = ctx.store->library().set_group_hidden(t->lib.name, t->id, hidden, call.audit()); !s) {
    return send_error(call.res, s.error());
  }
  send_json(call.res, 200, {{"group", t->id}, {"hidden", hidden}});
}

void merge(Context& ctx, Call& call) {
  auto t = library_and_id(ctx, call, "group");
  if (!t) return;
  auto body = body_with(call, {"with"});
  if (!body) return;
  const auto it = body->find("with");
  if (it == body->end() || !it->is_number_integer() || it->get<std::int64_t>() <= 0) {
    return send_error(call.res, bad("field 'with' is required: the number of the group to merge in"));
  }
  std::lock_guard lock(group_changes());
  auto merged = merge_groups(ctx.store->library(), t->lib.name, t->id, it->get<std::int64_t>(), {}, call.audit());
  if (!merged) return send_error(call.res, merged.error());
  send_json(call.res, 200, {{"group", *merged}});
}

void remove_face_from_group(Context& ctx, Call& call) {
  auto t = library_and_id(ctx, call, "face");
  if (!t) return;
  std::lock_guard lock(group_changes());
  auto moved = remove_face(ctx.store->library(), t->lib.name, t->id, {}, call.audit());
  if (!moved) return send_error(call.res, moved.error());
  send_json(call.res, 200, {{"face_id", t->id}, {"group", *moved}});
}

void forget(Context& ctx, Call& call) {
  auto t = library_and_id(ctx, call, "group");
  if (!t) return;
  auto audit = with_reason(call);
  if (!audit) return;
  std::lock_guard lock(group_changes());
  auto forgotten = ctx.store->library().forget_group(t->lib.name, t->id, *audit);
  if (!forgotten) return send_error(call.res, forgotten.error());
  send_json(call.res, 200, {{"group", t->id}, {"faces_forgotten", forgotten->size()}});
}

void delete_library(Context& ctx, Call& call) {
  auto lib = visible_library(ctx, call);
  if (!lib) return;
  auto audit = with_reason(call);
  if (!audit) return;
  std::lock_guard lock(group_changes());
  auto erased = ctx.store->library().delete_library(lib->name, *audit);
  if (!erased) return send_error(call.res, erased.error());
  send_json(call.res, 200, {{"deleted_library", lib->name}, {"photos", erased->photos}, {"faces", erased->faces},
                            {"groups", erased->groups}, {"corrections", erased->corrections}});
}

// "Find yourself": the photos whose faces match the probe's largest face. Photo ids
// only: the paths stay on the owner's machine (the CLI prints them).
void find(Context& ctx, Call& call) {
  auto lib = visible_library(ctx, call);
  if (!lib) return;
  auto audit = with_reason(call);
  if (!audit) return;
  const Engine& engine = *ctx.engine.load();
  const std::string point_name = text_param(call.req, "operating_point").value_or("fmr-1e-4");
  auto point = find_operating_point(engine.recognizer_spec(), point_name);
  if (!point) return send_error(call.res, bad(point.error().message));
  auto images = images_from(call.req, "image", false);
  if (!images) return send_error(call.res, images.error());
  // A 1:N search of the library: the key's search budget applies as to a collection's
  // (record_find counts it), and a refusal is audited as a refused collection search is.
  auto budget = admit_search(ctx, call, [&](const std::string& window) {
    if (auto st = ctx.store->library().record_find_refused(lib->name, window, *audit); !st) {
      ctx.log->error("could not audit a refused library find", {{"code", error_code_name(st.error().code)}});
    }
  });
  if (!budget) return;
  auto ticket = admit_inference(ctx, call);
  if (!ticket) return;
  LibraryOptions options;
  options.limits.max_bytes = ctx.options.max_body_bytes;
  auto found = find_person(engine, ctx.store->library(), lib->name, (*images)[0].bytes, point->threshold, options, *audit);
  if (!found) return send_error(call.res, found.error());
  nlohmann::json photos = nlohmann::json::array();
  for (const LibraryPhoto& p : found->photos) photos.push_back({{"photo_id", p.id}, {"faces", p.faces}});
  send_json(call.res, 200, {{"library", lib->name},
                            {"threshold", score_to_json(point->threshold)},
                            {"best", score_to_json(found->best)},
                            {"groups", found->groups},
                            {"face_ids", found->faces},
                            {"photos", photos}});
}

// The face's thumbnail, cut from the owner's photo now (the same function as
// `candor library report`); never cached by the client or a proxy.
void thumbnail(Context& ctx, Call& call) {
  auto t = library_and_id(ctx, call, "face");
  if (!t) return;
  auto ticket = admit_inference(ctx, call);  // a photo decode: bounded like inference
  if (!ticket) return;
  auto jpeg = library_face_thumbnail(ctx.store->library(), t->lib.name, t->id, ThumbnailOptions{});
  if (!jpeg) return send_error(call.res, jpeg.error());
  call.res.status = 200;
  call.res.set_header("Cache-Control", "no-store");
  call.res.set_content(std::string(jpeg->begin(), jpeg->end()), "image/jpeg");
}

}  // namespace

void register_library_routes(Router& router) {
  router.add({"GET", "/v1/libraries", Access::kScoped, kScope}, list_libraries);
  router.add({"DELETE", "/v1/libraries/{lib}", Access::kScoped, kScope}, delete_library);
  router.add({"GET", "/v1/libraries/{lib}/groups", Access::kScoped, kScope}, list_groups);
  router.add({"POST", "/v1/libraries/{lib}/groups/{group}/name", Access::kScoped, kScope}, name_group);
  router.add({"POST", "/v1/libraries/{lib}/groups/{group}/hide", Access::kScoped, kScope}, hide_group);
  router.add({"POST", "/v1/libraries/{lib}/groups/{group}/merge", Access::kScoped, kScope}, merge);
  router.add({"DELETE", "/v1/libraries/{lib}/groups/{group}", Access::kScoped, kScope}, forget);
  router.add({"POST", "/v1/libraries/{lib}/faces/{face}/remove", Access::kScoped, kScope}, remove_face_from_group);
  router.add({"GET", "/v1/libraries/{lib}/faces/{face}/thumbnail", Access::kScoped, kScope}, thumbnail);
  router.add({"POST", "/v1/libraries/{lib}/find", Access::kScoped, kScope, true}, find);
}

}  // namespace candor::server
