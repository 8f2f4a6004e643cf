#include "api_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>
#include <sodium.h>
#include <sqlite3.h>

namespace candor::server {
namespace {

constexpr std::string_view kPrefix = "cnd_";
constexpr auto kMissRefresh = std::chrono::seconds(1);
constexpr auto kMaxAge = std::chrono::seconds(5);

bool valid_key_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

Error db_error(sqlite3* db, const std::string& what) {
  return Error{ErrorCode::kStoreError, what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "no database")};
}

// RAII for one prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  sqlite3_stmt* get() const { return stmt_; }
  explicit operator bool() const { return stmt_ != nullptr; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = sqlite3_column_text(s, i);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s, i)))
                      : std::string();
}

// The pepper: 32 random bytes in a 0600 file beside the database. Created on first use;
// if it is lost, the stored hashes can no longer be matched and keys must be re-issued
// (fail closed, never a silent fallback to an unkeyed hash).
Result<std::array<unsigned char, 32>> load_pepper(const std::filesystem::path& file) {
  std::array<unsigned char, 32> pepper{};
  std::ifstream in(file, std::ios::binary);
  if (in) {
    in.read(reinterpret_cast<char*>(pepper.data()), static_cast<std::streamsize>(pepper.size()));
    if (in.gcount() != static_cast<std::streamsize>(pepper.size())) {
      return Error{ErrorCode::kIntegrityError, file.string() + " is truncated: restore it, or delete it and re-issue every API key"};
    }
    return pepper;
  }
  randombytes_buf(pepper.data(), pepper.size());
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return Error{ErrorCode::kIoError, "cannot create " + file.string()};
  const auto written = ::write(fd, pepper.data(), pepper.size());
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (written != static_cast<ssize_t>(pepper.size()) || !synced) {
    return Error{ErrorCode::kIoError, "cannot write " + file.string()};
  }
  return pepper;
}

}  // namespace

bool ApiKey::allows(std::string_view operation) const {
  return std::any_of(operations.begin(), operations.end(),
                     [&](const std::string& op) { return op == operation || op == "admin"; });
}

bool ApiKey::all_collections() const {
  return std::find(collections.begin(), collections.end(), "*") != collections.end();
}

bool ApiKey::sees_collection(std::string_view collection) const {
  return all_collections() || std::find(collections.begin(), collections.end(), collection) != collections.end();
}

std::string generate_key_secret() {
  std::array<unsigned char, 32> raw{};
  randombytes_buf(raw.data(), raw.size());
  char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, raw.data(), raw.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw.data(), raw.size());
  return std::string(kPrefix) + b64;
}

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::filesystem::path& db_path) {
  if (sodium_init() < 0) return Error{ErrorCode::kInternal, "libsodium failed to initialise"};
  std::unique_ptr<KeyStore> ks(new KeyStore());
  auto pepper = load_pepper(std::filesystem::path(db_path.string() + ".apikeys-pepper"));
  if (!pepper) return pepper.error();
  ks->pepper_ = *pepper;
  if (sqlite3_open_v2(db_path.c_str(), &ks->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    return db_error(ks->db_, "cannot open " + db_path.string());
  }
  sqlite3_busy_timeout(ks->db_, 5000);
  const char* ddl =
      "CREATE TABLE IF NOT EXISTS server_api_keys ("
      " name TEXT PRIMARY KEY,"
      " hash BLOB NOT NULL,"
      " collections TEXT NOT NULL,"
      " operations TEXT NOT NULL,"
      " searches_per_minute INTEGER NOT NULL,"
      " searches_per_day INTEGER NOT NULL,"
      " created_at_ms INTEGER NOT NULL)";
  if (sqlite3_exec(ks->db_, ddl, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return db_error(ks->db_, "cannot create the API key table");
  }
  std::lock_guard lock(ks->mutex_);
  auto rows = ks->load_rows();
  if (!rows) return rows.error();
  ks->cache_ = std::move(*rows);
  ks->cache_loaded_ = std::chrono::steady_clock::now();
  return ks;
}

KeyStore::~KeyStore() {
  sodium_memzero(pepper_.data(), pepper_.size());
  if (db_ != nullptr) sqlite3_close(db_);
}

std::array<unsigned char, 32> KeyStore::hash_of(std::string_view secret) const {
  std::array<unsigned char, 32> out{};
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                     pepper_.data(), pepper_.size());
  return out;
}

Result<std::vector<KeyStore::Row>> KeyStore::load_rows() {
  Stmt s(db_,
         "SELECT name, hash, collections, operations, searches_per_minute, searches_per_day, created_at_ms"
         " FROM server_api_keys ORDER BY name");
  if (!s) return db_error(db_, "cannot read API keys");
  std::vector<Row> rows;
  int rc = 0;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    Row r;
    r.key.name = column_text(s.get(), 0);
    const void* blob = sqlite3_column_blob(s.get(), 1);
    if (blob == nullptr || sqlite3_column_bytes(s.get(), 1) != static_cast<int>(r.hash.size())) continue;
    std::copy_n(static_cast<const unsigned char*>(blob), r.hash.size(), r.hash.begin());
    auto cols = nlohmann::json::parse(column_text(s.get(), 2), nullptr, false);
    auto ops = nlohmann::json::parse(column_text(s.get(), 3), nullptr, false);
    if (cols.is_array()) {
      for (const auto& c : cols) {
        if (c.is_string()) r.key.collections.push_back(c.get<std::string>());
      }
    }
    if (ops.is_array()) {
      for (const auto& o : ops) {
        if (o.is_string()) r.key.operations.push_back(o.get<std::string>());
      }
    }
    r.key.searches_per_minute = sqlite3_column_int(s.get(), 4);
    r.key.searches_per_day = sqlite3_column_int(s.get(), 5);
    r.key.created_at_ms = sqlite3_column_int64(s.get(), 6);
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return db_error(db_, "cannot read API keys");
  return rows;
}

Result<std::string> KeyStore::create(const ApiKey& spec) {
  if (!valid_key_name(spec.name)) {
    return Error{ErrorCode::kInvalidArgument, "key name must match [A-Za-z0-9_.-]{1,64}"};
  }
  if (spec.collections.empty()) return Error{ErrorCode::kInvalidArgument, "collections: give names or [\"*\"]"};
  if (spec.operations.empty()) return Error{ErrorCode::kInvalidArgument, "operations: give at least one"};
  for (const auto& op : spec.operations) {
    if (std::find(kOperations.begin(), kOperations.end(), op) == kOperations.end()) {
      return Error{ErrorCode::kInvalidArgument, "unknown operation '" + op +
                                                    "' (detect, compare, enroll, search, consents, audit, admin)"};
    }
  }
  if (spec.searches_per_minute < 0 || spec.searches_per_day < 0) {
    return Error{ErrorCode::kInvalidArgument, "search budgets must be >= 0"};
  }
  std::string secret = generate_key_secret();
  const auto hash = hash_of(secret);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::lock_guard lock(mutex_);
  Stmt s(db_,
         "INSERT INTO server_api_keys (name, hash, collections, operations, searches_per_minute, searches_per_day,"
         " created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (!s) return db_error(db_, "cannot store the API key");
  bind_text(s.get(), 1, spec.name);
  sqlite3_bind_blob(s.get(), 2, hash.data(), static_cast<int>(hash.size()), SQLITE_TRANSIENT);
  bind_text(s.get(), 3, nlohmann::json(spec.collections).dump());
  bind_text(s.get(), 4, nlohmann::json(spec.operations).dump());
  sqlite3_bind_int(s.get(), 5, spec.searches_per_minute);
  sqlite3_bind_int(s.get(), 6, spec.searches_per_day);
  sqlite3_bind_int64(s.get(), 7, now_ms);
  const int rc = sqlite3_step(s.get());
  if (rc == SQLITE_CONSTRAINT) return Error{ErrorCode::kAlreadyExists, "a key named '" + spec.name + "' exists"};
  if (rc != SQLITE_DONE) return db_error(db_, "cannot store the API key");
  auto rows = load_rows();
  if (rows) cache_ = std::move(*rows), cache_loaded_ = std::chrono::steady_clock::now();
  return secret;
}

Result<std::vector<ApiKey>> KeyStore::list() {
  std::lock_guard lock(mutex_);
  auto rows = load_rows();
  if (!rows) return rows.error();
  std::vector<ApiKey> keys;
  for (auto& r : *rows) keys.push_back(std::move(r.key));
  return keys;
}

Result<std::size_t> KeyStore::count() {
  auto keys = list();
  if (!keys) return keys.error();
  return keys->size();
}

Status KeyStore::remove(std::string_view name) {
  std::lock_guard lock(mutex_);
  Stmt s(db_, "DELETE FROM server_api_keys WHERE name = ?");
  if (!s) return db_error(db_, "cannot delete the API key");
  bind_text(s.get(), 1, name);
  if (sqlite3_step(s.get()) != SQLITE_DONE) return db_error(db_, "cannot delete the API key");
  if (sqlite3_changes(db_) == 0) return Error{ErrorCode::kNotFound, "no key named '" + std::string(name) + "'"};
  auto rows = load_rows();
  if (rows) cache_ = std::move(*rows), cache_loaded_ = std::chrono::steady_clock::now();
  return ok_status();
}

std::optional<ApiKey> KeyStore::verify(std::string_view secret) {
  if (secret.size() < kPrefix.size() || secret.substr(0, kPrefix.size()) != kPrefix || secret.size() > 256) {
    return std::nullopt;
  }
  const auto hash = hash_of(secret);
  std::lock_guard lock(mutex_);
  // Keys deleted by `candor key delete` in another process stop working within kMaxAge.
  if (std::chrono::steady_clock::now() - cache_loaded_ > kMaxAge) {
    auto rows = load_rows();
    if (rows) cache_ = std::move(*rows), cache_loaded_ = std::chrono::steady_clock::now();
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    const Row* found = nullptr;
    // Every row is compared, match or not: the time taken does not depend on which key matched.
    for (const auto& row : cache_) {
      if (sodium_memcmp(row.hash.data(), hash.data(), hash.size()) == 0) found = &row;
    }
    if (found != nullptr) return found->key;
    const auto now = std::chrono::steady_clock::now();
    if (attempt > 0 || now - cache_loaded_ < kMissRefresh) break;
    auto rows = load_rows();
    if (!rows) break;
    cache_ = std::move(*rows);
    cache_loaded_ = now;
  }
  return std::nullopt;
}

}  // namespace candor::server
