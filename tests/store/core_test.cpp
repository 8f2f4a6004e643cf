// The store core over its drivers: what the restructuring into one core and
// two drivers must keep (a write failing inside a deferred batch leaves
// nothing behind, ids are never handed out twice) and what it bought on
// PostgreSQL (round trips per operation, counted by the driver's connections).
#include <climits>
#include <iostream>
#include <optional>
#include <set>

#include "backend_fixture.h"
#include "pg_db.h"
#include "pg_store.h"

namespace candor::test {
namespace {

class CoreTest : public StaffStoreTest {};

// A write that fails only when the deferred writes reach the database (here the
// audit entry's seq, taken by a row slipped into the log behind the store's back)
// fails the whole operation: no face, no consent change, no head advance, and the
// store works again once the obstacle is gone.
TEST_P(CoreTest, AWriteFailingAmongTheDeferredOnesLeavesNothingBehind) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  const AuditHead before = *store_->audit_head();
  db_->exec("INSERT INTO audit_log (seq, time, actor, operation, collection, subject_tags, details, reason, result,"
            " prev_hash, hash) VALUES (" + std::to_string(before.seq + 1) +
            ", 0, 'x', 'x', '', '[]', '{}', '', 'ok', 'x', 'x')");
  Result<std::vector<FaceId>> refused = store_->enroll("staff", "alice", {synthetic_face(1)}, who());
  ASSERT_FALSE(refused.ok());
  // The refusal could not be audited either (same seq), and says so.
  EXPECT_NE(refused.error().message.find("could not be audited"), std::string::npos) << refused.error().message;
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM faces"), 0);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM face_changes"), 0);
  EXPECT_EQ(store_->audit_head()->seq, before.seq);

  db_->drop_audit_guards();
  db_->exec("DELETE FROM audit_log WHERE seq = " + std::to_string(before.seq + 1));
  Result<std::vector<FaceId>> ids = store_->enroll("staff", "alice", {synthetic_face(1), synthetic_face(2)}, who());
  ASSERT_TRUE(ids.ok()) << ids.error().message;
  EXPECT_EQ(store_->load_faces("staff")->size(), 2u);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

// Face ids are reserved before the faces are written (the associated data binds
// each template to its id): ids keep rising across refusals, deletions and a
// reopened store, and never name two faces.
TEST_P(CoreTest, FaceIdsRiseAndAreNeverHandedOutTwice) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  std::set<FaceId> seen;
  FaceId last = 0;
  const auto enroll = [&](int n) {
    std::vector<NewFace> faces;
    for (int i = 0; i < n; ++i) faces.push_back(synthetic_face(static_cast<std::uint32_t>(i)));
    Result<std::vector<FaceId>> ids = store_->enroll("staff", "alice", faces, who());
    ASSERT_TRUE(ids.ok()) << ids.error().message;
    for (FaceId id : *ids) {
      EXPECT_GT(id, last);
      EXPECT_TRUE(seen.insert(id).second) << id;
      last = id;
    }
  };
  enroll(3);
  // Refused (no consent for bob): whatever it reserved is not reused for a face
  // that another face had; the ids of committed faces only rise.
  EXPECT_EQ(store_->enroll("staff", "bob", {synthetic_face(9)}, who()).error().code, ErrorCode::kConsentRequired);
  enroll(2);
  ASSERT_TRUE(store_->revoke_consent("staff", "alice", who()).ok());
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  enroll(1);
  store_ = open_or_die(path_, options_with_key(&clock_));
  enroll(4);
  Result<std::vector<FaceRecord>> loaded = store_->load_faces("staff");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->size(), 5u);  // the three before the revocation are gone
}

// A batch larger than any one multi-row statement's share (SQLite's driver sends 64
// rows a statement; PostgreSQL's one array a column for the lot), every row's values
// different: each face loads back with its own values, none shifted onto another row.
TEST_P(CoreTest, EveryFaceOfALargeBatchKeepsItsOwnValues) {
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  std::vector<NewFace> faces;
  for (int i = 0; i < 70; ++i) {
    NewFace f = synthetic_face(static_cast<std::uint32_t>(i));
    f.box = FaceBox{i + 0.25F, -i - 0.5F, 100.0F + i, 120.0F + i};
    f.detector_score = 0.5F + static_cast<float>(i) / 256.0F;
    f.quality_level = i % 2 == 0 ? "good" : "fair";
    f.quality_json = "{\"row\":" + std::to_string(i) + "}";
    faces.push_back(std::move(f));
  }
  Result<std::vector<FaceId>> ids = store_->enroll("staff", "alice", faces, who());
  ASSERT_TRUE(ids.ok()) << ids.error().message;
  Result<std::vector<FaceRecord>> loaded = store_->load_faces("staff");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->size(), faces.size());
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const FaceRecord& got = (*loaded)[i];
    const NewFace& want = faces[i];
    EXPECT_EQ(got.id, (*ids)[i]) << i;
    EXPECT_EQ(got.embedding, want.embedding) << i;
    EXPECT_EQ(got.box.x, want.box.x) << i;
    EXPECT_EQ(got.box.y, want.box.y) << i;
    EXPECT_EQ(got.box.w, want.box.w) << i;
    EXPECT_EQ(got.box.h, want.box.h) << i;
    EXPECT_EQ(got.detector_score, want.detector_score) << i;
    EXPECT_EQ(got.quality_level, want.quality_level) << i;
    EXPECT_EQ(got.quality_json, want.quality_json) << i;
    EXPECT_EQ(got.image_sha256, want.image_sha256) << i;
  }
  Result<ChangeBatch> changes = store_->changes_since(0, faces.size() + 1);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  std::vector<FaceId> added;
  for (const FaceChange& c : changes->changes) added.push_back(c.face_id);
  EXPECT_EQ(added, *ids);  // the change feed in the batch's order
}

INSTANTIATE_TEST_SUITE_P(Store, CoreTest, ::testing::Values("sqlite", "postgresql"), backend_name);

// Round trips to PostgreSQL per operation, as the driver's connections count
// them (store_detail::pg_round_trips: one per statement sent alone or per
// pipeline of statements). Before the core queued reads and deferred writes,
// an enrollment of one face made 13 or more: BEGIN, the head lock, the
// collection, the consent, the model check, the ids, one INSERT per face, the
// head again, the salt, the audit INSERTs, the head UPDATE, one change row per
// face, NOTIFY, COMMIT.
class PgRoundTripTest : public StaffStoreTest {
 protected:
  template <typename Fn>
  std::uint64_t round_trips(Fn&& fn) {
    const std::uint64_t before = store_detail::pg_round_trips();
    fn();
    return store_detail::pg_round_trips() - before;
  }
};

// Issue 15 asked for at most 3; the core makes 2: BEGIN, the head lock and the
// reads in one pipeline, the writes and COMMIT in another.
TEST_P(PgRoundTripTest, AnEnrollmentIsTwoRoundTripsWhateverTheBatch) {
  // A subject never named in the log yet: its salt is made within the same trips.
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  for (int n : {1, 2, 32}) {
    std::vector<NewFace> faces;
    for (int i = 0; i < n; ++i) faces.push_back(synthetic_face(static_cast<std::uint32_t>(i)));
    const std::uint64_t trips = round_trips([&] { ASSERT_TRUE(store_->enroll("staff", "alice", faces, who()).ok()); });
    std::cout << "enroll of " << n << " faces: " << trips << " round trips\n";
    EXPECT_LE(trips, 2u) << n;
  }
  SearchRecord search{AuditContext{"gate", "door"}, "staff", {"alice"}, "{}", "ok"};
  EXPECT_LE(round_trips([&] { ASSERT_TRUE(store_->record_search(search).ok()); }), 2u);
  // A read: BEGIN with the query, then COMMIT.
  EXPECT_LE(round_trips([&] { ASSERT_TRUE(store_->search_count("gate", TimePoint{}).ok()); }), 2u);
  const std::vector<FaceId> ids{1, 2, 3};
  EXPECT_LE(round_trips([&] { ASSERT_TRUE(store_->existing_faces(ids).ok()); }), 2u);
  EXPECT_EQ(store_->load_faces("staff")->size(), 35u);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

// Templates stay inline in their rows (no TOAST: pg_schema.cpp says why), in a
// store made now and in one made before the setting existed.
TEST_P(PgRoundTripTest, TemplatesStayInTheirRows) {
  const std::string inline_rows =
      "SELECT COUNT(*) FROM pg_class WHERE relname = 'faces' AND 'toast_tuple_target=8160' = ANY(reloptions)";
  EXPECT_EQ(db_->scalar(inline_rows), 1);
  ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
  ASSERT_TRUE(store_->enroll("staff", "alice", {synthetic_face(1), synthetic_face(2)}, who()).ok());
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM pg_toast.pg_toast_" +
                        std::to_string(db_->scalar("SELECT oid FROM pg_class WHERE relname = 'faces'"))),
            0);
  store_.reset();
  db_->exec("ALTER TABLE faces RESET (toast_tuple_target)");
  EXPECT_EQ(db_->scalar(inline_rows), 0);
  store_ = open_or_die(path_, options_with_key(&clock_));
  EXPECT_EQ(db_->scalar(inline_rows), 1);
  EXPECT_EQ(store_->load_faces("staff")->size(), 2u);
}

// A multi-row insert on PostgreSQL sends a column as one binary array
// (pg_array_column): the server reads each back as the same values written as
// a text array literal, NULLs, extremes and bytes that text would mangle included.
TEST_P(PgRoundTripTest, InsertColumnsArriveAsTheirValues) {
  using store_detail::Params;
  store_detail::PgConnection pg(db_->uri());
  pg.connect();
  const auto column = [](std::vector<Params> rows) { return store_detail::pg_array_column(rows, 0); };
  const auto check = [&](std::vector<Params> rows, std::string_view sql_type, const std::string& literal) {
    const std::optional<store_detail::PgArrayColumn> c = column(std::move(rows));
    ASSERT_TRUE(c.has_value()) << literal;
    EXPECT_EQ(c->sql_type, sql_type);
    store_detail::PgParams params;
    params.add_binary(c->encoded).add(literal);
    const std::string type(sql_type);
    const store_detail::PgResult r = pg.exec("SELECT ($1::" + type + ")::text, ($2::" + type + ")::text", params);
    EXPECT_EQ(r.text(0, 0), r.text(0, 1)) << literal;
  };
  check({Params().add(std::int64_t{0}), Params().add(std::int64_t{-1}), Params().add(std::int64_t{INT64_MIN}),
         Params().add(std::int64_t{INT64_MAX}), Params().add(std::optional<std::int64_t>())},
        "bigint[]", "{0,-1,-9223372036854775808,9223372036854775807,NULL}");
  check({Params().add(0.1), Params().add(-2.5), Params().add(1e308), Params().add(5e-324), Params().add(-0.0),
         Params().add(std::optional<std::int64_t>())},
        "double precision[]", "{0.1,-2.5,1e+308,5e-324,-0,NULL}");
  check({Params().add(true), Params().add(false), Params().add(std::optional<std::int64_t>())}, "boolean[]",
        "{t,f,NULL}");
  check({Params().add(""), Params().add("alice"), Params().add("Zo\u00eb \u2713"), Params().add("a,b\"c{}"),
         Params().add(std::optional<std::string>())},
        "text[]", "{\"\",alice,\"Zo\u00eb \u2713\",\"a,b\\\"c{}\",NULL}");
  const std::vector<std::uint8_t> bytes{0x00, 0xff, 0x10, '\\', '"'};
  check({Params().add_bytes({}), Params().add_bytes(bytes), Params().add(std::optional<std::string>())}, "bytea[]",
        R"({"\\x","\\x00ff105c22",NULL})");
  // Nothing tells the type, or two types in one column: the driver falls back to VALUES.
  EXPECT_FALSE(column({Params().add(std::optional<std::int64_t>()), Params().add(std::optional<std::int64_t>())}));
  EXPECT_FALSE(column({Params().add(std::int64_t{1}), Params().add("1")}));
  const std::vector<std::int64_t> ids{1, 2};
  EXPECT_FALSE(column({Params().add_ids(ids)}));
}

INSTANTIATE_TEST_SUITE_P(Store, PgRoundTripTest, ::testing::Values("postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
