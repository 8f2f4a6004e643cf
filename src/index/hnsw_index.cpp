// Candor index: "HNSW<M>", hnswlib's graph with Candor's distance kernel.
//
// hnswlib is header-only and this is the only translation unit that includes
// it (hnswlib.h defines non-inline functions). Its own SIMD distances are
// chosen at compile time from the build's flags, which are generic x86-64, so
// we hand it a space whose distance is Candor's run-time-dispatched AVX2 kernel.
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <hnswlib/hnswlib.h>

#include "index_internal.h"
#include "kernels.h"

namespace candor::index_detail {
namespace {

// Inner-product space: distance = 1 - a·b, as hnswlib's InnerProductSpace.
class CandorIpSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit CandorIpSpace(size_t dim) : dim_(dim) {}
  size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return kernels().ip_distance; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  size_t dim_;
};

// hnswlib's defaults are M=16, efConstruction=200; ef=10 at search. Face
// templates with ~100 effective dimensions need a wider search than that
// (../shared/docs/vector-search.md), so search ef defaults to 128.
constexpr size_t kDefaultEfConstruction = 200;
constexpr size_t kDefaultEf = 128;
// Below this many vectors per add() a second thread costs more than it saves.
constexpr size_t kParallelAddMin = 2000;

class HnswIndex final : public Index {
 public:
  HnswIndex(int dim, size_t m, size_t ef_construction, size_t ef)
      : dim_(dim), m_(m), ef_construction_(ef_construction), space_(static_cast<size_t>(dim)) {
    graph_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space_, kInitialCapacity, m,
                                                               ef_construction);
    graph_->setEf(ef);
  }

  int dim() const override { return dim_; }
  size_t size() const override { return graph_->label_lookup_.size() - graph_->num_deleted_; }

  void add(std::span<const int64_t> ids, std::span<const float> vectors) override {
    check_add_args(ids, vectors, dim_);
    const auto d = static_cast<size_t>(dim_);
    const size_t needed = graph_->cur_element_count + ids.size();
    if (needed > graph_->max_elements_)
      graph_->resizeIndex(std::max(needed, graph_->max_elements_ * 2));
    // hnswlib's addPoint is safe to call from several threads for distinct
    // labels; an existing label is updated in place (and un-deleted).
    const size_t threads = ids.size() >= kParallelAddMin
                               ? std::max(1U, std::thread::hardware_concurrency())
                               : 1;
    std::atomic<size_t> next{0};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto work = [&] {
      try {
        for (size_t i = next++; i < ids.size(); i = next++)
          graph_->addPoint(vectors.data() + i * d, static_cast<hnswlib::labeltype>(ids[i]));
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = ids.size();
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
  }

  size_t remove(std::span<const int64_t> ids) override {
    // hnswlib 0.6.2 can only mark an element deleted: it stays in the graph
    // (its links keep the graph connected) but search never returns it. Its
    // memory is reclaimed when the index is rebuilt from the store.
    size_t removed = 0;
    for (int64_t id : ids) {
      auto it = graph_->label_lookup_.find(static_cast<hnswlib::labeltype>(id));
      if (it == graph_->label_lookup_.end() || graph_->isMarkedDeleted(it->second)) continue;
      graph_->markDelete(static_cast<hnswlib::labeltype>(id));
      ++removed;
    }
    return removed;
  }

  std::vector<std::vector<Neighbor>> search(std::span<const float> queries,
                                            size_t k) const override {
    const size_t nq = check_queries(queries, dim_);
    std::vector<std::vector<Neighbor>> out(nq);
    if (k == 0 || size() == 0) return out;
    const auto d = static_cast<size_t>(dim_);
    for (size_t qi = 0; qi < nq; ++qi) {
      auto heap = graph_->searchKnn(queries.data() + qi * d, k);
      std::vector<Neighbor>& row = out[qi];
      row.resize(heap.size());
      // The heap pops the largest distance (worst) first.
      for (size_t i = heap.size(); i-- > 0;) {
        row[i] = Neighbor{static_cast<int64_t>(heap.top().second), 1.0F - heap.top().first};
        heap.pop();
      }
      // Equal scores: smaller id first, as the exhaustive indexes do.
      std::stable_sort(row.begin(), row.end(), [](const Neighbor& a, const Neighbor& b) {
        return a.score > b.score || (a.score == b.score && a.id < b.id);
      });
    }
    return out;
  }

  size_t memory_bytes() const override {
    const auto& g = *graph_;
    size_t upper = 0;
    for (size_t i = 0; i < g.cur_element_count; ++i)
      upper += static_cast<size_t>(std::max(0, g.element_levels_[i])) * g.size_links_per_element_;
    // Base layer (links + vector + label) for the allocated capacity, upper
    // layers, one mutex and one level per element, the label map (libstdc++
    // node ~32 B + bucket), the visited-list (2 B per element per pooled list).
    return g.max_elements_ * (g.size_data_per_element_ + sizeof(std::mutex) + sizeof(int) +
                              sizeof(void*) + sizeof(unsigned short)) +
           upper + g.label_lookup_.size() * 32 + g.label_lookup_.bucket_count() * sizeof(void*);
  }

  std::string description() const override {
    return "HNSW" + std::to_string(m_) + ",efc=" + std::to_string(ef_construction_) +
           ",ef=" + std::to_string(graph_->ef_);
  }

  void set_search_parameters(std::string_view params) override {
    for (const SpecParam& p : split_params(params)) {
      if (p.name != "ef")
        throw std::invalid_argument(description() + ": unknown search parameter \"" + p.name +
                                    "\"");
      graph_->setEf(parse_positive(p, description()));
    }
  }

 private:
  static constexpr size_t kInitialCapacity = 1024;

  int dim_;
  size_t m_;
  size_t ef_construction_;
  CandorIpSpace space_;  // must outlive graph_ (declared first, destroyed last)
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph_;
};

}  // namespace

std::unique_ptr<Index> make_hnsw_index(int dim, size_t m, std::span<const SpecParam> params) {
  size_t efc = kDefaultEfConstruction;
  size_t ef = kDefaultEf;
  const std::string ctx = "HNSW" + std::to_string(m);
  for (const SpecParam& p : params) {
    if (p.name == "efc") {
      efc = parse_positive(p, ctx);
    } else if (p.name == "ef") {
      ef = parse_positive(p, ctx);
    } else {
      throw std::invalid_argument(ctx + ": unknown parameter \"" + p.name + "\" (efc, ef)");
    }
  }
  return std::make_unique<HnswIndex>(dim, m, efc, ef);
}

}  // namespace candor::index_detail
