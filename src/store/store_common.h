// Internal: what the SQLite and PostgreSQL stores share, so the two enforce
// the same rules with the same code: input validation, the associated data
// that binds a ciphertext to its row, audit drafts and refusals, change-feed
// kinds, and where the template key comes from (key_source.cpp).
//
// Failures inside an operation throw StoreFailure (an expected Error); each
// store's operation boundary catches it, rolls back and returns the Error.
// Nothing outside src/store sees this header or the exception.
//
// Thread safety: pure functions, except resolve_key/attach_key which touch
// the file system (safe to call concurrently; creation races are resolved by
// O_EXCL).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "candor/crypto.h"
#include "candor/result.h"
#include "candor/store.h"

namespace candor::store_detail {

struct StoreFailure {
  Error error;
};

[[noreturn]] void fail(ErrorCode code, std::string message);

inline constexpr std::int64_t kMsPerMinute = 60'000;
inline constexpr std::int64_t kMsPerDay = 86'400'000;
// search_count switches from minute to day buckets beyond this.
inline constexpr std::int64_t kMinuteBucketHorizonMs = 48 * 3'600'000LL;
inline constexpr std::int64_t kDayBucketHorizonMs = 400 * kMsPerDay;
// The change feed keeps a week: a follower offline longer reloads from load_faces().
inline constexpr std::int64_t kChangeFeedRetentionMs = 7 * kMsPerDay;
inline constexpr std::size_t kMaxEmbeddingDim = 4096;
inline constexpr std::size_t kMaxFacesPerEnroll = 1000;
inline constexpr std::size_t kMaxDetailsBytes = 256 * 1024;
inline constexpr std::size_t kMaxTextBytes = 1024;

// The column lists every row reader of both stores expects (consent_from, face_from,
// audit_from read columns by these positions). The SQL is the same in both dialects.
inline constexpr std::string_view kCollectionColumns =
    "SELECT id, name, purpose, retention_days, match_threshold, liveness_required, created_at, calibration"
    " FROM collections";
inline constexpr std::string_view kFaceColumns =
    "SELECT f.id, k.name, f.subject, f.dim, f.template, f.box_x, f.box_y, f.box_w, f.box_h, f.detector_score,"
    " f.quality_level, f.quality_json, f.image_sha256, f.model_id, f.created_at, k.id"
    " FROM faces f JOIN collections k ON k.id = f.collection_id";
// The faces (alias f) of the subject $1 in every collection, found per collection through
// faces_by_subject (collection_id, subject): schema v6 keeps no index of faces by subject
// alone. Spelled as an IN list of collection ids so that SQLite probes the index once per
// collection (EXPLAIN QUERY PLAN: "SEARCH f USING COVERING INDEX faces_by_subject"); written
// as a join, it scanned every face. Every face has a collection (delete_collection deletes
// its faces), so the list leaves none out.
inline constexpr std::string_view kSubjectsFacesEverywhere = "f.collection_id IN (SELECT id FROM collections) AND f.subject = $1";
inline constexpr std::string_view kAuditColumns =
    "SELECT seq, time, actor, operation, collection, subject_tags, details, reason, result, prev_hash, hash"
    " FROM audit_log";

inline std::int64_t ms(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint from_ms(std::int64_t v) { return TimePoint(std::chrono::milliseconds(v)); }

// Each throws StoreFailure(kInvalidArgument) naming what is wrong.
void require_text(std::string_view value, std::string_view what, std::size_t max_bytes = kMaxTextBytes);
void require_subject(std::string_view subject);
void require_actor(const AuditContext& ctx);
// check_audit_context (candor/store.h), thrown as a StoreFailure.
void require_audit_context(const AuditContext& ctx, bool reason_required);
void require_collection_name(std::string_view name);
void validate_faces(const std::vector<NewFace>& faces);
void validate_api_key(const ApiKeyRecord& key);
void validate_new_collection(const NewCollection& spec);
void validate_new_consent(const NewConsent& consent, TimePoint granted);
void validate_calibration(const std::optional<CollectionCalibration>& calibration, float match_threshold);

// collections.calibration, one format for both stores (NULL: not calibrated). A value
// that does not parse is a damaged store: kStoreError naming the collection.
std::string calibration_to_json(const CollectionCalibration& c);
std::optional<CollectionCalibration> calibration_from_json(std::string_view text, std::string_view collection);
// The "calibrate" audit entry's details: the thresholds, TARs and counts.
std::string calibration_details(std::int64_t collection_id, const std::optional<CollectionCalibration>& c,
                                float match_threshold);
// The purpose a consent is recorded with: the collection's when none is given.
// ensures: throws StoreFailure(kInvalidArgument) naming both purposes when another is given.
std::string consent_purpose(const NewConsent& consent, const Collection& collection);

// Validated compact JSON (what is hashed into the audit chain must be stable).
std::string compact_json(std::string_view text, std::string_view what);

// Associated data for a template: the ciphertext only opens in the row it was
// written for. Binding the subject too means reassigning a row to another
// person (UPDATE faces SET subject=...) makes it undecryptable rather than a
// silent misidentification. Both stores use exactly this, so `candor store
// copy` moves ciphertexts between them unchanged when the key is the same.
std::string template_ad(std::int64_t collection_id, std::string_view collection, FaceId id,
                        std::string_view subject, std::string_view model_id);

// Sealed size of a template of `dim` floats (nonce + ciphertext + tag).
inline std::size_t sealed_size(std::size_t dim) { return 24 + dim * 4 + 16; }

// export_subject's document (GDPR Art. 15), one format for both stores:
// {"subject", "exported_at", "consents", "faces" (metadata, no template), "audit"}.
// Other people named in an audit entry (other matches of a search) are their
// data, not this subject's: they are counted, not named.
std::string subject_export_json(std::string_view subject, TimePoint exported_at,
                                const std::vector<Consent>& consents, const std::vector<FaceRecord>& faces,
                                const std::vector<AuditEntry>& entries);
// The export's audit details: how much was disclosed, never what.
std::string subject_export_details(std::size_t consents, std::size_t faces, std::size_t audit_entries);

std::string refusal_result(ErrorCode code);

// The details of a "key_create" entry: name and scopes, never the hash.
std::string api_key_details(const ApiKeyRecord& key);

// The audit entries of a photo library carry "library:<name>" where a collection's carry its
// name: collection names cannot hold ':', so the two never meet (library_store.h).
inline constexpr std::string_view kLibraryScopePrefix = "library:";

struct AuditDraft {
  std::string operation;
  std::string collection;
  std::vector<std::string> subjects;
  std::string details = "{}";
  std::string result = "ok";
};

// The entry that records a refused operation: the draft as it was before the
// operation ran, with the error code added. Names that failed validation are
// dropped (they may be garbage, or someone's data in the wrong field).
AuditDraft refusal_draft(const AuditDraft& draft, ErrorCode code);

// enroll()'s draft (and check_enroll_consent()'s): a refusal entry says how many faces
// were offered, never what they were.
AuditDraft enroll_draft(std::string_view collection, std::string_view subject, std::size_t faces_offered);
// kConsentRequired's message, the same from enroll() and check_enroll_consent().
std::string no_consent_message(const Collection& c);
AuditContext refusal_context(const AuditContext& ctx);

// Builds the entry to append after `head`: tags from the subjects' salts
// (salt_for is called once per distinct subject, sorted), hash computed.
// ensures: the entry and its sorted, distinct subjects (parallel to subject_tags).
AuditEntry build_audit_entry(const AuditHead& head, TimePoint now, const AuditContext& ctx,
                             const AuditDraft& draft,
                             const std::function<std::string(const std::string&)>& salt_for,
                             std::vector<std::string>& subjects_out);

// Parses the stored subject_tags column; unparseable text still feeds the
// hash (as an impossible tag) so the edit shows at verification.
std::vector<std::string> parse_subject_tags(const std::string& text);

// A change waiting for the audit entry of its transaction (its version).
struct PendingChange {
  FaceChange::Kind kind = FaceChange::Kind::kAdded;
  std::string collection;
  FaceId face_id = 0;
};
std::string_view change_kind_name(FaceChange::Kind kind) noexcept;
// ensures: throws StoreFailure(kIntegrityError) for an unknown name.
FaceChange::Kind parse_change_kind(std::string_view name);

// ---- the template key (key_source.cpp)

struct ResolvedKey {
  SecretKey key;
  std::string source;  // "StoreOptions::key_hex", "CANDOR_KEY", or the key file path
};

// Finds the template key (see StoreOptions) for the database `db_label`.
// default_key_file: the file used when options.key_file is empty (SQLite:
// "<path>.key"); empty means there is no default and a key must be given.
// may_create: the database is new (no key check value recorded), so a missing
// key file may be created. Otherwise a missing key is a refusal.
// ensures: throws StoreFailure with a message that says what to do.
ResolvedKey resolve_key(const StoreOptions& options, const std::string& db_label,
                        const std::string& default_key_file, bool may_create, std::int64_t templates_held);

// A key file's key, nullopt when the file does not exist; throws StoreFailure for a
// file that is unreadable, malformed, or open to group or others.
std::optional<SecretKey> read_key(const std::string& path);
// Writes `key` to a new file at `path` (mode 0600), fsyncs it and its directory.
// ensures: false (nothing written) when `path` exists; throws StoreFailure(kIoError).
bool write_new_key_file(const std::string& path, const SecretKey& key);
void fsync_parent_dir(const std::string& path);

// How a store reads and records its key check value.
struct KeyCheckAccess {
  std::function<std::optional<std::string>()> read_kcv;
  std::function<std::int64_t()> count_templates;
  // Records `kcv` unless a value is already there (another node keyed the database first).
  std::function<void(const std::string& kcv)> insert_kcv_if_absent;
  // meta 'key_rotation' (see reencrypt_templates), for a wrong key's message.
  std::function<std::optional<std::string>()> read_rotation_note;
};

// The reads of KeyCheckAccess over a connection `db` (SQLite's Database or
// PostgreSQL's PgConnection: the SQL is the same); the caller adds the insert.
template <typename Db>
KeyCheckAccess key_check_reads(Db& db) {
  KeyCheckAccess access;
  access.read_kcv = [&db] { return db.query_text("SELECT value FROM meta WHERE key = 'key_check'"); };
  access.count_templates = [&db] { return db.query_int("SELECT COUNT(*) FROM faces").value_or(0); };
  access.read_rotation_note = [&db] { return db.query_text("SELECT value FROM meta WHERE key = 'key_rotation'"); };
  return access;
}

// The note a key rotation records (meta 'key_rotation'), and what a wrong key's message
// makes of it (key_rotation.cpp).
struct RotationNote {
  std::string previous_key_check;  // of the key the rotation retired
  std::string pending_key_file;    // where the new key was written first
  std::string key_file;            // where it is installed (the same file, or the old key file)
};
std::string rotation_note_json(const RotationNote& note, std::int64_t rotated_at_ms);
// ensures: what to tell the operator whose key (check value `offered`) is not the
//          database's: "" when the note says nothing about it.
std::string rotation_hint(const std::optional<std::string>& note_json, const std::string& offered,
                          const std::string& db_label);

// Resolves the key and checks it against the database's key check value,
// recording one for a new database. The rules: a database holding templates
// but no key check value was tampered with; a wrong key is refused; a key
// file is created only for a database with no key check value yet.
// ensures: the cipher, or throws StoreFailure (kIntegrityError / kNotFound / kIoError / kInvalidArgument).
std::unique_ptr<TemplateCipher> attach_key(const StoreOptions& options, const std::string& db_label,
                                           const std::string& default_key_file, const KeyCheckAccess& access);

}  // namespace candor::store_detail
