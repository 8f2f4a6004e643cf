// Candor: the cryptographic primitives of the system of record (libsodium).
//
// - sha256_hex: content digests (consent evidence, image fingerprints, the
//   audit chain). Lower-case hex, 64 characters.
// - SecretKey: the 32-byte template key, held in guarded sodium memory and
//   wiped on destruction so it does not linger in freed heap pages.
// - TemplateCipher: seals face templates with XChaCha20-Poly1305-IETF. Each
//   record gets a fresh random 192-bit nonce (safe to draw at random, unlike
//   the 96-bit IETF ChaCha nonce), and the caller's associated data binds the
//   ciphertext to its row: a ciphertext copied into another row fails to open.
//
// Thread safety: the free functions are thread-safe. SecretKey and
// TemplateCipher are immutable after construction, so const use from many
// threads is safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"

namespace candor {

// Initialises libsodium once per process. Every function below calls it, so
// callers need not; it is exposed for programs that want to fail early.
// ensures: libsodium is usable, or throws std::runtime_error (a broken
// platform RNG is not an outcome the caller can handle).
void crypto_init();

// ensures: the lower-case hex SHA-256 of `bytes` (64 characters).
std::string sha256_hex(std::span<const std::byte> bytes);
std::string sha256_hex(std::string_view bytes);

// ensures: true iff `s` is exactly 64 lower-case hex digits (the form sha256_hex writes).
bool is_sha256_hex(std::string_view s) noexcept;

// Lower-case hex encoding of arbitrary bytes.
std::string to_hex(std::span<const std::uint8_t> bytes);

// The 32-byte secret that encrypts templates.
class SecretKey {
 public:
  static constexpr std::size_t kSize = 32;

  // ensures: a fresh key from the OS CSPRNG.
  static SecretKey generate();
  // Parses 64 hex digits (either case); surrounding whitespace is ignored so a
  // key file ending in a newline reads fine.
  // ensures: kInvalidArgument when `hex` is not exactly 32 bytes of hex.
  static Result<SecretKey> from_hex(std::string_view hex);

  SecretKey(const SecretKey& other);
  SecretKey& operator=(const SecretKey& other);
  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  ~SecretKey();

  // ensures: 64 lower-case hex digits. Only for writing the key file.
  std::string to_hex() const;
  const std::uint8_t* data() const noexcept { return bytes_; }

 private:
  SecretKey();
  std::uint8_t* bytes_ = nullptr;  // sodium_malloc'd, kSize bytes, or null after a move
};

// Seals and opens face templates (vectors of float) under one key.
class TemplateCipher {
 public:
  explicit TemplateCipher(SecretKey key);

  // ensures: nonce || ciphertext || tag (24 + 4*size + 16 bytes). The floats
  // are serialised little-endian whatever the host, so a database file moves
  // between machines.
  std::vector<std::uint8_t> seal(std::span<const float> embedding,
                                 std::string_view associated_data) const;

  // ensures: the floats sealed with the same associated data, or
  // kIntegrityError when the blob was altered, moved to another row (other
  // associated data), sealed with another key, or does not hold `dim` floats.
  Result<std::vector<float>> open(std::span<const std::uint8_t> sealed,
                                  std::string_view associated_data, std::size_t dim) const;

  // Other secrets of the store (a camera's source URL with its password) under the
  // same key and construction: nonce || ciphertext || tag (24 + size + 16 bytes).
  // ensures (open_text): the text sealed with the same associated data, or
  // kIntegrityError as open().
  std::vector<std::uint8_t> seal_text(std::string_view text, std::string_view associated_data) const;
  Result<std::string> open_text(std::span<const std::uint8_t> sealed, std::string_view associated_data) const;
  // A key check value: a MAC of a fixed label under a subkey derived from the
  // template key. Stored in the database so a wrong key is detected at open
  // rather than at the first failed decryption; it reveals nothing about the key.
  // ensures: 64 lower-case hex digits, the same for the same key.
  std::string key_check_value() const;

 private:
  std::vector<std::uint8_t> seal_bytes(std::span<const std::uint8_t> plain, std::string_view associated_data) const;
  Result<std::vector<std::uint8_t>> open_bytes(std::span<const std::uint8_t> sealed,
                                               std::string_view associated_data) const;
  SecretKey key_;
};

}  // namespace candor
