#include "client_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace candor::server {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<TrustedProxies::Address> TrustedProxies::parse_address(std::string_view text) {
  text = trim(text);
  if (text.empty() || text.size() > 45) return std::nullopt;  // INET6_ADDRSTRLEN - 1
  const std::string s(text);
  Address out{};
  in_addr v4{};
  if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = out[11] = 0xff;  // ::ffff:a.b.c.d (RFC 4291 2.5.5.2)
    std::copy_n(reinterpret_cast<const std::uint8_t*>(&v4.s_addr), 4, out.begin() + 12);
    return out;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::copy_n(v6.s6_addr, 16, out.begin());
    return out;
  }
  return std::nullopt;
}

Result<TrustedProxies> TrustedProxies::parse(const std::vector<std::string>& cidrs) {
  TrustedProxies out;
  for (const std::string& entry : cidrs) {
    const auto bad = Error{ErrorCode::kInvalidArgument,
                           "trusted proxy '" + entry + "': expected an IP address or ADDRESS/PREFIX (10.0.0.0/8, fd00::/8)"};
    const auto slash = entry.find('/');
    const std::string_view address = std::string_view(entry).substr(0, slash);
    auto base = parse_address(address);
    if (!base) return bad;
    const bool v4 = address.find(':') == std::string_view::npos;
    Range r{*base, 128};
    if (slash != std::string::npos) {
      const std::string_view digits = std::string_view(entry).substr(slash + 1);
      int prefix = -1;
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || prefix < 0 ||
          prefix > (v4 ? 32 : 128)) {
        return bad;
      }
      r.prefix = v4 ? prefix + 96 : prefix;
    }
    out.ranges_.push_back(r);
  }
  return out;
}

bool TrustedProxies::contains(const Address& a) const {
  return std::any_of(ranges_.begin(), ranges_.end(), [&](const Range& r) {
    const int whole = r.prefix / 8;
    if (!std::equal(a.begin(), a.begin() + whole, r.base.begin())) return false;
    const int rest = r.prefix % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[static_cast<std::size_t>(whole)] & mask) == (r.base[static_cast<std::size_t>(whole)] & mask);
  });
}

bool TrustedProxies::contains(std::string_view ip) const {
  const auto a = parse_address(ip);
  return a && contains(*a);
}

std::string TrustedProxies::client_address(std::string_view peer, std::string_view forwarded_for) const {
  if (ranges_.empty() || !contains(peer)) return std::string(peer);
  std::string_view last_trusted;
  std::string_view rest = forwarded_for;
  while (!rest.empty()) {
    const auto comma = rest.rfind(',');
    const std::string_view hop = trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    if (hop.empty()) continue;
    const auto a = parse_address(hop);
    if (!a) return std::string(peer);
    if (!contains(*a)) return std::string(hop);
    last_trusted = hop;
  }
  return std::string(last_trusted.empty() ? peer : last_trusted);
}

}  // namespace candor::server
