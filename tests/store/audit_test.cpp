// The audit chain: hashing, and tamper detection on a real database edited
// behind the store's back with raw SQL (SQLite, and PostgreSQL through libpq).
#include <nlohmann/json.hpp>

#include "candor/audit.h"
#include "backend_fixture.h"

namespace candor::test {
namespace {

TEST(AuditChain, CanonicalBytesSeparateFields) {
  AuditEntry a;
  a.actor = "ab";
  a.operation = "c";
  AuditEntry b;
  b.actor = "a";
  b.operation = "bc";
  EXPECT_NE(audit_canonical_bytes(a), audit_canonical_bytes(b));
  a.prev_hash = b.prev_hash = std::string(kAuditGenesisHash);
  EXPECT_NE(audit_entry_hash(a), audit_entry_hash(b));
  AuditEntry c = a;
  c.subjects = {"only the unhashed index changes"};
  EXPECT_EQ(audit_entry_hash(a), audit_entry_hash(c));
}

std::vector<AuditEntry> synthetic_chain(int n) {
  std::vector<AuditEntry> out;
  std::string prev(kAuditGenesisHash);
  for (int i = 1; i <= n; ++i) {
    AuditEntry e;
    e.seq = i;
    e.time = TimePoint(std::chrono::milliseconds(1000 * i));
    e.actor = "a";
    e.operation = "op" + std::to_string(i);
    e.details = "{}";
    e.result = "ok";
    e.prev_hash = prev;
    e.hash = audit_entry_hash(e);
    prev = e.hash;
    out.push_back(e);
  }
  return out;
}

AuditVerification verify_entries(const std::vector<AuditEntry>& entries, std::int64_t head_seq,
                                  const std::string& head_hash) {
  AuditChainVerifier v([&](std::string_view h) -> std::optional<std::int64_t> {
    for (const AuditEntry& e : entries) {
      if (e.hash == h) return e.seq;
    }
    return std::nullopt;
  });
  for (const AuditEntry& e : entries) v.add(e);
  return v.finish(head_seq, head_hash);
}

// Issue 16 (#8): expires_at and the like are read as RFC 3339 with their offset;
// what is not RFC 3339 (no zone, trailing text) is refused, not read as UTC.
TEST(AuditTime, ParsesRfc3339WithOffsetsAndRefusesTheRest) {
  const auto at = [](std::string_view text) { return parse_time(text).value().time_since_epoch().count(); };
  const std::int64_t utc = at("2030-01-01T00:00:00Z");
  EXPECT_EQ(at("2030-01-01T00:00:00+08:00"), utc - 8 * 3'600'000LL);
  EXPECT_EQ(at("2030-01-01T00:00:00-08:00"), utc + 8 * 3'600'000LL);
  EXPECT_EQ(at("2030-01-01T05:30:00+05:30"), utc);
  EXPECT_EQ(at("2030-01-01t00:00:00z"), utc);
  EXPECT_EQ(at("2030-01-01T00:00:00.25Z"), utc + 250);
  EXPECT_EQ(at("2030-01-01T00:00:00.123456789Z"), utc + 123);
  EXPECT_EQ(at("2029-12-31"), utc) << "a date is the whole day: valid until its end";
  EXPECT_EQ(format_time(parse_time("2030-01-01T00:00:00+08:00").value()), "2029-12-31T16:00:00.000Z");
  for (const char* bad : {"2030-01-01T00:00:00Zjunk", "2030-01-01T00:00:00", "2030-01-01T00:00Z", "2030-1-1",
                          "2030-02-30", "2030-01-01T24:00:00Z", "2030-01-01T00:00:00+8:00", "2030-01-01T00:00:00.Z",
                          "2030-01-01 00:00:00Z", "", "20300101", "2030-01-01T00:00:00+08:00x"}) {
    EXPECT_EQ(parse_time(bad).error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(AuditChain, VerifierOnSyntheticChains) {
  std::vector<AuditEntry> chain = synthetic_chain(6);
  EXPECT_TRUE(verify_entries(chain, 6, chain.back().hash).intact);
  EXPECT_TRUE(verify_entries({}, 0, std::string(kAuditGenesisHash)).intact);

  std::vector<AuditEntry> truncated(chain.begin(), chain.end() - 1);
  AuditVerification t = verify_entries(truncated, 6, chain.back().hash);
  ASSERT_FALSE(t.intact);
  EXPECT_EQ(t.issues[0].kind, AuditBreak::kTruncated);
  EXPECT_EQ(t.issues[0].seq, 6);

  std::vector<AuditEntry> first_gone(chain.begin() + 1, chain.end());
  AuditVerification g = verify_entries(first_gone, 6, chain.back().hash);
  ASSERT_FALSE(g.intact);
  EXPECT_EQ(g.issues[0].kind, AuditBreak::kRemoved);
  EXPECT_EQ(g.issues[0].seq, 1);
  EXPECT_EQ(g.issues.size(), 1u) << g.summary();
}

// A store with a dozen entries, closed, ready to be tampered with.
class AuditTamperTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key(&clock_));
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());                     // 1
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());                      // 2
    ASSERT_TRUE(s->grant_consent(consent_for("bob"), who()).ok());                        // 3
    ASSERT_TRUE(s->enroll("staff", "alice", {synthetic_face(1)}, who()).ok());            // 4
    ASSERT_TRUE(s->enroll("staff", "bob", {synthetic_face(2)}, who()).ok());              // 5
    for (int i = 0; i < 5; ++i) {                                                         // 6..10
      *clock_.ms += 1000;
      SearchRecord r{AuditContext{"gate", "door " + std::to_string(i)}, "staff", {"alice"}, "{}", "ok"};
      ASSERT_TRUE(s->record_search(r).ok());
    }
    ASSERT_TRUE(s->audit_verify()->intact);
    ASSERT_EQ(s->audit_head()->seq, kEntries);
  }

  // Raw access with the append-only triggers dropped, as an attacker would.
  TestDatabase* raw() {
    db_->drop_audit_guards();
    return db_.get();
  }

  AuditVerification verify() {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key(&clock_));
    Result<AuditVerification> v = s->audit_verify();
    EXPECT_TRUE(v.ok());
    return *v;
  }

  static constexpr std::int64_t kEntries = 10;
};

TEST_P(AuditTamperTest, TriggersRefuseCasualEdits) {
  EXPECT_THROW(db_->exec("UPDATE audit_log SET reason = 'x' WHERE seq = 3"), std::runtime_error);
  EXPECT_THROW(db_->exec("DELETE FROM audit_log WHERE seq = 3"), std::runtime_error);
  if (is_pg()) {
    EXPECT_THROW(db_->exec("TRUNCATE audit_log"), std::runtime_error);
  }
}

TEST_P(AuditTamperTest, EditedRowIsNamed) {
  raw()->exec("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 7");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 7);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kEdited);
  EXPECT_EQ(v.issues.size(), 1u) << v.summary();
  EXPECT_NE(v.summary().find("seq 7"), std::string::npos) << v.summary();
}

TEST_P(AuditTamperTest, EditedTimeOrResultIsNamed) {
  raw()->exec("UPDATE audit_log SET result = 'ok', time = time - 5 WHERE seq = 4");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 4);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kEdited);
}

TEST_P(AuditTamperTest, RewrittenRowWithRecomputedHashBreaksTheNextLink) {
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key(&clock_));
  AuditFilter f;
  f.after_seq = 5;
  f.limit = 1;
  AuditEntry e = s->audit_list(f)->front();
  s.reset();
  e.reason = "forged";
  const std::string forged = audit_entry_hash(e);
  raw()->exec("UPDATE audit_log SET reason = 'forged', hash = '" + forged + "' WHERE seq = 6");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 7);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kEdited);
}

TEST_P(AuditTamperTest, DeletedRowIsNamed) {
  raw()->exec("DELETE FROM audit_log WHERE seq = 5");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 5);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kRemoved);
  EXPECT_NE(v.summary().find("removed"), std::string::npos) << v.summary();
}

TEST_P(AuditTamperTest, DeletedTailIsDetectedThroughTheHead) {
  raw()->exec("DELETE FROM audit_log WHERE seq >= 9");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 9);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kTruncated);
}

TEST_P(AuditTamperTest, SwappedRowsAreNamed) {
  raw()->exec(
      "UPDATE audit_log SET seq = -1 WHERE seq = 3;"
      "UPDATE audit_log SET seq = 3 WHERE seq = 8;"
      "UPDATE audit_log SET seq = 8 WHERE seq = -1;");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 3);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kReordered) << v.summary();
  EXPECT_NE(v.issues[0].message.find("written as seq 8"), std::string::npos) << v.issues[0].message;
}

TEST_P(AuditTamperTest, SwappedContentsAreNamed) {
  // Same swap, done by exchanging every column but seq.
  const std::string cols = "time, actor, operation, collection, subject_tags, details, reason, result, prev_hash, hash";
  raw()->exec("CREATE TEMP TABLE t AS SELECT * FROM audit_log WHERE seq IN (4, 6);"
              "UPDATE audit_log SET (" + cols + ") = (SELECT " + cols + " FROM t WHERE t.seq = 6) WHERE seq = 4;"
              "UPDATE audit_log SET (" + cols + ") = (SELECT " + cols + " FROM t WHERE t.seq = 4) WHERE seq = 6;");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 4);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kReordered);
}

TEST_P(AuditTamperTest, EditedSubjectNameIsDetected) {
  raw()->exec("UPDATE audit_subjects SET subject = 'mallory' WHERE seq = 4");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, 4);
  EXPECT_EQ(v.issues[0].kind, AuditBreak::kSubjectIndex);
}

TEST_P(AuditTamperTest, ForgedAppendWithoutHeadIsDetected) {
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key(&clock_));
  AuditFilter f;
  f.after_seq = kEntries - 1;
  AuditEntry e = s->audit_list(f)->front();
  s.reset();
  AuditEntry forged;
  forged.seq = kEntries + 1;
  forged.actor = "mallory";
  forged.operation = "search";
  forged.details = "{}";
  forged.result = "ok";
  forged.subject_tags = {};
  forged.prev_hash = e.hash;
  forged.hash = audit_entry_hash(forged);
  raw()->exec("INSERT INTO audit_log VALUES (" + std::to_string(forged.seq) +
              ", 0, 'mallory', 'search', '', '[]', '{}', '', 'ok', '" + forged.prev_hash + "', '" + forged.hash + "')");
  AuditVerification v = verify();
  ASSERT_FALSE(v.intact);
  EXPECT_EQ(v.issues[0].seq, kEntries + 1);
}

INSTANTIATE_TEST_SUITE_P(Store, AuditTamperTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
