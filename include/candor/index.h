// Candor: the 1:N vector index.
//
// An Index holds face templates (L2-normalised float vectors of one fixed
// dimension, each under a caller-chosen int64 id) and answers "which k
// templates are most similar to this probe?". Similarity is the inner product,
// which equals cosine similarity for unit vectors.
//
// Indexes are made by make_index() from a short spec string, in the manner of
// faiss::index_factory:
//
//   "Flat"                     exact float32 scan (own AVX2 kernel for single
//                              probes, BLAS sgemm for batches of probes).
//   "FaissFlat"                exact, faiss::IndexFlatIP under IndexIDMap2; kept
//                              for comparison with "Flat".
//   "SQ8"                      exhaustive scan over 8-bit codes (one scale per
//                              template), own AVX2 kernel, scalar fallback.
//   "SQ8,Refine" / "SQ8,Refine=R"
//                              as SQ8, then the best R (default 256) candidates
//                              are re-scored with stored float32 vectors: exact
//                              top-k in practice, at 2.5 KiB per 512-d template.
//   "HNSW<M>[,efc=<E>][,ef=<S>]"
//                              approximate: hnswlib's graph, M links per node,
//                              efConstruction E (default 200), search ef S
//                              (default 128). Distances use Candor's AVX2 kernel.
//                              Removal only marks elements deleted (never
//                              returned; memory kept until the next rebuild).
//                              On face-like data it needs a large ef (see the
//                              bench): 100k synthetic templates, HNSW32 efc=200,
//                              ef=256: recall@10 0.97 at 4.3 ms.
//   "IVF<N>,SQ8[,nprobe=<P>][,refine=<R>][,pca=<D>]"
//                              approximate: a spherical k-means coarse quantiser
//                              with N cells (1..2^20), inverted lists of SQ8
//                              codes (one scale per template); a query scans
//                              the P best cells (default 64) into a top-R heap
//                              (default 256), re-ranked with stored float32
//                              vectors to the top-k. pca=D (optional): the
//                              codes cover only the first D principal
//                              directions of the training sample (a cheaper
//                              pre-scan, the re-ranking stays exact); D <= dim.
//                              Training: while the index holds fewer than
//                              40 * N templates (and, with pca, 16 * dim) it is
//                              one list scanned exhaustively (exact, as
//                              SQ8,Refine); the add() that reaches that size
//                              trains on a sample of everything held (64 * N
//                              points, at most 100k; with pca at least 64k)
//                              and redistributes; the cells are then fixed and
//                              later adds go to their nearest centroid.
//                              Removal is real (swap-remove in the list);
//                              re-adding an id replaces it. nprobe = N with
//                              no pca is exact in practice (as SQ8,Refine).
//                              Memory ~2.6 KB per 512-d template (2.2 KB with
//                              pca=128). 1M x 512 synthetic gallery (bench
//                              search, one thread, shared 2-core box): plain
//                              IVF1024 nprobe=128 reaches only recall@10 ~0.8
//                              (the data has ~100 effective dimensions, so
//                              cells are poor); with the pca pre-scan,
//                              "IVF1024,SQ8,nprobe=576,pca=128,refine=200"
//                              recall@10 0.995 at 4.9 ms and
//                              "IVF256,SQ8,nprobe=160,pca=128,refine=200"
//                              0.994 at 4.8 ms (builds 26 s / 13 s).
//
// The index is not persisted: the engine rebuilds it from the template store
// at start-up (see bench `candor bench search` for build times).
//
// Thread safety: the const members (dim, size, search, memory_bytes,
// description) may be called concurrently from any number of threads. add,
// remove and set_search_parameters need exclusive access: the owner guards an
// Index with a std::shared_mutex (shared for search, unique for changes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace candor {

struct Neighbor {
  int64_t id = 0;
  float score = 0.0F;  // inner product = cosine for unit vectors
  friend bool operator==(const Neighbor&, const Neighbor&) = default;
};

class Index {
 public:
  virtual ~Index() = default;
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // ensures: the dimension every vector and query must have (> 0).
  virtual int dim() const = 0;

  // ensures: the number of distinct ids currently searchable.
  virtual size_t size() const = 0;

  // requires: vectors.size() == ids.size() * dim(); vectors row-major, each row
  //   L2-normalised (not checked: a non-unit vector just gets a scaled score);
  //   all ids distinct within this call.
  // ensures: every id is searchable with its vector. An id already present is
  //   replaced (its old vector is gone). Throws std::invalid_argument when the
  //   sizes do not match or an id repeats within the call.
  // thread safety: exclusive access.
  virtual void add(std::span<const int64_t> ids, std::span<const float> vectors) = 0;

  // ensures: the given ids are no longer returned by search (unknown ids are
  //   ignored). Returns how many ids were present and are now removed.
  // thread safety: exclusive access.
  virtual size_t remove(std::span<const int64_t> ids) = 0;

  // requires: queries.size() is a multiple of dim() (nq = queries.size() / dim()).
  // ensures: result.size() == nq; result[i] holds the min(k, size()) best
  //   templates for query i, scores descending (an approximate index may
  //   return fewer, never a removed id). Throws std::invalid_argument when
  //   queries.size() is not a multiple of dim().
  // thread safety: safe concurrently with other const calls.
  virtual std::vector<std::vector<Neighbor>> search(std::span<const float> queries,
                                                    size_t k) const = 0;

  // ensures: bytes this index holds for its data (vectors, codes, graph, id
  //   maps), approximately; excludes the object's fixed overhead.
  virtual size_t memory_bytes() const = 0;

  // ensures: the canonical spec this index was built from, e.g. "HNSW32,efc=200,ef=128".
  virtual std::string description() const = 0;

  // Changes search-time parameters without rebuilding, e.g. "ef=256" for HNSW
  // or "refine=512" for SQ8,Refine; comma-separated "name=value" pairs.
  // ensures: throws std::invalid_argument for a parameter this index lacks
  //   (every index rejects every name by default) or a bad value.
  // thread safety: exclusive access.
  virtual void set_search_parameters(std::string_view params);

 protected:
  Index() = default;
};

// requires: dim > 0.
// ensures: an empty index as described by spec (see the top of this file).
//   Throws std::invalid_argument for dim <= 0 or a spec it does not know.
std::unique_ptr<Index> make_index(int dim, std::string_view spec);

}  // namespace candor
