// Reading a JSON number into a C++ arithmetic type without undefined behaviour.
//
// nlohmann::json's get<int>() and get<float>() narrow with a plain cast: a number that
// does not fit the type ("retention_days": 1e103) is undefined behaviour, and an integer
// too large for it wraps ("searches_per_minute": 4294967297 becomes 1). fuzz_manifest
// found the first in the model manifest; the request bodies had the same reads.
// json_get<T> and json_value<T> check the range first and otherwise behave like get<T>()
// and value(): a number out of range throws nlohmann's out_of_range, so the callers'
// existing `catch (const nlohmann::json::exception&)` reports it as malformed input.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

namespace candor {

// Whether the number `v` converts to T exactly enough: integers within T's range; for
// an integral T, floats strictly inside it (the cast truncates); for a floating T,
// finite values within its range.
template <typename T>
bool json_number_fits(const nlohmann::json& v) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  using Limits = std::numeric_limits<T>;
  if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) return std::in_range<T>(v.get<std::uint64_t>());
    if (v.is_number_integer()) return std::in_range<T>(v.get<std::int64_t>());
    const double d = v.get<double>();
    const double bound = std::ldexp(1.0, Limits::digits);  // 2^31 for int: exact as a double
    return std::is_signed_v<T> ? d > -bound && d < bound : d >= 0.0 && d < bound;
  } else {
    const double d = v.get<double>();
    return std::isfinite(d) && std::fabs(d) <= static_cast<double>(Limits::max());
  }
}

// v.get<T>(), refusing a number that does not fit T, and refusing what get<T>() would
// convert silently: a boolean or a fraction read as an integer (true as 1, 1.9 as 1), a
// boolean read as a number. A JSON integer is written without a fraction or exponent.
template <typename T>
T json_get(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw nlohmann::json::type_error::create(302, "expected true or false, got " + v.dump(), nullptr);
  } else if constexpr (std::is_arithmetic_v<T>) {
    const bool kind_ok = std::is_integral_v<T> ? v.is_number_integer() : v.is_number();
    if (!kind_ok) {
      throw nlohmann::json::type_error::create(
          302, std::string(std::is_integral_v<T> ? "expected an integer" : "expected a number") + ", got " + v.dump(),
          nullptr);
    }
    if (!json_number_fits<T>(v)) {
      throw nlohmann::json::out_of_range::create(406, "number " + v.dump() + " is out of range", nullptr);
    }
  }
  return v.get<T>();
}

// object.value(key, fallback), refusing a number that does not fit T.
template <typename T>
T json_value(const nlohmann::json& object, const char* key, T fallback) {
  if (!object.is_object()) return object.value(key, fallback);  // throws type_error, as value() does
  const auto it = object.find(key);
  return it == object.end() ? fallback : json_get<T>(*it);
}

}  // namespace candor
