// Versioned schema migrations for the SQLite store.
//
// Append a migration to kMigrations to change the schema; never edit one that
// has shipped, because databases in the field have already applied it.
#include <array>
#include <string>

#include "schema_history.h"
#include "sqlite_store.h"

namespace candor::store_detail {
namespace {

struct Migration {
  int version;
  const char* sql;
};

// Timestamps are INTEGER milliseconds since the Unix epoch (UTC).
// AUTOINCREMENT on faces and collections: ids are never reused, so a face id
// an index still holds after a deletion can never name someone else's face,
// and a recreated collection never shares associated data with its
// predecessor's ciphertexts.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE collections (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  name              TEXT NOT NULL UNIQUE,
  purpose           TEXT NOT NULL,
  retention_days    INTEGER NOT NULL CHECK (retention_days > 0),
  match_threshold   REAL NOT NULL,
  liveness_required INTEGER NOT NULL CHECK (liveness_required IN (0, 1)),
  created_at        INTEGER NOT NULL
);

CREATE TABLE consents (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  collection_id   INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  subject         TEXT NOT NULL,
  purpose         TEXT NOT NULL,
  evidence_sha256 TEXT NOT NULL,
  collected_by    TEXT NOT NULL,
  granted_at      INTEGER NOT NULL,
  expires_at      INTEGER,
  revoked_at      INTEGER
);
CREATE INDEX consents_by_subject ON consents(collection_id, subject);
CREATE INDEX consents_by_subject_only ON consents(subject);

CREATE TABLE faces (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  collection_id  INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  subject        TEXT NOT NULL,
  dim            INTEGER NOT NULL,
  template       BLOB NOT NULL,
  box_x          REAL NOT NULL,
  box_y          REAL NOT NULL,
  box_w          REAL NOT NULL,
  box_h          REAL NOT NULL,
  detector_score REAL NOT NULL,
  quality_level  TEXT NOT NULL,
  quality_json   TEXT NOT NULL,
  image_sha256   TEXT NOT NULL,
  model_id       TEXT NOT NULL,
  created_at     INTEGER NOT NULL
);
CREATE INDEX faces_by_subject ON faces(collection_id, subject);
CREATE INDEX faces_by_subject_only ON faces(subject);
CREATE INDEX faces_by_age ON faces(collection_id, created_at);

CREATE TABLE audit_log (
  seq          INTEGER PRIMARY KEY,
  time         INTEGER NOT NULL,
  actor        TEXT NOT NULL,
  operation    TEXT NOT NULL,
  collection   TEXT NOT NULL,
  subject_tags TEXT NOT NULL,
  details      TEXT NOT NULL,
  reason       TEXT NOT NULL,
  result       TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit_log(time);
CREATE INDEX audit_by_collection ON audit_log(collection, seq);

-- A speed bump, not a security boundary: it stops the application (or a
-- careless operator) from rewriting history; the hash chain is what detects
-- someone who drops the triggers first.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- The last appended entry. Read and advanced inside every writing
-- transaction, so appends are serialised and a deleted tail is detectable.
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  INTEGER NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Unhashed index from entries to subject names; erasure deletes from it.
CREATE TABLE audit_subjects (
  seq        INTEGER NOT NULL,
  tag        TEXT NOT NULL,
  subject    TEXT NOT NULL,
  collection TEXT NOT NULL,
  PRIMARY KEY (seq, tag)
);
CREATE INDEX audit_subjects_by_subject ON audit_subjects(subject, collection);

-- Per-subject salt for audit tags; deleting it makes old tags unlinkable.
CREATE TABLE subject_salts (
  subject TEXT PRIMARY KEY,
  salt    TEXT NOT NULL
);

-- Search counts per actor in minute ('m') and day ('d') buckets.
CREATE TABLE search_counters (
  actor        TEXT NOT NULL,
  unit         TEXT NOT NULL CHECK (unit IN ('m', 'd')),
  bucket_start INTEGER NOT NULL,
  count        INTEGER NOT NULL,
  PRIMARY KEY (actor, unit, bucket_start)
);
)sql";

// v2: the change feed and the HTTP service's API keys.
// face_changes.version is the audit seq of the writing transaction; id orders
// the changes within one version. time (ms) is when the change was written,
// for pruning. meta 'feed_pruned_through' records the highest version pruned,
// so changes_since() can tell a caller it missed changes.
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE face_changes (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  version    INTEGER NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('added', 'removed', 'collection_deleted')),
  collection TEXT NOT NULL,
  face_id    INTEGER NOT NULL,
  time       INTEGER NOT NULL
);
CREATE INDEX face_changes_by_version ON face_changes(version);
CREATE INDEX face_changes_by_time ON face_changes(time);

CREATE TABLE api_keys (
  name        TEXT PRIMARY KEY,
  hash_hex    TEXT NOT NULL,
  scopes_json TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
)sql";

constexpr std::array kMigrations = {
    Migration{1, kSchemaV1},
    Migration{2, kSchemaV2},
};

}  // namespace

int latest_schema_version() noexcept { return kMigrations.back().version; }

std::int64_t schema_version(Database& db) {
  if (!db.query_int("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")) return 0;
  return db.query_int("SELECT MAX(version) FROM schema_version").value_or(0);
}

void migrate(Database& db, std::int64_t now_ms) { migrate_up_to(db, latest_schema_version(), now_ms); }

void migrate_up_to(Database& db, int target_version, std::int64_t now_ms) {
  Transaction txn(db);
  db.exec(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  const std::int64_t current = db.query_int("SELECT MAX(version) FROM schema_version").value_or(0);
  if (current > latest_schema_version()) {
    fail(ErrorCode::kStoreError,
         "database schema version " + std::to_string(current) +
             " is newer than this build of Candor understands (" +
             std::to_string(latest_schema_version()) + "); upgrade Candor");
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= current || m.version > target_version) continue;
    db.exec(m.sql);
    Statement st = db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)");
    st.bind(1, m.version).bind(2, now_ms).run();
  }
  txn.commit();
}

}  // namespace candor::store_detail
