#include "api_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include <sodium.h>
#include <sqlite3.h>

#include "candor/audit.h"

namespace candor::server {
namespace {

using Hash = std::array<unsigned char, 32>;

constexpr std::string_view kPrefix = "cnd_";
constexpr auto kMissRefresh = std::chrono::seconds(1);
constexpr auto kMaxAge = std::chrono::seconds(5);
// The record holding the pepper's check value. Its name starts with a dot, which
// key names may not, so it never collides with a key and is never listed.
constexpr std::string_view kPepperCheckName = ".pepper-check";
constexpr std::string_view kPepperCheckInput = "candor api key pepper check v1";

bool valid_key_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

std::string to_hex(const Hash& h) {
  char out[sizeof(Hash) * 2 + 1];
  sodium_bin2hex(out, sizeof out, h.data(), h.size());
  return out;
}

std::optional<Hash> from_hex(std::string_view hex) {
  Hash h{};
  std::size_t len = 0;
  if (sodium_hex2bin(h.data(), h.size(), hex.data(), hex.size(), nullptr, &len, nullptr) != 0 || len != h.size()) {
    return std::nullopt;
  }
  return h;
}

Hash keyed_hash(std::string_view text, const Hash& pepper) {
  Hash out{};
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(text.data()), text.size(),
                     pepper.data(), pepper.size());
  return out;
}

std::string scopes_json(const ApiKey& k) {
  return nlohmann::json{{"collections", k.collections},
                        {"operations", k.operations},
                        {"searches_per_minute", k.searches_per_minute},
                        {"searches_per_day", k.searches_per_day}}
      .dump();
}

std::vector<std::string> strings_of(const nlohmann::json& j, const char* field) {
  std::vector<std::string> out;
  if (!j.is_object() || !j.contains(field) || !j[field].is_array()) return out;
  for (const auto& v : j[field]) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::optional<Hash>> read_pepper(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::optional<Hash>{};
  Hash pepper{};
  in.read(reinterpret_cast<char*>(pepper.data()), static_cast<std::streamsize>(pepper.size()));
  if (in.gcount() != static_cast<std::streamsize>(pepper.size())) {
    return Error{ErrorCode::kIntegrityError, file.string() + " is truncated: restore it from another node or a backup"};
  }
  return std::optional<Hash>(pepper);
}

// 32 random bytes in a new 0600 file (never overwriting one).
Result<Hash> create_pepper(const std::filesystem::path& file) {
  Hash pepper{};
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

// Keys of the table `server_api_keys` that the server kept in a SQLite store's
// file before keys moved into the Store: copied over (their hashes were made
// with the same pepper file), then the table is dropped so that a key deleted
// later cannot come back.
Status move_legacy_keys(Store& store, const std::filesystem::path& file) {
  std::error_code ec;
  if (file.empty() || !std::filesystem::exists(file, ec)) return ok_status();
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return ok_status();  // not ours to judge: open_store already accepted the file
  }
  sqlite3_busy_timeout(db, 5000);
  Status result = ok_status();
  sqlite3_stmt* st = nullptr;
  const char* sql =
      "SELECT name, hash, collections, operations, searches_per_minute, searches_per_day, created_at_ms"
      " FROM server_api_keys";
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK) {  // no table: nothing to move
    bool all_moved = true;
    while (sqlite3_step(st) == SQLITE_ROW) {
      const void* blob = sqlite3_column_blob(st, 1);
      if (blob == nullptr || sqlite3_column_bytes(st, 1) != static_cast<int>(sizeof(Hash))) continue;
      Hash h{};
      std::copy_n(static_cast<const unsigned char*>(blob), h.size(), h.begin());
      auto text = [&](int i) {
        const auto* p = sqlite3_column_text(st, i);
        return p != nullptr ? std::string(reinterpret_cast<const char*>(p)) : std::string();
      };
      ApiKey k;
      k.name = text(0);
      k.collections = strings_of(nlohmann::json{{"v", nlohmann::json::parse(text(2), nullptr, false)}}, "v");
      k.operations = strings_of(nlohmann::json{{"v", nlohmann::json::parse(text(3), nullptr, false)}}, "v");
      k.searches_per_minute = sqlite3_column_int(st, 4);
      k.searches_per_day = sqlite3_column_int(st, 5);
      ApiKeyRecord r{k.name, to_hex(h), scopes_json(k),
                     TimePoint(std::chrono::milliseconds(sqlite3_column_int64(st, 6)))};
      auto put = store.put_api_key(r, {"server", "API key moved from server_api_keys into the store"});
      if (!put && put.error().code != ErrorCode::kAlreadyExists) {
        result = put.error();
        all_moved = false;
        break;
      }
    }
    sqlite3_finalize(st);
    if (all_moved) sqlite3_exec(db, "DROP TABLE IF EXISTS server_api_keys", nullptr, nullptr, nullptr);
  }
  sqlite3_close(db);
  return result;
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

bool ApiKey::full_admin() const { return all_collections() && allows("admin"); }

bool ApiKey::within_scope(const ApiKey& other) const {
  if (all_collections()) return true;
  if (other.all_collections()) return false;
  return std::all_of(other.collections.begin(), other.collections.end(),
                     [&](const std::string& c) { return sees_collection(c); });
}

bool ApiKey::covers(const ApiKey& other) const {
  if (full_admin()) return true;
  return within_scope(other) &&
         std::all_of(other.operations.begin(), other.operations.end(),
                     [&](const std::string& op) { return allows(op); }) &&
         other.searches_per_minute <= searches_per_minute && other.searches_per_day <= searches_per_day;
}

nlohmann::json api_key_to_json(const ApiKey& k) {
  return {{"name", k.name},
          {"collections", k.collections},
          {"operations", k.operations},
          {"searches_per_minute", k.searches_per_minute},
          {"searches_per_day", k.searches_per_day},
          {"created_at", format_time(TimePoint(std::chrono::milliseconds(k.created_at_ms)))}};
}

std::string generate_key_secret() {
  std::array<unsigned char, 32> raw{};
  randombytes_buf(raw.data(), raw.size());
  char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, raw.data(), raw.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw.data(), raw.size());
  return std::string(kPrefix) + b64;
}

Result<KeyStoreOptions> key_store_options(std::string_view store_uri, const std::filesystem::path& pepper_file,
                                          const std::filesystem::path& key_file) {
  KeyStoreOptions out;
  out.pepper_file = pepper_file;
  if (store_uri.find("://") == std::string_view::npos) {
    constexpr std::string_view kScheme = "sqlite:";
    if (store_uri.substr(0, kScheme.size()) == kScheme) store_uri.remove_prefix(kScheme.size());
    out.legacy_sqlite_file = std::filesystem::path(store_uri);
    if (out.pepper_file.empty()) out.pepper_file = std::filesystem::path(std::string(store_uri) + ".apikeys-pepper");
    return out;
  }
  if (out.pepper_file.empty() && !key_file.empty()) {
    out.pepper_file = key_file;
    out.pepper_file.replace_extension(".apikeys-pepper");
  }
  if (out.pepper_file.empty()) {
    return Error{ErrorCode::kInvalidArgument,
                 "a PostgreSQL store needs --pepper-file (the API key pepper, the same file on every node) or "
                 "--key-file (the pepper is kept beside it)"};
  }
  return out;
}

Result<std::unique_ptr<KeyStore>> KeyStore::open(Store& store, const KeyStoreOptions& options) {
  if (sodium_init() < 0) return Error{ErrorCode::kInternal, "libsodium failed to initialise"};
  if (options.pepper_file.empty()) return Error{ErrorCode::kInvalidArgument, "no API key pepper file given"};
  if (auto moved = move_legacy_keys(store, options.legacy_sqlite_file); !moved) return moved.error();
  auto records = store.list_api_keys();
  if (!records) return records.error();
  const auto check = std::find_if(records->begin(), records->end(),
                                  [](const ApiKeyRecord& r) { return r.name == kPepperCheckName; });
  const bool has_keys = static_cast<std::size_t>(check != records->end() ? 1 : 0) < records->size();

  auto existing = read_pepper(options.pepper_file);
  if (!existing) return existing.error();
  std::optional<Hash> pepper = *existing;
  if (!pepper) {
    if (has_keys && !options.require_pepper) {
      std::unique_ptr<KeyStore> ks(new KeyStore(store));
      return ks;  // list and remove only
    }
    if (has_keys) {
      return Error{ErrorCode::kNotFound,
                   "the store holds API keys but their pepper file " + options.pepper_file.string() +
                       " is missing: copy it from another node (every node needs the same file); if it is lost, "
                       "delete the keys (`candor key delete`) and create new ones"};
    }
    auto created = create_pepper(options.pepper_file);
    if (!created) return created.error();
    pepper = *created;
  }
  const std::string check_hex = to_hex(keyed_hash(kPepperCheckInput, *pepper));
  if (check != records->end() && check->hash_hex != check_hex) {
    if (has_keys) {
      sodium_memzero(pepper->data(), pepper->size());
      return Error{ErrorCode::kIntegrityError,
                   options.pepper_file.string() +
                       " is not the pepper this store's API keys were made with: copy the file from the node that "
                       "created them (--pepper-file)"};
    }
    // Only the check value of a pepper whose keys are all gone: adopt this one.
    if (auto st = store.delete_api_key(kPepperCheckName, {"server", "API key pepper replaced"}); !st) return st.error();
  }
  if (check == records->end() || check->hash_hex != check_hex) {
    auto put = store.put_api_key({std::string(kPepperCheckName), check_hex, "{}", TimePoint{}},
                                 {"server", "API key pepper check value"});
    if (!put && put.error().code != ErrorCode::kAlreadyExists) return put.error();
    if (!put) {  // another node, starting at the same moment, recorded its pepper first
      auto again = store.list_api_keys();
      if (!again) return again.error();
      for (const ApiKeyRecord& r : *again) {
        if (r.name == kPepperCheckName && r.hash_hex != check_hex) {
          return Error{ErrorCode::kIntegrityError, options.pepper_file.string() +
                                                       " differs from the pepper another node recorded a moment "
                                                       "ago: give every node the same file (--pepper-file)"};
        }
      }
    }
  }
  std::unique_ptr<KeyStore> ks(new KeyStore(store));
  ks->pepper_ = *pepper;
  sodium_memzero(pepper->data(), pepper->size());
  std::lock_guard lock(ks->mutex_);
  auto rows = ks->load_rows();
  if (!rows) return rows.error();
  ks->cache_ = std::move(*rows);
  ks->cache_loaded_ = std::chrono::steady_clock::now();
  return ks;
}

KeyStore::~KeyStore() {
  if (pepper_) sodium_memzero(pepper_->data(), pepper_->size());
}

std::array<unsigned char, 32> KeyStore::hash_of(std::string_view secret) const {
  return keyed_hash(secret, *pepper_);
}

Result<std::vector<KeyStore::Row>> KeyStore::load_rows() {
  auto records = store_.list_api_keys();
  if (!records) return records.error();
  std::vector<Row> rows;
  for (const ApiKeyRecord& rec : *records) {
    if (rec.name == kPepperCheckName) continue;
    auto hash = from_hex(rec.hash_hex);
    if (!hash) continue;
    Row r;
    r.hash = *hash;
    r.key.name = rec.name;
    const auto scopes = nlohmann::json::parse(rec.scopes_json, nullptr, false);
    r.key.collections = strings_of(scopes, "collections");
    r.key.operations = strings_of(scopes, "operations");
    if (scopes.is_object()) {
      r.key.searches_per_minute = scopes.value("searches_per_minute", 0);
      r.key.searches_per_day = scopes.value("searches_per_day", 0);
    }
    r.key.created_at_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(rec.created_at.time_since_epoch()).count();
    rows.push_back(std::move(r));
  }
  return rows;
}

Result<std::string> KeyStore::create(const ApiKey& spec, const ApiKey* by, const AuditContext& ctx) {
  if (!valid_key_name(spec.name)) {
    return Error{ErrorCode::kInvalidArgument, "key name must match [A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}"};
  }
  if (spec.collections.empty()) return Error{ErrorCode::kInvalidArgument, "collections: give names or [\"*\"]"};
  if (spec.operations.empty()) return Error{ErrorCode::kInvalidArgument, "operations: give at least one"};
  for (const auto& op : spec.operations) {
    if (std::find(kOperations.begin(), kOperations.end(), op) == kOperations.end()) {
      std::string known;
      for (std::string_view k : kOperations) known.append(known.empty() ? "" : ", ").append(k);
      return Error{ErrorCode::kInvalidArgument, "unknown operation '" + op + "' (" + known + ")"};
    }
  }
  if (spec.searches_per_minute < 0 || spec.searches_per_day < 0) {
    return Error{ErrorCode::kInvalidArgument, "search budgets must be >= 0"};
  }
  if (by != nullptr && !by->covers(spec)) {
    return Error{ErrorCode::kPermissionDenied,
                 "a key may create only a key within its own collections, operations and search budgets"};
  }
  if (!pepper_) return Error{ErrorCode::kNotFound, "the API key pepper file is missing: keys cannot be created"};
  std::string secret = generate_key_secret();
  std::lock_guard lock(mutex_);
  auto put = store_.put_api_key({spec.name, to_hex(hash_of(secret)), scopes_json(spec), TimePoint{}}, ctx);
  if (!put) return put.error();
  auto rows = load_rows();
  if (rows) cache_ = std::move(*rows), cache_loaded_ = std::chrono::steady_clock::now();
  return secret;
}

Result<std::vector<ApiKey>> KeyStore::list(const ApiKey* by) {
  std::lock_guard lock(mutex_);
  auto rows = load_rows();
  if (!rows) return rows.error();
  std::vector<ApiKey> keys;
  for (auto& r : *rows) {
    if (by == nullptr || by->within_scope(r.key)) keys.push_back(std::move(r.key));
  }
  return keys;
}

Result<std::size_t> KeyStore::count() {
  auto keys = list(nullptr);
  if (!keys) return keys.error();
  return keys->size();
}

Status KeyStore::remove(std::string_view name, const ApiKey* by, const AuditContext& ctx) {
  // One message for a missing key and one outside `by`'s scope (the store's own wording).
  const Error missing{ErrorCode::kNotFound, "no API key named '" + std::string(name) + "'"};
  if (name == kPepperCheckName) return missing;
  std::lock_guard lock(mutex_);
  if (by != nullptr) {
    auto rows = load_rows();
    if (!rows) return rows.error();
    const auto it = std::find_if(rows->begin(), rows->end(), [&](const Row& r) { return r.key.name == name; });
    if (it == rows->end() || !by->within_scope(it->key)) return missing;
  }
  if (auto st = store_.delete_api_key(name, ctx); !st) return st.error();
  auto rows = load_rows();
  if (rows) cache_ = std::move(*rows), cache_loaded_ = std::chrono::steady_clock::now();
  return ok_status();
}

Result<std::optional<ApiKey>> KeyStore::verify(std::string_view secret) {
  if (!pepper_ || secret.size() < kPrefix.size() || secret.substr(0, kPrefix.size()) != kPrefix ||
      secret.size() > 256) {
    return std::optional<ApiKey>{};
  }
  const auto hash = hash_of(secret);
  std::lock_guard lock(mutex_);
  auto refresh = [&](std::chrono::steady_clock::time_point now) {
    auto rows = load_rows();
    if (rows) {
      cache_ = std::move(*rows);
      last_refresh_error_.reset();
    } else {
      last_refresh_error_ = rows.error();
    }
    cache_loaded_ = now;  // a failed refresh waits its turn too: an unreachable store is not hammered
  };
  // Keys deleted on another node stop working within kMaxAge.
  if (std::chrono::steady_clock::now() - cache_loaded_ > kMaxAge) refresh(std::chrono::steady_clock::now());
  for (int attempt = 0; attempt < 2; ++attempt) {
    const Row* found = nullptr;
    // Every row is compared, match or not: the time taken does not depend on which key matched.
    for (const auto& row : cache_) {
      if (sodium_memcmp(row.hash.data(), hash.data(), hash.size()) == 0) found = &row;
    }
    if (found != nullptr) return std::optional<ApiKey>(found->key);
    const auto now = std::chrono::steady_clock::now();
    if (attempt > 0 || now - cache_loaded_ < kMissRefresh) break;
    refresh(now);
  }
  // Not among the keys we could read: if the store could not be read, we do not know.
  if (last_refresh_error_ && last_refresh_error_->code == ErrorCode::kStoreUnavailable) return *last_refresh_error_;
  return std::optional<ApiKey>{};
}

}  // namespace candor::server
