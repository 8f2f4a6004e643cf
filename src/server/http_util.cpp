#include "http_util.h"

#include <array>
#include <charconv>
#include <cstdio>
#include <algorithm>
#include <cctype>
#include <functional>
#include <iterator>
#include <set>

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
    case ErrorCode::kUnsupportedMediaType: return 415;
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
  // "application/json", any case, with or without parameters ("; charset=utf-8").
  std::string type = req.get_header_value("Content-Type");
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return type == "application/json";
}

namespace {

// A JSON body is read only when it says it is JSON: a text/plain or form-encoded body
// that happens to parse is a client bug (or a cross-site form post) and is refused.
Error not_json_media_type() {
  return {ErrorCode::kUnsupportedMediaType,
          "send JSON with Content-Type: application/json (or images as multipart/form-data)"};
}

// nlohmann keeps the last of duplicate keys; a request whose meaning depends on which
// copy a parser keeps ({"reason":"a","reason":"b"}) is refused instead. A NUL in a key or
// string is refused too: no field means anything with one, and it is what tells the
// long-string markers of light_parse (below) apart from user text. `markers`: how many
// marker strings ("\0<index>", each index once) the text holds by construction.
nlohmann::json parse_strict(std::string_view text, std::size_t markers = 0) {
  std::vector<std::set<std::string>> keys;  // one set per open object or array
  std::vector<bool> marker_seen(markers, false);
  std::size_t nul_strings = 0;
  bool bad = false;
  nlohmann::json::parser_callback_t check = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start || event == Event::array_start) {
      keys.emplace_back();
    } else if (event == Event::object_end || event == Event::array_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == Event::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (key.find('\0') != std::string::npos || keys.empty() || !keys.back().insert(key).second) bad = true;
    } else if (event == Event::value && parsed.is_string()) {
      const auto& value = parsed.get_ref<const std::string&>();
      if (value.find('\0') != std::string::npos) {
        ++nul_strings;
        std::size_t index = 0;
        auto [ptr, ec] = std::from_chars(value.data() + 1, value.data() + value.size(), index);
        const bool marker = value[0] == '\0' && value.size() > 1 && ec == std::errc() &&
                            ptr == value.data() + value.size() && index < markers && !marker_seen[index];
        if (marker) marker_seen[index] = true;
        else bad = true;
      }
    }
    return true;
  };
  nlohmann::json out = nlohmann::json::parse(text, check, false);
  if (bad || nul_strings != markers) return nlohmann::json(nlohmann::json::value_t::discarded);
  return out;
}

}  // namespace

Result<nlohmann::json> json_body(const httplib::Request& req) {
  if (req.body.empty()) return nlohmann::json::object();
  if (!is_json_request(req)) return not_json_media_type();
  auto j = parse_strict(req.body);
  if (j.is_discarded()) {
    return Error{ErrorCode::kInvalidArgument, "the body is not valid JSON (or repeats a key, or holds a \\u0000)"};
  }
  if (!j.is_object()) return Error{ErrorCode::kInvalidArgument, "the body must be a JSON object"};
  return j;
}

namespace {

// Base64 digits of both alphabets (standard and URL-safe); padding and whitespace are skipped.
constexpr std::uint8_t kB64Skip = 64, kB64Bad = 65;
constexpr std::array<std::uint8_t, 256> make_b64_table() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = kB64Bad;
  for (int i = 0; i < 26; ++i) t['A' + i] = static_cast<std::uint8_t>(i), t['a' + i] = static_cast<std::uint8_t>(26 + i);
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<std::uint8_t>(52 + i);
  t['+'] = t['-'] = 62;
  t['/'] = t['_'] = 63;
  t['='] = t[' '] = t['\n'] = t['\r'] = t['\t'] = kB64Skip;
  return t;
}
constexpr auto kB64 = make_b64_table();

// Strings at least this long, of printable ASCII and without escapes, are kept out of
// nlohmann's lexer (which copies and checks them a character at a time, ~1 ms per
// 100 KB of base64): such a string means exactly its bytes, so a view of them is exact.
constexpr std::size_t kLongString = 1024;
// What a long string is replaced with in the parsed document: "\u0000<index>".
constexpr char kLongMarker = '\0';

// A request's JSON body parsed once for all the fields a handler reads.
struct LightJson {
  bool valid = false;
  nlohmann::json doc;                  // long strings replaced by markers
  std::vector<std::string_view> longs;  // views into the request's body
};

// Parses `body` into `out`, lifting long plain strings out of the text nlohmann sees.
void light_parse(std::string_view body, LightJson& out) {
  std::string skeleton;
  std::size_t copied = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '"') continue;
    std::size_t j = i + 1;
    bool plain = true;
    while (j < body.size() && body[j] != '"') {
      const auto c = static_cast<unsigned char>(body[j]);
      if (c == '\\') {
        plain = false;
        ++j;
      } else if (c < 0x20 || c > 0x7e) {
        plain = false;
      }
      ++j;
    }
    if (j >= body.size()) break;  // unterminated: nlohmann reports it
    if (plain && j - i - 1 >= kLongString) {
      if (skeleton.empty()) skeleton.reserve(256);
      skeleton.append(body.substr(copied, i - copied));
      skeleton += "\"\\u0000" + std::to_string(out.longs.size()) + "\"";
      out.longs.push_back(body.substr(i + 1, j - i - 1));
      copied = j + 1;
    }
    i = j;
  }
  if (out.longs.empty()) {
    out.doc = parse_strict(body);
  } else {
    skeleton.append(body.substr(copied));
    // Exactly the markers put in may hold a NUL: a user's "\u00000" would otherwise stand
    // for the first long string (compare {"a": <photo>, "b": "\u00000"} compared a with a).
    out.doc = parse_strict(skeleton, out.longs.size());
  }
  out.valid = !out.doc.is_discarded();
}

// The body of the request on this thread, parsed once however many fields are read
// (a search reads "reason" and "image", a compare "a" and "b"). Keyed by the request,
// its body's address, size and a hash of its bytes, so a later request can never be
// answered from an earlier one's parse.
struct BodyCache {
  const httplib::Request* req = nullptr;
  const char* data = nullptr;
  std::size_t size = 0, hash = 0;
  LightJson parsed;
};
thread_local BodyCache t_body_cache;

const LightJson& parsed_body(const httplib::Request& req) {
  BodyCache& cache = t_body_cache;
  const std::size_t hash = std::hash<std::string_view>{}(req.body);
  if (cache.req != &req || cache.data != req.body.data() || cache.size != req.body.size() || cache.hash != hash) {
    cache = BodyCache{&req, req.body.data(), req.body.size(), hash, {}};
    light_parse(req.body, cache.parsed);
  }
  return cache.parsed;
}

// A string field's text: itself, or the long string its marker stands for.
std::string_view field_text(const LightJson& body, const std::string& value) {
  if (value.size() > 1 && value[0] == kLongMarker) {
    std::size_t index = 0;
    auto [ptr, ec] = std::from_chars(value.data() + 1, value.data() + value.size(), index);
    if (ec == std::errc() && ptr == value.data() + value.size() && index < body.longs.size()) return body.longs[index];
  }
  return value;
}

}  // namespace

void forget_parsed_body() { t_body_cache = BodyCache{}; }

std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text) {
  if (text.rfind("data:", 0) == 0) {
    const auto comma = text.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    text.remove_prefix(comma + 1);
  }
  // A table lookup per character, straight into the output: the image's bytes are
  // copied once, not through an intermediate cleaned string.
  std::vector<std::uint8_t> out(text.size() / 4 * 3 + 3);
  std::size_t n = 0, digits = 0;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char ch : text) {
    const std::uint8_t v = kB64[static_cast<unsigned char>(ch)];
    if (v < 64) {
      acc = (acc << 6) | v;
      bits += 6;
      ++digits;
      if (bits >= 8) {
        bits -= 8;
        out[n++] = static_cast<std::uint8_t>(acc >> bits);
        acc &= (1u << bits) - 1u;
      }
    } else if (v == kB64Bad) {
      return std::nullopt;
    }
  }
  // A lone digit cannot encode a byte, and the bits left over must be zero padding.
  if (digits % 4 == 1 || acc != 0) return std::nullopt;
  out.resize(n);
  return out;
}

Result<std::vector<NamedImage>> images_from(const httplib::Request& req, std::string_view field, bool many,
                                            std::size_t max_images) {
  std::vector<NamedImage> images;
  const std::string key(field);
  const auto too_many = [&](std::size_t n) {
    return Error{ErrorCode::kInvalidArgument, std::to_string(n) + " images in '" + key + "'; at most " +
                                                  std::to_string(max_images) + " per request"};
  };
  if (req.is_multipart_form_data()) {
    auto [begin, end] = req.files.equal_range(key);
    if (const auto n = static_cast<std::size_t>(std::distance(begin, end)); many && n > max_images) return too_many(n);
    for (auto it = begin; it != end; ++it) {
      const auto& part = it->second;
      NamedImage img;
      img.name = part.filename.empty() ? key + "[" + std::to_string(images.size()) + "]" : part.filename;
      img.bytes.assign(part.content.begin(), part.content.end());
      images.push_back(std::move(img));
    }
  } else if (is_json_request(req)) {
    if (req.body.empty()) return Error{ErrorCode::kInvalidArgument, "missing image field '" + key + "'"};
    const LightJson& body = parsed_body(req);
    if (!body.valid) return Error{ErrorCode::kInvalidArgument, "the body is not valid JSON"};
    if (!body.doc.is_object()) return Error{ErrorCode::kInvalidArgument, "the body must be a JSON object"};
    const auto it = body.doc.find(key);
    if (it != body.doc.end()) {
      std::vector<const nlohmann::json*> items;
      if (it->is_array() && many) {
        if (it->size() > max_images) return too_many(it->size());  // counted before any is decoded
        for (const auto& v : *it) items.push_back(&v);
      } else {
        items.push_back(&*it);
      }
      for (const auto* v : items) {
        if (!v->is_string()) return Error{ErrorCode::kInvalidArgument, key + ": expected base64 string(s)"};
        auto bytes = decode_base64(field_text(body, v->get_ref<const std::string&>()));
        if (!bytes) return Error{ErrorCode::kInvalidArgument, key + ": not valid base64"};
        images.push_back({key + "[" + std::to_string(images.size()) + "]", std::move(*bytes)});
      }
    }
  } else if (!req.body.empty()) {
    return not_json_media_type();
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
  if (!req.body.empty() && is_json_request(req)) {
    const LightJson& body = parsed_body(req);
    if (body.valid && body.doc.is_object()) {
      auto it = body.doc.find(key);
      if (it != body.doc.end() && it->is_string()) return std::string(field_text(body, it->get_ref<const std::string&>()));
    }
  }
  return std::nullopt;
}

Result<bool> bool_param(const httplib::Request& req, std::string_view name) {
  const std::string key(name);
  std::optional<std::string> text;
  if (req.has_param(key)) {
    text = req.get_param_value(key);
  } else if (req.is_multipart_form_data()) {
    if (auto it = req.files.find(key); it != req.files.end()) text = it->second.content;
  } else if (!req.body.empty() && is_json_request(req)) {
    const LightJson& body = parsed_body(req);
    if (body.valid && body.doc.is_object()) {
      auto it = body.doc.find(key);
      if (it != body.doc.end() && !it->is_null()) {
        if (!it->is_boolean()) return Error{ErrorCode::kInvalidArgument, key + " must be true or false"};
        return it->get<bool>();
      }
    }
  }
  if (!text || *text == "false" || *text == "0") return false;
  if (*text == "true" || *text == "1") return true;
  return Error{ErrorCode::kInvalidArgument, key + " must be true or false"};
}

Result<std::optional<double>> fraction_param(const httplib::Request& req, std::string_view name) {
  const std::string key(name);
  const Error bad{ErrorCode::kInvalidArgument, key + " must be a number between 0 and 1, both excluded"};
  double v = 0;
  if (std::optional<std::string> text = text_param(req, name)) {
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
    if (ec != std::errc() || ptr != text->data() + text->size()) return bad;
  } else if (!req.is_multipart_form_data() && !req.body.empty() && is_json_request(req)) {
    // text_param reads JSON strings only; a JSON number is read here.
    const LightJson& body = parsed_body(req);
    if (!body.valid || !body.doc.is_object()) return std::optional<double>();
    auto it = body.doc.find(key);
    if (it == body.doc.end() || it->is_null()) return std::optional<double>();
    if (!it->is_number()) return bad;
    v = it->get<double>();
  } else {
    return std::optional<double>();
  }
  if (!(v > 0 && v < 1)) return bad;
  return std::optional<double>(v);
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


bool printable(std::string_view text) noexcept {
  return std::none_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace candor::server
