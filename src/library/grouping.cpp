// Candor library: grouping faces into people (include/candor/library.h).
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <numeric>
#include <queue>
#include <random>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "candor/index.h"
#include "candor/library.h"

namespace candor {
namespace {

struct Params {
  // The defaults are kDefaultGroupingSpec's (include/candor/library.h).
  std::size_t k = 24;
  float edge = 0.54F;
  float merge = 0.53F;
  float grow = 0.1F;      // the merge threshold rises by grow * (1 - 1/min(size_a, size_b))
  bool average = false;   // link=average: mean pairwise similarity instead of the means' cosine
  float sharp = 10.0F;    // an edge weighs exp(sharp * (similarity - edge)); 0: every edge weighs 1
  int iterations = 20;
  // The merge threshold rises by local * (the mean over both groups of their faces'
  // similarity to their k-th nearest face); 0: off.
  float local = 0.0F;
  // When one side of a merge is a single face of norm n < qref * (the median norm), the
  // threshold falls by qual * (qref - n / median); qual 0: off.
  float qual = 0.3F;
  float qref = 1.0F;
};

// "cw,k=24,edge=0.48,..." -> Params; the message names the item that does not parse.
Result<Params> parse_spec(std::string_view spec) {
  Params p;
  std::size_t item = 0;
  for (std::size_t pos = 0; pos <= spec.size(); ++item) {
    std::size_t end = spec.find(',', pos);
    if (end == std::string_view::npos) end = spec.size();
    const std::string_view token = spec.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t eq = token.find('=');
    const std::string_view name = token.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view{} : token.substr(eq + 1);
    auto bad = [&](const char* why) {
      return Error{ErrorCode::kInvalidArgument,
                   "grouping spec \"" + std::string(spec) + "\": " + std::string(token) + ": " + why};
    };
    if (item == 0) {
      if (token != "cw") return bad("unknown algorithm (cw)");
      continue;
    }
    if (name == "link" && (value == "centroid" || value == "average")) {
      p.average = value == "average";
      continue;
    }
    double v = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc() || ptr != value.data() + value.size()) return bad("needs a number");
    if (name == "k" && v >= 1 && v <= 1000 && v == std::floor(v)) p.k = static_cast<std::size_t>(v);
    else if (name == "edge" && v > -1 && v < 1) p.edge = static_cast<float>(v);
    else if (name == "merge" && v > -1 && v <= 1.5) p.merge = static_cast<float>(v);
    else if (name == "sharp" && v >= 0 && v <= 100) p.sharp = static_cast<float>(v);
    else if (name == "grow" && v >= 0 && v <= 1) p.grow = static_cast<float>(v);
    else if (name == "iter" && v >= 0 && v <= 1000 && v == std::floor(v)) p.iterations = static_cast<int>(v);
    else if (name == "local" && v >= 0 && v <= 2) p.local = static_cast<float>(v);
    else if (name == "qual" && v >= 0 && v <= 2) p.qual = static_cast<float>(v);
    else if (name == "qref" && v > 0 && v <= 2) p.qref = static_cast<float>(v);
    else return bad("unknown parameter or value out of range (k 1..1000, edge -1..1, merge -1..1.5, iter 0..1000, "
                    "local 0..2, qual 0..2, qref 0..2)");
  }
  return p;
}

double dot(const float* a, const float* b, std::size_t d) {
  double s = 0;
  for (std::size_t i = 0; i < d; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

class UnionFind {
 public:
  explicit UnionFind(std::size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), 0); }
  std::size_t find(std::size_t x) {
    while (parent_[x] != x) x = parent_[x] = parent_[parent_[x]];
    return x;
  }
  void unite(std::size_t a, std::size_t b) { parent_[find(a)] = find(b); }

 private:
  std::vector<std::size_t> parent_;
};

// A neighbour pair inside one grouping problem: positions into Problem::faces.
struct Edge {
  int a = 0, b = 0;
  float sim = 0;
};

// The faces one call groups. Faces with a fixed label keep it (incremental add).
struct Problem {
  std::vector<int> faces;             // global face indices
  std::vector<std::int64_t> fixed;    // per position: a group id, or 0 for a free face
  std::vector<Edge> edges;            // deduplicated, a < b
};

class FaceGroupingImpl final : public FaceGrouping {
 public:
  FaceGroupingImpl(int dim, Params params, GroupingOptions options, std::unique_ptr<Index> index)
      : dim_(dim), params_(params), options_(std::move(options)), index_(std::move(index)) {}

  int dim() const override { return dim_; }
  std::size_t size() const override { return ids_.size(); }

  Status add(std::span<const GroupingFace> faces, std::span<const float> vectors) override {
    const std::size_t first = ids_.size();
    if (auto inserted = insert(faces, vectors); !inserted) return inserted;
    std::vector<int> fresh(faces.size());
    std::iota(fresh.begin(), fresh.end(), static_cast<int>(first));
    if (fresh.empty()) return ok_status();
    // Neighbours of the new faces among all faces; old neighbours keep their group.
    Problem p;
    std::unordered_map<int, int> position;
    for (int f : fresh) position.emplace(f, static_cast<int>(p.faces.size())), p.faces.push_back(f), p.fixed.push_back(0);
    const auto lists = neighbours(fresh);
    remember(fresh, lists);
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      for (const Neighbor& n : lists[i]) {
        const int g = static_cast<int>(n.id);
        if (g == fresh[i]) continue;
        auto [it, added] = position.emplace(g, static_cast<int>(p.faces.size()));
        if (added) p.faces.push_back(g), p.fixed.push_back(group_[static_cast<std::size_t>(g)]);
        p.edges.push_back({static_cast<int>(i), it->second, n.score});
      }
    }
    // Old faces a new face is must-linked to join the problem, so that the unit forms.
    for (int f : fresh) {
      auto it = must_.find(ids_[static_cast<std::size_t>(f)]);
      if (it == must_.end()) continue;
      for (std::int64_t other : it->second) {
        auto j = index_of_.find(other);
        if (j == index_of_.end() || j->second >= static_cast<int>(first)) continue;
        if (position.emplace(j->second, static_cast<int>(p.faces.size())).second) {
          p.faces.push_back(j->second), p.fixed.push_back(group_[static_cast<std::size_t>(j->second)]);
        }
      }
    }
    dedupe(p.edges);
    solve(p, /*regroup=*/false);
    relabel_new(p);
    rebuild_members();
    return ok_status();
  }

  Status restore(std::span<const GroupingFace> faces, std::span<const float> vectors,
                 std::span<const std::int64_t> groups, const GroupingConstraints& c, std::int64_t next_group) override {
    if (!ids_.empty()) return Error{ErrorCode::kInvalidArgument, "restore needs an empty grouping"};
    if (groups.size() != faces.size()) {
      return Error{ErrorCode::kInvalidArgument, "restore needs one group per face"};
    }
    if (std::any_of(groups.begin(), groups.end(), [](std::int64_t g) { return g <= 0; })) {
      return Error{ErrorCode::kInvalidArgument, "restored group ids must be > 0"};
    }
    for (const FacePair& pair : c.cannot_link) cannot_[pair.a].push_back(pair.b), cannot_[pair.b].push_back(pair.a);
    for (const FacePair& pair : c.must_link) must_[pair.a].push_back(pair.b), must_[pair.b].push_back(pair.a);
    // Only the corrections' consistency is checked: the restored groups are as stored.
    if (auto inserted = insert(faces, vectors); !inserted) {
      cannot_.clear(), must_.clear();
      return inserted;
    }
    next_group_ = std::max<std::int64_t>(next_group_, next_group);
    for (std::size_t i = 0; i < groups.size(); ++i) {
      group_[i] = groups[i];
      next_group_ = std::max(next_group_, groups[i] + 1);
    }
    rebuild_members();
    return ok_status();
  }

  Status correct(const GroupingConstraints& c) override {
    for (const auto* list : {&c.cannot_link, &c.must_link}) {
      for (const FacePair& pair : *list) {
        if (pair.a == pair.b) {
          return Error{ErrorCode::kInvalidArgument, "correction names face " + std::to_string(pair.a) + " twice"};
        }
      }
    }
    const auto old_cannot = cannot_, old_must = must_;
    for (const FacePair& pair : c.cannot_link) cannot_[pair.a].push_back(pair.b), cannot_[pair.b].push_back(pair.a);
    for (const FacePair& pair : c.must_link) must_[pair.a].push_back(pair.b), must_[pair.b].push_back(pair.a);
    if (auto valid = validate(); !valid) {
      cannot_ = old_cannot, must_ = old_must;
      return valid;
    }
    // The groups the corrections touch are re-grouped among themselves.
    std::set<std::int64_t> touched;
    for (const auto* list : {&c.cannot_link, &c.must_link}) {
      for (const FacePair& pair : *list) {
        for (std::int64_t id : {pair.a, pair.b}) {
          if (auto it = index_of_.find(id); it != index_of_.end()) touched.insert(group_[static_cast<std::size_t>(it->second)]);
        }
      }
    }
    std::vector<int> faces;
    for (std::int64_t g : touched) faces.insert(faces.end(), members_[g].begin(), members_[g].end());
    regroup_faces(faces);
    return ok_status();
  }

  void pin(std::span<const std::int64_t> groups) override { pinned_.insert(groups.begin(), groups.end()); }

  Status regroup() override {
    std::vector<int> all(ids_.size());
    std::iota(all.begin(), all.end(), 0);
    regroup_faces(all);
    return ok_status();
  }

  std::optional<std::int64_t> group_of(std::int64_t face) const override {
    auto it = index_of_.find(face);
    if (it == index_of_.end()) return std::nullopt;
    return group_[static_cast<std::size_t>(it->second)];
  }

  std::map<std::int64_t, std::vector<std::int64_t>> groups() const override {
    std::map<std::int64_t, std::vector<std::int64_t>> out;
    for (std::size_t f = 0; f < ids_.size(); ++f) out[group_[f]].push_back(ids_[f]);
    for (auto& [g, faces] : out) std::sort(faces.begin(), faces.end());
    return out;
  }

  // Appends faces without grouping them (each is its own group until solve()).
  Status insert(std::span<const GroupingFace> faces, std::span<const float> vectors) {
    const auto d = static_cast<std::size_t>(dim_);
    if (vectors.size() != faces.size() * d) {
      return Error{ErrorCode::kInvalidArgument, std::to_string(vectors.size()) + " floats for " +
                                                    std::to_string(faces.size()) + " faces of dimension " +
                                                    std::to_string(dim_)};
    }
    std::unordered_set<std::int64_t> seen;
    for (const GroupingFace& f : faces) {
      if (index_of_.count(f.face) != 0 || !seen.insert(f.face).second) {
        return Error{ErrorCode::kInvalidArgument, "face " + std::to_string(f.face) + " added twice"};
      }
    }
    const std::size_t first = ids_.size();
    for (std::size_t i = 0; i < faces.size(); ++i) {
      const int idx = static_cast<int>(first + i);
      index_of_.emplace(faces[i].face, idx);
      ids_.push_back(faces[i].face);
      photo_.push_back(faces[i].photo);
      norm_.push_back(std::isfinite(faces[i].norm) && faces[i].norm > 0 ? faces[i].norm : 0.0F);
      photo_faces_[faces[i].photo].push_back(idx);
      group_.push_back(-1 - idx);  // a temporary label of its own, below every group id
    }
    vectors_.insert(vectors_.end(), vectors.begin(), vectors.end());
    if (auto valid = validate(); !valid) {
      rollback(first);
      return valid;
    }
    std::vector<std::int64_t> ids(faces.size());
    std::iota(ids.begin(), ids.end(), static_cast<std::int64_t>(first));
    index_->add(ids, vectors);
    return ok_status();
  }

  // Renumbers groups 1..G by their smallest face id (group_faces()).
  std::map<std::int64_t, std::int64_t> numbered() const {
    std::map<std::int64_t, std::int64_t> out, number;
    std::vector<std::size_t> order(ids_.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ids_[a] < ids_[b]; });
    for (std::size_t f : order) {
      auto [it, added] = number.emplace(group_[f], static_cast<std::int64_t>(number.size()) + 1);
      out[ids_[f]] = it->second;
    }
    return out;
  }

 private:
  void rollback(std::size_t first) {
    for (std::size_t f = first; f < ids_.size(); ++f) {
      index_of_.erase(ids_[f]);
      auto& list = photo_faces_[photo_[f]];
      list.erase(std::remove(list.begin(), list.end(), static_cast<int>(f)), list.end());
      if (list.empty()) photo_faces_.erase(photo_[f]);
    }
    ids_.resize(first), photo_.resize(first), group_.resize(first), norm_.resize(first);
    vectors_.resize(first * static_cast<std::size_t>(dim_));
  }

  // The faces a face may never share a group with: the other faces of its photo and
  // its cannot-links (global indices).
  template <typename F>
  void for_each_conflict(int f, F&& fn) const {
    for (int g : photo_faces_.at(photo_[static_cast<std::size_t>(f)])) {
      if (g != f) fn(g);
    }
    if (auto it = cannot_.find(ids_[static_cast<std::size_t>(f)]); it != cannot_.end()) {
      for (std::int64_t id : it->second) {
        if (auto j = index_of_.find(id); j != index_of_.end()) fn(j->second);
      }
    }
  }

  bool conflict(int a, int b) const {
    bool found = false;
    for_each_conflict(a, [&](int g) { found = found || g == b; });
    return found;
  }

  // kInvalidArgument when the must-links join a conflict among the faces held.
  Status validate() const {
    UnionFind uf(ids_.size());
    for (const auto& [id, others] : must_) {
      auto a = index_of_.find(id);
      if (a == index_of_.end()) continue;
      for (std::int64_t other : others) {
        if (auto b = index_of_.find(other); b != index_of_.end()) uf.unite(static_cast<std::size_t>(a->second), static_cast<std::size_t>(b->second));
      }
    }
    for (std::size_t f = 0; f < ids_.size(); ++f) {
      bool bad = false;
      for_each_conflict(static_cast<int>(f), [&](int g) { bad = bad || uf.find(f) == uf.find(static_cast<std::size_t>(g)); });
      if (bad) {
        return Error{ErrorCode::kInvalidArgument, "must-link corrections would put face " + std::to_string(ids_[f]) +
                                                      " in one group with a face of its photo or one it is "
                                                      "cannot-linked to"};
      }
    }
    return ok_status();
  }

  // The k nearest faces of each given face (itself included), in parallel.
  std::vector<std::vector<Neighbor>> neighbours(const std::vector<int>& faces) const {
    const auto d = static_cast<std::size_t>(dim_);
    std::vector<std::vector<Neighbor>> out(faces.size());
    const std::size_t k = std::min(params_.k + 1, index_->size());
    const unsigned threads = options_.threads > 0 ? static_cast<unsigned>(options_.threads)
                                                  : std::max(1U, std::thread::hardware_concurrency());
    constexpr std::size_t kChunk = 512;  // queries per search(): batched enough for BLAS
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      std::vector<float> queries;
      for (std::size_t lo; (lo = next.fetch_add(kChunk)) < faces.size();) {
        const std::size_t hi = std::min(faces.size(), lo + kChunk);
        queries.clear();
        for (std::size_t i = lo; i < hi; ++i) {
          const float* v = vectors_.data() + static_cast<std::size_t>(faces[i]) * d;
          queries.insert(queries.end(), v, v + d);
        }
        auto found = index_->search(queries, k);
        for (std::size_t i = lo; i < hi; ++i) out[i] = std::move(found[i - lo]);
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < std::min<std::size_t>(threads, (faces.size() + kChunk - 1) / kChunk); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    return out;
  }

  // Keeps the neighbour lists for the local scale (Params::local): the new lists,
  // and each new face in the list of an old face it is nearer to than that face's
  // farthest kept neighbour (so an old face's scale sees the faces that arrive
  // later, as far as the new faces' own searches find them).
  void remember(const std::vector<int>& faces, const std::vector<std::vector<Neighbor>>& lists) {
    if (params_.local <= 0) return;
    knn_.resize(ids_.size());
    for (std::size_t i = 0; i < faces.size(); ++i) knn_[static_cast<std::size_t>(faces[i])] = lists[i];
    const std::size_t keep = params_.k + 1;
    for (std::size_t i = 0; i < faces.size(); ++i) {
      for (const Neighbor& n : lists[i]) {
        auto& other = knn_[static_cast<std::size_t>(n.id)];
        if (n.id == faces[i] || other.empty()) continue;
        if (std::any_of(other.begin(), other.end(), [&](const Neighbor& m) { return m.id == faces[i]; })) continue;
        if (other.size() >= keep && n.score <= other.back().score) continue;
        auto at = std::upper_bound(other.begin(), other.end(), n.score,
                                   [](float s, const Neighbor& m) { return s > m.score; });
        other.insert(at, Neighbor{static_cast<std::int64_t>(faces[i]), n.score});
        if (other.size() > keep) other.pop_back();
      }
    }
  }

  // Searches the given faces that have no neighbour list yet (restored ones).
  void ensure_lists(const std::vector<int>& faces) {
    knn_.resize(ids_.size());
    std::vector<int> missing;
    for (int f : faces) {
      if (knn_[static_cast<std::size_t>(f)].empty()) missing.push_back(f);
    }
    if (missing.empty()) return;
    const auto lists = neighbours(missing);
    for (std::size_t i = 0; i < missing.size(); ++i) knn_[static_cast<std::size_t>(missing[i])] = lists[i];
  }

  // A face's local scale: its similarity to its k-th nearest face, but never below
  // the scale a typical LFW face has with this model, about 0.28 (local=0.5,
  // merge=0.36 and local=0, merge=0.50 score alike on A-M: README "Photo
  // libraries: grouping (issue 13)"), and that also while the library holds too few
  // faces for a k-th one. The scale only raises the threshold where look-alikes
  // are dense: in a sparse or small library the farthest neighbours score low
  // (below 0 in a small one), and a threshold lowered by them merges strangers.
  double scale(int f) const {
    constexpr double kTypicalScale = 0.28;
    const auto& list = knn_[static_cast<std::size_t>(f)];
    if (list.size() < params_.k + 1) return kTypicalScale;
    return std::max(kTypicalScale, static_cast<double>(list.back().score));
  }

  static void dedupe(std::vector<Edge>& edges) {
    for (Edge& e : edges) {
      if (e.a > e.b) std::swap(e.a, e.b);
    }
    std::sort(edges.begin(), edges.end(), [](const Edge& x, const Edge& y) { return x.a != y.a ? x.a < y.a : x.b < y.b; });
    edges.erase(std::unique(edges.begin(), edges.end(), [](const Edge& x, const Edge& y) { return x.a == y.a && x.b == y.b; }),
                edges.end());
  }

  // Re-groups the given faces from scratch (every other face keeps its group) and
  // gives the new groups the ids of the old ones by overlap.
  void regroup_faces(const std::vector<int>& faces) {
    if (faces.empty()) return;
    std::map<int, std::int64_t> before;
    for (int f : faces) before[f] = group_[static_cast<std::size_t>(f)];
    Problem p;
    p.faces = faces;
    p.fixed.assign(faces.size(), 0);
    std::unordered_map<int, int> position;
    for (std::size_t i = 0; i < faces.size(); ++i) position.emplace(faces[i], static_cast<int>(i));
    const auto lists = neighbours(faces);
    remember(faces, lists);
    for (std::size_t i = 0; i < faces.size(); ++i) {
      for (const Neighbor& n : lists[i]) {
        auto it = position.find(static_cast<int>(n.id));
        if (it != position.end() && it->second != static_cast<int>(i)) p.edges.push_back({static_cast<int>(i), it->second, n.score});
      }
    }
    dedupe(p.edges);
    solve(p, /*regroup=*/true);
    // Old and new labels by shared faces, largest overlap first.
    std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> overlap;
    for (int f : faces) ++overlap[{before[f], group_[static_cast<std::size_t>(f)]}];
    std::vector<std::pair<std::size_t, std::pair<std::int64_t, std::int64_t>>> pairs;
    for (const auto& [key, n] : overlap) pairs.push_back({n, key});
    // Pinned old groups claim first: each new group holds at most one (split_pins), so
    // every pinned group with a face left keeps its id, and the owner's name with it.
    std::stable_sort(pairs.begin(), pairs.end(), [&](const auto& x, const auto& y) {
      const bool px = pinned_.count(x.second.first) != 0, py = pinned_.count(y.second.first) != 0;
      if (px != py) return px;
      return x.first != y.first ? x.first > y.first : x.second < y.second;
    });
    std::unordered_map<std::int64_t, std::int64_t> id_of;
    std::unordered_set<std::int64_t> taken;
    for (const auto& [n, key] : pairs) {
      const auto [old_id, label] = key;
      if (old_id > 0 && !id_of.count(label) && taken.insert(old_id).second) id_of[label] = old_id;
    }
    for (int f : faces) {
      const std::int64_t label = group_[static_cast<std::size_t>(f)];
      auto [it, added] = id_of.emplace(label, 0);
      if (added) it->second = next_group_++;
      group_[static_cast<std::size_t>(f)] = it->second;
    }
    rebuild_members();
  }

  // Gives every temporary (negative) label among the problem's faces a new group id.
  void relabel_new(const Problem& p) {
    std::unordered_map<std::int64_t, std::int64_t> id_of;
    for (int f : p.faces) {
      std::int64_t& g = group_[static_cast<std::size_t>(f)];
      if (g >= 0) continue;
      auto [it, added] = id_of.emplace(g, 0);
      if (added) it->second = next_group_++;
      g = it->second;
    }
  }

  void rebuild_members() {
    members_.clear();
    for (std::size_t f = 0; f < ids_.size(); ++f) members_[group_[f]].push_back(static_cast<int>(f));
  }

  // Groups the problem's faces: steps 2-5 of library.h. Free faces end with
  // temporary labels (negative) or a fixed group's id. No group ends up holding the
  // faces of two pinned groups: in an add, a pinned group is fixed and keeps its label;
  // in a regroup (all faces free), split_pins and the merges see to it.
  void solve(Problem& p, bool regroup) {
    const std::size_t n = p.faces.size();
    // regroup: each face's pinned old group (0: none), read before the labels change.
    std::vector<std::int64_t> pin(n, 0);
    if (regroup) {
      for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t g = group_[static_cast<std::size_t>(p.faces[i])];
        if (pinned_.count(g) != 0) pin[i] = g;
      }
    }
    // Must-linked faces of the problem are one node (a unit).
    std::unordered_map<int, int> position;
    for (std::size_t i = 0; i < n; ++i) position.emplace(p.faces[i], static_cast<int>(i));
    UnionFind uf(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto it = must_.find(ids_[static_cast<std::size_t>(p.faces[i])]);
      if (it == must_.end()) continue;
      for (std::int64_t other : it->second) {
        auto j = index_of_.find(other);
        if (j == index_of_.end()) continue;
        if (auto q = position.find(j->second); q != position.end()) uf.unite(i, static_cast<std::size_t>(q->second));
      }
    }
    std::vector<int> unit_of(n);
    std::vector<std::vector<int>> unit_faces;  // positions
    std::unordered_map<std::size_t, int> unit_id;
    for (std::size_t i = 0; i < n; ++i) {
      auto [it, added] = unit_id.emplace(uf.find(i), static_cast<int>(unit_faces.size()));
      if (added) unit_faces.emplace_back();
      unit_of[i] = it->second;
      unit_faces[static_cast<std::size_t>(it->second)].push_back(static_cast<int>(i));
    }
    const std::size_t units = unit_faces.size();
    // Labels: a fixed group id, else a temporary label of the unit's own.
    std::vector<std::int64_t> label(units, 0);
    std::vector<char> clamped(units, 0);
    for (std::size_t u = 0; u < units; ++u) {
      label[u] = -1 - static_cast<std::int64_t>(u);
      for (int i : unit_faces[u]) {
        if (p.fixed[static_cast<std::size_t>(i)] != 0) label[u] = p.fixed[static_cast<std::size_t>(i)], clamped[u] = 1;
      }
    }
    // Step 2: the weighted unit graph.
    std::vector<std::vector<std::pair<int, float>>> adj(units);
    for (const Edge& e : p.edges) {
      if (e.sim < params_.edge) continue;
      const int ua = unit_of[static_cast<std::size_t>(e.a)], ub = unit_of[static_cast<std::size_t>(e.b)];
      if (ua == ub || conflict(p.faces[static_cast<std::size_t>(e.a)], p.faces[static_cast<std::size_t>(e.b)])) continue;
      const float w = std::exp(params_.sharp * (e.sim - params_.edge));
      adj[static_cast<std::size_t>(ua)].push_back({ub, w});
      adj[static_cast<std::size_t>(ub)].push_back({ua, w});
    }
    // Step 3: Chinese whispers; clamped units never change.
    std::vector<int> order;
    for (std::size_t u = 0; u < units; ++u) {
      if (!clamped[u] && !adj[u].empty()) order.push_back(static_cast<int>(u));
    }
    std::mt19937_64 rng(options_.seed);
    std::unordered_map<std::int64_t, double> votes;
    for (int it = 0; it < params_.iterations; ++it) {
      std::shuffle(order.begin(), order.end(), rng);
      bool changed = false;
      for (int u : order) {
        votes.clear();
        for (const auto& [v, w] : adj[static_cast<std::size_t>(u)]) votes[label[static_cast<std::size_t>(v)]] += w;
        std::int64_t best = label[static_cast<std::size_t>(u)];
        double best_w = votes.count(best) ? votes[best] : -1.0;
        for (const auto& [l, w] : votes) {
          if (w > best_w || (w == best_w && l < best)) best = l, best_w = w;
        }
        if (best != label[static_cast<std::size_t>(u)]) label[static_cast<std::size_t>(u)] = best, changed = true;
      }
      if (!changed) break;
    }
    for (std::size_t u = 0; u < units; ++u) {
      for (int i : unit_faces[u]) group_[static_cast<std::size_t>(p.faces[static_cast<std::size_t>(i)])] = label[u];
    }
    std::int64_t next_temp = -1 - static_cast<std::int64_t>(units);
    for (std::int64_t g : group_) next_temp = std::min(next_temp, g - 1);
    if (regroup) split_pins(p, unit_faces, pin, next_temp);
    split_conflicts(p, unit_faces, clamped, next_temp);
    merge_groups(p, pin);
  }

  // regroup: a group Chinese whispers formed over the faces of two or more pinned groups
  // is cut by pin: the faces of the pin with the most faces keep the label, with the
  // unpinned faces; each other pin's faces get a label of their own (per unit: the pin of
  // its first face). So no group holds two pinned groups' faces and each keeps its id.
  void split_pins(const Problem& p, const std::vector<std::vector<int>>& unit_faces,
                  const std::vector<std::int64_t>& pin, std::int64_t& next_temp) {
    std::map<std::int64_t, std::map<std::int64_t, std::size_t>> pins_of;  // label -> pin -> faces
    auto label_of = [&](const std::vector<int>& unit) { return group_[static_cast<std::size_t>(p.faces[static_cast<std::size_t>(unit[0])])]; };
    auto pin_of = [&](const std::vector<int>& unit) { return pin[static_cast<std::size_t>(unit[0])]; };
    for (const auto& unit : unit_faces) {
      if (pin_of(unit) != 0) pins_of[label_of(unit)][pin_of(unit)] += unit.size();
    }
    std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> moved;  // (label, pin) -> new label
    for (const auto& [label, counts] : pins_of) {
      if (counts.size() < 2) continue;
      const auto kept = std::max_element(counts.begin(), counts.end(), [](const auto& x, const auto& y) {
        return x.second != y.second ? x.second < y.second : x.first > y.first;
      })->first;
      for (const auto& [g, count] : counts) {
        if (g != kept) moved[{label, g}] = next_temp--;
      }
    }
    if (moved.empty()) return;
    for (const auto& unit : unit_faces) {
      auto it = moved.find({label_of(unit), pin_of(unit)});
      if (it == moved.end()) continue;
      for (int i : unit) group_[static_cast<std::size_t>(p.faces[static_cast<std::size_t>(i)])] = it->second;
    }
  }

  // Step 4. Each group of the problem holding a conflict is cut into parts: units in
  // order of similarity to the group's mean (clamped units first: they are one old
  // group, already free of conflicts), each into the first part it does not conflict
  // with. Faces outside the problem belong to part 0 of their group.
  void split_conflicts(const Problem& p, const std::vector<std::vector<int>>& unit_faces,
                       const std::vector<char>& clamped, std::int64_t& next_temp) {
    const auto d = static_cast<std::size_t>(dim_);
    std::map<std::int64_t, std::vector<int>> by_label;  // label -> units
    for (std::size_t u = 0; u < unit_faces.size(); ++u) {
      by_label[group_[static_cast<std::size_t>(p.faces[static_cast<std::size_t>(unit_faces[u][0])])]].push_back(static_cast<int>(u));
    }
    std::unordered_map<int, int> part;  // global face -> part, for the faces placed so far
    std::vector<char> in_problem;  // filled when a group needs a split
    for (auto& [label, group_units] : by_label) {
      if (group_units.size() < 2) continue;
      const auto l = label;  // a copy: lambdas may not capture a structured binding (clang 14)
      bool any = false;
      for (int u : group_units) {
        for (int i : unit_faces[static_cast<std::size_t>(u)]) {
          for_each_conflict(p.faces[static_cast<std::size_t>(i)], [&](int g) { any = any || group_[static_cast<std::size_t>(g)] == l; });
        }
      }
      if (!any) continue;
      if (in_problem.empty()) {
        in_problem.assign(ids_.size(), 0);
        for (int f : p.faces) in_problem[static_cast<std::size_t>(f)] = 1;
      }
      std::vector<double> mean(d, 0.0);
      for (int u : group_units) {
        for (int i : unit_faces[static_cast<std::size_t>(u)]) {
          const float* v = vec(p.faces[static_cast<std::size_t>(i)]);
          for (std::size_t j = 0; j < d; ++j) mean[j] += v[j];
        }
      }
      std::vector<float> m(mean.begin(), mean.end());
      auto closeness = [&](int u) {
        double s = 0;
        for (int i : unit_faces[static_cast<std::size_t>(u)]) s += dot(vec(p.faces[static_cast<std::size_t>(i)]), m.data(), d);
        return s / static_cast<double>(unit_faces[static_cast<std::size_t>(u)].size());
      };
      std::vector<std::pair<double, int>> ranked;
      for (int u : group_units) ranked.push_back({clamped[static_cast<std::size_t>(u)] ? 1e9 : closeness(u), u});
      std::sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) { return x.first != y.first ? x.first > y.first : x.second < y.second; });
      part.clear();
      std::vector<std::int64_t> part_label{l};
      for (const auto& [score, u] : ranked) {
        const auto& members = unit_faces[static_cast<std::size_t>(u)];
        std::size_t chosen = 0;
        for (; chosen < part_label.size(); ++chosen) {
          bool fits = true;
          for (int i : members) {
            for_each_conflict(p.faces[static_cast<std::size_t>(i)], [&](int g) {
              if (group_[static_cast<std::size_t>(g)] != l) return;
              auto it = part.find(g);
              // A face of this group outside the problem (an old face) is in part 0.
              const bool in_problem_unplaced = it == part.end() && in_problem[static_cast<std::size_t>(g)];
              const int gp = it != part.end() ? it->second : (in_problem_unplaced ? -1 : 0);
              if (gp == static_cast<int>(chosen)) fits = false;
            });
          }
          if (fits) break;
        }
        if (chosen == part_label.size()) part_label.push_back(next_temp--);
        for (int i : members) part[p.faces[static_cast<std::size_t>(i)]] = static_cast<int>(chosen);
      }
      for (const auto& [face, k] : part) group_[static_cast<std::size_t>(face)] = part_label[static_cast<std::size_t>(k)];
    }
  }

  // The median template norm of the faces held that have one (0: none has).
  double median_norm() const {
    std::vector<float> known;
    known.reserve(norm_.size());
    for (float n : norm_) {
      if (n > 0) known.push_back(n);
    }
    if (known.empty()) return 0.0;
    auto mid = known.begin() + static_cast<std::ptrdiff_t>(known.size() / 2);
    std::nth_element(known.begin(), mid, known.end());
    return *mid;
  }

  const float* vec(int f) const { return vectors_.data() + static_cast<std::size_t>(f) * static_cast<std::size_t>(dim_); }

  // Step 5: merge groups by the cosine of their mean templates. In rounds: the
  // pairs of groups joined by a neighbour pair, scored with this round's means, best
  // first, each re-scored if a side has changed; until a round merges nothing.
  // (A priority queue re-scoring every neighbour after each merge costs
  // groups x neighbours x dim once groups grow large; one merge per group per round
  // needs as many rounds as the largest group absorbs: minutes at 100k faces.)
  // `pin`: per problem position, the pinned group its face was in before a regroup
  // (0: none, and always 0 in an add, where a pinned group is a fixed one).
  void merge_groups(const Problem& p, const std::vector<std::int64_t>& pin) {
    const auto d = static_cast<std::size_t>(dim_);
    struct Group {
      std::vector<double> sum;
      std::vector<int> faces;  // global
      bool fixed = false;     // holds faces grouped before this add
      std::int64_t pin = 0;   // the pinned group (pin()) it holds or is, 0: none; two pins never merge
      double scale = 0;  // the sum of its faces' local scales (Params::local)
    };
    std::unordered_map<std::int64_t, Group> groups;
    std::unordered_set<std::int64_t> fixed_labels;
    for (std::size_t i = 0; i < p.faces.size(); ++i) {
      if (p.fixed[i] != 0) fixed_labels.insert(p.fixed[i]);
    }
    for (std::size_t i = 0; i < p.faces.size(); ++i) {
      // A fixed group starts with its old faces (members_); the problem adds its free
      // faces, those Chinese whispers or a split gave its label.
      const std::int64_t l = group_[static_cast<std::size_t>(p.faces[i])];
      auto [it, added] = groups.try_emplace(l);
      Group& g = it->second;
      if (added) {
        g.sum.assign(d, 0.0);
        g.fixed = fixed_labels.count(l) != 0;
        if (g.fixed && pinned_.count(l) != 0) g.pin = l;
        if (g.fixed) g.faces = members_.at(l);
      }
      if (p.fixed[i] == 0) g.faces.push_back(p.faces[i]);
      if (pin[i] != 0) g.pin = pin[i];  // at most one per group (split_pins)
    }
    if (params_.local > 0) {
      std::vector<int> all;
      for (const auto& [l, g] : groups) all.insert(all.end(), g.faces.begin(), g.faces.end());
      ensure_lists(all);
    }
    for (auto& [l, g] : groups) {
      for (int f : g.faces) {
        if (params_.local > 0) g.scale += scale(f);
        const float* v = vec(f);
        for (std::size_t j = 0; j < d; ++j) g.sum[j] += v[j];
      }
    }
    auto norm = [&](const Group& g) { return std::sqrt(std::inner_product(g.sum.begin(), g.sum.end(), g.sum.begin(), 0.0)); };
    struct Candidate {
      double score;
      std::int64_t a, b;
    };
    std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
    std::vector<Candidate> candidates;
    std::unordered_map<std::int64_t, std::int64_t> forward;  // merged label -> the label it went to
    std::unordered_map<std::int64_t, double> norms;
    auto score = [&](const Group& a, const Group& b) {
      const double ab = std::inner_product(a.sum.begin(), a.sum.end(), b.sum.begin(), 0.0);
      if (params_.average) return ab / (static_cast<double>(a.faces.size()) * static_cast<double>(b.faces.size()));
      const double n2 = norm(a) * norm(b);
      return n2 > 0 ? ab / n2 : 0.0;
    };
    // The local term is the local scale of self-tuning spectral clustering
    // (Zelnik-Manor & Perona, NIPS 2004: each point's distance to its K-th
    // neighbour), used here as cohort score normalisation is in verification
    // (Auckenthaler et al., Digital Signal Processing 10, 2000): a face in a dense
    // part of the library (many look-alikes, so a high k-th similarity) needs a
    // higher score to join. It is what a fixed threshold lacks as the library
    // grows: more people bring closer look-alikes for every face, and the k-th
    // similarity rises with them (README "Photo libraries: grouping (issue 13)").
    // The quality term (Params::qual) is a quality-aware comparison in the manner of
    // QMagFace (Terhörst et al., WACV 2023: the score is raised by a weight times the
    // lower quality of the two faces), kept to single faces: a group's mean template
    // is already steadied by its faces. Chosen on LFW A-M (README "Photo libraries:
    // grouping (issue 13)"): people with 2-3 photos split off their weak faces.
    const double median = params_.qual > 0 ? median_norm() : 0.0;
    auto weakness = [&](const Group& g) {
      if (median <= 0 || g.faces.size() != 1) return 0.0;
      const float n = norm_[static_cast<std::size_t>(g.faces[0])];
      return n > 0 ? std::max(0.0, params_.qref - n / median) : 0.0;
    };
    auto threshold = [&](const Group& a, const Group& b) {
      const auto smaller = static_cast<double>(std::min(a.faces.size(), b.faces.size()));
      const double local = 0.5 * (a.scale / static_cast<double>(a.faces.size()) + b.scale / static_cast<double>(b.faces.size()));
      return params_.merge + params_.grow * (1.0 - 1.0 / smaller) + params_.local * local -
             params_.qual * std::max(weakness(a), weakness(b));
    };
    for (;;) {
      pairs.clear();
      for (const Edge& e : p.edges) {
        const std::int64_t la = group_[static_cast<std::size_t>(p.faces[static_cast<std::size_t>(e.a)])];
        const std::int64_t lb = group_[static_cast<std::size_t>(p.faces[static_cast<std::size_t>(e.b)])];
        if (la != lb) pairs.push_back({std::min(la, lb), std::max(la, lb)});
      }
      std::sort(pairs.begin(), pairs.end());
      pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
      norms.clear();
      for (const auto& [l, g] : groups) norms[l] = norm(g);
      candidates.clear();
      for (const auto& [la, lb] : pairs) {
        const Group& a = groups.at(la);
        const Group& b = groups.at(lb);
        if (a.pin != 0 && b.pin != 0 && a.pin != b.pin) continue;
        const double na = norms[la], nb = norms[lb];
        if (na <= 0 || nb <= 0) continue;
        const double ab = std::inner_product(a.sum.begin(), a.sum.end(), b.sum.begin(), 0.0);
        const double s = params_.average ? ab / (static_cast<double>(a.faces.size()) * static_cast<double>(b.faces.size()))
                                         : ab / (na * nb);
        if (s >= threshold(a, b)) candidates.push_back({s, la, lb});
      }
      std::sort(candidates.begin(), candidates.end(), [](const Candidate& x, const Candidate& y) {
        return x.score != y.score ? x.score > y.score : std::tie(x.a, x.b) < std::tie(y.a, y.b);
      });
      // A pair scored at the start of the round is re-scored with the current means
      // (either side may have merged since) before it merges.
      forward.clear();
      auto current = [&](std::int64_t l) {
        for (auto it = forward.find(l); it != forward.end(); it = forward.find(l)) l = it->second;
        return l;
      };
      bool merged = false;
      for (const Candidate& c : candidates) {
        const std::int64_t ca = current(c.a), cb = current(c.b);
        if (ca == cb) continue;
        Group* keep = &groups.at(ca);
        Group* gone = &groups.at(cb);
        if (keep->pin != 0 && gone->pin != 0 && keep->pin != gone->pin) continue;
        if ((ca != c.a || cb != c.b) && score(*keep, *gone) < threshold(*keep, *gone)) continue;
        std::int64_t keep_l = ca, gone_l = cb;
        // The survivor keeps a pinned group's id (at most one of them is pinned), else
        // a fixed group's, else the larger group's.
        const auto rank = [](const Group* g) { return std::tuple{g->pin != 0, g->fixed, g->faces.size()}; };
        if (rank(gone) > rank(keep)) std::swap(keep, gone), std::swap(keep_l, gone_l);
        const bool gone_smaller = gone->faces.size() <= keep->faces.size();
        const Group& small = gone_smaller ? *gone : *keep;
        const std::int64_t other = gone_smaller ? keep_l : gone_l;
        bool clash = false;
        for (int f : small.faces) {
          for_each_conflict(f, [&](int g) { clash = clash || group_[static_cast<std::size_t>(g)] == other; });
          if (clash) break;
        }
        if (clash) continue;
        for (int f : gone->faces) group_[static_cast<std::size_t>(f)] = keep_l;
        keep->faces.insert(keep->faces.end(), gone->faces.begin(), gone->faces.end());
        for (std::size_t j = 0; j < d; ++j) keep->sum[j] += gone->sum[j];
        keep->scale += gone->scale;
        keep->fixed = keep->fixed || gone->fixed;
        if (keep->pin == 0) keep->pin = gone->pin;
        groups.erase(gone_l);
        forward[gone_l] = keep_l;
        merged = true;
      }
      if (!merged) break;
    }
  }

  int dim_;
  Params params_;
  GroupingOptions options_;
  std::unique_ptr<Index> index_;  // ids: the faces' positions
  std::vector<std::int64_t> ids_, photo_, group_;
  std::vector<float> norm_;  // per face: its template norm, 0 when unknown
  std::vector<float> vectors_;
  std::unordered_map<std::int64_t, int> index_of_;
  std::unordered_map<std::int64_t, std::vector<int>> photo_faces_;
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> cannot_, must_;  // by face id, both directions
  std::unordered_map<std::int64_t, std::vector<int>> members_;  // group id -> faces
  std::unordered_set<std::int64_t> pinned_;  // pin(): groups add() never merges with each other
  std::vector<std::vector<Neighbor>> knn_;  // local > 0: per face its neighbour list (empty: not yet searched)
  std::int64_t next_group_ = 1;
};

}  // namespace

Result<std::unique_ptr<FaceGrouping>> FaceGrouping::create(int dim, const GroupingOptions& options) {
  if (dim <= 0) throw std::invalid_argument("FaceGrouping::create: dim must be > 0");
  auto params = parse_spec(options.spec);
  if (!params) return params.error();
  std::unique_ptr<Index> index;
  try {  // a spec from a user's option: a bad one is their mistake, not a bug
    index = make_index(dim, options.index_spec);
  } catch (const std::invalid_argument& e) {
    return Error{ErrorCode::kInvalidArgument, std::string("index spec: ") + e.what()};
  }
  return std::unique_ptr<FaceGrouping>(std::make_unique<FaceGroupingImpl>(dim, *params, options, std::move(index)));
}

Result<std::map<std::int64_t, std::int64_t>> group_faces(int dim, std::span<const GroupingFace> faces,
                                                         std::span<const float> vectors,
                                                         const GroupingConstraints& constraints,
                                                         const GroupingOptions& options) {
  auto created = FaceGrouping::create(dim, options);
  if (!created) return created.error();
  auto& g = static_cast<FaceGroupingImpl&>(**created);
  if (auto c = g.correct(constraints); !c) return c.error();
  // An add to an empty grouping groups every face from scratch.
  if (auto a = g.add(faces, vectors); !a) return a.error();
  return g.numbered();
}

}  // namespace candor
