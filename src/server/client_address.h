// The client address a request counts against: the failed-authentication throttle
// (rate_limit.h) and the access log key on it.
//
// Behind a reverse proxy or a load balancer every request arrives from the proxy's
// address, so a throttle keyed on the peer would lock out everyone behind it at
// once after one client's failures (issue 16). The proxy names the client in
// X-Forwarded-For, which it appends to: "client, proxy1, proxy2", each hop adding
// the address it received the request from. Only the operator's own proxies are
// believed (ServerOptions::trusted_proxies): when the peer is one of them, the list
// is read from the right, skipping the trusted hops, and the first address that is
// not a trusted proxy is the client. Entries left of it were written by the client
// itself and are never used, so a client cannot choose its own throttle bucket by
// sending X-Forwarded-For; from a peer that is not trusted the header is ignored.
//
// Thread safety: a TrustedProxies is immutable after parse(); share it freely.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"

namespace candor::server {

class TrustedProxies {
 public:
  // requires: each entry "ADDRESS" or "ADDRESS/PREFIX", IPv4 ("10.0.0.0/8") or IPv6
  //           ("fd00::/8"); an IPv4 range also matches its IPv4-mapped IPv6 form.
  // ensures: kInvalidArgument naming the first malformed entry.
  static Result<TrustedProxies> parse(const std::vector<std::string>& cidrs);

  bool empty() const { return ranges_.empty(); }
  // ensures: false for anything that is not an IP address.
  bool contains(std::string_view ip) const;

  // The client address: `peer` unless it is a trusted proxy; then the right-most
  // address of `forwarded_for` (the X-Forwarded-For values, in header order, joined
  // by ",") that is not a trusted proxy; the left-most when all are trusted; `peer`
  // when the header is missing or an entry reached is not an IP address (a proxy
  // that writes garbage gets its clients grouped under its own address).
  std::string client_address(std::string_view peer, std::string_view forwarded_for) const;

 private:
  using Address = std::array<std::uint8_t, 16>;  // IPv4 as IPv4-mapped IPv6
  struct Range {
    Address base{};
    int prefix = 128;
  };
  static std::optional<Address> parse_address(std::string_view text);
  bool contains(const Address& a) const;

  std::vector<Range> ranges_;
};

}  // namespace candor::server
