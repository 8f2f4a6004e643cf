// Regression tests for the findings of the outside probe of the server (issue 16) that
// concern requests, consent and the audit log; key scoping, metrics, proxies and the
// decoders have their own files. Each test failed before its fix (noted per test).
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "candor/audit.h"
#include "candor/store.h"
#include "server_test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using test::base64;
using test::error_code;
using test::face_crop;
using test::TestServer;

class ProbeTest : public test::SharedServerTest {
 protected:
  static json audit(const std::string& query) {
    auto r = srv_->client().Get(("/v1/audit?limit=10000&" + query).c_str(), srv_->auth());
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body)["entries"];
  }
  static httplib::Result search(const std::string& collection, const std::string& photo, const std::string& reason,
                                const std::string& key = "", const std::string& query = "") {
    return srv_->post_json("/v1/collections/" + collection + "/search" + query,
                           {{"image", base64(photo)}, {"reason", reason}}, key);
  }
};

// #5: consent is checked before any photo is decoded. Before the fix, five photos that
// do not decode for a subject without consent got 200 with five per-image errors: the
// photos were decoded (and faces embedded) before the store saw there was no consent.
TEST_F(ProbeTest, EnrollmentChecksConsentAndCountBeforeDecoding) {
  srv_->create_collection("p5");
  json images = json::array();
  for (int i = 0; i < 5; ++i) images.push_back(base64("not an image " + std::to_string(i)));
  auto r = srv_->post_json("/v1/collections/p5/subjects/nobody/faces", {{"images", images}});
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_EQ(error_code(r), "consent_required");
  const json entries = audit("collection=p5&operation=enroll");
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back()["result"], "refused: consent_required");

  // More photos than one enrollment takes are refused before any is decoded.
  srv_->grant("p5", "somebody");
  json many = json::array();
  for (int i = 0; i < 65; ++i) many.push_back(base64("x"));
  auto too_many = srv_->post_json("/v1/collections/p5/subjects/somebody/faces", {{"images", many}});
  EXPECT_EQ(too_many->status, 400) << too_many->body;
  EXPECT_NE(too_many->body.find("at most 64"), std::string::npos) << too_many->body;
}

// #6, #11: the reason is validated before the budget and before inference; a refused
// search is recorded with its real cause and never with an over-long text. Before the
// fix a 1 MB reason from a key whose budget was spent was stored whole, as
// "refused: invalid_argument"; and an over-long reason ran the whole search uncharged.
TEST_F(ProbeTest, ReasonsAreBoundedBeforeAnyWorkAndRefusalsKeepTheirCause) {
  srv_->create_collection("p6");
  const std::string key = srv_->create_key(
      {{"name", "p6-key"}, {"collections", {"p6"}}, {"operations", {"search"}}, {"searches_per_minute", 1}});
  const std::string probe = face_crop(4, 0, 0.3f);
  auto longer = search("p6", probe, std::string(kMaxReasonBytes + 1, 'r'), key);
  EXPECT_EQ(longer->status, 400) << longer->body;
  auto ok = search("p6", probe, "door 2", key);
  EXPECT_EQ(ok->status, 200) << ok->body << " (the over-long reason must not have run or been charged)";
  auto spent = search("p6", probe, "door 2", key);
  EXPECT_EQ(spent->status, 429) << spent->body;
  auto huge = search("p6", probe, std::string(1'000'000, 'r'), key);
  EXPECT_EQ(huge->status, 400) << huge->body << " (validated before the budget)";
  const json entries = audit("collection=p6&operation=search");
  ASSERT_EQ(entries.size(), 2u) << entries.dump();
  EXPECT_EQ(entries[0]["result"], "ok");
  EXPECT_EQ(entries[1]["result"], "refused: rate_limited");
  for (const auto& e : audit("")) EXPECT_LE(e["reason"].get<std::string>().size(), kMaxReasonBytes);
}

// #7, #8: consent expiring at T stops identification at T, before any retention run;
// the expiry is read with its time zone. Before the fix the subject still matched
// after T, and "+02:00" was stored as if it were UTC (two hours too late). The server's
// clock is the real one plus an offset the test moves, so no step races the expiry.
TEST(ProbeClock, ConsentExpiryTakesEffectAtItsInstantInItsTimeZone) {
  auto offset = std::make_shared<std::atomic<std::int64_t>>(0);
  TestServer srv([offset](ServerOptions& o) {
    o.clock = [offset] { return now_ms() + std::chrono::milliseconds(offset->load()); };
  });
  srv.create_collection("p7");
  const auto expiry = std::chrono::time_point_cast<std::chrono::milliseconds>(now_ms() + std::chrono::minutes(10));
  // The same instant written two hours ahead, with its offset.
  const std::string zulu = format_time(expiry);
  std::string local = format_time(expiry + std::chrono::hours(2));
  local = local.substr(0, local.size() - 1) + "+02:00";
  auto g = srv.post_json("/v1/collections/p7/consents", {{"subject", "temp-worker"},
                                                         {"evidence_sha256", std::string(64, 'b')},
                                                         {"collected_by", "test"},
                                                         {"expires_at", local}});
  ASSERT_EQ(g->status, 201) << g->body;
  EXPECT_EQ(json::parse(g->body)["expires_at"], zulu);
  auto e = srv.post_json("/v1/collections/p7/subjects/temp-worker/faces", {{"images", {base64(face_crop(6, 0, 0.3f))}}});
  ASSERT_EQ(e->status, 200) << e->body;
  const auto search = [&] {
    return srv.post_json("/v1/collections/p7/search", {{"image", base64(face_crop(6, 0, 0.6f))}, {"reason", "shift check"}});
  };
  auto before = search();
  ASSERT_EQ(before->status, 200) << before->body;
  ASSERT_EQ(json::parse(before->body)["matches"].size(), 1u) << before->body;
  // To the instant of expiry: the retention run has not happened, the face is still stored.
  *offset = (expiry - now_ms()).count();
  auto after = search();
  ASSERT_EQ(after->status, 200) << after->body;
  EXPECT_TRUE(json::parse(after->body)["matches"].empty()) << after->body;
  auto info = srv.client().Get("/v1/collections/p7", srv.auth());
  EXPECT_EQ(json::parse(info->body)["faces"], 1) << "identification stopped before retention deleted anything";
  for (const char* bad : {"2030-01-01T00:00:00Zjunk", "2030-01-01T00:00:00"}) {
    auto r = srv.post_json("/v1/collections/p7/consents", {{"subject", "x"},
                                                           {"evidence_sha256", std::string(64, 'b')},
                                                           {"collected_by", "test"},
                                                           {"expires_at", bad}});
    EXPECT_EQ(r->status, 400) << bad << ": " << r->body;
  }
}

// #10: a search answers who matched. Before the fix a search-only key with top=100 and
// a stranger's photo listed every enrolled subject with a similarity.
TEST_F(ProbeTest, SearchesNameOnlyMatchesUnlessTheKeyMayAskForCandidates) {
  srv_->create_collection("p10");
  for (auto [subject, face] : {std::pair{"ann", 0}, std::pair{"bo", 1}}) {
    srv_->grant("p10", subject);
    auto e = srv_->post_json("/v1/collections/p10/subjects/" + std::string(subject) + "/faces",
                             {{"images", {base64(face_crop(6, face, 0.3f))}}});
    ASSERT_EQ(e->status, 200) << e->body;
  }
  const std::string searcher =
      srv_->create_key({{"name", "p10-search"}, {"collections", {"p10"}}, {"operations", {"search"}}});
  const std::string stranger = face_crop(6, 2, 0.3f);
  auto r = search("p10", stranger, "lobby", searcher, "?top=100");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(json::parse(r->body)["matches"].empty()) << r->body;
  auto denied = search("p10", stranger, "lobby", searcher, "?top=100&candidates=true");
  EXPECT_EQ(denied->status, 403) << denied->body;
  const std::string investigator = srv_->create_key(
      {{"name", "p10-candidates"}, {"collections", {"p10"}}, {"operations", {"search", "candidates"}}});
  auto c = search("p10", stranger, "lobby", investigator, "?top=100&candidates=true");
  ASSERT_EQ(c->status, 200) << c->body;
  const json matches = json::parse(c->body)["matches"];
  ASSERT_EQ(matches.size(), 2u) << c->body;
  for (const auto& m : matches) EXPECT_FALSE(m["match"].get<bool>());
  // The audit's subject index names only matches: neither subject was matched.
  EXPECT_TRUE(audit("collection=p10&operation=search&subject=ann").empty());
  const json searches = audit("collection=p10&operation=search");
  ASSERT_EQ(searches.size(), 2u);
  EXPECT_EQ(searches[1]["details"]["candidates"], true);
  // A match still names its subject.
  auto hit = search("p10", face_crop(6, 0, 0.6f), "lobby", searcher);
  ASSERT_EQ(hit->status, 200) << hit->body;
  EXPECT_EQ(json::parse(hit->body)["matches"][0]["subject"], "ann");
  EXPECT_EQ(audit("collection=p10&operation=search&subject=ann").size(), 1u);
}

// #13: before the fix, a consent for "a/b" was granted (201) and could then be neither
// revoked, erased nor exported.
TEST_F(ProbeTest, SubjectsTheRoutesCannotAddressAreRefused) {
  srv_->create_collection("p13");
  for (const char* bad : {"a/b", ".", ".."}) {
    auto r = srv_->post_json("/v1/collections/p13/consents",
                             {{"subject", bad}, {"evidence_sha256", std::string(64, 'a')}, {"collected_by", "t"}});
    EXPECT_EQ(r->status, 400) << bad << ": " << r->body;
  }
  srv_->grant("p13", "a.b c");
  auto revoked = srv_->client().Delete("/v1/collections/p13/consents/a.b%20c", srv_->auth());
  EXPECT_EQ(revoked->status, 200) << revoked->body;
}

// #14: JSON is read as JSON, strictly. Before the fix: "\u00000" stood for the first long
// string (a compare of a photo with itself), duplicate keys were last-wins, true and 1.9
// were integers, an unknown operating point was 404 and text/plain JSON was accepted.
TEST_F(ProbeTest, JsonIsReadStrictly) {
  const std::string photo = base64(face_crop(6, 0, 0.3f));
  auto marker = srv_->post_json("/v1/compare", {{"a", photo}, {"b", std::string("\0" "0", 2)}});
  EXPECT_EQ(marker->status, 400) << marker->body;
  auto dup = srv_->client().Post("/v1/collections", srv_->auth(),
                                 R"({"name":"p14","purpose":"door access","purpose":"marketing"})", "application/json");
  EXPECT_EQ(dup->status, 400) << dup->body;
  for (const json& days : {json(true), json(30.5), json("30")}) {
    auto r = srv_->post_json("/v1/collections", {{"name", "p14"}, {"purpose", "door"}, {"retention_days", days}});
    EXPECT_EQ(r->status, 400) << days.dump() << ": " << r->body;
  }
  auto point = srv_->post_json("/v1/collections", {{"name", "p14"}, {"purpose", "door"}, {"operating_point", "fmr-1e-9"}});
  EXPECT_EQ(point->status, 400) << point->body;
  auto plain = srv_->client().Post("/v1/collections", srv_->auth(), R"({"name":"p14","purpose":"door"})", "text/plain");
  EXPECT_EQ(plain->status, 415) << plain->body;
  auto ok = srv_->client().Post("/v1/collections", srv_->auth(), R"({"name":"p14","purpose":"door"})",
                                "Application/JSON; charset=utf-8");
  EXPECT_EQ(ok->status, 201) << ok->body;
}

// The audit chain spans every collection: before the fix a key scoped to one collection
// read the whole log's entry count, head hash and issues from /v1/audit/verify.
TEST_F(ProbeTest, OnlyAKeyForEveryCollectionVerifiesTheWholeChain) {
  srv_->create_collection("pverify");
  const std::string scoped =
      srv_->create_key({{"name", "pverify-audit"}, {"collections", {"pverify"}}, {"operations", {"audit"}}});
  auto denied = srv_->client().Get("/v1/audit/verify", srv_->auth(scoped));
  EXPECT_EQ(denied->status, 403) << denied->body;
  EXPECT_EQ(denied->body.find("head_hash"), std::string::npos);
  auto own = srv_->client().Get("/v1/audit?collection=pverify", srv_->auth(scoped));
  EXPECT_EQ(own->status, 200) << own->body;
  auto full = srv_->client().Get("/v1/audit/verify", srv_->auth());
  ASSERT_EQ(full->status, 200) << full->body;
  EXPECT_TRUE(json::parse(full->body)["intact"].get<bool>());
}

// The subjects of a collection are listed from the store's counts with their consent
// state; no template is decrypted (it once decrypted every one under the store's lock).
TEST_F(ProbeTest, SubjectsListShowsFacesAndConsent) {
  srv_->create_collection("psub");
  srv_->grant("psub", "ann");
  auto e = srv_->post_json("/v1/collections/psub/subjects/ann/faces", {{"images", {base64(face_crop(6, 0, 0.3f))}}});
  ASSERT_EQ(e->status, 200) << e->body;
  srv_->grant("psub", "bo");
  auto r = srv_->client().Get("/v1/collections/psub/subjects", srv_->auth());
  ASSERT_EQ(r->status, 200) << r->body;
  const json list = json::parse(r->body)["subjects"];
  ASSERT_EQ(list.size(), 2u) << r->body;
  EXPECT_EQ(list[0]["subject"], "ann");
  EXPECT_EQ(list[0]["faces"], 1);
  EXPECT_EQ(list[0]["consent_active"], true);
  EXPECT_EQ(list[1]["faces"], 0);
}

}  // namespace
}  // namespace candor
