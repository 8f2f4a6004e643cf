#include "engine/lfw.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

namespace candor::bench {

Result<std::vector<LfwPair>> read_lfw_pairs(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Error{ErrorCode::kIoError, "cannot read " + file.string()};
  std::vector<LfwPair> pairs;
  std::string line;
  int per_fold = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string t; fields >> t;) f.push_back(t);
    if (f.empty()) continue;
    if (f.size() <= 2 && pairs.empty() && std::all_of(f[0].begin(), f[0].end(), ::isdigit)) {
      if (f.size() == 2) per_fold = 2 * std::stoi(f[1]);  // "10\t300": 300 matched + 300 mismatched per fold
      continue;
    }
    LfwPair p;
    if (f.size() == 3) {
      p = {f[0], std::stoi(f[1]), f[0], std::stoi(f[2]), true, 0};
    } else if (f.size() == 4) {
      p = {f[0], std::stoi(f[1]), f[2], std::stoi(f[3]), false, 0};
    } else {
      return Error{ErrorCode::kInvalidArgument, file.string() + ": malformed line: " + line};
    }
    p.fold = per_fold > 0 ? static_cast<int>(pairs.size()) / per_fold : 0;
    pairs.push_back(p);
  }
  return pairs;
}

std::filesystem::path lfw_image_path(const std::filesystem::path& root, const std::string& name, int index) {
  char file[64];
  std::snprintf(file, sizeof file, "_%04d.jpg", index);
  return root / "lfw" / name / (name + file);
}

namespace {

// The accuracy-maximising threshold over a set of (score, label): every midpoint
// between consecutive distinct scores is a candidate.
double best_threshold(std::vector<std::pair<float, bool>> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  std::size_t positives = 0;
  for (const auto& s : v) positives += s.second;
  // Threshold below element i: items [i, n) accepted.
  std::size_t correct = positives;  // threshold below everything: all accepted
  std::size_t best_correct = correct;
  double best = v.empty() ? 0.0 : static_cast<double>(v.front().first) - 1e-6;
  for (std::size_t i = 0; i < n; ++i) {
    if (v[i].second) --correct;  // moving the threshold above v[i] rejects it
    else ++correct;
    const bool boundary = i + 1 == n || v[i + 1].first != v[i].first;
    if (boundary && correct > best_correct) {
      best_correct = correct;
      best = i + 1 == n ? static_cast<double>(v[i].first) + 1e-6 : (static_cast<double>(v[i].first) + v[i + 1].first) / 2;
    }
  }
  return best;
}

}  // namespace

FoldAccuracy ten_fold_accuracy(const std::vector<float>& scores, const std::vector<bool>& same,
                               const std::vector<int>& folds) {
  FoldAccuracy r;
  const int k = folds.empty() ? 0 : *std::max_element(folds.begin(), folds.end()) + 1;
  for (int fold = 0; fold < k; ++fold) {
    std::vector<std::pair<float, bool>> train;
    for (std::size_t i = 0; i < scores.size(); ++i) {
      if (folds[i] != fold) train.emplace_back(scores[i], same[i]);
    }
    const double t = best_threshold(std::move(train));
    std::size_t correct = 0, total = 0;
    for (std::size_t i = 0; i < scores.size(); ++i) {
      if (folds[i] != fold) continue;
      ++total;
      correct += (scores[i] >= t) == same[i];
    }
    r.per_fold.push_back(total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0);
    r.thresholds.push_back(t);
  }
  if (!r.per_fold.empty()) {
    r.mean = std::accumulate(r.per_fold.begin(), r.per_fold.end(), 0.0) / static_cast<double>(r.per_fold.size());
    double var = 0;
    for (double a : r.per_fold) var += (a - r.mean) * (a - r.mean);
    r.stddev = std::sqrt(var / static_cast<double>(r.per_fold.size()));
  }
  return r;
}

}  // namespace candor::bench
