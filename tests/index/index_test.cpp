// Tests for the 1:N index (include/candor/index.h). The oracle is a plain
// scalar brute-force search in double precision; every index type is held to
// it: the exact ones on the top-k ids (up to tied scores), SQ8 and HNSW on
// recall@10.
#include "candor/index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "kernels.h"  // src/index, to test both kernel builds against each other

namespace candor {
namespace {

// Unit vectors with structure like face templates: a few strong directions
// (a random d x rank mix with decaying weights) plus weak isotropic noise.
std::vector<float> structured_vectors(size_t n, int dim, uint32_t seed, size_t rank = 24) {
  const auto d = static_cast<size_t>(dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss;
  std::mt19937 mix_rng(1234);  // the same mix for every call, so queries share the structure
  std::vector<float> mix(d * rank);
  for (float& v : mix) v = gauss(mix_rng);
  std::vector<float> out(n * d);
  std::vector<float> z(rank);
  for (size_t i = 0; i < n; ++i) {
    for (size_t r = 0; r < rank; ++r) z[r] = gauss(rng) * std::exp(-static_cast<float>(r) / 8.0F);
    float* x = out.data() + i * d;
    double norm = 0.0;
    for (size_t j = 0; j < d; ++j) {
      float v = 0.15F * gauss(rng);
      for (size_t r = 0; r < rank; ++r) v += mix[j * rank + r] * z[r];
      x[j] = v;
      norm += static_cast<double>(v) * v;
    }
    const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (size_t j = 0; j < d; ++j) x[j] *= inv;
  }
  return out;
}

std::vector<int64_t> make_ids(size_t n, int64_t first = 1000) {
  std::vector<int64_t> ids(n);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

// The oracle: scalar brute force, double accumulation, ties by smaller id.
std::vector<std::vector<Neighbor>> oracle(const std::vector<int64_t>& ids,
                                          const std::vector<float>& base,
                                          const std::vector<float>& queries, int dim, size_t k) {
  const auto d = static_cast<size_t>(dim);
  std::vector<std::vector<Neighbor>> out;
  for (size_t q = 0; q < queries.size() / d; ++q) {
    std::vector<Neighbor> all;
    for (size_t i = 0; i < ids.size(); ++i) {
      double s = 0.0;
      for (size_t j = 0; j < d; ++j)
        s += static_cast<double>(queries[q * d + j]) * base[i * d + j];
      all.push_back({ids[i], static_cast<float>(s)});
    }
    const size_t kk = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(kk), all.end(),
                      [](const Neighbor& a, const Neighbor& b) {
                        return a.score > b.score || (a.score == b.score && a.id < b.id);
                      });
    all.resize(kk);
    out.push_back(all);
  }
  return out;
}

double recall(const std::vector<std::vector<Neighbor>>& got,
              const std::vector<std::vector<Neighbor>>& truth) {
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    std::set<int64_t> t;
    for (const Neighbor& n : truth[q]) t.insert(n.id);
    for (const Neighbor& n : got[q]) hit += t.count(n.id);
    total += truth[q].size();
  }
  return total == 0 ? 1.0 : static_cast<double>(hit) / static_cast<double>(total);
}

// Exact agreement: same ids in order, except where the oracle's scores tie
// (within float rounding), where only the score must match.
void expect_exact(const std::vector<std::vector<Neighbor>>& got,
                  const std::vector<std::vector<Neighbor>>& truth, const std::string& what) {
  ASSERT_EQ(got.size(), truth.size()) << what;
  for (size_t q = 0; q < truth.size(); ++q) {
    ASSERT_EQ(got[q].size(), truth[q].size()) << what << " query " << q;
    for (size_t i = 0; i < truth[q].size(); ++i) {
      EXPECT_NEAR(got[q][i].score, truth[q][i].score, 2e-5) << what << " q" << q << " rank " << i;
      if (got[q][i].id != truth[q][i].id) {
        const bool tie = (i > 0 && std::fabs(truth[q][i - 1].score - truth[q][i].score) < 2e-5) ||
                         (i + 1 < truth[q].size() &&
                          std::fabs(truth[q][i + 1].score - truth[q][i].score) < 2e-5);
        EXPECT_TRUE(tie) << what << " q" << q << " rank " << i << ": id " << got[q][i].id
                         << " vs " << truth[q][i].id;
      }
    }
  }
}

// IVF8 trains once it holds 8 x 40 = 320 templates, so the 300-template
// tests run it untrained (exact) and the 4000-template ones trained.
const std::vector<std::string> kAllSpecs = {"Flat",   "FaissFlat",           "SQ8",
                                            "SQ8,Refine", "HNSW16", "HNSW32,efc=100,ef=64",
                                            "IVF8,SQ8,nprobe=3"};

TEST(IndexTest, ExactIndexesMatchOracle) {
  constexpr int kDim = 64;
  const size_t n = 3000;
  const auto base = structured_vectors(n, kDim, 1);
  const auto ids = make_ids(n);
  // 1 and 5 queries take the AVX2 scan; 40 take the sgemm path in Flat.
  for (size_t nq : {size_t{1}, size_t{5}, size_t{40}}) {
    const auto queries = structured_vectors(nq, kDim, 2);
    const auto truth = oracle(ids, base, queries, kDim, 10);
    for (const char* spec : {"Flat", "FaissFlat", "SQ8,Refine"}) {
      auto index = make_index(kDim, spec);
      index->add(ids, base);
      expect_exact(index->search(queries, 10), truth, std::string(spec) + " nq=" + std::to_string(nq));
    }
  }
}

TEST(IndexTest, OddDimensionUsesKernelTails) {
  constexpr int kDim = 37;  // not a multiple of 8 or 16
  const auto base = structured_vectors(501, kDim, 3);
  const auto ids = make_ids(501);
  const auto queries = structured_vectors(9, kDim, 4);
  const auto truth = oracle(ids, base, queries, kDim, 7);
  for (const char* spec : {"Flat", "SQ8,Refine=50"}) {
    auto index = make_index(kDim, spec);
    index->add(ids, base);
    expect_exact(index->search(queries, 7), truth, spec);
  }
}

TEST(IndexTest, Sq8RecallAgainstOracle) {
  constexpr int kDim = 512;
  const size_t n = 4000;
  const auto base = structured_vectors(n, kDim, 5);
  const auto ids = make_ids(n);
  const auto queries = structured_vectors(50, kDim, 6);
  const auto truth = oracle(ids, base, queries, kDim, 10);
  auto index = make_index(kDim, "SQ8");
  index->add(ids, base);
  const auto got = index->search(queries, 10);
  EXPECT_GE(recall(got, truth), 0.99);
  for (size_t q = 0; q < got.size(); ++q)
    for (size_t i = 0; i < got[q].size(); ++i)
      EXPECT_NEAR(got[q][i].score, truth[q][i].score, 0.01);  // int8 error is ~1e-3 at most
}

TEST(IndexTest, HnswRecallAgainstOracle) {
  constexpr int kDim = 64;
  const size_t n = 5000;
  const auto base = structured_vectors(n, kDim, 7);
  const auto ids = make_ids(n);
  const auto queries = structured_vectors(100, kDim, 8);
  const auto truth = oracle(ids, base, queries, kDim, 10);
  for (const char* spec : {"HNSW16", "HNSW32,efc=100,ef=64"}) {
    auto index = make_index(kDim, spec);
    index->add(ids, base);  // > 2000 vectors: the parallel insert path
    EXPECT_EQ(index->size(), n);
    EXPECT_GE(recall(index->search(queries, 10), truth), 0.95) << spec;
  }
}

TEST(IndexTest, AddReplaceRemove) {
  constexpr int kDim = 32;
  const size_t n = 300;
  const auto base = structured_vectors(n, kDim, 9);
  const auto ids = make_ids(n);
  const auto probe = structured_vectors(1, kDim, 10);
  for (const std::string& spec : kAllSpecs) {
    SCOPED_TRACE(spec);
    auto index = make_index(kDim, spec);
    EXPECT_EQ(index->dim(), kDim);
    index->add(ids, base);
    EXPECT_EQ(index->size(), n);
    const size_t before = index->memory_bytes();
    EXPECT_GE(before, n * kDim);

    // Replace id 1005 with the probe itself: it must come first, at ~1.
    const std::vector<int64_t> replaced = {1005};
    index->add(replaced, probe);
    EXPECT_EQ(index->size(), n);
    auto top = index->search(probe, 3);
    ASSERT_FALSE(top[0].empty());
    EXPECT_EQ(top[0][0].id, 1005);
    EXPECT_NEAR(top[0][0].score, 1.0F, 0.01F);
    // Its old vector is gone: searching with it does not find 1005 at ~1.
    const std::span<const float> old(base.data() + 5 * kDim, kDim);
    const auto near_old = index->search(old, 5);
    for (const Neighbor& nb : near_old[0])
      if (nb.id == 1005) {
        EXPECT_LT(nb.score, 0.99F);
      }

    // Remove a third of the ids, plus unknown ones.
    std::vector<int64_t> gone;
    for (size_t i = 0; i < n; i += 3) gone.push_back(ids[i]);
    gone.push_back(-1);
    gone.push_back(999999);
    EXPECT_EQ(index->remove(gone), (n + 2) / 3);
    EXPECT_EQ(index->remove(gone), 0U);  // already gone
    EXPECT_EQ(index->size(), n - (n + 2) / 3);
    const std::set<int64_t> gone_set(gone.begin(), gone.end());
    // Search with the removed vectors themselves: they must not come back.
    for (size_t i = 0; i < n; i += 3) {
      const std::span<const float> q(base.data() + i * kDim, kDim);
      const auto res = index->search(q, 10);
      for (const Neighbor& nb : res[0])
        EXPECT_EQ(gone_set.count(nb.id), 0U) << "removed id " << nb.id << " returned";
    }
    // k larger than the index: exhaustive ones return everything left.
    const auto all = index->search(probe, 10 * n)[0];
    EXPECT_LE(all.size(), index->size());
    if (spec.rfind("HNSW", 0) != 0) {
      EXPECT_EQ(all.size(), index->size());
    }
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end(), [](const Neighbor& a, const Neighbor& b) {
      return a.score > b.score;
    }));
    std::set<int64_t> distinct;
    for (const Neighbor& nb : all) {
      EXPECT_EQ(gone_set.count(nb.id), 0U);
      distinct.insert(nb.id);
    }
    EXPECT_EQ(distinct.size(), all.size());

    // A removed id can be added again.
    const std::vector<int64_t> back = {ids[0]};
    index->add(back, std::span<const float>(base.data(), kDim));
    const auto again = index->search(std::span<const float>(base.data(), kDim), 1)[0];
    ASSERT_EQ(again.size(), 1U);
    EXPECT_EQ(again[0].id, ids[0]);
  }
}

TEST(IndexTest, EmptyIndexAndSmallK) {
  constexpr int kDim = 16;
  const auto queries = structured_vectors(3, kDim, 11);
  for (const std::string& spec : kAllSpecs) {
    SCOPED_TRACE(spec);
    auto index = make_index(kDim, spec);
    EXPECT_EQ(index->size(), 0U);
    auto res = index->search(queries, 5);
    ASSERT_EQ(res.size(), 3U);
    for (const auto& r : res) EXPECT_TRUE(r.empty());
    EXPECT_TRUE(index->search({}, 5).empty());  // no queries, no rows
    EXPECT_EQ(index->remove(std::vector<int64_t>{1, 2}), 0U);
    const auto base = structured_vectors(4, kDim, 12);
    index->add(make_ids(4), base);
    res = index->search(queries, 10);  // k > size
    for (const auto& r : res) EXPECT_EQ(r.size(), 4U);
    for (const auto& r : index->search(queries, 0)) EXPECT_TRUE(r.empty());
    index->add({}, {});  // adding nothing is fine
    EXPECT_EQ(index->size(), 4U);
  }
}

TEST(IndexTest, BadArgumentsThrow) {
  constexpr int kDim = 16;
  for (const std::string& spec : kAllSpecs) {
    SCOPED_TRACE(spec);
    auto index = make_index(kDim, spec);
    const std::vector<float> v(2 * kDim + 1, 0.1F);
    const std::vector<int64_t> two = {1, 2};
    EXPECT_THROW(index->add(two, v), std::invalid_argument);  // 33 floats for 2 ids
    const std::vector<float> ok(2 * kDim, 0.1F);
    const std::vector<int64_t> dup = {7, 7};
    EXPECT_THROW(index->add(dup, ok), std::invalid_argument);
    EXPECT_EQ(index->size(), 0U);  // a rejected add changes nothing
    EXPECT_THROW((void)index->search(std::vector<float>(kDim + 3, 0.1F), 1), std::invalid_argument);
  }
}

TEST(IndexTest, FactorySpecs) {
  EXPECT_THROW(make_index(0, "Flat"), std::invalid_argument);
  EXPECT_THROW(make_index(-4, "Flat"), std::invalid_argument);
  for (const char* bad : {"", ",", "Foo", "flat", "Flat,ef=3", "Flat,", "HNSW", "HNSWx", "HNSW1",
                          "HNSW32,ef=0", "HNSW32,ef=abc", "HNSW32,bogus=1", "SQ8,Bogus",
                          "SQ8,Refine=0", "SQ8,Refine,Refine", "=Flat", "IVF", "IVF0,SQ8",
                          "IVFx,SQ8", "IVF64", "IVF64,Flat", "IVF64,SQ8=2", "IVF64,SQ8,nprobe=0",
                          "IVF64,SQ8,nprobe=4,nprobe=5", "IVF64,SQ8,refine=x", "IVF64,SQ8,ef=3",
                          "IVF64,SQ8,pca=9", "IVF64,SQ8,pca=0"}) {
    EXPECT_THROW(make_index(8, bad), std::invalid_argument) << '"' << bad << '"';
  }
  EXPECT_EQ(make_index(8, "Flat")->description(), "Flat");
  EXPECT_EQ(make_index(8, " SQ8 ")->description(), "SQ8");
  EXPECT_EQ(make_index(8, "SQ8,Refine")->description(), "SQ8,Refine=256");
  EXPECT_EQ(make_index(8, "SQ8,Refine=64")->description(), "SQ8,Refine=64");
  EXPECT_EQ(make_index(8, "HNSW32")->description(), "HNSW32,efc=200,ef=128");
  EXPECT_EQ(make_index(8, "HNSW16,ef=300,efc=80")->description(), "HNSW16,efc=80,ef=300");
  EXPECT_EQ(make_index(8, "IVF1024,SQ8")->description(), "IVF1024,SQ8,nprobe=64,refine=256");
  EXPECT_EQ(make_index(8, "IVF16,SQ8,refine=32,nprobe=4")->description(),
            "IVF16,SQ8,nprobe=4,refine=32");
  EXPECT_EQ(make_index(8, "IVF1,SQ8,pca=8")->description(), "IVF1,SQ8,nprobe=64,refine=256,pca=8");
}

TEST(IndexTest, SearchParameters) {
  auto hnsw = make_index(8, "HNSW16");
  hnsw->set_search_parameters("ef=40");
  EXPECT_EQ(hnsw->description(), "HNSW16,efc=200,ef=40");
  EXPECT_THROW(hnsw->set_search_parameters("ef=0"), std::invalid_argument);
  EXPECT_THROW(hnsw->set_search_parameters("nprobe=4"), std::invalid_argument);
  auto flat = make_index(8, "Flat");
  flat->set_search_parameters("");
  EXPECT_THROW(flat->set_search_parameters("ef=4"), std::invalid_argument);
  auto refine = make_index(8, "SQ8,Refine");
  refine->set_search_parameters("refine=32");
  EXPECT_EQ(refine->description(), "SQ8,Refine=32");
  EXPECT_THROW(make_index(8, "SQ8")->set_search_parameters("refine=32"), std::invalid_argument);
  auto ivf = make_index(8, "IVF16,SQ8");
  ivf->set_search_parameters("nprobe=5,refine=40");
  EXPECT_EQ(ivf->description(), "IVF16,SQ8,nprobe=5,refine=40");
  EXPECT_THROW(ivf->set_search_parameters("nprobe=0"), std::invalid_argument);
  EXPECT_THROW(ivf->set_search_parameters("nprobe=2,ef=3"), std::invalid_argument);
  EXPECT_EQ(ivf->description(), "IVF16,SQ8,nprobe=5,refine=40");  // a rejected call changes nothing
}

// The IVF index on clustered data: recall against the oracle at a moderate
// nprobe, exact (as SQ8,Refine) when every list is probed, and the same
// answers whether the gallery arrives at once or in pieces that cross the
// training threshold (IVF32 trains at 32 x 40 = 1280 templates).
TEST(IndexTest, IvfRecallAgainstOracle) {
  constexpr int kDim = 64;
  const size_t n = 6000;
  const auto base = structured_vectors(n, kDim, 17);
  const auto ids = make_ids(n);
  const auto queries = structured_vectors(100, kDim, 18);
  const auto truth = oracle(ids, base, queries, kDim, 10);
  auto index = make_index(kDim, "IVF32,SQ8,nprobe=8");
  index->add(ids, base);
  EXPECT_EQ(index->size(), n);
  EXPECT_GE(recall(index->search(queries, 10), truth), 0.95);
  index->set_search_parameters("nprobe=32");
  expect_exact(index->search(queries, 10), truth, "IVF32 nprobe=32");
  // Below the threshold it is an exact scan whatever nprobe says.
  auto small = make_index(kDim, "IVF32,SQ8,nprobe=1");
  const size_t n_small = 1000;
  small->add(std::span<const int64_t>(ids.data(), n_small),
             std::span<const float>(base.data(), n_small * kDim));
  const std::vector<int64_t> small_ids(ids.begin(), ids.begin() + n_small);
  const std::vector<float> small_base(base.begin(), base.begin() + n_small * kDim);
  expect_exact(small->search(queries, 10), oracle(small_ids, small_base, queries, kDim, 10),
               "IVF32 untrained");
  // Then the rest in pieces: the second piece crosses the threshold.
  for (size_t first = n_small; first < n; first += 1700) {
    const size_t cnt = std::min<size_t>(1700, n - first);
    small->add(std::span<const int64_t>(ids.data() + first, cnt),
               std::span<const float>(base.data() + first * kDim, cnt * kDim));
  }
  EXPECT_EQ(small->size(), n);
  small->set_search_parameters("nprobe=8");
  EXPECT_GE(recall(small->search(queries, 10), truth), 0.95);
  small->set_search_parameters("nprobe=32");
  expect_exact(small->search(queries, 10), truth, "IVF32 incremental nprobe=32");
  // The pca prefix pre-scan (32 of 64 dims here; trains at 16 x 64 = 1024),
  // re-ranked with the float vectors: near-exact with a deep enough refine,
  // whether the index is one list or probes them all.
  for (const char* spec : {"IVF1,SQ8,pca=32,refine=200", "IVF16,SQ8,nprobe=16,pca=32,refine=200"}) {
    auto pca = make_index(kDim, spec);
    pca->add(ids, base);
    EXPECT_GE(recall(pca->search(queries, 10), truth), 0.99) << spec;
    const std::vector<int64_t> gone = {ids[0], ids[1], ids[2]};
    EXPECT_EQ(pca->remove(gone), 3U);
    for (size_t i = 0; i < 3; ++i) {
      const auto res = pca->search(std::span<const float>(base.data() + i * kDim, kDim), 10);
      for (const Neighbor& nb : res[0]) EXPECT_NE(nb.id, ids[i]) << spec;
    }
  }
}

// Trained IVF: replacing moves an id to its new vector's list, removal really
// removes (the survivors are exactly the oracle over the rest), and
// single-vector adds after training land where a probe finds them.
TEST(IndexTest, IvfAddReplaceRemoveTrained) {
  constexpr int kDim = 32;
  const size_t n = 2000;
  const auto base = structured_vectors(n, kDim, 19);
  const auto ids = make_ids(n);
  auto index = make_index(kDim, "IVF16,SQ8,nprobe=16");  // trains at 640
  index->add(ids, base);
  const auto probe = structured_vectors(1, kDim, 20);
  index->add(std::vector<int64_t>{1007}, probe);
  EXPECT_EQ(index->size(), n);
  auto top = index->search(probe, 1)[0];
  ASSERT_EQ(top.size(), 1U);
  EXPECT_EQ(top[0].id, 1007);
  EXPECT_NEAR(top[0].score, 1.0F, 1e-4F);
  index->set_search_parameters("nprobe=1");  // the probe's own list holds it
  EXPECT_EQ(index->search(probe, 1)[0].at(0).id, 1007);
  index->set_search_parameters("nprobe=16");

  std::vector<int64_t> keep_ids;
  std::vector<float> keep_base;
  std::vector<int64_t> gone;
  for (size_t i = 0; i < n; ++i) {
    if (i % 2 == 0 || ids[i] == 1007) {
      if (ids[i] != 1007) gone.push_back(ids[i]);
      else {
        keep_ids.push_back(ids[i]);
        keep_base.insert(keep_base.end(), probe.begin(), probe.end());
      }
    } else {
      keep_ids.push_back(ids[i]);
      keep_base.insert(keep_base.end(), base.begin() + static_cast<std::ptrdiff_t>(i * kDim),
                       base.begin() + static_cast<std::ptrdiff_t>((i + 1) * kDim));
    }
  }
  EXPECT_EQ(index->remove(gone), gone.size());
  EXPECT_EQ(index->remove(gone), 0U);
  EXPECT_EQ(index->size(), keep_ids.size());
  const auto queries = structured_vectors(30, kDim, 21);
  expect_exact(index->search(queries, 10), oracle(keep_ids, keep_base, queries, kDim, 10),
               "IVF16 after removal");
  const auto all = index->search(probe, 10 * n)[0];
  EXPECT_EQ(all.size(), keep_ids.size());
  const std::set<int64_t> gone_set(gone.begin(), gone.end());
  for (const Neighbor& nb : all) EXPECT_EQ(gone_set.count(nb.id), 0U);
  // Removed ids come back one by one (the per-vector assignment path).
  for (size_t i = 0; i < 10; ++i)
    index->add(std::vector<int64_t>{gone[i]},
               std::span<const float>(base.data() + 2 * i * kDim, kDim));
  EXPECT_EQ(index->size(), keep_ids.size() + 10);
  for (size_t i = 0; i < 10; ++i) {
    const auto r = index->search(std::span<const float>(base.data() + 2 * i * kDim, kDim), 1)[0];
    ASSERT_EQ(r.size(), 1U);
    EXPECT_EQ(r[0].id, gone[i]);
  }
}

TEST(IndexTest, ConcurrentSearchesMatchSerial) {
  constexpr int kDim = 64;
  const size_t n = 4000;
  const auto base = structured_vectors(n, kDim, 13);
  const auto ids = make_ids(n);
  const size_t nq = 64;
  const auto queries = structured_vectors(nq, kDim, 14);
  for (const std::string& spec : kAllSpecs) {
    SCOPED_TRACE(spec);
    auto index = make_index(kDim, spec);
    index->add(ids, base);
    std::vector<std::vector<Neighbor>> serial;
    for (size_t q = 0; q < nq; ++q)
      serial.push_back(index->search(std::span<const float>(queries.data() + q * kDim, kDim), 10)[0]);
    constexpr int kThreads = 4;
    std::vector<std::vector<std::vector<Neighbor>>> got(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (size_t q = 0; q < nq; ++q) {
          // Each thread walks the queries in its own order.
          const size_t qi = (q * 7 + static_cast<size_t>(t) * 13) % nq;
          got[static_cast<size_t>(t)].resize(nq);
          got[static_cast<size_t>(t)][qi] =
              index->search(std::span<const float>(queries.data() + qi * kDim, kDim), 10)[0];
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(got[static_cast<size_t>(t)], serial);
  }
}

TEST(KernelTest, Avx2AgreesWithScalar) {
  using namespace index_detail;
  if (!cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2/FMA: only the scalar kernels run";
  const Kernels& s = scalar_kernels();
  const Kernels& a = avx2_kernels();
  EXPECT_EQ(&kernels(), &a);
  for (int dim : {1, 7, 16, 37, 128, 512}) {
    const auto d = static_cast<size_t>(dim);
    const size_t n = 13;  // not a multiple of 4: the tail rows
    const auto base = structured_vectors(n, dim, 15);
    const auto q = structured_vectors(1, dim, 16);
    std::vector<int8_t> codes(n * d);
    std::vector<float> scales(n);
    for (size_t i = 0; i < n; ++i) scales[i] = encode_sq8(base.data() + i * d, d, codes.data() + i * d);
    std::vector<float> fs(n), fa(n), qs(n), qa(n);
    s.scan_f32(q.data(), base.data(), n, d, fs.data());
    a.scan_f32(q.data(), base.data(), n, d, fa.data());
    s.scan_sq8(q.data(), codes.data(), scales.data(), n, d, qs.data());
    a.scan_sq8(q.data(), codes.data(), scales.data(), n, d, qa.data());
    for (size_t i = 0; i < n; ++i) {
      EXPECT_NEAR(fs[i], fa[i], 1e-5) << dim;
      EXPECT_NEAR(qs[i], qa[i], 1e-5) << dim;
      EXPECT_NEAR(qs[i], fs[i], 0.01) << dim;  // int8 vs float
      EXPECT_NEAR(a.dot_f32(q.data(), base.data() + i * d, d), fs[i], 1e-5);
      EXPECT_NEAR(a.ip_distance(q.data(), base.data() + i * d, &d), 1.0F - fs[i], 1e-5);
    }
  }
}

TEST(KernelTest, EncodeSq8) {
  const std::vector<float> x = {0.5F, -0.25F, 0.0F, -0.5F};
  std::vector<int8_t> c(4);
  const float scale = index_detail::encode_sq8(x.data(), 4, c.data());
  EXPECT_FLOAT_EQ(scale, 0.5F / 127.0F);
  EXPECT_EQ(c, (std::vector<int8_t>{127, -64, 0, -127}));  // -63.5 rounds to even: -64
  const std::vector<float> zero(4, 0.0F);
  EXPECT_EQ(index_detail::encode_sq8(zero.data(), 4, c.data()), 0.0F);
  EXPECT_EQ(c, (std::vector<int8_t>(4, 0)));
}

}  // namespace
}  // namespace candor
