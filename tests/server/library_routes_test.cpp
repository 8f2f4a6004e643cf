// Photo libraries over HTTP (issue 13, src/server/routes_library.cpp), built into
// server_test: a library of testdata photos recorded through the store with the engine's
// real templates, then every route from the attacker's side (no key, a key without the
// scope, a key for other libraries, ids that are not numbers, a face of another library,
// malformed JSON) and the owner's (groups, name, merge, hide, remove a face, thumbnail,
// find with its audit entry, forget, delete).
#include <set>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "candor/crypto.h"
#include "candor/photo_library.h"
#include "candor/store.h"
#include "server_test_util.h"

namespace candor {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class LibraryRoutesTest : public test::SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    // Each route is called without a key and with a wrong one: far more failures than the
    // per-address throttle lets through before it answers 429 to everything.
    srv_ = new test::TestServer([](ServerOptions& o) { o.auth_failures_allowed = 1000; });
    store_ = open_store((srv_->dir() / "store.db").string(), StoreOptions{}).value().release();
    const AuditContext owner{"test:owner", "my photos"};
    ASSERT_TRUE(store_->library().create_library({"family", "me", 365}, owner).ok());
    ASSERT_TRUE(store_->library().create_library({"other", "someone", 365}, owner).ok());
    fs::create_directories(srv_->dir() / "photos");
    // sample1 (face 2) and sample3 (face 1) show the same woman (tests/collections).
    for (const auto& [lib, sample] : std::vector<std::pair<std::string, int>>{{"family", 1}, {"family", 3}, {"other", 2}}) {
      const fs::path path = srv_->dir() / "photos" / ("s" + std::to_string(sample) + ".jpg");
      const std::string bytes = test::sample(sample);
      std::ofstream(path, std::ios::binary) << bytes;
      const cv::Mat bgr = cv::imread(path.string());
      LibraryPhoto photo;
      photo.path = path.string();
      photo.sha256 = sha256_hex(std::string_view(bytes));
      photo.size = static_cast<std::int64_t>(bytes.size());
      photo.ingested = true;
      std::vector<NewLibraryFace> faces;
      for (const Face& f : test::shared_engine().analyze(bgr)) {
        faces.push_back(NewLibraryFace{FaceBox{f.box.x, f.box.y, f.box.width, f.box.height}, f.score, f.embedding,
                                       test::shared_engine().recognizer_spec().id});
      }
      auto added = store_->library().add_photo(lib, photo, faces, owner);
      ASSERT_TRUE(added.ok());
      ASSERT_FALSE(added->faces.empty());
      (lib == "family" ? family_faces_ : other_faces_).push_back(added->faces);
      if (lib == "family") family_photos_.push_back(added->photo);
    }
    for (const char* lib : {"family", "other"}) ASSERT_TRUE(group_new_faces(store_->library(), lib, {}, owner).ok());
  }
  static void TearDownTestSuite() {
    delete store_;
    store_ = nullptr;
    test::SharedServerTest::TearDownTestSuite();
  }

  static httplib::Result get(const std::string& path, const std::string& key = "") {
    return srv_->client().Get(path.c_str(), srv_->auth(key));
  }
  static httplib::Result del(const std::string& path, const std::string& key = "") {
    return srv_->client().Delete(path.c_str(), srv_->auth(key));
  }
  static std::int64_t group_of(std::int64_t face) {
    for (const LibraryFace& f : store_->library().list_faces("family", false).value()) {
      if (f.id == face) return f.group;
    }
    return -1;
  }

  static inline Store* store_ = nullptr;
  static inline std::vector<std::vector<std::int64_t>> family_faces_, other_faces_;  // per photo
  static inline std::vector<std::int64_t> family_photos_;
};

// Every route, with a body each would accept.
struct RouteCase {
  std::string method, path;
};
std::vector<RouteCase> every_route(const std::string& lib, std::int64_t group, std::int64_t face) {
  const std::string g = std::to_string(group), f = std::to_string(face);
  return {{"GET", "/v1/libraries/" + lib + "/groups"},
          {"POST", "/v1/libraries/" + lib + "/groups/" + g + "/name"},
          {"POST", "/v1/libraries/" + lib + "/groups/" + g + "/hide"},
          {"POST", "/v1/libraries/" + lib + "/groups/" + g + "/merge"},
          {"POST", "/v1/libraries/" + lib + "/faces/" + f + "/remove"},
          {"GET", "/v1/libraries/" + lib + "/faces/" + f + "/thumbnail"},
          {"POST", "/v1/libraries/" + lib + "/find?reason=probe"},
          {"DELETE", "/v1/libraries/" + lib + "/groups/" + g + "?reason=probe"},
          {"DELETE", "/v1/libraries/" + lib + "?reason=probe"}};
}

TEST_F(LibraryRoutesTest, KeysWithoutTheScopeOrTheLibraryAreRefusedBeforeAnythingChanges) {
  const std::string no_scope = srv_->create_key({{"name", "lib-noscope"}, {"collections", {"*"}}, {"operations", {"search", "detect"}}});
  const std::string elsewhere = srv_->create_key({{"name", "lib-other"}, {"collections", {"other"}}, {"operations", {"libraries"}}});
  const std::int64_t face = family_faces_[0][0];
  const std::int64_t group = group_of(face);
  const auto before = store_->library().list_groups("family").value().size();
  for (const RouteCase& r : every_route("family", group, face)) {
    httplib::Client c = srv_->client();
    const auto call = [&](const httplib::Headers& h) {
      if (r.method == "GET") return c.Get(r.path.c_str(), h);
      if (r.method == "DELETE") return c.Delete(r.path.c_str(), h);
      return c.Post(r.path.c_str(), h, json{{"name", "x"}, {"with", group}, {"image", test::base64(test::sample(1))}}.dump(),
                    "application/json");
    };
    auto anonymous = call({});
    EXPECT_EQ(anonymous->status, 401) << r.method << " " << r.path;
    auto wrong = call({{"X-API-Key", "cnd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}});
    EXPECT_EQ(wrong->status, 401) << r.method << " " << r.path;
    auto unscoped = call(srv_->auth(no_scope));
    EXPECT_EQ(unscoped->status, 403) << r.method << " " << r.path << " " << unscoped->body;
    EXPECT_NE(unscoped->body.find("libraries"), std::string::npos);
    // A key for other libraries: the same 404 as a library that does not exist.
    auto hidden = call(srv_->auth(elsewhere));
    EXPECT_EQ(hidden->status, 404) << r.method << " " << r.path << " " << hidden->body;
    const RouteCase missing{r.method, std::string(r.path).replace(r.path.find("family"), 6, "nosuch")};
    const auto none = [&] {
      if (missing.method == "GET") return c.Get(missing.path.c_str(), srv_->auth());
      if (missing.method == "DELETE") return c.Delete(missing.path.c_str(), srv_->auth());
      return c.Post(missing.path.c_str(), srv_->auth(), json{{"name", "x"}, {"with", group}}.dump(), "application/json");
    }();
    EXPECT_EQ(none->status, 404) << missing.path;
    EXPECT_EQ(none->body, hidden->body) << "a hidden library answers unlike a missing one";
  }
  EXPECT_EQ(store_->library().list_groups("family").value().size(), before);
  EXPECT_TRUE(store_->library().get_library("family").ok());
  // Listing: only the libraries the key's collections name.
  auto list = get("/v1/libraries", elsewhere);
  ASSERT_EQ(list->status, 200);
  const json libs = json::parse(list->body)["libraries"];
  ASSERT_EQ(libs.size(), 1U);
  EXPECT_EQ(libs[0]["name"], "other");
  EXPECT_EQ(get("/v1/libraries", no_scope)->status, 403);
  EXPECT_EQ(json::parse(get("/v1/libraries")->body)["libraries"].size(), 2U);
}

TEST_F(LibraryRoutesTest, MalformedIdsBodiesAndFacesOfAnotherLibraryAreRefused) {
  const std::int64_t face = family_faces_[0][0];
  const std::string g = std::to_string(group_of(face));
  for (const char* id : {"abc", "-1", "0", "1e3", "1.5", "99999999999999999999", "%20", "0x10"}) {
    EXPECT_EQ(get(std::string("/v1/libraries/family/faces/") + id + "/thumbnail")->status, 400) << id;
    EXPECT_EQ(srv_->post_json(std::string("/v1/libraries/family/faces/") + id + "/remove", json::object())->status, 400) << id;
    EXPECT_EQ(srv_->post_json(std::string("/v1/libraries/family/groups/") + id + "/name", {{"name", "x"}})->status, 400) << id;
    EXPECT_EQ(del(std::string("/v1/libraries/family/groups/") + id + "?reason=x")->status, 400) << id;
  }
  auto c = srv_->client();
  auto broken = c.Post(("/v1/libraries/family/groups/" + g + "/name").c_str(), srv_->auth(), "{\"name\": ", "application/json");
  EXPECT_EQ(broken->status, 400) << broken->body;
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + g + "/name", {{"name", 5}})->status, 400);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + g + "/name", {{"name", "a\nb"}})->status, 400);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + g + "/name", {{"name", "x"}, {"admin", true}})->status, 400);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + g + "/merge", {{"with", "2"}})->status, 400);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + g + "/merge", {{"with", -2}})->status, 400);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + g + "/hide", {{"hidden", "yes"}})->status, 400);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/999999/name", {{"name", "x"}})->status, 404);
  EXPECT_EQ(del("/v1/libraries/family/groups/" + g)->status, 400) << "a forget without a reason";
  EXPECT_EQ(del("/v1/libraries/family")->status, 400) << "a delete without a reason";
  // A face of library "other", asked for through "family": 404, nothing changed.
  const std::int64_t foreign = other_faces_[0][0];
  const auto other_before = store_->library().list_faces("other", false).value();
  EXPECT_EQ(get("/v1/libraries/family/faces/" + std::to_string(foreign) + "/thumbnail")->status, 404);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/faces/" + std::to_string(foreign) + "/remove", json::object())->status, 404);
  const auto other_after = store_->library().list_faces("other", false).value();
  ASSERT_EQ(other_after.size(), other_before.size());
  for (std::size_t i = 0; i < other_after.size(); ++i) EXPECT_EQ(other_after[i].group, other_before[i].group);
}

TEST_F(LibraryRoutesTest, ThumbnailIsCutFromThePhotoAndNotCached) {
  const std::int64_t face = family_faces_[0][0];
  auto r = get("/v1/libraries/family/faces/" + std::to_string(face) + "/thumbnail");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/jpeg");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
  const cv::Mat t = cv::imdecode(std::vector<std::uint8_t>(r->body.begin(), r->body.end()), cv::IMREAD_COLOR);
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t.size(), cv::Size(96, 96));
  // The same bytes as the report's (one function cuts both).
  const auto direct = library_face_thumbnail(store_->library(), "family", face, {}).value();
  EXPECT_EQ(r->body, std::string(direct.begin(), direct.end()));
  // The photo moved away: 404, and the path is not in the answer.
  const fs::path photo = srv_->dir() / "photos" / "s3.jpg", moved = srv_->dir() / "s3.moved";
  fs::rename(photo, moved);
  auto missing = get("/v1/libraries/family/faces/" + std::to_string(family_faces_[1][0]) + "/thumbnail");
  fs::rename(moved, photo);
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_EQ(missing->body.find(photo.string()), std::string::npos);
}

// A find is a 1:N search: a key's search budget covers it as it covers a collection's
// search, and the store counts each find for the key's actor.
TEST_F(LibraryRoutesTest, FindSpendsTheKeysSearchBudget) {
  const std::string key = srv_->create_key(
      {{"name", "lib-budget"}, {"collections", {"family"}}, {"operations", {"libraries"}}, {"searches_per_minute", 1}});
  const auto find = [&] {
    return srv_->post_image("/v1/libraries/family/find", "image", test::face_crop(3, 1, 0.4F), key,
                            {{"reason", "budget check", "", ""}});
  };
  const TimePoint before = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()) - std::chrono::minutes(1);
  auto first = find();
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(store_->search_count("key:lib-budget", before).value(), 1);
  auto second = find();
  EXPECT_EQ(second->status, 429) << second->body;
  EXPECT_EQ(test::error_code(second), "rate_limited");
  EXPECT_EQ(store_->search_count("key:lib-budget", before).value(), 1) << "a refused find is not charged";
  // Every search is audited, the refused one too, with its reason.
  AuditFilter f;
  f.operation = "library_find";
  f.actor = "key:lib-budget";
  const auto entries = store_->audit_list(f).value();
  ASSERT_EQ(entries.size(), 2U);
  EXPECT_EQ(entries[0].result, "ok");
  EXPECT_EQ(entries[1].result, "refused: rate_limited");
  EXPECT_EQ(entries[1].reason, "budget check");
  EXPECT_EQ(entries[1].collection, "library:family");
}

TEST_F(LibraryRoutesTest, OwnerNamesMergesHidesRemovesFindsForgetsAndDeletes) {
  auto listed = get("/v1/libraries/family/groups");
  ASSERT_EQ(listed->status, 200) << listed->body;
  json groups = json::parse(listed->body)["groups"];
  ASSERT_GE(groups.size(), 2U);
  std::size_t faces = 0;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    faces += groups[i]["face_ids"].size();
    EXPECT_EQ(groups[i]["face_ids"].size(), groups[i]["faces"].get<std::size_t>());
    if (i > 0) {
      EXPECT_LE(groups[i]["faces"].get<int>(), groups[i - 1]["faces"].get<int>()) << "not largest first";
    }
  }
  EXPECT_EQ(faces, family_faces_[0].size() + family_faces_[1].size());

  const std::int64_t g1 = groups[0]["group"], g2 = groups[1]["group"];
  auto named = srv_->post_json("/v1/libraries/family/groups/" + std::to_string(g1) + "/name", {{"name", "<b>Aunt</b>"}});
  ASSERT_EQ(named->status, 200) << named->body;
  EXPECT_EQ(json::parse(get("/v1/libraries/family/groups")->body)["groups"][0]["name"], "<b>Aunt</b>");

  // Find: the woman of sample1 and sample3, both photos; audited with the reason.
  auto found = srv_->post_image("/v1/libraries/family/find", "image", test::face_crop(3, 1, 0.4F), "",
                                {{"reason", "looking for my aunt", "", ""}});
  ASSERT_EQ(found->status, 200) << found->body;
  std::set<std::int64_t> photos;
  const json answer = json::parse(found->body);
  for (const auto& p : answer["photos"]) photos.insert(p["photo_id"].get<std::int64_t>());
  EXPECT_TRUE(photos.count(family_photos_[0]) && photos.count(family_photos_[1]))
      << found->body << " " << family_photos_[0] << "," << family_photos_[1];
  EXPECT_EQ(found->body.find(srv_->dir().string()), std::string::npos) << "a path left the owner's machine";
  AuditFilter f;
  f.operation = "library_find";
  const auto entries = store_->audit_list(f).value();
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back().reason, "looking for my aunt");
  EXPECT_EQ(entries.back().actor, "key:admin");
  EXPECT_EQ(srv_->post_image("/v1/libraries/family/find", "image", test::face_crop(3, 1, 0.4F))->status, 400)
      << "a find without a reason";

  // Hide, and the listing leaves the group out unless ?all=true.
  ASSERT_EQ(srv_->post_json("/v1/libraries/family/groups/" + std::to_string(g2) + "/hide", json::object())->status, 200);
  const auto shown = json::parse(get("/v1/libraries/family/groups")->body)["groups"];
  ASSERT_EQ(shown.size(), groups.size() - 1);
  for (const auto& g : shown) EXPECT_NE(g["group"], g2);
  EXPECT_EQ(json::parse(get("/v1/libraries/family/groups?all=true")->body)["groups"].size(), groups.size());
  ASSERT_EQ(srv_->post_json("/v1/libraries/family/groups/" + std::to_string(g2) + "/hide", {{"hidden", false}})->status, 200);

  // Merge two groups of different photos; two of one photo cannot be one person.
  const auto photos_of = [&](std::size_t i) { return groups[i]["photo_ids"].get<std::set<std::int64_t>>(); };
  std::int64_t a = 0, b = 0, same_photo_a = 0, same_photo_b = 0;
  for (std::size_t i = 2; i < groups.size(); ++i) {
    for (std::size_t j = i + 1; j < groups.size(); ++j) {
      const std::set<std::int64_t> pi = photos_of(i), pj = photos_of(j);
      std::set<std::int64_t> both = pi;
      both.insert(pj.begin(), pj.end());
      const bool disjoint = both.size() == pi.size() + pj.size();
      (disjoint ? a : same_photo_a) = groups[i]["group"];
      (disjoint ? b : same_photo_b) = groups[j]["group"];
    }
  }
  ASSERT_NE(a, 0) << listed->body;
  ASSERT_NE(same_photo_a, 0) << listed->body;
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + std::to_string(same_photo_a) + "/merge",
                            {{"with", same_photo_b}})->status, 400);
  auto merged = srv_->post_json("/v1/libraries/family/groups/" + std::to_string(a) + "/merge", {{"with", b}});
  ASSERT_EQ(merged->status, 200) << merged->body;
  const json after = json::parse(get("/v1/libraries/family/groups")->body)["groups"];
  EXPECT_EQ(after.size(), groups.size() - 1) << "the merge did not join two groups";

  // Remove a face from the named group: it cannot be merged back (the correction holds).
  const std::int64_t lone = groups[0]["face_ids"][0];
  auto removed = srv_->post_json("/v1/libraries/family/faces/" + std::to_string(lone) + "/remove", json::object());
  ASSERT_EQ(removed->status, 200) << removed->body;
  const std::int64_t now = json::parse(removed->body)["group"];
  EXPECT_EQ(group_of(lone), now);
  EXPECT_NE(now, g1);
  EXPECT_EQ(srv_->post_json("/v1/libraries/family/groups/" + std::to_string(now) + "/merge", {{"with", g1}})->status, 400);

  // Forget a group, then delete the library.
  auto forgot = del("/v1/libraries/family/groups/" + std::to_string(g2) + "?reason=she%20asked");
  ASSERT_EQ(forgot->status, 200) << forgot->body;
  EXPECT_GE(json::parse(forgot->body)["faces_forgotten"].get<int>(), 1);
  EXPECT_EQ(del("/v1/libraries/family/groups/" + std::to_string(g2) + "?reason=again")->status, 404);
  auto gone = del("/v1/libraries/family?reason=moving%20out");
  ASSERT_EQ(gone->status, 200) << gone->body;
  EXPECT_EQ(get("/v1/libraries/family/groups")->status, 404);
  EXPECT_FALSE(store_->library().get_library("family").ok());
}

}  // namespace
}  // namespace candor
