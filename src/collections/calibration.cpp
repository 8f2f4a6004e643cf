// Operating points from impostor and genuine scores (candor/calibration.h).
#include "candor/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>

#include <opencv2/core.hpp>

#include "candor/collections.h"

namespace candor {

double threshold_at_fmr(std::vector<float> impostor, double fmr) {
  if (impostor.empty()) return 1.0;
  std::sort(impostor.begin(), impostor.end(), std::greater<>());
  // Accept score >= t. Allow floor(fmr * n) impostors at or above t: t sits just above
  // the next impostor score.
  const auto allowed = static_cast<std::size_t>(std::floor(fmr * static_cast<double>(impostor.size())));
  if (allowed >= impostor.size()) return static_cast<double>(impostor.back());
  return std::nextafter(static_cast<double>(impostor[allowed]), 2.0);
}

namespace {

double accepted_fraction(const std::vector<float>& scores, double threshold) {
  if (scores.empty()) return 0.0;
  const auto n = std::count_if(scores.begin(), scores.end(), [threshold](float s) { return s >= threshold; });
  return static_cast<double>(n) / static_cast<double>(scores.size());
}

}  // namespace

RateAtThreshold tar_at_far(const std::vector<float>& genuine, const std::vector<float>& impostor, double far) {
  RateAtThreshold r;
  r.impostors = impostor.size();
  r.threshold = threshold_at_fmr(impostor, far);
  r.rate = accepted_fraction(genuine, r.threshold);
  r.achieved_false_rate = accepted_fraction(impostor, r.threshold);
  return r;
}

double round_threshold_up(double t) { return std::ceil(t * 1e4) / 1e4; }

SubjectScores subject_scores(std::span<const PersonImages> people, const std::vector<std::vector<float>>& templates,
                             int photos) {
  if (photos < 1) throw std::invalid_argument("subject_scores: photos must be >= 1");
  std::size_t dim = 0;
  for (const auto& t : templates) dim = std::max(dim, t.size());
  const auto k = static_cast<std::size_t>(photos);
  // Every readable face, with its owner and its place among the owner's photos.
  std::vector<std::size_t> face_image, owner, place;
  std::vector<std::size_t> subject_person;
  std::vector<std::vector<float>> subject_rows;
  for (std::size_t p = 0; p < people.size(); ++p) {
    std::vector<std::vector<float>> first;  // the enrolled photos: the first k readable ones
    for (std::size_t image : people[p]) {
      const std::vector<float>& t = templates.at(image);
      if (t.empty()) continue;  // an unreadable image is no comparison
      place.push_back(first.size() < k ? first.size() : k), face_image.push_back(image), owner.push_back(p);
      if (first.size() < k) first.push_back(t);
    }
    if (first.size() == k) subject_person.push_back(p), subject_rows.push_back(subject_template(first));
  }
  SubjectScores out;
  out.subjects = subject_person.size();
  if (subject_rows.empty() || face_image.empty() || dim == 0) return out;
  cv::Mat faces(static_cast<int>(face_image.size()), static_cast<int>(dim), CV_32F);
  for (std::size_t f = 0; f < face_image.size(); ++f) {
    const std::vector<float>& t = templates[face_image[f]];
    std::copy(t.begin(), t.end(), faces.ptr<float>(static_cast<int>(f)));
  }
  cv::Mat subjects(static_cast<int>(subject_rows.size()), static_cast<int>(dim), CV_32F);
  for (std::size_t s = 0; s < subject_rows.size(); ++s) {
    std::copy(subject_rows[s].begin(), subject_rows[s].end(), subjects.ptr<float>(static_cast<int>(s)));
  }
  cv::Mat scores;
  cv::gemm(subjects, faces, 1.0, cv::noArray(), 0.0, scores, cv::GEMM_2_T);
  for (std::size_t s = 0; s < subject_person.size(); ++s) {
    const float* row = scores.ptr<float>(static_cast<int>(s));
    for (std::size_t f = 0; f < face_image.size(); ++f) {
      if (owner[f] != subject_person[s]) out.impostor.push_back(row[f]);
      else if (place[f] >= k) out.genuine.push_back(row[f]);  // the enrolled photos themselves are not probes
    }
  }
  return out;
}

Result<CollectionCalibration> calibrate_points(std::span<const PersonImages> people,
                                               const std::vector<std::vector<float>>& templates,
                                               std::span<const OperatingPoint> shipped, const std::string& model_id,
                                               TimePoint now) {
  CollectionCalibration c;
  c.model_id = model_id;
  c.calibrated_at = now;
  for (const PersonImages& p : people) {
    const auto readable = std::count_if(p.begin(), p.end(), [&](std::size_t i) { return !templates.at(i).empty(); });
    c.images += readable;
    c.people += readable > 0;
  }
  if (c.people < 2) {
    return Error{ErrorCode::kInvalidArgument, "calibration needs photos of at least two people (folders); " +
                                                  std::to_string(c.people) + " gave a face"};
  }
  std::vector<SubjectScores> by_k;
  for (int k = 1; k <= kCalibrationPhotos; ++k) by_k.push_back(subject_scores(people, templates, k));
  c.impostor_scores = static_cast<std::int64_t>(by_k[0].impostor.size());
  c.genuine_scores = static_cast<std::int64_t>(by_k[0].genuine.size());
  const auto resolves = [](const SubjectScores& s, double fmr) {
    return static_cast<double>(s.impostor.size()) >= kRuleOfThree / fmr;
  };
  for (const OperatingPoint& ship : shipped) {
    if (!resolves(by_k[0], ship.fmr)) continue;
    CalibratedPoint p;
    p.point.name = ship.name;
    p.point.fmr = ship.fmr;
    double first = 0;
    for (std::size_t k = 1; k <= by_k.size(); ++k) {
      const SubjectScores& s = by_k[k - 1];
      const bool measured = resolves(s, ship.fmr);
      double t = measured ? threshold_at_fmr(s.impostor, ship.fmr)
                          : first + (subject_threshold(ship, k) - subject_threshold(ship, 1));
      t = round_threshold_up(t);
      // The threshold rises with k (the mean of more faces is nearer every face): a dip
      // measured on fewer subjects is sampling noise, not a looser point.
      if (k > 1) t = std::max(t, static_cast<double>(p.point.subject_thresholds.back()));
      if (k == 1) first = t;
      p.point.subject_thresholds.push_back(static_cast<float>(t));
      p.tar.push_back(s.genuine.empty() ? std::nan("") : accepted_fraction(s.genuine, t));
      p.extrapolated.push_back(!measured);
    }
    p.point.threshold = p.point.subject_thresholds.front();  // a one-photo template is that face
    c.points.push_back(std::move(p));
  }
  if (c.points.empty()) {
    const double strictest_needed = shipped.empty() ? 0.0 : kRuleOfThree / shipped.front().fmr;
    return Error{ErrorCode::kInvalidArgument,
                 std::to_string(c.people) + " people and " + std::to_string(c.images) + " images give " +
                     std::to_string(c.impostor_scores) + " impostor comparisons; resolving FMR " +
                     (shipped.empty() ? std::string("?") : std::to_string(shipped.front().fmr)) + " needs at least " +
                     std::to_string(static_cast<long long>(strictest_needed)) +
                     " (the rule of three): add people (comparisons grow with the square of the images)"};
  }
  return c;
}

OperatingPoint collection_operating_point(const Collection& c, std::span<const OperatingPoint> shipped,
                                          const std::string& model_id) {
  const auto shipped_named = [&](const std::string& name) -> const OperatingPoint* {
    for (const OperatingPoint& p : shipped) {
      if (p.name == name) return &p;
    }
    return nullptr;
  };
  if (c.calibration) {
    for (const CalibratedPoint& p : c.calibration->points) {
      if (p.point.threshold != c.match_threshold) continue;
      if (c.calibration->model_id == model_id) return p.point;
      // Calibrated for another recogniser: its scores mean nothing for this one.
      if (const OperatingPoint* s = shipped_named(p.point.name)) return *s;
    }
  }
  for (const OperatingPoint& p : shipped) {
    if (p.threshold == c.match_threshold) return p;
  }
  return OperatingPoint{"custom", 0, c.match_threshold, {}};
}

std::vector<OperatingPoint> collection_points(const Collection& c, std::span<const OperatingPoint> shipped,
                                              const std::string& model_id) {
  std::vector<OperatingPoint> out;
  if (c.calibration && c.calibration->model_id == model_id) {
    for (const CalibratedPoint& p : c.calibration->points) out.push_back(p.point);
  }
  if (out.empty()) out.assign(shipped.begin(), shipped.end());
  return out;
}

OperatingPoint point_at_fmr(std::span<const OperatingPoint> points, double fmr) {
  if (!(fmr > 0 && fmr < 1)) throw std::invalid_argument("point_at_fmr: fmr must be in (0, 1)");
  std::vector<const OperatingPoint*> loosest_first;
  for (const OperatingPoint& p : points) {
    if (p.fmr > 0) loosest_first.push_back(&p);
  }
  if (loosest_first.empty()) throw std::invalid_argument("point_at_fmr: no point with a false match rate");
  std::sort(loosest_first.begin(), loosest_first.end(),
            [](const OperatingPoint* a, const OperatingPoint* b) { return a->fmr > b->fmr; });
  std::size_t photo_counts = 1;
  for (const OperatingPoint* p : loosest_first) photo_counts = std::max(photo_counts, p->subject_thresholds.size());
  // The segment fmr falls in: [a, b] with a looser than b; past the strict end, the last one.
  std::size_t b = 0;
  while (b < loosest_first.size() && loosest_first[b]->fmr > fmr) ++b;
  OperatingPoint out;
  out.fmr = fmr;
  char name[32];
  std::snprintf(name, sizeof name, "fmr-%.2g", fmr);
  out.name = name;
  for (std::size_t k = 1; k <= photo_counts; ++k) {
    double t = 0;
    if (b == 0 || loosest_first.size() == 1) {
      t = subject_threshold(*loosest_first[b == 0 ? 0 : loosest_first.size() - 1], k);  // no segment to read
    } else {
      const std::size_t hi = std::min(b, loosest_first.size() - 1);
      const OperatingPoint& pa = *loosest_first[hi - 1];
      const OperatingPoint& pb = *loosest_first[hi];
      const double ta = subject_threshold(pa, k);
      const double tb = subject_threshold(pb, k);
      const double along = (std::log10(fmr) - std::log10(pa.fmr)) / (std::log10(pb.fmr) - std::log10(pa.fmr));
      t = ta + (tb - ta) * along;
    }
    // Rounded up as calibrated thresholds are, less a float's representation error: a
    // point's own threshold (0.34F is 0.3400000036) reads back as itself.
    t = std::min(round_threshold_up(t - 1e-6), 1.0);
    if (k > 1) t = std::max(t, static_cast<double>(out.subject_thresholds.back()));
    out.subject_thresholds.push_back(static_cast<float>(t));
  }
  out.threshold = out.subject_thresholds.front();
  return out;
}

OperatingPoint identification_point(const OperatingPoint& decides_at, std::span<const OperatingPoint> points,
                                    std::size_t subjects, double fpir) {
  if (!(fpir > 0 && fpir < 1)) throw std::invalid_argument("identification_point: fpir must be in (0, 1)");
  if (subjects == 0) return decides_at;
  const OperatingPoint gallery = point_at_fmr(points, fpir / static_cast<double>(subjects));
  OperatingPoint out = decides_at;
  const std::size_t photo_counts = std::max(decides_at.subject_thresholds.size(), gallery.subject_thresholds.size());
  out.subject_thresholds.clear();
  for (std::size_t k = 1; k <= photo_counts; ++k) {
    out.subject_thresholds.push_back(std::max(subject_threshold(decides_at, k), subject_threshold(gallery, k)));
  }
  out.threshold = out.subject_thresholds.front();
  if (decides_at.fmr == 0 || gallery.fmr < decides_at.fmr) out.fmr = gallery.fmr;
  char name[64];
  std::snprintf(name, sizeof name, "fpir-%.2g/%zu", fpir, subjects);
  out.name = name;
  return out;
}

}  // namespace candor
