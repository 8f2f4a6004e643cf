// Runs the same store tests over SQLite and PostgreSQL.
//
// A TestDatabase is one fresh, empty database per test: a file in a temp dir
// for SQLite; for PostgreSQL a database created on the test cluster (the
// CTest fixture pg_cluster started by scripts/pg_cluster.sh) and dropped at
// the end. Its raw access bypasses the Store, for tampering.
//
// The cluster's URI comes from $CANDOR_TEST_PG_URI or the file the fixture
// writes (CANDOR_TEST_PG_URI_FILE, fixed at build time). Without either the
// PostgreSQL variants are skipped with a message, or fail under CI=true.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <fstream>
#include <string>
#include <unistd.h>

#include "store_test_util.h"

namespace candor::test {

class TestDatabase {
 public:
  virtual ~TestDatabase() = default;
  virtual std::string uri() const = 0;
  // Raw access; throw std::runtime_error on failure.
  virtual void exec(const std::string& sql) = 0;
  virtual std::int64_t scalar(const std::string& sql) = 0;
  // Drops the append-only guards on audit_log, as an attacker with write access would.
  virtual void drop_audit_guards() = 0;
  virtual bool is_postgresql() const = 0;
};

class SqliteTestDatabase final : public TestDatabase {
 public:
  SqliteTestDatabase() : path_(dir_.file("candor.db")) {}
  std::string uri() const override { return path_; }
  void exec(const std::string& sql) override { RawDb(path_).exec(sql); }
  std::int64_t scalar(const std::string& sql) override { return RawDb(path_).scalar(sql); }
  void drop_audit_guards() override {
    exec("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;");
  }
  bool is_postgresql() const override { return false; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::string path_;
};

// The test cluster's URI, or "" when there is none.
inline std::string test_pg_uri() {
  const char* env = std::getenv("CANDOR_TEST_PG_URI");
  if (env != nullptr && *env != '\0') return env;
#ifdef CANDOR_TEST_PG_URI_FILE
  std::ifstream in(CANDOR_TEST_PG_URI_FILE);
  std::string uri;
  if (in && std::getline(in, uri)) return uri;
#endif
  return {};
}

// `uri` with its database name replaced: postgresql://authority/DB?params.
inline std::string pg_uri_with_database(const std::string& uri, const std::string& db) {
  const std::size_t scheme = uri.find("://");
  if (scheme == std::string::npos) throw std::runtime_error("not a URI: " + uri);
  const std::size_t slash = uri.find('/', scheme + 3);
  const std::size_t query = uri.find('?', scheme + 3);
  const std::string authority = uri.substr(0, std::min(slash, query));
  const std::string params = query == std::string::npos ? "" : uri.substr(query);
  return authority + "/" + db + params;
}

// One libpq connection for raw SQL.
class RawPg {
 public:
  explicit RawPg(const std::string& uri) : conn_(PQconnectdb(uri.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      const std::string msg = PQerrorMessage(conn_);
      PQfinish(conn_);
      throw std::runtime_error("raw connect failed: " + msg);
    }
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  }
  ~RawPg() { PQfinish(conn_); }
  RawPg(const RawPg&) = delete;
  RawPg& operator=(const RawPg&) = delete;
  void exec(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    const ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      throw std::runtime_error("raw exec failed: " + std::string(PQerrorMessage(conn_)) + " in " + sql);
    }
  }
  std::int64_t scalar(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    std::int64_t v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
      v = std::stoll(PQgetvalue(r, 0, 0));
    } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      const std::string msg = PQerrorMessage(conn_);
      PQclear(r);
      throw std::runtime_error("raw query failed: " + msg + " in " + sql);
    }
    PQclear(r);
    return v;
  }

 private:
  PGconn* conn_;
};

class PgTestDatabase final : public TestDatabase {
 public:
  explicit PgTestDatabase(const std::string& server_uri) : server_uri_(server_uri) {
    static std::atomic<int> counter{0};
    name_ = "candor_t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    RawPg admin(server_uri_);
    admin.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    admin.exec("CREATE DATABASE " + name_);
    uri_ = pg_uri_with_database(server_uri_, name_);
  }
  ~PgTestDatabase() override {
    try {
      RawPg admin(server_uri_);
      admin.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception&) {
      // The cluster may be gone (a test stopped it); the fixture's cleanup deletes everything.
    }
  }
  std::string uri() const override { return uri_; }
  void exec(const std::string& sql) override { RawPg(uri_).exec(sql); }
  std::int64_t scalar(const std::string& sql) override { return RawPg(uri_).scalar(sql); }
  void drop_audit_guards() override { exec("ALTER TABLE audit_log DISABLE TRIGGER USER"); }
  bool is_postgresql() const override { return true; }
  // Ends every other session on this database (the stores' connections), as a
  // server restart or a network cut would.
  void terminate_connections() {
    RawPg admin(server_uri_);
    admin.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name_ +
               "' AND pid <> pg_backend_pid()");
  }
  const std::string& name() const { return name_; }
  const std::string& server_uri() const { return server_uri_; }

 private:
  std::string server_uri_;
  std::string name_;
  std::string uri_;
};

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// For INSTANTIATE_TEST_SUITE_P(..., ::testing::Values("sqlite", "postgresql"), backend_name).
inline std::string backend_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

// Base of the parameterised store tests: db_ is a fresh database of the
// backend under test, store_ a Store on it (clock_ injected).
class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  // The backend: the parameter, or its part before a '/' ("postgresql/case").
  std::string backend() const { return GetParam().substr(0, GetParam().find('/')); }

  void SetUp() override {
    if (backend() == "postgresql") {
      const std::string server = test_pg_uri();
      if (server.empty()) {
        if (running_in_ci()) {
          FAIL() << "PostgreSQL tests need the test cluster (ctest starts it: fixture pg_cluster) or "
                    "CANDOR_TEST_PG_URI; CI=true, so its absence is a failure";
        }
        GTEST_SKIP() << "no PostgreSQL test cluster (run under ctest, or set CANDOR_TEST_PG_URI)";
      }
      auto pg = std::make_unique<PgTestDatabase>(server);
      pg_ = pg.get();
      db_ = std::move(pg);
    } else {
      db_ = std::make_unique<SqliteTestDatabase>();
    }
    path_ = db_->uri();
  }

  bool is_pg() const { return db_ && db_->is_postgresql(); }

  // Key file location usable on both backends (PostgreSQL has no default).
  std::string key_dir_file(const std::string& name) const { return key_dir_.file(name); }

  TempDir key_dir_;
  TestClock clock_;
  std::unique_ptr<TestDatabase> db_;
  PgTestDatabase* pg_ = nullptr;  // set for the PostgreSQL backend
  std::string path_;              // the store URI
};

// A store of the parameter's backend on the test clock, holding the "staff" collection.
class StaffStoreTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    store_ = open_or_die(path_, options_with_key(&clock_));
    ASSERT_TRUE(store_->create_collection(staff_collection(), who()).ok());
  }

  std::unique_ptr<Store> store_;
};

}  // namespace candor::test
