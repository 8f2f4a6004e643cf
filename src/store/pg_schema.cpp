// Versioned schema migrations for the PostgreSQL store.
//
// Same rules as schema.cpp: append a migration to change the schema, never
// edit one that has shipped. The versions mirror the SQLite store's (v1: the
// system of record, v2: change feed and API keys), and so do the tables and
// columns, so `candor store copy` moves rows between the two column for
// column. Timestamps are BIGINT milliseconds since the Unix epoch (UTC).
#include <array>
#include <string>

#include "pg_store.h"

namespace candor::store_detail {
namespace {

struct Migration {
  int version;
  const char* sql;
};

// BIGSERIAL ids come from sequences, which never hand out a value twice (not
// even after a rollback), so face and collection ids are never reused: the
// same guarantee as SQLite's AUTOINCREMENT, for the same reasons.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE collections (
  id                BIGSERIAL PRIMARY KEY,
  name              TEXT NOT NULL UNIQUE,
  purpose           TEXT NOT NULL,
  retention_days    INTEGER NOT NULL CHECK (retention_days > 0),
  match_threshold   DOUBLE PRECISION NOT NULL,
  liveness_required BOOLEAN NOT NULL,
  created_at        BIGINT NOT NULL
);

CREATE TABLE consents (
  id              BIGSERIAL PRIMARY KEY,
  collection_id   BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  subject         TEXT NOT NULL,
  purpose         TEXT NOT NULL,
  evidence_sha256 TEXT NOT NULL,
  collected_by    TEXT NOT NULL,
  granted_at      BIGINT NOT NULL,
  expires_at      BIGINT,
  revoked_at      BIGINT
);
CREATE INDEX consents_by_subject ON consents(collection_id, subject);
CREATE INDEX consents_by_subject_only ON consents(subject);

CREATE TABLE faces (
  id             BIGSERIAL PRIMARY KEY,
  collection_id  BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  subject        TEXT NOT NULL,
  dim            INTEGER NOT NULL,
  template       BYTEA NOT NULL,
  box_x          DOUBLE PRECISION NOT NULL,
  box_y          DOUBLE PRECISION NOT NULL,
  box_w          DOUBLE PRECISION NOT NULL,
  box_h          DOUBLE PRECISION NOT NULL,
  detector_score DOUBLE PRECISION NOT NULL,
  quality_level  TEXT NOT NULL,
  quality_json   TEXT NOT NULL,
  image_sha256   TEXT NOT NULL,
  model_id       TEXT NOT NULL,
  created_at     BIGINT NOT NULL
);
CREATE INDEX faces_by_subject ON faces(collection_id, subject);
CREATE INDEX faces_by_subject_only ON faces(subject);
CREATE INDEX faces_by_age ON faces(collection_id, created_at);

CREATE TABLE audit_log (
  seq          BIGINT PRIMARY KEY,
  time         BIGINT NOT NULL,
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
CREATE INDEX audit_by_hash ON audit_log(hash);

-- A speed bump, not a security boundary (see schema.cpp): the hash chain is
-- what detects someone who disables the triggers first.
CREATE FUNCTION candor_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION candor_audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION candor_audit_log_append_only();

-- The last appended entry. Locked (SELECT ... FOR UPDATE) first thing in
-- every writing transaction, so writers on every node are serialised, the
-- chain never forks, and seqs are assigned in commit order.
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  BIGINT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_subjects (
  seq        BIGINT NOT NULL,
  tag        TEXT NOT NULL,
  subject    TEXT NOT NULL,
  collection TEXT NOT NULL,
  PRIMARY KEY (seq, tag)
);
CREATE INDEX audit_subjects_by_subject ON audit_subjects(subject, collection);

CREATE TABLE subject_salts (
  subject TEXT PRIMARY KEY,
  salt    TEXT NOT NULL
);

CREATE TABLE search_counters (
  actor        TEXT NOT NULL,
  unit         TEXT NOT NULL CHECK (unit IN ('m', 'd')),
  bucket_start BIGINT NOT NULL,
  count        BIGINT NOT NULL,
  PRIMARY KEY (actor, unit, bucket_start)
);
)sql";

constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE face_changes (
  id         BIGSERIAL PRIMARY KEY,
  version    BIGINT NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('added', 'removed', 'collection_deleted')),
  collection TEXT NOT NULL,
  face_id    BIGINT NOT NULL,
  time       BIGINT NOT NULL
);
CREATE INDEX face_changes_by_version ON face_changes(version);
CREATE INDEX face_changes_by_time ON face_changes(time);

CREATE TABLE api_keys (
  name        TEXT PRIMARY KEY,
  hash_hex    TEXT NOT NULL,
  scopes_json TEXT NOT NULL,
  created_at  BIGINT NOT NULL
);
)sql";

// v3: operating points calibrated on an operator's own people (`candor calibrate`),
// as JSON (store_common.h calibration_to_json); NULL: the recogniser's shipped points.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE collections ADD COLUMN calibration TEXT;
)sql";

constexpr std::array kMigrations = {
    Migration{1, kSchemaV1},
    Migration{2, kSchemaV2},
    Migration{3, kSchemaV3},
};

// Any constant will do, as long as it is Candor's: pg_advisory_xact_lock
// keys are shared by every application on the database.
constexpr std::int64_t kMigrationLockKey = 0x43616e646f72'01;  // "Candor" 01

}  // namespace

int pg_latest_schema_version() noexcept { return kMigrations.back().version; }

std::int64_t pg_schema_version(PgConnection& db) {
  const std::optional<std::int64_t> exists = db.query_int("SELECT 1 FROM pg_tables WHERE tablename = 'schema_version'"
                                                          " AND schemaname = current_schema()");
  if (!exists) return 0;
  return db.query_int("SELECT MAX(version) FROM schema_version").value_or(0);
}

void pg_migrate(PgConnection& db, std::int64_t now_ms) {
  PgTransaction txn(db);
  // Two nodes starting at once: the second waits here until the first has
  // committed, then finds nothing left to do. The lock ends with the transaction.
  db.exec("SELECT pg_advisory_xact_lock($1)", PgParams().add(kMigrationLockKey));
  db.exec_script(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
  const std::int64_t current = db.query_int("SELECT MAX(version) FROM schema_version").value_or(0);
  if (current > pg_latest_schema_version()) {
    fail(ErrorCode::kStoreError,
         "database schema version " + std::to_string(current) +
             " is newer than this build of Candor understands (" + std::to_string(pg_latest_schema_version()) +
             "); upgrade Candor");
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= current) continue;
    db.exec_script(m.sql);
    db.exec("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            PgParams().add(m.version).add(now_ms));
  }
  // Storage tuning, not schema (the versions above keep their meaning; a
  // database made before this line gets it at its next open): templates are
  // ciphertext, incompressible, and a 512-d one (2,088 bytes) takes a face row
  // past PostgreSQL's 2 kB TOAST threshold, so each insert tried pglz in vain
  // and wrote two chunks to the TOAST table and its index. Rows up to a page
  // now stay inline (templates up to ~1,900 dims): an INSERT of 32 faces
  // executed in 0.45-0.66 ms instead of 1.5-1.9 ms (EXPLAIN ANALYZE, 5 runs each
  // on the shared 2-core machine; the toasted one spiked to 17 ms once).
  if (!db.query_int("SELECT 1 FROM pg_class WHERE oid = 'faces'::regclass"
                    " AND 'toast_tuple_target=8160' = ANY(COALESCE(reloptions, '{}'))")) {
    db.exec_script("ALTER TABLE faces SET (toast_tuple_target = 8160)");
  }
  txn.commit();
}

}  // namespace candor::store_detail
