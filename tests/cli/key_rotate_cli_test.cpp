// `candor key rotate` with the real binary, killed by a real SIGKILL at each of its steps
// (the test hook CANDOR_TEST_KILL_KEY_ROTATE: midway through the re-encrypting
// transaction, after its commit, after the old key was linked to .old): the store then
// opens and verifies with exactly one of the two keys, the other is refused saying which
// to use, and running the rotation again leaves it rotated.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "../common/run_command.h"
#include "../store/store_test_util.h"

namespace candor::test {
namespace {

std::string cli(const std::string& args) { return "CANDOR_KEY= " + std::string(CANDOR_BINARY) + " " + args; }

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

class KeyRotateCli : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.use_env_key = false;
    o.durability = Durability::kNormal;
    std::unique_ptr<Store> s = open_or_die(path_, o);
    enroll_alice(*s, 6);
    old_key_ = read_file(key_);
  }
  CommandRun rotate_killed_at(const std::string& point) {
    return run_command("CANDOR_TEST_KILL_KEY_ROTATE=" + point + " " + cli("key rotate --store " + path_));
  }
  CommandRun verify(const std::string& key_file) {
    return run_command(cli("store verify --store " + path_ + " --key-file " + key_file));
  }
  // Runs the rotation again, to its end: the store is then rotated, the old key kept.
  void rotate_to_the_end(const std::string& says) {
    CommandRun again = run_command(cli("key rotate --store " + path_));
    ASSERT_EQ(again.status, 0) << again.output;
    EXPECT_NE(again.output.find(says), std::string::npos) << again.output;
    EXPECT_EQ(read_file(key_ + ".old"), old_key_);
    EXPECT_FALSE(std::filesystem::exists(key_ + ".new"));
    CommandRun v = verify(key_);
    EXPECT_EQ(v.status, 0) << v.output;
  }
  TempDir dir_;
  std::string path_ = dir_.file("candor.db");
  std::string key_ = path_ + ".key";
  std::string old_key_;
};

TEST_F(KeyRotateCli, KilledMidwayTheOldKeyStillOpensTheStoreAndARerunRotates) {
  CommandRun killed = rotate_killed_at("midway");
  ASSERT_EQ(killed.status, 128 + 9) << killed.output;
  EXPECT_EQ(read_file(key_), old_key_);
  CommandRun v = verify(key_);
  EXPECT_EQ(v.status, 0) << v.output;
  EXPECT_NE(v.output.find("6 faces"), std::string::npos) << v.output;
  // The pending new key is not the store's: refused as a wrong key.
  ASSERT_TRUE(std::filesystem::exists(key_ + ".new"));
  CommandRun pending = verify(key_ + ".new");
  EXPECT_EQ(pending.status, 1) << pending.output;
  EXPECT_NE(pending.output.find("wrong key"), std::string::npos) << pending.output;

  rotate_to_the_end("re-encrypted 6 templates");
}

TEST_F(KeyRotateCli, KilledAfterTheCommitOnlyTheNewKeyOpensAndTheOldOneSaysWhereItIs) {
  for (const std::string point : {"committed", "linked"}) {
    SCOPED_TRACE(point);
    std::filesystem::remove(key_ + ".old");
    old_key_ = read_file(key_);
    CommandRun killed = rotate_killed_at(point);
    ASSERT_EQ(killed.status, 128 + 9) << killed.output;
    EXPECT_EQ(read_file(key_), old_key_);  // not yet installed
    CommandRun with_old = verify(key_);
    EXPECT_EQ(with_old.status, 1) << with_old.output;
    EXPECT_NE(with_old.output.find("previous key"), std::string::npos) << with_old.output;
    EXPECT_NE(with_old.output.find(key_ + ".new"), std::string::npos) << with_old.output;
    EXPECT_NE(with_old.output.find("candor key rotate"), std::string::npos) << with_old.output;
    CommandRun with_new = verify(key_ + ".new");
    EXPECT_EQ(with_new.status, 0) << with_new.output;
    EXPECT_NE(with_new.output.find("6 faces"), std::string::npos) << with_new.output;

    rotate_to_the_end("finished an interrupted rotation");
  }
}

}  // namespace
}  // namespace candor::test
