// Issue 11 through the server: every face of a probe searched and charged, 1:1 verify
// against a subject, and the outlier refusal at enrollment.
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server_test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using test::base64;
using test::face_crop;
using test::sample;
using test::TestServer;

class SubjectsServerTest : public test::SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    SharedServerTest::SetUpTestSuite();
    srv_->create_collection("door");
    for (auto [subject, face] : {std::pair{"ben", 0}, std::pair{"cleo", 2}}) {
      srv_->grant("door", subject);
      auto e = srv_->post_json("/v1/collections/door/subjects/" + std::string(subject) + "/faces",
                               {{"images", {base64(face_crop(6, face, 0.3f))}}});
      ASSERT_EQ(e->status, 200) << e->body;
    }
  }
};

TEST_F(SubjectsServerTest, EveryFaceIsSearchedAndEachIsOneSearchOfTheBudget) {
  const std::string group = sample(6);
  auto all = srv_->post_json("/v1/collections/door/search", {{"image", base64(group)}, {"reason", "group photo"}});
  ASSERT_EQ(all->status, 200) << all->body;
  const json j = json::parse(all->body);
  ASSERT_GE(j["faces"].size(), 3u) << all->body;
  EXPECT_EQ(j["faces"].size(), j["faces_in_image"]);
  std::set<std::string> named;
  for (const auto& f : j.at("faces")) {
    for (const auto& m : f.at("matches")) named.insert(m.at("subject").get<std::string>());
  }
  EXPECT_EQ(named, (std::set<std::string>{"ben", "cleo"}));
  EXPECT_EQ(j["probe"], j["faces"][0]["probe"]) << "the largest face also at the top level";

  // A key with room for two searches a minute cannot search a photo of three or more faces.
  const std::string key = srv_->create_key(
      {{"name", "two-a-minute"}, {"collections", {"door"}}, {"operations", {"search"}}, {"searches_per_minute", 2}});
  auto crowd = srv_->post_json("/v1/collections/door/search", {{"image", base64(group)}, {"reason", "crowd"}}, key);
  EXPECT_EQ(crowd->status, 429) << crowd->body;
  EXPECT_NE(crowd->body.find("rate_limited"), std::string::npos) << crowd->body;
  auto one = srv_->post_json("/v1/collections/door/search",
                             {{"image", base64(group)}, {"reason", "crowd"}, {"largest_face", true}}, key);
  ASSERT_EQ(one->status, 200) << one->body << " (the refused crowd search must not have been charged)";
  EXPECT_EQ(json::parse(one->body)["faces"].size(), 1u);
}

TEST_F(SubjectsServerTest, VerifyAnswersIsThisTheSubject) {
  auto yes = srv_->post_json("/v1/collections/door/subjects/ben/verify",
                             {{"image", base64(face_crop(6, 0, 0.6f))}, {"reason", "badge 17"}});
  ASSERT_EQ(yes->status, 200) << yes->body;
  EXPECT_TRUE(json::parse(yes->body)["match"].get<bool>()) << yes->body;
  auto no = srv_->post_json("/v1/collections/door/subjects/cleo/verify",
                            {{"image", base64(face_crop(6, 0, 0.6f))}, {"reason", "badge 17"}});
  ASSERT_EQ(no->status, 200) << no->body;
  EXPECT_FALSE(json::parse(no->body)["match"].get<bool>()) << no->body;
  auto unknown = srv_->post_json("/v1/collections/door/subjects/zed/verify",
                                 {{"image", base64(face_crop(6, 0, 0.6f))}, {"reason", "badge 17"}});
  EXPECT_EQ(unknown->status, 404) << unknown->body;
  auto no_reason = srv_->post_json("/v1/collections/door/subjects/ben/verify", {{"image", base64(face_crop(6, 0, 0.6f))}});
  EXPECT_EQ(no_reason->status, 400) << no_reason->body;
}

TEST_F(SubjectsServerTest, AnOutlierPhotoIsRefusedUnlessAllowed) {
  srv_->grant("door", "dana");
  auto first = srv_->post_json("/v1/collections/door/subjects/dana/faces",
                               {{"images", {base64(face_crop(1, 2, 0.3f)), base64(face_crop(1, 2, 0.6f))}}});
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(json::parse(first->body)["enrolled"], 2);
  auto wrong = srv_->post_json("/v1/collections/door/subjects/dana/faces", {{"images", {base64(face_crop(6, 1, 0.3f))}}});
  ASSERT_EQ(wrong->status, 200) << wrong->body;
  EXPECT_EQ(json::parse(wrong->body)["enrolled"], 0) << wrong->body;
  EXPECT_NE(wrong->body.find("similarity"), std::string::npos) << wrong->body;
  auto allowed = srv_->post_json("/v1/collections/door/subjects/dana/faces",
                                 {{"images", {base64(face_crop(6, 1, 0.3f))}}, {"allow_outliers", true}});
  ASSERT_EQ(allowed->status, 200) << allowed->body;
  EXPECT_EQ(json::parse(allowed->body)["enrolled"], 1) << allowed->body;
}

}  // namespace
}  // namespace candor
