// The subject gallery held against a plain reference: subject templates recomputed from
// scratch (the mean of the subject's remaining faces, renormalised) and an exhaustive
// scan, through a random sequence of additions and removals.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "candor/collections.h"
#include "collections/subject_gallery.h"

namespace candor {
namespace {

using collections_detail::SubjectGallery;

std::vector<float> unit(std::mt19937& rng, int dim) {
  std::normal_distribution<float> n(0, 1);
  std::vector<float> v(static_cast<std::size_t>(dim));
  double norm = 0;
  for (float& x : v) x = n(rng), norm += static_cast<double>(x) * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

TEST(SubjectGallery, MatchesAPlainRecomputationThroughAddsAndRemoves) {
  constexpr int kDim = 32;
  std::mt19937 rng(7);
  for (const char* spec : {"Flat", "SQ8,Refine"}) {
    SubjectGallery gallery(kDim, spec);
    std::map<std::string, std::map<FaceId, std::vector<float>>> truth;
    FaceId next = 1;
    for (int step = 0; step < 300; ++step) {
      std::string subject = "s";
      subject += std::to_string(rng() % 12);  // appended: GCC 12 misreads "s" + to_string (-Wrestrict)
      if (rng() % 3 != 0 || truth.empty()) {
        const FaceId id = next++;
        auto t = unit(rng, kDim);
        gallery.add(subject, std::span<const FaceId>(&id, 1), t);
        truth[subject][id] = t;
      } else {
        auto& faces = truth.begin()->second;
        const FaceId id = faces.begin()->first;
        EXPECT_EQ(gallery.remove(std::span<const FaceId>(&id, 1)), 1u);
        faces.erase(faces.begin());
        if (faces.empty()) truth.erase(truth.begin());
      }
    }
    std::size_t faces = 0;
    for (const auto& [s, f] : truth) faces += f.size();
    EXPECT_EQ(gallery.faces(), faces);
    EXPECT_EQ(gallery.subjects(), truth.size());
    for (int q = 0; q < 20; ++q) {
      const auto probe = unit(rng, kDim);
      std::vector<std::pair<float, std::string>> expected;
      for (const auto& [subject, f] : truth) {
        std::vector<std::vector<float>> rows;
        for (const auto& [id, t] : f) rows.push_back(t);
        const auto centroid = subject_template(rows);
        float score = 0;
        for (int d = 0; d < kDim; ++d) score += centroid[static_cast<std::size_t>(d)] * probe[static_cast<std::size_t>(d)];
        expected.emplace_back(score, subject);
      }
      std::sort(expected.rbegin(), expected.rend());
      const auto got = gallery.search(probe, 3);
      ASSERT_EQ(got.size(), std::min<std::size_t>(3, expected.size())) << spec;
      for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].subject, expected[i].second) << spec << " rank " << i;
        EXPECT_NEAR(got[i].score, expected[i].first, 1e-4) << spec;
        EXPECT_EQ(got[i].faces, truth.at(got[i].subject).size());
      }
    }
  }
}

TEST(SubjectGallery, BestFaceIsTheMostSimilarLiveFace) {
  std::mt19937 rng(3);
  SubjectGallery gallery(16, "Flat");
  const auto a = unit(rng, 16), b = unit(rng, 16);
  std::vector<float> rows = a;
  rows.insert(rows.end(), b.begin(), b.end());
  const std::vector<FaceId> ids{10, 11};
  gallery.add("anna", ids, rows);
  EXPECT_EQ(gallery.best_face("anna", b, {10, 11})->first, 11);
  EXPECT_EQ(gallery.best_face("anna", b, {10})->first, 10) << "a face the store no longer holds is skipped";
  EXPECT_FALSE(gallery.best_face("anna", b, {}).has_value());
  EXPECT_FALSE(gallery.best_face("ben", b, {10, 11}).has_value());
  gallery.add("anna", ids, rows);  // already held: ignored
  EXPECT_EQ(gallery.faces(), 2u);
}

}  // namespace
}  // namespace candor
