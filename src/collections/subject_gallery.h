// Internal to src/collections: the in-memory gallery of one collection, by subject.
//
// Search ranks subjects, not faces: each subject is one template, the renormalised
// mean of its enrolled face templates (subject_template() in candor/collections.h), kept
// in an Index (the collection's index spec) under a key of its own. The face templates
// stay in memory beside it (decrypted once, from the store, at load), so a subject's
// template is recomputed exactly when one of its faces comes or goes, and a match can
// name the enrolled face that resembles the probe most. Nothing here is written to disk.
//
// Thread safety: none; the owner (a collection's state) holds its lock: shared for
// search() and the const members, exclusive for add() and remove().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "candor/index.h"
#include "candor/store.h"

namespace candor::collections_detail {

// The inner product of two templates of one size: their cosine, for unit vectors.
inline float dot(std::span<const float> a, std::span<const float> b) {
  float s = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) s += a[i] * b[i];
  return s;
}

struct SubjectHit {
  std::string subject;
  float score = 0;          // probe . subject template
  std::size_t faces = 0;    // faces the template is made of
};

class SubjectGallery {
 public:
  // requires: dim > 0; index_spec valid for make_index (throws std::invalid_argument otherwise).
  SubjectGallery(int dim, const std::string& index_spec);

  // Adds faces of `subject` (templates row-major, one per id, each of dim() floats) and
  // updates the subject's template. An id already held is ignored.
  void add(const std::string& subject, std::span<const FaceId> ids, std::span<const float> templates);
  // Removes the faces among `ids` that are held; subjects left without faces leave the
  // index, the others get their template recomputed. ensures: how many were removed.
  std::size_t remove(std::span<const FaceId> ids);

  // The subjects whose templates are nearest `probe`, best first, at most k.
  std::vector<SubjectHit> search(std::span<const float> probe, std::size_t k) const;
  // The face of `subject` most similar to `probe` among those `live` allows, with its score.
  std::optional<std::pair<FaceId, float>> best_face(const std::string& subject, std::span<const float> probe,
                                                    const std::set<FaceId>& live) const;
  // The subject's face templates (empty for an unknown subject).
  std::vector<std::vector<float>> templates_of(const std::string& subject) const;
  std::vector<FaceId> faces_of(const std::string& subject) const;

  bool holds(FaceId id) const { return subject_of_.count(id) != 0; }
  std::size_t faces() const { return subject_of_.size(); }
  std::size_t subjects() const { return subjects_.size(); }
  int dim() const { return dim_; }

 private:
  struct Subject {
    std::int64_t key = 0;  // the subject's id in index_
    std::vector<FaceId> ids;
    std::vector<float> templates;  // row-major, parallel to ids
  };
  void reindex(Subject& s);

  int dim_;
  std::unique_ptr<Index> index_;
  std::unordered_map<std::string, Subject> subjects_;
  std::unordered_map<std::int64_t, std::string> subject_by_key_;
  std::unordered_map<FaceId, std::string> subject_of_;
  std::int64_t next_key_ = 1;
};

}  // namespace candor::collections_detail
