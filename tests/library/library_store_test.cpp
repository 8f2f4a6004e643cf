// Photo libraries in the store and the grouping persisted over it (candor/library_store.h,
// candor/photo_library.h), on SQLite and PostgreSQL, with synthetic templates (no models):
// add -> people -> name -> add more -> regroup keeps names and corrections -> remove-face
// is respected -> find is audited -> forget then re-add brings nothing back -> delete
// leaves no row.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "../store/backend_fixture.h"
#include "candor/crypto.h"
#include "candor/library_store.h"
#include "candor/photo_library.h"

namespace candor::test {
namespace {

constexpr std::size_t kDim = 64;

// Person p's face number k: 0.9 * a random unit centre + 0.44 * random noise, so two
// faces of one person score about 0.8 and two people about 0 (64-d).
std::vector<float> person_face(int person, int k) {
  std::mt19937 centre_rng(1000 + static_cast<unsigned>(person)), noise_rng(7919 * static_cast<unsigned>(person) + static_cast<unsigned>(k));
  std::normal_distribution<float> n(0, 1);
  std::vector<float> c(kDim), v(kDim);
  for (float& x : c) x = n(centre_rng);
  for (float& x : v) x = n(noise_rng);
  const auto normalise = [](std::vector<float>& x) {
    double s = 0;
    for (float y : x) s += double(y) * y;
    for (float& y : x) y = static_cast<float>(y / std::sqrt(s));
  };
  normalise(c), normalise(v);
  for (std::size_t i = 0; i < kDim; ++i) v[i] = 0.9F * c[i] + 0.44F * v[i];
  normalise(v);
  return v;
}

NewLibraryFace face_of(int person, int k, float x) {
  return NewLibraryFace{FaceBox{x, 10, 50, 60}, 0.99F, person_face(person, k), "synthetic-64"};
}

LibraryPhoto photo_at(const std::string& path) {
  LibraryPhoto p;
  p.path = path;
  p.sha256 = sha256_hex(std::string_view(path));  // a stand-in for the content's digest
  p.size = 100;
  p.mtime = 1;
  p.ingested = true;
  return p;
}

class LibraryStoreTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    store_ = open_or_die(path_, options_with_key(&clock_));
    lib_ = &store_->library();
    ASSERT_TRUE(lib_->create_library({"family", "me", 365}, who()).ok());
  }

  // Photos 0..n-1 of `people`: photo i shows person i % people (face k = i / people);
  // photo `pair_photo` also shows the next person, beside.
  void add_photos(int first, int n, int people, int pair_photo = -1) {
    for (int i = first; i < first + n; ++i) {
      std::vector<NewLibraryFace> faces = {face_of(i % people, i / people, 10)};
      if (i == pair_photo) faces.push_back(face_of((i + 1) % people, 100 + i, 200));
      ASSERT_TRUE(lib_->add_photo("family", photo_at("/photos/" + std::to_string(i) + ".jpg"), faces, who()).ok());
    }
  }

  // The group of each person: every face of a person in one group, no two people in one.
  std::map<int, std::int64_t> group_by_person(int people) {
    std::map<int, std::int64_t> out;
    auto faces = lib_->list_faces("family", true).value();
    for (const LibraryFace& f : faces) {
      int person = -1;
      for (int p = 0; p < people; ++p) {
        if (cosine_similarity(f.embedding, person_face(p, 0)) > 0.5F) person = p;
      }
      EXPECT_GE(person, 0);
      EXPECT_NE(f.group, 0) << "face " << f.id << " not grouped";
      if (auto [it, added] = out.emplace(person, f.group); !added) {
        EXPECT_EQ(it->second, f.group) << "person " << person;
      }
    }
    return out;
  }

  std::vector<AuditEntry> entries_of(const std::string& operation) {
    AuditFilter f;
    f.operation = operation;
    return store_->audit_list(f).value();
  }

  std::string label_of(std::int64_t group) {
    const auto rows1 = lib_->list_groups("family").value();

    for (const LibraryGroup& g : rows1) {
      if (g.number == group) return g.label;
    }
    return "<no group>";
  }

  std::unique_ptr<Store> store_;
  LibraryStore* lib_ = nullptr;
};

TEST_P(LibraryStoreTest, AddNameAddMoreRegroupKeepsNamesAndCorrections) {
  add_photos(0, 9, 3, /*pair_photo=*/4);
  ASSERT_EQ(group_new_faces(*lib_, "family", {}, who()).value(), 10U);
  std::map<int, std::int64_t> groups = group_by_person(3);
  ASSERT_EQ(groups.size(), 3U);
  const auto people = lib_->list_groups("family").value();
  ASSERT_EQ(people.size(), 3U);
  EXPECT_EQ(people.front().faces, 4);  // person 2: three photos and the one beside person 1
  ASSERT_TRUE(lib_->set_group_label("family", groups[0], "Grandma", who()).ok());

  // More photos: the old faces keep their groups and the name stays.
  add_photos(9, 3, 3);
  ASSERT_EQ(group_new_faces(*lib_, "family", {}, who()).value(), 3U);
  EXPECT_EQ(group_by_person(3), groups);
  EXPECT_EQ(label_of(groups[0]), "Grandma");

  // "This face is not Grandma": remembered by the grouping and by a full regroup.
  const auto faces = lib_->list_faces("family", false).value();
  const std::int64_t removed = faces[3].id;  // photo 3: person 0's second face
  ASSERT_EQ(faces[3].group, groups[0]);
  const std::int64_t moved_to = remove_face(*lib_, "family", removed, {}, who()).value();
  EXPECT_NE(moved_to, groups[0]);
  ASSERT_TRUE(regroup_library(*lib_, "family", {}, who()).ok());
  auto after = lib_->list_faces("family", false).value();
  std::int64_t now_in = 0;
  for (const auto& f : after) {
    if (f.id == removed) now_in = f.group;
  }
  EXPECT_NE(now_in, groups[0]) << "a removed face came back on regroup";
  EXPECT_EQ(label_of(groups[0]), "Grandma") << "regroup lost the name";
  // The correction is in the store: cannot-links from the face to the rest of the group.
  const auto corrections = lib_->list_corrections("family").value();
  EXPECT_FALSE(corrections.empty());
  for (const auto& c : corrections) EXPECT_EQ(c.kind, LibraryCorrection::Kind::kCannotLink);
  // Labels never reach the audit log (they name people).
  const auto rows2 = store_->audit_list({}).value();

  for (const AuditEntry& e : rows2) EXPECT_EQ(e.details.find("Grandma"), std::string::npos);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

// Two faces at cosine 0.3 found two groups; a third, halfway (0.81 with each), links
// them. Unnamed, the later add merges the two into one person; when the owner has named
// both, neither the add nor a regroup merges them and both names keep their faces.
TEST_P(LibraryStoreTest, NamedGroupsAreNeverMergedByAnAddOrARegroup) {
  auto unit = [](float a, float b) {
    std::vector<float> v(kDim, 0.0F);
    v[0] = a, v[1] = b;
    return v;
  };
  const float s = std::sqrt(1 - 0.09F), h = std::sqrt(2 * 1.3F);
  const std::vector<std::vector<float>> faces = {unit(1, 0), unit(0.3F, s), unit(1.3F / h, s / h)};
  for (bool named : {false, true}) {
    const std::string library = named ? "named" : "unnamed";
    ASSERT_TRUE(lib_->create_library({library, "me", 365}, who()).ok());
    for (int i = 0; i < 3; ++i) {
      const NewLibraryFace f{FaceBox{10, 10, 50, 60}, 0.99F, faces[static_cast<std::size_t>(i)], "synthetic-64", 3.6F};
      ASSERT_TRUE(lib_->add_photo(library, photo_at("/" + library + "/" + std::to_string(i) + ".jpg"), {f}, who()).ok());
      ASSERT_TRUE(group_new_faces(*lib_, library, {}, who()).ok());
      if (i == 1 && named) {
        for (const LibraryGroup& g : lib_->list_groups(library).value()) {
          ASSERT_TRUE(lib_->set_group_label(library, g.number, "person " + std::to_string(g.number), who()).ok());
        }
      }
    }
    for (bool regrouped : {false, true}) {
      if (regrouped) {
        ASSERT_TRUE(regroup_library(*lib_, library, {}, who()).ok());
      }
      const auto groups = lib_->list_groups(library).value();
      EXPECT_EQ(groups.size(), named ? 2U : 1U) << library << (regrouped ? " after regroup" : " after add");
      for (const LibraryGroup& g : groups) {
        if (named) {
          EXPECT_EQ(g.label, "person " + std::to_string(g.number));
        }
      }
    }
  }
}

TEST_P(LibraryStoreTest, MergeIsRememberedByRegroup) {
  add_photos(0, 6, 2);
  ASSERT_TRUE(group_new_faces(*lib_, "family", {}, who()).ok());
  auto groups = group_by_person(2);
  ASSERT_NE(groups[0], groups[1]);
  const std::int64_t merged = merge_groups(*lib_, "family", groups[0], groups[1], {}, who()).value();
  ASSERT_TRUE(regroup_library(*lib_, "family", {}, who()).ok());
  const auto rows3 = lib_->list_faces("family", false).value();

  for (const auto& f : rows3) EXPECT_EQ(f.group, merged);
}

TEST_P(LibraryStoreTest, TemplatesAreEncryptedAndLibrariesStayOutOfCollections) {
  add_photos(0, 2, 2);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM library_faces WHERE template IS NOT NULL"), 2);
  // Sealed: nonce + ciphertext + tag, not 64 raw floats.
  EXPECT_EQ(db_->scalar(is_pg() ? "SELECT MIN(octet_length(template)) FROM library_faces"
                                : "SELECT MIN(length(template)) FROM library_faces"),
            static_cast<std::int64_t>(24 + kDim * 4 + 16));
  // The collection search path sees none of it.
  EXPECT_TRUE(store_->list_collections()->empty());
  EXPECT_TRUE(store_->changes_since(0, 100)->changes.empty());
  // A ciphertext moved to another face's row does not open.
  db_->exec("UPDATE library_faces SET template = (SELECT template FROM library_faces ORDER BY id LIMIT 1)");
  auto broken = lib_->list_faces("family", true);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().code, ErrorCode::kIntegrityError);
}

TEST_P(LibraryStoreTest, ForgetThenReAddBringsNothingBack) {
  add_photos(0, 6, 2);
  ASSERT_TRUE(group_new_faces(*lib_, "family", {}, who()).ok());
  auto groups = group_by_person(2);
  auto refused = lib_->forget_group("family", groups[0], AuditContext{"tester", ""});
  ASSERT_FALSE(refused.ok()) << "forgetting needs a reason";
  // The refusal is audited under the library's scope (refusal_draft kept it).
  const auto refusals = entries_of("library_forget");
  ASSERT_EQ(refusals.size(), 1U);
  EXPECT_EQ(refusals[0].result, "refused: invalid_argument");
  EXPECT_EQ(refusals[0].collection, "library:family");
  const auto forgotten = lib_->forget_group("family", groups[0], who("the owner's request")).value();
  ASSERT_EQ(forgotten.size(), 3U);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM library_faces WHERE state = 'forgotten' AND template IS NULL"), 3);
  // The same photos again, under new paths (copied elsewhere): person 0's faces stay out,
  // person 1's (a face beside, another box) would be stored.
  for (int i = 0; i < 6; i += 2) {
    LibraryPhoto p = photo_at("/photos/" + std::to_string(i) + ".jpg");
    p.path = "/copy/" + std::to_string(i) + ".jpg";
    const auto added = lib_->add_photo("family", p, {face_of(0, i / 2, 12), face_of(1, 50 + i, 300)}, who()).value();
    EXPECT_EQ(added.suppressed, 1);
    EXPECT_EQ(added.faces.size(), 1U);
  }
  ASSERT_TRUE(group_new_faces(*lib_, "family", {}, who()).ok());
  const auto rows4 = lib_->list_faces("family", true).value();

  for (const auto& f : rows4) {
    EXPECT_LT(cosine_similarity(f.embedding, person_face(0, 0)), 0.5F) << "a forgotten person came back";
  }
  EXPECT_TRUE(store_->audit_verify()->intact);
}

// find_face answers one active face of the library by id, with its box, and nothing for a
// forgotten face, a face of another library or an id that does not exist.
// The template norm (schema v7) comes back as stored; one that is not a finite,
// non-negative number is refused and nothing of the photo is kept.
TEST_P(LibraryStoreTest, TemplateNormIsKeptAndABadOneRefused) {
  NewLibraryFace f = face_of(0, 0, 10);
  f.template_norm = 3.25F;
  ASSERT_TRUE(lib_->add_photo("family", photo_at("/photos/a.jpg"), {f}, who()).ok());
  auto faces = lib_->list_faces("family", true).value();
  ASSERT_EQ(faces.size(), 1U);
  EXPECT_FLOAT_EQ(faces[0].template_norm, 3.25F);
  for (float bad : {-1.0F, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    f.template_norm = bad;
    auto r = lib_->add_photo("family", photo_at("/photos/b.jpg"), {f}, who());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(lib_->list_faces("family", true).value().size(), 1U);
  EXPECT_EQ(lib_->list_photos("family").value().size(), 1U);
}

TEST_P(LibraryStoreTest, FindFaceAnswersOneActiveFaceOfThisLibraryOnly) {
  add_photos(0, 4, 2, 1);
  ASSERT_TRUE(lib_->create_library({"trip", "me", 365}, who()).ok());
  ASSERT_TRUE(lib_->add_photo("trip", photo_at("/trip/0.jpg"), {face_of(5, 0, 40)}, who()).ok());
  ASSERT_TRUE(group_new_faces(*lib_, "family", {}, who()).ok());
  const auto faces = lib_->list_faces("family", false).value();
  ASSERT_EQ(faces.size(), 5U);
  const LibraryFace& beside = faces[2];  // photo 1's second face, at x = 200
  const auto found = lib_->find_face("family", beside.id);
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_EQ(found->id, beside.id);
  EXPECT_EQ(found->photo, beside.photo);
  EXPECT_EQ(found->box.x, 200.0F);
  EXPECT_EQ(found->group, beside.group);
  const std::int64_t trip_face = lib_->list_faces("trip", false).value().at(0).id;
  EXPECT_EQ(lib_->find_face("family", trip_face).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(lib_->find_face("trip", trip_face).ok());
  EXPECT_EQ(lib_->find_face("family", 1'000'000).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(lib_->forget_group("family", beside.group, who("the owner's request")).ok());
  EXPECT_EQ(lib_->find_face("family", beside.id).error().code, ErrorCode::kNotFound);
}

TEST_P(LibraryStoreTest, DeleteLeavesNoRowAndIsAudited) {
  add_photos(0, 6, 2, 3);
  ASSERT_TRUE(group_new_faces(*lib_, "family", {}, who()).ok());
  auto groups = group_by_person(2);
  ASSERT_TRUE(lib_->set_group_label("family", groups[1], "Bob", who()).ok());
  ASSERT_TRUE(lib_->set_group_hidden("family", groups[1], true, who()).ok());
  const auto listed = lib_->list_groups("family").value();
  for (const LibraryGroup& g : listed) {
    EXPECT_EQ(g.hidden, g.number == groups[1]);
    EXPECT_EQ(g.label, g.number == groups[1] ? "Bob" : "") << "hiding keeps the name";
  }
  ASSERT_TRUE(lib_->add_corrections("family", std::vector<LibraryCorrection>{{LibraryCorrection::Kind::kCannotLink, 1, 2}},
                                    who())
                  .ok());
  ASSERT_TRUE(lib_->record_find("family", R"({"photos": 3})", who("looking for myself")).ok());
  const LibraryErasure erased = lib_->delete_library("family", who("the owner's request")).value();
  EXPECT_EQ(erased.photos, 6);
  EXPECT_EQ(erased.faces, 7);
  for (const char* table : {"libraries", "library_photos", "library_faces", "library_groups", "library_corrections"}) {
    EXPECT_EQ(db_->scalar(std::string("SELECT COUNT(*) FROM ") + table), 0) << table;
  }
  const auto entries = entries_of("library_delete");
  ASSERT_EQ(entries.size(), 1U);
  EXPECT_EQ(entries[0].collection, "library:family");
  EXPECT_EQ(entries[0].reason, "the owner's request");
  EXPECT_EQ(entries_of("library_find").size(), 1U);
  EXPECT_TRUE(store_->audit_verify()->intact);
  EXPECT_EQ(lib_->get_library("family").error().code, ErrorCode::kNotFound);
}

// A library's retention term is enforced by the retention run: faces older than it go with
// their corrections, labels and photo records (so a later add computes them afresh); younger
// faces and a forgotten face's marker stay; the purge is one audit entry in the library's scope.
TEST_P(LibraryStoreTest, RetentionRunDeletesFacesPastTheLibrarysTerm) {
  ASSERT_TRUE(lib_->create_library({"trip", "me", 30}, who()).ok());
  const auto add = [&](const std::string& path, std::vector<NewLibraryFace> faces) {
    return lib_->add_photo("trip", photo_at(path), faces, who()).value();
  };
  const AddedPhoto old_pair = add("/trip/old.jpg", {face_of(0, 0, 10), face_of(1, 0, 200)});
  const AddedPhoto old_forgotten = add("/trip/forgotten.jpg", {face_of(2, 0, 10)});
  ASSERT_TRUE(lib_->save_groups("trip", {{old_pair.faces[0], 1}, {old_pair.faces[1], 2}, {old_forgotten.faces[0], 3}},
                                who())
                  .ok());
  ASSERT_TRUE(lib_->set_group_label("trip", 1, "Ann", who()).ok());
  ASSERT_TRUE(lib_->add_corrections("trip",
                                    std::vector<LibraryCorrection>{{LibraryCorrection::Kind::kCannotLink,
                                                                    old_pair.faces[0], old_pair.faces[1]}},
                                    who())
                  .ok());
  ASSERT_TRUE(lib_->forget_group("trip", 3, who("the owner's request")).ok());
  clock_.advance_days(20);
  const AddedPhoto young = add("/trip/young.jpg", {face_of(0, 1, 10)});
  add_photos(0, 2, 2);  // "family" keeps its 365 days
  clock_.advance_days(15);  // old: 35 days, young: 15

  const RetentionReport r = store_->retention_run(clock_.now(), who()).value();
  EXPECT_EQ(r.library_faces_expired, 2);
  EXPECT_TRUE(r.removed.empty()) << "no collection face was touched";
  const auto faces = lib_->list_faces("trip", true, /*with_forgotten=*/true).value();
  std::set<std::int64_t> left;
  for (const LibraryFace& f : faces) left.insert(f.id);
  EXPECT_EQ(left, (std::set<std::int64_t>{old_forgotten.faces[0], young.faces[0]}));
  std::set<std::string> photos;
  const auto listed = lib_->list_photos("trip").value();
  for (const LibraryPhoto& p : listed) photos.insert(p.path);
  EXPECT_EQ(photos, (std::set<std::string>{"/trip/forgotten.jpg", "/trip/young.jpg"}));
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM library_groups WHERE label = 'Ann'"), 0) << "the label of a number no face holds";
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM library_corrections"), 0);
  EXPECT_EQ(lib_->list_faces("family", false).value().size(), 2U);
  const auto purges = entries_of("library_retention_purge");
  ASSERT_EQ(purges.size(), 1U);
  EXPECT_EQ(purges[0].collection, "library:trip");
  EXPECT_TRUE(store_->audit_verify()->intact);
  // The expired photo, added again, is ingested afresh.
  EXPECT_EQ(add("/trip/old.jpg", {face_of(0, 0, 10)}).faces.size(), 1U);
}

TEST_P(LibraryStoreTest, AChangedFileReplacesItsFaces) {
  add_photos(0, 1, 1);
  LibraryPhoto changed = photo_at("/photos/0.jpg");
  changed.sha256 = sha256_hex(std::string_view("new content"));
  changed.mtime = 2;
  ASSERT_TRUE(lib_->add_photo("family", changed, {face_of(0, 5, 10), face_of(1, 5, 200)}, who()).ok());
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM library_photos"), 1);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM library_faces"), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, LibraryStoreTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
