// The streams table (Store::create_stream and friends, issue 12) on SQLite and PostgreSQL:
// the source URL sealed (its password in no column, no audit entry), each change audited
// once, and the lease by which one node of several runs a stream.
#include <gtest/gtest.h>

#include <limits>
#include <optional>

#include "backend_fixture.h"

namespace candor::test {
namespace {

class StreamStoreTest : public StaffStoreTest {
 protected:
  NewStream spec() const { return door_stream(); }
};

TEST_P(StreamStoreTest, TheSourceIsSealedAndOpensOnlyThroughStreamSecrets) {
  auto created = store_->create_stream(spec(), who());
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->id.rfind("st_", 0), 0u);
  EXPECT_EQ(created->source_redacted, "rtsp://***@10.0.0.5/h264");
  auto secrets = store_->stream_secrets(created->id);
  ASSERT_TRUE(secrets.ok()) << secrets.error().message;
  EXPECT_EQ(secrets->source, kSecretSource);
  EXPECT_NE(secrets->outputs_json.find("0123456789abcdef-secret"), std::string::npos);
  // In no column in clear: the sealed ones hold ciphertext, the audit entry the redacted copy.
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM streams WHERE source_redacted LIKE '%Hunter2%' OR "
                        "outputs_redacted LIKE '%secret%'"),
            0);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM audit_log WHERE details LIKE '%Hunter2%' OR details LIKE '%cam:%'"), 0);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM audit_log WHERE operation = 'stream_create' AND collection = 'staff'"), 1);
  // A sealed source moved into another stream's row does not open there.
  auto other = store_->create_stream(spec(), who());
  ASSERT_TRUE(other.ok());
  db_->exec("UPDATE streams SET source_sealed = (SELECT source_sealed FROM streams WHERE id = '" + created->id +
            "') WHERE id = '" + other->id + "'");
  auto moved = store_->stream_secrets(other->id);
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(moved.error().code, ErrorCode::kIntegrityError);
}

TEST_P(StreamStoreTest, StartStopDeleteAreAuditedAndRefusalsToo) {
  auto s = store_->create_stream(spec(), who());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(store_->set_stream_running(s->id, true, who())->running);
  ASSERT_FALSE(store_->set_stream_running(s->id, false, who())->running);
  ASSERT_TRUE(store_->delete_stream(s->id, who()).ok());
  EXPECT_EQ(store_->get_stream(s->id).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->delete_stream(s->id, who()).error().code, ErrorCode::kNotFound);
  for (const char* op : {"stream_start", "stream_stop"}) {
    EXPECT_EQ(db_->scalar(std::string("SELECT COUNT(*) FROM audit_log WHERE operation = '") + op + "'"), 1) << op;
  }
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM audit_log WHERE operation = 'stream_delete' AND result = 'ok'"), 1);
  auto bad = spec();
  bad.collection = "nope";
  EXPECT_EQ(store_->create_stream(bad, who()).error().code, ErrorCode::kNotFound);
  bad = spec();
  bad.outputs_json = "[1]";
  EXPECT_EQ(store_->create_stream(bad, who()).error().code, ErrorCode::kInvalidArgument);
  bad = spec();
  bad.name = std::string(200, 'n');
  EXPECT_EQ(store_->create_stream(bad, who()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(store_->audit_verify()->intact);
}

TEST_P(StreamStoreTest, OneNodeHoldsALeaseUntilItExpiresOrIsReleased) {
  auto s = store_->create_stream(spec(), who());
  ASSERT_TRUE(s.ok());
  const auto ttl = std::chrono::milliseconds(30'000);
  EXPECT_FALSE(*store_->claim_stream(s->id, "a", clock_.now(), ttl)) << "a stopped stream is not claimed";
  ASSERT_TRUE(store_->set_stream_running(s->id, true, who()).ok());
  EXPECT_TRUE(*store_->claim_stream(s->id, "a", clock_.now(), ttl));
  EXPECT_FALSE(*store_->claim_stream(s->id, "b", clock_.now(), ttl)) << "held by a";
  EXPECT_TRUE(*store_->claim_stream(s->id, "a", clock_.now() + std::chrono::seconds(20), ttl)) << "renewed";
  EXPECT_FALSE(*store_->claim_stream(s->id, "b", clock_.now() + std::chrono::seconds(40), ttl)) << "renewal counts";
  EXPECT_TRUE(*store_->claim_stream(s->id, "b", clock_.now() + std::chrono::seconds(51), ttl)) << "expired: taken over";
  EXPECT_EQ(store_->get_stream(s->id)->owner_node, "b");
  ASSERT_TRUE(store_->release_stream(s->id, "a").ok());  // not a's: nothing happens
  EXPECT_EQ(store_->get_stream(s->id)->owner_node, "b");
  ASSERT_TRUE(store_->release_stream(s->id, "b").ok());
  EXPECT_TRUE(*store_->claim_stream(s->id, "a", clock_.now() + std::chrono::seconds(52), ttl)) << "released: free";
  // Stopping frees the lease; leases are not audited.
  ASSERT_TRUE(store_->set_stream_running(s->id, false, who()).ok());
  EXPECT_EQ(store_->get_stream(s->id)->owner_node, "");
  EXPECT_EQ(store_->claim_stream("st_missing", "a", clock_.now(), ttl).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM audit_log WHERE operation LIKE '%lease%' OR operation LIKE '%claim%'"), 0);
}

// A stream's settings (StreamOptions::detect_every, buffer_frames, shutter_s) come back as
// stored, from get and list alike; unset ones come back unset (NULL columns); a shutter
// that is not > 0 and <= 1 is refused before anything is written.
TEST_P(StreamStoreTest, SettingsComeBackAsStoredAndBadOnesAreRefused) {
  NewStream tuned = spec();
  tuned.detect_every = 2;
  tuned.buffer_frames = 5;
  tuned.shutter_s = 0.02;
  tuned.strangers_named = 0.0;  // the collection's point alone: kept as 0, not read as unset
  auto created = store_->create_stream(tuned, who());
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->shutter_s, std::optional<double>(0.02));
  auto plain = store_->create_stream(spec(), who());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_FALSE(plain->shutter_s.has_value());

  auto got = store_->get_stream(created->id);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->detect_every, std::optional<int>(2));
  EXPECT_EQ(got->buffer_frames, std::optional<int>(5));
  EXPECT_EQ(got->shutter_s, std::optional<double>(0.02));
  EXPECT_EQ(got->strangers_named, std::optional<double>(0.0));
  auto got_plain = store_->get_stream(plain->id);
  ASSERT_TRUE(got_plain.ok()) << got_plain.error().message;
  EXPECT_FALSE(got_plain->detect_every.has_value());
  EXPECT_FALSE(got_plain->buffer_frames.has_value());
  EXPECT_FALSE(got_plain->shutter_s.has_value());
  EXPECT_FALSE(got_plain->strangers_named.has_value());
  EXPECT_EQ(db_->scalar("SELECT COUNT(*) FROM streams WHERE shutter_s IS NULL"), 1);
  auto all = store_->list_streams();
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->size(), 2U);
  for (const StreamRecord& s : *all) {
    EXPECT_EQ(s.shutter_s, s.id == created->id ? std::optional<double>(0.02) : std::nullopt) << s.id;
  }
  // The longest exposure a stream takes, 1 s, is kept too.
  NewStream slow = spec();
  slow.shutter_s = 1.0;
  auto slow_made = store_->create_stream(slow, who());
  ASSERT_TRUE(slow_made.ok()) << slow_made.error().message;
  EXPECT_EQ(store_->get_stream(slow_made->id)->shutter_s, std::optional<double>(1.0));
  NewStream shared = spec();
  shared.strangers_named = 0.02;
  auto shared_made = store_->create_stream(shared, who());
  ASSERT_TRUE(shared_made.ok()) << shared_made.error().message;
  EXPECT_EQ(store_->get_stream(shared_made->id)->strangers_named, std::optional<double>(0.02));

  for (const double bad : {0.0, -0.02, 1.5, std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity()}) {
    NewStream refused = spec();
    refused.shutter_s = bad;
    auto r = store_->create_stream(refused, who());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  for (const double bad : {-0.01, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    NewStream refused = spec();
    refused.strangers_named = bad;
    auto r = store_->create_stream(refused, who());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(store_->list_streams()->size(), 4U) << "a refused stream was stored";
}

INSTANTIATE_TEST_SUITE_P(Store, StreamStoreTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
