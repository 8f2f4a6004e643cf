// Encryption at rest and key handling.
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "store_test_util.h"

namespace candor::test {
namespace {

std::vector<std::uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// True if any 16-byte window of the template's in-memory bytes occurs in `hay`.
bool contains_template_bytes(const std::vector<std::uint8_t>& hay, const std::vector<float>& v) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(v.data());
  const std::size_t n = v.size() * sizeof(float);
  for (std::size_t off = 0; off + 16 <= n; off += 16) {
    // glibc's memmem, not std::search: the ASan tree compiles tests at -O0, where a
    // byte-by-byte std::search over the files took a minute.
    if (::memmem(hay.data(), hay.size(), bytes + off, 16) != nullptr) return true;
  }
  return false;
}

TEST(Crypto, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(is_sha256_hex(sha256_hex("x")));
  EXPECT_FALSE(is_sha256_hex(std::string(64, 'A')));
}

TEST(Crypto, SealOpenAndTamper) {
  TemplateCipher cipher(*SecretKey::from_hex(kTestKey));
  const std::vector<float> v = synthetic_embedding(3, 64);
  std::vector<std::uint8_t> sealed = cipher.seal(v, "row-1");
  EXPECT_EQ(sealed.size(), 24 + 64 * 4 + 16u);
  EXPECT_EQ(*cipher.open(sealed, "row-1", 64), v);
  EXPECT_NE(cipher.seal(v, "row-1"), sealed) << "fresh nonce per record";
  EXPECT_EQ(cipher.open(sealed, "row-2", 64).error().code, ErrorCode::kIntegrityError);
  EXPECT_EQ(cipher.open(sealed, "row-1", 63).error().code, ErrorCode::kIntegrityError);
  sealed[40] ^= 1;
  EXPECT_EQ(cipher.open(sealed, "row-1", 64).error().code, ErrorCode::kIntegrityError);

  TemplateCipher other(SecretKey::generate());
  EXPECT_NE(other.key_check_value(), cipher.key_check_value());
  EXPECT_EQ(TemplateCipher(*SecretKey::from_hex(kTestKey)).key_check_value(), cipher.key_check_value());
  EXPECT_FALSE(SecretKey::from_hex("abc").ok());
  EXPECT_FALSE(SecretKey::from_hex(std::string(64, 'g')).ok());
  EXPECT_TRUE(SecretKey::from_hex(std::string(kTestKey) + "\n").ok());
}

class EncryptionTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = dir_.file("candor.db"); }

  TempDir dir_;
  std::string path_;
};

TEST_F(EncryptionTest, TemplatesNeverAppearInTheFiles) {
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
  std::vector<std::vector<float>> templates = enroll_alice(*s, 8);
  // Erase some, so freed pages would hold plaintext if it had ever been written.
  ASSERT_TRUE(s->erase_subject("", "nobody", who("check")).ok());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::vector<std::uint8_t> bytes = file_bytes(path_ + suffix);
    for (const std::vector<float>& t : templates) {
      EXPECT_FALSE(contains_template_bytes(bytes, t)) << "plaintext template in " << path_ << suffix;
    }
  }
  ASSERT_TRUE(s->checkpoint().ok());
  const std::vector<std::uint8_t> db = file_bytes(path_);
  ASSERT_GT(db.size(), 8u * 2048);
  for (const std::vector<float>& t : templates) EXPECT_FALSE(contains_template_bytes(db, t));
  EXPECT_TRUE(file_bytes(path_ + "-wal").empty());
  // And the scan itself works: the decrypted templates come back.
  EXPECT_EQ(s->load_faces("staff")->front().embedding, templates.front());
}

TEST_F(EncryptionTest, CiphertextMovedOrReassignedFailsToDecrypt) {
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
    enroll_alice(*s, 2);
  }
  {
    RawDb raw(path_);
    raw.exec("UPDATE faces SET template = (SELECT template FROM faces WHERE id = 1) WHERE id = 2");
  }
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
    Result<std::vector<FaceRecord>> r = s->load_faces("staff");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kIntegrityError);
    EXPECT_NE(r.error().message.find("face 2"), std::string::npos) << r.error().message;
    ASSERT_TRUE(s->erase_subject("", "alice", who("reset")).ok());
    ASSERT_TRUE(s->grant_consent(consent_for("alice"), who()).ok());
    ASSERT_TRUE(s->enroll("staff", "alice", {synthetic_face(1)}, who()).ok());
  }
  {
    RawDb raw(path_);
    raw.exec("UPDATE faces SET subject = 'mallory'");  // reassign a template to someone else
  }
  std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
  EXPECT_EQ(s->load_faces("staff").error().code, ErrorCode::kIntegrityError);
}

TEST_F(EncryptionTest, WrongKeyIsRefusedAtOpen) {
  {
    std::unique_ptr<Store> s = open_or_die(path_, options_with_key());
    enroll_alice(*s, 1);
  }
  StoreOptions wrong = options_with_key();
  wrong.key_hex = SecretKey::generate().to_hex();
  Result<std::unique_ptr<Store>> r = open_store(path_, wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIntegrityError);
  EXPECT_NE(r.error().message.find("wrong key"), std::string::npos) << r.error().message;
}

TEST_F(EncryptionTest, KeyFileIsCreatedPrivateOnlyForANewDatabase) {
  StoreOptions o;
  o.use_env_key = false;
  o.durability = Durability::kNormal;
  const std::string key_path = path_ + ".key";
  std::vector<std::vector<float>> templates;
  {
    std::unique_ptr<Store> s = open_or_die(path_, o);
    templates = enroll_alice(*s, 2);
  }
  struct stat st {};
  ASSERT_EQ(::stat(key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    std::unique_ptr<Store> s = open_or_die(path_, o);  // reads the same key
    EXPECT_EQ(s->load_faces("staff")->back().embedding, templates.back());
  }

  // Key file gone: refuse, and do not mint a replacement.
  std::filesystem::rename(key_path, key_path + ".bak");
  Result<std::unique_ptr<Store>> r = open_store(path_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("missing"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Refusing"), std::string::npos) << r.error().message;
  EXPECT_FALSE(std::filesystem::exists(key_path));

  // Key file readable by others: refuse.
  std::filesystem::rename(key_path + ".bak", key_path);
  ::chmod(key_path.c_str(), 0644);
  r = open_store(path_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;
  ::chmod(key_path.c_str(), 0600);
  EXPECT_TRUE(open_store(path_, o).ok());
}

TEST_F(EncryptionTest, KeyFromEnvironmentCreatesNoFile) {
  ::setenv("CANDOR_KEY", std::string(kTestKey).c_str(), 1);
  StoreOptions o;
  o.durability = Durability::kNormal;
  {
    Result<std::unique_ptr<Store>> s = open_store(path_, o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    enroll_alice(**s, 1);
  }
  EXPECT_FALSE(std::filesystem::exists(path_ + ".key"));
  ::unsetenv("CANDOR_KEY");
  // The same key via options opens it; no key at all is refused.
  EXPECT_TRUE(open_store(path_, options_with_key()).ok());
  o.use_env_key = false;
  EXPECT_FALSE(open_store(path_, o).ok());
  EXPECT_FALSE(std::filesystem::exists(path_ + ".key"));
}

}  // namespace
}  // namespace candor::test
