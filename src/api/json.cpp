#include "candor/json.h"

#include "candor/collections.h"

#include <cmath>

namespace candor {
namespace {

// Three decimals: sub-pixel precision that survives a round trip, without float noise.
double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

nlohmann::json point(const cv::Point2f& p) { return nlohmann::json::array({round3(p.x), round3(p.y)}); }

}  // namespace

double score_to_json(double score) noexcept { return std::round(score * 10000.0) / 10000.0; }

nlohmann::json operating_point_to_json(const OperatingPoint& point) {
  return {{"name", point.name}, {"fmr", point.fmr}, {"threshold", score_to_json(point.threshold)}};
}

nlohmann::json verification_to_json(const Verification& v, const Face& a, const Face& b, std::size_t faces_in_a,
                                    std::size_t faces_in_b) {
  return {{"similarity", score_to_json(v.similarity)},
          {"match", v.match},
          {"operating_point", operating_point_to_json(v.operating_point)},
          {"faces", {{"a", face_to_json(a)}, {"b", face_to_json(b)}}},
          {"faces_in_image", {{"a", faces_in_a}, {"b", faces_in_b}}}};
}

std::string_view quality_level_name(QualityLevel level) noexcept {
  switch (level) {
    case QualityLevel::kLow: return "low";
    case QualityLevel::kMedium: return "medium";
    case QualityLevel::kHigh: return "high";
  }
  return "low";
}

nlohmann::json face_to_json(const Face& face, bool with_embedding, bool with_landmarks68) {
  nlohmann::json j;
  j["box"] = {{"x", round3(face.box.x)}, {"y", round3(face.box.y)}, {"width", round3(face.box.width)},
              {"height", round3(face.box.height)}};
  j["score"] = round3(face.score);
  if (!face.landmarks68.empty()) {
    j["landmarks"] = {{"left_eye", point(face.landmarks[kLeftEye])},     {"right_eye", point(face.landmarks[kRightEye])},
                      {"nose_tip", point(face.landmarks[kNoseTip])},     {"mouth_left", point(face.landmarks[kMouthLeft])},
                      {"mouth_right", point(face.landmarks[kMouthRight])}};
    if (with_landmarks68) {
      auto pts = nlohmann::json::array();
      for (const auto& p : face.landmarks68) pts.push_back(point(p));
      j["landmarks68"] = std::move(pts);
    }
  }
  if (face.quality) {
    const FaceQuality& q = *face.quality;
    nlohmann::json jq = {{"level", quality_level_name(q.level)},
                         {"face_size_px", round3(q.face_size_px)},
                         {"sharpness", round3(q.sharpness)},
                         {"brightness", round3(q.brightness)},
                         {"dark_clipped", round3(q.dark_clipped)},
                         {"bright_clipped", round3(q.bright_clipped)}};
    if (q.pose) jq["pose"] = {{"yaw", round3(q.pose->yaw)}, {"pitch", round3(q.pose->pitch)}, {"roll", round3(q.pose->roll)}};
    if (q.left_eye_open) jq["left_eye_open"] = *q.left_eye_open;
    if (q.right_eye_open) jq["right_eye_open"] = *q.right_eye_open;
    if (q.left_eye_open_probability) jq["left_eye_open_probability"] = round3(*q.left_eye_open_probability);
    if (q.right_eye_open_probability) jq["right_eye_open_probability"] = round3(*q.right_eye_open_probability);
    if (!q.limiting_factor.empty()) jq["limiting_factor"] = q.limiting_factor;
    j["quality"] = std::move(jq);
  }
  if (face.liveness) {
    j["liveness"] = {{"score", round3(face.liveness->score)}, {"live", face.liveness->live},
                     {"threshold", round3(face.liveness->threshold)}};
  }
  if (with_embedding && !face.embedding.empty()) j["embedding"] = face.embedding;
  return j;
}

nlohmann::json collection_to_json(const Collection& c) {
  return {{"name", c.name},
          {"purpose", c.purpose},
          {"retention_days", c.retention_days},
          {"match_threshold", score_to_json(c.match_threshold)},
          {"liveness_required", c.liveness_required},
          {"created_at", format_time(c.created_at)}};
}

nlohmann::json consent_to_json(const Consent& c) {
  nlohmann::json j = {{"collection", c.collection},     {"subject", c.subject},
                      {"purpose", c.purpose},           {"evidence_sha256", c.evidence_sha256},
                      {"collected_by", c.collected_by}, {"granted_at", format_time(c.granted_at)}};
  j["expires_at"] = c.expires_at ? nlohmann::json(format_time(*c.expires_at)) : nlohmann::json(nullptr);
  j["revoked_at"] = c.revoked_at ? nlohmann::json(format_time(*c.revoked_at)) : nlohmann::json(nullptr);
  return j;
}

nlohmann::json granted_consent_to_json(const Consent& c, const std::vector<std::string>& shared_with) {
  nlohmann::json j = consent_to_json(c);
  if (shared_with.empty()) return j;
  std::string names;
  for (const std::string& s : shared_with) names += (names.empty() ? "" : ", ") + s;
  j["evidence_shared_with"] = shared_with;
  j["warnings"] = {"the same evidence file (SHA-256) is already recorded for " + std::to_string(shared_with.size()) +
                   (shared_with.size() == 1 ? " other subject" : " other subjects") + " of this collection (" + names +
                   "): check that this is the right form"};
  return j;
}

nlohmann::json audit_entry_to_json(const AuditEntry& e) {
  return {{"seq", e.seq},
          {"time", format_time(e.time)},
          {"actor", e.actor},
          {"operation", e.operation},
          {"collection", e.collection},
          {"subjects", e.subjects},
          {"reason", e.reason},
          {"result", e.result},
          {"details", nlohmann::json::parse(e.details.empty() ? "{}" : e.details, nullptr, false)},
          {"hash", e.hash}};
}

nlohmann::json error_to_json(const Error& error) {
  return {{"error", {{"code", error_code_name(error.code)}, {"message", error.message}}}};
}

namespace {
nlohmann::json matches_to_json(const std::vector<SubjectMatch>& matches) {
  nlohmann::json out = nlohmann::json::array();
  for (const SubjectMatch& m : matches) {
    out.push_back({{"subject", m.subject},
                   {"similarity", score_to_json(m.similarity)},
                   {"threshold", score_to_json(m.threshold)},
                   {"match", m.match},
                   {"faces", m.faces},
                   {"face_id", m.face_id},
                   {"face_similarity", score_to_json(m.face_similarity)}});
  }
  return out;
}
}  // namespace

nlohmann::json search_result_to_json(const std::string& collection, const SearchResult& result) {
  nlohmann::json faces = nlohmann::json::array();
  for (const FaceSearch& f : result.faces) faces.push_back({{"probe", face_to_json(f.probe)}, {"matches", matches_to_json(f.matches)}});
  nlohmann::json out = {{"collection", collection},
                        {"threshold", score_to_json(result.threshold)},
                        {"faces_in_image", result.faces_in_image},
                        {"faces", std::move(faces)}};
  // The largest face's, at the top level too: one face is the common case.
  out["probe"] = out["faces"][0]["probe"];
  out["matches"] = out["faces"][0]["matches"];
  return out;
}

nlohmann::json verify_result_to_json(const std::string& collection, const VerifyResult& result) {
  return {{"collection", collection},
          {"subject", result.subject},
          {"similarity", score_to_json(result.similarity)},
          {"threshold", score_to_json(result.threshold)},
          {"match", result.match},
          {"faces", result.faces},
          {"face_id", result.face_id},
          {"probe", face_to_json(result.probe)}};
}

}  // namespace candor
