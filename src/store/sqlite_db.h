// Internal: a thin RAII layer over the SQLite C API for the SQLite store.
//
// Failures inside an operation throw StoreFailure (an expected Error, e.g.
// kStoreError or kConsentRequired); the operation boundary in SqliteStore
// catches it, rolls back and returns the Error. Nothing outside src/store
// sees this header or the exception.
//
// Thread safety: none; SqliteStore serialises all use under its mutex.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "candor/result.h"
#include "store_common.h"

namespace candor::store_detail {

class Database;

// A cached prepared statement in use. Resets and clears its bindings when it
// goes out of scope so the cache can hand it out again.
class Statement {
 public:
  Statement(Database& db, sqlite3_stmt* stmt) : db_(&db), stmt_(stmt) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based, as in SQLite.
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, std::optional<std::int64_t> value);
  Statement& bind_blob(int index, std::span<const std::uint8_t> blob);
  Statement& bind_zeroblob(int index, int size);
  Statement& bind_null(int index);

  // ensures: true when a row is available, false when done; throws StoreFailure on error.
  bool step();
  // Runs a statement that returns no rows.
  void run();

  std::int64_t column_int(int col) const;
  double column_double(int col) const;
  std::string column_text(int col) const;
  std::vector<std::uint8_t> column_blob(int col) const;
  bool column_is_null(int col) const;
  std::optional<std::int64_t> column_optional_int(int col) const;
  int column_count() const { return sqlite3_column_count(stmt_); }
  int column_type(int col) const { return sqlite3_column_type(stmt_, col); }
  // True for a statement that writes nothing (a SELECT).
  bool readonly() const { return sqlite3_stmt_readonly(stmt_) != 0; }

 private:
  Database* db_;
  sqlite3_stmt* stmt_;
};

class Database {
 public:
  // ensures: an open connection, or throws StoreFailure (kStoreError / kIoError).
  // read_only: SQLITE_OPEN_READONLY (create is then ignored).
  Database(const std::string& path, bool create, bool read_only = false);
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Executes one or more statements without results.
  void exec(std::string_view sql);
  // A cached statement for `sql` (prepared on first use).
  Statement prepare(std::string_view sql);
  // Runs `sql` (one row, one column) and returns the integer, or nullopt when no row / NULL.
  std::optional<std::int64_t> query_int(std::string_view sql);
  std::optional<std::string> query_text(std::string_view sql);

  std::int64_t last_insert_rowid() const;
  int changes() const;
  sqlite3* handle() const { return db_; }

  // ensures: throws StoreFailure describing SQLite result `rc` in `what`.
  [[noreturn]] void raise(int rc, std::string_view what) const;

 private:
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

// BEGIN IMMEDIATE (write) or BEGIN (read snapshot) ... COMMIT; rolls back on
// destruction unless committed. Taking the write lock at BEGIN, not at the
// first write, means two writers never deadlock upgrading read locks, and the
// busy timeout covers the wait.
class Transaction {
 public:
  enum class Kind { kWrite, kRead };
  explicit Transaction(Database& db, Kind kind = Kind::kWrite);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Database& db_;
  bool open_ = true;
};

}  // namespace candor::store_detail
