// Scores of a grouping against the truth, and the baseline groupers of issue 13's
// table, kept apart from the command so that tests/library can check them by hand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace candor::bench {

struct ClusterScores {
  double bcubed_precision = 0, bcubed_recall = 0, bcubed_f = 0;  // Amigo et al. 2009
  double pair_precision = 0, pair_recall = 0, pair_f = 0;        // over all pairs of items
  std::size_t groups = 0;
};

// BCubed: for each item, precision = the share of its group that has its label,
// recall = the share of its label that is in its group; each averaged over items,
// F = their harmonic mean. Pairwise: the pairs put together that belong together.
// requires: predicted.size() == truth.size() (else std::invalid_argument).
ClusterScores score_clusters(std::span<const std::int64_t> predicted, std::span<const std::int64_t> truth);

// The exact similarity matrix of n unit templates (n x n, row-major; BLAS).
std::vector<float> similarity_matrix(const std::vector<float>& rows, std::size_t n, std::size_t dim);

// Pairs (i < j) with similarity >= floor, from the matrix.
struct ScoredPair {
  std::uint32_t a = 0, b = 0;
  float sim = 0;
};
std::vector<ScoredPair> pairs_at_least(const std::vector<float>& sim, std::size_t n, float floor);

// The baselines of issue 13's table, as labels per item:
// dlib's Chinese whispers: unweighted edges for pairs >= t, labels updated in a random
// order for `iterations` rounds (dlib: 100).
std::vector<std::int64_t> chinese_whispers_baseline(std::span<const ScoredPair> pairs, std::size_t n, float t,
                                                    int iterations = 100, std::uint64_t seed = 1);
// Connected components of the pairs >= t.
std::vector<std::int64_t> connected_components(std::span<const ScoredPair> pairs, std::size_t n, float t);

// Average-linkage agglomerative clustering (UPGMA) over the full matrix, by the
// nearest-neighbour chain (O(n^2) time and memory). The result: the merges, from which
// any cut is taken without re-running.
struct Dendrogram {
  std::vector<std::uint32_t> a, b;  // items representing the two merged clusters
  std::vector<float> height;         // the average similarity at which they merged
};
Dendrogram average_linkage(std::vector<float> sim, std::size_t n);
// The clusters of the merges at or above t (average linkage is monotone, so these
// merges form whole subtrees).
std::vector<std::int64_t> cut(const Dendrogram& d, std::size_t n, float t);

// Immich's incremental rule (its face-detection job, defaults maxDistance 0.5,
// minFaces 3): in input order, a face with at least min_faces faces (itself included)
// within cosine distance max_distance joins the person of its nearest such face that
// has one, or founds a person; faces with fewer neighbours are deferred, then join the
// person of their nearest neighbour within the distance, or stay alone.
std::vector<std::int64_t> immich_rule(const std::vector<float>& sim, std::size_t n, float max_distance,
                                      int min_faces = 3);

}  // namespace candor::bench
