// Schema migrations of the PostgreSQL store: the migrations of schema_ddl.cpp
// (the same versions, tables and columns as SQLite's, so `candor store copy`
// moves rows between the two column for column) in PostgreSQL's words,
// applied in one transaction under an advisory lock.
#include <string>

#include "pg_store.h"

namespace candor::store_detail {

const SchemaDialect& pg_schema_dialect() {
  static const SchemaDialect d{
      "BIGSERIAL PRIMARY KEY",
      "BIGINT",
      "DOUBLE PRECISION",
      "BYTEA",
      "BOOLEAN NOT NULL",
      "CREATE FUNCTION candor_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
      "BEGIN\n"
      "  RAISE EXCEPTION 'audit_log is append-only';\n"
      "END\n"
      "$$;\n"
      "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log\n"
      "  FOR EACH ROW EXECUTE FUNCTION candor_audit_log_append_only();\n"
      "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log\n"
      "  FOR EACH STATEMENT EXECUTE FUNCTION candor_audit_log_append_only();\n",
      // Audit verification looks entries up by hash.
      "CREATE INDEX audit_by_hash ON audit_log(hash);\n",
      // The name PostgreSQL gave the constraint v1 declared inline (table_column_fkey).
      "ALTER TABLE faces DROP CONSTRAINT faces_collection_id_fkey;\n",
  };
  return d;
}

namespace {

const std::vector<SchemaMigration>& migrations() {
  static const std::vector<SchemaMigration> m = schema_migrations(pg_schema_dialect());
  return m;
}

// Any constant will do, as long as it is Candor's: pg_advisory_xact_lock
// keys are shared by every application on the database.
constexpr std::int64_t kMigrationLockKey = 0x43616e646f72'01;  // "Candor" 01

}  // namespace

int pg_latest_schema_version() noexcept { return migrations().back().version; }

std::int64_t pg_schema_version(PgConnection& db) {
  const std::optional<std::int64_t> exists = db.query_int("SELECT 1 FROM pg_tables WHERE tablename = 'schema_version'"
                                                          " AND schemaname = current_schema()");
  if (!exists) return 0;
  return db.query_int("SELECT MAX(version) FROM schema_version").value_or(0);
}

void pg_require_current_schema(PgConnection& db) { require_current_schema(pg_schema_version(db), migrations()); }

void pg_migrate(PgConnection& db, std::int64_t now_ms) {
  PgTransaction txn(db);
  // Two nodes starting at once: the second waits here until the first has
  // committed, then finds nothing left to do. The lock ends with the transaction.
  db.exec("SELECT pg_advisory_xact_lock($1)", PgParams().add(kMigrationLockKey));
  db.exec_script(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
  apply_migrations(db.query_int("SELECT MAX(version) FROM schema_version").value_or(0), migrations(),
                   [&db, now_ms](const SchemaMigration& m) {
                     db.exec_script(m.sql);
                     db.exec("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                             PgParams().add(m.version).add(now_ms));
                   });
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
