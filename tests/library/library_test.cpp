// Photo-library grouping: the promises of include/candor/library.h on small synthetic
// people, and the bench's BCubed against a hand computation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "candor/library.h"
#include "library/cluster_metrics.h"

namespace candor {
namespace {

using bench::score_clusters;

// Five items, truth {x, x, x, y, y}, grouped {1, 1, 2, 2, 2}. By hand:
// precision per item 1, 1, 1/3, 2/3, 2/3 -> 11/15; recall 2/3, 2/3, 1/3, 1, 1 -> 11/15;
// pairs: 2 of the 4 pairs put together belong together, 2 of the 4 that belong are together.
TEST(ClusterScoresTest, BCubedMatchesHandComputation) {
  const std::vector<std::int64_t> truth = {10, 10, 10, 20, 20}, predicted = {1, 1, 2, 2, 2};
  const bench::ClusterScores s = score_clusters(predicted, truth);
  EXPECT_NEAR(s.bcubed_precision, 11.0 / 15, 1e-12);
  EXPECT_NEAR(s.bcubed_recall, 11.0 / 15, 1e-12);
  EXPECT_NEAR(s.bcubed_f, 11.0 / 15, 1e-12);
  EXPECT_NEAR(s.pair_precision, 0.5, 1e-12);
  EXPECT_NEAR(s.pair_recall, 0.5, 1e-12);
  EXPECT_EQ(s.groups, 2U);
  // Everything in one group: precision (3*3/5 + 2*2/5) / 5 = 13/25, recall 1.
  const bench::ClusterScores one = score_clusters(std::vector<std::int64_t>(5, 7), truth);
  EXPECT_NEAR(one.bcubed_precision, 13.0 / 25, 1e-12);
  EXPECT_NEAR(one.bcubed_recall, 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(score_clusters(truth, truth).bcubed_f, 1.0);
}

TEST(ClusterScoresTest, BaselinesOnATinyMatrix) {
  // Items 0-1 close (0.9), 1-2 at 0.6, 0-2 at 0.2, item 3 alone.
  const std::size_t n = 4;
  std::vector<float> sim = {1, 0.9F, 0.2F, 0, 0.9F, 1, 0.6F, 0, 0.2F, 0.6F, 1, 0, 0, 0, 0, 1};
  const auto pairs = bench::pairs_at_least(sim, n, 0.1F);
  ASSERT_EQ(pairs.size(), 3U);
  const auto cc = bench::connected_components(pairs, n, 0.5F);
  EXPECT_EQ(cc[0], cc[2]);  // chained through item 1
  EXPECT_NE(cc[0], cc[3]);
  // Average linkage: {0,1} at 0.9, then {0,1}+2 at (0.2 + 0.6) / 2 = 0.4.
  const bench::Dendrogram tree = bench::average_linkage(sim, n);
  const auto at_half = bench::cut(tree, n, 0.5F);
  EXPECT_EQ(at_half[0], at_half[1]);
  EXPECT_NE(at_half[0], at_half[2]);
  const auto at_039 = bench::cut(tree, n, 0.39F);
  EXPECT_EQ(at_039[0], at_039[2]);
  EXPECT_NE(at_039[0], at_039[3]);
}

constexpr int kDim = 64;

// People with random centres (two centres in 64-d score about +-0.12); each face is
// 0.9 * centre + a random orthogonal part, so two faces of one person score about 0.8.
struct People {
  std::vector<GroupingFace> faces;
  std::vector<float> vectors;
  std::vector<std::int64_t> person;

  People(int people, int faces_each, std::uint32_t seed, std::int64_t first_id = 1) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    auto unit = [&] {
      std::vector<float> v(kDim);
      float n = 0;
      for (float& x : v) x = normal(rng), n += x * x;
      for (float& x : v) x /= std::sqrt(n);
      return v;
    };
    std::int64_t id = first_id;
    for (int p = 0; p < people; ++p) {
      const std::vector<float> c = unit();
      for (int k = 0; k < faces_each; ++k) {
        std::vector<float> u = unit();
        float dot = 0, n = 0;
        for (int j = 0; j < kDim; ++j) dot += u[j] * c[j];
        for (int j = 0; j < kDim; ++j) u[j] -= dot * c[j], n += u[j] * u[j];
        for (int j = 0; j < kDim; ++j) vectors.push_back(0.9F * c[j] + std::sqrt(1 - 0.81F) * u[j] / std::sqrt(n));
        faces.push_back({id, id});  // each face its own photo
        ++id;
        person.push_back(p);
      }
    }
  }
  std::span<const float> rows(std::size_t lo, std::size_t hi) const {
    return std::span(vectors).subspan(lo * kDim, (hi - lo) * kDim);
  }
};

std::vector<std::int64_t> labels(const FaceGrouping& g, const People& p) {
  std::vector<std::int64_t> out;
  for (const GroupingFace& f : p.faces) out.push_back(g.group_of(f.face).value());
  return out;
}

std::unique_ptr<FaceGrouping> make() {
  auto g = FaceGrouping::create(kDim);
  EXPECT_TRUE(g.ok());
  return std::move(*g);
}

TEST(FaceGroupingTest, RecoversSyntheticPeople) {
  const People p(30, 6, 1);
  auto grouped = group_faces(kDim, p.faces, p.vectors);
  ASSERT_TRUE(grouped.ok()) << grouped.error().message;
  std::vector<std::int64_t> got;
  for (const GroupingFace& f : p.faces) got.push_back(grouped->at(f.face));
  EXPECT_DOUBLE_EQ(score_clusters(got, p.person).bcubed_f, 1.0);
  // Numbered 1..G by smallest face id: the first person is group 1.
  EXPECT_EQ(grouped->at(1), 1);
  EXPECT_EQ(grouped->at(7), 2);
}

TEST(FaceGroupingTest, TwoFacesOfOnePhotoNeverGrouped) {
  People p(10, 6, 2);
  // Faces 1,2 / 3,4 / 5,6 of each person share a photo: the person is in every photo twice.
  for (GroupingFace& f : p.faces) f.photo = (f.face + 1) / 2;
  for (bool incremental : {false, true}) {
    auto g = make();
    if (incremental) {
      ASSERT_TRUE(g->add(std::span(p.faces).first(30), p.rows(0, 30)).ok());
      ASSERT_TRUE(g->add(std::span(p.faces).subspan(30), p.rows(30, 60)).ok());
    } else {
      ASSERT_TRUE(g->add(p.faces, p.vectors).ok());
    }
    for (int round = 0; round < 2; ++round) {
      for (const auto& [group, faces] : g->groups()) {
        std::set<std::int64_t> photos;
        for (std::int64_t f : faces) EXPECT_TRUE(photos.insert((f + 1) / 2).second) << "group " << group;
      }
      ASSERT_TRUE(g->regroup().ok());
    }
    // Each person is split into exactly two groups of three.
    EXPECT_EQ(g->groups().size(), 20U);
  }
}

// Whether faces a and b end in one group when the people are grouped all at once.
bool grouped_together(const People& p, const GroupingConstraints& c, std::int64_t a, std::int64_t b) {
  auto full = group_faces(kDim, p.faces, p.vectors, c);
  EXPECT_TRUE(full.ok());
  return full.ok() && full->at(a) == full->at(b);
}

TEST(FaceGroupingTest, CannotLinkRespectedByFullIncrementalAndRegroup) {
  const People p(8, 5, 3);
  const GroupingConstraints c{{{1, 2}}, {}};  // two faces of the first person
  EXPECT_TRUE(grouped_together(p, {}, 1, 2));
  EXPECT_FALSE(grouped_together(p, c, 1, 2));

  auto g = make();
  ASSERT_TRUE(g->add(std::span(p.faces).first(20), p.rows(0, 20)).ok());
  EXPECT_EQ(g->group_of(1), g->group_of(2));  // before the correction, one person
  ASSERT_TRUE(g->correct(c).ok());
  EXPECT_NE(g->group_of(1), g->group_of(2));
  ASSERT_TRUE(g->add(std::span(p.faces).subspan(20), p.rows(20, 40)).ok());
  EXPECT_NE(g->group_of(1), g->group_of(2));
  ASSERT_TRUE(g->regroup().ok());
  EXPECT_NE(g->group_of(1), g->group_of(2));
}

TEST(FaceGroupingTest, CannotLinkRecordedBeforeTheFacesArrive) {
  const People p(4, 5, 4);
  auto g = make();
  ASSERT_TRUE(g->correct({{{3, 4}}, {}}).ok());
  ASSERT_TRUE(g->add(p.faces, p.vectors).ok());
  EXPECT_NE(g->group_of(3), g->group_of(4));
}

TEST(FaceGroupingTest, MustLinkRespectedByFullIncrementalAndRegroup) {
  const People p(8, 5, 5);
  const GroupingConstraints c{{}, {{1, 40}}};  // the first and the last person
  EXPECT_FALSE(grouped_together(p, {}, 1, 40));
  EXPECT_TRUE(grouped_together(p, c, 1, 40));

  auto g = make();
  ASSERT_TRUE(g->add(p.faces, p.vectors).ok());
  EXPECT_NE(g->group_of(1), g->group_of(40));
  ASSERT_TRUE(g->correct(c).ok());
  EXPECT_EQ(g->group_of(1), g->group_of(40));
  const People more(2, 5, 6, 100);
  ASSERT_TRUE(g->add(more.faces, more.vectors).ok());
  EXPECT_EQ(g->group_of(1), g->group_of(40));
  ASSERT_TRUE(g->regroup().ok());
  EXPECT_EQ(g->group_of(1), g->group_of(40));

  // Recorded before face 200 exists: it joins face 1's group when it arrives, even
  // though it looks like nobody held.
  ASSERT_TRUE(g->correct({{}, {{1, 200}}}).ok());
  const People stranger(1, 1, 7, 200);
  ASSERT_TRUE(g->add(stranger.faces, stranger.vectors).ok());
  EXPECT_EQ(g->group_of(1), g->group_of(200));
}

TEST(FaceGroupingTest, ContradictoryCorrectionsRefused) {
  People p(2, 3, 8);
  p.faces[1].photo = p.faces[0].photo;  // faces 1 and 2 in one photo
  auto g = make();
  ASSERT_TRUE(g->add(p.faces, p.vectors).ok());
  auto same_photo = g->correct({{}, {{1, 2}}});
  ASSERT_FALSE(same_photo.ok());
  EXPECT_EQ(same_photo.error().code, ErrorCode::kInvalidArgument);
  ASSERT_TRUE(g->correct({{{3, 4}}, {}}).ok());
  auto against = g->correct({{}, {{3, 5}, {5, 4}}});  // 3 = 5 = 4, but 3 != 4
  ASSERT_FALSE(against.ok());
  EXPECT_EQ(against.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(g->group_of(3), g->group_of(4));  // nothing of the refused call was kept
  ASSERT_TRUE(g->regroup().ok());
  EXPECT_NE(g->group_of(3), g->group_of(4));
  EXPECT_EQ(g->correct({{{6, 6}}, {}}).error().code, ErrorCode::kInvalidArgument);
}

TEST(FaceGroupingTest, RegroupKeepsGroupIds) {
  const People p(12, 5, 9);
  auto g = make();
  for (std::size_t lo = 0; lo < 60; lo += 15) {
    ASSERT_TRUE(g->add(std::span(p.faces).subspan(lo, 15), p.rows(lo, lo + 15)).ok());
  }
  const auto before = g->groups();
  ASSERT_EQ(before.size(), 12U);
  ASSERT_TRUE(g->regroup().ok());
  EXPECT_EQ(g->groups(), before);  // same ids, same faces: a name on any id survives

  // A correction that splits one group keeps the id of the larger part.
  const std::int64_t id = *g->group_of(1);
  ASSERT_TRUE(g->correct({{{1, 2}, {1, 3}, {1, 4}, {1, 5}}, {}}).ok());
  EXPECT_EQ(g->group_of(2), id);
  EXPECT_NE(g->group_of(1), id);
  ASSERT_TRUE(g->regroup().ok());
  EXPECT_EQ(g->group_of(2), id);
  for (const auto& [group, faces] : before) {
    if (group != id) {
      EXPECT_EQ(g->groups().at(group), faces);
    }
  }
}

TEST(FaceGroupingTest, IncrementalAgreesWithFullOnSeparatedPeople) {
  const People p(25, 4, 10);
  std::vector<std::size_t> order(p.faces.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(11));
  auto g = make();
  for (std::size_t lo = 0; lo < order.size(); lo += 10) {
    std::vector<GroupingFace> faces;
    std::vector<float> vectors;
    for (std::size_t k = lo; k < lo + 10; ++k) {
      faces.push_back(p.faces[order[k]]);
      const auto row = p.rows(order[k], order[k] + 1);
      vectors.insert(vectors.end(), row.begin(), row.end());
    }
    const auto before = g->groups();
    ASSERT_TRUE(g->add(faces, vectors).ok());
    for (const auto& [group, members] : before) {  // old faces never move
      for (std::int64_t f : members) EXPECT_EQ(g->group_of(f), group);
    }
  }
  auto full = group_faces(kDim, p.faces, p.vectors);
  ASSERT_TRUE(full.ok());
  std::vector<std::int64_t> all;
  for (const GroupingFace& f : p.faces) all.push_back(full->at(f.face));
  EXPECT_DOUBLE_EQ(score_clusters(labels(*g, p), all).bcubed_f, 1.0);
  EXPECT_DOUBLE_EQ(score_clusters(all, p.person).bcubed_f, 1.0);
}

// Two faces u, v at cosine 0.7, and a third face. With local=0.5 the merge threshold
// is 0.5 + 0.5 * (u's and v's similarity to their 2nd nearest face, at least 0.28):
// a third face far from both (cosine 0) leaves it at 0.64 and u, v merge; a
// look-alike of both (cosine 0.6) raises it to 0.8 and they stay apart. With local=0
// (threshold 0.5) they merge either way.
TEST(FaceGroupingTest, MergeThresholdRisesWithLocalScale) {
  auto together = [](float third_cos, const char* local) {
    std::vector<float> v(3 * kDim, 0.0F);
    v[0] = 1;                                     // u = e1
    v[kDim] = 0.7F, v[kDim + 1] = std::sqrt(1 - 0.49F);  // v: cosine 0.7 with u
    const float b = (third_cos - 0.7F * third_cos) / v[kDim + 1];  // cosine third_cos with u and v
    v[2 * kDim] = third_cos, v[2 * kDim + 1] = b, v[2 * kDim + 2] = std::sqrt(1 - third_cos * third_cos - b * b);
    const std::vector<GroupingFace> faces{{1, 1}, {2, 2}, {3, 3}};
    GroupingOptions o;
    // edge 0.99: no graph edges, so every face is its own group until the merges.
    o.spec = std::string("cw,k=2,edge=0.99,merge=0.5,grow=0,local=") + local;
    auto grouped = group_faces(kDim, faces, v, {}, o);
    EXPECT_TRUE(grouped.ok());
    return grouped->at(1) == grouped->at(2);
  };
  EXPECT_TRUE(together(0.0F, "0.5"));
  EXPECT_FALSE(together(0.6F, "0.5"));
  EXPECT_TRUE(together(0.6F, "0"));
}

// Face u and a weak face v (a low template norm) at cosine 0.42, below the merge bar
// of 0.5, and five clear faces orthogonal to both; the median norm is u's. With
// qual=0.3, qref=1 the bar for v falls by 0.3 * (1 - n_v / median): at half the median
// to 0.35, and u, v merge. At the median norm, with its norm unknown (0) or with
// qual=0, v stays apart. Norms ten times larger change nothing (the median is the unit).
TEST(FaceGroupingTest, MergeThresholdFallsForAWeakSingleFace) {
  auto together = [](float v_norm, float scale, const char* qual) {
    constexpr int kFaces = 7;
    std::vector<float> v(kFaces * kDim, 0.0F);
    v[0] = 1;                                                // u = e1
    v[kDim] = 0.42F, v[kDim + 1] = std::sqrt(1 - 0.42F * 0.42F);  // v: cosine 0.42 with u
    std::vector<GroupingFace> faces{{1, 1, 3.6F * scale}, {2, 2, v_norm * scale}};
    for (int f = 2; f < kFaces; ++f) {
      v[static_cast<std::size_t>(f * kDim + f + 1)] = 1;     // e3..e7
      faces.push_back({f + 1, f + 1, 3.6F * scale});
    }
    GroupingOptions o;
    // edge 0.99: no graph edges, so every face is its own group until the merges.
    o.spec = std::string("cw,k=6,edge=0.99,merge=0.5,grow=0,qref=1,qual=") + qual;
    auto grouped = group_faces(kDim, faces, v, {}, o);
    EXPECT_TRUE(grouped.ok());
    for (int f = 3; f <= kFaces; ++f) EXPECT_NE(grouped->at(f), grouped->at(1));
    return grouped->at(1) == grouped->at(2);
  };
  EXPECT_TRUE(together(1.8F, 1, "0.3"));
  EXPECT_TRUE(together(1.8F, 10, "0.3"));
  EXPECT_FALSE(together(3.6F, 1, "0.3"));
  EXPECT_FALSE(together(0.0F, 1, "0.3"));
  EXPECT_FALSE(together(1.8F, 1, "0"));
}

// Faces u, v at cosine 0.3 arrive first and found two groups; then w, halfway between
// them (cosine 0.81 with each), arrives: it joins one, and the mean of that pair scores
// 0.58 with the other, above the merge bar of 0.5, so add() merges the two old groups
// into the one w joined. When both old groups are pinned they stay apart; when one is,
// the merged group keeps the pinned id. regroup() respects the pins as add() does.
TEST(FaceGroupingTest, GroupsANewFaceBridgesMergeUnlessBothArePinned) {
  std::vector<float> v(3 * kDim, 0.0F);
  v[0] = 1;                                                  // u = e1
  v[kDim] = 0.3F, v[kDim + 1] = std::sqrt(1 - 0.09F);        // v
  const float w_norm = std::sqrt(2 * (1 + 0.3F));
  for (int j = 0; j < 2; ++j) v[static_cast<std::size_t>(2 * kDim + j)] = (v[static_cast<std::size_t>(j)] + v[static_cast<std::size_t>(kDim + j)]) / w_norm;
  const std::vector<GroupingFace> faces{{1, 1}, {2, 2}, {3, 3}};
  auto run = [&](std::vector<int> pin_faces) {
    GroupingOptions o;
    o.spec = "cw,k=2,edge=0.99,merge=0.5,grow=0";  // no graph edges: the merges decide
    auto g = FaceGrouping::create(kDim, o);
    EXPECT_TRUE(g.ok());
    EXPECT_TRUE((*g)->add(std::span(faces).first(2), std::span(v).first(2 * kDim)).ok());
    const std::int64_t gu = *(*g)->group_of(1), gv = *(*g)->group_of(2);
    EXPECT_NE(gu, gv);
    std::vector<std::int64_t> pins;
    for (int f : pin_faces) pins.push_back(*(*g)->group_of(f));
    (*g)->pin(pins);
    EXPECT_TRUE((*g)->add(std::span(faces).subspan(2), std::span(v).subspan(2 * kDim)).ok());
    return std::tuple{gu, gv, *(*g)->group_of(1), *(*g)->group_of(2), *(*g)->group_of(3)};
  };
  {
    const auto [gu, gv, u, v2, w] = run({});
    EXPECT_EQ(u, v2);
    EXPECT_EQ(u, w);
    EXPECT_TRUE(u == gu || u == gv);
  }
  {
    const auto [gu, gv, u, v2, w] = run({1, 2});
    EXPECT_EQ(u, gu);
    EXPECT_EQ(v2, gv);
    EXPECT_TRUE(w == gu || w == gv);
  }
  // A full regroup(): unpinned, the three are one person; with both pinned, u and v stay
  // apart and keep their ids.
  for (bool pinned : {false, true}) {
    GroupingOptions o;
    o.spec = "cw,k=2,edge=0.99,merge=0.5,grow=0";
    auto g = FaceGrouping::create(kDim, o);
    ASSERT_TRUE(g.ok());
    ASSERT_TRUE((*g)->add(std::span(faces).first(1), std::span(v).first(kDim)).ok());
    ASSERT_TRUE((*g)->add(std::span(faces).subspan(1, 1), std::span(v).subspan(kDim, kDim)).ok());
    const std::int64_t gu = *(*g)->group_of(1), gv = *(*g)->group_of(2);
    if (pinned) (*g)->pin(std::vector<std::int64_t>{gu, gv});
    ASSERT_TRUE((*g)->add(std::span(faces).subspan(2), std::span(v).subspan(2 * kDim)).ok());
    ASSERT_TRUE((*g)->regroup().ok());
    if (pinned) {
      EXPECT_EQ(*(*g)->group_of(1), gu);
      EXPECT_EQ(*(*g)->group_of(2), gv);
    } else {
      EXPECT_EQ(*(*g)->group_of(1), *(*g)->group_of(2));
    }
  }
  for (int pinned : {1, 2}) {
    const auto [gu, gv, u, v2, w] = run({pinned});
    EXPECT_EQ(u, v2);
    EXPECT_EQ(u, w);
    EXPECT_EQ(u, pinned == 1 ? gu : gv);
  }
}

TEST(FaceGroupingTest, BadInputRefused) {
  for (const char* spec : {"kmeans", "cw,k=0", "cw,edge=x", "cw,colour=3", "cw,link=single", "cw,local=3", "cw,qual=-1",
                           "cw,qref=0"}) {
    GroupingOptions o;
    o.spec = spec;
    auto g = FaceGrouping::create(kDim, o);
    ASSERT_FALSE(g.ok()) << spec;
    EXPECT_EQ(g.error().code, ErrorCode::kInvalidArgument);
  }
  GroupingOptions o;
  o.index_spec = "Nope";
  EXPECT_EQ(FaceGrouping::create(kDim, o).error().code, ErrorCode::kInvalidArgument);
  const People p(2, 2, 12);
  auto g = make();
  EXPECT_EQ(g->add(p.faces, p.rows(0, 3)).error().code, ErrorCode::kInvalidArgument);
  ASSERT_TRUE(g->add(p.faces, p.vectors).ok());
  EXPECT_EQ(g->add(std::span(p.faces).first(1), p.rows(0, 1)).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(g->size(), 4U);
}

}  // namespace
}  // namespace candor

