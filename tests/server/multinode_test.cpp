// Several `candor serve` nodes over one store (issue 6), in-process: two Servers on
// ephemeral ports over the same SQLite file or PostgreSQL database. Keys made on one
// node work on the other, faces enrolled on one are found by the other, a revoked
// subject is answered by neither; a node with another pepper is refused; keys of the
// former server_api_keys table move into the store; a database outage answers 503
// and the node recovers by itself; a node started before its database waits for it.
#include <sqlite3.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "../store/backend_fixture.h"
#include "candor/server.h"
#include "test_support.h"

namespace candor {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string face_crop(int sample_no, int face_index, float margin) {
  const auto bytes = test::face_crop_jpeg(sample_no, face_index, margin);
  return {bytes.begin(), bytes.end()};
}

// The options of a test node over `uri` with the secret files in `dir`.
// default_pepper: no --pepper-file (a SQLite store's "<db>.apikeys-pepper").
ServerOptions node_options(const std::string& uri, const std::filesystem::path& dir, bool default_pepper = false) {
  ServerOptions o;
  o.store_uri = uri;
  o.key_file = dir / "template.key";
  if (!default_pepper) o.pepper_file = dir / "apikeys-pepper";
  o.port = 0;
  o.engine = &test::shared_engine();
  o.workers = 2;
  o.retention_interval_min = 0;
  o.auth_failures_allowed = 1000;  // the tests poll with keys that are not valid yet or any more
  o.log_sink = [](std::string_view) {};
  return o;
}

// One node: a Server over `uri` with the given secret files, serving until destroyed.
class Node {
 public:
  Node(const std::string& uri, const std::filesystem::path& dir, bool default_pepper = false) {
    auto created = Server::create(node_options(uri, dir, default_pepper));
    if (!created) throw std::runtime_error("server: " + created.error().message);
    start(std::move(*created));
  }
  explicit Node(std::unique_ptr<Server> server) { start(std::move(server)); }
  ~Node() {
    server_->stop();
    thread_.join();
  }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60, 0);
    return c;
  }
  int readyz() const {
    auto r = client().Get("/readyz");
    return r ? r->status : 0;
  }
  httplib::Result post_json(const std::string& path, const json& body, const std::string& key) const {
    return client().Post(path.c_str(), {{"X-API-Key", key}}, body.dump(), "application/json");
  }
  httplib::Result get(const std::string& path, const std::string& key) const {
    return client().Get(path.c_str(), {{"X-API-Key", key}});
  }
  // The subjects a search of `probe` answers (empty on any failure).
  std::vector<std::string> search(const std::string& collection, const std::string& probe, const std::string& key) const {
    httplib::MultipartFormDataItems items{{"image", probe, "probe.jpg", "image/jpeg"}, {"reason", "door 3", "", ""}};
    auto r = client().Post(("/v1/collections/" + collection + "/search?top=3").c_str(), {{"X-API-Key", key}}, items);
    std::vector<std::string> out;
    if (!r || r->status != 200) {
      ADD_FAILURE() << "search: " << (r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error()));
      return out;
    }
    last_body = r->body;
    const json body = json::parse(r->body);
    for (const auto& m : body["matches"]) {
      if (m["match"].get<bool>()) out.push_back(m["subject"]);
    }
    return out;
  }

  std::string bootstrap_key;
  mutable std::string last_body;  // of the last search

 private:
  void start(std::unique_ptr<Server> server) {
    server_ = std::move(server);
    bootstrap_key = server_->take_bootstrap_key().value_or("");
    thread_ = std::thread([this] { (void)server_->run(); });
    for (int i = 0; i < 500 && readyz() != 200; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (readyz() != 200) throw std::runtime_error("node did not become ready");
  }

  std::unique_ptr<Server> server_;
  std::thread thread_;
};

class MultiNodeTest : public test::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // The template key and the pepper: the same files for every node.
    std::ofstream(key_dir_.file("template.key")) << test::kTestKey << "\n";
    std::filesystem::permissions(key_dir_.file("template.key"), std::filesystem::perms::owner_read |
                                                                    std::filesystem::perms::owner_write);
  }
  std::filesystem::path secrets() const { return key_dir_.file(""); }
};

TEST_P(MultiNodeTest, TwoNodesShareKeysFacesAndRevocations) {
  Node a(path_, secrets());
  Node b(path_, secrets());
  const std::string admin = a.bootstrap_key;
  ASSERT_FALSE(admin.empty());
  EXPECT_TRUE(b.bootstrap_key.empty()) << "the store already held a key";
  EXPECT_EQ(b.get("/v1/collections", admin)->status, 200) << "A's admin key works on B";

  // A key made on A works on B within a second (a cache miss re-reads the store, at
  // most once a second so that floods of bad keys cost the database little).
  auto made = a.post_json("/v1/keys", {{"name", "door"}, {"collections", {"*"}}, {"operations", {"search"}}}, admin);
  ASSERT_EQ(made->status, 201) << made->body;
  const auto key_made = Clock::now();
  const std::string door = json::parse(made->body)["key"];
  int door_status = 401;
  while (door_status == 401 && Clock::now() - key_made < std::chrono::milliseconds(1200)) {
    door_status = b.get("/v1/collections/staff/consents", door)->status;
    if (door_status == 401) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(door_status, 401) << "A's new key is not accepted by B within a second";

  ASSERT_EQ(a.post_json("/v1/collections", {{"name", "staff"}, {"purpose", "door access"}, {"retention_days", 30}}, admin)
                ->status,
            201);
  for (const char* s : {"anna", "ben"}) {
    auto g = a.post_json("/v1/collections/staff/consents",
                         {{"subject", s}, {"evidence_sha256", std::string(64, 'a')}, {"collected_by", "test"}}, admin);
    ASSERT_EQ(g->status, 201) << g->body;
  }
  auto e2 = a.client().Post("/v1/collections/staff/subjects/ben/faces", {{"X-API-Key", admin}},
                            httplib::MultipartFormDataItems{{"images", face_crop(6, 1, 0.3f), "b.jpg", "image/jpeg"}});
  ASSERT_EQ(e2->status, 200) << e2->body;
  auto e = a.client().Post("/v1/collections/staff/subjects/anna/faces", {{"X-API-Key", admin}},
                           httplib::MultipartFormDataItems{{"images", face_crop(6, 0, 0.3f), "a.jpg", "image/jpeg"}});
  ASSERT_EQ(e->status, 200) << e->body;
  const auto enrolled = Clock::now();

  // B finds anna within a second of A's enrollment.
  const std::string probe = face_crop(6, 0, 0.6f);
  std::vector<std::string> found;
  do {  // a search that starts within the second counts
    found = b.search("staff", probe, door);
  } while (found.empty() && Clock::now() - enrolled < std::chrono::seconds(1));
  ASSERT_FALSE(found.empty()) << "B did not find A's enrollment within 1 s: " << b.last_body
                               << "; A answers: " << (a.search("staff", probe, admin), a.last_body);
  EXPECT_EQ(found.front(), "anna");

  // Revoked on A: B never answers anna again, from the first search after.
  ASSERT_EQ(a.client().Delete("/v1/collections/staff/consents/anna", {{"X-API-Key", admin}})->status, 200);
  for (int i = 0; i < 3; ++i) {
    for (const auto& s : b.search("staff", probe, door)) EXPECT_NE(s, "anna");
  }

  // B's metrics show it following the feed.
  const std::string metrics = b.client().Get("/metrics")->body;
  EXPECT_NE(metrics.find("candor_feed_following 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("candor_feed_applied_version "), std::string::npos);
  EXPECT_NE(metrics.find("candor_store_up 1"), std::string::npos);

  // A key deleted on A stops working on B within B's cache age (5 s).
  ASSERT_EQ(a.client().Delete("/v1/keys/door", {{"X-API-Key", admin}})->status, 200);
  const auto deleted = Clock::now();
  int status = 0;
  while (Clock::now() - deleted < std::chrono::seconds(7)) {
    status = b.get("/v1/collections/staff/consents", door)->status;
    if (status == 401) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(status, 401);
}

TEST_P(MultiNodeTest, ANodeWithAnotherPepperIsRefused) {
  {
    Node a(path_, secrets());
    ASSERT_FALSE(a.bootstrap_key.empty());
  }
  test::TempDir other;
  std::filesystem::copy_file(key_dir_.file("template.key"), other.file("template.key"));
  std::filesystem::permissions(other.file("template.key"),
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  {
    std::ofstream(other.file("apikeys-pepper"), std::ios::binary) << std::string(32, 'x');
  }
  ServerOptions o;
  o.store_uri = path_;
  o.key_file = other.file("template.key");
  o.pepper_file = other.file("apikeys-pepper");
  o.port = 0;
  o.engine = &test::shared_engine();
  o.log_sink = [](std::string_view) {};
  auto refused = Server::create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kIntegrityError) << refused.error().message;

  std::filesystem::remove(other.file("apikeys-pepper"));  // missing while the store holds keys
  refused = Server::create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotFound) << refused.error().message;
  EXPECT_FALSE(std::filesystem::exists(other.file("apikeys-pepper"))) << "never created beside keys it cannot check";
}

TEST_P(MultiNodeTest, AStoreOutageAnswers503AndTheNodeRecovers) {
  if (!is_pg()) GTEST_SKIP() << "an outage is a PostgreSQL matter (SQLite is a local file)";
  Node a(path_, secrets());
  const std::string admin = a.bootstrap_key;
  ASSERT_EQ(a.get("/v1/collections", admin)->status, 200);
  test::RawPg admin_conn(pg_->server_uri());
  admin_conn.exec("ALTER DATABASE " + pg_->name() + " ALLOW_CONNECTIONS false");
  pg_->terminate_connections();

  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (a.readyz() != 503 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(a.readyz(), 503);
  auto down = a.get("/v1/collections", admin);
  EXPECT_EQ(down->status, 503) << down->body;
  EXPECT_NE(down->body.find("store_unavailable"), std::string::npos) << down->body;
  EXPECT_NE(a.client().Get("/metrics")->body.find("candor_store_up 0"), std::string::npos);

  admin_conn.exec("ALTER DATABASE " + pg_->name() + " ALLOW_CONNECTIONS true");
  deadline = Clock::now() + std::chrono::seconds(15);
  while (a.readyz() != 200 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(a.readyz(), 200) << "the node recovers by itself";
  EXPECT_EQ(a.get("/v1/collections", admin)->status, 200);
}

// A node started while its database refuses connections fails at once with
// store_unavailable when told not to wait, and otherwise waits (ServerOptions::store_wait_s,
// `candor serve --store-wait`) and serves once the database is back.
TEST_P(MultiNodeTest, ANodeStartedBeforeItsDatabaseWaitsForIt) {
  if (!is_pg()) GTEST_SKIP() << "an unreachable store is a PostgreSQL matter (SQLite is a local file)";
  test::RawPg admin_conn(pg_->server_uri());
  admin_conn.exec("ALTER DATABASE " + pg_->name() + " ALLOW_CONNECTIONS false");
  pg_->terminate_connections();

  ServerOptions o = node_options(path_, secrets());
  o.store_wait_s = 0;
  auto started = Clock::now();
  auto refused = Server::create(o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kStoreUnavailable) << refused.error().message;
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(3)) << "no wait asked, none done";

  auto log = std::make_shared<std::vector<std::string>>();
  auto log_mutex = std::make_shared<std::mutex>();
  o.log_sink = [log, log_mutex](std::string_view line) {
    std::lock_guard lock(*log_mutex);
    log->emplace_back(line);
  };
  o.store_wait_s = 30;
  const auto back_after = std::chrono::milliseconds(1500);
  std::thread reopen([&] {
    std::this_thread::sleep_for(back_after);
    admin_conn.exec("ALTER DATABASE " + pg_->name() + " ALLOW_CONNECTIONS true");
  });
  started = Clock::now();
  auto waited = Server::create(o);
  const auto took = Clock::now() - started;
  reopen.join();
  ASSERT_TRUE(waited) << waited.error().message;
  EXPECT_GE(took, back_after);
  EXPECT_LT(took, back_after + std::chrono::seconds(6)) << "retries are at most 5 s apart";
  Node a(std::move(*waited));
  EXPECT_FALSE(a.bootstrap_key.empty()) << "the first admin key of the empty store";
  EXPECT_EQ(a.get("/v1/collections", a.bootstrap_key)->status, 200);
  std::lock_guard lock(*log_mutex);
  const auto retries = std::count_if(log->begin(), log->end(), [](const std::string& line) {
    return line.find("the store is unreachable; trying again") != std::string::npos;
  });
  EXPECT_GE(retries, 2) << "each attempt is logged";
}

INSTANTIATE_TEST_SUITE_P(Backends, MultiNodeTest, ::testing::Values("sqlite", "postgresql"), test::backend_name);

// Keys of the former table server_api_keys (in the SQLite store's file, hashed with
// the pepper beside it) are moved into the store at start-up; the table is dropped.
TEST(ServerKeyMigration, LegacyKeysMoveIntoTheStore) {
  ASSERT_GE(sodium_init(), 0);
  test::TempDir dir;
  const std::string db = dir.file("store.db");
  { (void)test::open_or_die(db, test::options_with_key()); }
  std::array<unsigned char, 32> pepper{};
  randombytes_buf(pepper.data(), pepper.size());
  {
    std::ofstream(db + ".apikeys-pepper", std::ios::binary)
        .write(reinterpret_cast<const char*>(pepper.data()), static_cast<std::streamsize>(pepper.size()));
  }
  const std::string secret = "cnd_legacylegacylegacylegacylegacylegacylegacyl";
  std::array<unsigned char, 32> hash{};
  crypto_generichash(hash.data(), hash.size(), reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                     pepper.data(), pepper.size());
  {
    test::RawDb raw(db);
    raw.exec(
        "CREATE TABLE server_api_keys (name TEXT PRIMARY KEY, hash BLOB NOT NULL, collections TEXT NOT NULL,"
        " operations TEXT NOT NULL, searches_per_minute INTEGER NOT NULL, searches_per_day INTEGER NOT NULL,"
        " created_at_ms INTEGER NOT NULL)");
  }
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(h, "INSERT INTO server_api_keys VALUES ('old-admin', ?, '[\"*\"]', '[\"admin\"]', 60, 10000, 0)",
                               -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(st, 1, hash.data(), static_cast<int>(hash.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(h);

  std::ofstream(dir.file("template.key")) << test::kTestKey << "\n";
  std::filesystem::permissions(dir.file("template.key"),
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  Node node(db, dir.file(""), true);
  EXPECT_TRUE(node.bootstrap_key.empty()) << "the moved key counts: no new admin key";
  EXPECT_EQ(node.get("/v1/keys", secret)->status, 200) << "the old key works";
  EXPECT_EQ(test::RawDb(db).scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'server_api_keys'"), 0);
  EXPECT_EQ(node.get("/v1/keys", "cnd_" + std::string(43, 'x'))->status, 401);
}

}  // namespace
}  // namespace candor
