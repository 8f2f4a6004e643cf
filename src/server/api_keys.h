// API keys: issuing, verifying and scoping the credentials of the REST service.
//
// A key is "cnd_" followed by 32 random bytes in unpadded base64url (47 characters).
// Only a keyed BLAKE2b hash of it is stored (crypto_generichash, 32 bytes), keyed
// with a 32-byte server secret ("pepper") kept in a 0600 file outside the
// database, so a copy of the database alone does not let anyone test guesses
// offline. Keys are long random strings, so a fast hash suffices (no password
// stretching); comparisons use sodium_memcmp and scan every key, so timing does
// not say how close a guess was.
//
// Storage: the Store's API-key records (Store::put_api_key and friends), so that
// every node sharing a store accepts the same keys. Every node must therefore
// hold the same pepper file: the store keeps a check value of the pepper (the
// record named ".pepper-check", hidden from list()) and a node whose pepper
// differs is refused at start-up instead of answering 401 to every key.
// Keys from before the move (the table `server_api_keys` in a SQLite store's
// file) are copied into the store once and the table dropped.
//
// Delegation (issue 16): a key acting through the API may issue only a key it
// covers (ApiKey::covers), and may list or delete only keys whose collections lie
// within its own (ApiKey::within_scope). KeyStore::create/list/remove apply both
// rules themselves, given the acting key, so no route can forget them; the
// operator at a shell (`candor key ...`, `by` = nullptr) is not limited.
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

#include <nlohmann/json.hpp>

#include "candor/result.h"
#include "candor/store.h"

namespace candor::server {

// The operations a key may be granted (docs/api.md "Scopes"). "metrics" reads the
// per-collection series of /metrics for the key's collections; "candidates": a search may
// also return the subjects below the threshold (routes_collections.cpp).
// "streams": create, run and watch camera streams (/v1/streams; creating one also needs
// "search", since its decisions are searches of the creating key).
// "libraries": the photo-library routes (/v1/libraries, routes_library.cpp) of the
// libraries the key's collections name (all with "*").
inline constexpr std::array<std::string_view, 11> kOperations = {"detect",   "compare", "enroll",     "search",
                                                                   "consents", "audit",   "metrics",    "admin",
                                                                   "candidates", "streams", "libraries"};

struct ApiKey {
  std::string name;                      // [A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}; the audit actor is "key:<name>"
  std::vector<std::string> collections;  // names, or {"*"}
  std::vector<std::string> operations;   // from kOperations
  int searches_per_minute = 60;
  int searches_per_day = 10'000;
  std::int64_t created_at_ms = 0;

  // admin implies every operation (on the key's collections only).
  bool allows(std::string_view operation) const;
  bool all_collections() const;
  bool sees_collection(std::string_view collection) const;
  // admin over "*": the root of delegation, equal to the operator's `candor key`.
  bool full_admin() const;
  // Whether every collection of `other` is one of this key's ("*" only within "*").
  // A key lists and deletes only keys within its scope.
  bool within_scope(const ApiKey& other) const;
  // Whether this key may issue `other`: a full admin may issue any key; any other key
  // only one within its scope, whose operations it holds itself (admin implies all,
  // but only within its collections, which within_scope ensures) and whose budgets
  // are no larger than its own (else a key could mint itself a bigger budget). The
  // full admin is exempt from the budget ceiling: it can already replace every key,
  // so a ceiling would protect nothing, and its own budget is for its own searches.
  bool covers(const ApiKey& other) const;
};

// {name, collections, operations, searches_per_minute, searches_per_day, created_at}:
// one shape for GET /v1/keys and `candor key list` (never the secret).
nlohmann::json api_key_to_json(const ApiKey& key);

struct KeyStoreOptions {
  // The pepper. Created (mode 0600) only when missing and the store holds no key;
  // when the store holds keys the file must be the one they were made with.
  std::filesystem::path pepper_file;
  // A SQLite store's file: keys of the former table `server_api_keys` there are
  // moved into the store. Empty for other stores.
  std::filesystem::path legacy_sqlite_file;
  // false: open without the pepper if it is missing (list and remove work, create
  // and verify refuse) — so the keys of a lost pepper can still be deleted.
  bool require_pepper = true;
};

class KeyStore {
 public:
  // requires: `store` outlives the KeyStore.
  // ensures: kIntegrityError when the pepper file is not the store's; kNotFound
  //          when it is missing while the store holds keys; store errors.
  static Result<std::unique_ptr<KeyStore>> open(Store& store, const KeyStoreOptions& options);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // `by`: the key acting (through the API), or nullptr for the operator (CLI, bootstrap).
  // ensures: the new key's secret (shown once, never stored); kAlreadyExists for a taken
  //          name; kInvalidArgument for a bad name, scope or budget; kPermissionDenied
  //          when `by` does not cover the new key (ApiKey::covers). Audited as ctx.
  Result<std::string> create(const ApiKey& spec, const ApiKey* by, const AuditContext& ctx);
  // ensures: every key (nullptr), or those within `by`'s scope.
  Result<std::vector<ApiKey>> list(const ApiKey* by);
  // ensures: kNotFound when there is no such key, and (with the same message) when it
  //          is outside `by`'s scope, so a scoped key cannot probe for other keys' names.
  Status remove(std::string_view name, const ApiKey* by, const AuditContext& ctx);
  Result<std::size_t> count();

  // The key whose secret is `secret`, or nullopt. Reads a cached copy of the keys,
  // refreshed after changes made here, every few seconds, and at most once a second
  // on a miss (keys created on another node or by `candor key create`).
  // ensures: kStoreUnavailable when the secret is not in the cache and the store
  //          cannot be read to look further (the caller answers 503, not 401).
  Result<std::optional<ApiKey>> verify(std::string_view secret);

 private:
  KeyStore(Store& store) : store_(store) {}
  struct Row {
    ApiKey key;
    std::array<unsigned char, 32> hash{};
  };
  Result<std::vector<Row>> load_rows();  // requires: mutex_ held
  std::array<unsigned char, 32> hash_of(std::string_view secret) const;

  Store& store_;
  std::mutex mutex_;
  std::optional<std::array<unsigned char, 32>> pepper_;
  std::vector<Row> cache_;
  std::chrono::steady_clock::time_point cache_loaded_{};
  std::optional<Error> last_refresh_error_;  // of the last refresh; cleared by a good one
};

// Where the keys of the store at `store_uri` live: `pepper_file` when given; else
// "<db>.apikeys-pepper" for SQLite (whose file may hold keys of the former table),
// or, for PostgreSQL, `key_file` with its extension replaced by ".apikeys-pepper".
// ensures: kInvalidArgument for a PostgreSQL store given neither file.
Result<KeyStoreOptions> key_store_options(std::string_view store_uri, const std::filesystem::path& pepper_file,
                                          const std::filesystem::path& key_file);

// ensures: "cnd_" + 43 base64url characters from 32 random bytes.
std::string generate_key_secret();

}  // namespace candor::server
