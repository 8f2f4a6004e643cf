// Candor index: pieces shared by the index implementations. Internal header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "candor/index.h"

namespace candor::index_detail {

// One "name" or "name=value" item of a spec such as "HNSW32,efc=200,ef=64".
struct SpecParam {
  std::string name;
  std::optional<std::string> value;
};

// Splits "a,b=1" into items; whitespace around items is ignored.
std::vector<SpecParam> split_params(std::string_view text);
// A positive integer value, or std::invalid_argument naming the parameter.
size_t parse_positive(const SpecParam& p, std::string_view context);

// Throws std::invalid_argument unless vectors.size() == ids.size() * dim and the
// ids are distinct (checked before anything changes, so a bad call has no effect).
void check_add_args(std::span<const int64_t> ids, std::span<const float> vectors, int dim);
// Throws std::invalid_argument unless queries.size() is a multiple of dim.
size_t check_queries(std::span<const float> queries, int dim);

// Candidate order: higher score first, then the smaller id, so that results
// are deterministic and comparable with the oracle even with tied scores.
struct Candidate {
  float score;
  int64_t id;
};
inline bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// The k best candidates seen so far, in a heap whose front is the worst kept.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { heap_.reserve(k); }
  // Scores below this cannot enter (scores equal to it might, by id).
  float threshold() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_.front().score;
  }
  void push(float score, int64_t id);
  // ensures: the kept candidates, best first; the TopK is left empty.
  std::vector<Candidate> take_sorted();

 private:
  size_t k_;
  std::vector<Candidate> heap_;
};

// The id <-> dense slot map of the exhaustive indexes. Slots are 0..size()-1;
// removing an id moves the last slot into the hole, so the payload arrays stay
// dense and scans never see removed rows.
class IdSlots {
 public:
  // ensures: the slot of id; a new id gets slot size() (the caller appends).
  std::pair<size_t, bool> insert(int64_t id);
  // ensures: nullopt when id is absent; otherwise the freed slot s. The caller
  //   must then move the payload of the old last slot (size() after the call)
  //   into s (when they differ) and drop the last row.
  std::optional<size_t> erase(int64_t id);
  std::optional<size_t> find(int64_t id) const;
  int64_t id_at(size_t slot) const { return ids_[slot]; }
  size_t size() const { return ids_.size(); }
  void reserve(size_t n);
  size_t memory_bytes() const;

 private:
  std::vector<int64_t> ids_;
  std::unordered_map<int64_t, size_t> slot_of_;
};

std::unique_ptr<Index> make_hnsw_index(int dim, size_t m, std::span<const SpecParam> params);
// "IVF<nlist>,SQ8[,nprobe=P][,refine=R]"; params start after the IVF item.
std::unique_ptr<Index> make_ivf_index(int dim, size_t nlist, std::span<const SpecParam> params);
std::unique_ptr<Index> make_faiss_flat_index(int dim, std::span<const SpecParam> params);

}  // namespace candor::index_detail
