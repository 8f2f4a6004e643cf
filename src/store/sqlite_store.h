// Internal: pieces of the SQLite store shared between its translation units.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "candor/crypto.h"
#include "candor/store.h"
#include "sqlite_db.h"

namespace candor::store_detail {

// The newest schema version this build knows.
int latest_schema_version() noexcept;

// Applies pending migrations in order, all in one write transaction, and
// records each in schema_version. Idempotent: a current database is untouched.
// ensures: throws StoreFailure(kStoreError) if the database is newer than this build.
void migrate(Database& db, std::int64_t now_ms);

struct ResolvedKey {
  SecretKey key;
  std::string source;  // "StoreOptions::key_hex", "CANDOR_KEY", or the key file path
};

// Finds the template key (see StoreOptions) for the database at db_path.
// may_create: the database is new (no key check value recorded), so a missing
// key file may be created. Otherwise a missing key is a refusal.
// ensures: throws StoreFailure with a message that says what to do.
ResolvedKey resolve_key(const StoreOptions& options, const std::string& db_path, bool may_create,
                        std::int64_t templates_held);

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path, const StoreOptions& options);

}  // namespace candor::store_detail
