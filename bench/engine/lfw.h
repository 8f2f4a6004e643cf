// LFW: the pairs protocol files, and the verification / identification metrics
// computed on them. Kept apart from the commands so the tests can check the metrics.
#pragma once

#include "candor/calibration.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "candor/result.h"

namespace candor::bench {

struct LfwPair {
  std::string name_a;
  int index_a = 0;
  std::string name_b;
  int index_b = 0;
  bool same = false;
  int fold = 0;
};

// Reads pairs.txt (View 2: a "10\t300" header, then 10 folds of 300 matched and 300
// mismatched pairs) or the View-1 files (no header; matched pairs first, a count line
// at the top in some copies). Pairs get fold numbers from the header when present.
Result<std::vector<LfwPair>> read_lfw_pairs(const std::filesystem::path& file);

// <root>/lfw/<Name>/<Name>_NNNN.jpg
std::filesystem::path lfw_image_path(const std::filesystem::path& root, const std::string& name, int index);

struct FoldAccuracy {
  double mean = 0;
  double stddev = 0;  // population standard deviation over folds (as insightface and sklearn report)
  std::vector<double> per_fold;
  std::vector<double> thresholds;  // chosen on the other folds
};

// The standard protocol: for each fold, the threshold that maximises accuracy on the
// other folds, applied to this fold.
FoldAccuracy ten_fold_accuracy(const std::vector<float>& scores, const std::vector<bool>& same,
                               const std::vector<int>& folds);

// RateAtThreshold, tar_at_far() and threshold_at_fmr() are the library's
// (candor/calibration.h): the bench calibrates the shipped points with the code that
// calibrates a collection's.

}  // namespace candor::bench
