// candor/backup.h: a backup taken while enrollments and searches run holds exactly the
// transactions committed before its snapshot, restores and verifies; verify_store names
// a corrupted template, a broken chain and a face without consent, and refuses a wrong
// key (both backends). The SIGKILLed backup is in tests/cli/backup_cli_test.cpp.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "backend_fixture.h"
#include "candor/backup.h"
#include "candor/library_store.h"
#include "schema_history.h"
#include "sqlite_store.h"

namespace candor::test {
namespace {

// "Before the backup began", precisely: SQLite's backup copies the database as of the
// moment its read transaction takes its snapshot, which backup_store reports as the audit
// seq of the last transaction it holds (every writing transaction appends one entry). So:
//  - every enroll that returned before backup_store() was called is in the backup;
//  - every enroll that started after backup_store() returned is not;
//  - the enrolls in between are in it iff their transaction's seq <= report.audit_seq,
//    read from the live store's change feed (a face's version is its transaction's seq).
TEST(BackupTest, ConcurrentEnrollAndSearchBackupHoldsExactlyTheCommittedSnapshot) {
  TempDir dir;
  const std::string path = dir.file("live.db");
  std::unique_ptr<Store> store = open_or_die(path, options_with_key());
  ASSERT_TRUE(store->create_collection(staff_collection(), who()).ok());
  constexpr int kWriters = 2;
  for (int w = 0; w < kWriters; ++w) ASSERT_TRUE(store->grant_consent(consent_for("s" + std::to_string(w)), who()).ok());

  std::mutex mu;
  std::map<FaceId, std::uint32_t> seed_of;      // every face enrolled, with its template's seed
  std::set<FaceId> returned_before_backup;       // enrolls that returned before backup_store() was called
  std::set<FaceId> started_after_backup;         // enrolls that began after backup_store() returned
  // Some 36 MB before the writers start: commits land while the copy runs, so a copy that
  // mixed states, or an audit seq read from the live store instead of the snapshot, would
  // show.
  for (std::uint32_t batch = 0; batch < 15; ++batch) {
    std::vector<NewFace> faces;
    for (std::uint32_t i = 0; i < 1000; ++i) faces.push_back(synthetic_face(2'000'000U + batch * 1000U + i));
    Result<std::vector<FaceId>> ids = store->enroll("staff", "s0", faces, who());
    ASSERT_TRUE(ids.ok());
    for (std::size_t i = 0; i < ids->size(); ++i) {
      seed_of[(*ids)[i]] = 2'000'000U + batch * 1000U + static_cast<std::uint32_t>(i);
      returned_before_backup.insert((*ids)[i]);
    }
  }
  std::atomic<bool> backup_called{false}, backup_returned{false}, stop{false};
  std::atomic<int> enrolled{0}, searches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (std::uint32_t i = 0; !stop.load(); ++i) {
        const bool after = backup_returned.load();
        const std::uint32_t seed = static_cast<std::uint32_t>(w) * 1'000'000U + i;
        Result<std::vector<FaceId>> ids = store->enroll("staff", "s" + std::to_string(w), {synthetic_face(seed)}, who());
        if (!ids) {
          ++errors;
          continue;
        }
        const bool before = !backup_called.load();
        std::lock_guard lock(mu);
        seed_of[ids->front()] = seed;
        if (before) returned_before_backup.insert(ids->front());
        if (after) started_after_backup.insert(ids->front());
        ++enrolled;
      }
    });
  }
  threads.emplace_back([&] {
    const SearchRecord search{who("door 3"), "staff", {}, R"({"face_ids":[],"scores":[]})", "ok"};
    while (!stop.load()) {
      // What a search does in the store: re-check its candidates, then the audited record.
      const std::vector<FaceId> candidates = {1, 2, 3};
      if (!store->existing_faces(candidates).ok() || !store->record_search(search).ok()) ++errors;
      ++searches;
    }
  });
  while (enrolled.load() < 40) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  backup_called = true;
  Result<BackupReport> report = backup_store(path, dir.file("backup.db"), options_with_key());
  backup_returned = true;
  const int at_return = enrolled.load();
  while (enrolled.load() < at_return + 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(searches.load(), 0);
  EXPECT_EQ(report->key_source, "StoreOptions::key_hex");
  EXPECT_TRUE(report->key_found);

  // What the snapshot must hold, from the live store's change feed.
  Result<ChangeBatch> feed = store->changes_since(0, 1'000'000);
  ASSERT_TRUE(feed.ok());
  std::set<FaceId> expected, later;
  for (const FaceChange& c : feed->changes) {
    ASSERT_EQ(c.kind, FaceChange::Kind::kAdded);
    (c.version <= report->audit_seq ? expected : later).insert(c.face_id);
  }
  EXPECT_FALSE(later.empty()) << "no enrollment committed after the snapshot: the test proves less";

  // Restore: a copy at a new path, as an operator would, then verify and compare.
  const std::string restored = dir.file("restored.db");
  std::filesystem::copy_file(report->path, restored);
  Result<StoreCheck> check = verify_store(restored, options_with_key());
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_TRUE(check->ok()) << check->problems.front();
  EXPECT_EQ(check->faces, static_cast<std::int64_t>(expected.size()));

  std::unique_ptr<Store> back = open_or_die(restored, options_with_key());
  Result<std::vector<FaceRecord>> faces = back->load_faces("staff");
  ASSERT_TRUE(faces.ok());
  std::set<FaceId> held;
  for (const FaceRecord& f : *faces) {
    held.insert(f.id);
    EXPECT_EQ(f.embedding, synthetic_embedding(seed_of.at(f.id))) << "face " << f.id;
  }
  EXPECT_EQ(held, expected);
  for (FaceId id : returned_before_backup) EXPECT_TRUE(held.count(id)) << "face " << id << " committed before the backup";
  for (FaceId id : started_after_backup) EXPECT_FALSE(held.count(id)) << "face " << id << " began after the backup";
  Result<AuditHead> head = back->audit_head();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->seq, report->audit_seq);
  Result<AuditVerification> chain = back->audit_verify();
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->intact) << chain->summary();
  // The restored store takes new work, and the key never left the caller.
  EXPECT_FALSE(std::filesystem::exists(report->path.string() + ".key"));
  EXPECT_TRUE(back->enroll("staff", "s0", {synthetic_face(7)}, who()).ok());
}

TEST(BackupTest, RefusesToOverwriteAndPointsPostgresqlToItsTools) {
  TempDir dir;
  const std::string path = dir.file("live.db");
  open_or_die(path, options_with_key());
  std::ofstream(dir.file("taken.db")) << "x";
  Result<BackupReport> r = backup_store(path, dir.file("taken.db"), options_with_key());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kAlreadyExists);
  r = backup_store("postgresql://localhost/candor", dir.file("pg.db"), options_with_key());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("pg_dump"), std::string::npos);
  EXPECT_NE(r.error().message.find("pg_basebackup"), std::string::npos);
  // A file that is not a Candor store is not "backed up".
  std::ofstream(dir.file("other.db")) << "";
  r = backup_store(dir.file("other.db"), dir.file("other-backup.db"), options_with_key());
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(std::filesystem::exists(dir.file("other-backup.db")));
}

TEST(BackupTest, ReportsAMissingKeyFileWithoutFailingTheBackup) {
  TempDir dir;
  const std::string path = dir.file("live.db");
  StoreOptions file_key;
  file_key.use_env_key = false;  // the key in live.db.key, created with the store
  open_or_die(path, file_key);
  Result<BackupReport> r = backup_store(path, dir.file("b1.db"), file_key);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->key_found);
  EXPECT_EQ(r->key_source, path + ".key");
  std::filesystem::remove(path + ".key");
  r = backup_store(path, dir.file("b2.db"), file_key);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->key_found);
  EXPECT_NE(r->key_source.find(path + ".key"), std::string::npos) << r->key_source;
}

class VerifyTest : public StaffStoreTest {
 protected:
  void SetUp() override {
    StaffStoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(store_->grant_consent(consent_for("alice"), who()).ok());
    for (int i = 0; i < 3; ++i) {
      Result<std::vector<FaceId>> r = store_->enroll("staff", "alice", {synthetic_face(static_cast<std::uint32_t>(i))}, who());
      ASSERT_TRUE(r.ok());
      ids_.push_back(r->front());
    }
    store_.reset();  // verify opens its own
  }
  Result<StoreCheck> verify() { return verify_store(path_, options_with_key()); }
  // The first problem verify names ("" when it finds none, or cannot read the store).
  std::string first_problem() {
    Result<StoreCheck> r = verify();
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() && !r->ok() ? r->problems.front() : std::string();
  }
  std::vector<FaceId> ids_;
};

TEST_P(VerifyTest, AGoodStoreVerifiesWithItsCounts) {
  Result<StoreCheck> r = verify();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok()) << r->problems.front();
  EXPECT_EQ(r->collections, 1);
  EXPECT_EQ(r->consents, 1);
  EXPECT_EQ(r->faces, 3);
  EXPECT_EQ(r->audit_entries, 5);  // collection, consent, three enrollments
}

TEST_P(VerifyTest, NamesACorruptedTemplate) {
  // Another face's ciphertext in this row: valid bytes, bound to another face id.
  db_->exec("UPDATE faces SET template = (SELECT template FROM faces WHERE id = " + std::to_string(ids_[0]) +
            ") WHERE id = " + std::to_string(ids_[1]));
  const std::string problem = first_problem();
  EXPECT_NE(problem.find("face " + std::to_string(ids_[1])), std::string::npos) << problem;
}

TEST_P(VerifyTest, NamesABrokenAuditChain) {
  db_->drop_audit_guards();
  db_->exec("UPDATE audit_log SET reason = 'nothing happened' WHERE seq = 3");
  const std::string problem = first_problem();
  EXPECT_NE(problem.find("seq 3"), std::string::npos) << problem;
}

TEST_P(VerifyTest, NamesAFaceWithoutConsent) {
  db_->exec("DELETE FROM consents WHERE subject = 'alice'");
  const std::string problem = first_problem();
  EXPECT_NE(problem.find("no consent record"), std::string::npos) << problem;
}

// Since schema v6 no foreign key ties a face to its collection: a face whose collection is
// gone is named (before, each collection's faces were checked and this one was in none).
TEST_P(VerifyTest, NamesAFaceWhoseCollectionIsGone) {
  db_->exec("UPDATE faces SET collection_id = 999999 WHERE id = " + std::to_string(ids_[2]));
  const std::string problem = first_problem();
  EXPECT_NE(problem.find("face " + std::to_string(ids_[2]) + " belongs to no collection"), std::string::npos)
      << problem;
}

// A photo library's templates are checked like a collection's: counted, and a template
// that does not open is named with its library and face.
TEST_P(VerifyTest, NamesACorruptedLibraryTemplateAndCountsTheRest) {
  std::vector<std::int64_t> faces;
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
    Result<AddedPhoto> added =
        family_library_with(*s, {std::vector<float>(64, 0.125F), std::vector<float>(64, -0.125F)});
    ASSERT_TRUE(added.ok()) << added.error().message;
    faces = added->faces;
  }
  Result<StoreCheck> good = verify();
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_TRUE(good->ok()) << good->problems.front();
  EXPECT_EQ(good->libraries, 1);
  EXPECT_EQ(good->library_faces, 2);
  // The first face's ciphertext in the second's row: valid bytes, bound to another face.
  db_->exec("UPDATE library_faces SET template = (SELECT template FROM library_faces WHERE id = " +
            std::to_string(faces[0]) + ") WHERE id = " + std::to_string(faces[1]));
  const std::string problem = first_problem();
  EXPECT_NE(problem.find("library family"), std::string::npos) << problem;
  EXPECT_NE(problem.find(std::to_string(faces[1])), std::string::npos) << problem;
}

// store copy moves photo libraries and streams too, and under another key re-seals their
// templates and secrets (before: no library was copied, and a stream's secrets copied
// verbatim would not open under the destination's key).
class StoreCopyTest : public BackendTest {};

TEST_P(StoreCopyTest, LibrariesAndStreamSecretsCopyUnderAnotherKey) {
  const std::vector<float> mine(64, 0.125F), theirs(64, -0.125F);
  SqliteTestDatabase source;
  {
    std::unique_ptr<Store> s = open_or_die(source.uri(), options_with_key());
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
    ASSERT_TRUE(s->enroll("staff", "alice", {synthetic_face(1)}, who()).ok());
    NewStream door = door_stream();
    door.detect_every = 2;
    door.buffer_frames = 5;
    door.shutter_s = 0.02;
    door.strangers_named = 0.02;
    ASSERT_TRUE(s->create_stream(door, who()).ok());
    ASSERT_TRUE(family_library_with(*s, {mine, theirs}).ok());
  }
  StoreOptions other_key = options_with_key();
  other_key.key_hex = SecretKey::generate().to_hex();
  Result<StoreCopyReport> copied = copy_store(source.uri(), options_with_key(), path_, other_key);
  ASSERT_TRUE(copied.ok()) << copied.error().message;
  EXPECT_TRUE(copied->reencrypted);
  EXPECT_EQ(copied->faces, 1);
  EXPECT_EQ(copied->streams, 1);
  EXPECT_EQ(copied->libraries, 1);
  EXPECT_EQ(copied->library_faces, 2);

  {
    std::unique_ptr<Store> s = open_or_die(path_, other_key);
    Result<std::vector<LibraryFace>> faces = s->library().list_faces("family", /*with_templates=*/true);
    ASSERT_TRUE(faces.ok()) << faces.error().message;
    ASSERT_EQ(faces->size(), 2U);
    EXPECT_EQ((*faces)[0].embedding, mine);
    EXPECT_EQ((*faces)[1].embedding, theirs);
    Result<std::vector<StreamRecord>> streams = s->list_streams();
    ASSERT_TRUE(streams.ok()) << streams.error().message;
    ASSERT_EQ(streams->size(), 1U);
    // The stream's settings are copied with it.
    EXPECT_EQ(streams->front().detect_every, std::optional<int>(2));
    EXPECT_EQ(streams->front().buffer_frames, std::optional<int>(5));
    EXPECT_EQ(streams->front().shutter_s, std::optional<double>(0.02));
    EXPECT_EQ(streams->front().strangers_named, std::optional<double>(0.02));
    Result<StreamSecrets> secrets = s->stream_secrets(streams->front().id);
    ASSERT_TRUE(secrets.ok()) << secrets.error().message;
    EXPECT_EQ(secrets->source, kSecretSource);
    EXPECT_EQ(secrets->outputs_json, door_stream().outputs_json);
    // The destination now holds something: a second copy into it is refused.
    EXPECT_EQ(copy_store(source.uri(), options_with_key(), path_, other_key).error().code, ErrorCode::kAlreadyExists);
  }
  Result<StoreCheck> check = verify_store(path_, other_key);
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_TRUE(check->ok()) << check->problems.front();
  EXPECT_EQ(check->library_faces, 2);
}

INSTANTIATE_TEST_SUITE_P(Store, StoreCopyTest, ::testing::Values("sqlite", "postgresql"), backend_name);

TEST_P(VerifyTest, TheWrongKeyFailsClearly) {
  StoreOptions wrong = options_with_key();
  wrong.key_hex = std::string(64, 'a');
  Result<StoreCheck> r = verify_store(path_, wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(r.error().message.find("wrong key"), std::string::npos) << r.error().message;
}

// Verify reads, never writes: here an unkeyed store (no template yet), which a read-write
// open would key (insert its key check value).
TEST_P(VerifyTest, WritesNothingToTheStore) {
  db_->exec("DELETE FROM faces; DELETE FROM meta WHERE key = 'key_check'");
  Result<StoreCheck> r = verify();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM meta WHERE key = 'key_check'"), 0);
}

INSTANTIATE_TEST_SUITE_P(Store, VerifyTest, ::testing::Values("sqlite", "postgresql"), backend_name);

// A backup file's bytes and mtime are the same after verify, because it is opened
// read-only. The copy is of a store not keyed yet (no template, no key check value: the
// one thing a read-write open of a current store writes, its key check value).
TEST(VerifyReadOnlyTest, VerifyingABackupLeavesItsFileUnchanged) {
  TempDir dir;
  const std::string live = dir.file("live.db");
  {
    std::unique_ptr<Store> s = open_or_die(live, options_with_key());
    ASSERT_TRUE(s->create_collection(staff_collection(), who()).ok());
  }
  RawDb(live).exec("DELETE FROM meta WHERE key = 'key_check'");
  const std::string copy = dir.file("copy.db");
  ASSERT_TRUE(backup_store(live, copy, options_with_key()).ok());
  const auto read_bytes = [&copy] {
    std::string bytes(std::filesystem::file_size(copy), '\0');
    std::ifstream in(copy, std::ios::binary);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return bytes;
  };
  const std::string before = read_bytes();
  const auto mtime = std::filesystem::last_write_time(copy);
  Result<StoreCheck> r = verify_store(copy, options_with_key());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok()) << r->problems.front();
  EXPECT_EQ(r->collections, 1);
  EXPECT_TRUE(read_bytes() == before) << "verify changed the backup's bytes";
  EXPECT_EQ(std::filesystem::last_write_time(copy), mtime);
}

// A store older than the build is not migrated by verify (that would write): refused,
// naming the command that migrates it.
TEST(VerifyReadOnlyTest, AnOlderSchemaIsRefusedNamingMigrate) {
  TempDir dir;
  const std::string path = dir.file("old.db");
  {
    store_detail::Database db(path, true);
    store_detail::migrate_up_to(db, store_detail::latest_schema_version() - 1, 1'700'000'000'000);
  }
  Result<StoreCheck> r = verify_store(path, options_with_key());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kStoreError);
  EXPECT_NE(r.error().message.find("candor migrate"), std::string::npos) << r.error().message;
  EXPECT_EQ(RawDb(path).scalar("SELECT MAX(version) FROM schema_version"), store_detail::latest_schema_version() - 1);
}

}  // namespace
}  // namespace candor::test
