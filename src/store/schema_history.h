// Internal: the SQLite schema as any earlier migration left it, for the upgrade tests
// (tests/store/upgrade_test.cpp builds a store at each earlier version and migrates it).
#pragma once

#include <cstdint>

#include "sqlite_db.h"

namespace candor::store_detail {

// migrate() stopped at `target_version`: applies the pending migrations up to and
// including it, in one write transaction, recording each in schema_version.
// ensures: throws StoreFailure(kStoreError) if the database is newer than this build.
void migrate_up_to(Database& db, int target_version, std::int64_t now_ms);

}  // namespace candor::store_detail
