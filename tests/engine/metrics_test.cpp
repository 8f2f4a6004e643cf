#include <fstream>

#include <gtest/gtest.h>

#include "engine/lfw.h"

namespace candor::bench {
namespace {

TEST(Metrics, TenFoldPicksTheSeparatingThreshold) {
  std::vector<float> scores;
  std::vector<bool> same;
  std::vector<int> folds;
  for (int f = 0; f < 10; ++f) {
    for (int i = 0; i < 10; ++i) {
      scores.push_back(0.6f + 0.01f * static_cast<float>(i)), same.push_back(true), folds.push_back(f);
      scores.push_back(0.1f + 0.01f * static_cast<float>(i)), same.push_back(false), folds.push_back(f);
    }
  }
  auto acc = ten_fold_accuracy(scores, same, folds);
  EXPECT_DOUBLE_EQ(acc.mean, 1.0);
  EXPECT_DOUBLE_EQ(acc.stddev, 0.0);
  for (double t : acc.thresholds) EXPECT_TRUE(t > 0.19 && t < 0.6) << t;
  // One impostor above every genuine score in fold 3: that fold loses one of 20.
  scores[3 * 20 + 1] = 0.99f;
  acc = ten_fold_accuracy(scores, same, folds);
  EXPECT_DOUBLE_EQ(acc.per_fold[3], 19.0 / 20.0);
  EXPECT_NEAR(acc.mean, 1.0 - 0.05 / 10, 1e-12);
}

TEST(Metrics, TarAtFarAllowsOnlyTheStatedFalseAccepts) {
  std::vector<float> impostor(1000);
  for (std::size_t i = 0; i < impostor.size(); ++i) impostor[i] = static_cast<float>(i) / 1000.0f;  // 0 .. 0.999
  std::vector<float> genuine = {0.9985f, 0.9995f, 0.5f};
  const auto r = tar_at_far(genuine, impostor, 1e-3);  // one impostor (0.999) may pass
  EXPECT_LE(r.achieved_false_rate, 1e-3);
  EXPECT_GT(r.threshold, 0.998);
  EXPECT_LT(r.threshold, 0.999);
  EXPECT_NEAR(r.rate, 2.0 / 3.0, 1e-9);
  // No impostor may pass at 1e-4: the threshold sits just above 0.999, and only 0.9995 clears it.
  EXPECT_NEAR(tar_at_far(genuine, impostor, 1e-4).rate, 1.0 / 3.0, 1e-9);
}

TEST(Metrics, ReadsViewTwoFoldsAndViewOneWithoutHeader) {
  const auto dir = std::filesystem::temp_directory_path();
  {
    std::ofstream v2(dir / "candor_pairs_v2.txt");
    v2 << "2\t1\nA\t1\t2\nB\t1\tC\t1\nD\t1\t3\nE\t2\tF\t1\n";
    std::ofstream v1(dir / "candor_pairs_v1.txt");
    v1 << "A\t1\t2\nB\t1\tC\t1\n";
  }
  auto v2 = read_lfw_pairs(dir / "candor_pairs_v2.txt");
  ASSERT_TRUE(v2.ok());
  ASSERT_EQ(v2->size(), 4u);
  EXPECT_EQ((*v2)[0].fold, 0);
  EXPECT_EQ((*v2)[2].fold, 1);
  EXPECT_TRUE((*v2)[2].same);
  EXPECT_FALSE((*v2)[3].same);
  EXPECT_EQ((*v2)[3].name_b, "F");
  auto v1 = read_lfw_pairs(dir / "candor_pairs_v1.txt");
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->size(), 2u);
  EXPECT_EQ(lfw_image_path("/x", "A_B", 7), std::filesystem::path("/x/lfw/A_B/A_B_0007.jpg"));
}

}  // namespace
}  // namespace candor::bench
