// Upgrades keep data: for each earlier schema version, a store built by the migrations
// themselves up to that version (migrate_up_to, src/store/schema_history.h), filled, then
// opened by this build (which migrates it) holds every template, consent and audit entry
// unchanged, its chain verifies, and it takes new work. A store newer than this build is
// refused, naming both versions.
#include <algorithm>

#include "candor/backup.h"
#include "schema_history.h"
#include "sqlite_store.h"
#include "store_test_util.h"

namespace candor::test {
namespace {

using store_detail::Database;

// Everything a store holds that an upgrade must keep, read through the Store API.
struct Contents {
  std::vector<FaceRecord> faces;
  std::vector<Consent> consents;
  std::vector<AuditEntry> audit;
};

Contents contents_of(Store& s) {
  Contents c;
  const Result<std::vector<Collection>> collections = s.list_collections();
  EXPECT_TRUE(collections.ok());
  if (!collections) return c;
  for (const Collection& k : *collections) {
    Result<std::vector<FaceRecord>> faces = s.load_faces(k.name);
    Result<std::vector<Consent>> consents = s.list_consents(k.name, "");
    EXPECT_TRUE(faces.ok() && consents.ok()) << k.name;
    if (!faces || !consents) return c;
    c.faces.insert(c.faces.end(), faces->begin(), faces->end());
    c.consents.insert(c.consents.end(), consents->begin(), consents->end());
  }
  AuditFilter all;
  all.limit = 100'000;
  Result<std::vector<AuditEntry>> audit = s.audit_list(all);
  EXPECT_TRUE(audit.ok());
  if (audit) c.audit = std::move(*audit);
  return c;
}

// A store with something of everything: two collections, consents granted, revoked and
// erased, faces added and deleted, searches, an API key.
void fill(Store& s) {
  ASSERT_TRUE(s.create_collection(staff_collection(), who()).ok());
  ASSERT_TRUE(s.create_collection(staff_collection("visitors"), who()).ok());
  for (const char* subject : {"alice", "bob", "carol"}) {
    ASSERT_TRUE(s.grant_consent(consent_for(subject), who()).ok());
    ASSERT_TRUE(s.grant_consent(consent_for(subject, "visitors"), who()).ok());
  }
  std::uint32_t seed = 1;
  for (const char* subject : {"alice", "bob", "carol"}) {
    for (const char* coll : {"staff", "visitors"}) {
      ASSERT_TRUE(s.enroll(coll, subject, {synthetic_face(seed), synthetic_face(seed + 1)}, who()).ok());
      seed += 2;
    }
  }
  ASSERT_TRUE(s.revoke_consent("staff", "bob", who()).ok());
  ASSERT_TRUE(s.erase_subject("visitors", "carol", who("erasure request")).ok());
  const SearchRecord search{who("door 3"), "staff", {"alice"}, R"({"face_ids":[1],"scores":[0.7]})", "ok"};
  ASSERT_TRUE(s.record_search(search).ok());
  ASSERT_TRUE(s.put_api_key({"gate", std::string(64, 'b'), R"({"operations":["search"]})", {}}, who()).ok());
}

// Copies every row of `from` into the tables the (older) database at `to` has, with the
// columns it has: what that version would hold for the same history.
void copy_rows_into_older(const std::string& from, const std::string& to) {
  RawDb raw(to);
  raw.exec("ATTACH DATABASE '" + from + "' AS src");
  Database db(to, false);
  std::vector<std::string> tables;
  {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.handle(),
                                 "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'schema_version'",
                                 -1, &st, nullptr),
              SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
  }
  for (const std::string& t : tables) {
    std::string cols;
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.handle(), ("SELECT name FROM pragma_table_info('" + t + "')").c_str(), -1, &st, nullptr),
              SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
      cols += (cols.empty() ? "" : ", ") + std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    }
    sqlite3_finalize(st);
    raw.exec("DELETE FROM main." + t + "; INSERT INTO main." + t + " (" + cols + ") SELECT " + cols + " FROM src." + t);
  }
  raw.exec("DETACH DATABASE src");
}

TEST(UpgradeTest, EveryEarlierSchemaVersionMigratesWithEveryTemplateConsentAndAuditEntry) {
  const int latest = store_detail::latest_schema_version();
  ASSERT_GE(latest, 2) << "no earlier version to upgrade from";
  TempDir dir;
  const std::string current = dir.file("current.db");
  std::unique_ptr<Store> source = open_or_die(current, options_with_key());
  fill(*source);
  if (HasFatalFailure()) return;
  const Contents want = contents_of(*source);
  ASSERT_FALSE(want.faces.empty());
  ASSERT_TRUE(source->checkpoint().ok());
  source.reset();

  for (int version = 1; version < latest; ++version) {
    SCOPED_TRACE("schema version " + std::to_string(version));
    const std::string old = dir.file("v" + std::to_string(version) + ".db");
    {
      Database db(old, true);
      store_detail::migrate_up_to(db, version, 1'700'000'000'000);
      EXPECT_EQ(store_detail::schema_version(db), version);
    }
    copy_rows_into_older(current, old);
    if (HasFatalFailure()) return;

    std::unique_ptr<Store> upgraded = open_or_die(old, options_with_key());  // migrates
    EXPECT_EQ(RawDb(old).scalar("SELECT MAX(version) FROM schema_version"), latest);
    const Contents got = contents_of(*upgraded);
    ASSERT_EQ(got.faces.size(), want.faces.size());
    for (std::size_t i = 0; i < want.faces.size(); ++i) {
      EXPECT_EQ(got.faces[i].id, want.faces[i].id);
      EXPECT_EQ(got.faces[i].subject, want.faces[i].subject);
      EXPECT_EQ(got.faces[i].embedding, want.faces[i].embedding) << "face " << want.faces[i].id;
      EXPECT_EQ(got.faces[i].image_sha256, want.faces[i].image_sha256);
    }
    ASSERT_EQ(got.consents.size(), want.consents.size());
    for (std::size_t i = 0; i < want.consents.size(); ++i) {
      EXPECT_EQ(got.consents[i].id, want.consents[i].id);
      EXPECT_EQ(got.consents[i].subject, want.consents[i].subject);
      EXPECT_EQ(got.consents[i].revoked_at, want.consents[i].revoked_at);
      EXPECT_EQ(got.consents[i].evidence_sha256, want.consents[i].evidence_sha256);
    }
    ASSERT_EQ(got.audit.size(), want.audit.size());
    for (std::size_t i = 0; i < want.audit.size(); ++i) {
      EXPECT_EQ(got.audit[i].hash, want.audit[i].hash) << "seq " << want.audit[i].seq;
      EXPECT_EQ(got.audit[i].subjects, want.audit[i].subjects) << "seq " << want.audit[i].seq;
    }
    Result<AuditVerification> chain = upgraded->audit_verify();
    ASSERT_TRUE(chain.ok());
    EXPECT_TRUE(chain->intact) << chain->summary();
    // It takes new work: ids continue past every id ever handed out, also those of the
    // faces fill() deleted last (carol's in visitors), the chain goes on.
    Result<std::vector<FaceId>> more = upgraded->enroll("staff", "alice", {synthetic_face(99)}, who());
    ASSERT_TRUE(more.ok()) << more.error().message;
    FaceId newest = 0;
    for (const FaceRecord& f : want.faces) newest = std::max(newest, f.id);
    const std::int64_t issued = RawDb(current).scalar("SELECT seq FROM sqlite_sequence WHERE name = 'faces'");
    ASSERT_GT(issued, newest) << "fill() no longer deletes the newest faces; the check below proves less";
    EXPECT_GT(more->front(), issued);
    upgraded.reset();
    Result<StoreCheck> check = verify_store(old, options_with_key());
    ASSERT_TRUE(check.ok()) << check.error().message;
    EXPECT_TRUE(check->ok()) << check->problems.front();
  }
}

TEST(UpgradeTest, AStoreNewerThanThisBuildIsRefusedNamingBothVersions) {
  TempDir dir;
  const std::string path = dir.file("newer.db");
  open_or_die(path, options_with_key());
  const int latest = store_detail::latest_schema_version();
  RawDb(path).exec("INSERT INTO schema_version (version, applied_at) VALUES (" + std::to_string(latest + 1) + ", 0)");
  Result<std::unique_ptr<Store>> s = open_store(path, options_with_key());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kStoreError);
  EXPECT_NE(s.error().message.find("version " + std::to_string(latest + 1)), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("(" + std::to_string(latest) + ")"), std::string::npos) << s.error().message;
  // Nothing was changed: the newer version is still recorded, the store not downgraded.
  EXPECT_EQ(RawDb(path).scalar("SELECT MAX(version) FROM schema_version"), latest + 1);
}

}  // namespace
}  // namespace candor::test
