// rotate_key (candor/backup.h) on both backends: every template opens under the new key
// after a rotation and verify passes with it, the retired key is refused naming itself,
// the rotation is audited with counts and no secret, a process still holding the old key
// cannot enroll, and a second rotation will not overwrite the kept old key. The rotation
// killed by SIGKILL is in tests/cli/key_rotate_cli_test.cpp.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "backend_fixture.h"
#include "candor/backup.h"
#include "candor/library_store.h"

namespace candor::test {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

class KeyRotateTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    key_file_ = key_dir_file("store.key");
    options_.key_file = key_file_;  // created with the store
    options_.use_env_key = false;
    options_.durability = Durability::kNormal;
    std::unique_ptr<Store> s = open_or_die(path_, options_);
    templates_ = enroll_alice(*s, 5);
  }
  KeyRotation rotation() const {
    KeyRotation r;
    r.context = {"test:operator", "scheduled rotation"};
    return r;
  }
  std::string key_file_;
  StoreOptions options_;
  std::vector<std::vector<float>> templates_;
  std::string stream_id_;
};

TEST_P(KeyRotateTest, EveryTemplateOpensUnderTheNewKeyAndVerifyPasses) {
  const std::string old_key = read_file(key_file_);
  std::unique_ptr<Store> stale = open_or_die(path_, options_);  // another process, opened before

  Result<KeyRotationReport> r = rotate_key(path_, options_, rotation());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->faces, 5);
  EXPECT_EQ(r->key_file, key_file_);
  EXPECT_EQ(r->old_key_file, key_file_ + ".old");
  EXPECT_EQ(read_file(key_file_ + ".old"), old_key);
  EXPECT_NE(read_file(key_file_), old_key);
  EXPECT_FALSE(std::filesystem::exists(key_file_ + ".new"));

  Result<StoreCheck> check = verify_store(path_, options_);
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_TRUE(check->ok()) << check->problems.front();
  EXPECT_EQ(check->faces, 5);

  std::unique_ptr<Store> s = open_or_die(path_, options_);
  Result<std::vector<FaceRecord>> faces = s->load_faces("staff");  // what a search index is built from
  ASSERT_TRUE(faces.ok()) << faces.error().message;
  ASSERT_EQ(faces->size(), templates_.size());
  for (std::size_t i = 0; i < templates_.size(); ++i) EXPECT_EQ((*faces)[i].embedding, templates_[i]) << i;

  // Audited, with counts and no secret.
  AuditFilter filter;
  filter.operation = "key_rotate";
  Result<std::vector<AuditEntry>> entries = s->audit_list(filter);
  ASSERT_TRUE(entries.ok()) << entries.error().message;
  ASSERT_EQ(entries->size(), 1U);
  EXPECT_EQ(entries->front().actor, "test:operator");
  EXPECT_NE(entries->front().details.find("\"faces_reencrypted\":5"), std::string::npos) << entries->front().details;
  EXPECT_EQ(entries->front().details.find(old_key), std::string::npos);
  EXPECT_EQ(entries->front().details.find(read_file(key_file_)), std::string::npos);
  EXPECT_TRUE(s->audit_verify()->intact);

  // The process that still holds the old key may not seal with it any more.
  Result<std::vector<FaceId>> late = stale->enroll("staff", "alice", {synthetic_face(77)}, who());
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(late.error().message.find("rotated"), std::string::npos) << late.error().message;
}

TEST_P(KeyRotateTest, TheRetiredKeyIsRefusedNamingItselfAndAWrongKeyNamingTheCheckValue) {
  ASSERT_TRUE(rotate_key(path_, options_, rotation()).ok());
  StoreOptions retired = options_;
  retired.key_file = key_file_ + ".old";
  Result<StoreCheck> r = verify_store(path_, retired);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(r.error().message.find("previous key"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(std::filesystem::absolute(key_file_).string()), std::string::npos)
      << r.error().message;

  StoreOptions wrong = options_;
  wrong.key_hex = std::string(64, 'b');
  r = verify_store(path_, wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(r.error().message.find("wrong key"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("key check value differs"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("previous key"), std::string::npos) << r.error().message;
}

TEST_P(KeyRotateTest, ASecondRotationKeepsTheFirstOldKeyUntilTheOperatorDeletesIt) {
  ASSERT_TRUE(rotate_key(path_, options_, rotation()).ok());
  const std::string first_old = read_file(key_file_ + ".old");
  Result<KeyRotationReport> again = rotate_key(path_, options_, rotation());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(again.error().message.find(key_file_ + ".old"), std::string::npos) << again.error().message;
  EXPECT_EQ(read_file(key_file_ + ".old"), first_old);
  ASSERT_TRUE(verify_store(path_, options_).ok());

  std::filesystem::remove(key_file_ + ".old");
  again = rotate_key(path_, options_, rotation());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->faces, 5);
}

TEST_P(KeyRotateTest, AKeyFromTheEnvironmentIsRotatedIntoANewFile) {
  StoreOptions by_value = options_;
  by_value.key_hex = read_file(key_file_);
  KeyRotation r = rotation();
  EXPECT_EQ(rotate_key(path_, by_value, r).error().code, ErrorCode::kInvalidArgument);  // no file to replace
  r.new_key_file = key_dir_file("next.key");
  Result<KeyRotationReport> done = rotate_key(path_, by_value, r);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(done->key_file, r.new_key_file);
  StoreOptions next = options_;
  next.key_file = r.new_key_file;
  Result<StoreCheck> check = verify_store(path_, next);
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_EQ(check->faces, 5);
}

// Everything sealed under the store key moves with it: a photo library's templates and a
// stream's source and outputs open under the new key after the rotation (without their
// re-sealing they would be unreadable for good once the old key is deleted).
TEST_P(KeyRotateTest, LibraryTemplatesAndStreamSecretsMoveWithTheKey) {
  const std::vector<float> library_template(64, 0.125F);
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_);
    const AuditContext who{"test:owner", "my photos"};
    Result<AddedPhoto> added = family_library_with(*s, {library_template});
    ASSERT_TRUE(added.ok()) << added.error().message;
    const NewStream stream = door_stream();
    Result<StreamRecord> created = s->create_stream(stream, who);
    ASSERT_TRUE(created.ok()) << created.error().message;
    stream_id_ = created->id;
  }
  Result<KeyRotationReport> r = rotate_key(path_, options_, rotation());
  ASSERT_TRUE(r.ok()) << r.error().message;

  std::unique_ptr<Store> s = open_or_die(path_, options_);  // the new key
  Result<std::vector<LibraryFace>> faces = s->library().list_faces("family", /*with_templates=*/true);
  ASSERT_TRUE(faces.ok()) << faces.error().message;
  ASSERT_EQ(faces->size(), 1U);
  EXPECT_EQ(faces->front().embedding, library_template);
  Result<StreamSecrets> secrets = s->stream_secrets(stream_id_);
  ASSERT_TRUE(secrets.ok()) << secrets.error().message;
  EXPECT_EQ(secrets->source, kSecretSource);
  EXPECT_EQ(secrets->outputs_json, door_stream().outputs_json);
}

INSTANTIATE_TEST_SUITE_P(Store, KeyRotateTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace candor::test
