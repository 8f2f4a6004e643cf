// Candor index: "FaissFlat", faiss::IndexFlatIP under IndexIDMap2. Kept so
// that `candor bench search` can compare FAISS's exact search with "Flat".
#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/IDSelector.h>

#include "index_internal.h"

namespace candor::index_detail {
namespace {

class FaissFlatIndex final : public Index {
 public:
  explicit FaissFlatIndex(int dim) : flat_(dim), index_(&flat_) {}

  int dim() const override { return dim_of(); }
  size_t size() const override { return static_cast<size_t>(index_.ntotal); }

  void add(std::span<const int64_t> ids, std::span<const float> vectors) override {
    check_add_args(ids, vectors, dim_of());
    if (ids.empty()) return;
    // Replacement: IndexIDMap2 would keep both copies, so drop the old ones first.
    remove(ids);
    index_.add_with_ids(static_cast<faiss::Index::idx_t>(ids.size()), vectors.data(), ids.data());
  }

  size_t remove(std::span<const int64_t> ids) override {
    if (ids.empty() || index_.ntotal == 0) return 0;
    const faiss::IDSelectorBatch selector(ids.size(), ids.data());
    return index_.remove_ids(selector);
  }

  std::vector<std::vector<Neighbor>> search(std::span<const float> queries,
                                            size_t k) const override {
    const size_t nq = check_queries(queries, dim_of());
    std::vector<std::vector<Neighbor>> out(nq);
    const size_t keep = std::min(k, size());
    if (keep == 0) return out;
    std::vector<float> scores(nq * keep);
    std::vector<faiss::Index::idx_t> labels(nq * keep);
    index_.search(static_cast<faiss::Index::idx_t>(nq), queries.data(),
                  static_cast<faiss::Index::idx_t>(keep), scores.data(), labels.data());
    for (size_t qi = 0; qi < nq; ++qi) {
      for (size_t j = 0; j < keep; ++j) {
        const faiss::Index::idx_t label = labels[qi * keep + j];
        if (label >= 0) out[qi].push_back({label, scores[qi * keep + j]});
      }
    }
    return out;
  }

  size_t memory_bytes() const override {
    return flat_.codes.capacity() + index_.id_map.capacity() * sizeof(faiss::Index::idx_t) +
           index_.rev_map.size() * 32 + index_.rev_map.bucket_count() * sizeof(void*);
  }
  std::string description() const override { return "FaissFlat"; }

 private:
  int dim_of() const { return static_cast<int>(flat_.d); }

  faiss::IndexFlatIP flat_;  // owned here; index_ points at it
  faiss::IndexIDMap2 index_;
};

}  // namespace

std::unique_ptr<Index> make_faiss_flat_index(int dim, std::span<const SpecParam> /*params*/) {
  return std::make_unique<FaissFlatIndex>(dim);
}

}  // namespace candor::index_detail
