// Candor: the JSON shapes of its results, shared by the CLI and the server so that
// both speak the same language.
#pragma once

#include <nlohmann/json.hpp>

#include "candor/engine.h"
#include "candor/result.h"
#include "candor/store.h"

namespace candor {

// {"box": {x,y,width,height}, "score", "landmarks": {"left_eye": [x,y], ...},
//  "quality": {...}, "liveness": {...}, "embedding": [...] (only when with_embedding)}
nlohmann::json face_to_json(const Face& face, bool with_embedding = false, bool with_landmarks68 = false);

// {"error": {"code": "image_corrupt", "message": "..."}}
nlohmann::json error_to_json(const Error& error);

std::string_view quality_level_name(QualityLevel level) noexcept;

// The system of record's entities as the CLI prints them and the API returns them.
// Times are ISO 8601 UTC with milliseconds.
nlohmann::json collection_to_json(const Collection& collection);
nlohmann::json consent_to_json(const Consent& consent);
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
