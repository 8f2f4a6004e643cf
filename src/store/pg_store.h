// Internal: pieces of the PostgreSQL store shared between its translation units.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "candor/store.h"
#include "pg_db.h"
#include "schema_ddl.h"
#include "store_common.h"

namespace candor::store_detail {

// How this database spells the schema (schema_ddl.h).
const SchemaDialect& pg_schema_dialect();

// The newest schema version this build knows.
int pg_latest_schema_version() noexcept;

// The schema version recorded in the database (0 for an empty database).
std::int64_t pg_schema_version(PgConnection& db);

// Applies pending migrations in one transaction under an advisory lock, so
// several nodes starting at once migrate once. Idempotent.
// ensures: throws StoreFailure(kStoreError) if the database is newer than this build.
void pg_migrate(PgConnection& db, std::int64_t now_ms);

// For a read-only open: see require_current_schema (schema_ddl.h).
void pg_require_current_schema(PgConnection& db);

// Resolves the template key (key_hex, CANDOR_KEY or key_file: there is no
// default file), recording its key check value in a new database.
std::unique_ptr<TemplateCipher> pg_attach_key(PgConnection& db, const std::string& label, const StoreOptions& options);

Result<std::unique_ptr<Store>> open_pg_store(const std::string& uri, const StoreOptions& options);

}  // namespace candor::store_detail
