// The PostgreSQL driver of the store core (store_driver.h): one database
// shared by several Candor nodes.
//
// - Statements are queued and sent together at the next flush, in one libpq
//   pipeline (one round trip however many there are): an operation's reads
//   travel together, and its writes travel with the COMMIT.
// - Every writing transaction first locks the audit head row (SELECT ... FOR
//   UPDATE). Writers on all nodes are thereby serialised as SQLite's write
//   lock serialises them: the chain never forks, the consent check in enroll
//   sees every revocation committed before it, and audit seqs (hence change
//   versions) are assigned in commit order. Writers run at READ COMMITTED, so
//   each statement after the lock sees what committed before the lock was granted.
// - Reads run in one REPEATABLE READ snapshot per call.
// - A multi-row insert (defer_insert) is one statement whatever the row count:
//   a binary array a column, turned back into rows by unnest.
// - Face ids are drawn from the table's sequence (nextval), which never hands
//   out a value twice, not even after a rollback.
// - Writes that change faces send NOTIFY candor_changes (payload: the
//   version) inside their transaction; PostgreSQL delivers it at commit, and
//   waiters LISTEN on a connection of their own.
// - A lost connection makes the call fail with kStoreUnavailable; the driver
//   reconnects on a later call, at most every 100 ms doubling to 5 s while
//   the server stays unreachable. A connection found dead by the first flush
//   of a transaction (from its BEGIN, without its COMMIT) is replaced at once
//   and the flush sent again.
#include <poll.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cerrno>
#include <chrono>
#include <functional>

#include "pg_store.h"
#include "store_driver.h"

namespace candor::store_detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
constexpr const char* kChannel = "candor_changes";

// A PostgreSQL array literal of ids, for "= ANY($1::bigint[])".
std::string id_array(const std::vector<std::int64_t>& ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  out += '}';
  return out;
}

PgParams pg_params(const Params& params) {
  PgParams out;
  for (const SqlValue& v : params.values()) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            out.add_null();
          } else if constexpr (std::is_same_v<T, Bytes>) {
            out.add_bytes(x);
          } else if constexpr (std::is_same_v<T, IdList>) {
            out.add(id_array(x.ids));
          } else {
            out.add(x);
          }
        },
        v);
  }
  return out;
}

void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void put_be64(std::string& out, std::uint64_t v) {
  put_be32(out, static_cast<std::uint32_t>(v >> 32));
  put_be32(out, static_cast<std::uint32_t>(v));
}

class PgRowSet final : public RowSet {
 public:
  explicit PgRowSet(PgResult r) : r_(std::move(r)) {}
  std::size_t size() const override { return static_cast<std::size_t>(std::max(r_.rows(), 0)); }
  bool is_null(std::size_t row, int c) const override { return r_.is_null(at(row), c); }
  std::int64_t int64(std::size_t row, int c) const override { return r_.int64(at(row), c); }
  double dbl(std::size_t row, int c) const override { return r_.dbl(at(row), c); }
  bool boolean(std::size_t row, int c) const override { return r_.boolean(at(row), c); }
  std::string text(std::size_t row, int c) const override { return r_.text(at(row), c); }
  Bytes bytes(std::size_t row, int c) const override { return r_.bytes(at(row), c); }
  std::int64_t affected() const override { return r_.affected(); }

 private:
  int at(std::size_t row) const {
    if (row >= size()) fail(ErrorCode::kInternal, "row out of range");
    return static_cast<int>(row);
  }
  PgResult r_;
};

// Reconnection with exponential backoff, for one connection.
class Reconnector {
 public:
  // ensures: connected, or throws kStoreUnavailable (without trying, while backing off).
  void ensure(PgConnection& db) {
    if (db.connected()) return;
    const Clock::time_point now = Clock::now();
    if (now < next_attempt_) {
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now);
      fail(ErrorCode::kStoreUnavailable, "PostgreSQL is unreachable (" + last_error_ + "); next attempt in " +
                                             std::to_string(wait.count()) + " ms");
    }
    try {
      db.connect();
      backoff_ = kFirstBackoff;
      next_attempt_ = {};
      on_connect_(db);
    } catch (const StoreFailure& f) {
      db.close();
      last_error_ = f.error.message;
      next_attempt_ = Clock::now() + backoff_;
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
      throw;
    }
  }
  void set_on_connect(std::function<void(PgConnection&)> fn) { on_connect_ = std::move(fn); }

 private:
  std::chrono::milliseconds backoff_ = kFirstBackoff;
  Clock::time_point next_attempt_{};
  std::string last_error_;
  std::function<void(PgConnection&)> on_connect_ = [](PgConnection&) {};
};

// LISTEN on a connection of its own.
class PgWaiter final : public ChangeWaiter {
 public:
  explicit PgWaiter(const std::string& uri) : listen_(uri) {}

  void wait(std::int64_t after, std::chrono::milliseconds timeout) override {
    const Clock::time_point deadline = Clock::now() + timeout;
    if (!listen_.connected()) {
      reconnect_.ensure(listen_);
      listen_.exec_script(std::string("LISTEN ") + kChannel);
    }
    // Notifications queued since the last call may be stale (versions the
    // caller has seen): only a newer version counts.
    if (drain_notifications(after)) return;
    // LISTEN is in place before this check, so a commit after it notifies us.
    if (listen_.query_int("SELECT MAX(version) FROM face_changes").value_or(0) > after) return;
    for (;;) {
      const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (remaining.count() <= 0) return;
      pollfd pfd{PQsocket(listen_.handle()), POLLIN, 0};
      if (pfd.fd < 0) listen_.raise(nullptr, "LISTEN");
      const int n = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(remaining.count(), 60'000)));
      if (n < 0 && errno != EINTR) listen_.raise(nullptr, "poll");
      if (n > 0) {
        if (PQconsumeInput(listen_.handle()) == 0 || PQstatus(listen_.handle()) == CONNECTION_BAD) {
          listen_.raise(nullptr, "LISTEN");
        }
        if (drain_notifications(after)) return;
      }
    }
  }

 private:
  bool drain_notifications(std::int64_t after) {
    bool newer = false;
    while (PGnotify* n = PQnotifies(listen_.handle())) {
      const char* payload = n->extra != nullptr ? n->extra : "";
      char* end = nullptr;
      const long long v = std::strtoll(payload, &end, 10);
      if (end == payload || v > after) newer = true;  // an unreadable payload counts as news
      PQfreemem(n);
    }
    return newer;
  }

  PgConnection listen_;
  Reconnector reconnect_;
};

class PgDriver final : public Driver {
 public:
  enum class Role { kStore, kReader };

  PgDriver(const std::string& uri, const StoreOptions& options, Role role)
      : uri_(uri), db_(uri), read_only_(options.read_only) {
    if (role == Role::kReader) {
      db_.connect();
      if (read_only_) db_.exec_script(kReadOnlySession);
      return;
    }
    const bool relaxed = options.durability == Durability::kNormal;
    const bool read_only = read_only_;
    // Async commit survives a crash of this process or of PostgreSQL (the WAL
    // is written, only not waited for); a power cut may lose the last commits.
    reconnect_.set_on_connect([relaxed, read_only](PgConnection& c) {
      if (relaxed) c.exec_script("SET synchronous_commit = off");
      if (read_only) c.exec_script(kReadOnlySession);
    });
    reconnect_.ensure(db_);
    label_ = db_.label();
    if (read_only_) {
      if (pg_schema_version(db_) == 0) fail(ErrorCode::kNotFound, "database " + label_ + " holds no Candor store");
      pg_require_current_schema(db_);
      return;
    }
    if (!options.create_if_missing && pg_schema_version(db_) == 0) {
      fail(ErrorCode::kNotFound, "database " + label_ + " holds no Candor store (and creating one was not allowed)");
    }
    pg_migrate(db_, ms(options.clock ? options.clock() : now_ms()));
  }

  void begin_read() override {
    begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }

  Pending begin_write() override {
    begin("BEGIN");
    // The head lock, first thing. Queued: it travels with the operation's first
    // reads (the transaction's first flush, sent again on a fresh connection
    // if the old one turns out to be dead).
    return queue(std::string(kAuditHeadQuery) + " FOR UPDATE", Params());
  }

  void commit() override {
    queue("COMMIT", Params());
    // Never sent twice: a COMMIT cut off in flight may have happened.
    fresh_ = false;
    flush();
    in_transaction_ = false;
    begun_ = false;
  }

  void rollback() noexcept override {
    queue_.clear();
    fresh_ = false;
    if (in_transaction_ && begun_ && db_.connected()) {
      PGresult* r = PQexec(db_.handle(), "ROLLBACK");  // best effort; a dead connection rolls back anyway
      PQclear(r);
    }
    in_transaction_ = false;
    begun_ = false;
  }

  Pending queue(std::string_view sql, Params params) override { return queue_pg(std::string(sql), pg_params(params)); }

  // One statement for any number of rows: each column travels as one binary array
  // and unnest turns the arrays back into rows. Multi-row VALUES made the server
  // set up an expression per value at every execution (15 x 32 for a batch of
  // faces: the executor's start-up dominated the backend's profile), with a
  // statement of its own to prepare for every row count. Falls back to VALUES
  // for a column whose type the values do not tell.
  void defer_insert(std::string_view table_columns, const std::vector<Params>& rows) override {
    if (rows.empty()) return;
    const std::size_t width = rows.front().values().size();
    for (const Params& r : rows) {
      if (r.values().size() != width) fail(ErrorCode::kInternal, "rows of different widths in one insert");
    }
    std::string sql = "INSERT INTO " + std::string(table_columns) + " SELECT * FROM unnest(";
    PgParams params;
    for (std::size_t col = 0; col < width; ++col) {
      std::optional<PgArrayColumn> column = pg_array_column(rows, col);
      if (!column) {
        Driver::defer_insert(table_columns, rows);
        return;
      }
      sql += col == 0 ? "$" : ", $";
      sql += std::to_string(col + 1);
      sql += "::";
      sql += column->sql_type;
      params.add_binary(std::move(column->encoded));
    }
    sql += ')';
    queue_pg(std::move(sql), std::move(params));
  }

  void flush() override {
    if (queue_.empty()) return;
    std::vector<Queued> batch = std::move(queue_);
    queue_.clear();
    begun_ = in_transaction_;  // once anything is sent, a ROLLBACK may be owed
    if (!fresh_) {
      send(batch);
      return;
    }
    // The transaction's first flush, from its BEGIN and without its COMMIT: if
    // the connection turns out to be dead, the server rolled back whatever of
    // it arrived, so it is sent again, whole, on a fresh connection.
    fresh_ = false;
    try {
      reconnect_.ensure(db_);
      send(batch);
    } catch (const StoreFailure& f) {
      if (f.error.code != ErrorCode::kStoreUnavailable || db_.connected()) throw;
      reconnect_.ensure(db_);  // throws while the server stays unreachable
      send(batch);
    }
  }

  std::string_view in_ids_at_1() const override { return "= ANY($1::bigint[])"; }

  Pending reserve_ids(std::string_view table, std::int64_t n) override {
    // The sequence is looked up once (MATERIALIZED keeps the planner from copying the
    // lookup into every row): pg_get_serial_sequence per row cost 6.0 of the 6.6 us an
    // id took (psql, 32,000 ids: 212 ms against 21 ms).
    return queue("WITH s AS MATERIALIZED (SELECT CAST(pg_get_serial_sequence($1, 'id') AS regclass) AS seq)"
                 " SELECT nextval(seq) FROM s, generate_series(1, $2)",
                 Params().add(table).add(n));
  }

  void notify_changes(std::int64_t version) override {
    // Delivered to listeners when (and only if) this transaction commits.
    queue("SELECT pg_notify($1, $2)", Params().add(kChannel).add(std::to_string(version)));
  }

  std::unique_ptr<Driver> open_reader() override {
    StoreOptions reader;
    reader.read_only = read_only_;
    return std::make_unique<PgDriver>(uri_, reader, Role::kReader);
  }

  std::unique_ptr<ChangeWaiter> change_waiter() override { return std::make_unique<PgWaiter>(uri_); }

  void ping() override {
    fresh_ = true;
    run("SELECT 1");
  }

  Status checkpoint() override { return ok_status(); }  // PostgreSQL manages its own WAL

  std::unique_ptr<TemplateCipher> attach_key(const StoreOptions& options) override {
    return pg_attach_key(db_, label_, options);
  }

 private:
  struct Queued {
    std::string sql;
    PgParams params;
    std::shared_ptr<ResultSlot> slot;
  };
  // A flush every so many statements bounds what one pipeline holds in memory.
  static constexpr std::size_t kMaxQueued = 1024;

  Pending queue_pg(std::string sql, PgParams params) {
    auto slot = std::make_shared<ResultSlot>();
    queue_.push_back(Queued{std::move(sql), std::move(params), slot});
    if (queue_.size() >= kMaxQueued) flush();
    return Pending(*this, std::move(slot));
  }

  void begin(const char* sql) {
    if (!queue_.empty()) fail(ErrorCode::kInternal, "statements queued outside a transaction");
    queue(sql, Params());
    fresh_ = true;
    in_transaction_ = true;
  }

  void send(const std::vector<Queued>& batch) {
    if (batch.size() == 1) {
      batch.front().slot->rows = Rows(std::make_shared<PgRowSet>(db_.exec(batch.front().sql, batch.front().params)));
      return;
    }
    std::vector<PgConnection::PipelineStatement> statements;
    statements.reserve(batch.size());
    for (const Queued& q : batch) statements.push_back({q.sql, &q.params});
    std::vector<PgResult> results = db_.exec_pipeline(statements);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i].slot->rows = Rows(std::make_shared<PgRowSet>(std::move(results[i])));
    }
  }

  // Every transaction of the session READ ONLY: the server refuses any write.
  static constexpr const char* kReadOnlySession = "SET default_transaction_read_only = on";

  std::string uri_;  // for the connections open_reader and change_waiter open
  PgConnection db_;
  bool read_only_ = false;
  Reconnector reconnect_;
  std::string label_;
  std::vector<Queued> queue_;
  bool fresh_ = false;           // the next flush is the transaction's first
  bool in_transaction_ = false;  // BEGIN has been queued or sent
  bool begun_ = false;           // ... and sent
};

}  // namespace

std::optional<PgArrayColumn> pg_array_column(const std::vector<Params>& rows, std::size_t col) {
  const SqlValue* first = nullptr;
  bool has_null = false;
  for (const Params& r : rows) {
    const SqlValue& v = r.values()[col];
    if (std::holds_alternative<std::monostate>(v)) {
      has_null = true;
    } else if (first == nullptr) {
      first = &v;
    } else if (v.index() != first->index()) {
      return std::nullopt;
    }
  }
  if (first == nullptr || std::holds_alternative<IdList>(*first)) return std::nullopt;
  // Element type OIDs from PostgreSQL's catalog (src/include/catalog/pg_type.dat),
  // fixed since the types were built in.
  struct Element {
    std::string_view sql_type;
    std::uint32_t oid;
  };
  const Element e = std::holds_alternative<std::int64_t>(*first) ? Element{"bigint[]", 20}
                    : std::holds_alternative<double>(*first)     ? Element{"double precision[]", 701}
                    : std::holds_alternative<bool>(*first)       ? Element{"boolean[]", 16}
                    : std::holds_alternative<Bytes>(*first)      ? Element{"bytea[]", 17}
                                                                 : Element{"text[]", 25};
  PgArrayColumn out{e.sql_type, {}};
  std::string& a = out.encoded;
  put_be32(a, 1);  // one dimension
  put_be32(a, has_null ? 1 : 0);
  put_be32(a, e.oid);
  put_be32(a, static_cast<std::uint32_t>(rows.size()));
  put_be32(a, 1);  // lower bound
  const auto put_chars = [&a](const char* data, std::size_t size) {
    if (size > static_cast<std::size_t>(INT32_MAX)) fail(ErrorCode::kInvalidArgument, "parameter too long");
    put_be32(a, static_cast<std::uint32_t>(size));
    a.append(data, size);
  };
  for (const Params& r : rows) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            put_be32(a, 0xFFFFFFFFu);  // -1: NULL
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            put_be32(a, 8);
            put_be64(a, static_cast<std::uint64_t>(x));
          } else if constexpr (std::is_same_v<T, double>) {
            put_be32(a, 8);
            put_be64(a, std::bit_cast<std::uint64_t>(x));
          } else if constexpr (std::is_same_v<T, bool>) {
            put_be32(a, 1);
            a.push_back(x ? 1 : 0);
          } else if constexpr (std::is_same_v<T, std::string>) {
            put_chars(x.data(), x.size());
          } else if constexpr (std::is_same_v<T, Bytes>) {
            put_chars(reinterpret_cast<const char*>(x.data()), x.size());
          }
          // IdList: not reached (every non-NULL value has the first one's type).
        },
        r.values()[col]);
  }
  return out;
}

std::unique_ptr<TemplateCipher> pg_attach_key(PgConnection& db, const std::string& label, const StoreOptions& options) {
  KeyCheckAccess access = key_check_reads(db);
  access.insert_kcv_if_absent = [&db](const std::string& kcv) {
    db.exec("INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING", PgParams().add(kcv));
  };
  // No default key file: there is no directory that belongs to a server database.
  return attach_key(options, label, "", access);
}

Result<std::unique_ptr<Store>> open_pg_store(const std::string& uri, const StoreOptions& options) {
  try {
    return make_core_store(std::make_unique<PgDriver>(uri, options, PgDriver::Role::kStore), options);
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

}  // namespace candor::store_detail
