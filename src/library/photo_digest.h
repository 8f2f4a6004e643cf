// The fingerprint a photo's content is recorded under (LibraryPhoto::sha256): written at
// ingest (photo_library.cpp) and checked before a thumbnail is cut (library_report.cpp), so
// both must compute it the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "candor/crypto.h"

namespace candor {

inline std::string photo_digest(std::span<const std::uint8_t> bytes) {
  return sha256_hex(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

}  // namespace candor
