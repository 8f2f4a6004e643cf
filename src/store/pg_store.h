// Internal: pieces of the PostgreSQL store shared between its translation units.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "candor/store.h"
#include "pg_db.h"
#include "schema_ddl.h"
#include "store_common.h"
#include "store_driver.h"

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

// One column of a multi-row insert as one binary array parameter (the PostgreSQL
// driver's defer_insert): its SQL type ("bigint[]", ...) and its bytes.
struct PgArrayColumn {
  std::string_view sql_type;
  std::string encoded;
};

// Column `col` of `rows` in the binary format of PostgreSQL's array_recv
// (src/backend/utils/adt/arrayfuncs.c: dimensions, has-NULL flag, element type
// OID, then per dimension its length and lower bound; then per element its byte
// length, -1 for NULL, and its bytes as int8send, float8send, boolsend, textsend,
// byteasend write them: integers and floats big-endian).
// requires: every row has more than `col` values.
// ensures: nullopt when the element type cannot be told (every value NULL, or
//          values of two types) or is an id list.
std::optional<PgArrayColumn> pg_array_column(const std::vector<Params>& rows, std::size_t col);

Result<std::unique_ptr<Store>> open_pg_store(const std::string& uri, const StoreOptions& options);

}  // namespace candor::store_detail
