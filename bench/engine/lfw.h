// LFW: the pairs protocol files, and the verification / identification metrics
// computed on them. Kept apart from the commands so the tests can check the metrics.
#pragma once

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

struct RateAtThreshold {
  double rate = 0;       // TAR (verification) or 1 - FNIR (identification)
  double threshold = 0;  // similarity at or above which a comparison is accepted
  double achieved_false_rate = 0;
  std::size_t impostors = 0;
};

// TAR at the smallest threshold whose false accept rate on the impostor scores is <= far.
RateAtThreshold tar_at_far(const std::vector<float>& genuine, const std::vector<float>& impostor, double far);

// The threshold at which a fraction `fmr` of impostor scores is at or above it
// (the (1 - fmr) quantile), for calibrating operating points.
double threshold_at_fmr(std::vector<float> impostor, double fmr);

}  // namespace candor::bench
