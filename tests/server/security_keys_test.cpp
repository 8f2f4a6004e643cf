// Issue 16, keys and limits: what an outside probe of the server found, as attacks
// against a real Server on a loopback port (and the rules behind them tested
// directly). The README's "Attack and fault tests" table lists each with its outcome.
//   - a collection-scoped admin key must not become a full admin (key creation,
//     listing, deletion, retention, collection creation, export);
//   - /metrics must not name collections to a scraper without a key;
//   - a client that waits the Retry-After of a search refusal is served, and
//     refusals do not consume the budget (minute and day windows, exact seconds);
//   - failed logins behind a trusted proxy are throttled per client, and a client
//     cannot choose its own throttle bucket with X-Forwarded-For.
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "api_keys.h"
#include "client_address.h"
#include "rate_limit.h"
#include "server_test_util.h"
#include "backend_fixture.h"

namespace candor::test {
namespace {

using nlohmann::json;
using server::ApiKey;

ApiKey key_of(std::vector<std::string> collections, std::vector<std::string> operations, int per_minute = 60,
              int per_day = 10'000) {
  ApiKey k;
  k.name = "k";
  k.collections = std::move(collections);
  k.operations = std::move(operations);
  k.searches_per_minute = per_minute;
  k.searches_per_day = per_day;
  return k;
}

std::set<std::string> key_names(const httplib::Result& r) {
  std::set<std::string> out;
  const json body = json::parse(r->body);  // kept: a range-for over a temporary's member would dangle
  for (const auto& k : body["keys"]) out.insert(k["name"].get<std::string>());
  return out;
}

// ------------------------------------------------------------ delegation rules

TEST(KeyDelegation, AKeyCoversOnlyWhatItHas) {
  const ApiKey root = key_of({"*"}, {"admin"}, 1, 1);
  const ApiKey scoped_admin = key_of({"a", "b"}, {"admin"});
  const ApiKey searcher = key_of({"a"}, {"search", "consents"});
  struct Case {
    const ApiKey& by;
    ApiKey spec;
    bool covered;
  };
  const Case cases[] = {
      {root, key_of({"*"}, {"admin"}, 1'000'000, 1'000'000), true},  // the root sets budgets freely
      {scoped_admin, key_of({"a"}, {"search", "enroll", "metrics"}), true},
      {scoped_admin, key_of({"a", "b"}, {"admin"}), true},
      {scoped_admin, key_of({"*"}, {"search"}), false},            // "*" only within "*"
      {scoped_admin, key_of({"a", "c"}, {"search"}), false},       // a collection it lacks
      {scoped_admin, key_of({"a"}, {"search"}, 61), false},        // a bigger budget
      {scoped_admin, key_of({"a"}, {"search"}, 60, 10'001), false},
      {searcher, key_of({"a"}, {"search"}), true},
      {searcher, key_of({"a"}, {"search", "audit"}), false},       // an operation it lacks
      {searcher, key_of({"a"}, {"admin"}), false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.by.covers(c.spec), c.covered) << json(c.spec.collections) << json(c.spec.operations)
                                              << c.spec.searches_per_minute;
  }
  EXPECT_TRUE(scoped_admin.within_scope(key_of({"b"}, {"admin"})));
  EXPECT_FALSE(scoped_admin.within_scope(key_of({"*"}, {"detect"})));
  EXPECT_FALSE(searcher.within_scope(key_of({"a", "b"}, {"detect"})));
  EXPECT_TRUE(root.within_scope(key_of({"*"}, {"admin"})));
  EXPECT_TRUE(root.full_admin());
  EXPECT_FALSE(scoped_admin.full_admin());
}

// The probe's report, step by step, plus the siblings: nothing a scoped admin does
// reaches beyond its collections.
class ScopedAdmin : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    srv_ = new TestServer();
    srv_->create_collection("a");
    srv_->create_collection("b");
    scoped_ = srv_->create_key({{"name", "admin-a"}, {"collections", {"a"}}, {"operations", {"admin"}}});
  }
  static void TearDownTestSuite() {
    delete srv_;
    srv_ = nullptr;
  }
  static TestServer* srv_;
  static std::string scoped_;
};
TestServer* ScopedAdmin::srv_ = nullptr;
std::string ScopedAdmin::scoped_;

TEST_F(ScopedAdmin, CannotCreateAKeyBeyondItsOwn) {
  for (const json& spec : {json{{"name", "x1"}, {"collections", {"*"}}, {"operations", {"admin"}}},
                           json{{"name", "x2"}, {"collections", {"b"}}, {"operations", {"search"}}},
                           json{{"name", "x3"}, {"collections", {"a", "b"}}, {"operations", {"search"}}},
                           json{{"name", "x4"}, {"collections", {"a"}}, {"operations", {"search"}},
                                {"searches_per_minute", 100'000}}}) {
    auto r = srv_->post_json("/v1/keys", spec, scoped_);
    EXPECT_EQ(r->status, 403) << spec << r->body;
    EXPECT_EQ(error_code(r), "permission_denied");
  }
  // Within its scope it may delegate, admin included (a peer admin of "a").
  auto ok = srv_->post_json("/v1/keys", {{"name", "a-search"}, {"collections", {"a"}}, {"operations", {"search"}}},
                            scoped_);
  EXPECT_EQ(ok->status, 201) << ok->body;
  auto peer = srv_->post_json("/v1/keys", {{"name", "a-admin"}, {"collections", {"a"}}, {"operations", {"admin"}}},
                              scoped_);
  EXPECT_EQ(peer->status, 201) << peer->body;
  // The full admin is not limited (the budget ceiling does not apply to the root).
  auto big = srv_->post_json("/v1/keys", {{"name", "bench"}, {"collections", {"*"}}, {"operations", {"search"}},
                                          {"searches_per_minute", 100'000'000}});
  EXPECT_EQ(big->status, 201) << big->body;
}

TEST_F(ScopedAdmin, ListsAndDeletesOnlyKeysWithinItsScope) {
  srv_->create_key({{"name", "b-only"}, {"collections", {"b"}}, {"operations", {"search"}}});
  srv_->create_key({{"name", "a-consents"}, {"collections", {"a"}}, {"operations", {"consents"}}});
  auto list = srv_->client().Get("/v1/keys", srv_->auth(scoped_));
  ASSERT_EQ(list->status, 200) << list->body;
  const auto names = key_names(list);
  EXPECT_TRUE(names.count("admin-a") && names.count("a-consents")) << list->body;
  EXPECT_FALSE(names.count("admin") || names.count("b-only")) << list->body;
  EXPECT_EQ(list->body.find("\"b\""), std::string::npos) << "names a collection outside the key's scope";

  // Another scope's key and a missing key look the same; both survive.
  auto other = srv_->client().Delete("/v1/keys/b-only", srv_->auth(scoped_));
  auto root = srv_->client().Delete("/v1/keys/admin", srv_->auth(scoped_));
  auto missing = srv_->client().Delete("/v1/keys/no-such-key", srv_->auth(scoped_));
  auto message = [](const httplib::Result& r) { return json::parse(r->body)["error"]["message"].get<std::string>(); };
  EXPECT_EQ(other->status, 404);
  EXPECT_EQ(root->status, 404);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(message(root), "no API key named 'admin'");
  EXPECT_EQ(message(missing), "no API key named 'no-such-key'");
  EXPECT_EQ(srv_->client().Get("/v1/collections", srv_->auth())->status, 200) << "the root key still works";
  EXPECT_TRUE(key_names(srv_->client().Get("/v1/keys", srv_->auth())).count("b-only"));
  // Its own scope's keys it may delete.
  EXPECT_EQ(srv_->client().Delete("/v1/keys/a-consents", srv_->auth(scoped_))->status, 200);
}

TEST_F(ScopedAdmin, CannotRunGlobalOperations) {
  auto retention = srv_->client().Post("/v1/retention/run", srv_->auth(scoped_), "", "application/json");
  EXPECT_EQ(retention->status, 403) << retention->body;
  // Creating a collection names it for every key: a new name is global, and an
  // existing hidden one would answer 409 and so reveal itself.
  for (const char* name : {"c", "b"}) {
    auto r = srv_->post_json("/v1/collections", {{"name", name}, {"purpose", "door access"}, {"retention_days", 30}},
                             scoped_);
    EXPECT_EQ(r->status, 403) << name << r->body;
  }
  const std::string auditor =
      srv_->create_key({{"name", "auditor-a"}, {"collections", {"a"}}, {"operations", {"audit"}}});
  EXPECT_EQ(srv_->client().Get("/v1/subjects/alice/export", srv_->auth(auditor))->status, 403);
  // On its own collection the admin scope holds; another collection stays hidden.
  EXPECT_EQ(srv_->client().Delete("/v1/collections/b", srv_->auth(scoped_))->status, 404);
  auto full = srv_->client().Post("/v1/retention/run", srv_->auth(), "", "application/json");
  EXPECT_EQ(full->status, 200) << full->body;
}

// ------------------------------------------------------------------- /metrics

TEST(SecurityMetrics, NoCollectionNamesWithoutAKey) {
  TestServer srv;
  srv.create_collection("hidden-wing");
  srv.create_collection("lobby");
  auto anonymous = srv.client().Get("/metrics");
  ASSERT_EQ(anonymous->status, 200);
  EXPECT_EQ(anonymous->body.find("hidden-wing"), std::string::npos) << anonymous->body;
  EXPECT_EQ(anonymous->body.find("candor_collection_templates"), std::string::npos);
  EXPECT_NE(anonymous->body.find("candor_http_requests_total"), std::string::npos) << "still scrapeable";

  // A key with the metrics scope sees the series of its collections only.
  const std::string lobby =
      srv.create_key({{"name", "prometheus"}, {"collections", {"lobby"}}, {"operations", {"metrics"}}});
  auto scoped = srv.client().Get("/metrics", {{"Authorization", "Bearer " + lobby}});
  ASSERT_EQ(scoped->status, 200) << scoped->body;
  EXPECT_NE(scoped->body.find("candor_collection_templates{collection=\"lobby\"} 0"), std::string::npos);
  EXPECT_EQ(scoped->body.find("hidden-wing"), std::string::npos);
  auto all = srv.client().Get("/metrics", srv.auth());
  EXPECT_NE(all->body.find("candor_collection_templates{collection=\"hidden-wing\"} 0"), std::string::npos);
  // A key without the scope is refused, a wrong key is a failed login.
  const std::string searcher = srv.create_key({{"name", "s"}, {"collections", {"*"}}, {"operations", {"search"}}});
  EXPECT_EQ(srv.client().Get("/metrics", srv.auth(searcher))->status, 403);
  EXPECT_EQ(srv.client().Get("/metrics", {{"X-API-Key", "cnd_wrong"}})->status, 401);
}

// ---------------------------------------------------------------- search budget

constexpr std::int64_t kMinuteMs = 60'000;

// A clock at a whole minute (M) plus `offset_s`, moved by the tests.
struct MinuteClock {
  TestClock clock;
  std::int64_t m = 0;
  MinuteClock() { m = *clock.ms - *clock.ms % kMinuteMs; }
  void at(double offset_s) { *clock.ms = m + static_cast<std::int64_t>(offset_s * 1000); }
};

// On both stores: each counts searches itself (Store::record_search, search_count).
class BudgetTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFailure()) return;
    store_ = open_or_die(path_, options_with_key(&t_.clock));
    NewCollection c;
    c.name = "gate";
    c.purpose = std::string(kPurpose);
    c.retention_days = 30;
    ASSERT_TRUE(store_->create_collection(c, {"test", "setup"}).ok());
    budget_ = std::make_unique<server::SearchBudget>(*store_, t_.clock.fn());
  }
  // As the search route does: admit, then record the search or the refusal.
  server::SearchBudget::Decision search(const ApiKey& key) {
    auto d = budget_->admit(key, "key:k");
    EXPECT_TRUE(d.ok());
    SearchRecord r{AuditContext{"key:k", "test"}, "gate", {}, "{}", "ok"};
    if (d->allowed) {
      EXPECT_TRUE(store_->record_search(r).ok());
      budget_->finish("key:k");
    } else {
      r.result = "refused: rate_limited";
      r.charged = false;  // as the search route records it
      EXPECT_TRUE(store_->record_search(r).ok());
    }
    return *d;
  }

  MinuteClock t_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<server::SearchBudget> budget_;
};

// The probe: one search a minute; a client that waits Retry-After was refused forever.
TEST_P(BudgetTest, WaitingRetryAfterIsServedAndRefusalsCostNothing) {
  const ApiKey key = key_of({"gate"}, {"search"}, 1, 1000);
  t_.at(10);
  EXPECT_TRUE(search(key).allowed);
  // The search at M+10 fills the window until the one starting at M+60 begins: M+120.
  t_.at(40);
  auto d = search(key);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.window, "minute");
  EXPECT_EQ(d.retry_after_s, 80);
  // Early retries, refused in the next minute's bucket: the answer only counts down.
  for (double at : {70.0, 80.5, 119.0}) {
    t_.at(at);
    d = search(key);
    ASSERT_FALSE(d.allowed) << at;
    EXPECT_EQ(d.retry_after_s, static_cast<int>(std::ceil(120 - at))) << at;
  }
  t_.at(120);
  EXPECT_TRUE(search(key).allowed);
}

TEST_P(BudgetTest, DayRetryAfterIsExact) {
  const ApiKey key = key_of({"gate"}, {"search"}, 1000, 3);
  for (double at : {10.0, 300.0, 600.0}) {  // M+10 s, M+5 min, M+10 min
    t_.at(at);
    EXPECT_TRUE(search(key).allowed);
  }
  t_.at(660);
  auto d = search(key);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.window, "day");
  // The first search's bucket [M, M+1 min) leaves the 24-hour window at M+1 min+24 h.
  const int expected = 24 * 3600 + 60 - 660;
  EXPECT_EQ(d.retry_after_s, expected);
  t_.at(660 + expected - 1);
  EXPECT_FALSE(search(key).allowed) << "a second early";
  t_.at(660 + expected);
  EXPECT_TRUE(search(key).allowed);
}

TEST_P(BudgetTest, SearchesInFlightCount) {
  const ApiKey key = key_of({"gate"}, {"search"}, 2, 1000);
  t_.at(5);
  EXPECT_TRUE(budget_->admit(key, "key:k")->allowed);
  EXPECT_TRUE(budget_->admit(key, "key:k")->allowed);
  auto third = budget_->admit(key, "key:k");
  EXPECT_FALSE(third->allowed);
  // In flight: they will be recorded in the current minute's bucket, which counts until M+2 min.
  EXPECT_EQ(third->retry_after_s, 115);
  budget_->finish("key:k");
  budget_->finish("key:k");
  EXPECT_TRUE(budget_->admit(key, "key:k")->allowed);
}

INSTANTIATE_TEST_SUITE_P(Store, BudgetTest, ::testing::Values("sqlite", "postgresql"), backend_name);

// The same through HTTP: the 429's Retry-After, waited exactly, gets a 200.
TEST(SecurityBudget, HttpClientWaitingRetryAfterIsServed) {
  MinuteClock t;
  t.m = (std::chrono::duration_cast<std::chrono::milliseconds>(now_ms().time_since_epoch()).count() / kMinuteMs) *
        kMinuteMs;
  t.at(10);
  TestServer srv([&](ServerOptions& o) { o.clock = t.clock.fn(); });
  srv.create_collection("budget");
  const std::string key = srv.create_key(
      {{"name", "one-a-minute"}, {"collections", {"budget"}}, {"operations", {"search"}}, {"searches_per_minute", 1}});
  const std::string probe = face_crop(4, 0, 0.3f);
  const httplib::MultipartFormDataItems reason = {{"reason", "budget test", "", ""}};
  auto search = [&] { return srv.post_image("/v1/collections/budget/search", "image", probe, key, reason); };
  auto first = search();
  ASSERT_EQ(first->status, 200) << first->body;
  t.at(40);
  auto refused = search();
  ASSERT_EQ(refused->status, 429);
  EXPECT_EQ(refused->get_header_value("Retry-After"), "80");
  t.at(70);  // refused again, in the next minute: it must not extend the wait
  auto again = search();
  ASSERT_EQ(again->status, 429);
  EXPECT_EQ(again->get_header_value("Retry-After"), "50");
  t.at(70 + std::stoi(again->get_header_value("Retry-After")));
  auto served = search();
  EXPECT_EQ(served->status, 200) << served->body;
}

// ------------------------------------------------------------- trusted proxies

TEST(TrustedProxies, RightMostUntrustedAddressIsTheClient) {
  auto p = server::TrustedProxies::parse({"10.0.0.0/8", "192.168.1.7", "fd00::/8"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  struct Case {
    const char* peer;
    const char* forwarded;
    const char* client;
  };
  const Case cases[] = {
      {"10.1.2.3", "203.0.113.9", "203.0.113.9"},
      {"10.1.2.3", "1.1.1.1, 203.0.113.9", "203.0.113.9"},             // the client's own entry is ignored
      {"10.1.2.3", "203.0.113.9, 192.168.1.7", "203.0.113.9"},         // a trusted hop is skipped
      {"10.1.2.3", "2001:db8::1, fd12::5", "2001:db8::1"},
      {"::ffff:10.1.2.3", "203.0.113.9", "203.0.113.9"},              // IPv4-mapped peer
      {"10.1.2.3", "", "10.1.2.3"},                                    // no header: the proxy
      {"10.1.2.3", "10.9.9.9, 10.8.8.8", "10.9.9.9"},                  // all trusted: the left-most
      {"10.1.2.3", "203.0.113.9, not-an-ip", "10.1.2.3"},              // garbage: the proxy
      {"203.0.113.50", "198.51.100.1", "203.0.113.50"},                // untrusted peer: header ignored
      {"192.168.1.8", "198.51.100.1", "192.168.1.8"},                  // /32 is exact
  };
  for (const Case& c : cases) EXPECT_EQ(p->client_address(c.peer, c.forwarded), c.client) << c.peer << " " << c.forwarded;
  for (const char* bad : {"10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0/8", "host.example", "10.0.0.0/8x"}) {
    EXPECT_FALSE(server::TrustedProxies::parse({bad}).ok()) << bad;
  }
  ServerOptions o;
  o.trusted_proxies = {"10.0.0.0/40"};
  o.engine = &shared_engine();
  auto refused = Server::create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
}

std::string get_collections(int port, const char* from, const std::string& forwarded, const std::string& key) {
  RawConn c(port, from);
  c.send("GET /v1/collections HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + key +
         (forwarded.empty() ? "" : "\r\nX-Forwarded-For: " + forwarded) + "\r\nConnection: close\r\n\r\n");
  return c.read_until_close(std::chrono::seconds(10));
}

// A server behind the trusted proxy 127.0.0.2 that throttles after 3 failed logins.
void behind_proxy(ServerOptions& o) {
  o.auth_failures_allowed = 3;
  o.trusted_proxies = {"127.0.0.2"};
}
const std::string kWrongKey = "cnd_" + std::string(43, 'x');

// Two clients behind one proxy (127.0.0.2): one's failed logins do not lock out the other.
TEST(TrustedProxies, ClientsBehindOneProxyAreThrottledApart) {
  TestServer srv(behind_proxy);
  const std::string& wrong = kWrongKey;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.2", "203.0.113.1", wrong)), 401);
  }
  EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.2", "203.0.113.1", srv.admin_key)), 429);
  EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.2", "203.0.113.2", srv.admin_key)), 200)
      << "another client behind the same proxy";
  // Entries the client wrote itself (left of the proxy's) do not give it a new bucket.
  EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.2", "198.51.100.7, 203.0.113.1", srv.admin_key)), 429);
  EXPECT_NE(srv.log().find("\"ip\":\"203.0.113.2\""), std::string::npos) << "the access log names the client";
}

// A peer that is not a trusted proxy cannot pick its bucket with X-Forwarded-For.
TEST(TrustedProxies, UntrustedPeersForwardedForIsIgnored) {
  TestServer srv(behind_proxy);
  const std::string& wrong = kWrongKey;
  for (int i = 0; i < 3; ++i) {
    const std::string spoof = "203.0.113." + std::to_string(10 + i);
    EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.3", spoof, wrong)), 401);
  }
  EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.3", "203.0.113.99", srv.admin_key)), 429);
  EXPECT_EQ(raw_status(get_collections(srv.port(), "127.0.0.2", "203.0.113.99", srv.admin_key)), 200);
}

}  // namespace
}  // namespace candor::test
