// Schema migrations of the SQLite store: the migrations of schema_ddl.cpp in
// SQLite's words, applied in one write transaction.
#include <string>

#include "schema_history.h"
#include "sqlite_store.h"

namespace candor::store_detail {

const SchemaDialect& sqlite_schema_dialect() {
  static const SchemaDialect d{
      "INTEGER PRIMARY KEY AUTOINCREMENT",
      "INTEGER",
      "REAL",
      "BLOB",
      "INTEGER NOT NULL CHECK (liveness_required IN (0, 1))",
      "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log\n"
      "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;\n"
      "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log\n"
      "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;\n",
      "",
  };
  return d;
}

namespace {

const std::vector<SchemaMigration>& migrations() {
  static const std::vector<SchemaMigration> m = schema_migrations(sqlite_schema_dialect());
  return m;
}

}  // namespace

int latest_schema_version() noexcept { return migrations().back().version; }

std::int64_t schema_version(Database& db) {
  if (!db.query_int("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")) return 0;
  return db.query_int("SELECT MAX(version) FROM schema_version").value_or(0);
}

void migrate(Database& db, std::int64_t now_ms) { migrate_up_to(db, latest_schema_version(), now_ms); }

void require_current_schema(Database& db) { require_current_schema(schema_version(db), migrations()); }

void migrate_up_to(Database& db, int target_version, std::int64_t now_ms) {
  Transaction txn(db);
  db.exec(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  // The full list decides what is "newer than this build"; the apply step stops at the target.
  apply_migrations(db.query_int("SELECT MAX(version) FROM schema_version").value_or(0), migrations(),
                   [&db, now_ms, target_version](const SchemaMigration& m) {
                     if (m.version > target_version) return;
                     db.exec(m.sql);
                     db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)")
                         .bind(1, m.version)
                         .bind(2, now_ms)
                         .run();
                   });
  txn.commit();
}

}  // namespace candor::store_detail
