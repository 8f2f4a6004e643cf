// Store behaviour: collections, the consent rules, revocation, erasure,
// export, retention, search accounting, migrations and concurrency.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <thread>

#include "backend_fixture.h"
#include "sqlite_store.h"

namespace candor::test {
namespace {

using json = nlohmann::json;

// The body of the store tests; the backend comes from the test parameter.
class StoreTestBase : public StaffStoreTest {
 protected:
  std::vector<FaceId> enroll_ok(const std::string& subject, int n, std::uint32_t seed = 1,
                                const std::string& collection = "staff") {
    std::vector<NewFace> faces;
    for (int i = 0; i < n; ++i) faces.push_back(synthetic_face(seed + static_cast<std::uint32_t>(i)));
    Result<std::vector<FaceId>> ids = store_->enroll(collection, subject, faces, who());
    EXPECT_TRUE(ids.ok()) << (ids.ok() ? "" : ids.error().message);
    return ids.ok() ? *ids : std::vector<FaceId>{};
  }

  AuditEntry last_audit() {
    Result<std::vector<AuditEntry>> all = store_->audit_list(AuditFilter{});
    EXPECT_TRUE(all.ok());
    EXPECT_FALSE(all->empty());
    return all->back();
  }

};

class StoreTest : public StoreTestBase {};

TEST_P(StoreTest, CollectionsAreValidatedAndUnique) {
  EXPECT_EQ(store_->create_collection(staff_collection(), who()).error().code, ErrorCode::kAlreadyExists);
  for (const char* bad : {"", "Staff", "has space", "semi;colon", "x/y"}) {
    EXPECT_EQ(store_->create_collection(staff_collection(bad), who()).error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(store_->create_collection(staff_collection(std::string(65, 'a')), who()).ok());
  NewCollection too_long = staff_collection("archive");
  too_long.retention_days = kMaxRetentionDays + 1;
  EXPECT_EQ(store_->create_collection(too_long, who()).error().code, ErrorCode::kInvalidArgument);

  NewCollection visitors = staff_collection("visitors_2024-q1");
  visitors.liveness_required = true;
  visitors.match_threshold = 0.55F;
  ASSERT_TRUE(store_->create_collection(visitors, who()).ok());
  Result<std::vector<Collection>> all = store_->list_collections();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  Result<Collection> got = store_->get_collection("visitors_2024-q1");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->liveness_required);
  EXPECT_FLOAT_EQ(got->match_threshold, 0.55F);
  EXPECT_EQ(got->created_at, clock_.now());
  EXPECT_EQ(store_->get_collection("nope").error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, EnrollWithConsentStoresDecryptableFaces) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  std::vector<FaceId> ids = enroll_ok("alice", 2, 7);
  ASSERT_EQ(ids.size(), 2u);

  Result<std::vector<FaceRecord>> faces = store_->load_faces("staff");
  ASSERT_TRUE(faces.ok()) << faces.error().message;
  ASSERT_EQ(faces->size(), 2u);
  EXPECT_EQ((*faces)[0].id, ids[0]);
  EXPECT_EQ((*faces)[0].embedding, synthetic_embedding(7));
  EXPECT_EQ((*faces)[1].embedding, synthetic_embedding(8));
  EXPECT_EQ((*faces)[0].subject, "alice");
  EXPECT_EQ((*faces)[0].model_id, "arcface-r100-test");
  EXPECT_EQ((*faces)[0].image_sha256, sha256_hex("image-7"));
  EXPECT_EQ((*faces)[0].quality_json, R"({"sharpness":0.8})");
  EXPECT_FLOAT_EQ((*faces)[0].box.w, 100.0F);

  AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "enroll");
  EXPECT_EQ(e.result, "ok");
  EXPECT_EQ(e.subjects, std::vector<std::string>{"alice"});
  EXPECT_EQ(json::parse(e.details)["face_ids"], json(ids));
  EXPECT_EQ(e.details.find("0."), std::string::npos) << "no template values in the audit log";

  Result<std::vector<FaceRecord>> meta = store_->get_faces(ids, false);
  ASSERT_TRUE(meta.ok());
  ASSERT_EQ(meta->size(), 2u);
  EXPECT_TRUE((*meta)[0].embedding.empty());
  std::vector<FaceId> probe = {ids[1], 999, ids[0]};
  EXPECT_EQ(*store_->existing_faces(probe), (std::vector<FaceId>{ids[0], ids[1]}));
}

TEST_P(StoreTest, EnrollRejectsMixedModelsAndBadInput) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  enroll_ok("alice", 1);
  NewFace other = synthetic_face(3, 128);
  EXPECT_EQ(store_->enroll("staff", "alice", {other}, who()).error().code, ErrorCode::kInvalidArgument);
  NewFace nan_face = synthetic_face(4);
  nan_face.embedding[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(store_->enroll("staff", "alice", {nan_face}, who()).error().code, ErrorCode::kInvalidArgument);
  NewFace no_hash = synthetic_face(5);
  no_hash.image_sha256 = "not-a-hash";
  EXPECT_EQ(store_->enroll("staff", "alice", {no_hash}, who()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->enroll("staff", "alice", {}, who()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->enroll("staff", "alice", {synthetic_face(6)}, AuditContext{"", ""}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->load_faces("staff")->size(), 1u);
}

// Each case prepares the consent state, then enroll must be refused with
// nothing stored and the refusal audited.
struct ConsentCase {
  const char* name;
  std::function<void(Store&, TestClock&)> prepare;
};

class ConsentRefusalTest : public StoreTestBase {};

// Parameterised by "<backend>/<case>": BackendTest reads the backend before the slash.
const std::vector<ConsentCase>& consent_cases();

const ConsentCase& consent_case(const std::string& param) {
  const std::string name = param.substr(param.find('/') + 1);
  for (const ConsentCase& c : consent_cases()) {
    if (name == c.name) return c;
  }
  throw std::logic_error("no consent case " + name);
}

TEST_P(ConsentRefusalTest, RefusedNothingStoredRefusalAudited) {
  consent_case(GetParam()).prepare(*store_, clock_);
  const std::int64_t seq_before = store_->audit_head()->seq;

  Result<std::vector<FaceId>> r = store_->enroll("staff", "alice", {synthetic_face(1), synthetic_face(2)}, who());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConsentRequired) << r.error().message;

  EXPECT_TRUE(store_->load_faces("staff")->empty());
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM faces"), 0);
  EXPECT_EQ(store_->audit_head()->seq, seq_before + 1);
  AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "enroll");
  EXPECT_EQ(e.result, "refused: consent_required");
  EXPECT_EQ(e.collection, "staff");
  EXPECT_EQ(e.subjects, std::vector<std::string>{"alice"});
  EXPECT_EQ(json::parse(e.details)["faces_offered"], 2);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

const std::vector<ConsentCase>& consent_cases() {
  static const std::vector<ConsentCase> cases = {
        ConsentCase{"none", [](Store&, TestClock&) {}},
        ConsentCase{"other_subject",
                    [](Store& s, TestClock&) { ASSERT_TRUE(s.grant_consent(consent_for("bob"), who()).ok()); }},
        ConsentCase{"expired",
                    [](Store& s, TestClock& clock) {
                      NewConsent c = consent_for("alice");
                      c.expires_at = clock.now() + std::chrono::days(1);
                      ASSERT_TRUE(s.grant_consent(c, who()).ok());
                      clock.advance_days(2);
                    }},
        ConsentCase{"wrong_purpose",
                    [](Store& s, TestClock&) {
                      NewConsent c = consent_for("alice");
                      c.purpose = "marketing analytics";
                      // Refused at grant since issue 17 (ConsentForAnotherPurposeIsRefusedAtGrant...);
                      // a row written before that is AConsentRowForAnotherPurposeAllowsNoEnrollment.
                      ASSERT_EQ(s.grant_consent(c, who()).error().code, ErrorCode::kInvalidArgument);
                    }},
        ConsentCase{"revoked",
                    [](Store& s, TestClock&) {
                      ASSERT_TRUE(s.grant_consent(consent_for("alice"), who()).ok());
                      Result<std::vector<FaceId>> r = s.revoke_consent("staff", "alice", who());
                      ASSERT_TRUE(r.ok());
                      EXPECT_TRUE(r->empty());
                    }},
        ConsentCase{"not_yet_valid",
                    [](Store& s, TestClock& clock) {
                      NewConsent c = consent_for("alice");
                      c.granted_at = clock.now() + std::chrono::days(3);
                      ASSERT_TRUE(s.grant_consent(c, who()).ok());
                    }}};
  return cases;
}

std::vector<std::string> consent_params() {
  std::vector<std::string> out;
  for (const char* backend : {"sqlite", "postgresql"}) {
    for (const ConsentCase& c : consent_cases()) out.push_back(std::string(backend) + "/" + c.name);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Consent, ConsentRefusalTest, ::testing::ValuesIn(consent_params()),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string name = param_info.param;
                           std::replace(name.begin(), name.end(), '/', '_');
                           return name;
                         });

TEST_P(StoreTest, InvalidUtf8IsStoredNotThrown) {
  NewCollection c = staff_collection("latin1");
  c.purpose = "caf\xe9 staff";
  if (is_pg()) {
    // PostgreSQL text is UTF-8: refused as an argument error, and nothing thrown.
    EXPECT_EQ(store_->create_collection(c, who()).error().code, ErrorCode::kInvalidArgument);
    EXPECT_TRUE(store_->audit_verify()->intact);
    return;
  }
  ASSERT_TRUE(store_->create_collection(c, who()).ok());
  NewConsent k = consent_for("jos\xe9", "latin1");
  k.purpose = c.purpose;
  ASSERT_TRUE(store_->grant_consent(k, who()).ok());
  EXPECT_TRUE(store_->export_subject("jos\xe9", who()).ok());
  EXPECT_TRUE(store_->audit_verify()->intact);
}

TEST_P(StoreTest, ConsentInputIsValidated) {
  NewConsent c = consent_for("alice");
  c.evidence_sha256 = "the scanned form itself";
  EXPECT_EQ(store_->grant_consent(c, who()).error().code, ErrorCode::kInvalidArgument);
  c = consent_for("alice");
  c.expires_at = clock_.now() - std::chrono::days(1);
  EXPECT_EQ(store_->grant_consent(c, who()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->grant_consent(consent_for("alice", "nope"), who()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->grant_consent(consent_for("al\nice"), who()).error().code, ErrorCode::kInvalidArgument);
  AuditEntry e = last_audit();
  EXPECT_EQ(e.result, "refused: invalid_argument");
  EXPECT_TRUE(e.subjects.empty()) << "a malformed subject is not written to the audit index";
}

// Issue 17 (#4): a consent for another purpose than the collection's was recorded (and
// shown as valid) although no enrollment could ever rest on it. Refused at grant, naming
// both purposes; nothing stored; the refusal audited.
TEST_P(StoreTest, ConsentForAnotherPurposeIsRefusedAtGrantNamingBothPurposes) {
  NewConsent c = consent_for("alice");
  c.purpose = "Marketing analytics";
  const Result<Consent> r = store_->grant_consent(c, who());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("Marketing analytics"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(std::string(kPurpose)), std::string::npos) << r.error().message;
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM consents"), 0);
  const AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "grant_consent");
  EXPECT_EQ(e.result, "refused: invalid_argument");

  // No purpose: the collection's is recorded (the default both clients used to fill in).
  c.purpose.clear();
  const Result<Consent> defaulted = store_->grant_consent(c, who());
  ASSERT_TRUE(defaulted.ok()) << defaulted.error().message;
  EXPECT_EQ(defaulted->purpose, kPurpose);
  EXPECT_EQ(store_->list_consents("staff", "alice")->at(0).purpose, kPurpose);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

// A consent row for another purpose (written before grants were checked) still allows
// no enrollment: enroll() compares the purposes itself.
TEST_P(StoreTest, AConsentRowForAnotherPurposeAllowsNoEnrollment) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  db_->exec("UPDATE consents SET purpose = 'marketing analytics'");
  const Result<std::vector<FaceId>> r = store_->enroll("staff", "alice", {synthetic_face(1)}, who());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConsentRequired);
}

// Issue 17 (#2): the console shows the newest entries first and filters by the key that
// acted, a time range and a seq bound (paging backwards).
TEST_P(StoreTest, AuditListsNewestFirstByActorTimeAndSeq) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());  // seq 2 (1: the collection)
  *clock_.ms += 60'000;
  ASSERT_TRUE(store_->grant_consent(consent_for("bob"), AuditContext{"key:desk", ""}).ok());  // seq 3
  *clock_.ms += 60'000;
  ASSERT_TRUE(store_->grant_consent(consent_for("carol"), AuditContext{"key:desk", ""}).ok());  // seq 4
  const auto seqs = [&](const AuditFilter& f) {
    const Result<std::vector<AuditEntry>> listed = store_->audit_list(f);
    EXPECT_TRUE(listed.ok());
    std::vector<std::int64_t> out;
    if (listed.ok()) {
      for (const AuditEntry& e : *listed) out.push_back(e.seq);
    }
    return out;
  };
  AuditFilter f;
  f.newest_first = true;
  f.limit = 2;
  EXPECT_EQ(seqs(f), (std::vector<std::int64_t>{4, 3})) << "the newest two, newest first";
  // Each entry keeps its own subject's name in either order (a merge that assumed
  // ascending seqs once named nobody here).
  const Result<std::vector<AuditEntry>> newest = store_->audit_list(f);
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(newest->size(), 2u);
  EXPECT_EQ((*newest)[0].subjects, std::vector<std::string>{"carol"});
  EXPECT_EQ((*newest)[1].subjects, std::vector<std::string>{"bob"});
  f.before_seq = 3;
  EXPECT_EQ(seqs(f), (std::vector<std::int64_t>{2, 1})) << "the page before";
  f = AuditFilter{};
  f.actor = "key:desk";
  EXPECT_EQ(seqs(f), (std::vector<std::int64_t>{3, 4}));
  const Result<std::vector<AuditEntry>> by_desk = store_->audit_list(f);
  ASSERT_TRUE(by_desk.ok());
  ASSERT_FALSE(by_desk->empty());
  const TimePoint third = by_desk->front().time;
  f = AuditFilter{};
  f.since = third;
  f.until = third + std::chrono::milliseconds(1);
  EXPECT_EQ(seqs(f), (std::vector<std::int64_t>{3})) << "since inclusive, until exclusive";
}

TEST_P(StoreTest, RevocationDeletesFacesAtOnceAndReturnsTheirIds) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("bob"), who()).ok());
  std::vector<FaceId> alice = enroll_ok("alice", 3, 10);
  std::vector<FaceId> bob = enroll_ok("bob", 1, 20);

  Result<std::vector<FaceId>> removed = store_->revoke_consent("staff", "alice", who("subject withdrew"));
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(*removed, alice);

  std::vector<FaceId> all = alice;
  all.insert(all.end(), bob.begin(), bob.end());
  EXPECT_EQ(*store_->existing_faces(all), bob);
  Result<std::vector<Consent>> consents = store_->list_consents("staff", "alice");
  ASSERT_EQ(consents->size(), 1u);
  EXPECT_EQ((*consents)[0].revoked_at, clock_.now());

  AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "revoke_consent");
  EXPECT_EQ(json::parse(e.details)["face_ids"], json(alice));

  EXPECT_EQ(store_->revoke_consent("staff", "alice", who()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->enroll("staff", "alice", {synthetic_face(1)}, who()).error().code, ErrorCode::kConsentRequired);
}

TEST_P(StoreTest, EraseSubjectDeletesAllAndExportShowsOnlyTheErasure) {
  NewCollection visitors = staff_collection("visitors");
  ASSERT_TRUE(store_->create_collection(visitors, who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("alice", "visitors"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("bob"), who()).ok());
  std::vector<FaceId> a1 = enroll_ok("alice", 2, 1);
  std::vector<FaceId> a2 = enroll_ok("alice", 1, 5, "visitors");
  std::vector<FaceId> b = enroll_ok("bob", 1, 9);
  SearchRecord search{who("door 3 unlock"), "staff", {"alice", "bob"}, R"({"face_ids":[1,4],"scores":[0.7,0.5]})", "ok"};
  ASSERT_TRUE(store_->record_search(search).ok());

  // Before erasure the export holds everything.
  json before = json::parse(*store_->export_subject("alice", who("access request")));
  EXPECT_EQ(before["consents"].size(), 2u);
  EXPECT_EQ(before["faces"].size(), 3u);
  EXPECT_GE(before["audit"].size(), 5u);
  EXPECT_EQ(before.dump().find("bob"), std::string::npos) << "another subject leaked into alice's export";

  EXPECT_EQ(store_->erase_subject("", "alice", AuditContext{"dpo", ""}).error().code, ErrorCode::kInvalidArgument);
  Result<std::vector<FaceId>> erased = store_->erase_subject("", "alice", AuditContext{"dpo", "GDPR art. 17 request #42"});
  ASSERT_TRUE(erased.ok()) << erased.error().message;
  std::vector<FaceId> expected = a1;
  expected.insert(expected.end(), a2.begin(), a2.end());
  EXPECT_EQ(*erased, expected);
  EXPECT_EQ(*store_->existing_faces(expected), std::vector<FaceId>{});
  EXPECT_EQ(*store_->existing_faces(b), b);

  json after = json::parse(*store_->export_subject("alice", who("access request")));
  EXPECT_TRUE(after["consents"].empty());
  EXPECT_TRUE(after["faces"].empty());
  ASSERT_EQ(after["audit"].size(), 1u) << after.dump(2);
  EXPECT_EQ(after["audit"][0]["operation"], "erase_subject");

  // The chain still verifies, bob's entries still name bob, and no entry but
  // the erasure record (and the export just made) names alice.
  EXPECT_TRUE(store_->audit_verify()->intact) << store_->audit_verify()->summary();
  AuditFilter bob_filter;
  bob_filter.subject = "bob";
  Result<std::vector<AuditEntry>> bob_entries = store_->audit_list(bob_filter);
  ASSERT_FALSE(bob_entries->empty());
  EXPECT_EQ(bob_entries->back().operation, "search");
  EXPECT_EQ(bob_entries->back().subjects, std::vector<std::string>{"bob"});
  EXPECT_EQ(bob_entries->back().subject_tags.size(), 2u);
  AuditFilter alice_filter;
  alice_filter.subject = "alice";
  std::set<std::string> ops;
  const std::vector<AuditEntry> alice_entries = *store_->audit_list(alice_filter);
  for (const AuditEntry& e : alice_entries) ops.insert(e.operation);
  EXPECT_EQ(ops, (std::set<std::string>{"erase_subject", "export_subject"}));
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM consents WHERE subject = 'alice'"), 0);
}

TEST_P(StoreTest, EraseWithinOneCollectionLeavesTheOthers) {
  ASSERT_TRUE(store_->create_collection(staff_collection("visitors"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("alice", "visitors"), who()).ok());
  std::vector<FaceId> staff = enroll_ok("alice", 1, 1);
  std::vector<FaceId> visitors = enroll_ok("alice", 1, 2, "visitors");
  Result<std::vector<FaceId>> erased = store_->erase_subject("visitors", "alice", who("left the visitor scheme"));
  ASSERT_TRUE(erased.ok());
  EXPECT_EQ(*erased, visitors);
  EXPECT_EQ(*store_->existing_faces(staff), staff);
  EXPECT_EQ(store_->list_consents("staff", "alice")->size(), 1u);
  EXPECT_TRUE(store_->list_consents("visitors", "alice")->empty());
  EXPECT_TRUE(store_->audit_verify()->intact);
}

TEST_P(StoreTest, DeleteCollectionErasesFacesAndConsents) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  std::vector<FaceId> ids = enroll_ok("alice", 2);
  Result<std::vector<FaceId>> deleted = store_->delete_collection("staff", who("programme ended"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, ids);
  EXPECT_EQ(store_->get_collection("staff").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM faces"), 0);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM consents"), 0);
  EXPECT_EQ(last_audit().operation, "delete_collection");
}

TEST_P(StoreTest, RetentionPurgesOldFacesAndFacesWithoutConsent) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("bob"), who()).ok());
  NewConsent carol = consent_for("carol");
  carol.expires_at = clock_.now() + std::chrono::days(20);
  ASSERT_TRUE(store_->grant_consent(carol, who()).ok());

  std::vector<FaceId> alice = enroll_ok("alice", 2, 1);  // day 0
  clock_.advance_days(10);
  std::vector<FaceId> bob = enroll_ok("bob", 1, 5);      // day 10
  std::vector<FaceId> carol_ids = enroll_ok("carol", 1, 9);

  // Day 25: nothing is 30 days old, but carol's consent lapsed on day 20.
  Result<RetentionReport> r1 = store_->retention_run(clock_.now() + std::chrono::days(15), who("nightly"));
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->removed, carol_ids);
  EXPECT_EQ(r1->without_consent, 1);
  EXPECT_EQ(r1->expired_by_age, 0);

  // Day 35: alice's faces are past the 30-day retention; bob's are not.
  Result<RetentionReport> r2 = store_->retention_run(clock_.now() + std::chrono::days(25), who("nightly"));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->removed, alice);
  EXPECT_EQ(r2->expired_by_age, 2);
  EXPECT_EQ(*store_->existing_faces(bob), bob);
  EXPECT_EQ(store_->load_faces("staff")->size(), 1u);

  AuditFilter f;
  f.operation = "retention_purge";
  Result<std::vector<AuditEntry>> purges = store_->audit_list(f);
  ASSERT_EQ(purges->size(), 2u);
  EXPECT_EQ((*purges)[1].subjects, std::vector<std::string>{"alice"});
  EXPECT_EQ(json::parse((*purges)[1].details)["face_ids"], json(alice));

  // Nothing left to purge: still audited as a run.
  Result<RetentionReport> r3 = store_->retention_run(clock_.now() + std::chrono::days(25), who("nightly"));
  EXPECT_TRUE(r3->removed.empty());
  EXPECT_EQ(last_audit().operation, "retention_run");
}

TEST_P(StoreTest, SearchesAreAuditedAndCounted) {
  const TimePoint t0 = clock_.now();
  SearchRecord s{AuditContext{"gate-3", "door unlock"}, "staff", {}, R"({"face_ids":[],"scores":[]})", "ok"};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->record_search(s).ok());
  *clock_.ms += 2 * 60'000;
  ASSERT_TRUE(store_->record_search(s).ok());

  EXPECT_EQ(*store_->search_count("gate-3", t0), 4);
  EXPECT_EQ(*store_->search_count("gate-3", t0 + std::chrono::minutes(1)), 1);
  EXPECT_EQ(*store_->search_count("gate-7", t0), 0);
  EXPECT_EQ(*store_->search_count("gate-3", t0 - std::chrono::days(3)), 4);  // day buckets

  AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "search");
  EXPECT_EQ(e.reason, "door unlock");
  EXPECT_EQ(e.actor, "gate-3");

  SearchRecord no_reason = s;
  no_reason.context.reason.clear();
  EXPECT_EQ(store_->record_search(no_reason).error().code, ErrorCode::kInvalidArgument);
  SearchRecord unknown = s;
  unknown.collection = "nope";
  EXPECT_EQ(store_->record_search(unknown).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(last_audit().result, "refused: not_found");
  SearchRecord bad_json = s;
  bad_json.details_json = "{not json";
  EXPECT_EQ(store_->record_search(bad_json).error().code, ErrorCode::kInvalidArgument);

  // Old minute buckets are pruned by the retention run; day buckets stay.
  clock_.advance_days(5);
  ASSERT_TRUE(store_->retention_run(clock_.now(), who()).ok());
  EXPECT_EQ(*store_->search_count("gate-3", t0 - std::chrono::days(1)), 4);
}

TEST_P(StoreTest, AuditListFilters) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  enroll_ok("alice", 1);
  ASSERT_TRUE(store_->create_collection(staff_collection("other"), who()).ok());
  AuditFilter f;
  f.collection = "staff";
  EXPECT_EQ(store_->audit_list(f)->size(), 3u);
  f = {};
  f.operation = "create_collection";
  EXPECT_EQ(store_->audit_list(f)->size(), 2u);
  f = {};
  f.after_seq = 1;
  f.limit = 2;
  Result<std::vector<AuditEntry>> page = store_->audit_list(f);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 2);
  f = {};
  f.since = clock_.now() + std::chrono::seconds(1);
  EXPECT_TRUE(store_->audit_list(f)->empty());
}

TEST_P(StoreTest, MigrationsAreIdempotentAndDataPersists) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  std::vector<FaceId> ids = enroll_ok("alice", 2);
  store_.reset();
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<Store> again = open_or_die(path_, options_with_key(&clock_));
    EXPECT_EQ(again->load_faces("staff")->size(), 2u);
    EXPECT_TRUE(again->audit_verify()->intact);
  }
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM schema_version"), store_detail::latest_schema_version());
}

TEST_P(StoreTest, NewerSchemaIsRefused) {
  store_.reset();
  db_->exec("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)");
  Result<std::unique_ptr<Store>> s = open_store(path_, options_with_key());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kStoreError);
  EXPECT_NE(s.error().message.find("newer"), std::string::npos);
}

TEST_P(StoreTest, UriForms) {
  store_.reset();
  StoreOptions no_create = options_with_key();
  no_create.create_if_missing = false;
  if (!is_pg()) {
    EXPECT_TRUE(open_store("sqlite:" + path_, options_with_key()).ok());
    EXPECT_EQ(open_store(key_dir_file("missing.db"), no_create).error().code, ErrorCode::kNotFound);
    return;
  }
  // postgres:// is the same as postgresql://.
  ASSERT_EQ(path_.rfind("postgresql://", 0), 0u);
  Result<std::unique_ptr<Store>> alias = open_store("postgres://" + path_.substr(13), options_with_key());
  EXPECT_TRUE(alias.ok()) << alias.error().message;
  EXPECT_TRUE(open_store(path_, no_create).ok()) << "the schema exists";
  PgTestDatabase empty(pg_->server_uri());
  Result<std::unique_ptr<Store>> none = open_store(empty.uri(), no_create);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
  // A server that is not there: unavailable, not a generic store error.
  Result<std::unique_ptr<Store>> gone =
      open_store("postgresql:///candor?host=" + key_dir_.path().string() + "&port=1", options_with_key());
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::kStoreUnavailable) << gone.error().message;
}

TEST_P(StoreTest, ConcurrentWritersKeepOneChain) {
  // Two Store objects (two connections, as two processes would have) and two
  // threads on each.
  std::unique_ptr<Store> second = open_or_die(path_, options_with_key(&clock_));
  for (int t = 0; t < 4; ++t) ASSERT_TRUE(store_->grant_consent(consent_for("s" + std::to_string(t)), who()).ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    Store* s = (t % 2 == 0) ? store_.get() : second.get();
    threads.emplace_back([s, t, &failures] {
      const std::string subject = std::string("s").append(std::to_string(t));
      const std::string actor = std::string("t").append(std::to_string(t));
      for (int i = 0; i < 15; ++i) {
        if (!s->enroll("staff", subject, {synthetic_face(static_cast<std::uint32_t>(t * 100 + i))}, who()).ok()) {
          ++failures;
        }
        SearchRecord r{AuditContext{actor, "load"}, "staff", {}, "{}", "ok"};
        if (!s->record_search(r).ok()) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store_->load_faces("staff")->size(), 60u);
  Result<AuditVerification> v = second->audit_verify();
  EXPECT_TRUE(v->intact) << v->summary();
  EXPECT_EQ(v->entries, 1 + 4 + 60 + 60);
}

// Issue 16 (#7): a face whose consent has expired is not identifiable from the instant the
// consent names, although it stays stored until the next retention run deletes it.
TEST_P(StoreTest, FacesWhoseConsentExpiredAreNoLongerIdentifiable) {
  NewConsent c = consent_for("alice");
  c.expires_at = clock_.now() + std::chrono::seconds(10);
  ASSERT_TRUE(store_->grant_consent(c, who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("bob"), who()).ok());
  const std::vector<FaceId> alice = enroll_ok("alice", 2, 1);
  const std::vector<FaceId> bob = enroll_ok("bob", 1, 9);
  std::vector<FaceId> all = alice;
  all.insert(all.end(), bob.begin(), bob.end());
  EXPECT_EQ(store_->existing_faces(all)->size(), 3u);
  *clock_.ms += 10'000;  // the instant of expiry
  EXPECT_EQ(*store_->existing_faces(all), bob);
  EXPECT_EQ(store_->load_faces("staff")->size(), 3u) << "still stored: retention deletes it";
  // A revoked-then-regranted subject for another purpose is not identifiable either.
  // (Granting another purpose is refused since issue 17: the row is rewritten directly.)
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  db_->exec("UPDATE consents SET purpose = 'marketing' WHERE subject = 'alice' AND revoked_at IS NULL"
            " AND expires_at IS NULL");
  EXPECT_EQ(*store_->existing_faces(all), bob);
}

// Issue 16 (#6): nothing over its limit reaches the append-only log, on any path: an
// over-long reason is refused, and its refusal records the length, not the text.
TEST_P(StoreTest, AuditFieldsAreBoundedOnRefusalsToo) {
  const std::string huge(100'000, 'x');
  SearchRecord s{AuditContext{"gate-3", huge}, "staff", {}, "{}", "refused: rate_limited"};
  EXPECT_EQ(store_->record_search(s).error().code, ErrorCode::kInvalidArgument);
  const Result<std::vector<AuditEntry>> entries = store_->audit_list(AuditFilter{});
  ASSERT_TRUE(entries.ok());
  for (const AuditEntry& e : *entries) {
    EXPECT_LE(e.reason.size(), kMaxReasonBytes) << e.operation;
    EXPECT_LE(e.actor.size(), kMaxActorBytes);
  }
  EXPECT_NE(last_audit().reason.find("100000 bytes"), std::string::npos) << last_audit().reason;
  EXPECT_EQ(store_->erase_subject("staff", "alice", AuditContext{"tester", huge}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_LE(last_audit().reason.size(), kMaxReasonBytes);
  EXPECT_EQ(store_->erase_subject("staff", "alice", AuditContext{std::string(300, 'a'), "gdpr"}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_LE(last_audit().actor.size(), kMaxActorBytes);
  EXPECT_EQ(check_audit_context({"a", std::string(kMaxReasonBytes, 'r')}, true).ok(), true);
  EXPECT_EQ(check_audit_context({"a", std::string(kMaxReasonBytes + 1, 'r')}, true).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(check_audit_context({"a", ""}, true).error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

// Issue 16 (#12): a search refused because the budget was spent is audited but not
// charged, so the next window's count starts from the searches that ran.
TEST_P(StoreTest, RefusedSearchesAreAuditedButNotCharged) {
  const TimePoint t0 = clock_.now();
  SearchRecord ran{AuditContext{"key:door", "door unlock"}, "staff", {}, "{}", "ok"};
  ASSERT_TRUE(store_->record_search(ran).ok());
  SearchRecord refused = ran;
  refused.result = "refused: rate_limited";
  refused.charged = false;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->record_search(refused).ok());
  EXPECT_EQ(*store_->search_count("key:door", t0), 1);
  EXPECT_EQ(last_audit().result, "refused: rate_limited");
}

// Issue 16 (#5): consent is checked before a caller spends inference, and a refusal is
// audited as enroll's own refusal; a subject who may be enrolled leaves no entry.
TEST_P(StoreTest, EnrollConsentIsCheckedUpFrontAndRefusalsAudited) {
  const std::int64_t before = store_->audit_head()->seq;
  EXPECT_EQ(store_->check_enroll_consent("staff", "alice", 250, who()).error().code, ErrorCode::kConsentRequired);
  const AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "enroll");
  EXPECT_EQ(e.result, "refused: consent_required");
  EXPECT_EQ(json::parse(e.details)["faces_offered"], 250);
  EXPECT_EQ(store_->audit_head()->seq, before + 1);
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  const std::int64_t granted = store_->audit_head()->seq;
  EXPECT_TRUE(store_->check_enroll_consent("staff", "alice", 3, who()).ok());
  EXPECT_EQ(store_->audit_head()->seq, granted) << "an allowed check writes nothing";
  EXPECT_EQ(store_->check_enroll_consent("nope", "alice", 1, who()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM faces"), 0);
}

// Issue 16 (#13): a subject the routes cannot address (/subjects/{s}) is never created.
TEST_P(StoreTest, SubjectsMustBeAddressable) {
  for (const char* bad : {"a/b", "/", ".", "..", "x\ny"}) {
    EXPECT_EQ(store_->grant_consent(consent_for(bad), who()).error().code, ErrorCode::kInvalidArgument) << bad;
  }
  for (const char* good : {"a.b", "...", "Zoë Müller", "id:42", "a b"}) {
    EXPECT_TRUE(store_->grant_consent(consent_for(good), who()).ok()) << good;
  }
}

// The subjects list counts faces and reports consent without reading a template.
TEST_P(StoreTest, ListSubjectsCountsFacesAndConsent) {
  NewConsent dated = consent_for("alice");
  dated.expires_at = clock_.now() + std::chrono::hours(24);
  ASSERT_TRUE(store_->grant_consent(dated, who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("bob"), who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("carol"), who()).ok());
  enroll_ok("alice", 3, 1);
  enroll_ok("bob", 1, 9);
  *clock_.ms += 25 * 3'600'000LL;  // alice's consent has expired; her faces remain until retention
  auto list = store_->list_subjects("staff");
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].subject, "alice");
  EXPECT_EQ((*list)[0].faces, 3);
  EXPECT_FALSE((*list)[0].consent_active);
  EXPECT_EQ((*list)[1].subject, "bob");
  EXPECT_EQ((*list)[1].faces, 1);
  EXPECT_TRUE((*list)[1].consent_active);
  EXPECT_FALSE((*list)[1].consent_expires_at.has_value());
  EXPECT_EQ((*list)[2].subject, "carol");
  EXPECT_EQ((*list)[2].faces, 0);
  EXPECT_TRUE((*list)[2].consent_active);
  EXPECT_EQ(store_->list_subjects("nope").error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, CalibrationIsStoredAuditedAndCleared) {
  CollectionCalibration cal;
  cal.model_id = "arcface-r100-test";
  cal.people = 40;
  cal.images = 400;
  cal.impostor_scores = 156000;
  cal.genuine_scores = 3600;
  cal.calibrated_at = clock_.now();
  cal.points.push_back(CalibratedPoint{OperatingPoint{"fmr-1e-3", 1e-3, 0.31F, {0.31F, 0.32F, 0.33F}},
                                       {0.97, 0.98, std::nan("")}, {false, false, true}});
  cal.points.push_back(
      CalibratedPoint{OperatingPoint{"fmr-1e-4", 1e-4, 0.39F, {0.39F, 0.4F, 0.41F}}, {0.9, 0.95, 0.96}, {false, true, true}});
  Result<Collection> set = store_->set_calibration("staff", cal, 0.39F, who());
  ASSERT_TRUE(set.ok()) << set.error().message;
  Result<Collection> got = store_->get_collection("staff");
  ASSERT_TRUE(got.ok());
  EXPECT_FLOAT_EQ(got->match_threshold, 0.39F);
  ASSERT_TRUE(got->calibration.has_value());
  const CollectionCalibration& c = *got->calibration;
  EXPECT_EQ(c.model_id, "arcface-r100-test");
  EXPECT_EQ(c.people, 40);
  EXPECT_EQ(c.impostor_scores, 156000);
  EXPECT_EQ(c.calibrated_at, clock_.now());
  ASSERT_EQ(c.points.size(), 2u);
  EXPECT_EQ(c.points[1].point.name, "fmr-1e-4");
  EXPECT_EQ(c.points[1].point.subject_thresholds, (std::vector<float>{0.39F, 0.4F, 0.41F}));
  EXPECT_EQ(c.points[0].extrapolated, (std::vector<bool>{false, false, true}));
  EXPECT_TRUE(std::isnan(c.points[0].tar[2]));
  EXPECT_DOUBLE_EQ(c.points[1].tar[1], 0.95);
  AuditEntry e = last_audit();
  EXPECT_EQ(e.operation, "calibrate");
  EXPECT_EQ(e.collection, "staff");
  EXPECT_EQ(json::parse(e.details)["calibration"]["points"][1]["threshold"].get<float>(), 0.39F);

  // Refused as a whole: nothing changes.
  CollectionCalibration bad = cal;
  bad.points[0].point.subject_thresholds[1] = 1.5F;
  EXPECT_EQ(store_->set_calibration("staff", bad, 0.39F, who()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->set_calibration("nope", cal, 0.39F, who()).error().code, ErrorCode::kNotFound);
  EXPECT_FLOAT_EQ(store_->get_collection("staff")->calibration->points[0].point.subject_thresholds[1], 0.32F);

  ASSERT_TRUE(store_->set_calibration("staff", std::nullopt, 0.4128F, who()).ok());
  got = store_->get_collection("staff");
  EXPECT_FALSE(got->calibration.has_value());
  EXPECT_FLOAT_EQ(got->match_threshold, 0.4128F);
  EXPECT_TRUE(json::parse(last_audit().details)["calibration"].is_null());
  EXPECT_TRUE(store_->audit_verify()->intact);
}

INSTANTIATE_TEST_SUITE_P(Store, StoreTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
