// Internal: pieces of the SQLite store shared between its translation units.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "candor/crypto.h"
#include "candor/store.h"
#include "sqlite_db.h"
#include "schema_ddl.h"
#include "store_common.h"

namespace candor::store_detail {

// How this database spells the schema (schema_ddl.h).
const SchemaDialect& sqlite_schema_dialect();

// The newest schema version this build knows.
int latest_schema_version() noexcept;

// Applies pending migrations in order, all in one write transaction, and
// records each in schema_version. Idempotent: a current database is untouched.
// ensures: throws StoreFailure(kStoreError) if the database is newer than this build.
void migrate(Database& db, std::int64_t now_ms);

// For a read-only open: see require_current_schema (schema_ddl.h).
void require_current_schema(Database& db);

// The schema version recorded in the database (0 for a new one).
std::int64_t schema_version(Database& db);

// Resolves the template key of the database at `path` (see StoreOptions),
// recording its key check value in a new database.
std::unique_ptr<TemplateCipher> sqlite_attach_key(Database& db, const std::string& path, const StoreOptions& options);

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path, const StoreOptions& options);

}  // namespace candor::store_detail
