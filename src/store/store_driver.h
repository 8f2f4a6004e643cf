// Internal: what the store core (store_core.cpp) needs from a database, and
// nothing more. Every rule of the Store (consent inside the enrolling
// transaction, revocation and erasure, the audit append and its chain head,
// retention, counters, the change feed, export, keys) is written once in the
// core over this interface; a backend is a driver that says how to talk to its
// database (sqlite_driver.cpp, pg_driver.cpp).
//
// What a driver holds, because it really differs between databases:
// - statements: SQL with $1, $2 ... placeholders (the SQLite driver reads them
//   as ?1, ?2 ...), typed parameters, materialised rows, affected counts;
// - when statements travel: queue() returns a Pending whose rows are fetched
//   at the next flush. SQLite runs each statement at once (it is in-process);
//   PostgreSQL sends everything queued in one pipeline, so a transaction's
//   writes and its COMMIT cost one round trip (libpq pipeline mode);
// - how writers serialise: begin_write() takes the database's write lock
//   (SQLite BEGIN IMMEDIATE; PostgreSQL BEGIN and the audit head row FOR
//   UPDATE) and reads the audit chain head under it;
// - ids handed out before insert (reserve_ids), an id-list predicate;
// - connection and reconnection, a second connection for long reads
//   (open_reader), and how the change feed wakes its readers (notify_changes,
//   ChangeWaiter: PostgreSQL LISTEN/NOTIFY, SQLite polling).
//
// SQL the core writes is the common dialect of both: ON CONFLICT upserts,
// RETURNING, CAST(x AS BIGINT), CASE instead of boolean aggregates.
//
// Failures throw StoreFailure (store_common.h), as everywhere in src/store.
//
// Thread safety: none. The core serialises use of a driver under its mutex;
// a ChangeWaiter and a reader from open_reader() are used apart from it, each
// by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "candor/crypto.h"
#include "candor/store.h"
#include "store_common.h"

namespace candor::store_detail {

// A list of ids bound as one parameter (see Driver::ids_predicate).
struct IdList {
  std::vector<std::int64_t> ids;
};
using Bytes = std::vector<std::uint8_t>;
// A parameter: NULL (monostate) or a typed value.
using SqlValue = std::variant<std::monostate, std::int64_t, double, bool, std::string, Bytes, IdList>;

// Statement parameters, $1 first.
class Params {
 public:
  Params& add(std::int64_t v) { return push(v); }
  Params& add(int v) { return push(static_cast<std::int64_t>(v)); }
  Params& add(std::size_t v) { return push(static_cast<std::int64_t>(v)); }
  Params& add(double v) { return push(v); }
  Params& add(bool v) { return push(v); }
  Params& add(std::string_view v) { return push(std::string(v)); }
  Params& add(const char* v) { return push(std::string(v)); }
  Params& add(const std::string& v) { return push(v); }
  Params& add(std::optional<std::int64_t> v) { return v ? push(*v) : push(std::monostate{}); }
  Params& add(std::optional<std::string> v) { return v ? push(std::move(*v)) : push(std::monostate{}); }
  Params& add(std::optional<double> v) { return v ? push(*v) : push(std::monostate{}); }
  Params& add_bytes(std::span<const std::uint8_t> v) { return push(Bytes(v.begin(), v.end())); }
  Params& add_ids(std::span<const std::int64_t> v) { return push(IdList{{v.begin(), v.end()}}); }
  Params& append(const Params& more) {
    values_.insert(values_.end(), more.values_.begin(), more.values_.end());
    return *this;
  }
  const std::vector<SqlValue>& values() const { return values_; }

 private:
  // Each value is made in place in the vector, not moved in as a temporary variant: GCC 12
  // (under -fsanitize=thread) warns falsely that a moved variant's string may be uninitialised.
  template <typename T>
  Params& push(T&& v) {
    values_.emplace_back(std::in_place_type<std::decay_t<T>>, std::forward<T>(v));
    return *this;
  }
  std::vector<SqlValue> values_;
};

// A statement's result, materialised. Column accessors convert as the
// database would: int64/dbl of NULL is 0; boolean reads true/false columns
// and integers alike.
class RowSet {
 public:
  virtual ~RowSet() = default;
  virtual std::size_t size() const = 0;
  virtual bool is_null(std::size_t row, int col) const = 0;
  virtual std::int64_t int64(std::size_t row, int col) const = 0;
  virtual double dbl(std::size_t row, int col) const = 0;
  virtual bool boolean(std::size_t row, int col) const = 0;
  virtual std::string text(std::size_t row, int col) const = 0;
  virtual Bytes bytes(std::size_t row, int col) const = 0;
  // Rows inserted, updated or deleted (INSERT / UPDATE / DELETE).
  virtual std::int64_t affected() const = 0;
};

class Rows {
 public:
  explicit Rows(std::shared_ptr<const RowSet> set) : set_(std::move(set)) {}
  std::size_t size() const { return set_->size(); }
  bool empty() const { return set_->size() == 0; }
  bool is_null(std::size_t r, int c) const { return set_->is_null(r, c); }
  std::int64_t int64(std::size_t r, int c) const { return set_->int64(r, c); }
  std::optional<std::int64_t> optional_int(std::size_t r, int c) const {
    return is_null(r, c) ? std::nullopt : std::optional<std::int64_t>(int64(r, c));
  }
  double dbl(std::size_t r, int c) const { return set_->dbl(r, c); }
  bool boolean(std::size_t r, int c) const { return set_->boolean(r, c); }
  std::string text(std::size_t r, int c) const { return set_->text(r, c); }
  Bytes bytes(std::size_t r, int c) const { return set_->bytes(r, c); }
  std::int64_t affected() const { return set_->affected(); }

 private:
  std::shared_ptr<const RowSet> set_;
};

// The first column of every row, as ids (face, photo, library ids...).
inline std::vector<std::int64_t> ids_of(const Rows& r) {
  std::vector<std::int64_t> ids;
  ids.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) ids.push_back(r.int64(i, 0));
  return ids;
}

class Driver;

// Where a queued statement's result arrives.
struct ResultSlot {
  std::optional<Rows> rows;
};

// A queued statement. rows() flushes the driver's queue if the result has not
// arrived yet (so several queued reads travel together).
class Pending {
 public:
  Pending(Driver& driver, std::shared_ptr<ResultSlot> slot) : driver_(&driver), slot_(std::move(slot)) {}
  const Rows& rows();

 private:
  Driver* driver_;
  std::shared_ptr<ResultSlot> slot_;
};

// Blocks until the store may hold changes after a version (see Store::wait_for_change).
class ChangeWaiter {
 public:
  virtual ~ChangeWaiter() = default;
  // ensures: returns when a change newer than `after` may exist, or at the timeout;
  //          throws StoreFailure(kStoreUnavailable) when the database cannot be reached.
  virtual void wait(std::int64_t after, std::chrono::milliseconds timeout) = 0;
};

// The audit head as every writer reads it; PostgreSQL's driver adds FOR UPDATE.
inline constexpr std::string_view kAuditHeadQuery = "SELECT seq, hash FROM audit_head WHERE id = 1";

class Driver {
 public:
  virtual ~Driver() = default;

  // -- transactions (one at a time; requires none open when beginning)
  // A consistent snapshot for the reads of one call.
  virtual void begin_read() = 0;
  // The write lock, then the audit head read under it (kAuditHeadQuery's
  // columns; queued like any read). Writers of every process or node are
  // serialised from here to commit/rollback.
  virtual Pending begin_write() = 0;
  // Flushes what is queued, then commits. On failure the transaction is not
  // committed and the caller must rollback().
  virtual void commit() = 0;
  // Discards what is queued and rolls back; never throws.
  virtual void rollback() noexcept = 0;

  // -- statements ($1, $2 ... placeholders)
  // Queues `sql`; its rows arrive at the next flush (at once for SQLite).
  // Errors surface at that flush, or at commit for a statement nobody reads.
  virtual Pending queue(std::string_view sql, Params params) = 0;
  virtual void flush() = 0;
  // The statement's rows, now.
  Rows run(std::string_view sql, Params params = {}) { return queue(sql, std::move(params)).rows(); }
  // A write whose result nobody reads: it travels with the next flush.
  void defer(std::string_view sql, Params params = {}) { queue(sql, std::move(params)); }
  // Defers INSERT INTO `table_columns` ("table (a, b, ...)") of `rows`, each one
  // row's values in column order. This default sends multi-row VALUES statements
  // (a few rows a statement: each costs a parse and a plan); PostgreSQL's driver
  // sends one array a column instead (pg_driver.cpp says why).
  // requires: every row as wide as the column list.
  virtual void defer_insert(std::string_view table_columns, const std::vector<Params>& rows);

  // -- dialect
  // What follows a column to say "is one of the ids bound at $1" (Params::add_ids).
  virtual std::string_view in_ids_at_1() const = 0;
  // `n` fresh ids of `table`'s id sequence (ascending), for rows whose id must be
  // known before they are written (a template's associated data binds its id).
  // Ids are never handed out twice once the transaction commits.
  // requires: a write transaction.
  virtual Pending reserve_ids(std::string_view table, std::int64_t n) = 0;
  // Tells change-feed waiters, on commit, that `version` exists (queued).
  virtual void notify_changes(std::int64_t version) = 0;

  // -- connection
  // A connection of its own, for reads that must not hold up the store (audit_verify).
  virtual std::unique_ptr<Driver> open_reader() = 0;
  virtual std::unique_ptr<ChangeWaiter> change_waiter() = 0;
  // A round trip (PostgreSQL: reconnecting first if the connection was lost).
  virtual void ping() = 0;
  virtual Status checkpoint() = 0;
  // The template key for this database (see StoreOptions), recording its key
  // check value in a new database.
  virtual std::unique_ptr<TemplateCipher> attach_key(const StoreOptions& options) = 0;

  // Called by Pending::rows(): the slot's result, flushing first when it has not arrived.
  const Rows& result(ResultSlot& slot);
};

// Counts one search made by `actor` at `now_ms` in its minute and day buckets (queued), the
// counters a key's search budget reads (Store::search_count). Every 1:N search that ran is
// charged here: a collection's (record_search) and a photo library's (record_find).
// requires: a write transaction.
void charge_search(Driver& db, std::string_view actor, std::int64_t now_ms);

// The Store over `driver`; clock from options (now_ms when unset).
std::unique_ptr<Store> make_core_store(std::unique_ptr<Driver> driver, const StoreOptions& options);

// The database half of a key rotation (key_rotation.cpp holds the files): in one write
// transaction, checks that the store's key check value is still the one `store` opened
// with, re-seals every template under `next` (same associated data), records next's key
// check value and `rotation_note` (meta 'key_rotation': JSON naming where the new key was
// written and the previous key check value, no secret), appends a "key_rotate" audit
// entry with the counts, and commits; from then on `store` seals and opens with `next`.
// progress(n) is called after the n-th template is re-sealed (before the commit).
// requires: `store` came from open_store (the core).
// ensures: the number of templates re-sealed; on failure nothing changed (kIntegrityError
//          naming a face that does not open, or when the key changed since the open).
Result<std::int64_t> reencrypt_templates(Store& store, std::unique_ptr<TemplateCipher> next, const AuditContext& ctx,
                                         const std::string& rotation_note,
                                         const std::function<void(std::int64_t)>& progress);

}  // namespace candor::store_detail
