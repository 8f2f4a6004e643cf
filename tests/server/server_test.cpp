// The REST service end to end: each fixture starts a Server in-process on an
// ephemeral loopback port (sharing one Engine) and talks to it over HTTP
// (server_test_util.h). The attacker's view is in attack_test.cpp.
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/server.h"
#include "server_test_util.h"

namespace candor {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using test::base64;
using test::error_code;
using test::face_crop;
using test::jpeg;
using test::read_all;
using test::sample;
using test::TestServer;

class ServerTest : public test::SharedServerTest {};

TEST_F(ServerTest, HealthAndReadiness) {
  auto h = srv_->client().Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto r = srv_->client().Get("/readyz");
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, DetectFindsThreeFacesMultipartAndBase64) {
  auto r = srv_->post_image("/v1/detect", "image", sample(1));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = json::parse(r->body);
  EXPECT_EQ(j["faces"].size(), 3u);
  EXPECT_GT(j["width"].get<int>(), 0);
  EXPECT_TRUE(j["faces"][0].contains("box"));
  EXPECT_FALSE(j["faces"][0].contains("embedding"));
  auto b = srv_->post_json("/v1/detect", {{"image", base64(sample(1))}});
  ASSERT_EQ(b->status, 200) << b->body;
  EXPECT_EQ(json::parse(b->body)["faces"].size(), 3u);
}

TEST_F(ServerTest, CompareSameFaceMatchesDifferentFaceDoesNot) {
  httplib::MultipartFormDataItems same = {{"a", face_crop(1, 0, 0.3f), "a.jpg", "image/jpeg"},
                                          {"b", face_crop(1, 0, 0.6f), "b.jpg", "image/jpeg"}};
  auto r = srv_->client().Post("/v1/compare", srv_->auth(), same);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = json::parse(r->body);
  EXPECT_TRUE(j["match"].get<bool>()) << r->body;
  EXPECT_EQ(j["operating_point"]["name"], "fmr-1e-3");
  EXPECT_TRUE(j["faces"].contains("a"));
  auto d = srv_->post_json("/v1/compare", {{"a", base64(face_crop(1, 0, 0.3f))}, {"b", base64(face_crop(1, 2, 0.3f))}});
  ASSERT_EQ(d->status, 200) << d->body;
  EXPECT_FALSE(json::parse(d->body)["match"].get<bool>()) << d->body;
}

// Exactly what a 4-decimal rounding gives: no float expansion such as 0.41280001401901245.
bool printed_to_4_decimals(double v) { return std::round(v * 10000.0) / 10000.0 == v; }

// Issue 17 (#4): a consent for another purpose than the collection's is refused at grant,
// naming both purposes (it used to be recorded and shown as valid, and enrollment then
// failed with a generic message); one evidence hash for several subjects gets a warning.
TEST_F(ServerTest, ConsentForAnotherPurposeIsRefusedNamingBothAndReusedEvidenceWarns) {
  srv_->create_collection("purposed");  // purpose "door access"
  const json form = {{"subject", "ana"}, {"evidence_sha256", std::string(64, 'b')}, {"collected_by", "desk"}};
  json wrong = form;
  wrong["purpose"] = "Marketing analytics";
  auto r = srv_->post_json("/v1/collections/purposed/consents", wrong);
  ASSERT_EQ(r->status, 400) << r->body;
  // The body read as text: the message names both purposes.
  EXPECT_NE(r->body.find("\"code\":\"invalid_argument\""), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("'Marketing analytics'"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("('door access')"), std::string::npos) << r->body;
  auto listed = srv_->client().Get("/v1/collections/purposed/consents", srv_->auth());
  EXPECT_TRUE(json::parse(listed->body)["consents"].empty()) << listed->body;

  auto ok = srv_->post_json("/v1/collections/purposed/consents", form);
  ASSERT_EQ(ok->status, 201) << ok->body;
  EXPECT_EQ(json::parse(ok->body)["purpose"], "door access") << "no purpose: the collection's";
  EXPECT_FALSE(json::parse(ok->body).contains("warnings")) << ok->body;
  json again = form;
  again["subject"] = "ben";
  auto reused = srv_->post_json("/v1/collections/purposed/consents", again);
  ASSERT_EQ(reused->status, 201) << reused->body;
  const json j = json::parse(reused->body);
  EXPECT_EQ(j["evidence_shared_with"], json::array({"ana"})) << reused->body;
  ASSERT_EQ(j["warnings"].size(), 1u) << reused->body;
  EXPECT_NE(j["warnings"][0].get<std::string>().find("ana"), std::string::npos);
}

// Issue 17 (#5): a key learns its own name and scope, so the console can hide what it may not do.
TEST_F(ServerTest, AKeyReadsItsOwnScope) {
  const std::string key = srv_->create_key(
      {{"name", "gate-only"}, {"collections", {"gate"}}, {"operations", {"search"}}, {"searches_per_minute", 5}});
  auto r = srv_->client().Get("/v1/keys/self", srv_->auth(key));
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["name"], "gate-only");
  EXPECT_EQ(j["operations"], json::array({"search"}));
  EXPECT_EQ(j["collections"], json::array({"gate"}));
  EXPECT_EQ(j["searches_per_minute"], 5);
  EXPECT_FALSE(j.contains("hash")) << r->body;
  EXPECT_EQ(srv_->client().Get("/v1/keys/self")->status, 401);
  EXPECT_EQ(srv_->client().Get("/v1/keys", srv_->auth(key))->status, 403) << "the list of keys stays admin";
}

// Issue 17 (#1, #2): newest first, by key and time, paging back; a subject filter lists only
// the searches she was matched in, never one where she was merely enrolled.
TEST_F(ServerTest, AuditNewestFirstFilteredByKeyTimeAndMatchedSubject) {
  srv_->create_collection("lobby");
  srv_->grant("lobby", "serena");
  auto e = srv_->post_json("/v1/collections/lobby/subjects/serena/faces", {{"images", {base64(face_crop(6, 0, 0.3f))}}});
  ASSERT_EQ(e->status, 200) << e->body;
  const std::string key = srv_->create_key(
      {{"name", "lobby-desk"}, {"collections", {"lobby"}}, {"operations", {"search", "audit"}}});
  auto stranger = srv_->post_image("/v1/collections/lobby/search", "image", face_crop(1, 2, 0.3f), key,
                                   {{"reason", "SEC-1043", "", ""}});
  ASSERT_EQ(stranger->status, 200) << stranger->body;
  ASSERT_TRUE(json::parse(stranger->body)["matches"].empty()) << stranger->body;
  auto her = srv_->post_image("/v1/collections/lobby/search", "image", face_crop(6, 0, 0.6f), key,
                              {{"reason", "SEC-1044", "", ""}});
  ASSERT_EQ(her->status, 200) << her->body;
  ASSERT_FALSE(json::parse(her->body)["matches"].empty()) << her->body;

  const auto entries = [&](const std::string& query) {
    auto r = srv_->client().Get(("/v1/audit?collection=lobby&" + query).c_str(), srv_->auth());
    EXPECT_EQ(r->status, 200) << query << ": " << r->body;
    return json::parse(r->body)["entries"];
  };
  const json newest = entries("order=newest&limit=2");
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[0]["reason"], "SEC-1044");
  EXPECT_EQ(newest[1]["reason"], "SEC-1043");
  EXPECT_GT(newest[0]["seq"], newest[1]["seq"]);
  const json before = entries("order=newest&limit=1&before_seq=" + std::to_string(newest[1]["seq"].get<std::int64_t>()));
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0]["operation"], "enroll");
  const json by_key = entries("key=lobby-desk");
  ASSERT_EQ(by_key.size(), 2u);
  for (const auto& x : by_key) EXPECT_EQ(x["actor"], "key:lobby-desk");
  // The stranger's search: no subject named, its details say so.
  EXPECT_TRUE(by_key[0]["subjects"].empty()) << by_key[0].dump();
  EXPECT_TRUE(by_key[0]["details"]["results"].empty()) << by_key[0].dump();
  const json searches = entries("operation=search&subject=serena");
  ASSERT_EQ(searches.size(), 1u) << searches.dump();
  EXPECT_EQ(searches[0]["reason"], "SEC-1044");
  EXPECT_TRUE(entries("since=2999-01-01").empty());
  EXPECT_EQ(entries("until=2999-01-01").size(), entries("").size());
  for (const char* bad : {"order=sideways", "since=yesterday"}) {
    auto r = srv_->client().Get((std::string("/v1/audit?") + bad).c_str(), srv_->auth());
    EXPECT_EQ(r->status, 400) << bad;
  }
}

TEST_F(ServerTest, ThresholdsArePrintedTo4DecimalsLikeSimilarities) {
  auto r = srv_->post_json("/v1/compare", {{"a", base64(face_crop(1, 0, 0.3f))}, {"b", base64(face_crop(1, 2, 0.3f))}});
  ASSERT_EQ(r->status, 200) << r->body;
  const auto j = json::parse(r->body);
  EXPECT_TRUE(printed_to_4_decimals(j["operating_point"]["threshold"].get<double>())) << r->body;
  EXPECT_TRUE(printed_to_4_decimals(j["similarity"].get<double>())) << r->body;
  EXPECT_EQ(j["faces_in_image"]["a"], 1) << "the compare JSON of the CLI and the server is one shape";
  srv_->create_collection("rounded");
  auto c = srv_->client().Get("/v1/collections/rounded", srv_->auth());
  ASSERT_EQ(c->status, 200) << c->body;
  EXPECT_TRUE(printed_to_4_decimals(json::parse(c->body)["match_threshold"].get<double>())) << c->body;
}

TEST_F(ServerTest, DetectGivesThe68LandmarksOnRequest) {
  auto plain = srv_->post_image("/v1/detect", "image", sample(1));
  ASSERT_EQ(plain->status, 200) << plain->body;
  EXPECT_FALSE(json::parse(plain->body)["faces"][0].contains("landmarks68")) << "5 points by default";
  auto r = srv_->post_image("/v1/detect?landmarks=68", "image", sample(1));
  ASSERT_EQ(r->status, 200) << r->body;
  const auto faces = json::parse(r->body)["faces"];
  ASSERT_EQ(faces.size(), 3u);
  for (const auto& f : faces) {
    ASSERT_EQ(f["landmarks68"].size(), 68u) << f.dump();
    EXPECT_EQ(f["landmarks68"][30].size(), 2u);
    EXPECT_TRUE(f.contains("landmarks")) << "the 5 points stay";
  }
  for (const char* bad : {"7", "68x", "0"}) {
    auto b = srv_->post_image(std::string("/v1/detect?landmarks=") + bad, "image", sample(1));
    EXPECT_EQ(b->status, 400) << bad;
    EXPECT_EQ(error_code(b), "invalid_argument") << b->body;
  }
}

TEST_F(ServerTest, FullFlowConsentEnrollSearchRevoke) {
  const std::string subject = "subject-zq7731";
  srv_->create_collection("flow");
  srv_->grant("flow", subject);
  auto e = srv_->client().Post("/v1/collections/flow/subjects/" + subject + "/faces", srv_->auth(),
                               httplib::MultipartFormDataItems{{"images", face_crop(6, 0, 0.3f), "e1.jpg", "image/jpeg"}});
  ASSERT_EQ(e->status, 200) << e->body;
  EXPECT_EQ(json::parse(e->body)["enrolled"], 1) << e->body;
  // A distractor, so the search ranks.
  srv_->grant("flow", "other-subject");
  auto e2 = srv_->post_json("/v1/collections/flow/subjects/other-subject/faces", {{"images", {base64(face_crop(6, 1, 0.3f))}}});
  ASSERT_EQ(e2->status, 200) << e2->body;

  auto search = [&] {
    return srv_->post_image("/v1/collections/flow/search?top=3", "image", face_crop(6, 0, 0.6f), "",
                            {{"reason", "test: door event 17", "", ""}});
  };
  auto s = search();
  ASSERT_EQ(s->status, 200) << s->body;
  auto j = json::parse(s->body);
  ASSERT_FALSE(j["matches"].empty());
  EXPECT_EQ(j["matches"][0]["subject"], subject);
  EXPECT_TRUE(j["matches"][0]["match"].get<bool>());

  // At an FPIR for the collection's size (two subjects: FMR 1e-5) each subject's threshold
  // is the strict point's; an FPIR outside (0, 1) is a bad request that searches nothing.
  auto at_fpir = srv_->post_image("/v1/collections/flow/search?top=3&candidates=true&fpir=2e-5", "image",
                                  face_crop(6, 0, 0.6f), "", {{"reason", "test: door event 18", "", ""}});
  ASSERT_EQ(at_fpir->status, 200) << at_fpir->body;
  const json strict = json::parse(at_fpir->body);
  ASSERT_FALSE(strict["matches"].empty());
  EXPECT_GT(strict["matches"][0]["threshold"].get<double>(), j["matches"][0]["threshold"].get<double>() + 0.05)
      << strict.dump();
  for (const char* bad : {"0", "1", "abc", "0.5x"}) {
    auto b = srv_->post_image(std::string("/v1/collections/flow/search?fpir=") + bad, "image", face_crop(6, 0, 0.6f), "",
                              {{"reason", "test: door event 19", "", ""}});
    EXPECT_EQ(b->status, 400) << bad;
    EXPECT_EQ(error_code(b), "invalid_argument") << b->body;
  }
  auto as_json = srv_->post_json("/v1/collections/flow/search",
                                 {{"image", base64(face_crop(6, 0, 0.6f))}, {"reason", "test: door event 20"}, {"fpir", 2e-5}});
  ASSERT_EQ(as_json->status, 200) << as_json->body;
  EXPECT_DOUBLE_EQ(json::parse(as_json->body)["threshold"].get<double>(), strict["threshold"].get<double>());

  auto info = srv_->client().Get("/v1/collections/flow", srv_->auth());
  EXPECT_EQ(json::parse(info->body)["faces"], 2);

  auto rv = srv_->client().Delete("/v1/collections/flow/consents/" + subject, srv_->auth());
  ASSERT_EQ(rv->status, 200) << rv->body;
  EXPECT_EQ(json::parse(rv->body)["deleted_faces"], 1);
  auto s2 = search();
  ASSERT_EQ(s2->status, 200) << s2->body;
  const json after = json::parse(s2->body);
  for (const auto& m : after["matches"]) EXPECT_NE(m["subject"], subject);

  // The search was audited with its reason.
  auto audit = srv_->client().Get("/v1/audit?collection=flow&operation=search", srv_->auth());
  ASSERT_EQ(audit->status, 200) << audit->body;
  EXPECT_GE(json::parse(audit->body)["entries"].size(), 2u);
  // Nothing identifying reached the log.
  const std::string log = srv_->log();
  EXPECT_EQ(log.find(subject), std::string::npos);
  EXPECT_EQ(log.find(srv_->admin_key), std::string::npos);
  EXPECT_NE(log.find("/v1/collections/{c}/search"), std::string::npos);
}

TEST_F(ServerTest, EnrollWithoutConsentIs409) {
  srv_->create_collection("noconsent");
  auto r = srv_->post_image("/v1/collections/noconsent/subjects/nobody/faces", "images", face_crop(3, 0, 0.3f));
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_EQ(error_code(r), "consent_required");
}

TEST_F(ServerTest, MissingOrWrongKeyIs401) {
  auto none = srv_->client().Get("/v1/collections");
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(error_code(none), "unauthenticated");
  auto wrong = srv_->client().Get("/v1/collections", {{"X-API-Key", "cnd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}});
  EXPECT_EQ(wrong->status, 401);
  auto bearer = srv_->client().Get("/v1/collections", {{"Authorization", "Bearer " + srv_->admin_key}});
  EXPECT_EQ(bearer->status, 200);
}

TEST_F(ServerTest, ScopedKeySeesOnlyItsCollectionsAndOperations) {
  srv_->create_collection("scope_a");
  srv_->create_collection("scope_b");
  const std::string key = srv_->create_key(
      {{"name", "scoped"}, {"collections", {"scope_a"}}, {"operations", {"consents", "search"}}});
  auto a = srv_->client().Get("/v1/collections/scope_a/consents", srv_->auth(key));
  EXPECT_EQ(a->status, 200) << a->body;
  auto b = srv_->client().Get("/v1/collections/scope_b/consents", srv_->auth(key));
  auto c = srv_->client().Get("/v1/collections/scope_c/consents", srv_->auth(key));
  EXPECT_EQ(b->status, 404);
  EXPECT_EQ(c->status, 404);
  EXPECT_EQ(b->body, c->body);
  auto bi = srv_->client().Get("/v1/collections/scope_b", srv_->auth(key));
  auto ci = srv_->client().Get("/v1/collections/scope_c", srv_->auth(key));
  EXPECT_EQ(bi->status, 404);
  EXPECT_EQ(bi->body, ci->body);
  auto list = srv_->client().Get("/v1/collections", srv_->auth(key));
  ASSERT_EQ(list->status, 200);
  ASSERT_EQ(json::parse(list->body)["collections"].size(), 1u);
  // No detect scope: 403.
  auto d = srv_->post_image("/v1/detect", "image", sample(1), key);
  EXPECT_EQ(d->status, 403);
  EXPECT_EQ(error_code(d), "permission_denied");
  auto keys = srv_->client().Get("/v1/keys", srv_->auth(key));
  EXPECT_EQ(keys->status, 403);
  // Key listings never include secrets.
  auto all = srv_->client().Get("/v1/keys", srv_->auth());
  ASSERT_EQ(all->status, 200);
  EXPECT_EQ(all->body.find(key), std::string::npos);
  EXPECT_EQ(all->body.find("cnd_"), std::string::npos);
}

TEST_F(ServerTest, SearchBudgetExceededIs429AndAudited) {
  srv_->create_collection("budget");
  const std::string key = srv_->create_key(
      {{"name", "budgeted"}, {"collections", {"budget"}}, {"operations", {"search", "audit"}}, {"searches_per_minute", 2}});
  const std::string probe = face_crop(4, 0, 0.3f);
  httplib::MultipartFormDataItems reason = {{"reason", "budget test", "", ""}};
  for (int i = 0; i < 2; ++i) {
    auto r = srv_->post_image("/v1/collections/budget/search", "image", probe, key, reason);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  auto refused = srv_->post_image("/v1/collections/budget/search", "image", probe, key, reason);
  EXPECT_EQ(refused->status, 429) << refused->body;
  EXPECT_EQ(error_code(refused), "rate_limited");
  EXPECT_TRUE(refused->has_header("Retry-After"));
  auto audit = srv_->client().Get("/v1/audit?operation=search", srv_->auth(key));
  ASSERT_EQ(audit->status, 200) << audit->body;
  bool found = false;
  const json entries = json::parse(audit->body)["entries"];
  for (const auto& e : entries) {
    if (e["result"] == "refused: rate_limited" && e["actor"] == "key:budgeted") found = true;
  }
  EXPECT_TRUE(found) << audit->body;
  auto metrics = srv_->client().Get("/metrics");
  EXPECT_NE(metrics->body.find("candor_search_refused_total{reason=\"rate_limited\"} 1"), std::string::npos);
}

TEST_F(ServerTest, OversizedBodyIs413) {
  const std::string big(5u << 20, 'x');
  auto r = srv_->client().Post("/v1/detect", srv_->auth(), big, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(error_code(r), "image_too_large") << r->body;
}

TEST_F(ServerTest, MalformedJsonIs400) {
  auto r = srv_->client().Post("/v1/collections", srv_->auth(), "{\"name\": ", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_code(r), "invalid_argument");
  auto d = srv_->client().Post("/v1/detect", srv_->auth(), "{not json", "application/json");
  EXPECT_EQ(d->status, 400);
  EXPECT_EQ(error_code(d), "invalid_argument");
}

// JSON bodies are parsed once per request with long base64 strings kept out of the
// JSON lexer (http_util.cpp): every spelling a client may use still means the same image.
TEST_F(ServerTest, Base64ImagesInEverySpellingDecodeTheSame) {
  const std::string img = sample(1);
  const std::string b64 = base64(img);
  std::string url_safe = b64, unpadded = b64, wrapped, escaped;
  std::replace(url_safe.begin(), url_safe.end(), '+', '-');
  std::replace(url_safe.begin(), url_safe.end(), '/', '_');
  unpadded.erase(unpadded.find_last_not_of('=') + 1);
  for (std::size_t i = 0; i < b64.size(); i += 76) wrapped += b64.substr(i, 76) + "\\n";  // JSON-escaped newlines
  for (char ch : b64) escaped += ch == '/' ? std::string("\\/") : std::string(1, ch);   // "\/" is legal JSON
  const std::vector<std::string> bodies = {
      json({{"image", b64}}).dump(), json({{"image", url_safe}}).dump(), json({{"image", unpadded}}).dump(),
      json({{"image", "data:image/jpeg;base64," + b64}}).dump(), "{\"image\": \"" + wrapped + "\"}",
      "{\"image\":\"" + escaped + "\"}", "  {\"pad\": \"" + std::string(3000, 'p') + "\", \"image\": \"" + b64 + "\"}"};
  for (const auto& body : bodies) {
    auto r = srv_->client().Post("/v1/detect", srv_->auth(), body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << body.substr(0, 80) << " -> " << r->body;
    if (r->status == 200) {
      EXPECT_EQ(json::parse(r->body)["faces"].size(), 3u);
    }
  }
  // Not base64, a lone trailing digit, a truncated document, a non-object: 400, not a crash.
  const std::vector<std::string> bad = {json({{"image", b64 + "*"}}).dump(), json({{"image", b64.substr(0, 1025) + "A"}}).dump(),
                                        "{\"image\": \"" + b64, "[\"" + b64 + "\"]", json({{"image", 5}}).dump(),
                                        "{\"image\": \"" + b64 + "\", }"};
  for (const auto& body : bad) {
    auto r = srv_->client().Post("/v1/detect", srv_->auth(), body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body.substr(0, 60) << "..." << body.substr(body.size() - 20) << " -> " << r->body;
  }
}

// A long search reason (kept out of the JSON lexer like an image) arrives whole in the audit log.
TEST_F(ServerTest, LongJsonStringFieldsArriveWhole) {
  srv_->create_collection("longreason");
  const std::string reason = "investigation 4471: " + std::string(1004, 'r');  // 1024 bytes, the most allowed
  auto s = srv_->post_json("/v1/collections/longreason/search", {{"image", base64(face_crop(4, 0, 0.3f))}, {"reason", reason}});
  ASSERT_EQ(s->status, 200) << s->body.substr(0, 300);
  auto audit = srv_->client().Get("/v1/audit?collection=longreason&operation=search", srv_->auth());
  ASSERT_EQ(audit->status, 200);
  const json entries = json::parse(audit->body)["entries"];
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back()["reason"], reason);
}

TEST_F(ServerTest, CorruptImageIs400) {
  std::string corrupt = sample(1).substr(0, 600);  // a JPEG header, then nothing
  corrupt += std::string(400, '\x5a');
  auto r = srv_->post_image("/v1/detect", "image", corrupt);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(error_code(r), "image_corrupt") << r->body;
}

TEST_F(ServerTest, ImageWithoutFaceIs422) {
  const std::string blank = jpeg(cv::Mat(240, 320, CV_8UC3, cv::Scalar(128, 128, 128)));
  httplib::MultipartFormDataItems items = {{"a", blank, "a.jpg", "image/jpeg"}, {"b", sample(1), "b.jpg", "image/jpeg"}};
  auto r = srv_->client().Post("/v1/compare", srv_->auth(), items);
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_EQ(error_code(r), "no_face");
}

TEST_F(ServerTest, PathTraversalNeverServesFiles) {
  for (const char* path : {"/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                           "/../secret.txt", "/%2e%2e/secret.txt", "/.%2e/secret.txt", "/index.html/../../secret.txt"}) {
    auto r = srv_->client().Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_TRUE(r->status == 404 || r->status == 400) << path << " -> " << r->status;
    EXPECT_EQ(r->body.find("root:"), std::string::npos) << path;
    EXPECT_EQ(r->body.find("TOP-SECRET"), std::string::npos) << path;
  }
  auto index = srv_->client().Get("/");
  ASSERT_EQ(index->status, 200);
  EXPECT_NE(index->body.find("console"), std::string::npos);
  EXPECT_EQ(index->get_header_value("Content-Type").rfind("text/html", 0), 0u);
}

TEST_F(ServerTest, SecurityHeadersOnEveryResponse) {
  const std::string csp =
      "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; "
      "frame-ancestors 'none'";
  for (const char* path : {"/", "/healthz", "/nope.js", "/v1/collections", "/v1/nope"}) {
    auto r = srv_->client().Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get_header_value("Content-Security-Policy"), csp) << path;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff") << path;
  }
  auto big = srv_->client().Post("/v1/detect", srv_->auth(), std::string(5u << 20, 'x'), "image/jpeg");
  EXPECT_EQ(big->get_header_value("X-Content-Type-Options"), "nosniff");
}

TEST_F(ServerTest, MetricsCountRequestsByRouteTemplate) {
  srv_->client().Get("/healthz");
  auto m = srv_->client().Get("/metrics", srv_->auth());  // the collection series need a key (issue 16)
  ASSERT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("candor_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"}"),
            std::string::npos);
  EXPECT_NE(m->body.find("candor_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"}"),
            std::string::npos);
  EXPECT_NE(m->body.find("candor_inference_queue_depth"), std::string::npos);
  EXPECT_NE(m->body.find("candor_search_refused_total"), std::string::npos);
  EXPECT_NE(m->body.find("candor_collection_templates"), std::string::npos);
}

TEST_F(ServerTest, OpenApiListsExactlyTheRegisteredRoutes) {
  auto r = srv_->client().Get("/v1/openapi.json");
  ASSERT_EQ(r->status, 200);
  auto doc = json::parse(r->body);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  std::set<std::pair<std::string, std::string>> documented, registered;
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters") continue;
      std::string m = method;
      std::transform(m.begin(), m.end(), m.begin(), ::toupper);
      documented.insert({m, path});
    }
  }
  for (const auto& route : srv_->server().routes()) registered.insert({route.method, route.path});
  for (const auto& r2 : registered) EXPECT_TRUE(documented.count(r2)) << "undocumented: " << r2.first << " " << r2.second;
  for (const auto& d : documented) EXPECT_TRUE(registered.count(d)) << "not served: " << d.first << " " << d.second;
}

TEST_F(ServerTest, LogsCarryNoKeysOrImageBytes) {
  const std::string key = srv_->create_key({{"name", "logcheck"}, {"collections", {"*"}}, {"operations", {"detect"}}});
  const std::string img = sample(5);
  auto r = srv_->post_json("/v1/detect", {{"image", base64(img)}}, key);
  ASSERT_EQ(r->status, 200);
  const std::string log = srv_->log();
  EXPECT_EQ(log.find(key), std::string::npos);
  EXPECT_EQ(log.find(srv_->admin_key), std::string::npos);
  EXPECT_EQ(log.find(base64(img).substr(100, 64)), std::string::npos);
  EXPECT_EQ(log.find("embedding"), std::string::npos);
  // Every line is JSON.
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_FALSE(json::parse(line, nullptr, false).is_discarded()) << line;
  }
}

TEST(ServerLimits, QueueFullAnswers503) {
  TestServer srv([](ServerOptions& o) {
    o.workers = 1;
    o.queue = 0;
  });
  const std::string img = sample(6);
  constexpr int kClients = 6;
  std::vector<int> statuses(kClients, 0);
  std::barrier start(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto c = srv.client();
      start.arrive_and_wait();
      auto r = c.Post("/v1/detect", srv.auth(), httplib::MultipartFormDataItems{{"image", img, "x.jpg", "image/jpeg"}});
      statuses[static_cast<std::size_t>(i)] = r ? r->status : -1;
      if (r && r->status == 503) {
        EXPECT_TRUE(r->has_header("Retry-After"));
        EXPECT_EQ(error_code(r), "overloaded");
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(std::count(statuses.begin(), statuses.end(), 200), 1);
  EXPECT_GE(std::count(statuses.begin(), statuses.end(), 503), 1);
}

TEST(ServerLimits, FailedAuthIsThrottledPerIp) {
  TestServer srv([](ServerOptions& o) { o.auth_failures_allowed = 5; });
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(srv.client().Get("/v1/collections", {{"X-API-Key", "cnd_wrong"}})->status, 401);
  }
  auto blocked = srv.client().Get("/v1/collections", srv.auth());
  EXPECT_EQ(blocked->status, 429);
  EXPECT_TRUE(blocked->has_header("Retry-After"));
}

TEST(ServerLimits, StopFinishesInFlightRequests) {
  auto srv = std::make_unique<TestServer>();
  const std::string img = sample(6);
  std::atomic<int> status{0};
  std::thread t([&] {
    auto r = srv->client().Post("/v1/detect", srv->auth(), httplib::MultipartFormDataItems{{"image", img, "x.jpg", "image/jpeg"}});
    status = r ? r->status : -1;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  srv->server().stop();
  t.join();
  EXPECT_EQ(status.load(), 200);
  srv.reset();
}

TEST(ServerKeys, KeysAreRandomAndOnlyHashedAtRest) {
  TestServer srv;
  EXPECT_EQ(srv.admin_key.rfind("cnd_", 0), 0u);
  EXPECT_EQ(srv.admin_key.size(), 47u);
  const std::string other = srv.create_key({{"name", "second"}, {"collections", {"*"}}, {"operations", {"detect"}}});
  EXPECT_NE(other, srv.admin_key);
  std::string files;
  for (const auto& e : fs::directory_iterator(srv.dir())) {
    if (e.is_regular_file()) files += read_all(e.path());
  }
  EXPECT_EQ(files.find(srv.admin_key), std::string::npos);
  EXPECT_EQ(files.find(other), std::string::npos);
  EXPECT_EQ(files.find(other.substr(4)), std::string::npos);
  // A deleted key stops working.
  EXPECT_EQ(srv.client().Delete("/v1/keys/second", srv.auth())->status, 200);
  EXPECT_EQ(srv.client().Get("/v1/collections", srv.auth(other))->status, 401);
}

}  // namespace
}  // namespace candor
