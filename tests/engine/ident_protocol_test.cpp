// The bookkeeping of `candor bench lfw-ident` and `candor bench calibrate --subjects`
// (bench/engine/lfw_ident.h) on tiny synthetic sets, without LFW.
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "candor/collections.h"
#include "engine/lfw_ident.h"

namespace candor::bench {
namespace {

// People with 1, 2, 3, 4 and 6 photos; image indices numbered consecutively.
std::vector<PersonImages> five_people() {
  std::vector<PersonImages> people;
  std::size_t next = 0;
  for (std::size_t n : {1u, 2u, 3u, 4u, 6u}) {
    people.emplace_back();
    for (std::size_t i = 0; i < n; ++i) people.back().push_back(next++);
  }
  return people;
}

std::vector<std::size_t> probe_images(const std::vector<IdentProbe>& probes) {
  std::vector<std::size_t> out;
  for (const auto& p : probes) out.push_back(p.image);
  return out;
}

TEST(IdentProtocol, MultiPhotoProbesAreTheFourthPhotoOnForEveryK) {
  const auto people = five_people();  // images: [0] [1 2] [3 4 5] [6 7 8 9] [10 .. 15]
  for (int k = 1; k <= kMaxIdentEnrollImages; ++k) {
    const IdentProtocol p = multi_photo_protocol(people, k);
    ASSERT_EQ(p.gallery.size(), 4u) << k;
    EXPECT_EQ(p.distractors, 2u);
    // The 2- and 3-photo people: distractors from their first photo, never probes.
    EXPECT_EQ(p.gallery[0], std::vector<std::size_t>{1});
    EXPECT_EQ(p.gallery[1], std::vector<std::size_t>{3});
    std::vector<std::size_t> first_k_of_4, first_k_of_6;
    for (int i = 0; i < k; ++i) first_k_of_4.push_back(6 + static_cast<std::size_t>(i)), first_k_of_6.push_back(10 + static_cast<std::size_t>(i));
    EXPECT_EQ(p.gallery[2], first_k_of_4);
    EXPECT_EQ(p.gallery[3], first_k_of_6);
    EXPECT_EQ(probe_images(p.mated), (std::vector<std::size_t>{9, 13, 14, 15})) << k;
    EXPECT_EQ(p.mated[0].mate, 2);
    for (std::size_t i = 1; i < 4; ++i) EXPECT_EQ(p.mated[i].mate, 3);
    EXPECT_EQ(probe_images(p.non_mated), std::vector<std::size_t>{0});
    EXPECT_EQ(p.non_mated[0].mate, -1);
  }
  EXPECT_THROW(multi_photo_protocol(people, 0), std::invalid_argument);
  EXPECT_THROW(multi_photo_protocol(people, kMaxIdentEnrollImages + 1), std::invalid_argument);
}

TEST(IdentProtocol, OnePhotoProbesEveryOtherPhoto) {
  const IdentProtocol p = one_photo_protocol(five_people());
  ASSERT_EQ(p.gallery.size(), 4u);
  EXPECT_EQ(p.distractors, 0u);
  EXPECT_EQ(p.gallery[3], std::vector<std::size_t>{10});
  EXPECT_EQ(probe_images(p.mated), (std::vector<std::size_t>{2, 4, 5, 7, 8, 9, 11, 12, 13, 14, 15}));
  EXPECT_EQ(p.mated.front().mate, 0);
  EXPECT_EQ(p.mated.back().mate, 3);
  EXPECT_EQ(probe_images(p.non_mated), std::vector<std::size_t>{0});
}

std::vector<float> unit(float x, float y) { return {x, y, std::sqrt(1.0f - x * x - y * y)}; }

// Subject A enrolled from two orthogonal faces, B from one face between them and the
// third axis; probes where the three aggregates disagree about who is nearest.
struct AggregateCase {
  std::vector<std::vector<float>> templates = {
      {1, 0, 0},         // 0: A's first face
      {0, 1, 0},         // 1: A's second face
      {0.8f, 0, 0.6f},   // 2: B
      unit(1, 0),        // 3: A's mate: max 1.0 > B 0.8 > centroid 0.707 > mean 0.5
      unit(0.6f, 0.6f),  // 4: A's mate: centroid 0.849 > B 0.797 > max = mean 0.6
      unit(0.9f, 0.4f),  // 5: nobody's: max A 0.9, mean B 0.824, centroid A 0.919
  };
  IdentProtocol protocol{{{0, 1}, {2}}, {{3, 0}, {4, 0}}, {{5, -1}}, 0};
};

TEST(IdentProtocol, AggregatesScoreSubjectsOfSeveralFaces) {
  const AggregateCase c;
  const double fpirs[] = {1e-2};
  struct Want {
    Aggregate aggregate;
    std::size_t rank1_hits;
    double non_mated_top;  // the one non-mated probe's top-1 score: the threshold sits just above it
    double fnir;
  };
  const double centroid_a = (0.9 + 0.4) / std::sqrt(2.0);
  const double b = 0.8 * 0.9 + 0.6 * std::sqrt(1.0 - 0.81 - 0.16);
  for (const Want& w : {Want{Aggregate::kMax, 1, 0.9, 0.5}, Want{Aggregate::kMean, 0, b, 1.0},
                        Want{Aggregate::kCentroid, 1, centroid_a, 1.0}}) {
    const IdentResult r = evaluate_ident(c.protocol, c.templates, w.aggregate, fpirs);
    SCOPED_TRACE(aggregate_name(w.aggregate));
    EXPECT_EQ(r.rank1_hits, w.rank1_hits);
    EXPECT_DOUBLE_EQ(r.rank1, static_cast<double>(w.rank1_hits) / 2.0);
    ASSERT_EQ(r.at.size(), 1u);
    EXPECT_NEAR(r.at[0].threshold, w.non_mated_top, 1e-5);
    EXPECT_GT(r.at[0].threshold, w.non_mated_top - 1e-7);  // no false positive allowed among one probe
    EXPECT_EQ(r.at[0].false_positives, 0u);
    EXPECT_DOUBLE_EQ(r.at[0].fnir, w.fnir);
  }
  // The centroid's hit (probe 4, score 0.849) is below the threshold 0.919 set by the
  // non-mated probe, so it counts as a miss: FNIR 1.0 although rank-1 is 0.5.
  for (Aggregate a : kAggregates) EXPECT_EQ(parse_aggregate(aggregate_name(a)), a);
  EXPECT_FALSE(parse_aggregate("median").has_value());
}

TEST(IdentProtocol, UnreadableImagesAreLeftOutOfCentroidsAndFindNobody) {
  AggregateCase c;
  c.templates.push_back({});                 // 6: an unreadable photo of A
  c.protocol.gallery[0] = {0, 6};            // A's centroid is its first face alone
  c.protocol.non_mated.push_back({6, -1});   // an unreadable probe scores -2
  const double fpirs[] = {0.5};              // one of two non-mated probes may pass
  const IdentResult r = evaluate_ident(c.protocol, c.templates, Aggregate::kCentroid, fpirs);
  // Probe 3 is A's first face exactly: top-1 A at 1.0; probe 4 scores 0.6 on A, below B's 0.797.
  EXPECT_EQ(r.rank1_hits, 1u);
  // Non-mated tops: probe 5 -> A at 0.9, the unreadable one -> -2: the threshold sits just above -2.
  EXPECT_NEAR(r.at[0].threshold, -2.0, 1e-6);
  EXPECT_EQ(r.at[0].false_positives, 1u);
}

// A threshold fixed beforehand (a search at SearchOptions::fpir) is scored as given: the
// non-mated probes at or above it, and the mated probes not named right at it.
TEST(IdentProtocol, AFixedThresholdIsScoredAsGiven) {
  const AggregateCase c;
  const double fpirs[] = {1e-2, 0.5};
  const double fixed[] = {0.95, 0.85};  // max aggregate: the non-mated top is 0.9, A's mates 1.0 and 0.6
  const IdentResult r = evaluate_ident(c.protocol, c.templates, Aggregate::kMax, fpirs, fixed);
  ASSERT_EQ(r.at_fixed.size(), 2u);
  EXPECT_DOUBLE_EQ(r.at_fixed[0].threshold, 0.95);
  EXPECT_DOUBLE_EQ(r.at_fixed[0].fpir, 1e-2);
  EXPECT_EQ(r.at_fixed[0].false_positives, 0u);
  EXPECT_DOUBLE_EQ(r.at_fixed[0].fnir, 0.5);  // probe 3 named at 1.0, probe 4 below
  EXPECT_EQ(r.at_fixed[1].false_positives, 1u);
  EXPECT_TRUE(evaluate_ident(c.protocol, c.templates, Aggregate::kMax, fpirs).at_fixed.empty());
}

std::vector<std::vector<float>> random_templates(std::size_t n, std::size_t dim, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<std::vector<float>> out(n, std::vector<float>(dim));
  for (auto& t : out) {
    float norm = 0;
    for (float& v : t) v = g(rng), norm += v * v;
    for (float& v : t) v /= std::sqrt(norm);
  }
  return out;
}

float cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

TEST(SubjectCalibration, SubjectsOfKPhotosAgainstEveryOtherPersonsFaces) {
  // Three people with 3, 2 and 1 photos.
  const std::vector<PersonImages> people = {{0, 1, 2}, {3, 4}, {5}};
  const auto templates = random_templates(6, 8, 7);
  const double fmrs[] = {1e-3, 0.5};
  const SubjectCalibration one = calibrate_subject_thresholds(people, templates, 1, fmrs);
  EXPECT_EQ(one.subjects, 3u);
  EXPECT_EQ(one.impostor_scores, 3u + 4u + 5u);
  EXPECT_EQ(one.genuine_scores, 2u + 1u);  // photos after the first

  const SubjectCalibration two = calibrate_subject_thresholds(people, templates, 2, fmrs);
  EXPECT_EQ(two.subjects, 2u);
  EXPECT_EQ(two.impostor_scores, 3u + 4u);
  EXPECT_EQ(two.genuine_scores, 1u);  // the third photo of the first person
  // The plain reference: every score of a 2-photo subject template against another person's face.
  std::vector<float> impostor;
  const std::vector<float> s0 = subject_template(std::vector<std::vector<float>>{templates[0], templates[1]});
  const std::vector<float> s1 = subject_template(std::vector<std::vector<float>>{templates[3], templates[4]});
  for (std::size_t f : {3u, 4u, 5u}) impostor.push_back(cosine(s0, templates[f]));
  for (std::size_t f : {0u, 1u, 2u, 5u}) impostor.push_back(cosine(s1, templates[f]));
  std::sort(impostor.begin(), impostor.end(), std::greater<>());
  ASSERT_EQ(two.at.size(), 2u);
  // FMR 1e-3 of 7 impostors allows none: just above the highest.
  EXPECT_NEAR(two.at[0].threshold, impostor[0], 1e-5);
  EXPECT_GT(two.at[0].threshold, impostor[0] - 1e-6);
  EXPECT_EQ(two.at[0].achieved_false_rate, 0.0);
  // FMR 0.5 allows three of seven: just above the fourth highest.
  EXPECT_NEAR(two.at[1].threshold, impostor[3], 1e-5);
  EXPECT_NEAR(two.at[1].achieved_false_rate, 3.0 / 7.0, 1e-9);
  const float genuine = cosine(s0, templates[2]);
  EXPECT_DOUBLE_EQ(two.at[1].rate, genuine >= two.at[1].threshold ? 1.0 : 0.0);
  EXPECT_THROW(calibrate_subject_thresholds(people, templates, 0, fmrs), std::invalid_argument);
}

}  // namespace
}  // namespace candor::bench
