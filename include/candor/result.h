// Candor: expected failures as values.
//
// An operation that can fail for reasons the caller must handle (an unreadable
// image, no face, a missing consent, an unknown subject) returns Result<T>:
// either a value or an Error with a stable machine-readable code and a human
// message. Programming errors (a violated `requires` clause) throw
// std::logic_error instead; they are bugs, not outcomes.
//
// Thread safety: Result and Error are plain values.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace candor {

// Stable codes: the CLI prints them, the server maps them to HTTP statuses.
// Append only; never renumber or rename.
enum class ErrorCode {
  kInvalidArgument,    // malformed request or option
  kIoError,            // file missing, unreadable, disk full
  kImageEmpty,         // zero bytes
  kImageUnsupported,   // not JPEG, PNG, WebP, BMP, PGM or PPM
  kImageCorrupt,       // recognised format, but it does not decode
  kImageTooLarge,      // over the byte, pixel, decode-memory or JPEG-scan limit
  kImageTooSmall,      // decodes, but too small to hold a face
  kNoFace,             // no face found where one was required
  kModelMissing,       // a model file is absent
  kModelInvalid,       // hash mismatch or the network fails to load
  kNotFound,           // unknown collection, subject, key ...
  kAlreadyExists,      // create of something that exists
  kConsentRequired,    // no active, unexpired consent for this purpose
  kQualityTooLow,      // a face too poor for the requested use
  kRateLimited,        // a per-key budget is spent
  kPermissionDenied,   // the caller's key lacks the scope
  kUnauthenticated,    // no key or a wrong key
  kStoreError,         // the database refused or is corrupt
  kIntegrityError,     // an audit chain or ciphertext does not verify
  kOverloaded,         // a bounded queue is full
  kInternal,           // anything else
  kLivenessFailed,     // a collection requires a live presentation and the check failed
  kStoreUnavailable,   // the database cannot be reached now (connection lost); retry later
  kUnsupportedMediaType,  // a body sent with a Content-Type the route does not read (JSON as text/plain)
};

// "image_corrupt" etc.: the code as written in JSON and logs.
std::string_view error_code_name(ErrorCode code) noexcept;

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// The value of an operation that succeeded, or why it did not.
// requires (value(), operator*, operator->): ok(). A violated requirement throws
// std::logic_error naming the error that was ignored.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}     // NOLINT: implicit by design
  Result(ErrorCode code, std::string message) : state_(Error{code, std::move(message)}) {}

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { check(); return std::get<0>(state_); }
  const T& value() const& { check(); return std::get<0>(state_); }
  // By value, not T&&: `for (auto& x : f().value())` would otherwise iterate a vector
  // destroyed with the temporary Result at the end of the range's initialiser (GCC 12
  // reported one such loop in a test as "may be used uninitialized").
  T value() && { check(); return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // requires: !ok()
  const Error& error() const {
    if (ok()) throw std::logic_error("Result::error() called on a value");
    return std::get<1>(state_);
  }

 private:
  void check() const {
    if (!ok()) {
      const Error& e = std::get<1>(state_);
      throw std::logic_error("Result::value() called on error " +
                             std::string(error_code_name(e.code)) + ": " + e.message);
    }
  }
  std::variant<T, Error> state_;
};

// For operations with nothing to return but success.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace candor
