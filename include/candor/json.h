// Candor: the JSON shapes of its results, shared by the CLI and the server so that
// both speak the same language.
#pragma once

#include <nlohmann/json.hpp>

#include "candor/engine.h"
#include "candor/result.h"
#include "candor/store.h"

namespace candor {

// {"box": {x,y,width,height}, "score", "landmarks": {"left_eye": [x,y], ...},
//  "landmarks68": [[x,y] x 68] (only when with_landmarks68 and the face was landmarked;
//  iBUG 300-W order), "quality": {...}, "liveness": {...}, "embedding": [...] (only when
//  with_embedding)}
nlohmann::json face_to_json(const Face& face, bool with_embedding = false, bool with_landmarks68 = false);

// A similarity or a threshold as every Candor output shows it: rounded to 4 decimals, so
// that a float threshold (0.4128f) is not printed as its double expansion
// (0.41280001401901245) beside similarities that are rounded. The one place that rounds.
double score_to_json(double score) noexcept;

// {"name", "fmr", "threshold"}: an operating point of the recogniser.
nlohmann::json operating_point_to_json(const OperatingPoint& point);

// The answer to a 1:1 comparison, one shape for the CLI and the server: similarity, match,
// operating_point, faces {a, b} (face_to_json) and faces_in_image {a, b} (how many faces
// each image held; the largest was compared).
nlohmann::json verification_to_json(const Verification& v, const Face& a, const Face& b, std::size_t faces_in_a,
                                    std::size_t faces_in_b);

// {"error": {"code": "image_corrupt", "message": "..."}}
nlohmann::json error_to_json(const Error& error);

std::string_view quality_level_name(QualityLevel level) noexcept;

// The system of record's entities as the CLI prints them and the API returns them.
// Times are ISO 8601 UTC with milliseconds.
nlohmann::json collection_to_json(const Collection& collection);
nlohmann::json consent_to_json(const Consent& consent);
// A consent just granted: consent_to_json plus, when other subjects of the collection hold
// consents with the same evidence hash (subjects_sharing_evidence), "evidence_shared_with"
// (their names) and "warnings" (one sentence saying so), as the API answers and the CLI prints.
nlohmann::json granted_consent_to_json(const Consent& consent, const std::vector<std::string>& shared_with);
nlohmann::json audit_entry_to_json(const AuditEntry& entry);
struct SearchResult;  // candor/collections.h
struct VerifyResult;
// The answer to a 1:N search, one shape for the CLI and the server: collection, threshold
// (for a subject enrolled from one photo), faces_in_image, faces [{probe (face_to_json),
// matches [{subject, similarity, threshold, match, faces, face_id, face_similarity}]}],
// and the largest face's probe and matches again at the top level; scores rounded to 4
// decimals like every score Candor prints.
nlohmann::json search_result_to_json(const std::string& collection, const SearchResult& result);
// A 1:1 verification against a subject: {collection, subject, similarity, threshold, match,
// faces, face_id, probe}.
nlohmann::json verify_result_to_json(const std::string& collection, const VerifyResult& result);  // no templates or images: entries hold none

}  // namespace candor
