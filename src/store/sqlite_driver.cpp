// The SQLite driver of the store core (store_driver.h): an embedded database
// file in WAL mode, one machine.
//
// - Statements run at once (in-process, so there is nothing to gain by
//   queueing); the core's $N placeholders are SQLite's ?N.
// - Writers serialise on SQLite's write lock, taken at BEGIN IMMEDIATE (not at
//   the first write, so two writers never deadlock upgrading read locks; the
//   busy timeout covers the wait).
// - Face ids are reserved by advancing the table's AUTOINCREMENT counter
//   (sqlite_sequence) inside the write transaction.
// - The change feed has no notifications across processes: waiters poll the
//   newest version on a connection of their own.
#include <sys/stat.h>

#include <algorithm>
#include <thread>

#include "sqlite_store.h"
#include "store_driver.h"

namespace candor::store_detail {
namespace {

// "$12" -> "?12": SQLite's numbered parameters. The core's SQL holds no '$' otherwise.
std::string sqlite_sql(std::string_view sql) {
  std::string out(sql);
  for (std::size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && out[i + 1] >= '0' && out[i + 1] <= '9') out[i] = '?';
  }
  return out;
}

std::string json_id_array(const std::vector<std::int64_t>& ids) {
  std::string out = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

class SqliteRowSet final : public RowSet {
 public:
  using Cell = std::variant<std::monostate, std::int64_t, double, std::string, Bytes>;

  SqliteRowSet(std::vector<Cell> cells, int columns, std::int64_t affected)
      : cells_(std::move(cells)), columns_(std::max(columns, 1)), affected_(affected) {}

  std::size_t size() const override { return cells_.size() / static_cast<std::size_t>(columns_); }
  bool is_null(std::size_t r, int c) const override { return std::holds_alternative<std::monostate>(cell(r, c)); }
  std::int64_t int64(std::size_t r, int c) const override {
    const Cell& v = cell(r, c);
    if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
    if (const auto* d = std::get_if<double>(&v)) return static_cast<std::int64_t>(*d);
    if (const auto* s = std::get_if<std::string>(&v)) return std::strtoll(s->c_str(), nullptr, 10);
    return 0;
  }
  double dbl(std::size_t r, int c) const override {
    const Cell& v = cell(r, c);
    if (const auto* d = std::get_if<double>(&v)) return *d;
    if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
    return 0.0;
  }
  bool boolean(std::size_t r, int c) const override { return int64(r, c) != 0; }
  std::string text(std::size_t r, int c) const override {
    const Cell& v = cell(r, c);
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
    if (const auto* b = std::get_if<Bytes>(&v)) return std::string(b->begin(), b->end());
    return {};
  }
  Bytes bytes(std::size_t r, int c) const override {
    const Cell& v = cell(r, c);
    if (const auto* b = std::get_if<Bytes>(&v)) return *b;
    if (const auto* s = std::get_if<std::string>(&v)) return Bytes(s->begin(), s->end());
    return {};
  }
  std::int64_t affected() const override { return affected_; }

 private:
  const Cell& cell(std::size_t r, int c) const {
    if (r >= size() || c < 0 || c >= columns_) fail(ErrorCode::kInternal, "row or column out of range");
    return cells_[r * static_cast<std::size_t>(columns_) + static_cast<std::size_t>(c)];
  }
  std::vector<Cell> cells_;
  int columns_;
  std::int64_t affected_;
};

Rows run_statement(Database& db, std::string_view sql, const Params& params) {
  Statement st = db.prepare(sqlite_sql(sql));
  int index = 1;
  for (const SqlValue& v : params.values()) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            st.bind_null(index);
          } else if constexpr (std::is_same_v<T, bool>) {
            st.bind(index, std::int64_t{x ? 1 : 0});
          } else if constexpr (std::is_same_v<T, std::string>) {
            st.bind(index, std::string_view(x));
          } else if constexpr (std::is_same_v<T, Bytes>) {
            st.bind_blob(index, x);
          } else if constexpr (std::is_same_v<T, IdList>) {
            st.bind(index, std::string_view(json_id_array(x.ids)));
          } else {
            st.bind(index, x);
          }
        },
        v);
    ++index;
  }
  const int columns = st.column_count();
  std::vector<SqliteRowSet::Cell> cells;
  while (st.step()) {
    for (int c = 0; c < columns; ++c) {
      switch (st.column_type(c)) {
        case SQLITE_NULL: cells.emplace_back(std::monostate{}); break;
        case SQLITE_INTEGER: cells.emplace_back(st.column_int(c)); break;
        case SQLITE_FLOAT: cells.emplace_back(st.column_double(c)); break;
        case SQLITE_BLOB: cells.emplace_back(st.column_blob(c)); break;
        default: cells.emplace_back(st.column_text(c)); break;
      }
    }
  }
  const std::int64_t affected = st.readonly() ? 0 : db.changes();
  return Rows(std::make_shared<SqliteRowSet>(std::move(cells), columns, affected));
}

Pending done(Driver& driver, Rows rows) {
  auto slot = std::make_shared<ResultSlot>();
  slot->rows = std::move(rows);
  return Pending(driver, std::move(slot));
}

void configure(Database& db, const StoreOptions& options) {
  db.exec("PRAGMA busy_timeout = " + std::to_string(std::max(0, options.busy_timeout_ms)));
}

// Polls the newest change version every kPollInterval on a connection of its own.
class SqliteWaiter final : public ChangeWaiter {
 public:
  SqliteWaiter(std::string path, StoreOptions options) : path_(std::move(path)), options_(std::move(options)) {}

  void wait(std::int64_t after, std::chrono::milliseconds timeout) override {
    // A single index lookup per poll.
    constexpr std::chrono::milliseconds kPollInterval{25};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!db_) {
      db_ = std::make_unique<Database>(path_, false, options_.read_only);
      configure(*db_, options_);
    }
    for (;;) {
      if (db_->query_int("SELECT MAX(version) FROM face_changes").value_or(0) > after) return;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(kPollInterval, deadline - now));
    }
  }

 private:
  std::string path_;
  StoreOptions options_;
  std::unique_ptr<Database> db_;
};

class SqliteDriver final : public Driver {
 public:
  enum class Role { kStore, kReader };

  SqliteDriver(std::string path, const StoreOptions& options, Role role)
      : path_(std::move(path)),
        options_(options),
        db_(path_, role == Role::kStore && options.create_if_missing, options.read_only) {
    configure(db_, options);
    if (role == Role::kReader) return;
    if (options.read_only) {  // as it is: no WAL switch, no migration, nothing written
      require_current_schema(db_);
      return;
    }
    const std::optional<std::string> mode = db_.query_text("PRAGMA journal_mode = WAL");
    if (!mode || *mode != "wal") fail(ErrorCode::kStoreError, "cannot switch " + path_ + " to WAL mode");
    db_.exec("PRAGMA foreign_keys = ON");
    // Erased rows (templates, subject names) are overwritten, not left in free pages.
    db_.exec("PRAGMA secure_delete = ON");
    db_.exec(options.durability == Durability::kFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    migrate(db_, ms(options.clock ? options.clock() : now_ms()));
  }

  void begin_read() override { db_.exec("BEGIN"); }

  Pending begin_write() override {
    db_.exec("BEGIN IMMEDIATE");
    try {
      return queue(kAuditHeadQuery, Params());
    } catch (const StoreFailure&) {
      rollback();
      throw;
    }
  }

  void commit() override { db_.exec("COMMIT"); }

  void rollback() noexcept override {
    // Best effort: if ROLLBACK itself fails SQLite rolls back on close anyway.
    if (sqlite3_get_autocommit(db_.handle()) == 0) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

  Pending queue(std::string_view sql, Params params) override { return done(*this, run_statement(db_, sql, params)); }
  void flush() override {}

  std::string_view in_ids_at_1() const override { return "IN (SELECT value FROM json_each($1))"; }

  Pending reserve_ids(std::string_view table, std::int64_t n) override {
    // AUTOINCREMENT hands out max(counter, largest id) + 1, so advancing the
    // counter reserves the ids in between; the write lock keeps them ours.
    const std::string t(table);
    run_statement(db_, "INSERT INTO sqlite_sequence (name, seq) SELECT $1, 0"
                       " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = $1)",
                  Params().add(t));
    const Rows r = run_statement(db_, "UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT MAX(id) FROM " + t +
                                          "), 0)) + $2 WHERE name = $1 RETURNING seq",
                                 Params().add(t).add(n));
    if (r.size() != 1) fail(ErrorCode::kStoreError, "cannot reserve ids for " + t);
    const std::int64_t last = r.int64(0, 0);
    std::vector<SqliteRowSet::Cell> cells;
    for (std::int64_t id = last - n + 1; id <= last; ++id) cells.emplace_back(id);
    return done(*this, Rows(std::make_shared<SqliteRowSet>(std::move(cells), 1, 0)));
  }

  void notify_changes(std::int64_t) override {}  // waiters poll

  std::unique_ptr<Driver> open_reader() override {
    return std::make_unique<SqliteDriver>(path_, options_, Role::kReader);
  }

  std::unique_ptr<ChangeWaiter> change_waiter() override { return std::make_unique<SqliteWaiter>(path_, options_); }

  void ping() override { db_.query_int("SELECT 1"); }

  Status checkpoint() override {
    try {
      Statement st = db_.prepare("PRAGMA wal_checkpoint(TRUNCATE)");
      if (st.step() && st.column_int(0) != 0) {
        return Error{ErrorCode::kStoreError, "checkpoint blocked by another connection; retry"};
      }
      return ok_status();
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  std::unique_ptr<TemplateCipher> attach_key(const StoreOptions& options) override {
    return sqlite_attach_key(db_, path_, options);
  }

 private:
  std::string path_;
  StoreOptions options_;
  Database db_;
};

}  // namespace

std::unique_ptr<TemplateCipher> sqlite_attach_key(Database& db, const std::string& path, const StoreOptions& options) {
  KeyCheckAccess access = key_check_reads(db);
  access.insert_kcv_if_absent = [&db](const std::string& kcv) {
    Transaction txn(db);
    db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)").bind(1, kcv).run();
    txn.commit();
  };
  return attach_key(options, path, path + ".key", access);
}

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path, const StoreOptions& options) {
  if (path.empty()) return Error{ErrorCode::kInvalidArgument, "empty database path"};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && (!options.create_if_missing || options.read_only)) {
    return Error{ErrorCode::kNotFound, "database " + path + " does not exist"};
  }
  try {
    return make_core_store(std::make_unique<SqliteDriver>(path, options, SqliteDriver::Role::kStore), options);
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

}  // namespace candor::store_detail
