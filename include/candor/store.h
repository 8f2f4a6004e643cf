// Candor: the system of record.
//
// The Store holds collections, consents, encrypted face templates and the
// hash-chained audit log, and enforces the rules Candor exists for:
//
// - No template without consent: enroll() checks, inside its own write
//   transaction, that the subject holds an active, unexpired consent whose
//   purpose equals the collection's purpose. Otherwise nothing is stored, the
//   call fails with kConsentRequired and the refusal itself is audited.
// - Revocation and erasure delete templates at once, in the same transaction
//   that records them, and return the deleted face ids so the caller can drop
//   them from in-memory indexes.
// - Every change and every search appends an audit entry in the same
//   transaction as the change: after a crash both exist or neither does.
//   Refusals are audited too (in their own transaction, after the refused one
//   is rolled back). See candor/audit.h for the chain and for how erasure
//   scrubs subject names from the log without breaking it.
// - Templates are encrypted at rest (candor/crypto.h) with associated data
//   binding each ciphertext to its face id and collection. Source images are
//   never accepted: only their SHA-256.
// - Retention: retention_run() removes faces older than their collection's
//   retention_days (at most 3 years, the BIPA ceiling) and faces whose subject
//   no longer holds a valid consent, and photo-library faces older than their
//   library's retention_days (candor/library_store.h).
//
// The interface is database-neutral; open_store() picks the implementation
// from the URI: SQLite (embedded, one machine) or PostgreSQL (shared by
// several Candor nodes).
//
// Several nodes (or processes) over one store keep their in-memory indexes in
// step through the change feed: changes_since() lists the faces added and
// removed after a version, wait_for_change() blocks until there may be more.
//
// Thread safety: a Store is safe for concurrent use from many threads. Each
// implementation owns one connection guarded by a mutex, so calls on one
// Store run one at a time (except wait_for_change, which waits on a
// connection of its own and never blocks the other calls).
// - SQLite: several processes may open the same database file: writers are
//   serialised by SQLite's write lock (BEGIN IMMEDIATE, with a busy timeout),
//   readers proceed concurrently under WAL.
// - PostgreSQL: several nodes may open the same database. Every writing
//   transaction first locks the audit chain's head row (SELECT ... FOR
//   UPDATE), so writers on all nodes are serialised as SQLite's are: the
//   chain never forks and the consent check in enroll sees every revocation
//   committed before it. Reads run in a snapshot each (REPEATABLE READ).
//   Search counters are shared, so rate limits hold across nodes. A lost
//   connection makes calls fail with kStoreUnavailable; the Store reconnects
//   by itself on later calls (backoff 100 ms doubling to 5 s), and a call
//   that failed had no effect (except a COMMIT cut off in flight, whose
//   outcome PostgreSQL alone knows: the audit log shows whether it happened).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "candor/audit.h"
#include "candor/models.h"
#include "candor/result.h"

namespace candor {

using FaceId = std::int64_t;  // never reused, even after deletion

class LibraryStore;  // candor/library_store.h

// Who is acting and why; written to every audit entry the operation appends.
struct AuditContext {
  std::string actor;   // required: non-empty, at most kMaxActorBytes (API key name, CLI user)
  std::string reason;  // required for searches and erasures; free text elsewhere; at most kMaxReasonBytes
};

// The audit log is append-only and never pruned, so every text a caller puts in it is
// bounded, and checked before any work or write (a reason is a sentence, not a payload:
// a base64 photo must not fit).
inline constexpr std::size_t kMaxActorBytes = 256;
inline constexpr std::size_t kMaxReasonBytes = 1024;

// The check every store operation makes of its AuditContext, for callers that must make it
// before they spend work (a search checks it before inference).
// ensures: kInvalidArgument naming the field when the actor is empty or over kMaxActorBytes,
//          the reason over kMaxReasonBytes, or (reason_required) the reason empty.
Status check_audit_context(const AuditContext& ctx, bool reason_required);

// Subject identifiers are also path segments of the HTTP routes (/subjects/{s}), so only
// identifiers those routes can address are accepted wherever a subject is created: 1..256
// bytes, no control character, no '/', not "." or "..".
// ensures: kInvalidArgument naming the rule that `subject` breaks.
Status check_subject_id(std::string_view subject);

// Operating points calibrated on an operator's own people (`candor calibrate`, issue 11).
// For the collection they replace the recogniser's shipped points of the same name: LFW's
// impostor distribution does not carry over to every population (README "Operating points").
struct CalibratedPoint {
  OperatingPoint point;     // name and fmr as shipped; threshold and subject_thresholds measured
  std::vector<double> tar;  // the TAR reached at subject_thresholds[k-1], k = 1.. (NaN: no genuine pair)
  // Per k: true when too few impostor scores resolved this FMR (fewer than 3 / fmr, the
  // rule of three) and the threshold is the k = 1 one plus the shipped step from k = 1 to k.
  std::vector<bool> extrapolated;
};

struct CollectionCalibration {
  std::vector<CalibratedPoint> points;
  std::string model_id;  // the recogniser whose templates were scored; another model voids it
  std::int64_t people = 0;
  std::int64_t images = 0;           // images that gave a template
  std::int64_t impostor_scores = 0;  // at k = 1 (every pair of images of different people, both ways)
  std::int64_t genuine_scores = 0;   // at k = 1
  TimePoint calibrated_at{};
};

struct Collection {
  std::int64_t id = 0;
  std::string name;              // [a-z0-9_-]{1,64}, unique
  std::string purpose;           // consents must name exactly this purpose
  int retention_days = 0;        // 1..kMaxRetentionDays
  float match_threshold = 0.0F;  // supplied by the caller (it knows the model)
  bool liveness_required = false;
  TimePoint created_at{};
  std::optional<CollectionCalibration> calibration;  // absent: the recogniser's shipped points
};

// The BIPA ceiling: biometric identifiers go within 3 years of the last interaction.
inline constexpr int kMaxRetentionDays = 1095;

struct NewCollection {
  std::string name;
  std::string purpose;  // non-empty, at most 1024 bytes
  int retention_days = 365;
  float match_threshold = 0.0F;
  bool liveness_required = false;
};

struct Consent {
  std::int64_t id = 0;
  std::string collection;
  std::string subject;
  std::string purpose;
  std::string evidence_sha256;  // SHA-256 of the signed form; the form itself is not kept
  std::string collected_by;
  TimePoint granted_at{};
  std::optional<TimePoint> expires_at;
  std::optional<TimePoint> revoked_at;
};

struct NewConsent {
  std::string collection;
  std::string subject;          // 1..256 bytes, no control characters
  std::string purpose;          // empty: the collection's; another purpose is refused at grant
  std::string evidence_sha256;  // 64 lower-case hex digits (see sha256_hex)
  std::string collected_by;     // non-empty
  std::optional<TimePoint> granted_at;  // default: now
  std::optional<TimePoint> expires_at;  // must be after granted_at
};

struct FaceBox {
  float x = 0, y = 0, w = 0, h = 0;
};

struct NewFace {
  std::vector<float> embedding;  // 1..4096 finite values; same dim and model_id across a collection
  FaceBox box;
  float detector_score = 0;
  std::string quality_level;
  std::string quality_json = "{}";  // must parse as JSON
  std::string image_sha256;         // 64 lower-case hex digits
  std::string model_id;             // non-empty: names the recogniser
};

struct FaceRecord {
  FaceId id = 0;
  std::string collection;
  std::string subject;
  std::vector<float> embedding;  // decrypted; empty where the call says it omits templates
  FaceBox box;
  float detector_score = 0;
  std::string quality_level;
  std::string quality_json;
  std::string image_sha256;
  std::string model_id;
  TimePoint created_at{};
};

struct RetentionReport {
  std::vector<FaceId> removed;        // all faces removed, ascending
  std::int64_t expired_by_age = 0;    // older than the collection's retention_days
  std::int64_t without_consent = 0;   // subject's consent expired, revoked or missing
  std::int64_t counters_pruned = 0;   // old search-rate buckets dropped
  std::int64_t library_faces_expired = 0;  // photo-library faces older than their library's retention_days
};

struct SearchRecord {
  AuditContext context;                // reason required: every search states why
  std::string collection;              // must exist
  std::vector<std::string> subjects;   // subjects returned as matches (for access requests)
  std::string details_json = "{}";     // result face ids, scores, timings; no subject ids, no templates
  std::string result = "ok";           // "ok" or "refused: <code>" for searches refused upstream
  // Whether the search counts against the actor's rate windows (search_count). A search
  // refused before it ran because the budget was spent is recorded but not charged:
  // otherwise each refusal would push the next allowed search a bucket further away.
  bool charged = true;
};

// A subject of a collection as the store holds it: the faces enrolled and the consent.
struct SubjectSummary {
  std::string subject;
  std::int64_t faces = 0;
  bool consent_active = false;           // an active, unexpired consent for the collection's purpose
  std::optional<TimePoint> consent_expires_at;  // of the active consent that lasts longest (none: open-ended)
};

// A credential of the HTTP service, as stored: the store keeps the server's
// API keys so that every node sharing it accepts the same keys. The secret
// itself is never stored, only the server's keyed hash of it (see
// src/server/api_keys.h); the store treats hash and scopes as opaque.
struct ApiKeyRecord {
  std::string name;         // unique
  std::string hash_hex;     // 64 lower-case hex digits
  std::string scopes_json;  // collections, operations, budgets: the server's format
  TimePoint created_at{};
};

// A camera stream a server runs (issue 12, /v1/streams). Its source URL and outputs may
// hold credentials (rtsp://user:password@..., a webhook's signing secret): the store keeps
// them sealed under the template key (TemplateCipher::seal_text, associated data binding
// them to the stream's id) and returns them only through stream_secrets(). What a listing
// shows is the redacted copy the caller gave at creation.
struct NewStream {
  std::string name;             // 1..128 bytes
  std::string source;           // secret: sealed
  std::string source_redacted;  // for display: the caller's copy with the credentials masked
  std::string collection;       // must exist
  std::string purpose;
  std::string reason;           // of every decision's audit entry
  std::string operating_point;  // "" : the collection's own threshold
  std::string outputs_json;     // secret: sealed (webhook URL and secret ...); "{}" when none
  std::string outputs_redacted_json = "{}";  // for display
  std::string created_by;       // the key whose budget its decisions spend ("key:<name>")
  bool running = false;         // the desired state
  // StreamOptions::detect_every and buffer_frames; unset: the library's defaults.
  // Each > 0 when set (the server's route checks the ranges Stream::start accepts).
  std::optional<int> detect_every;
  std::optional<int> buffer_frames;
  // StreamOptions::shutter_s; unset: unknown, no deblurring. When set, > 0 and <= 1.
  std::optional<double> shutter_s;
  // DecisionOptions::strangers_named; unset: the library's default. When set, >= 0 and
  // < 1 (the server's route checks the narrower range candor watch takes); 0: the
  // collection's operating point alone, whatever its size.
  std::optional<double> strangers_named;
};

struct StreamRecord {
  std::string id;               // "st_" + 16 hex digits, chosen by the store
  std::string name;
  std::string source_redacted;
  std::string collection;
  std::string purpose;
  std::string reason;
  std::string operating_point;
  std::string outputs_redacted_json;
  std::string created_by;
  bool running = false;         // desired state: the node holding the lease runs it
  std::string owner_node;       // the node holding the lease; "" when none
  std::optional<TimePoint> lease_expires_at;
  TimePoint created_at{};
  std::optional<int> detect_every;   // as NewStream's
  std::optional<int> buffer_frames;
  std::optional<double> shutter_s;   // as NewStream's
  std::optional<double> strangers_named;  // as NewStream's
};

struct StreamSecrets {
  std::string source;
  std::string outputs_json;
};

struct AuditFilter {
  std::optional<std::string> subject;     // entries whose subject index names her (a search: only if matched)
  std::optional<std::string> collection;
  std::optional<std::string> operation;
  std::optional<std::string> actor;       // e.g. "key:<name>"
  std::optional<TimePoint> since;         // time >= since
  std::optional<TimePoint> until;         // time < until
  std::optional<std::int64_t> after_seq;  // seq > after_seq (paging forwards)
  std::optional<std::int64_t> before_seq; // seq < before_seq (paging backwards)
  bool newest_first = false;              // descending seq: the limit keeps the newest
  std::size_t limit = 1000;               // oldest first within the page unless newest_first
};

struct AuditHead {
  std::int64_t seq = 0;
  std::string hash;  // kAuditGenesisHash for an empty log
};

// One change to the set of templates held. Its version is the audit seq of the
// transaction that made it: every writing transaction advances the audit head
// under a lock (a chain-head row), so versions become visible in commit order
// and a reader that has seen version v has seen every change up to v.
struct FaceChange {
  enum class Kind { kAdded, kRemoved, kCollectionDeleted };
  std::int64_t version = 0;
  Kind kind = Kind::kAdded;
  std::string collection;
  FaceId face_id = 0;  // 0 for kCollectionDeleted
};
// kAdded / kRemoved: one face (enroll; revoke_consent, erase_subject,
// retention_run). kCollectionDeleted: the collection and every face it held
// are gone (delete_collection writes this one change, not one per face).

struct ChangeBatch {
  std::vector<FaceChange> changes;  // ascending version; see changes_since() for the limit
  // Resume from here: the version of the last change returned, or the store's
  // current version when nothing newer is held.
  std::int64_t version = 0;
  // `after` is older than the oldest change the store still keeps (the feed is
  // pruned): the caller must reload everything from load_faces().
  bool truncated = false;
};

enum class Durability {
  kFull,    // fsync at every commit: survives power loss (default)
  kNormal,  // survives process crashes; a power cut may lose the last commits
            // (PostgreSQL: synchronous_commit = off for the Store's session)
};

struct StoreOptions {
  // Template key, highest priority first: key_hex; the CANDOR_KEY environment
  // variable; key_file (SQLite default "<database path>.key"; PostgreSQL has
  // no default and needs one of the three). A key file is created (mode 0600)
  // only for a new database (no key check value recorded yet); an existing
  // database whose key is missing, unreadable or wrong is refused, never re-keyed.
  std::optional<std::string> key_hex;
  std::string key_file;
  bool use_env_key = true;  // tests switch off CANDOR_KEY
  // SQLite: create the file. PostgreSQL: the database itself must exist (it
  // is the DBA's to create); this allows creating the Candor schema in it.
  bool create_if_missing = true;
  // Open without writing anything (`candor store verify`, so checking a backup never changes
  // it): SQLite opens the file read-only (SQLITE_OPEN_READONLY), PostgreSQL runs every
  // transaction READ ONLY. No migration (a store at an older schema is refused with
  // kStoreError naming `candor migrate`), no key file created, no key check value recorded;
  // every mutation fails with kStoreError (the database refuses the write).
  bool read_only = false;
  int busy_timeout_ms = 5000;  // SQLite only
  Durability durability = Durability::kFull;
  // The store's clock (timestamps, consent expiry at enroll). Tests inject one.
  std::function<TimePoint()> clock;
};

// Abstract system of record. Every method returns an Error (never throws) for
// expected failures: kInvalidArgument, kNotFound, kAlreadyExists,
// kConsentRequired, kIntegrityError (a ciphertext does not open), kStoreError
// (the database refused), kStoreUnavailable (PostgreSQL: the server cannot be
// reached now; retry later). PostgreSQL stores text as UTF-8 and refuses
// other bytes with kInvalidArgument (SQLite keeps them as given). Mutating
// methods take an AuditContext and append their audit entry in the same
// transaction; a refused mutation appends a "refused: <code>" entry instead
// and changes nothing else.
class Store {
 public:
  virtual ~Store() = default;

  // -- collections
  // ensures: kAlreadyExists if the name is taken; kInvalidArgument for a bad name/purpose/retention.
  virtual Result<Collection> create_collection(const NewCollection& spec, const AuditContext& ctx) = 0;
  virtual Result<std::vector<Collection>> list_collections() = 0;
  virtual Result<Collection> get_collection(std::string_view name) = 0;
  // Deletes the collection, its faces and its consents.
  // ensures: the ids of the faces deleted.
  virtual Result<std::vector<FaceId>> delete_collection(std::string_view name,
                                                        const AuditContext& ctx) = 0;
  // Replaces the collection's calibration (nullopt: back to the shipped operating points)
  // and its match threshold, in one transaction, audited as "calibrate" with the
  // thresholds, TARs and counts (no person's name: a calibration set is not enrolled).
  // requires: match_threshold finite; every threshold of `calibration` finite, in [-1, 1].
  // ensures: the updated collection; kNotFound if there is none of that name;
  //          kInvalidArgument (nothing written) if a threshold breaks the requirement.
  virtual Result<Collection> set_calibration(std::string_view collection,
                                             const std::optional<CollectionCalibration>& calibration,
                                             float match_threshold, const AuditContext& ctx) = 0;

  // -- consent
  // ensures: the consent as recorded, its purpose the collection's (an empty one is filled
  //          in); kInvalidArgument naming both purposes when consent.purpose is another
  //          (nothing stored, the refusal audited); kNotFound for an unknown collection.
  virtual Result<Consent> grant_consent(const NewConsent& consent, const AuditContext& ctx) = 0;
  // Revokes every active consent of `subject` in `collection` and deletes the
  // subject's faces there, in one transaction.
  // ensures: kNotFound if the subject holds no active consent there; else the deleted face ids.
  virtual Result<std::vector<FaceId>> revoke_consent(std::string_view collection,
                                                     std::string_view subject,
                                                     const AuditContext& ctx) = 0;
  // ensures: consents of `subject` (all subjects if empty) in `collection`, oldest first.
  virtual Result<std::vector<Consent>> list_consents(std::string_view collection,
                                                     std::string_view subject) = 0;
  // The subjects of `collection` that hold faces or an active consent, by name, with
  // their face counts; no template is read or decrypted.
  // ensures: kNotFound for an unknown collection.
  virtual Result<std::vector<SubjectSummary>> list_subjects(std::string_view collection) = 0;
  // The consent check enroll() makes inside its transaction, made up front so that a
  // caller spends no inference on the photos of a subject who has not consented.
  // ensures: ok when `subject` holds an active, unexpired consent for the collection's
  //          purpose now; otherwise kConsentRequired (kNotFound / kInvalidArgument for an
  //          unknown collection or a bad subject), audited exactly as enroll() audits
  //          that refusal ("enroll", "refused: <code>", faces_offered). Nothing is
  //          written when the subject may be enrolled (enroll() checks again at commit).
  virtual Status check_enroll_consent(std::string_view collection, std::string_view subject,
                                      std::size_t faces_offered, const AuditContext& ctx) = 0;

  // -- faces
  // ensures: on success, the new face ids in the order of `faces`, all
  // committed with one audit entry. kConsentRequired if the subject lacks an
  // active, unexpired consent for the collection's purpose at commit time.
  // requires: !faces.empty() (else kInvalidArgument).
  virtual Result<std::vector<FaceId>> enroll(std::string_view collection, std::string_view subject,
                                             const std::vector<NewFace>& faces,
                                             const AuditContext& ctx) = 0;
  // Deletes the subject's faces and consents (in `collection`, or in every
  // collection when it is empty), scrubs the subject's name from the audit
  // index of those collections, and appends one erasure entry that names the
  // subject (the record that the erasure happened).
  // ensures: the deleted face ids (possibly none: erasing nothing is not an error).
  virtual Result<std::vector<FaceId>> erase_subject(std::string_view collection,
                                                    std::string_view subject,
                                                    const AuditContext& ctx) = 0;
  // Everything held about `subject` in every collection (GDPR Art. 15):
  // consents, face metadata (no templates), audit entries naming the subject.
  // Appends an "export" audit entry after collecting, so an export does not
  // list itself.
  // ensures: a JSON object {"subject", "consents":[...], "faces":[...], "audit":[...]}.
  virtual Result<std::string> export_subject(std::string_view subject, const AuditContext& ctx) = 0;
  // Removes faces past retention or without a valid consent as of `now`, and
  // prunes old search-rate buckets. Audited per collection touched.
  virtual Result<RetentionReport> retention_run(TimePoint now, const AuditContext& ctx) = 0;

  // All faces of a collection, decrypted, ascending id: for rebuilding an
  // in-memory index at start-up. Not audited (no new disclosure).
  // ensures: kIntegrityError naming the face id if any template does not decrypt.
  virtual Result<std::vector<FaceRecord>> load_faces(std::string_view collection) = 0;
  // ensures: the faces among `ids` that still exist, ascending id; templates
  // decrypted only if with_embeddings.
  virtual Result<std::vector<FaceRecord>> get_faces(std::span<const FaceId> ids,
                                                    bool with_embeddings) = 0;
  // ensures: the subset of `ids` that still exists and may still be identified, ascending:
  // each face's subject holds an active consent for its collection's purpose that has
  // not expired by the store's clock now. The search path re-checks candidates with it,
  // so a face deleted a moment ago, or whose consent expired a moment ago (before the
  // next retention run deletes it), is never returned, on any node.
  virtual Result<std::vector<FaceId>> existing_faces(std::span<const FaceId> ids) = 0;
  // ensures: the ids of faces whose collection no longer exists, ascending (no template
  // is read). The schema does not rule them out since version 6 (no foreign key on
  // faces.collection_id: the store deletes a collection's faces itself), so
  // `candor store verify` looks for them; no code path of the store makes one.
  virtual Result<std::vector<FaceId>> faces_without_collection() = 0;

  // -- searches
  // Appends a "search" entry and, when search.charged, counts it for the actor's rate
  // windows (a refusal by the rate limit itself is recorded uncharged: it ran nothing,
  // and counting it would let each early retry push the window forward).
  // requires: non-empty actor and reason, existing collection (else kInvalidArgument / kNotFound).
  virtual Status record_search(const SearchRecord& search) = 0;
  // ensures: charged searches recorded for `actor` since `since`, counted in whole
  // buckets: per minute when `since` is within the last 48 hours, per day
  // before that. The bucket holding `since` counts whole.
  virtual Result<std::int64_t> search_count(std::string_view actor, TimePoint since) = 0;

  // -- API keys (audited as "key_create" / "key_delete"; the hash is not logged)
  // ensures: kAlreadyExists for a taken name; kInvalidArgument for an empty name or a bad hash.
  // key.created_at: kept as given; the store's clock when left at the epoch.
  virtual Status put_api_key(const ApiKeyRecord& key, const AuditContext& ctx) = 0;
  // ensures: every key, by name.
  virtual Result<std::vector<ApiKeyRecord>> list_api_keys() = 0;
  // ensures: kNotFound when there is no such key.
  virtual Status delete_api_key(std::string_view name, const AuditContext& ctx) = 0;

  // -- camera streams (issue 12; audited as "stream_create", "stream_start", "stream_stop",
  //    "stream_delete" with the redacted source only: never the URL's credentials)
  // ensures: the new stream; kNotFound for an unknown collection; kInvalidArgument for an
  //          empty or oversized name, source or field, or outputs that are not a JSON object.
  virtual Result<StreamRecord> create_stream(const NewStream& spec, const AuditContext& ctx) = 0;
  // ensures: every stream, oldest first.
  virtual Result<std::vector<StreamRecord>> list_streams() = 0;
  // ensures: kNotFound when there is no such stream.
  virtual Result<StreamRecord> get_stream(std::string_view id) = 0;
  // The sealed fields, opened. Not audited: the caller is the node that runs the stream.
  // ensures: kNotFound; kIntegrityError when they do not open (another key, altered).
  virtual Result<StreamSecrets> stream_secrets(std::string_view id) = 0;
  // Sets the desired state. ensures: the stream as now stored; kNotFound.
  virtual Result<StreamRecord> set_stream_running(std::string_view id, bool running, const AuditContext& ctx) = 0;
  // ensures: kNotFound when there is no such stream.
  virtual Status delete_stream(std::string_view id, const AuditContext& ctx) = 0;
  // The lease that lets one node of several run a stream: taken when the stream should
  // run and its lease is free, expired (lease_expires_at <= now) or already `node`'s,
  // and then held until now + ttl. Not audited (a renewal every few seconds is
  // bookkeeping; the start and stop that decide it are audited).
  // ensures: true when `node` holds the lease after the call; false when another node
  //          holds an unexpired one or the stream should not run; kNotFound.
  virtual Result<bool> claim_stream(std::string_view id, std::string_view node, TimePoint now,
                                    std::chrono::milliseconds ttl) = 0;
  // Gives up `node`'s lease (a node that stops a stream); nothing when it holds none.
  virtual Status release_stream(std::string_view id, std::string_view node) = 0;

  // -- audit
  virtual Result<std::vector<AuditEntry>> audit_list(const AuditFilter& filter) = 0;
  // Recomputes the whole chain. A tampered log is a value (intact == false,
  // issues name the seq and the kind of break); an Error means the database
  // itself could not be read. Reads on a connection of its own, in pages, so a
  // long log does not hold up the store's other calls meanwhile.
  virtual Result<AuditVerification> audit_verify() = 0;
  virtual Result<AuditHead> audit_head() = 0;

  // Moves the write-ahead log into the database file and truncates it
  // (backups, and tests that inspect the file). A no-op where the database
  // manages its own log (PostgreSQL).
  virtual Status checkpoint() = 0;

  // -- change feed (see FaceChange)
  // ensures: changes with version > after, ascending, at most `limit` except
  //          that a version is never split (one transaction's changes come
  //          whole, so a batch may exceed `limit` by the rest of its last
  //          version); truncated (with no changes, version = the current one)
  //          when changes after `after` may have been pruned; limit 0 returns
  //          nothing with version = after. Changes are kept at least 7 days
  //          (pruned by retention_run).
  virtual Result<ChangeBatch> changes_since(std::int64_t after, std::size_t limit) = 0;
  // Blocks until the store may hold changes after version `after`, or until
  // `timeout`. May return early (spuriously); callers re-read changes_since().
  // PostgreSQL waits on LISTEN/NOTIFY; SQLite polls the newest change version
  // (an index lookup) every 25 ms.
  // ensures: kStoreUnavailable when the database cannot be reached.
  // Does not hold the store's lock while waiting: other calls proceed.
  virtual Status wait_for_change(std::int64_t after, std::chrono::milliseconds timeout) = 0;

  // -- health
  // A round trip to the database. A store that lost its connection answers
  // kStoreUnavailable here and from every other call until it has reconnected
  // (with backoff, on later calls); nothing committed is lost and a call that
  // failed had no effect.
  virtual Status ping() = 0;

  // -- photo libraries (candor/library_store.h): the same database, transactions and
  // audit chain; owned by this Store.
  virtual LibraryStore& library() = 0;
};

// Opens (creating if allowed) the store named by `uri`:
//   "PATH" or "sqlite:PATH"   SQLite database file (WAL mode)
//   "postgresql://..."        PostgreSQL (libpq connection URI); the template
//   "postgres://..."          key comes from key_hex or CANDOR_KEY or key_file
//                             (there is no default file beside the database)
// Applies pending schema migrations, then resolves the template key (see StoreOptions).
// ensures: kStoreError (unreadable / newer schema), kIoError, kIntegrityError
// (wrong key), kNotFound (database missing and !create_if_missing, or the key
// of an existing database missing), kStoreUnavailable (the PostgreSQL server
// cannot be reached), each with a message saying what to do.
Result<std::unique_ptr<Store>> open_store(std::string_view uri, const StoreOptions& options);

// -- administration (`candor migrate`, `candor store copy`)

struct SchemaVersions {
  int before = 0;  // 0: the database held no Candor store
  int after = 0;
  int latest = 0;  // the newest version this build knows
};

// Applies pending schema migrations to the database at `uri` (same URI forms
// as open_store) without opening it as a Store, so no template key is needed.
// Idempotent; safe to run from several nodes at once.
// ensures: kStoreError for a schema newer than this build; kStoreUnavailable
// when the server cannot be reached.
Result<SchemaVersions> migrate_store(std::string_view uri);

struct StoreCopyReport {
  std::int64_t collections = 0, consents = 0, faces = 0, audit_entries = 0, subject_salts = 0,
               search_counters = 0, api_keys = 0, changes = 0, streams = 0, libraries = 0, library_faces = 0;
  bool reencrypted = false;  // the destination's key differs, so every template and secret was re-sealed
};

// Copies everything `from` holds into `to`, which must hold nothing yet (no
// collections, keys, salts, counters or audit entries; else kAlreadyExists):
// collections, consents and faces with their ids (templates re-sealed under
// the destination's key when it differs; the associated data binds each to
// its face and collection ids, which are kept), the audit log verbatim with
// its head (so audit verification passes on the destination), subject salts,
// search counters, API keys, the change feed with its version, the streams (their
// sealed sources and outputs re-sealed like templates) and the photo libraries with
// their photos, faces (templates re-sealed), groups and corrections. Id
// sequences continue from the source's, so no id is ever reused. The
// destination is written in one transaction (all or nothing) from one read
// snapshot of the source. Nothing is audited: the copied chain is the record.
// Each side's key is resolved from its options as open_store does; the
// destination is created (and keyed) if allowed. The destination must hold nothing yet:
// no libraries or streams either.
Result<StoreCopyReport> copy_store(std::string_view from_uri, const StoreOptions& from_options,
                                   std::string_view to_uri, const StoreOptions& to_options);

// ensures: true iff `name` matches [a-z0-9_-]{1,64}.
bool is_valid_collection_name(std::string_view name) noexcept;

// The other subjects of `consent`'s collection whose consents (active or not) carry the
// same evidence hash: one signed form recorded for several people is worth a second look
// (a warning, not a refusal: a form may list a family). Reads list_consents().
// ensures: their names, sorted, without consent.subject; the store's errors.
Result<std::vector<std::string>> subjects_sharing_evidence(Store& store, const Consent& consent);

}  // namespace candor
