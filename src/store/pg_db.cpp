#include "pg_db.h"

#include <array>
#include <atomic>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace candor::store_detail {

namespace {
std::atomic<std::uint64_t> round_trips{0};
}  // namespace

std::uint64_t pg_round_trips() noexcept { return round_trips.load(); }

// ------------------------------------------------------------------ PgResult

PgResult& PgResult::operator=(PgResult&& other) noexcept {
  if (this != &other) {
    PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}

std::int64_t PgResult::affected() const {
  const char* n = PQcmdTuples(result_);
  return (n == nullptr || *n == '\0') ? 0 : std::strtoll(n, nullptr, 10);
}

std::string PgResult::text(int row, int col) const {
  return std::string(PQgetvalue(result_, row, col), static_cast<std::size_t>(PQgetlength(result_, row, col)));
}

std::int64_t PgResult::int64(int row, int col) const {
  if (is_null(row, col)) return 0;
  const char* p = PQgetvalue(result_, row, col);
  const char* end = p + PQgetlength(result_, row, col);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(p, end, v);
  if (ec != std::errc{} || ptr != end) fail(ErrorCode::kStoreError, "not an integer: " + std::string(p, end));
  return v;
}

std::optional<std::int64_t> PgResult::optional_int(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return int64(row, col);
}

double PgResult::dbl(int row, int col) const {
  if (is_null(row, col)) return 0.0;
  // from_chars, not strtod: the C locale's decimal point whatever the process's locale.
  const char* p = PQgetvalue(result_, row, col);
  const char* end = p + PQgetlength(result_, row, col);
  double v = 0.0;
  auto [ptr, ec] = std::from_chars(p, end, v);
  if (ec != std::errc{} || ptr != end) fail(ErrorCode::kStoreError, "not a number: " + std::string(p, end));
  return v;
}

bool PgResult::boolean(int row, int col) const {
  if (is_null(row, col)) return false;
  // A boolean column ('t' / 'f') or an integer one (non-zero is true).
  const char c = PQgetvalue(result_, row, col)[0];
  if (c == 't' || c == 'f') return c == 't';
  return int64(row, col) != 0;
}

std::vector<std::uint8_t> PgResult::bytes(int row, int col) const {
  // bytea_output = hex (the default since 9.0): "\x" then two digits a byte.
  const std::string t = text(row, col);
  if (t.size() < 2 || t[0] != '\\' || t[1] != 'x' || t.size() % 2 != 0) {
    fail(ErrorCode::kStoreError, "unexpected bytea encoding (is bytea_output 'hex'?)");
  }
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    fail(ErrorCode::kStoreError, "bad hex digit in bytea");
  };
  std::vector<std::uint8_t> out((t.size() - 2) / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(nibble(t[2 + 2 * i]) * 16 + nibble(t[3 + 2 * i]));
  }
  return out;
}

// ------------------------------------------------------------------ PgParams

void PgParams::push(std::string value, bool is_null, int format) {
  if (value.size() > static_cast<std::size_t>(INT_MAX)) fail(ErrorCode::kInvalidArgument, "parameter too long");
  lengths_.push_back(static_cast<int>(value.size()));
  values_.push_back(std::move(value));
  nulls_.push_back(is_null);
  formats_.push_back(format);
}

const char* const* PgParams::values() const {
  // A string's characters may sit inside the string object (short strings), which
  // moves when values_ grows or is copied: the pointers are made for one buffer.
  if (pointers_.size() != values_.size() || pointers_for_ != values_.data()) {
    pointers_.clear();
    for (std::size_t i = 0; i < values_.size(); ++i) pointers_.push_back(nulls_[i] ? nullptr : values_[i].data());
    pointers_for_ = values_.data();
  }
  return pointers_.data();
}

PgParams& PgParams::add(std::int64_t value) {
  push(std::to_string(value), false, 0);
  return *this;
}

PgParams& PgParams::add(double value) {
  std::array<char, 64> buf{};
  // Shortest representation that reads back to the same double.
  auto [ptr, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  if (ec != std::errc{}) fail(ErrorCode::kInternal, "cannot format a double");
  push(std::string(buf.data(), ptr), false, 0);
  return *this;
}

PgParams& PgParams::add(bool value) {
  push(value ? "t" : "f", false, 0);
  return *this;
}

PgParams& PgParams::add(std::string_view text) {
  push(std::string(text), false, 0);
  return *this;
}

PgParams& PgParams::add_null() {
  push({}, true, 0);
  return *this;
}

PgParams& PgParams::add(std::optional<std::int64_t> value) {
  if (!value) {
    push(std::string(), true, 0);
    return *this;
  }
  return add(*value);
}

PgParams& PgParams::add_bytes(std::span<const std::uint8_t> bytes) {
  return add_binary(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

PgParams& PgParams::add_binary(std::string encoded) {
  push(std::move(encoded), false, 1);
  return *this;
}

// -------------------------------------------------------------- PgConnection

void PgConnection::connect() {
  close();
  // connect_timeout first, so a value in the URI (expanded from dbname) wins.
  const std::array<const char*, 4> keys = {"connect_timeout", "application_name", "dbname", nullptr};
  const std::array<const char*, 4> values = {"5", "candor", uri_.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) fail(ErrorCode::kStoreUnavailable, "cannot allocate a PostgreSQL connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    PQfinish(conn);
    // A missing database, a refused login or an unparseable URI will not get
    // better by retrying: only an unreachable or restarting server is "unavailable".
    ErrorCode code = ErrorCode::kStoreUnavailable;
    if (msg.find("database \"") != std::string::npos && msg.find("does not exist") != std::string::npos) {
      code = ErrorCode::kNotFound;
    } else if (msg.find("authentication failed") != std::string::npos || msg.find("pg_hba.conf") != std::string::npos ||
               msg.find("role \"") != std::string::npos || msg.find("invalid") != std::string::npos) {
      code = ErrorCode::kStoreError;
    }
    fail(code, "cannot connect to PostgreSQL at " + label() + ": " + msg);
  }
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);  // NOTICEs are not errors
  conn_ = conn;
  // Fixed session settings the code relies on, whatever the server defaults.
  exec_script("SET bytea_output = 'hex'; SET client_encoding = 'UTF8'; SET extra_float_digits = 1;"
              " SET TIME ZONE 'UTC'");
}

void PgConnection::close() {
  prepared_.clear();
  prepared_count_ = 0;
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

std::string PgConnection::label() const {
  std::string out = uri_;
  // postgresql://user:secret@host/... -> postgresql://user:***@host/...
  const std::size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const std::size_t at = out.find('@', scheme + 3);
    const std::size_t colon = out.find(':', scheme + 3);
    const std::size_t slash = out.find('/', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at && (slash == std::string::npos || at < slash)) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  const std::size_t pw = out.find("password=");
  if (pw != std::string::npos) {
    const std::size_t end = out.find_first_of("& ", pw);
    out.replace(pw + 9, (end == std::string::npos ? out.size() : end) - pw - 9, "***");
  }
  return out;
}

void PgConnection::raise(const PGresult* result, std::string_view what) {
  std::string msg = result != nullptr ? PQresultErrorMessage(result) : "";
  if (msg.empty() && conn_ != nullptr) msg = PQerrorMessage(conn_);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state != nullptr ? state : "";
  // Class 08: connection exceptions; 57P01-03: the server is shutting down or
  // starting; a result-less failure or a bad connection: the socket broke.
  const bool lost = conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD || sqlstate.starts_with("08") ||
                    sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" || result == nullptr;
  if (lost) {
    close();
    fail(ErrorCode::kStoreUnavailable, "the PostgreSQL connection was lost (" + msg + "); retry later");
  }
  std::string context(what.substr(0, 120));
  if (sqlstate == "23505") fail(ErrorCode::kAlreadyExists, msg);
  if (sqlstate == "22021") fail(ErrorCode::kInvalidArgument, "text is not valid UTF-8: " + msg);
  if (sqlstate == "40001" || sqlstate == "40P01") {
    fail(ErrorCode::kStoreError, "transaction conflict, retry: " + msg);
  }
  fail(ErrorCode::kStoreError, msg + " [" + sqlstate + "] in: " + context);
}

PgResult PgConnection::exec(std::string_view sql, const PgParams& params) {
  if (conn_ == nullptr) fail(ErrorCode::kStoreUnavailable, "not connected to PostgreSQL; retry later");
  const std::string text(sql);
  ++round_trips;
  PgResult r(PQexecParams(conn_, text.c_str(), params.size(), nullptr, params.values(), params.lengths(),
                          params.formats(), /*resultFormat=*/0));
  const ExecStatusType st = r.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) raise(r.get(), sql);
  return r;
}

void PgConnection::exec_script(std::string_view sql) {
  if (conn_ == nullptr) fail(ErrorCode::kStoreUnavailable, "not connected to PostgreSQL; retry later");
  const std::string text(sql);
  ++round_trips;
  PgResult r(PQexec(conn_, text.c_str()));
  const ExecStatusType st = r.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) raise(r.get(), sql);
}

std::vector<PgResult> PgConnection::exec_pipeline(const std::vector<PipelineStatement>& statements) {
  if (conn_ == nullptr) fail(ErrorCode::kStoreUnavailable, "not connected to PostgreSQL; retry later");
  // The store's statement texts are a bounded set (a multi-row insert is one text a table and column types); past
  // this many, texts are sent unprepared rather than kept on the server without end.
  constexpr std::size_t kMaxPrepared = 512;
  ++round_trips;
  if (PQenterPipelineMode(conn_) == 0) raise(nullptr, "pipeline");
  // Per statement: the name of the statement prepared in this pipeline ahead of it
  // (its Parse sends a result of its own), or "".
  std::vector<std::string> preparing(statements.size());
  for (std::size_t i = 0; i < statements.size(); ++i) {
    const PipelineStatement& s = statements[i];
    const std::string text(s.sql);
    auto it = prepared_.find(text);
    if (it == prepared_.end() && prepared_.size() < kMaxPrepared) {
      const std::string name = "candor_" + std::to_string(prepared_count_++);
      if (PQsendPrepare(conn_, name.c_str(), text.c_str(), s.params->size(), nullptr) == 0) raise(nullptr, s.sql);
      it = prepared_.emplace(text, name).first;
      preparing[i] = name;
    }
    const int sent = it != prepared_.end()
                         ? PQsendQueryPrepared(conn_, it->second.c_str(), s.params->size(), s.params->values(),
                                               s.params->lengths(), s.params->formats(), /*resultFormat=*/0)
                         : PQsendQueryParams(conn_, text.c_str(), s.params->size(), nullptr, s.params->values(),
                                             s.params->lengths(), s.params->formats(), /*resultFormat=*/0);
    if (sent == 0) raise(nullptr, s.sql);  // the connection is unusable: raise closes it
  }
  if (PQpipelineSync(conn_) == 0) raise(nullptr, "pipeline sync");
  // ensures: the next result of the pipeline (one per request, then a null that ends it).
  const auto next_result = [this](std::string_view what) {
    PgResult r(PQgetResult(conn_));
    if (r.get() == nullptr) raise(nullptr, what);
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    return r;
  };
  std::vector<PgResult> results;
  results.reserve(statements.size());
  std::optional<std::size_t> failed;
  for (std::size_t i = 0; i < statements.size(); ++i) {
    if (!preparing[i].empty()) {
      PgResult parsed = next_result(statements[i].sql);
      // Not prepared (an earlier failure skipped it, or it failed): forget the name.
      if (PQresultStatus(parsed.get()) != PGRES_COMMAND_OK) {
        prepared_.erase(std::string(statements[i].sql));
        if (!failed) failed = i;
        if (PQresultStatus(parsed.get()) == PGRES_FATAL_ERROR) {
          results.push_back(std::move(parsed));
          (void)next_result(statements[i].sql);  // the execution, skipped
          continue;
        }
      }
    }
    PgResult r = next_result(statements[i].sql);
    const ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !failed) failed = i;
    results.push_back(std::move(r));
  }
  // The sync point; then the connection may leave pipeline mode.
  for (;;) {
    PgResult r(PQgetResult(conn_));
    if (r.get() == nullptr) raise(nullptr, "pipeline sync");
    if (PQresultStatus(r.get()) == PGRES_PIPELINE_SYNC) break;
  }
  if (PQexitPipelineMode(conn_) == 0) raise(nullptr, "pipeline");
  if (failed) raise(results[*failed].get(), statements[*failed].sql);
  return results;
}

std::optional<std::int64_t> PgConnection::query_int(std::string_view sql, const PgParams& params) {
  PgResult r = exec(sql, params);
  if (r.rows() == 0 || r.is_null(0, 0)) return std::nullopt;
  return r.int64(0, 0);
}

std::optional<std::string> PgConnection::query_text(std::string_view sql, const PgParams& params) {
  PgResult r = exec(sql, params);
  if (r.rows() == 0 || r.is_null(0, 0)) return std::nullopt;
  return r.text(0, 0);
}

// ------------------------------------------------------------- PgTransaction

PgTransaction::PgTransaction(PgConnection& db, Kind kind) : db_(db) {
  // Writers run at READ COMMITTED and serialise on the audit head row (locked
  // FOR UPDATE first thing), so each statement after the lock sees every
  // transaction committed before it. Readers get one snapshot for the call.
  db_.exec_script(kind == Kind::kWrite ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

PgTransaction::~PgTransaction() {
  if (open_ && db_.connected()) {
    PGresult* r = PQexec(db_.handle(), "ROLLBACK");  // best effort; a dead connection rolls back anyway
    PQclear(r);
  }
}

void PgTransaction::commit() {
  db_.exec_script("COMMIT");
  open_ = false;
}

}  // namespace candor::store_detail
