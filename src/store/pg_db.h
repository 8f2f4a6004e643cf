// Internal: a thin RAII layer over libpq for the PostgreSQL store.
//
// Every statement is sent with PQexecParams: parameters travel apart from the
// SQL text (no quoting, no injection), as text except bytea and the arrays of
// a multi-row insert (pg_driver.cpp), which are sent binary. Results come back
// as text (bytea as "\x" hex, floats in their shortest exact form, so a float
// survives the round trip).
//
// Failures throw StoreFailure: kStoreUnavailable when the server cannot be
// reached or the connection broke (the connection is then closed, and the
// caller reconnects later), kInvalidArgument for text that is not UTF-8,
// kAlreadyExists for a unique violation, kStoreError for anything else.
//
// Thread safety: none; PgStore serialises use of each connection under a mutex.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store_common.h"

namespace candor::store_detail {

class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result) {}
  PgResult(PgResult&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  PgResult& operator=(PgResult&& other) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult() { PQclear(result_); }

  const PGresult* get() const { return result_; }
  int rows() const { return PQntuples(result_); }
  // Rows affected by an INSERT / UPDATE / DELETE.
  std::int64_t affected() const;
  bool is_null(int row, int col) const { return PQgetisnull(result_, row, col) != 0; }
  std::string text(int row, int col) const;
  std::int64_t int64(int row, int col) const;  // 0 for NULL
  std::optional<std::int64_t> optional_int(int row, int col) const;
  double dbl(int row, int col) const;
  bool boolean(int row, int col) const;
  std::vector<std::uint8_t> bytes(int row, int col) const;  // a bytea column

 private:
  PGresult* result_;
};

// Statement parameters, $1 first.
class PgParams {
 public:
  PgParams& add(std::int64_t value);
  PgParams& add(int value) { return add(static_cast<std::int64_t>(value)); }
  PgParams& add(double value);
  PgParams& add(bool value);
  PgParams& add(std::string_view text);
  PgParams& add(const char* text) { return add(std::string_view(text)); }
  PgParams& add(const std::string& text) { return add(std::string_view(text)); }
  PgParams& add(std::optional<std::int64_t> value);
  PgParams& add_null();
  PgParams& add_bytes(std::span<const std::uint8_t> bytes);
  // A value already in its type's binary wire format (a bytea's bytes, an array as
  // array_recv reads it); the statement must give the parameter's type.
  PgParams& add_binary(std::string encoded);

  int size() const { return static_cast<int>(values_.size()); }
  // ensures: valid until the next add or until this object is destroyed.
  const char* const* values() const;
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  void push(std::string value, bool is_null, int format);
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
  // Pointers into values_, made by values() (not per add: a statement of n
  // parameters then costs O(n), not O(n^2)), for the values_ buffer they were
  // made from: a copy of this object makes its own.
  mutable std::vector<const char*> pointers_;
  mutable const std::string* pointers_for_ = nullptr;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

class PgConnection {
 public:
  // Does not connect; connect() does.
  explicit PgConnection(std::string uri) : uri_(std::move(uri)) {}
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;
  ~PgConnection() { close(); }

  // ensures: connected, or throws StoreFailure(kStoreUnavailable, or kStoreError for a bad URI).
  void connect();
  bool connected() const { return conn_ != nullptr; }
  void close();

  // requires: connected() (else throws StoreFailure(kStoreUnavailable)).
  PgResult exec(std::string_view sql, const PgParams& params = {});
  // Several statements, no parameters (schema scripts).
  void exec_script(std::string_view sql);
  // Sends every statement at once and waits once (libpq pipeline mode): one
  // round trip. A failing statement skips those after it (an open transaction
  // is then aborted and must be rolled back). Each statement text is prepared
  // once per connection (its Parse travels in the same pipeline) and executed
  // by name after that: the server parses and plans it once, not per call.
  // ensures: one result per statement; throws as exec() for the first that failed.
  struct PipelineStatement {
    std::string_view sql;
    const PgParams* params;
  };
  std::vector<PgResult> exec_pipeline(const std::vector<PipelineStatement>& statements);
  // Runs `sql` (one row, one column): the integer / text, nullopt when no row or NULL.
  std::optional<std::int64_t> query_int(std::string_view sql, const PgParams& params = {});
  std::optional<std::string> query_text(std::string_view sql, const PgParams& params = {});

  PGconn* handle() const { return conn_; }
  // A URI with any password removed, for messages.
  std::string label() const;
  // When the server closed the connection or cannot be reached, closes it and
  // throws kStoreUnavailable; otherwise throws the mapped error. Public for the
  // LISTEN loop, which reads the socket itself.
  [[noreturn]] void raise(const PGresult* result, std::string_view what);

 private:
  std::string uri_;
  PGconn* conn_ = nullptr;
  // Statement texts prepared on this connection (exec_pipeline), and their names. Cleared
  // with the connection: prepared statements live as long as the server session.
  std::unordered_map<std::string, std::string> prepared_;
  std::uint64_t prepared_count_ = 0;  // names are never reused within a session
};

// Round trips to the server made by every connection of this process so far
// (each exec, exec_script, exec_pipeline is one): the store tests count them.
std::uint64_t pg_round_trips() noexcept;

// BEGIN ... COMMIT; rolls back on destruction unless committed.
class PgTransaction {
 public:
  enum class Kind { kWrite, kRead };
  explicit PgTransaction(PgConnection& db, Kind kind = Kind::kWrite);
  PgTransaction(const PgTransaction&) = delete;
  PgTransaction& operator=(const PgTransaction&) = delete;
  ~PgTransaction();
  void commit();

 private:
  PgConnection& db_;
  bool open_ = true;
};

}  // namespace candor::store_detail
