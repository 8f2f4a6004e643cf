// API keys: issuing, verifying and scoping the credentials of the REST service.
//
// A key is "cnd_" followed by 32 random bytes in unpadded base64url (47 characters).
// Only a keyed BLAKE2b hash of it is stored (crypto_generichash, 32 bytes), keyed
// with a 32-byte server secret ("pepper") kept in a file beside the database
// (<db>.apikeys-pepper, mode 0600), so a copy of the database alone does not
// let anyone test guesses offline. Keys are long random strings, so a fast hash
// suffices (no password stretching); comparisons use sodium_memcmp and scan
// every key, so timing does not say how close a guess was.
//
// Storage: the table `server_api_keys` in the store's own SQLite file, through a
// connection of this class (the Store interface knows nothing of keys). WAL mode
// and a busy timeout let it live beside the Store's connection.
//
// Thread safety: all members may be called concurrently (one mutex).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"

struct sqlite3;

namespace candor::server {

// The operations a key may be granted (docs/api.md "Scopes").
inline constexpr std::array<std::string_view, 7> kOperations = {"detect", "compare", "enroll", "search",
                                                                  "consents", "audit", "admin"};

struct ApiKey {
  std::string name;                      // [A-Za-z0-9_.-]{1,64}; the audit actor is "key:<name>"
  std::vector<std::string> collections;  // names, or {"*"}
  std::vector<std::string> operations;   // from kOperations
  int searches_per_minute = 60;
  int searches_per_day = 10'000;
  std::int64_t created_at_ms = 0;

  // admin implies every operation.
  bool allows(std::string_view operation) const;
  bool all_collections() const;
  bool sees_collection(std::string_view collection) const;
};

class KeyStore {
 public:
  // Opens (creating the table and the pepper file if missing) the keys of the
  // SQLite database at `db_path`.
  static Result<std::unique_ptr<KeyStore>> open(const std::filesystem::path& db_path);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // ensures: the new key's secret (shown once, never stored); kAlreadyExists for a taken
  //          name; kInvalidArgument for a bad name, scope or budget.
  Result<std::string> create(const ApiKey& spec);
  Result<std::vector<ApiKey>> list();
  // ensures: kNotFound when there is no such key.
  Status remove(std::string_view name);
  Result<std::size_t> count();

  // The key whose secret is `secret`, or nullopt. Reads a cached copy of the table,
  // refreshed after changes made here and at most once a second on a miss (keys
  // created by `candor key create` while the server runs).
  std::optional<ApiKey> verify(std::string_view secret);

 private:
  KeyStore() = default;
  struct Row {
    ApiKey key;
    std::array<unsigned char, 32> hash{};
  };
  Result<std::vector<Row>> load_rows();  // requires: mutex_ held
  std::array<unsigned char, 32> hash_of(std::string_view secret) const;

  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  std::array<unsigned char, 32> pepper_{};
  std::vector<Row> cache_;
  std::chrono::steady_clock::time_point cache_loaded_{};
};

// ensures: "cnd_" + 43 base64url characters from 32 random bytes.
std::string generate_key_secret();

}  // namespace candor::server
