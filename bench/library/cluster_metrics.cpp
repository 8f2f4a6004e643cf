#include "library/cluster_metrics.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <unordered_map>

extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                      const float* beta, float* c, const int* ldc);

namespace candor::bench {

ClusterScores score_clusters(std::span<const std::int64_t> predicted, std::span<const std::int64_t> truth) {
  if (predicted.size() != truth.size()) throw std::invalid_argument("score_clusters: sizes differ");
  std::map<std::pair<std::int64_t, std::int64_t>, double> both;
  std::unordered_map<std::int64_t, double> group_size, label_size;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    ++both[{predicted[i], truth[i]}], ++group_size[predicted[i]], ++label_size[truth[i]];
  }
  ClusterScores s;
  s.groups = group_size.size();
  if (truth.empty()) return s;
  // Every item of cell (g, l) has precision n_gl / |g| and recall n_gl / |l|.
  double p = 0, r = 0, together = 0, put = 0, belong = 0;
  for (const auto& [key, count] : both) {
    p += count * count / group_size[key.first];
    r += count * count / label_size[key.second];
    together += count * (count - 1) / 2;
  }
  for (const auto& [g, count] : group_size) put += count * (count - 1) / 2;
  for (const auto& [l, count] : label_size) belong += count * (count - 1) / 2;
  const auto n = static_cast<double>(truth.size());
  auto f = [](double a, double b) { return a + b > 0 ? 2 * a * b / (a + b) : 0.0; };
  s.bcubed_precision = p / n;
  s.bcubed_recall = r / n;
  s.bcubed_f = f(s.bcubed_precision, s.bcubed_recall);
  s.pair_precision = put > 0 ? together / put : 1.0;
  s.pair_recall = belong > 0 ? together / belong : 1.0;
  s.pair_f = f(s.pair_precision, s.pair_recall);
  return s;
}

std::vector<float> similarity_matrix(const std::vector<float>& rows, std::size_t n, std::size_t dim) {
  std::vector<float> sim(n * n);
  const int ni = static_cast<int>(n), di = static_cast<int>(dim);
  const float one = 1.0F, zero = 0.0F;
  // Column-major view: rows is dim x n; sim = rows^T rows (symmetric).
  sgemm_("T", "N", &ni, &ni, &di, &one, rows.data(), &di, rows.data(), &di, &zero, sim.data(), &ni);
  return sim;
}

std::vector<ScoredPair> pairs_at_least(const std::vector<float>& sim, std::size_t n, float floor) {
  std::vector<ScoredPair> out;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) {
      if (sim[i * n + j] >= floor) out.push_back({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j), sim[i * n + j]});
    }
  }
  return out;
}

namespace {

std::vector<std::vector<std::uint32_t>> adjacency(std::span<const ScoredPair> pairs, std::size_t n, float t) {
  std::vector<std::vector<std::uint32_t>> adj(n);
  for (const ScoredPair& p : pairs) {
    if (p.sim >= t) adj[p.a].push_back(p.b), adj[p.b].push_back(p.a);
  }
  return adj;
}

std::size_t root(std::vector<std::size_t>& parent, std::size_t x) {
  while (parent[x] != x) x = parent[x] = parent[parent[x]];
  return x;
}

std::vector<std::int64_t> labels_of(std::vector<std::size_t>& parent) {
  std::vector<std::int64_t> out(parent.size());
  for (std::size_t i = 0; i < parent.size(); ++i) out[i] = static_cast<std::int64_t>(root(parent, i));
  return out;
}

}  // namespace

std::vector<std::int64_t> chinese_whispers_baseline(std::span<const ScoredPair> pairs, std::size_t n, float t,
                                                    int iterations, std::uint64_t seed) {
  const auto adj = adjacency(pairs, n, t);
  std::vector<std::int64_t> label(n);
  std::iota(label.begin(), label.end(), 0);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::unordered_map<std::int64_t, int> votes;
  for (int it = 0; it < iterations; ++it) {
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t i : order) {
      if (adj[i].empty()) continue;
      votes.clear();
      for (std::uint32_t j : adj[i]) ++votes[label[j]];
      std::int64_t best = label[i];
      int best_n = 0;
      for (const auto& [l, c] : votes) {
        if (c > best_n || (c == best_n && l < best)) best = l, best_n = c;
      }
      label[i] = best;
    }
  }
  return label;
}

std::vector<std::int64_t> connected_components(std::span<const ScoredPair> pairs, std::size_t n, float t) {
  std::vector<std::size_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  for (const ScoredPair& p : pairs) {
    if (p.sim >= t) parent[root(parent, p.a)] = root(parent, p.b);
  }
  return labels_of(parent);
}

Dendrogram average_linkage(std::vector<float> sim, std::size_t n) {
  Dendrogram d;
  std::vector<std::size_t> size(n, 1), active(n), slot(n);
  std::iota(active.begin(), active.end(), 0);
  std::iota(slot.begin(), slot.end(), 0);
  std::vector<std::size_t> chain;
  auto deactivate = [&](std::size_t x) {
    const std::size_t s = slot[x], last = active.back();
    active[s] = last, slot[last] = s;
    active.pop_back();
  };
  while (active.size() > 1) {
    if (chain.empty()) chain.push_back(active.front());
    const std::size_t a = chain.back();
    const std::size_t prev = chain.size() >= 2 ? chain[chain.size() - 2] : n;
    // The nearest active cluster; the previous one on the chain wins ties (NN-chain).
    std::size_t best = prev;
    float best_s = prev < n ? sim[a * n + prev] : -3.0F;
    for (std::size_t c : active) {
      if (c != a && sim[a * n + c] > best_s) best = c, best_s = sim[a * n + c];
    }
    if (best != prev) {
      chain.push_back(best);
      continue;
    }
    chain.pop_back(), chain.pop_back();
    d.a.push_back(static_cast<std::uint32_t>(a)), d.b.push_back(static_cast<std::uint32_t>(prev)), d.height.push_back(best_s);
    // Lance-Williams for average linkage; the merged cluster lives in a's row.
    const auto na = static_cast<float>(size[a]), nb = static_cast<float>(size[prev]);
    deactivate(prev);
    for (std::size_t c : active) {
      if (c == a) continue;
      const float v = (na * sim[a * n + c] + nb * sim[prev * n + c]) / (na + nb);
      sim[a * n + c] = sim[c * n + a] = v;
    }
    size[a] += size[prev];
  }
  return d;
}

std::vector<std::int64_t> cut(const Dendrogram& d, std::size_t n, float t) {
  std::vector<std::size_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  for (std::size_t m = 0; m < d.height.size(); ++m) {
    if (d.height[m] >= t) parent[root(parent, d.a[m])] = root(parent, d.b[m]);
  }
  return labels_of(parent);
}

std::vector<std::int64_t> immich_rule(const std::vector<float>& sim, std::size_t n, float max_distance,
                                      int min_faces) {
  const float t = 1.0F - max_distance;
  std::vector<std::int64_t> person(n, -1);
  std::vector<std::size_t> order(n), deferred;
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(1);  // photos arrive in no particular order of people
  std::shuffle(order.begin(), order.end(), rng);
  std::int64_t next = 0;
  // The nearest face within the distance that already has a person, or n.
  auto nearest_person = [&](std::size_t i) {
    std::size_t best = n;
    for (std::size_t j = 0; j < n; ++j) {
      if (j != i && person[j] >= 0 && sim[i * n + j] >= t && (best == n || sim[i * n + j] > sim[i * n + best])) best = j;
    }
    return best;
  };
  for (std::size_t i : order) {
    int near = 0;
    for (std::size_t j = 0; j < n; ++j) near += sim[i * n + j] >= t || j == i;
    if (near < min_faces) {
      deferred.push_back(i);
      continue;
    }
    const std::size_t j = nearest_person(i);
    person[i] = j < n ? person[j] : next++;
  }
  for (std::size_t i : deferred) {
    const std::size_t j = nearest_person(i);
    person[i] = j < n ? person[j] : next++;
  }
  return person;
}

}  // namespace candor::bench
