// Helpers shared by the route handlers: the error-to-status map, JSON replies,
// request bodies (JSON, multipart, base64 images), and the JSON shapes of the
// domain types (the same shapes the CLI prints).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "candor/result.h"
#include "candor/store.h"

namespace candor::server {

// docs/api.md "Errors": the HTTP status of each stable code.
int http_status(ErrorCode code) noexcept;

void send_json(httplib::Response& res, int status, const nlohmann::json& body);
// {"error":{"code","message"}} with http_status(error.code); Retry-After when retry_after_s > 0.
void send_error(httplib::Response& res, const Error& error, int retry_after_s = 0);

// ensures: the body as a JSON object ({} for an empty body); kUnsupportedMediaType when it is
//          not sent as application/json; kInvalidArgument when it is not a JSON object,
//          repeats a key within an object, or holds a NUL (\u0000) in a key or string.
Result<nlohmann::json> json_body(const httplib::Request& req);
bool is_json_request(const httplib::Request& req);

struct NamedImage {
  std::string name;  // the multipart file name, or "<field>[i]"
  std::vector<std::uint8_t> bytes;
};

// The images sent in the multipart parts named `field`, or as base64 strings in the JSON
// body under `field` (a string or, when `many`, an array of strings).
// ensures: kInvalidArgument when there is none or the body is neither multipart nor JSON,
//          or a base64 string does not decode; kImageEmpty for an empty part.
// ensures also: kInvalidArgument when `many` and more than max_images are sent (counted
//          before any is decoded); kUnsupportedMediaType for a body that is neither.
Result<std::vector<NamedImage>> images_from(const httplib::Request& req, std::string_view field, bool many,
                                            std::size_t max_images = 64);

// A text value from the query string, a multipart text part, or the JSON body (in that order).
std::optional<std::string> text_param(const httplib::Request& req, std::string_view name);
// ensures: `fallback` when absent; kInvalidArgument when not an integer in [lo, hi].
Result<long long> int_param(const httplib::Request& req, std::string_view name, long long fallback, long long lo,
                            long long hi);

// A probability strictly between 0 and 1 from the query string, a multipart text part,
// or the JSON body (a number or a string). ensures: empty when absent; kInvalidArgument
// for anything else.
Result<std::optional<double>> fraction_param(const httplib::Request& req, std::string_view name);

// A boolean from the query string ("true"/"false"/"1"/"0"), a multipart text part, or a
// JSON boolean. ensures: false when absent; kInvalidArgument for anything else.
Result<bool> bool_param(const httplib::Request& req, std::string_view name);


// No ASCII control character (0x00-0x1f, 0x7f): for text a client sends that ends up in
// logs, labels or URLs.
bool printable(std::string_view text) noexcept;

// images_from and text_param parse a JSON body once per request and thread; the
// server calls this as each request begins so that no parse outlives its request.
void forget_parsed_body();

// Decodes standard or URL-safe base64, with or without padding or a "data:...;base64," prefix.
std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text);

}  // namespace candor::server
