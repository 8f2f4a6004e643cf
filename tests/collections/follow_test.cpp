// Two nodes over one store: two Collections, each over its own Store object on
// the same database (one SQLite file, or one PostgreSQL database), as two
// `candor serve` processes would be. What one node changes reaches the other
// through the store's change feed; a revocation on one node is never answered
// by the other, even before its follower has applied it.
#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "../common/cost.h"
#include "../engine/test_support.h"
#include "../store/backend_fixture.h"
#include "candor/collections.h"
#include "candor/crypto.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;
using Photo = std::vector<std::uint8_t>;

Photo anna_1() { return test::face_crop_jpeg(1, 2, 0.3f); }
Photo anna_2() { return test::face_crop_jpeg(1, 2, 0.6f); }
Photo anna_probe() { return test::face_crop_jpeg(3, 1, 0.4f); }  // another photograph
Photo cleo() { return test::face_crop_jpeg(6, 2, 0.3f); }

class FollowTest : public test::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    store_a_ = test::open_or_die(path_, test::options_with_key(&clock_));
    store_b_ = test::open_or_die(path_, test::options_with_key(&clock_));
    a_ = open_node(*store_a_, true);
    b_ = open_node(*store_b_, true);
    ASSERT_TRUE(a_ && b_);
    NewCollection spec;
    spec.name = "staff";
    spec.purpose = std::string(test::kPurpose);
    ASSERT_TRUE(a_->create_collection(spec, "fmr-1e-3", admin_).ok());
  }

  void TearDown() override {
    a_.reset();  // the followers stop before their stores close
    b_.reset();
  }

  std::unique_ptr<Collections> open_node(Store& store, bool follow) {
    CollectionsOptions options;
    options.follow_changes = follow;
    options.follow_wait = std::chrono::milliseconds(200);
    auto c = Collections::open(test::shared_engine(), store, options);
    EXPECT_TRUE(c.ok()) << c.error().message;
    return c.ok() ? std::move(*c) : nullptr;
  }

  void consent(const std::string& subject, const std::string& collection = "staff") {
    NewConsent n;
    n.collection = collection;
    n.subject = subject;
    n.purpose = std::string(test::kPurpose);
    n.evidence_sha256 = sha256_hex(std::string_view("signed form of " + subject));
    n.collected_by = "hr desk";
    ASSERT_TRUE(store_a_->grant_consent(n, admin_).ok());
  }

  static Result<std::vector<EnrollOutcome>> enroll(Collections& node, const std::string& subject,
                                                   const std::vector<Photo>& photos,
                                                   const std::string& collection = "staff") {
    std::vector<EnrollImage> images;
    for (std::size_t i = 0; i < photos.size(); ++i) images.push_back({"photo" + std::to_string(i) + ".jpg", photos[i]});
    return node.enroll(collection, subject, images, {"admin", ""});
  }

  static bool finds(Collections& node, const std::string& subject, const Photo& probe) {
    auto r = node.search("staff", probe, 5, {"guard", "door 3 entry"});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() && !r->largest().matches.empty() && r->largest().matches[0].subject == subject && r->largest().matches[0].match;
  }

  // Waits until `node` holds `n` templates of `collection`; returns how long it took. The
  // limit is the release build's: a sanitizer's build waits kSanitizerSlack times as long
  // (under ASan on a loaded machine a follower's round trip passed 1 s, session 10).
  static std::optional<Clock::duration> wait_for_count(Collections& node, const std::string& collection,
                                                       std::size_t n, Clock::duration limit) {
    limit = std::chrono::duration_cast<Clock::duration>(limit * test::kSanitizerSlack);
    const auto start = Clock::now();
    while (Clock::now() - start < limit) {
      if (node.indexed_faces(collection) == n) return Clock::now() - start;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return std::nullopt;
  }

  std::unique_ptr<Store> store_a_, store_b_;
  std::unique_ptr<Collections> a_, b_;
  AuditContext admin_{"admin", ""};
};

TEST_P(FollowTest, FaceEnrolledOnAIsFoundOnBWithinOneSecond) {
  consent("anna");
  ASSERT_TRUE(enroll(*a_, "anna", {anna_1(), anna_2()}).ok());
  const auto took = wait_for_count(*b_, "staff", 2, std::chrono::seconds(1));
  ASSERT_TRUE(took.has_value()) << "node B did not index A's enrollment within 1 s (x kSanitizerSlack)";
  EXPECT_TRUE(finds(*b_, "anna", anna_probe()));
  // A's own change came back through its feed and changed nothing there.
  ASSERT_TRUE(a_->sync().ok());
  EXPECT_EQ(a_->indexed_faces("staff"), 2u);
  const FollowStatus status = b_->follow_status();
  EXPECT_TRUE(status.following);
  EXPECT_GT(status.applied_version, 0);
  EXPECT_FALSE(status.last_error.has_value());
  EXPECT_LT(status.lag_seconds, 1.0);
}

// B never applies A's revocation here (no follower, no sync): the search re-check
// alone must keep the subject out of B's answers.
TEST_P(FollowTest, RevokeOnAIsNotReturnedByBEvenBeforeBApplies) {
  auto b = open_node(*store_b_, false);
  consent("anna");
  consent("cleo");
  ASSERT_TRUE(enroll(*a_, "anna", {anna_1(), anna_2()}).ok());
  ASSERT_TRUE(enroll(*a_, "cleo", {cleo()}).ok());
  ASSERT_TRUE(b->sync().ok());
  ASSERT_EQ(b->indexed_faces("staff"), 3u);
  EXPECT_TRUE(finds(*b, "anna", anna_probe()));

  ASSERT_TRUE(a_->revoke_consent("staff", "anna", admin_).ok());
  EXPECT_EQ(b->indexed_faces("staff"), 3u) << "B has not applied the revocation yet";
  auto r = b->search("staff", anna_probe(), 5, {"guard", "door 3 entry"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (const auto& m : r->largest().matches) EXPECT_NE(m.subject, "anna");

  ASSERT_TRUE(b->sync().ok());
  EXPECT_EQ(b->indexed_faces("staff"), 1u);
}

// Searches on B run while A revokes: none that starts after the revocation
// returned may report the subject.
TEST_P(FollowTest, ConcurrentRevokeOnAIsNeverAnsweredByB) {
  consent("anna");
  consent("cleo");
  ASSERT_TRUE(enroll(*a_, "anna", {anna_1(), anna_2()}).ok());
  ASSERT_TRUE(enroll(*a_, "cleo", {cleo()}).ok());
  ASSERT_TRUE(wait_for_count(*b_, "staff", 3, std::chrono::seconds(2)).has_value());
  const Photo probe = anna_probe();
  std::atomic<bool> revoked{false};
  std::atomic<int> violations{0}, searches{0}, found_before{0};
  std::thread searcher([&] {
    for (int i = 0; i < 8; ++i) {
      const bool after = revoked.load();
      auto r = b_->search("staff", probe, 5, {"guard", "door 3"});
      ASSERT_TRUE(r.ok()) << r.error().message;
      ++searches;
      const bool found = !r->largest().matches.empty() && r->largest().matches[0].subject == "anna" && r->largest().matches[0].match;
      if (after && found) ++violations;
      if (!after && found) ++found_before;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  ASSERT_TRUE(a_->revoke_consent("staff", "anna", admin_).ok());
  revoked = true;
  searcher.join();
  EXPECT_EQ(searches.load(), 8);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_TRUE(wait_for_count(*b_, "staff", 1, std::chrono::seconds(1)).has_value());
}

TEST_P(FollowTest, CollectionsCreatedAndDeletedOnAAppearAndDisappearOnB) {
  NewCollection spec;
  spec.name = "visitors";
  spec.purpose = std::string(test::kPurpose);
  ASSERT_TRUE(a_->create_collection(spec, "fmr-1e-3", admin_).ok());
  consent("anna", "visitors");
  ASSERT_TRUE(enroll(*a_, "anna", {anna_1()}, "visitors").ok());
  ASSERT_TRUE(wait_for_count(*b_, "visitors", 1, std::chrono::seconds(1)).has_value())
      << "a collection first seen in the feed is loaded";
  auto r = b_->search("visitors", anna_probe(), 5, {"guard", "lobby"});
  ASSERT_TRUE(r.ok()) << r.error().message;

  // An empty collection created on A is found by B on first use.
  spec.name = "contractors";
  ASSERT_TRUE(a_->create_collection(spec, "fmr-1e-3", admin_).ok());
  r = b_->search("contractors", anna_probe(), 5, {"guard", "lobby"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->largest().matches.empty());

  ASSERT_TRUE(a_->delete_collection("visitors", admin_).ok());
  ASSERT_TRUE(wait_for_count(*b_, "visitors", 0, std::chrono::seconds(1)).has_value());
  r = b_->search("visitors", anna_probe(), 5, {"guard", "lobby"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);

  // Deleted and created again under the same name: B holds the new one only.
  spec.name = "visitors";
  ASSERT_TRUE(a_->create_collection(spec, "fmr-1e-3", admin_).ok());
  consent("cleo", "visitors");
  ASSERT_TRUE(enroll(*a_, "cleo", {cleo()}, "visitors").ok());
  ASSERT_TRUE(wait_for_count(*b_, "visitors", 1, std::chrono::seconds(1)).has_value());
  ASSERT_TRUE(b_->sync().ok());
  EXPECT_EQ(b_->indexed_faces("visitors"), 1u);
}

// The feed is pruned past B's version (retention_run drops changes older than 7
// days): B reloads everything and carries on.
TEST_P(FollowTest, TruncatedFeedReloadsEverything) {
  auto b = open_node(*store_b_, false);
  consent("anna");
  consent("cleo");
  ASSERT_TRUE(enroll(*a_, "anna", {anna_1()}).ok());
  clock_.advance_days(8);
  ASSERT_TRUE(enroll(*a_, "cleo", {cleo()}).ok());
  ASSERT_TRUE(enroll(*a_, "anna", {anna_2()}).ok());
  ASSERT_TRUE(a_->retention_run(clock_.now(), {"nightly", "retention"}).ok());
  ASSERT_TRUE(store_b_->changes_since(b->follow_status().applied_version, 10)->truncated);

  ASSERT_TRUE(b->sync().ok());
  EXPECT_EQ(b->follow_status().reloads, 1u);
  EXPECT_EQ(b->indexed_faces("staff"), 3u);
  EXPECT_TRUE(finds(*b, "anna", anna_probe()));
  ASSERT_TRUE(a_->revoke_consent("staff", "anna", admin_).ok());
  ASSERT_TRUE(b->sync().ok());
  EXPECT_EQ(b->indexed_faces("staff"), 1u);
  EXPECT_EQ(b->follow_status().reloads, 1u);
}

// A node's own changes come back through its feed: applying them changes nothing,
// and a face it dropped is not put back by a sync that fetched it just before.
TEST_P(FollowTest, OwnChangesAreAppliedIdempotently) {
  consent("anna");
  ASSERT_TRUE(enroll(*a_, "anna", {anna_1(), anna_2()}).ok());
  ASSERT_TRUE(a_->sync().ok());
  ASSERT_TRUE(a_->sync().ok());
  EXPECT_EQ(a_->indexed_faces("staff"), 2u);
  ASSERT_TRUE(a_->revoke_consent("staff", "anna", admin_).ok());
  EXPECT_EQ(a_->indexed_faces("staff"), 0u);
  ASSERT_TRUE(a_->sync().ok());
  EXPECT_EQ(a_->indexed_faces("staff"), 0u);
  EXPECT_GE(a_->follow_status().changes_applied, 4u);
}

// A node of a group that serves only some collections neither loads nor follows the others.
TEST_P(FollowTest, ANodeHoldsOnlyTheCollectionsItServes) {
  CollectionsOptions options;
  options.follow_changes = true;
  options.follow_wait = std::chrono::milliseconds(200);
  options.served = {"staff", "eu-*"};
  auto b = Collections::open(test::shared_engine(), *store_b_, options);
  ASSERT_TRUE(b.ok()) << b.error().message;
  NewCollection spec;
  spec.purpose = std::string(test::kPurpose);
  for (const char* name : {"visitors", "eu-lobby"}) {
    spec.name = name;
    ASSERT_TRUE(a_->create_collection(spec, "fmr-1e-3", admin_).ok());
    consent("anna", name);
    ASSERT_TRUE(enroll(*a_, "anna", {anna_1()}, name).ok());
  }
  // What is tested is which collections arrive, not how fast (FaceEnrolledOnAIsFoundOnB...):
  // 1 s was passed once with two benches beside the tests on the 2 cores (session 14).
  ASSERT_TRUE(wait_for_count(**b, "eu-lobby", 1, std::chrono::seconds(5)).has_value());
  ASSERT_TRUE((*b)->sync().ok());
  EXPECT_EQ((*b)->indexed_faces("visitors"), 0u);
  auto r = (*b)->search("visitors", anna_probe(), 5, {"guard", "lobby"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("not held by this node"), std::string::npos) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(Backends, FollowTest, ::testing::Values("sqlite", "postgresql"), test::backend_name);

}  // namespace
}  // namespace candor
