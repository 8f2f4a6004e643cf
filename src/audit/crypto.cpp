#include "candor/crypto.h"

#include <sodium.h>

#include <bit>
#include <cctype>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>

namespace candor {
namespace {

constexpr std::size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr std::size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
static_assert(SecretKey::kSize == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559,
              "templates are stored as IEEE-754 binary32");

std::uint8_t* alloc_key() {
  crypto_init();
  void* p = sodium_malloc(SecretKey::kSize);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<std::uint8_t*>(p);
}

const unsigned char* uc(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

void crypto_init() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] { rc = sodium_init(); });
  if (rc < 0) throw std::runtime_error("libsodium failed to initialise");
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

std::string sha256_hex(std::span<const std::byte> bytes) {
  crypto_init();
  std::array<std::uint8_t, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size());
  return to_hex(digest);
}

std::string sha256_hex(std::string_view bytes) {
  return sha256_hex(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

bool is_sha256_hex(std::string_view s) noexcept {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// ---------------------------------------------------------------- SecretKey

SecretKey::SecretKey() : bytes_(alloc_key()) {}

SecretKey SecretKey::generate() {
  SecretKey key;
  crypto_aead_xchacha20poly1305_ietf_keygen(key.bytes_);
  return key;
}

Result<SecretKey> SecretKey::from_hex(std::string_view hex) {
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.front()))) hex.remove_prefix(1);
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) hex.remove_suffix(1);
  if (hex.size() != kSize * 2) {
    return Error{ErrorCode::kInvalidArgument,
                 "a key must be 64 hex digits (32 bytes); got " + std::to_string(hex.size()) +
                     " characters"};
  }
  SecretKey key;
  std::size_t written = 0;
  if (sodium_hex2bin(key.bytes_, kSize, hex.data(), hex.size(), nullptr, &written, nullptr) != 0 ||
      written != kSize) {
    return Error{ErrorCode::kInvalidArgument, "a key must be 64 hex digits (32 bytes)"};
  }
  return key;
}

SecretKey::SecretKey(const SecretKey& other) : bytes_(alloc_key()) {
  if (other.bytes_ == nullptr) throw std::logic_error("copy of a moved-from SecretKey");
  std::memcpy(bytes_, other.bytes_, kSize);
}

SecretKey& SecretKey::operator=(const SecretKey& other) {
  if (this != &other) {
    SecretKey copy(other);
    *this = std::move(copy);
  }
  return *this;
}

SecretKey::SecretKey(SecretKey&& other) noexcept : bytes_(other.bytes_) { other.bytes_ = nullptr; }

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    if (bytes_ != nullptr) sodium_free(bytes_);
    bytes_ = other.bytes_;
    other.bytes_ = nullptr;
  }
  return *this;
}

SecretKey::~SecretKey() {
  // sodium_free zeroes the region before releasing it.
  if (bytes_ != nullptr) sodium_free(bytes_);
}

std::string SecretKey::to_hex() const {
  if (bytes_ == nullptr) throw std::logic_error("use of a moved-from SecretKey");
  return candor::to_hex(std::span<const std::uint8_t>(bytes_, kSize));
}

// ------------------------------------------------------------ TemplateCipher

TemplateCipher::TemplateCipher(SecretKey key) : key_(std::move(key)) {
  if (key_.data() == nullptr) throw std::logic_error("TemplateCipher built from a moved-from key");
}

std::vector<std::uint8_t> TemplateCipher::seal_bytes(std::span<const std::uint8_t> plain,
                                                     std::string_view associated_data) const {
  std::vector<std::uint8_t> out(kNonceBytes + plain.size() + kTagBytes);
  randombytes_buf(out.data(), kNonceBytes);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + kNonceBytes, &written, plain.data(),
                                             plain.size(), uc(associated_data),
                                             associated_data.size(), nullptr, out.data(),
                                             key_.data());
  out.resize(kNonceBytes + written);
  return out;
}

Result<std::vector<std::uint8_t>> TemplateCipher::open_bytes(std::span<const std::uint8_t> sealed,
                                                             std::string_view associated_data) const {
  if (sealed.size() < kNonceBytes + kTagBytes) {
    return Error{ErrorCode::kIntegrityError, "ciphertext too short"};
  }
  std::vector<std::uint8_t> plain(sealed.size() - kNonceBytes - kTagBytes);
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          plain.data(), &written, nullptr, sealed.data() + kNonceBytes,
          sealed.size() - kNonceBytes, uc(associated_data), associated_data.size(),
          sealed.data(), key_.data()) != 0) {
    return Error{ErrorCode::kIntegrityError,
                 "ciphertext does not decrypt: altered, moved to another row, or another key"};
  }
  return plain;
}

std::vector<std::uint8_t> TemplateCipher::seal(std::span<const float> embedding,
                                               std::string_view associated_data) const {
  std::vector<std::uint8_t> plain(embedding.size() * 4);
  for (std::size_t i = 0; i < embedding.size(); ++i) {
    std::uint32_t bits = std::bit_cast<std::uint32_t>(embedding[i]);
    for (int b = 0; b < 4; ++b) plain[i * 4 + b] = static_cast<std::uint8_t>(bits >> (8 * b));
  }
  auto out = seal_bytes(plain, associated_data);
  // The plaintext is the biometric itself: do not leave it in freed heap.
  sodium_memzero(plain.data(), plain.size());
  return out;
}

std::vector<std::uint8_t> TemplateCipher::seal_text(std::string_view text, std::string_view associated_data) const {
  return seal_bytes({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, associated_data);
}

Result<std::string> TemplateCipher::open_text(std::span<const std::uint8_t> sealed,
                                              std::string_view associated_data) const {
  auto plain = open_bytes(sealed, associated_data);
  if (!plain) return plain.error();
  std::string out(plain->begin(), plain->end());
  sodium_memzero(plain->data(), plain->size());
  return out;
}

Result<std::vector<float>> TemplateCipher::open(std::span<const std::uint8_t> sealed,
                                                std::string_view associated_data,
                                                std::size_t dim) const {
  if (sealed.size() != kNonceBytes + dim * 4 + kTagBytes) {
    return Error{ErrorCode::kIntegrityError, "template ciphertext has the wrong length"};
  }
  auto plain = open_bytes(sealed, associated_data);
  if (!plain) {
    return Error{ErrorCode::kIntegrityError,
                 "template does not decrypt: altered, moved to another row, or another key"};
  }
  std::vector<float> out(dim);
  for (std::size_t i = 0; i < dim; ++i) {
    std::uint32_t bits = 0;
    for (int b = 0; b < 4; ++b) bits |= static_cast<std::uint32_t>((*plain)[i * 4 + b]) << (8 * b);
    out[i] = std::bit_cast<float>(bits);
  }
  sodium_memzero(plain->data(), plain->size());
  return out;
}

std::string TemplateCipher::key_check_value() const {
  // Derive a MAC subkey so the check value never uses the encryption key directly.
  std::array<std::uint8_t, crypto_auth_hmacsha256_KEYBYTES> subkey{};
  static constexpr char kContext[crypto_kdf_CONTEXTBYTES] = {'c', 'a', 'n', 'd', 'k', 'c', 'v', '1'};
  crypto_kdf_derive_from_key(subkey.data(), subkey.size(), 1, kContext, key_.data());
  std::array<std::uint8_t, crypto_auth_hmacsha256_BYTES> mac{};
  constexpr std::string_view kLabel = "candor template key check v1";
  crypto_auth_hmacsha256(mac.data(), uc(kLabel), kLabel.size(), subkey.data());
  sodium_memzero(subkey.data(), subkey.size());
  return candor::to_hex(mac);
}

}  // namespace candor
