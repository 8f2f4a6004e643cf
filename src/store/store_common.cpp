// Rules both stores enforce alike (see store_common.h).
#include "store_common.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace candor::store_detail {

using json = nlohmann::json;

void fail(ErrorCode code, std::string message) { throw StoreFailure{Error{code, std::move(message)}}; }

void require_text(std::string_view value, std::string_view what, std::size_t max_bytes) {
  if (value.empty()) fail(ErrorCode::kInvalidArgument, std::string(what) + " must not be empty");
  if (value.size() > max_bytes) {
    fail(ErrorCode::kInvalidArgument, std::string(what) + " is longer than " + std::to_string(max_bytes) + " bytes");
  }
}

namespace {
bool has_control_char(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}
}  // namespace

void require_subject(std::string_view subject) {
  if (auto ok = check_subject_id(subject); !ok) throw StoreFailure{ok.error()};
}

void require_actor(const AuditContext& ctx) { require_text(ctx.actor, "actor", kMaxActorBytes); }

void require_audit_context(const AuditContext& ctx, bool reason_required) {
  if (auto ok = check_audit_context(ctx, reason_required); !ok) throw StoreFailure{ok.error()};
}

void require_collection_name(std::string_view name) {
  if (!is_valid_collection_name(name)) {
    fail(ErrorCode::kInvalidArgument, "collection name must match [a-z0-9_-]{1,64}");
  }
}

void validate_faces(const std::vector<NewFace>& faces) {
  if (faces.empty()) fail(ErrorCode::kInvalidArgument, "enroll needs at least one face");
  if (faces.size() > kMaxFacesPerEnroll) {
    fail(ErrorCode::kInvalidArgument, "at most " + std::to_string(kMaxFacesPerEnroll) + " faces per enroll");
  }
  for (const NewFace& f : faces) {
    if (f.embedding.empty() || f.embedding.size() > kMaxEmbeddingDim) {
      fail(ErrorCode::kInvalidArgument, "an embedding must have 1.." + std::to_string(kMaxEmbeddingDim) + " values");
    }
    if (!std::all_of(f.embedding.begin(), f.embedding.end(), [](float v) { return std::isfinite(v); })) {
      fail(ErrorCode::kInvalidArgument, "an embedding holds a non-finite value");
    }
    if (f.embedding.size() != faces.front().embedding.size() || f.model_id != faces.front().model_id) {
      fail(ErrorCode::kInvalidArgument, "all faces of one enroll must come from the same model");
    }
    require_text(f.model_id, "model_id", 256);
    if (f.quality_level.size() > 64) fail(ErrorCode::kInvalidArgument, "quality_level is too long");
    if (!is_sha256_hex(f.image_sha256)) {
      fail(ErrorCode::kInvalidArgument, "image_sha256 must be 64 lower-case hex digits (the image itself is never stored)");
    }
    if (!std::isfinite(f.detector_score) || !std::isfinite(f.box.x) || !std::isfinite(f.box.y) ||
        !std::isfinite(f.box.w) || !std::isfinite(f.box.h)) {
      fail(ErrorCode::kInvalidArgument, "box and detector_score must be finite");
    }
  }
}

void validate_api_key(const ApiKeyRecord& key) {
  require_text(key.name, "key name", 256);
  if (has_control_char(key.name)) fail(ErrorCode::kInvalidArgument, "key name contains a control character");
  if (!is_sha256_hex(key.hash_hex)) fail(ErrorCode::kInvalidArgument, "key hash must be 64 lower-case hex digits");
  if (key.scopes_json.size() > kMaxDetailsBytes) fail(ErrorCode::kInvalidArgument, "key scopes are too large");
}

void validate_new_collection(const NewCollection& spec) {
  require_collection_name(spec.name);
  require_text(spec.purpose, "purpose");
  if (spec.retention_days < 1 || spec.retention_days > kMaxRetentionDays) {
    fail(ErrorCode::kInvalidArgument,
         "retention_days must be 1.." + std::to_string(kMaxRetentionDays) + " (3 years, the BIPA ceiling)");
  }
  if (!std::isfinite(spec.match_threshold)) fail(ErrorCode::kInvalidArgument, "match_threshold must be finite");
}

void validate_new_consent(const NewConsent& in, TimePoint granted) {
  require_subject(in.subject);
  if (!in.purpose.empty()) require_text(in.purpose, "purpose");  // empty: the collection's (consent_purpose)
  require_text(in.collected_by, "collected_by", 256);
  if (!is_sha256_hex(in.evidence_sha256)) {
    fail(ErrorCode::kInvalidArgument, "evidence_sha256 must be 64 lower-case hex digits (the SHA-256 of the evidence)");
  }
  if (in.expires_at && *in.expires_at <= granted) {
    fail(ErrorCode::kInvalidArgument, "expires_at must be after granted_at");
  }
}

std::string consent_purpose(const NewConsent& in, const Collection& c) {
  if (in.purpose.empty()) return c.purpose;
  // A consent names what the person agreed to; one for another purpose never allows an
  // enrollment here (enroll() compares), so recording it would only look valid (issue 17).
  if (in.purpose != c.purpose) {
    fail(ErrorCode::kInvalidArgument, "the consent's purpose '" + in.purpose + "' is not the purpose of collection '" +
                                          c.name + "' ('" + c.purpose + "'): a consent must name the collection's purpose");
  }
  return in.purpose;
}

std::string compact_json(std::string_view text, std::string_view what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(ErrorCode::kInvalidArgument, std::string(what) + " is not valid JSON");
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (out.size() > kMaxDetailsBytes) fail(ErrorCode::kInvalidArgument, std::string(what) + " is too large");
  return out;
}

std::string template_ad(std::int64_t collection_id, std::string_view collection, FaceId id,
                        std::string_view subject, std::string_view model_id) {
  std::string ad = "candor-face-v1";
  // Length-prefixed parts, so no two different rows share associated data.
  const auto part = [&ad](std::string_view p) {
    ad += '\x1f';
    ad += std::to_string(p.size());
    ad += ':';
    ad += p;
  };
  part(std::to_string(collection_id));
  part(collection);
  part(std::to_string(id));
  part(subject);
  part(model_id);
  return ad;
}

std::string refusal_result(ErrorCode code) { return "refused: " + std::string(error_code_name(code)); }

std::string api_key_details(const ApiKeyRecord& key) {
  json scopes = json::parse(key.scopes_json, nullptr, false);
  if (scopes.is_discarded()) scopes = key.scopes_json;
  return json{{"name", key.name}, {"scopes", scopes}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

AuditDraft refusal_draft(const AuditDraft& draft, ErrorCode code) {
  AuditDraft refusal = draft;
  refusal.result = refusal_result(code);
  json details = json::parse(draft.details, nullptr, false);
  if (!details.is_object()) details = json::object();
  details["error"] = error_code_name(code);
  refusal.details = details.dump(-1, ' ', false, json::error_handler_t::replace);
  // A library's entries name it "library:<name>" (store_library.cpp): kept when the name is valid.
  std::string_view scope = refusal.collection;
  if (scope.starts_with(kLibraryScopePrefix)) scope.remove_prefix(kLibraryScopePrefix.size());
  if (!is_valid_collection_name(scope)) refusal.collection.clear();
  std::erase_if(refusal.subjects,
                [](const std::string& s) { return s.empty() || s.size() > 256 || has_control_char(s); });
  return refusal;
}

AuditDraft enroll_draft(std::string_view collection, std::string_view subject, std::size_t faces_offered) {
  return AuditDraft{"enroll", std::string(collection), {std::string(subject)},
                    json{{"faces_offered", faces_offered}}.dump(-1, ' ', false, json::error_handler_t::replace), "ok"};
}

std::string no_consent_message(const Collection& c) {
  return "the subject holds no active, unexpired consent for the purpose of collection '" + c.name + "' (" +
         c.purpose + ")";
}

AuditContext refusal_context(const AuditContext& ctx) {
  AuditContext who = ctx;
  if (who.actor.empty()) who.actor = "(none)";
  if (who.actor.size() > kMaxActorBytes) who.actor.resize(kMaxActorBytes);
  // An over-long reason is what was refused: its length is recorded, not its text (it
  // may be anything, a base64 photo included, and the log is never pruned).
  if (who.reason.size() > kMaxReasonBytes) {
    who.reason = "(a reason of " + std::to_string(ctx.reason.size()) + " bytes, over the " +
                 std::to_string(kMaxReasonBytes) + "-byte limit, not recorded)";
  }
  return who;
}

AuditEntry build_audit_entry(const AuditHead& head, TimePoint now, const AuditContext& ctx,
                             const AuditDraft& draft,
                             const std::function<std::string(const std::string&)>& salt_for,
                             std::vector<std::string>& subjects_out) {
  // The last guard before the append-only log: whatever path built the entry, no field
  // is written over its limit (the callers' own checks name the field to the user).
  require_audit_context(ctx, false);
  if (draft.details.size() > kMaxDetailsBytes) fail(ErrorCode::kInvalidArgument, "audit details are too large");
  if (draft.operation.size() > 64 || draft.collection.size() > 64 || draft.result.size() > 128) {
    fail(ErrorCode::kInvalidArgument, "audit operation, collection or result is too long");
  }
  AuditEntry e;
  e.seq = head.seq + 1;
  e.time = now;
  e.actor = ctx.actor;
  e.operation = draft.operation;
  e.collection = draft.collection;
  subjects_out = draft.subjects;
  std::sort(subjects_out.begin(), subjects_out.end());
  subjects_out.erase(std::unique(subjects_out.begin(), subjects_out.end()), subjects_out.end());
  for (const std::string& s : subjects_out) e.subject_tags.push_back(audit_subject_tag(salt_for(s), s));
  e.details = draft.details;
  e.reason = ctx.reason;
  e.result = draft.result;
  e.prev_hash = head.hash;
  e.hash = audit_entry_hash(e);
  return e;
}

std::vector<std::string> parse_subject_tags(const std::string& text) {
  std::vector<std::string> out;
  const json tags = json::parse(text, nullptr, false);
  if (tags.is_array()) {
    for (const json& t : tags) {
      if (t.is_string()) out.push_back(t.get<std::string>());
    }
  } else {
    out.push_back(text);
  }
  return out;
}

std::string_view change_kind_name(FaceChange::Kind kind) noexcept {
  switch (kind) {
    case FaceChange::Kind::kAdded: return "added";
    case FaceChange::Kind::kRemoved: return "removed";
    case FaceChange::Kind::kCollectionDeleted: return "collection_deleted";
  }
  return "added";
}

FaceChange::Kind parse_change_kind(std::string_view name) {
  if (name == "added") return FaceChange::Kind::kAdded;
  if (name == "removed") return FaceChange::Kind::kRemoved;
  if (name == "collection_deleted") return FaceChange::Kind::kCollectionDeleted;
  fail(ErrorCode::kIntegrityError, "unknown change kind '" + std::string(name) + "' in the change feed");
}

std::string subject_export_json(std::string_view subject, TimePoint exported_at,
                                const std::vector<Consent>& consents, const std::vector<FaceRecord>& faces,
                                const std::vector<AuditEntry>& entries) {
  const auto time_or_null = [](const std::optional<TimePoint>& t) { return t ? json(format_time(*t)) : json(nullptr); };
  json out{{"subject", subject}, {"exported_at", format_time(exported_at)}};
  json consent_list = json::array();
  for (const Consent& c : consents) {
    consent_list.push_back(json{{"id", c.id}, {"collection", c.collection}, {"purpose", c.purpose},
                                {"evidence_sha256", c.evidence_sha256}, {"collected_by", c.collected_by},
                                {"granted_at", format_time(c.granted_at)}, {"expires_at", time_or_null(c.expires_at)},
                                {"revoked_at", time_or_null(c.revoked_at)}});
  }
  json face_list = json::array();
  for (const FaceRecord& f : faces) {
    face_list.push_back(json{{"id", f.id}, {"collection", f.collection},
                             {"box", {f.box.x, f.box.y, f.box.w, f.box.h}},
                             {"detector_score", f.detector_score}, {"quality_level", f.quality_level},
                             {"quality", json::parse(f.quality_json, nullptr, false)},
                             {"image_sha256", f.image_sha256}, {"model_id", f.model_id},
                             {"created_at", format_time(f.created_at)},
                             {"template", "held encrypted; not exported"}});
  }
  json entry_list = json::array();
  for (const AuditEntry& e : entries) {
    entry_list.push_back(json{{"seq", e.seq}, {"time", format_time(e.time)}, {"actor", e.actor},
                              {"operation", e.operation}, {"collection", e.collection},
                              {"other_subjects", e.subject_tags.size() - 1},
                              {"details", json::parse(e.details, nullptr, false)},
                              {"reason", e.reason}, {"result", e.result}, {"hash", e.hash}});
  }
  out["consents"] = std::move(consent_list);
  out["faces"] = std::move(face_list);
  out["audit"] = std::move(entry_list);
  return out.dump(2, ' ', false, json::error_handler_t::replace);
}

std::string subject_export_details(std::size_t consents, std::size_t faces, std::size_t audit_entries) {
  return json{{"consents", consents}, {"faces", faces}, {"audit_entries", audit_entries}}.dump();
}

}  // namespace candor::store_detail

namespace candor {

Status check_audit_context(const AuditContext& ctx, bool reason_required) {
  if (ctx.actor.empty()) return Error{ErrorCode::kInvalidArgument, "actor must not be empty"};
  if (ctx.actor.size() > kMaxActorBytes) {
    return Error{ErrorCode::kInvalidArgument, "actor is longer than " + std::to_string(kMaxActorBytes) + " bytes"};
  }
  if (reason_required && ctx.reason.empty()) {
    return Error{ErrorCode::kInvalidArgument, "a reason is required (every search and erasure states why)"};
  }
  if (ctx.reason.size() > kMaxReasonBytes) {
    return Error{ErrorCode::kInvalidArgument, "the reason is " + std::to_string(ctx.reason.size()) +
                                                  " bytes; at most " + std::to_string(kMaxReasonBytes) + " are kept"};
  }
  return ok_status();
}

Status check_subject_id(std::string_view subject) {
  if (subject.empty()) return Error{ErrorCode::kInvalidArgument, "subject must not be empty"};
  if (subject.size() > 256) return Error{ErrorCode::kInvalidArgument, "subject is longer than 256 bytes"};
  if (store_detail::has_control_char(subject)) {
    return Error{ErrorCode::kInvalidArgument, "subject contains a control character"};
  }
  if (subject.find('/') != std::string_view::npos || subject == "." || subject == "..") {
    return Error{ErrorCode::kInvalidArgument,
                 "subject may not contain '/' or be '.' or '..': it must be addressable as /subjects/{subject}"};
  }
  return ok_status();
}

}  // namespace candor

namespace candor::store_detail {

void validate_calibration(const std::optional<CollectionCalibration>& calibration, float match_threshold) {
  if (!std::isfinite(match_threshold)) fail(ErrorCode::kInvalidArgument, "match_threshold must be finite");
  if (!calibration) return;
  const auto check = [](float t, const std::string& name) {
    if (!std::isfinite(t) || t < -1.0F || t > 1.0F) {
      fail(ErrorCode::kInvalidArgument, "calibrated threshold of " + name + " must be a cosine in [-1, 1]");
    }
  };
  for (const CalibratedPoint& p : calibration->points) {
    require_text(p.point.name, "operating point name", 64);
    check(p.point.threshold, p.point.name);
    for (float t : p.point.subject_thresholds) check(t, p.point.name);
  }
}

namespace {

json calibration_json(const CollectionCalibration& c) {
  json points = json::array();
  for (const CalibratedPoint& p : c.points) {
    json tar = json::array();
    for (double t : p.tar) tar.push_back(std::isfinite(t) ? json(t) : json(nullptr));  // JSON has no NaN
    points.push_back({{"name", p.point.name},
                      {"fmr", p.point.fmr},
                      {"threshold", p.point.threshold},
                      {"subject_thresholds", p.point.subject_thresholds},
                      {"tar", std::move(tar)},
                      {"extrapolated", p.extrapolated}});
  }
  return {{"points", std::move(points)},     {"model_id", c.model_id},
          {"people", c.people},              {"images", c.images},
          {"impostor_scores", c.impostor_scores}, {"genuine_scores", c.genuine_scores},
          {"calibrated_at", ms(c.calibrated_at)}};
}

}  // namespace

std::string calibration_to_json(const CollectionCalibration& c) {
  return calibration_json(c).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<CollectionCalibration> calibration_from_json(std::string_view text, std::string_view collection) {
  if (text.empty()) return std::nullopt;
  try {
    const json j = json::parse(text);
    CollectionCalibration c;
    for (const json& p : j.at("points")) {
      CalibratedPoint point;
      point.point.name = p.at("name").get<std::string>();
      point.point.fmr = p.at("fmr").get<double>();
      point.point.threshold = p.at("threshold").get<float>();
      point.point.subject_thresholds = p.at("subject_thresholds").get<std::vector<float>>();
      for (const json& t : p.at("tar")) point.tar.push_back(t.is_null() ? std::nan("") : t.get<double>());
      point.extrapolated = p.at("extrapolated").get<std::vector<bool>>();
      c.points.push_back(std::move(point));
    }
    c.model_id = j.at("model_id").get<std::string>();
    c.people = j.at("people").get<std::int64_t>();
    c.images = j.at("images").get<std::int64_t>();
    c.impostor_scores = j.at("impostor_scores").get<std::int64_t>();
    c.genuine_scores = j.at("genuine_scores").get<std::int64_t>();
    c.calibrated_at = from_ms(j.at("calibrated_at").get<std::int64_t>());
    return c;
  } catch (const json::exception& e) {
    fail(ErrorCode::kStoreError, "the calibration of collection '" + std::string(collection) + "' is damaged: " + e.what());
  }
}

std::string calibration_details(std::int64_t collection_id, const std::optional<CollectionCalibration>& c,
                                float match_threshold) {
  json j = {{"collection_id", collection_id}, {"match_threshold", match_threshold}};
  if (c) {
    j["calibration"] = calibration_json(*c);
  } else {
    j["calibration"] = nullptr;  // back to the shipped operating points
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace candor::store_detail
