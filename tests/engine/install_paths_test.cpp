// Where an installed binary finds its models, manifest and console (candor/models.h,
// installed_data_dir): <bin>/../share/candor, the Debian package's layout. The package
// test (tests/package/deb_test.sh) checks the same from /usr/bin/candor itself.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>

#include "candor/models.h"

namespace candor {
namespace {

class InstallPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "candor-install-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ / "bin");
    std::ofstream(root_ / "bin" / "candor") << "";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::filesystem::path root_;
};

TEST_F(InstallPathsTest, ShareCandorBesideTheBinaryIsTheInstalledDataDir) {
  EXPECT_TRUE(installed_data_dir(root_ / "bin" / "candor").empty()) << "no share/candor yet";
  std::filesystem::create_directories(root_ / "share" / "candor");
  EXPECT_EQ(installed_data_dir(root_ / "bin" / "candor"), root_ / "share" / "candor");
}

TEST_F(InstallPathsTest, ABuildTreeBinaryKeepsTheBuildsPaths) {
  // This test runs from the build tree, which has no ../share/candor: the defaults stay
  // the build's, as before installation existed.
  ASSERT_TRUE(installed_data_dir().empty()) << installed_data_dir();
  const char* env = std::getenv("CANDOR_MODEL_DIR");
  EXPECT_EQ(resolve_model_dir(), std::filesystem::path(env != nullptr && *env ? env : CANDOR_MODEL_DIR));
  EXPECT_EQ(resolve_model_dir("/given"), std::filesystem::path("/given"));
  EXPECT_EQ(installed_or("web", "/source/web"), std::filesystem::path("/source/web"));
}

}  // namespace
}  // namespace candor
