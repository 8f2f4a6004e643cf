#include "http_util.h"

#include <charconv>
#include <cstdio>

#include <sodium.h>

#include "candor/json.h"

namespace candor::server {

int http_status(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kImageEmpty:
    case ErrorCode::kImageUnsupported:
    case ErrorCode::kImageCorrupt:
    case ErrorCode::kImageTooSmall: return 400;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConsentRequired: return 409;
    case ErrorCode::kImageTooLarge: return 413;
    case ErrorCode::kNoFace:
    case ErrorCode::kQualityTooLow:
    case ErrorCode::kLivenessFailed: return 422;
    case ErrorCode::kRateLimited: return 429;
    case ErrorCode::kOverloaded: return 503;
    case ErrorCode::kStoreUnavailable: return 503;
    case ErrorCode::kIoError:
    case ErrorCode::kModelMissing:
    case ErrorCode::kModelInvalid:
    case ErrorCode::kStoreError:
    case ErrorCode::kIntegrityError:
    case ErrorCode::kInternal: return 500;
    default: return 500;  // codes added later are "others" until mapped here
  }
}

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const Error& error, int retry_after_s) {
  send_json(res, http_status(error.code), error_to_json(error));
  if (retry_after_s > 0) res.set_header("Retry-After", std::to_string(retry_after_s));
}

bool is_json_request(const httplib::Request& req) {
  const std::string type = req.get_header_value("Content-Type");
  return type.rfind("application/json", 0) == 0;
}

Result<nlohmann::json> json_body(const httplib::Request& req) {
  if (req.body.empty()) return nlohmann::json::object();
  auto j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded()) return Error{ErrorCode::kInvalidArgument, "the body is not valid JSON"};
  if (!j.is_object()) return Error{ErrorCode::kInvalidArgument, "the body must be a JSON object"};
  return j;
}

std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text) {
  if (text.rfind("data:", 0) == 0) {
    const auto comma = text.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    text.remove_prefix(comma + 1);
  }
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c == '-') clean += '+';
    else if (c == '_') clean += '/';
    else if (c == '=' || c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    else clean += c;
  }
  std::vector<std::uint8_t> out(clean.size() * 3 / 4 + 3);
  std::size_t len = 0;
  if (sodium_base642bin(out.data(), out.size(), clean.data(), clean.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

Result<std::vector<NamedImage>> images_from(const httplib::Request& req, std::string_view field, bool many) {
  std::vector<NamedImage> images;
  const std::string key(field);
  if (req.is_multipart_form_data()) {
    auto [begin, end] = req.files.equal_range(key);
    for (auto it = begin; it != end; ++it) {
      const auto& part = it->second;
      NamedImage img;
      img.name = part.filename.empty() ? key + "[" + std::to_string(images.size()) + "]" : part.filename;
      img.bytes.assign(part.content.begin(), part.content.end());
      images.push_back(std::move(img));
    }
  } else if (is_json_request(req) || (!req.body.empty() && req.body.front() == '{')) {
    auto body = json_body(req);
    if (!body) return body.error();
    const auto it = body->find(key);
    if (it != body->end()) {
      std::vector<const nlohmann::json*> items;
      if (it->is_array() && many) {
        for (const auto& v : *it) items.push_back(&v);
      } else {
        items.push_back(&*it);
      }
      for (const auto* v : items) {
        if (!v->is_string()) return Error{ErrorCode::kInvalidArgument, key + ": expected base64 string(s)"};
        auto bytes = decode_base64(v->get_ref<const std::string&>());
        if (!bytes) return Error{ErrorCode::kInvalidArgument, key + ": not valid base64"};
        images.push_back({key + "[" + std::to_string(images.size()) + "]", std::move(*bytes)});
      }
    }
  } else {
    return Error{ErrorCode::kInvalidArgument, "send the image as multipart/form-data or as base64 in a JSON body"};
  }
  if (images.empty()) return Error{ErrorCode::kInvalidArgument, "missing image field '" + key + "'"};
  if (!many && images.size() > 1) return Error{ErrorCode::kInvalidArgument, "one image expected in '" + key + "'"};
  return images;
}

std::optional<std::string> text_param(const httplib::Request& req, std::string_view name) {
  const std::string key(name);
  if (req.has_param(key)) return req.get_param_value(key);
  if (req.is_multipart_form_data()) {
    auto it = req.files.find(key);
    if (it != req.files.end()) return it->second.content;
    return std::nullopt;
  }
  if (is_json_request(req) || (!req.body.empty() && req.body.front() == '{')) {
    auto j = nlohmann::json::parse(req.body, nullptr, false);
    if (j.is_object()) {
      auto it = j.find(key);
      if (it != j.end() && it->is_string()) return it->get<std::string>();
    }
  }
  return std::nullopt;
}

Result<long long> int_param(const httplib::Request& req, std::string_view name, long long fallback, long long lo,
                            long long hi) {
  const std::string key(name);
  if (!req.has_param(key)) return fallback;
  const std::string v = req.get_param_value(key);
  long long out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size() || out < lo || out > hi) {
    return Error{ErrorCode::kInvalidArgument,
                 key + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"};
  }
  return out;
}


}  // namespace candor::server
