#include "candor/result.h"

namespace candor {

std::string_view error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kIoError: return "io_error";
    case ErrorCode::kImageEmpty: return "image_empty";
    case ErrorCode::kImageUnsupported: return "image_unsupported";
    case ErrorCode::kImageCorrupt: return "image_corrupt";
    case ErrorCode::kImageTooLarge: return "image_too_large";
    case ErrorCode::kImageTooSmall: return "image_too_small";
    case ErrorCode::kNoFace: return "no_face";
    case ErrorCode::kModelMissing: return "model_missing";
    case ErrorCode::kModelInvalid: return "model_invalid";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kConsentRequired: return "consent_required";
    case ErrorCode::kQualityTooLow: return "quality_too_low";
    case ErrorCode::kRateLimited: return "rate_limited";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kStoreError: return "store_error";
    case ErrorCode::kIntegrityError: return "integrity_error";
    case ErrorCode::kOverloaded: return "overloaded";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kLivenessFailed: return "liveness_failed";
    case ErrorCode::kStoreUnavailable: return "store_unavailable";
    case ErrorCode::kUnsupportedMediaType: return "unsupported_media_type";
  }
  return "internal";
}

}  // namespace candor
