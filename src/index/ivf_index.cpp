// Candor index: "IVF<nlist>,SQ8[,nprobe=P][,refine=R][,pca=D]", an inverted-file
// index over the SQ8 codes of index.cpp.
//
// A spherical k-means coarse quantiser splits the templates into nlist cells;
// each cell keeps its members' int8 codes (one scale per template, exactly as
// SQ8), their float32 vectors and their ids in dense parallel arrays. A query
// is scored against the nlist centroids, the nprobe best cells are scanned
// with the SQ8 kernel into a top-R shortlist, and those R are re-scored with the
// float32 vectors (as SQ8,Refine) to the final top-k.
//
// pca=D: the codes cover only the first D principal directions of the
// training sample (an orthonormal rotation, so inner products are kept up to
// the dropped directions' share). At 512-d on face-like data most of the
// energy is in ~100 directions, so D = 128 scans a quarter of the bytes for a
// small score error that the float re-ranking removes. The scan is memory
// bound, so bytes scanned set the latency. Caveat: a mate loses the dropped
// directions' share of its similarity in the pre-scan while impostors lose
// only noise, so too small a D costs mates (1M synthetic, exhaustive: D = 64
// mate@10 0.90 vs exact 0.975; D = 128 0.975).
//
// Training: the index stays untrained, one cell scanned exhaustively (exact
// SQ8,Refine), while it holds fewer than kMinPointsPerList * nlist templates
// (with pca, also fewer than kMinPcaPointsPerDim * dim).
// The add() that brings it to that size trains the quantiser on a sample of
// every template held at that moment and redistributes them; from then on the
// centroids are fixed and each add() puts a template in the cell of its
// nearest centroid. Removing templates never un-trains the index.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <unordered_map>

#include <immintrin.h>

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
// cheap enough (SQ8,Refine: 2.7 ms per query at 100k x 512, so ~1 ms at 40k).
constexpr size_t kMinPointsPerList = 40;
// Training sample: 64 points per centroid, at most ~100k, so that training at
// 1M x 512 stays within about a minute with one-thread OpenBLAS.
constexpr size_t kTrainPointsPerList = 64;
constexpr size_t kMaxTrainPoints = 100000;
// Lloyd iterations (stopping early when no assignment changes): 10 keeps the
// 1M build at ~25 s for IVF1024 (bench search); not tuned further.
constexpr int kTrainIterations = 10;
// Fixed seed: the same data gives the same cells, hence reproducible benches.
constexpr uint64_t kTrainSeed = 0x5eed1f;
// From this many rows at once, assignment goes through sgemm (per row the
// AVX2 scan_f32 over the centroids is as fast for a handful of rows).
constexpr size_t kBlasMinRows = 16;
// Score-block budget of a batched assignment: 16M floats = 64 MiB.
constexpr size_t kAssignBlockFloats = size_t{16} << 20;
// The pca rotation estimates a dim x dim second moment: it trains on at least
// 16 x dim templates and on a sample of up to 64k (a rule of thumb, not tuned:
// with pca=128 the exhaustive IVF1 pre-scan already matches exact search at
// 1M, recall@10 1.000).
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

// The pre-scan's top-R: candidates at or above the threshold go into a buffer
// of up to 2R; a full buffer is cut back to its best R with nth_element. Far
// cheaper than a heap when R is in the hundreds (perf, 100k x 512, R = 500:
// heap pushes cost half as much as the SQ8 scan itself).
class Shortlist {
 public:
  explicit Shortlist(size_t keep) : keep_(keep) { buf_.reserve(2 * keep); }
  float threshold() const { return threshold_; }
  void push(float score, int64_t key) {
    buf_.push_back({score, key});
    if (buf_.size() >= 2 * keep_) cut();
  }
  // ensures: the best min(R, pushed) candidates, in no particular order.
  std::vector<Candidate> take() {
    if (buf_.size() > keep_) cut();
    return std::move(buf_);
  }

 private:
  void cut() {
    const auto by_score = [](const Candidate& a, const Candidate& b) { return better(a, b); };
    std::nth_element(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(keep_ - 1),
                     buf_.end(), by_score);
    buf_.resize(keep_);
    threshold_ = buf_.back().score;
  }

  size_t keep_;
  float threshold_ = -std::numeric_limits<float>::infinity();
  std::vector<Candidate> buf_;
};

// The query as int16 for the fused AVX2 list scan below: the same
// quantisation as the SQ8 kernel (kernels_avx2.cpp), done once per query
// instead of once per probed list.
constexpr float kQ16Max = 16383.0F;  // as kernels_avx2.cpp: int16 madd sums cannot overflow
constexpr size_t kFusedMaxDim = 1024;
struct QueryInt16 {
  alignas(32) int16_t q[kFusedMaxDim];
  float scale = 0.0F;  // q ~ scale * q16; 0 for an all-zero query
};

void quantise_query(const float* q, size_t d, QueryInt16& out) {
  float q_max = 0.0F;
  for (size_t j = 0; j < d; ++j) q_max = std::max(q_max, std::fabs(q[j]));
  if (q_max == 0.0F) {
    std::fill(out.q, out.q + d, int16_t{0});
    out.scale = 0.0F;
    return;
  }
  const float to_int = kQ16Max / q_max;
  for (size_t j = 0; j < d; ++j) out.q[j] = static_cast<int16_t>(std::lrint(q[j] * to_int));
  out.scale = q_max / kQ16Max;
}

// One list of SQ8 codes against the int16 query, straight into the shortlist:
// scores are never written out, and the threshold test sits next to the dot
// product. Same arithmetic as the SQ8 kernel's integer path, so the scores are
// bit-identical to it. requires: d % 32 == 0, d <= kFusedMaxDim, AVX2.
__attribute__((target("avx2,fma"))) void scan_list_avx2(const QueryInt16& q, const int8_t* codes,
                                                        const float* scales, size_t n, size_t d,
                                                        int64_t key_base, Shortlist& top) {
  float thr = top.threshold();
  for (size_t i = 0; i < n; ++i) {
    const int8_t* r = codes + i * d;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    for (size_t j = 0; j < d; j += 32) {
      const __m256i c0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j)));
      const __m256i c1 =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j + 16)));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, _mm256_load_si256(reinterpret_cast<const __m256i*>(q.q + j))));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(c1, _mm256_load_si256(reinterpret_cast<const __m256i*>(q.q + j + 16))));
    }
    const __m256i sum = _mm256_add_epi32(a0, a1);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    const float score = scales[i] * q.scale * static_cast<float>(_mm_cvtsi128_si32(h));
    if (score >= thr) {
      top.push(score, key_base | static_cast<int64_t>(i));
      thr = top.threshold();
    }
  }
}

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
    const bool fused = cpu_has_avx2() && cd % 32 == 0 && cd <= kFusedMaxDim;
    auto q16 = std::make_unique<QueryInt16>();
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
      // The pre-scan keeps (score, packed list/position) so that re-ranking
      // needs no id-map look-up; ties among pre-scan scores only decide which
      // R survive, and the final order is by exact score and id.
      Shortlist top(keep);
      if (fused) quantise_query(q_code, cd, *q16);
      for (size_t p = 0; p < probes; ++p) {
        const InvList& list = lists_[order[p]];
        const size_t rows = list.size();
        if (rows == 0) continue;
        if (fused) {
          scan_list_avx2(*q16, list.codes.data(), list.scales.data(), rows, cd,
                         static_cast<int64_t>(order[p]) << 32, top);
          continue;
        }
        if (scores.size() < rows) scores.resize(rows);
        kern.scan_sq8(q_code, list.codes.data(), list.scales.data(), rows, cd, scores.data());
        const int64_t base = static_cast<int64_t>(order[p]) << 32;
        float thr = top.threshold();
        for (size_t i = 0; i < rows; ++i) {
          if (scores[i] >= thr) {
            top.push(scores[i], base | static_cast<int64_t>(i));
            thr = top.threshold();  // rises only when the buffer is cut
          }
        }
      }
      // Exact scores for the candidates (as SQ8,Refine), in memory order, with
      // the float rows of the next candidates prefetched: the rows are
      // scattered over gigabytes, so each is otherwise a chain of cache and
      // TLB misses (100k x 512, IVF1 pca=128: refine=500 cost 0.6 ms more than
      // refine=100 with a heap and id-map look-ups, 0.23 ms with this).
      std::vector<Candidate> cands = top.take();
      std::sort(cands.begin(), cands.end(),
                [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
      const auto row_of = [&](const Candidate& c) {
        const auto list = static_cast<size_t>(c.id >> 32);
        const auto pos = static_cast<size_t>(c.id & 0xffffffff);
        return std::pair<const InvList*, size_t>(&lists_[list], pos);
      };
      const auto prefetch = [&](const Candidate& c) {
        const auto [list, pos] = row_of(c);
        const char* row = reinterpret_cast<const char*>(list->vectors.data() + pos * d);
        for (size_t off = 0; off < d * sizeof(float); off += 64) __builtin_prefetch(row + off);
      };
      // Candidates ahead of the one being scored: enough to cover a miss.
      constexpr size_t kPrefetchAhead = 4;
      for (size_t i = 0; i < std::min(kPrefetchAhead, cands.size()); ++i) prefetch(cands[i]);
      TopK exact(std::min(k, n));
      for (size_t i = 0; i < cands.size(); ++i) {
        if (i + kPrefetchAhead < cands.size()) prefetch(cands[i + kPrefetchAhead]);
        const auto [list, pos] = row_of(cands[i]);
        exact.push(kern.dot_f32(q, list->vectors.data() + pos * d, d), list->ids[pos]);
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
