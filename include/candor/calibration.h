// Operating points from scores: the thresholds at which a fixed fraction of impostor
// comparisons would match, and the true accept rate reached there. `candor bench
// calibrate` made the recogniser's shipped points this way on LFW View 1; `candor
// calibrate --collection C DIR` makes a collection's own points on the operator's people
// (Collections::calibrate), because an impostor distribution measured on one population
// does not carry over to every other (README "Operating points").
//
// Thread safety: free functions over their arguments; safe to call concurrently.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "candor/models.h"
#include "candor/result.h"
#include "candor/store.h"

namespace candor {

struct RateAtThreshold {
  double rate = 0;       // TAR (verification) or 1 - FNIR (identification); 0 without genuine scores
  double threshold = 0;  // similarity at or above which a comparison is accepted
  double achieved_false_rate = 0;
  std::size_t impostors = 0;
};

// The threshold at which at most a fraction `fmr` of the impostor scores is at or above
// it: floor(fmr * n) impostors are allowed, and the threshold sits just above the next.
// ensures: 1.0 for no impostor scores.
double threshold_at_fmr(std::vector<float> impostor, double fmr);

// TAR at threshold_at_fmr(impostor, far).
RateAtThreshold tar_at_far(const std::vector<float>& genuine, const std::vector<float>& impostor, double far);

// A threshold that can be written down: rounded up to four decimals, so the rounding never
// admits more impostors than the calibration allowed.
double round_threshold_up(double t);

// One person's images, as indices into a template list, in a fixed order (first = enrolled first).
using PersonImages = std::vector<std::size_t>;

// The scores of subject templates (subject_template() of each person's first `photos`
// images, for every person with at least that many readable ones) against every image of
// the other people (impostor) and against the person's own later images (genuine).
struct SubjectScores {
  std::size_t subjects = 0;
  std::vector<float> genuine, impostor;
};
// requires: every index of `people` is < templates.size(); non-empty templates share one
//   size (an empty one is an unreadable image: no comparison); photos >= 1 (else
//   std::invalid_argument).
SubjectScores subject_scores(std::span<const PersonImages> people, const std::vector<std::vector<float>>& templates,
                             int photos);

// Subject templates of up to this many photos are calibrated; more photos than that use
// the last threshold (subject_threshold() in candor/models.h). LFW View 1 holds too few
// people with more photos to resolve FMR 1e-5 beyond five.
inline constexpr int kCalibrationPhotos = 5;

// An FMR is resolved by n impostor scores only when n >= 3 / fmr: with none of n
// comparisons at or above the threshold, 3 / n bounds the true FMR at 95% confidence
// (the "rule of three", Jovanovic and Levy 1997; ISO/IEC 19795-1 uses it for the same).
inline constexpr double kRuleOfThree = 3.0;

// The operating points of a collection, measured on a set of people (photos an operator
// may use for this; they are not enrolled). For each shipped point whose FMR the k = 1
// impostor scores resolve, and each k = 1..kCalibrationPhotos: the threshold at that FMR
// for a subject template of k photos (rounded up, non-decreasing in k), and the TAR there.
// A k whose impostor scores do not resolve the FMR (few people with k + 1 photos) takes
// the k = 1 threshold plus the shipped step from k = 1 to k, and is marked extrapolated.
// Points the set cannot resolve are left out (the shipped ones stay in force for them).
// requires: templates and people as subject_scores().
// ensures: kInvalidArgument naming the figures when fewer than two people give a template
//          or no shipped point is resolved (the message says how many people would be).
Result<CollectionCalibration> calibrate_points(std::span<const PersonImages> people,
                                               const std::vector<std::vector<float>>& templates,
                                               std::span<const OperatingPoint> shipped, const std::string& model_id,
                                               TimePoint now);

// The point a collection decides at: its calibrated point of that name when it has one
// for `model_id`, else the shipped point whose threshold is the collection's, else a
// "custom" point of the collection's threshold for every photo count.
OperatingPoint collection_operating_point(const Collection& c, std::span<const OperatingPoint> shipped,
                                          const std::string& model_id);

// The operating points a collection's thresholds may be read between: its own calibrated
// points when they were measured with `model_id`, else the recogniser's shipped ones.
std::vector<OperatingPoint> collection_points(const Collection& c, std::span<const OperatingPoint> shipped,
                                              const std::string& model_id);

// The thresholds (one per photo count, as OperatingPoint::subject_thresholds) at which one
// comparison matches an impostor with probability `fmr`, read between `points` linearly in
// log10(FMR) for each photo count. Stricter than the strictest point, the last two points'
// slope carries on: an impostor tail that falls like a Gaussian's (or faster) needs less
// than that, so the extrapolated threshold errs towards naming nobody. Looser than the
// loosest point, the loosest point itself (never extrapolated towards accepting more).
// Rounded up (round_threshold_up) and non-decreasing in the photo count.
// requires: 0 < fmr < 1; at least one point with fmr > 0 (else std::invalid_argument).
OperatingPoint point_at_fmr(std::span<const OperatingPoint> points, double fmr);

// Open-set identification (1:N): a probe of someone not enrolled is named when any one of
// the gallery's `subjects` templates clears its threshold, so the false positive
// identification rate grows with the gallery, FPIR <= subjects * FMR (the union bound,
// which holds however the comparisons depend on each other; ISO/IEC 19795-1 and NIST's
// FRVT 1:N report FNIR at a fixed FPIR for this reason). The point whose FMR is
// fpir / subjects, read from `points` by point_at_fmr, and never looser than `decides_at`
// (a small gallery keeps the collection's own point), for every photo count.
// requires: 0 < fpir < 1 (else std::invalid_argument).
// ensures: decides_at itself for subjects == 0; fmr = the smaller of the two points'.
OperatingPoint identification_point(const OperatingPoint& decides_at, std::span<const OperatingPoint> points,
                                    std::size_t subjects, double fpir);

}  // namespace candor
