// Internal: the schema's migrations, written once for both databases.
//
// The tables, columns, constraints and indexes are the same on SQLite and
// PostgreSQL (so `candor store copy` moves rows column for column); what
// differs is spelled by a SchemaDialect: type names, how an id column never
// reuses a value, and how audit_log refuses edits.
//
// Append a migration to change the schema; never edit one that has shipped,
// because databases in the field have already applied it (the text a dialect
// produces for a shipped migration must not change either).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace candor::store_detail {

struct SchemaDialect {
  std::string_view id;      // an id column whose values are never reused
  std::string_view bigint;  // timestamps (ms), ids, seqs, counts
  std::string_view real;    // double precision
  std::string_view blob;    // bytes
  std::string_view flag;    // collections.liveness_required: type and constraints
  std::string_view audit_log_guards;   // statements that make audit_log append-only
  std::string_view audit_log_indexes;  // indexes beyond the common ones (may be empty)
  std::string_view drop_faces_collection_fk;  // v6: faces without its foreign key on collection_id
};

struct SchemaMigration {
  int version;
  std::string sql;
};

// Every migration, ascending, spelled for `dialect`.
// A store opened read-only cannot migrate: the check apply_migrations makes (newer than
// this build), and a refusal naming `candor migrate` when a migration is pending.
// ensures: throws StoreFailure(kStoreError) unless `current` is the newest of `migrations`.
void require_current_schema(std::int64_t current, const std::vector<SchemaMigration>& migrations);

std::vector<SchemaMigration> schema_migrations(const SchemaDialect& dialect);

// Applies, in order, the migrations newer than `current` (the version the
// database records), each through `apply` (which runs its SQL and records its
// version); the caller holds the transaction.
// ensures: throws StoreFailure(kStoreError) naming both versions when the
//          database is newer than this build.
void apply_migrations(std::int64_t current, const std::vector<SchemaMigration>& migrations,
                      const std::function<void(const SchemaMigration&)>& apply);

}  // namespace candor::store_detail
