// Operating points measured on an operator's people (candor/calibration.h), held to the
// plain definitions: the threshold is the (1 - FMR) quantile of the impostor scores of
// subject templates, computed here from subject_scores() and threshold_at_fmr().
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../engine/test_support.h"
#include "../store/store_test_util.h"
#include "candor/calibration.h"
#include "candor/collections.h"

namespace candor {
namespace {

// `people` people with `photos[p]` photos each: a random unit centre per person plus
// noise, so that impostor scores are near 0 and genuine ones high.
struct SyntheticPeople {
  std::vector<std::vector<float>> templates;
  std::vector<PersonImages> people;
};

SyntheticPeople synthetic_people(const std::vector<int>& photos, std::uint32_t seed, int kDim = 64) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0F, 1.0F);
  const auto unit = [](std::vector<float> v) {
    double n = 0;
    for (float x : v) n += static_cast<double>(x) * x;
    for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
    return v;
  };
  SyntheticPeople out;
  for (int count : photos) {
    std::vector<float> centre(kDim);
    for (float& x : centre) x = normal(rng);
    centre = unit(centre);
    PersonImages& images = out.people.emplace_back();
    for (int i = 0; i < count; ++i) {
      std::vector<float> t(kDim);
      for (int d = 0; d < kDim; ++d) t[d] = centre[d] + 0.12F * normal(rng);
      images.push_back(out.templates.size());
      out.templates.push_back(unit(t));
    }
  }
  return out;
}

const std::vector<OperatingPoint> kShipped = {
    {"fmr-1e-2", 1e-2, 0.30F, {0.30F, 0.31F, 0.32F, 0.33F, 0.34F}},
    {"fmr-1e-3", 1e-3, 0.34F, {0.34F, 0.35F, 0.36F, 0.37F, 0.38F}},
};

TEST(Calibration, ThresholdsAreTheImpostorQuantilesOfSubjectTemplates) {
  // 40 people with 4 photos: at k = 1, 40 subjects x 156 other faces = 6,240 impostor
  // scores resolve FMR 1e-2 (>= 300) and 1e-3 (>= 3,000); nobody has 5 photos.
  const std::vector<int> photos(40, 4);
  const SyntheticPeople set = synthetic_people(photos, 7);
  auto c = calibrate_points(set.people, set.templates, kShipped, "model-x", TimePoint{});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->people, 40);
  EXPECT_EQ(c->images, 160);
  EXPECT_EQ(c->impostor_scores, 40 * 156);
  EXPECT_EQ(c->genuine_scores, 40 * 3);
  EXPECT_EQ(c->model_id, "model-x");
  ASSERT_EQ(c->points.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const CalibratedPoint& p = c->points[i];
    EXPECT_EQ(p.point.name, kShipped[i].name);
    ASSERT_EQ(p.point.subject_thresholds.size(), static_cast<std::size_t>(kCalibrationPhotos));
    double previous = -1;
    for (int k = 1; k <= kCalibrationPhotos; ++k) {
      const SubjectScores s = subject_scores(set.people, set.templates, k);
      const float t = p.point.subject_thresholds[k - 1];
      const bool resolved = static_cast<double>(s.impostor.size()) >= 3.0 / kShipped[i].fmr;
      EXPECT_EQ(p.extrapolated[k - 1], !resolved) << k;
      if (resolved) {
        const double plain = std::max(round_threshold_up(threshold_at_fmr(s.impostor, kShipped[i].fmr)), previous);
        EXPECT_NEAR(t, plain, 1e-6) << p.point.name << " k=" << k;
        std::size_t accepted = 0;
        for (float g : s.genuine) accepted += g >= t;
        if (s.genuine.empty()) {
          EXPECT_TRUE(std::isnan(p.tar[k - 1])) << k;  // k = 4: nobody has a fifth photo to probe with
        } else {
          EXPECT_NEAR(p.tar[k - 1], static_cast<double>(accepted) / static_cast<double>(s.genuine.size()), 1e-12);
        }
      } else {
        // k = 5: nobody has five photos; the k = 1 threshold plus the shipped step.
        const double step = subject_threshold(kShipped[i], k) - subject_threshold(kShipped[i], 1);
        EXPECT_NEAR(t, std::max(round_threshold_up(p.point.subject_thresholds[0] + step), previous), 1e-4) << k;
        EXPECT_TRUE(std::isnan(p.tar[k - 1]));
      }
      EXPECT_GE(t, previous);
      previous = t;
    }
    EXPECT_EQ(p.point.threshold, p.point.subject_thresholds[0]);
    EXPECT_GT(p.tar[0], 0.8);
  }
  EXPECT_LT(c->points[0].point.threshold, c->points[1].point.threshold);  // 1e-2 is the looser point
}

TEST(Calibration, APointTheSetCannotResolveIsLeftOut) {
  // 12 people x 3 photos: 12 x 33 = 396 impostor scores resolve 1e-2 (300) but not 1e-3.
  const SyntheticPeople set = synthetic_people(std::vector<int>(12, 3), 3);
  auto c = calibrate_points(set.people, set.templates, kShipped, "m", TimePoint{});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->points.size(), 1u);
  EXPECT_EQ(c->points[0].point.name, "fmr-1e-2");

  const SyntheticPeople few = synthetic_people({3, 3, 3}, 3);  // 18 comparisons
  auto refused = calibrate_points(few.people, few.templates, kShipped, "m", TimePoint{});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("18 impostor comparisons"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("at least 300"), std::string::npos) << refused.error().message;

  const SyntheticPeople one = synthetic_people({50}, 3);
  auto alone = calibrate_points(one.people, one.templates, kShipped, "m", TimePoint{});
  ASSERT_FALSE(alone.ok());
  EXPECT_NE(alone.error().message.find("at least two people"), std::string::npos);
}

TEST(Calibration, UnreadablePhotosAreNoComparison) {
  SyntheticPeople set = synthetic_people(std::vector<int>(40, 4), 11);
  const auto full = subject_scores(set.people, set.templates, 1);
  set.templates[set.people[0][0]].clear();  // the first person's first photo gave no face
  const auto fewer = subject_scores(set.people, set.templates, 1);
  // That person's subject is now their 2nd photo (3 photos left: 2 genuine), and the
  // 39 other subjects lose one impostor face each.
  EXPECT_EQ(fewer.subjects, 40u);
  EXPECT_EQ(fewer.impostor.size(), full.impostor.size() - 39);
  EXPECT_EQ(fewer.genuine.size(), full.genuine.size() - 1);
}

TEST(Calibration, ACollectionDecidesAtItsCalibratedPointForItsModelOnly) {
  Collection c;
  c.match_threshold = 0.34F;  // shipped fmr-1e-3
  EXPECT_EQ(collection_operating_point(c, kShipped, "m").name, "fmr-1e-3");
  EXPECT_EQ(collection_operating_point(c, kShipped, "m").subject_thresholds, kShipped[1].subject_thresholds);

  CollectionCalibration cal;
  cal.model_id = "m";
  cal.points.push_back({OperatingPoint{"fmr-1e-3", 1e-3, 0.2F, {0.2F, 0.21F}}, {0.9, 0.9}, {false, false}});
  c.calibration = cal;
  c.match_threshold = 0.2F;
  const OperatingPoint mine = collection_operating_point(c, kShipped, "m");
  EXPECT_EQ(mine.name, "fmr-1e-3");
  EXPECT_FLOAT_EQ(subject_threshold(mine, 2), 0.21F);
  // Calibrated for another recogniser: the shipped point of the same name.
  const OperatingPoint other = collection_operating_point(c, kShipped, "another-model");
  EXPECT_FLOAT_EQ(other.threshold, 0.34F);
  EXPECT_FLOAT_EQ(subject_threshold(other, 2), 0.35F);
  // A threshold set by hand is used for every photo count.
  c.calibration.reset();
  c.match_threshold = 0.5F;
  EXPECT_EQ(collection_operating_point(c, kShipped, "m").name, "custom");
  EXPECT_FLOAT_EQ(subject_threshold(collection_operating_point(c, kShipped, "m"), 3), 0.5F);
}

// Between two points a threshold is read linearly in log10(FMR), per photo count; past
// the strict end the last segment's slope carries on; past the loose end the loosest
// point holds (never extrapolated towards accepting more).
TEST(Calibration, ThresholdsBetweenPointsAreReadInLogFmr) {
  const OperatingPoint mid = point_at_fmr(kShipped, std::pow(10.0, -2.5));
  EXPECT_NEAR(mid.threshold, 0.32, 1e-4);
  ASSERT_EQ(mid.subject_thresholds.size(), 5u);
  EXPECT_NEAR(subject_threshold(mid, 3), 0.34, 1e-4);
  EXPECT_DOUBLE_EQ(mid.fmr, std::pow(10.0, -2.5));
  const OperatingPoint strict = point_at_fmr(kShipped, 1e-4);
  EXPECT_NEAR(strict.threshold, 0.38, 1e-4);
  EXPECT_NEAR(subject_threshold(strict, 5), 0.42, 1e-4);
  const OperatingPoint loose = point_at_fmr(kShipped, 0.2);
  EXPECT_FLOAT_EQ(loose.threshold, 0.30F);
  EXPECT_FLOAT_EQ(subject_threshold(loose, 5), 0.34F);
  // Rounded up to four decimals: never a hair looser than the reading.
  const OperatingPoint rounded = point_at_fmr(kShipped, 0.005);
  const double exact = 0.30 - 0.04 * (std::log10(0.005) + 2);  // 0.3120
  EXPECT_GE(rounded.threshold, exact);
  EXPECT_LT(rounded.threshold, exact + 1e-4);
  // One point: that point, whatever the FMR.
  EXPECT_FLOAT_EQ(point_at_fmr(std::span(kShipped).first(1), 1e-6).threshold, 0.30F);
  EXPECT_THROW(point_at_fmr(kShipped, 0.0), std::invalid_argument);
  EXPECT_THROW(point_at_fmr({}, 1e-3), std::invalid_argument);
}

// The FPIR of a gallery of N subjects is at most N times one comparison's FMR: the point
// is read at fpir / N, rises with N, and never falls below the collection's own point.
TEST(Calibration, AnIdentificationPointRisesWithTheGalleryAndKeepsAStricterOwnPoint) {
  const OperatingPoint& own = kShipped[0];  // fmr-1e-2
  // 1 subject at FPIR 0.05: FMR 0.05 is looser than the collection's point, which holds.
  EXPECT_EQ(identification_point(own, kShipped, 1, 0.05).subject_thresholds, own.subject_thresholds);
  // 10 subjects at FPIR 1e-2: FMR 1e-3.
  const OperatingPoint ten = identification_point(own, kShipped, 10, 1e-2);
  EXPECT_NEAR(ten.threshold, 0.34, 1e-4);
  EXPECT_NEAR(subject_threshold(ten, 4), 0.37, 1e-4);
  EXPECT_NEAR(ten.fmr, 1e-3, 1e-12);
  // 100 subjects: FMR 1e-4, a decade past the strictest point.
  const OperatingPoint hundred = identification_point(own, kShipped, 100, 1e-2);
  EXPECT_NEAR(hundred.threshold, 0.38, 1e-4);
  EXPECT_GT(hundred.threshold, ten.threshold);
  // A collection stricter than the gallery needs keeps its own thresholds.
  const OperatingPoint strict_own{"custom", 0, 0.5F, {}};
  const OperatingPoint kept = identification_point(strict_own, kShipped, 10, 1e-2);
  EXPECT_FLOAT_EQ(subject_threshold(kept, 1), 0.5F);
  EXPECT_FLOAT_EQ(subject_threshold(kept, 5), 0.5F);
  EXPECT_EQ(identification_point(own, kShipped, 0, 1e-2).subject_thresholds, own.subject_thresholds);
  EXPECT_THROW(identification_point(own, kShipped, 10, 0.0), std::invalid_argument);
  EXPECT_THROW(identification_point(own, kShipped, 10, 1.0), std::invalid_argument);
}

// Collections::calibrate stores the measured points, the collection decides at its own
// point's calibrated threshold from the next search, a second node sees it after sync(),
// and reset goes back to the shipped point; each change is one audit entry.
TEST(CollectionsCalibration, StoredAuditedUsedAndReset) {
  test::TempDir dir;
  test::TestClock clock;
  auto store = open_store(dir.file("c.db"), test::options_with_key(&clock));
  ASSERT_TRUE(store.ok()) << store.error().message;
  const Engine& engine = test::shared_engine();
  auto node_a = Collections::open(engine, **store);
  auto node_b = Collections::open(engine, **store);
  ASSERT_TRUE(node_a.ok() && node_b.ok());
  NewCollection spec;
  spec.name = "staff";
  spec.purpose = std::string(test::kPurpose);
  const AuditContext admin{"admin", "calibrated on the 2026 staff photo set"};
  ASSERT_TRUE((*node_a)->create_collection(spec, "fmr-1e-3", admin).ok());
  const ModelSpec& recognizer = engine.recognizer_spec();
  const OperatingPoint shipped = *find_operating_point(recognizer, "fmr-1e-3");

  const SyntheticPeople set = synthetic_people(std::vector<int>(40, 4), 5, recognizer.dim);
  std::vector<std::vector<std::vector<float>>> people;
  for (const PersonImages& p : set.people) {
    auto& person = people.emplace_back();
    for (std::size_t i : p) person.push_back(set.templates[i]);
  }
  people[3].push_back({});  // a photo without a face: skipped
  auto report = (*node_a)->calibrate("staff", people, admin);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->previous.name, "fmr-1e-3");
  EXPECT_FLOAT_EQ(report->previous.threshold, shipped.threshold);
  ASSERT_TRUE(report->collection.calibration.has_value());
  const CollectionCalibration& cal = *report->collection.calibration;
  EXPECT_EQ(cal.model_id, recognizer.id);
  EXPECT_EQ(cal.images, 160);
  const CalibratedPoint* point = nullptr;
  for (const CalibratedPoint& p : cal.points) {
    if (p.point.name == "fmr-1e-3") point = &p;
  }
  ASSERT_NE(point, nullptr);
  for (const CalibratedPoint& p : cal.points) EXPECT_NE(p.point.name, "fmr-1e-5");  // 6,240 scores cannot resolve it
  EXPECT_EQ(report->decides_at.name, "fmr-1e-3");
  EXPECT_FLOAT_EQ(report->decides_at.threshold, point->point.threshold);
  EXPECT_LT(point->point.threshold, shipped.threshold - 0.1F);  // synthetic impostors sit near 0

  auto stored = (*store)->get_collection("staff");
  ASSERT_TRUE(stored.ok());
  EXPECT_FLOAT_EQ(stored->match_threshold, point->point.threshold);
  auto audit = (*store)->audit_list(AuditFilter{});
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(audit->back().operation, "calibrate");
  EXPECT_EQ(audit->back().reason, admin.reason);

  // The next search decides at the calibrated threshold, on this node and (after sync) the other.
  const std::vector<std::uint8_t> probe = test::face_crop_jpeg(1, 2, 0.3f);
  const AuditContext guard{"guard", "door 3 entry"};
  auto a = (*node_a)->search("staff", probe, 5, guard);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_FLOAT_EQ(a->threshold, point->point.threshold);
  ASSERT_TRUE((*node_b)->sync().ok());
  auto b = (*node_b)->search("staff", probe, 5, guard);
  ASSERT_TRUE(b.ok());
  EXPECT_FLOAT_EQ(b->threshold, point->point.threshold);

  // Too few people: refused, nothing changes.
  auto refused = (*node_a)->calibrate("staff", std::span(people).first(2), admin);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_FLOAT_EQ((*store)->get_collection("staff")->match_threshold, point->point.threshold);
  auto wrong_dim = people;
  wrong_dim[0][0].resize(7);
  EXPECT_EQ((*node_a)->calibrate("staff", wrong_dim, admin).error().code, ErrorCode::kInvalidArgument);

  auto reset = (*node_a)->reset_calibration("staff", admin);
  ASSERT_TRUE(reset.ok()) << reset.error().message;
  EXPECT_FALSE(reset->calibration.has_value());
  EXPECT_FLOAT_EQ(reset->match_threshold, shipped.threshold);
  auto after = (*node_a)->search("staff", probe, 5, guard);
  ASSERT_TRUE(after.ok());
  EXPECT_FLOAT_EQ(after->threshold, shipped.threshold);
  EXPECT_TRUE((*store)->audit_verify()->intact);
}

}  // namespace
}  // namespace candor
