// The change feed (changes_since / wait_for_change), ping and API-key records,
// on both stores.
#include <nlohmann/json.hpp>

#include <chrono>
#include <future>
#include <thread>

#include "backend_fixture.h"

namespace candor::test {
namespace {

using json = nlohmann::json;
using Kind = FaceChange::Kind;

class ChangeFeedTest : public StaffStoreTest {
 protected:
  std::vector<FaceId> enroll(const std::string& subject, int n, std::uint32_t seed, Store* s = nullptr) {
    if (s == nullptr) s = store_.get();
    std::vector<NewFace> faces;
    for (int i = 0; i < n; ++i) faces.push_back(synthetic_face(seed + static_cast<std::uint32_t>(i), 64));
    Result<std::vector<FaceId>> ids = s->enroll("staff", subject, faces, who());
    EXPECT_TRUE(ids.ok()) << (ids.ok() ? "" : ids.error().message);
    return ids.ok() ? *ids : std::vector<FaceId>{};
  }

  AuditEntry entry_at(std::int64_t seq) {
    AuditFilter f;
    f.after_seq = seq - 1;
    f.limit = 1;
    Result<std::vector<AuditEntry>> r = store_->audit_list(f);
    EXPECT_TRUE(r.ok() && !r->empty());
    return r.ok() && !r->empty() ? r->front() : AuditEntry{};
  }

};

TEST_P(ChangeFeedTest, FreshStoreHasAnEmptyFeedThatIsNotTruncated) {
  Result<ChangeBatch> b = store_->changes_since(0, 100);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_TRUE(b->changes.empty());
  EXPECT_FALSE(b->truncated);
  EXPECT_EQ(b->version, store_->audit_head()->seq) << "no changes: the current version";
  EXPECT_TRUE(store_->ping().ok());
}

TEST_P(ChangeFeedTest, EveryOperationRecordsItsChangesAtItsAuditSeq) {
  ASSERT_TRUE(store_->create_collection(staff_collection("visitors"), who()).ok());
  for (const char* s : {"alice", "bob", "carol"}) ASSERT_TRUE(store_->grant_consent(consent_for(s), who()).ok());
  NewConsent dave = consent_for("dave");
  dave.expires_at = clock_.now() + std::chrono::days(2);
  ASSERT_TRUE(store_->grant_consent(dave, who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("erin", "visitors"), who()).ok());
  const std::int64_t start = store_->audit_head()->seq;

  const std::vector<FaceId> alice = enroll("alice", 2, 1);
  const std::vector<FaceId> bob = enroll("bob", 1, 10);
  const std::vector<FaceId> carol = enroll("carol", 1, 20);
  const std::vector<FaceId> dave_ids = enroll("dave", 1, 30);
  Result<std::vector<FaceId>> erin = store_->enroll("visitors", "erin", {synthetic_face(40, 64)}, who());
  ASSERT_TRUE(erin.ok());
  ASSERT_TRUE(store_->record_search(SearchRecord{who("door"), "staff", {}, "{}", "ok"}).ok());  // no change
  ASSERT_TRUE(store_->revoke_consent("staff", "alice", who()).ok());
  ASSERT_TRUE(store_->erase_subject("staff", "bob", who("art. 17")).ok());
  clock_.advance_days(3);
  ASSERT_TRUE(store_->retention_run(clock_.now(), who("nightly")).ok());  // dave's consent lapsed
  ASSERT_TRUE(store_->delete_collection("visitors", who("programme ended")).ok());

  Result<ChangeBatch> b = store_->changes_since(start, 1000);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_FALSE(b->truncated);
  struct Expect {
    Kind kind;
    FaceId id;
    std::string collection;
    std::string operation;
  };
  const std::vector<Expect> expected = {
      {Kind::kAdded, alice[0], "staff", "enroll"},          {Kind::kAdded, alice[1], "staff", "enroll"},
      {Kind::kAdded, bob[0], "staff", "enroll"},            {Kind::kAdded, carol[0], "staff", "enroll"},
      {Kind::kAdded, dave_ids[0], "staff", "enroll"},       {Kind::kAdded, (*erin)[0], "visitors", "enroll"},
      {Kind::kRemoved, alice[0], "staff", "revoke_consent"}, {Kind::kRemoved, alice[1], "staff", "revoke_consent"},
      {Kind::kRemoved, bob[0], "staff", "erase_subject"},   {Kind::kRemoved, dave_ids[0], "staff", "retention_purge"},
      {Kind::kCollectionDeleted, 0, "visitors", "delete_collection"},
  };
  ASSERT_EQ(b->changes.size(), expected.size());
  std::int64_t prev = start;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const FaceChange& c = b->changes[i];
    EXPECT_EQ(c.kind, expected[i].kind) << i;
    EXPECT_EQ(c.face_id, expected[i].id) << i;
    EXPECT_EQ(c.collection, expected[i].collection) << i;
    EXPECT_GE(c.version, prev) << "ascending";
    prev = c.version;
    const AuditEntry e = entry_at(c.version);
    EXPECT_EQ(e.seq, c.version);
    EXPECT_EQ(e.operation, expected[i].operation) << "version " << c.version << " is that transaction's audit seq";
  }
  EXPECT_EQ(b->changes[0].version, b->changes[1].version) << "one enroll, one version";
  EXPECT_EQ(b->version, b->changes.back().version);

  // Resuming from the last version: nothing new, version stays at the head.
  Result<ChangeBatch> again = store_->changes_since(b->version, 1000);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->changes.empty());
  EXPECT_EQ(again->version, store_->audit_head()->seq);
}

TEST_P(ChangeFeedTest, LimitPagesWithoutSplittingAVersion) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  const std::vector<FaceId> a = enroll("alice", 3, 1);
  const std::vector<FaceId> b = enroll("alice", 2, 10);
  Result<ChangeBatch> first = store_->changes_since(0, 2);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->changes.size(), 3u) << "the whole first enroll, though the limit is 2";
  EXPECT_EQ(first->changes[2].face_id, a[2]);
  Result<ChangeBatch> second = store_->changes_since(first->version, 2);
  ASSERT_EQ(second->changes.size(), 2u);
  EXPECT_EQ(second->changes[0].face_id, b[0]);
  EXPECT_EQ(second->changes[1].face_id, b[1]);
  Result<ChangeBatch> none = store_->changes_since(0, 0);
  EXPECT_TRUE(none->changes.empty());
  EXPECT_EQ(none->version, 0);
}

TEST_P(ChangeFeedTest, PrunedFeedReportsTruncation) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  enroll("alice", 1, 1);
  const std::int64_t old_version = store_->changes_since(0, 10)->version;
  clock_.advance_days(8);
  const std::vector<FaceId> recent = enroll("alice", 1, 2);
  ASSERT_TRUE(store_->retention_run(clock_.now(), who("nightly")).ok());

  Result<ChangeBatch> from_start = store_->changes_since(0, 10);
  ASSERT_TRUE(from_start.ok());
  EXPECT_TRUE(from_start->truncated) << "the first enroll's change was pruned";
  EXPECT_TRUE(from_start->changes.empty());
  EXPECT_EQ(from_start->version, store_->audit_head()->seq);

  Result<ChangeBatch> resumed = store_->changes_since(old_version, 10);
  ASSERT_TRUE(resumed.ok());
  EXPECT_FALSE(resumed->truncated) << "nothing after the pruned version was lost";
  ASSERT_EQ(resumed->changes.size(), 1u);
  EXPECT_EQ(resumed->changes[0].face_id, recent[0]);
}

TEST_P(ChangeFeedTest, WaitTimesOutWhenNothingChanges) {
  const std::int64_t v = store_->changes_since(0, 10)->version;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(store_->wait_for_change(v, std::chrono::milliseconds(150)).ok());
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(140));
  EXPECT_LT(waited, std::chrono::milliseconds(2000));
}

TEST_P(ChangeFeedTest, WaitWakesWhenAnotherStoreEnrolls) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  std::unique_ptr<Store> other = open_or_die(path_, options_with_key(&clock_));
  const std::int64_t v = store_->changes_since(0, 10)->version;
  // Something older than `after` returns at once.
  ASSERT_TRUE(store_->wait_for_change(-1, std::chrono::seconds(0)).ok());

  std::promise<void> waiting;
  std::chrono::steady_clock::time_point enrolled_at;
  std::thread writer([&] {
    waiting.get_future().wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    enrolled_at = std::chrono::steady_clock::now();
    enroll("alice", 1, 5, other.get());
  });
  waiting.set_value();
  const auto t0 = std::chrono::steady_clock::now();
  Status s = store_->wait_for_change(v, std::chrono::seconds(10));
  const auto woke_at = std::chrono::steady_clock::now();
  writer.join();
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_LT(woke_at - t0, std::chrono::seconds(5)) << "woken, not timed out";
  EXPECT_LT(woke_at - enrolled_at, std::chrono::milliseconds(500)) << "woken well under a second after the commit";
  Result<ChangeBatch> b = store_->changes_since(v, 10);
  ASSERT_EQ(b->changes.size(), 1u);
  EXPECT_EQ(b->changes[0].kind, Kind::kAdded);
}

TEST_P(ChangeFeedTest, ApiKeysAreStoredListedDeletedAndAudited) {
  const std::string hash = sha256_hex("secret of door-3");
  ApiKeyRecord k{"door-3", hash, R"({"collections":["staff"],"operations":["search"]})", {}};
  ASSERT_TRUE(store_->put_api_key(k, who()).ok());
  ApiKeyRecord admin{"admin", sha256_hex("admin secret"), "{}", clock_.now() - std::chrono::days(1)};
  ASSERT_TRUE(store_->put_api_key(admin, who()).ok());

  Result<std::vector<ApiKeyRecord>> keys = store_->list_api_keys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "admin");
  EXPECT_EQ((*keys)[0].created_at, admin.created_at);
  EXPECT_EQ((*keys)[1].name, "door-3");
  EXPECT_EQ((*keys)[1].hash_hex, hash);
  EXPECT_EQ((*keys)[1].scopes_json, k.scopes_json);
  EXPECT_EQ((*keys)[1].created_at, clock_.now());

  EXPECT_EQ(store_->put_api_key(k, who()).error().code, ErrorCode::kAlreadyExists);
  ApiKeyRecord bad = k;
  bad.name = "other";
  bad.hash_hex = "not hex";
  EXPECT_EQ(store_->put_api_key(bad, who()).error().code, ErrorCode::kInvalidArgument);
  bad = k;
  bad.name.clear();
  EXPECT_EQ(store_->put_api_key(bad, who()).error().code, ErrorCode::kInvalidArgument);

  ASSERT_TRUE(store_->delete_api_key("door-3", who()).ok());
  EXPECT_EQ(store_->delete_api_key("door-3", who()).error().code, ErrorCode::kNotFound);
  ASSERT_EQ(store_->list_api_keys()->size(), 1u);

  AuditFilter f;
  f.operation = "key_create";
  Result<std::vector<AuditEntry>> created = store_->audit_list(f);
  ASSERT_EQ(created->size(), 5u);  // two made, three refused
  EXPECT_EQ((*created)[0].result, "ok");
  EXPECT_EQ(json::parse((*created)[0].details)["name"], "door-3");
  EXPECT_EQ((*created)[2].result, "refused: already_exists");
  f.operation = "key_delete";
  Result<std::vector<AuditEntry>> deleted = store_->audit_list(f);
  ASSERT_EQ(deleted->size(), 2u);
  EXPECT_EQ((*deleted)[1].result, "refused: not_found");
  const std::vector<AuditEntry> all = *store_->audit_list(AuditFilter{});
  for (const AuditEntry& e : all) {
    EXPECT_EQ(e.details.find(hash), std::string::npos) << "the key hash is never logged";
  }
  EXPECT_TRUE(store_->audit_verify()->intact);
}

INSTANTIATE_TEST_SUITE_P(Store, ChangeFeedTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
