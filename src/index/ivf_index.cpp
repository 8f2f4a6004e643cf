// Candor index: "IVF<nlist>,SQ8[,nprobe=P][,refine=R]", an inverted-file
// index over the SQ8 codes of index.cpp.
//
// A spherical k-means coarse quantiser splits the templates into nlist cells;
// each cell keeps its members' int8 codes (one scale per template, exactly as
// SQ8), their float32 vectors and their ids in dense parallel arrays. A query
// is scored against the nlist centroids, the nprobe best cells are scanned
// with the SQ8 kernel into a top-R heap, and those R are re-scored with the
// float32 vectors (as SQ8,Refine) to the final top-k.
//
// Training: the index stays untrained, one cell scanned exhaustively (exact
// SQ8,Refine), while it holds fewer than kMinPointsPerList * nlist templates.
// The add() that brings it to that size trains the quantiser on a sample of
// every template held at that moment and redistributes them; from then on the
// centroids are fixed and each add() puts a template in the cell of its
// nearest centroid. Removing templates never un-trains the index.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <unordered_map>

#include "index_internal.h"
#include "kernels.h"

// Fortran BLAS (as index.cpp and FAISS use it): libblas.so.3 is OpenBLAS here.
extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                      const int* k, const float* alpha, const float* a, const int* lda,
                      const float* b, const int* ldb, const float* beta, float* c,
                      const int* ldc);
// LAPACK: eigenvalues (ascending) and eigenvectors of a symmetric matrix.
extern "C" void ssyev_(const char* jobz, const char* uplo, const int* n, float* a, const int* lda,
                       float* w, float* work, const int* lwork, int* info);

namespace candor::index_detail {
namespace {

// Below 39 points per centroid k-means leaves many cells poorly placed (FAISS
// warns under the same bound); under 40 * nlist templates a flat scan is also
// cheap enough (40k x 512 SQ8 codes: about 2 ms).
constexpr size_t kMinPointsPerList = 40;
// Training sample: 64 points per centroid, at most ~100k, so that training at
// 1M x 512 stays within about a minute with one-thread OpenBLAS.
constexpr size_t kTrainPointsPerList = 64;
constexpr size_t kMaxTrainPoints = 100000;
// Lloyd iterations; spherical k-means on face-like data barely moves the
// cells after ~10 (assignment changes < 1% per iteration by then).
constexpr int kTrainIterations = 10;
// Fixed seed: the same data gives the same cells, hence reproducible benches.
constexpr uint64_t kTrainSeed = 0x5eed1f;
// From this many rows at once, assignment goes through sgemm (per row the
// AVX2 scan_f32 over the centroids is as fast for a handful of rows).
constexpr size_t kBlasMinRows = 16;
// Score-block budget of a batched assignment: 16M floats = 64 MiB.
constexpr size_t kAssignBlockFloats = size_t{16} << 20;
// The pca rotation estimates a dim x dim second moment: it trains on at least
// 16 x dim templates and on a sample of up to 64k (the eigenvectors of the
// 512-d synthetic gallery's top 64 directions are stable by then).
constexpr size_t kMinPcaPointsPerDim = 16;
constexpr size_t kPcaTrainPoints = 65536;
// Defaults: nprobe 64 of 1024 cells (see the bench table in index.h);
// refine 256 as SQ8,Refine (int8 error never pushes a true top-10 below 256).
constexpr size_t kDefaultNprobe = 64;
constexpr size_t kDefaultIvfRefine = 256;

// One inverted list: parallel dense arrays, position p is one template.
struct InvList {
  std::vector<int64_t> ids;
  std::vector<int8_t> codes;    // size() x code dim (d, or the pca prefix)
  std::vector<float> scales;    // size()
  std::vector<float> vectors;   // size() x d, for re-ranking
  size_t size() const { return ids.size(); }
  void reserve(size_t n, size_t d, size_t code_dim) {
    ids.reserve(n);
    codes.reserve(n * code_dim);
    scales.reserve(n);
    vectors.reserve(n * d);
  }
  size_t memory_bytes() const {
    return ids.capacity() * sizeof(int64_t) + codes.capacity() + scales.capacity() * sizeof(float) +
           vectors.capacity() * sizeof(float);
  }
};

struct Loc {
  uint32_t list;
  uint32_t pos;
};

class IvfSq8Index final : public Index {
 public:
  IvfSq8Index(int dim, size_t nlist, size_t nprobe, size_t refine, size_t pca)
      : dim_(dim), nlist_(nlist), nprobe_(nprobe), refine_(refine), pca_(pca), lists_(1) {}

  int dim() const override { return dim_; }
  size_t size() const override { return loc_.size(); }

  void add(std::span<const int64_t> ids, std::span<const float> vectors) override {
    check_add_args(ids, vectors, dim_);
    if (ids.empty()) return;
    for (int64_t id : ids) erase(id);  // re-adding replaces
    if (!trained_ && size() + ids.size() >= train_threshold()) {
      train_and_redistribute(vectors);
    } else if (!trained_) {
      std::vector<uint32_t> zero(ids.size(), 0);
      append(ids, vectors.data(), zero);
      return;
    }
    std::vector<uint32_t> assign(ids.size());
    assign_rows(vectors.data(), ids.size(), assign.data());
    append(ids, vectors.data(), assign);
  }

  size_t remove(std::span<const int64_t> ids) override {
    size_t removed = 0;
    for (int64_t id : ids) removed += erase(id) ? 1 : 0;
    return removed;
  }

  std::vector<std::vector<Neighbor>> search(std::span<const float> queries,
                                            size_t k) const override {
    const size_t nq = check_queries(queries, dim_);
    std::vector<std::vector<Neighbor>> out(nq);
    const size_t n = size();
    if (k == 0 || n == 0) return out;
    const auto d = static_cast<size_t>(dim_);
    const Kernels& kern = kernels();
    const size_t keep = std::min(n, std::max(k, refine_));
    const size_t probes = trained_ ? std::min(nprobe_, nlist_) : 1;
    std::vector<float> centroid_scores(trained_ ? nlist_ : 0);
    std::vector<uint32_t> order(trained_ ? nlist_ : 1, 0);
    std::vector<float> scores;
    const size_t cd = code_dim();
    std::vector<float> rotated(cd);
    for (size_t qi = 0; qi < nq; ++qi) {
      const float* q = queries.data() + qi * d;
      const float* q_code = q;  // the query in the codes' space
      if (cd != d) {
        kern.scan_f32(q, rotation_.data(), cd, d, rotated.data());
        q_code = rotated.data();
      }
      if (trained_) {
        kern.scan_f32(q, centroids_.data(), nlist_, d, centroid_scores.data());
        std::iota(order.begin(), order.end(), 0U);
        // Best cells first, so the heap threshold rises early.
        std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(probes),
                          order.end(), [&](uint32_t a, uint32_t b) {
                            return centroid_scores[a] > centroid_scores[b] ||
                                   (centroid_scores[a] == centroid_scores[b] && a < b);
                          });
      }
      TopK top(keep);
      for (size_t p = 0; p < probes; ++p) {
        const InvList& list = lists_[order[p]];
        const size_t rows = list.size();
        if (rows == 0) continue;
        if (scores.size() < rows) scores.resize(rows);
        kern.scan_sq8(q_code, list.codes.data(), list.scales.data(), rows, cd, scores.data());
        float thr = top.threshold();
        for (size_t i = 0; i < rows; ++i) {
          if (scores[i] >= thr) {
            top.push(scores[i], list.ids[i]);
            thr = top.threshold();
          }
        }
      }
      // Exact scores for the candidates (as SQ8,Refine).
      TopK exact(std::min(k, n));
      for (const Candidate& c : top.take_sorted()) {
        const Loc loc = loc_.at(c.id);
        exact.push(kern.dot_f32(q, lists_[loc.list].vectors.data() + size_t{loc.pos} * d, d),
                   c.id);
      }
      std::vector<Candidate> best = exact.take_sorted();
      out[qi].reserve(best.size());
      for (const Candidate& c : best) out[qi].push_back({c.id, c.score});
    }
    return out;
  }

  size_t memory_bytes() const override {
    size_t bytes = centroids_.capacity() * sizeof(float) + lists_.capacity() * sizeof(InvList);
    for (const InvList& l : lists_) bytes += l.memory_bytes();
    // unordered_map node (key, Loc, next pointer, cached hash) + bucket pointer.
    bytes += rotation_.capacity() * sizeof(float);
    return bytes + loc_.size() * 32 + loc_.bucket_count() * sizeof(void*);
  }

  std::string description() const override {
    return "IVF" + std::to_string(nlist_) + ",SQ8,nprobe=" + std::to_string(nprobe_) +
           ",refine=" + std::to_string(refine_) + (pca_ ? ",pca=" + std::to_string(pca_) : "");
  }

  void set_search_parameters(std::string_view params) override {
    const std::vector<SpecParam> ps = split_params(params);
    size_t nprobe = nprobe_, refine = refine_;
    for (const SpecParam& p : ps) {
      if (p.name == "nprobe") {
        nprobe = parse_positive(p, description());
      } else if (p.name == "refine") {
        refine = parse_positive(p, description());
      } else {
        throw std::invalid_argument(description() + ": unknown search parameter \"" + p.name +
                                    "\"");
      }
    }
    nprobe_ = nprobe;
    refine_ = refine;
  }

 private:
  // ensures: id is gone (swap-remove inside its list); false if absent.
  bool erase(int64_t id) {
    auto it = loc_.find(id);
    if (it == loc_.end()) return false;
    const Loc loc = it->second;
    loc_.erase(it);
    InvList& l = lists_[loc.list];
    const auto d = static_cast<size_t>(dim_);
    const size_t cd = code_dim();
    const size_t last = l.size() - 1;
    if (loc.pos != last) {
      l.ids[loc.pos] = l.ids[last];
      std::memcpy(l.codes.data() + size_t{loc.pos} * cd, l.codes.data() + last * cd, cd);
      l.scales[loc.pos] = l.scales[last];
      std::memcpy(l.vectors.data() + size_t{loc.pos} * d, l.vectors.data() + last * d,
                  d * sizeof(float));
      loc_[l.ids[loc.pos]].pos = loc.pos;
    }
    l.ids.pop_back();
    l.codes.resize(last * cd);
    l.scales.pop_back();
    l.vectors.resize(last * d);
    return true;
  }

  // requires: no id of ids is present; list[i] < lists_.size().
  void append(std::span<const int64_t> ids, const float* vectors,
              const std::vector<uint32_t>& list) {
    const auto d = static_cast<size_t>(dim_);
    const size_t cd = code_dim();
    std::vector<size_t> count(lists_.size(), 0);
    for (uint32_t l : list) ++count[l];
    for (size_t l = 0; l < lists_.size(); ++l)
      if (count[l] > 0) lists_[l].reserve(lists_[l].size() + count[l], d, cd);
    loc_.reserve(loc_.size() + ids.size());
    std::vector<int8_t> code(cd);
    std::vector<float> rotated(cd);
    const Kernels& kern = kernels();
    for (size_t i = 0; i < ids.size(); ++i) {
      const float* v = vectors + i * d;
      InvList& l = lists_[list[i]];
      const float* to_code = v;
      if (cd != d) {
        kern.scan_f32(v, rotation_.data(), cd, d, rotated.data());
        to_code = rotated.data();
      }
      const float scale = encode_sq8(to_code, cd, code.data());
      loc_.emplace(ids[i], Loc{list[i], static_cast<uint32_t>(l.size())});
      l.ids.push_back(ids[i]);
      l.codes.insert(l.codes.end(), code.begin(), code.end());
      l.scales.push_back(scale);
      l.vectors.insert(l.vectors.end(), v, v + d);
    }
  }

  // out[i] = the centroid with the largest inner product with row i.
  void assign_rows(const float* x, size_t m, uint32_t* out) const {
    const auto d = static_cast<size_t>(dim_);
    const Kernels& kern = kernels();
    if (m < kBlasMinRows) {
      std::vector<float> s(nlist_);
      for (size_t i = 0; i < m; ++i) {
        kern.scan_f32(x + i * d, centroids_.data(), nlist_, d, s.data());
        out[i] = static_cast<uint32_t>(std::max_element(s.begin(), s.end()) - s.begin());
      }
      return;
    }
    const size_t block = std::max<size_t>(1, kAssignBlockFloats / nlist_);
    std::vector<float> s(std::min(block, m) * nlist_);
    const float one = 1.0F, zero = 0.0F;
    const int k_dim = dim_;
    const int m_lists = static_cast<int>(nlist_);
    for (size_t first = 0; first < m; first += block) {
      const size_t rows = std::min(block, m - first);
      const int n_rows = static_cast<int>(rows);
      // Column-major: S (nlist x rows) = C^T' * X', i.e. row-major rows x nlist.
      sgemm_("T", "N", &m_lists, &n_rows, &k_dim, &one, centroids_.data(), &k_dim,
             x + first * d, &k_dim, &zero, s.data(), &m_lists);
      for (size_t i = 0; i < rows; ++i) {
        const float* row = s.data() + i * nlist_;
        out[first + i] = static_cast<uint32_t>(std::max_element(row, row + nlist_) - row);
      }
    }
  }

  // Trains the quantiser on a sample of (templates held now + incoming), then
  // moves the held templates (all in the one untrained list) to their cells.
  void train_and_redistribute(std::span<const float> incoming) {
    const auto d = static_cast<size_t>(dim_);
    InvList held = std::move(lists_[0]);
    const size_t n_held = held.size();
    const size_t n_new = incoming.size() / d;
    const size_t total = n_held + n_new;
    const auto row = [&](size_t i) {
      return i < n_held ? held.vectors.data() + i * d : incoming.data() + (i - n_held) * d;
    };
    size_t m = std::max(nlist_, std::min(kTrainPointsPerList * nlist_, kMaxTrainPoints));
    if (pca_ > 0) m = std::max(m, kPcaTrainPoints);
    m = std::min(m, total);
    // A uniform sample without replacement: a partial Fisher-Yates shuffle.
    std::mt19937_64 rng(kTrainSeed);
    std::vector<size_t> pick(total);
    std::iota(pick.begin(), pick.end(), size_t{0});
    for (size_t i = 0; i < m; ++i) {
      std::uniform_int_distribution<size_t> u(i, total - 1);
      std::swap(pick[i], pick[u(rng)]);
    }
    std::vector<float> sample(m * d);
    for (size_t i = 0; i < m; ++i) std::memcpy(sample.data() + i * d, row(pick[i]), d * sizeof(float));
    train(sample, m, rng);
    if (pca_ > 0) train_rotation(sample, m);
    trained_ = true;

    lists_.assign(nlist_, InvList{});
    loc_.clear();
    if (n_held > 0) {
      std::vector<uint32_t> assign(n_held);
      assign_rows(held.vectors.data(), n_held, assign.data());
      append(held.ids, held.vectors.data(), assign);
    }
  }

  // Spherical k-means: assignment by max inner product, centroids = the
  // renormalised mean of their members; an emptied cell is re-seeded with a
  // random sample point.
  void train(const std::vector<float>& x, size_t m, std::mt19937_64& rng) {
    const auto d = static_cast<size_t>(dim_);
    centroids_.assign(nlist_ * d, 0.0F);
    // Initial centroids: the first nlist sample points (the sample is random).
    for (size_t c = 0; c < nlist_; ++c)
      std::memcpy(centroids_.data() + c * d, x.data() + (c % m) * d, d * sizeof(float));
    std::vector<uint32_t> assign(m), prev(m, UINT32_MAX);
    std::vector<double> sums(nlist_ * d);
    std::vector<size_t> counts(nlist_);
    std::uniform_int_distribution<size_t> any(0, m - 1);
    for (int it = 0; it < kTrainIterations; ++it) {
      assign_rows(x.data(), m, assign.data());
      if (assign == prev) break;
      prev = assign;
      std::fill(sums.begin(), sums.end(), 0.0);
      std::fill(counts.begin(), counts.end(), 0);
      for (size_t i = 0; i < m; ++i) {
        double* s = sums.data() + size_t{assign[i]} * d;
        const float* v = x.data() + i * d;
        for (size_t j = 0; j < d; ++j) s[j] += v[j];
        ++counts[assign[i]];
      }
      for (size_t c = 0; c < nlist_; ++c) {
        float* cen = centroids_.data() + c * d;
        const double* s = sums.data() + c * d;
        double norm = 0.0;
        for (size_t j = 0; j < d; ++j) norm += s[j] * s[j];
        if (counts[c] == 0 || norm == 0.0) {
          std::memcpy(cen, x.data() + any(rng) * d, d * sizeof(float));
          continue;
        }
        const double inv = 1.0 / std::sqrt(norm);
        for (size_t j = 0; j < d; ++j) cen[j] = static_cast<float>(s[j] * inv);
      }
    }
  }

  // The first pca_ principal directions (of the uncentred second moment, so
  // they carry most of every inner product) of the training sample, as the
  // rows of rotation_.
  void train_rotation(const std::vector<float>& x, size_t m) {
    const int n = dim_;
    const int rows = static_cast<int>(m);
    std::vector<float> cov(static_cast<size_t>(n) * static_cast<size_t>(n));
    const float one = 1.0F, zero = 0.0F;
    // Column-major: x is d x m, cov = x x^T (d x d).
    sgemm_("N", "T", &n, &n, &rows, &one, x.data(), &n, x.data(), &n, &zero, cov.data(), &n);
    std::vector<float> eig(static_cast<size_t>(n));
    int lwork = -1, info = 0;
    float work_size = 0.0F;
    ssyev_("V", "U", &n, cov.data(), &n, eig.data(), &work_size, &lwork, &info);
    lwork = static_cast<int>(work_size) + 1;
    std::vector<float> work(static_cast<size_t>(lwork));
    ssyev_("V", "U", &n, cov.data(), &n, eig.data(), work.data(), &lwork, &info);
    if (info != 0) throw std::runtime_error("IVF: eigen-decomposition failed (ssyev info " +
                                            std::to_string(info) + ")");
    const auto d = static_cast<size_t>(dim_);
    rotation_.assign(pca_ * d, 0.0F);
    // Eigenvalues ascend; column j of cov (contiguous) is eigenvector j.
    for (size_t r = 0; r < pca_; ++r)
      std::memcpy(rotation_.data() + r * d, cov.data() + (d - 1 - r) * d, d * sizeof(float));
  }

  // Templates held when the quantiser (and rotation) train.
  size_t train_threshold() const {
    return std::max(kMinPointsPerList * nlist_,
                    pca_ > 0 ? kMinPcaPointsPerDim * static_cast<size_t>(dim_) : 0);
  }

  // Bytes per code: the full dimension, or the pca prefix once trained.
  size_t code_dim() const { return trained_ && pca_ > 0 ? pca_ : static_cast<size_t>(dim_); }

  int dim_;
  size_t nlist_;
  size_t nprobe_;
  size_t refine_;
  size_t pca_;                    // 0: codes over all dims
  std::vector<float> rotation_;   // pca_ x dim once trained
  bool trained_ = false;
  std::vector<float> centroids_;  // nlist x dim, unit rows, once trained
  std::vector<InvList> lists_;    // one list until trained, then nlist
  std::unordered_map<int64_t, Loc> loc_;
};

}  // namespace

std::unique_ptr<Index> make_ivf_index(int dim, size_t nlist, std::span<const SpecParam> params) {
  const std::string ctx = "IVF" + std::to_string(nlist);
  if (params.empty() || params.front().name != "SQ8" || params.front().value)
    throw std::invalid_argument(ctx + ": needs its code type, as in \"IVF1024,SQ8\"");
  size_t nprobe = 0, refine = 0, pca = 0;
  for (const SpecParam& p : params.subspan(1)) {
    if (p.name == "nprobe" && nprobe == 0) {
      nprobe = parse_positive(p, ctx);
    } else if (p.name == "refine" && refine == 0) {
      refine = parse_positive(p, ctx);
    } else if (p.name == "pca" && pca == 0) {
      pca = parse_positive(p, ctx);
      if (pca > static_cast<size_t>(dim))
        throw std::invalid_argument(ctx + ": pca must be at most the dimension");
    } else {
      throw std::invalid_argument(ctx + ": unknown or repeated parameter \"" + p.name + "\"");
    }
  }
  return std::make_unique<IvfSq8Index>(dim, nlist, nprobe ? nprobe : kDefaultNprobe,
                                       refine ? refine : kDefaultIvfRefine, pca);
}

}  // namespace candor::index_detail
