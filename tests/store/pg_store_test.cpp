// What only the PostgreSQL store has: a shared database reached over a
// connection. Its key rules (no default key file), concurrent migration and
// appends from several nodes, connection loss and recovery, a client killed
// mid-transaction, and templates tampered with through SQL.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "backend_fixture.h"
#include "sqlite_store.h"

namespace candor::test {
namespace {

class PgStoreTest : public BackendTest {};

TEST_P(PgStoreTest, KeyMustBeNamedAndAFileIsCreatedOnlyForANewDatabase) {
  StoreOptions o;
  o.use_env_key = false;
  Result<std::unique_ptr<Store>> none = open_store(path_, o);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
  EXPECT_NE(none.error().message.find("CANDOR_KEY"), std::string::npos) << none.error().message;

  o.key_file = key_dir_file("pg.key");
  std::vector<std::vector<float>> templates;
  {
    std::unique_ptr<Store> s = open_or_die(path_, o);
    templates = enroll_alice(*s, 2);
  }
  struct stat st {};
  ASSERT_EQ(::stat(o.key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    std::unique_ptr<Store> s = open_or_die(path_, o);
    EXPECT_EQ(s->load_faces("staff")->back().embedding, templates.back());
  }
  // The database is keyed now: a missing key file is not replaced.
  StoreOptions other = o;
  other.key_file = key_dir_file("elsewhere.key");
  Result<std::unique_ptr<Store>> missing = open_store(path_, other);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("Refusing"), std::string::npos) << missing.error().message;
  EXPECT_FALSE(std::filesystem::exists(other.key_file));
  // A wrong key is refused.
  StoreOptions wrong = options_with_key();
  wrong.key_hex = SecretKey::generate().to_hex();
  Result<std::unique_ptr<Store>> refused = open_store(path_, wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(refused.error().message.find("wrong key"), std::string::npos) << refused.error().message;
}

TEST_P(PgStoreTest, TemplatesAreSealedToTheirRows) {
  std::vector<std::vector<float>> templates;
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
    templates = enroll_alice(*s, 2);
  }
  // The stored bytes are the sealed size, not the floats.
  EXPECT_EQ(db_->scalar("SELECT MIN(length(template)) FROM faces"), 24 + 512 * 4 + 16);
  db_->exec("UPDATE faces SET template = (SELECT template FROM faces ORDER BY id LIMIT 1)"
            " WHERE id = (SELECT MAX(id) FROM faces)");
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
  Result<std::vector<FaceRecord>> r = s->load_faces("staff");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(r.error().message.find("face 2"), std::string::npos) << r.error().message;
  db_->exec("DELETE FROM faces WHERE id = 2; UPDATE faces SET subject = 'mallory'");
  EXPECT_EQ(s->load_faces("staff").error().code, ErrorCode::kIntegrityError);
}

TEST_P(PgStoreTest, NodesStartingTogetherMigrateOnce) {
  std::vector<std::thread> nodes;
  std::atomic<int> opened{0};
  for (int i = 0; i < 4; ++i) {
    nodes.emplace_back([&] {
      Result<std::unique_ptr<Store>> s = open_store(path_, options_with_key());
      if (s.ok()) ++opened;
      else ADD_FAILURE() << s.error().message;
    });
  }
  for (std::thread& t : nodes) t.join();
  EXPECT_EQ(opened.load(), 4);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM schema_version"), store_detail::latest_schema_version());
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM meta WHERE key = 'key_check'"), 1);
}

TEST_P(PgStoreTest, TwoNodesAppendingAtOnceKeepOneChainAndShareRateCounts) {
  std::unique_ptr<Store> a = open_or_die(path_, options_with_key(&clock_));
  std::unique_ptr<Store> b = open_or_die(path_, options_with_key(&clock_));
  ASSERT_TRUE(a->create_collection(staff_collection(), who()).ok());
  constexpr int kThreads = 6;
  constexpr int kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    Store* s = (t % 2 == 0) ? a.get() : b.get();
    threads.emplace_back([s, &failures] {
      for (int i = 0; i < kEach; ++i) {
        SearchRecord r{AuditContext{"gate-1", "load"}, "staff", {}, "{}", "ok"};
        if (!s->record_search(r).ok()) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  Result<AuditVerification> v = b->audit_verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->intact) << v->summary();
  EXPECT_EQ(v->entries, 1 + kThreads * kEach);
  // Each node sees the searches of both.
  EXPECT_EQ(*a->search_count("gate-1", clock_.now() - std::chrono::minutes(1)), kThreads * kEach);
  EXPECT_EQ(*b->search_count("gate-1", clock_.now() - std::chrono::minutes(1)), kThreads * kEach);
}

TEST_P(PgStoreTest, ATerminatedConnectionIsReplacedWithoutReopening) {
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key(&clock_));
  enroll_alice(*s, 1);
  ASSERT_TRUE(s->wait_for_change(0, std::chrono::milliseconds(0)).ok());  // opens the LISTEN connection
  for (int round = 0; round < 2; ++round) {
    pg_->terminate_connections();
    // A dead idle connection is noticed when a transaction begins, before
    // anything was sent, and replaced: the call goes through.
    Result<std::vector<Collection>> c = s->list_collections();
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->size(), 1u);
  }
  // The listener notices its loss on its next wait and says so; the wait after recovers.
  Status first = s->wait_for_change(1'000'000, std::chrono::milliseconds(200));
  if (!first.ok()) {
    EXPECT_EQ(first.error().code, ErrorCode::kStoreUnavailable) << first.error().message;
  }
  Status second = s->wait_for_change(1'000'000, std::chrono::milliseconds(50));
  EXPECT_TRUE(second.ok()) << second.error().message;
  EXPECT_TRUE(s->ping().ok());
  EXPECT_TRUE(s->audit_verify()->intact);
}

// A private cluster this test stops and starts (the shared one serves other tests).
class PrivateCluster {
 public:
  PrivateCluster() {
    dir_ = std::filesystem::temp_directory_path() / ("candor-pgc-" + std::to_string(::getpid()));
    uri_ = run("start");
    while (!uri_.empty() && (uri_.back() == '\n' || uri_.back() == ' ')) uri_.pop_back();
  }
  ~PrivateCluster() {
    run("stop");
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& uri() const { return uri_; }
  void pause() { run("pause"); }
  void resume() { run("resume"); }

 private:
  std::string run(const std::string& cmd) {
    const std::string line = std::string(CANDOR_PG_CLUSTER_SCRIPT) + " " + cmd + " " + dir_.string();
    FILE* p = ::popen(line.c_str(), "r");
    if (p == nullptr) throw std::runtime_error("popen failed");
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    if (::pclose(p) != 0) throw std::runtime_error(line + " failed");
    return out;
  }
  std::filesystem::path dir_;
  std::string uri_;
};

TEST_P(PgStoreTest, ALostServerMakesCallsUnavailableUntilItReturns) {
  PrivateCluster cluster;
  std::unique_ptr<Store> s = open_or_die(cluster.uri(), options_with_key(&clock_));
  enroll_alice(*s, 1);
  const std::int64_t head = s->audit_head()->seq;
  ASSERT_TRUE(s->wait_for_change(0, std::chrono::milliseconds(0)).ok());

  cluster.pause();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(s->ping().error().code, ErrorCode::kStoreUnavailable);
  EXPECT_EQ(s->list_collections().error().code, ErrorCode::kStoreUnavailable);
  Result<std::vector<FaceId>> refused = s->enroll("staff", "alice", {synthetic_face(7)}, who());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kStoreUnavailable) << refused.error().message;
  EXPECT_EQ(s->record_search(SearchRecord{who("door"), "staff", {}, "{}", "ok"}).error().code,
            ErrorCode::kStoreUnavailable);
  EXPECT_EQ(s->wait_for_change(0, std::chrono::milliseconds(100)).error().code, ErrorCode::kStoreUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << "failing fast, not hanging";

  cluster.resume();
  // Backoff is at most 5 s: within a few seconds the same Store object works again.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  Status ping = s->ping();
  while (!ping.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ping = s->ping();
  }
  ASSERT_TRUE(ping.ok()) << ping.error().message;
  EXPECT_EQ(s->audit_head()->seq, head) << "the failed calls had no effect";
  EXPECT_EQ(s->load_faces("staff")->size(), 1u);
  EXPECT_TRUE(s->enroll("staff", "alice", {synthetic_face(8)}, who()).ok());
  EXPECT_TRUE(s->audit_verify()->intact);
  Status woke = Error{ErrorCode::kInternal, "not run"};
  for (int i = 0; i < 100 && !woke.ok(); ++i) woke = s->wait_for_change(0, std::chrono::milliseconds(10));
  EXPECT_TRUE(woke.ok()) << woke.error().message;
}

// A client killed with SIGKILL in the middle of a stream of enrolments: every
// face is wholly present (decryptable, audited) or absent, and the chain verifies.
TEST_P(PgStoreTest, AClientKilledMidTransactionLeavesWholeFacesOnly) {
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
  }
  std::set<FaceId> reported;
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      Result<std::unique_ptr<Store>> s = open_store(path_, options_with_key());
      if (!s) _exit(2);
      for (std::uint32_t i = 0; i < 1'000'000; ++i) {
        Result<std::vector<FaceId>> ids = (*s)->enroll("staff", "alice", {synthetic_face(i, 128)}, who());
        if (!ids) _exit(3);
        const FaceId id = ids->front();
        if (::write(fds[1], &id, sizeof id) != sizeof id) _exit(4);
      }
      _exit(0);
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + 150 * round));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    FaceId id = 0;
    while (::read(fds[0], &id, sizeof id) == sizeof id) reported.insert(id);
    ::close(fds[0]);
  }
  ASSERT_FALSE(reported.empty());
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
  Result<std::vector<FaceRecord>> faces = s->load_faces("staff");
  ASSERT_TRUE(faces.ok()) << faces.error().message;
  std::set<FaceId> present;
  for (const FaceRecord& f : *faces) present.insert(f.id);
  for (FaceId id : reported) EXPECT_EQ(present.count(id), 1u) << "committed face " << id << " lost";
  AuditFilter f;
  f.operation = "enroll";
  f.limit = 1'000'000;
  std::set<FaceId> audited;
  Result<std::vector<AuditEntry>> listed = s->audit_list(f);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  const std::vector<AuditEntry> enrolls = *listed;
  for (const AuditEntry& e : enrolls) {
    const nlohmann::json details = nlohmann::json::parse(e.details);
    for (const auto& v : details["face_ids"]) audited.insert(v.get<FaceId>());
  }
  EXPECT_EQ(audited, present) << "every face has its audit entry and no entry names a missing face";
  Result<AuditVerification> v = s->audit_verify();
  EXPECT_TRUE(v->intact) << v->summary();
}

// More faces than one page of load_faces (5,000) and of store copy (1,000):
// SQLite -> PostgreSQL under the same key, back into SQLite under another;
// every template decrypts to the same floats at the end and both chains verify.
TEST_P(PgStoreTest, LargeCollectionsLoadAndCopyInPages) {
  constexpr int kFaces = 5'200;
  SqliteTestDatabase source;
  std::vector<FaceId> ids;
  {
    std::unique_ptr<Store> s = open_or_die(source.uri(), options_with_key(&clock_));
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
    for (int b = 0; b * 1000 < kFaces; ++b) {
      std::vector<NewFace> batch;
      for (int i = b * 1000; i < std::min(kFaces, (b + 1) * 1000); ++i) batch.push_back(synthetic_face(static_cast<std::uint32_t>(i), 16));
      Result<std::vector<FaceId>> r = s->enroll("staff", "alice", batch, who());
      ASSERT_TRUE(r.ok()) << r.error().message;
      ids.insert(ids.end(), r->begin(), r->end());
    }
  }
  Result<StoreCopyReport> to_pg = copy_store(source.uri(), options_with_key(), path_, options_with_key());
  ASSERT_TRUE(to_pg.ok()) << to_pg.error().message;
  EXPECT_EQ(to_pg->faces, kFaces);
  EXPECT_FALSE(to_pg->reencrypted);
  std::unique_ptr<Store> pg = open_or_die(path_, options_with_key(&clock_));
  Result<std::vector<FaceRecord>> loaded = pg->load_faces("staff");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->size(), static_cast<std::size_t>(kFaces));
  EXPECT_EQ(loaded->back().id, ids.back());
  EXPECT_EQ(loaded->back().embedding, synthetic_embedding(kFaces - 1, 16));
  EXPECT_TRUE(pg->audit_verify()->intact);

  StoreOptions other_key = options_with_key();
  other_key.key_hex = SecretKey::generate().to_hex();
  SqliteTestDatabase back;
  Result<StoreCopyReport> to_sqlite = copy_store(path_, options_with_key(), back.uri(), other_key);
  ASSERT_TRUE(to_sqlite.ok()) << to_sqlite.error().message;
  EXPECT_TRUE(to_sqlite->reencrypted);
  EXPECT_EQ(to_sqlite->audit_entries, to_pg->audit_entries);
  std::unique_ptr<Store> s = open_or_die(back.uri(), other_key);
  Result<std::vector<FaceRecord>> again = s->load_faces("staff");
  ASSERT_TRUE(again.ok()) << again.error().message;
  ASSERT_EQ(again->size(), static_cast<std::size_t>(kFaces));
  for (std::size_t i = 0; i < again->size(); i += 997) {
    EXPECT_EQ((*again)[i].embedding, synthetic_embedding(static_cast<std::uint32_t>(i), 16)) << i;
  }
  EXPECT_TRUE(s->audit_verify()->intact);
  EXPECT_EQ(s->audit_head()->hash, pg->audit_head()->hash);
  // Not into a store that holds something.
  EXPECT_EQ(copy_store(source.uri(), options_with_key(), back.uri(), other_key).error().code, ErrorCode::kAlreadyExists);
}

INSTANTIATE_TEST_SUITE_P(Store, PgStoreTest, ::testing::Values("postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
