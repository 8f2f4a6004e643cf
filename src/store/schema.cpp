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
      // SQLite cannot drop a constraint: the table is rebuilt without it, the way
      // https://www.sqlite.org/lang_altertable.html ("Making Other Kinds Of Table Schema
      // Changes") describes: a new table, the rows copied, the old one dropped, the new one
      // renamed, the indexes made again. faces is no table's parent, so no foreign key
      // check stands in the way with foreign_keys on. Face ids are never reused (AUTOINCREMENT):
      // the old table's high-water mark in sqlite_sequence moves to the new table before the
      // old one is dropped (DROP TABLE deletes its row there; RENAME renames it), else the
      // ids of faces deleted last would be handed out again.
      "CREATE TABLE faces_v6 (\n"
      "  id             INTEGER PRIMARY KEY AUTOINCREMENT,\n"
      "  collection_id  INTEGER NOT NULL,\n"
      "  subject        TEXT NOT NULL,\n"
      "  dim            INTEGER NOT NULL,\n"
      "  template       BLOB NOT NULL,\n"
      "  box_x          REAL NOT NULL,\n"
      "  box_y          REAL NOT NULL,\n"
      "  box_w          REAL NOT NULL,\n"
      "  box_h          REAL NOT NULL,\n"
      "  detector_score REAL NOT NULL,\n"
      "  quality_level  TEXT NOT NULL,\n"
      "  quality_json   TEXT NOT NULL,\n"
      "  image_sha256   TEXT NOT NULL,\n"
      "  model_id       TEXT NOT NULL,\n"
      "  created_at     INTEGER NOT NULL\n"
      ");\n"
      "INSERT INTO faces_v6 (id, collection_id, subject, dim, template, box_x, box_y, box_w, box_h, detector_score,\n"
      "                      quality_level, quality_json, image_sha256, model_id, created_at)\n"
      "  SELECT id, collection_id, subject, dim, template, box_x, box_y, box_w, box_h, detector_score,\n"
      "         quality_level, quality_json, image_sha256, model_id, created_at FROM faces;\n"
      "DELETE FROM sqlite_sequence WHERE name = 'faces_v6';\n"
      "UPDATE sqlite_sequence SET name = 'faces_v6' WHERE name = 'faces';\n"
      "DROP TABLE faces;\n"
      "ALTER TABLE faces_v6 RENAME TO faces;\n"
      "CREATE INDEX faces_by_subject ON faces(collection_id, subject);\n"
      "CREATE INDEX faces_by_age ON faces(collection_id, created_at);\n",
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
