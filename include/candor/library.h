// Candor: grouping the faces of a photo library into people (issue 13).
//
// A FaceGrouping holds the faces of one library, each a template (an
// L2-normalised float vector of the recogniser's dimension) under a
// caller-chosen face id, with the id of the photo it was found in, and sorts
// them into groups: sets of faces believed to be one person. Groups are
// numbered by int64 ids that the grouping hands out and keeps: a name the owner
// attaches to a group id stays valid across incremental adds, corrections and
// full re-groups (see regroup()).
//
// Three promises hold after every call that succeeds:
//   - two faces of one photo are never in one group;
//   - two faces under a cannot-link correction ("not the same person") are
//     never in one group;
//   - two faces under a must-link correction ("the same person") are always
//     in one group.
// Corrections are remembered for the life of the object (the store persists
// them and passes them again to a new object; corrections naming faces not yet
// added wait for them).
//
// The algorithm is named by a spec string, in the manner of make_index():
//   "cw[,k=K][,edge=E][,sharp=S][,merge=M][,grow=G][,local=L][,qual=Q][,qref=R]
//      [,link=centroid|average][,iter=I]"
//     1. neighbours: each face's K nearest faces (default 24), found with the
//        index named by GroupingOptions::index_spec (never an n x n matrix);
//     2. a graph of the pairs with similarity >= E (default 0.54), minus
//        same-photo and cannot-link pairs, each weighing exp(S * (sim - E))
//        (default S = 10: a pair at 0.64 outvotes one at 0.54 2.7 to 1; S = 0 is
//        dlib's unweighted graph); must-linked faces are one node;
//     3. Chinese whispers (Biemann 2006) over that graph, at most I rounds
//        (default 20), in a random order drawn from GroupingOptions::seed;
//     4. groups that hold a conflict (same photo, cannot-link) are split:
//        faces in order of similarity to the group's mean, each into the first
//        part it does not conflict with;
//     5. groups merged in rounds, best pair first, while the cosine of their mean
//        templates (the subject template of issue 11; link=average: the mean
//        pairwise similarity) is >= M + G * (1 - 1/min(size_a, size_b)) + L * c
//        (default M = 0.53, G = 0.1: a single clear face joins a group at 0.53, two
//        groups of many faces need 0.63, as the means of larger groups score
//        higher for impostors too), minus the quality term below (default on),
//        unless the merge would join a conflict;
//        candidate pairs are the groups joined by a neighbour pair of step 1.
//        L (default 0: off) is the local-scale term: c is the mean, over the two
//        groups, of their faces' similarity to their K-th nearest face, at least
//        0.28 (a typical LFW face's), so that a face among many look-alikes needs
//        more to join and the threshold rises as a library grows. Tuned on A-M it
//        gains on A-M and all of LFW but loses on N-Z and incrementally, so it is
//        not the default (README "Photo libraries: grouping (issue 13)").
//        Q (default 0.3; 0: off) is the quality term: when one of the two groups
//        is a single face whose norm n is below R (default 1) times the median
//        norm m of the faces held (those with a norm), the threshold is lowered by
//        Q * (R - n / m): a face at 80% of the median norm joins at 0.47. A weak
//        face (blurred, small, turned: a low norm) scores lower against its own
//        person's mean than a clear one, so it needs a lower bar to join; without
//        it people with two or three photos stay split, and a bar low enough for
//        them lets clear faces of look-alikes in. Relative to the median, so a
//        recogniser whose norms are on another scale needs no new R. With it off
//        the best merge bar on A-M is 0.50 (0.9866), with it on 0.53 (0.9881).
//   The defaults were chosen on the LFW people whose names start A-M with this
//   model's templates (`candor bench library --tune`); BCubed F on the people
//   N-Z and on all of LFW is in README "Photo libraries: grouping (issue 13)".
//
// Thread safety: the const members may be called concurrently with each other;
// add, pin, correct and regroup need exclusive access (the owner holds a
// std::shared_mutex, as for an Index). The grouping itself uses up to
// GroupingOptions::threads threads inside a call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "candor/result.h"

namespace candor {

// One face of a library: its id (unique within the grouping), its photo's id, and its
// template's norm before L2 normalisation (Face::embedding_norm; 0: unknown, which the
// spec's qual term then leaves alone).
struct GroupingFace {
  std::int64_t face = 0;
  std::int64_t photo = 0;
  float norm = 0;
};

// Two face ids.
struct FacePair {
  std::int64_t a = 0;
  std::int64_t b = 0;
};

// The owner's corrections.
struct GroupingConstraints {
  std::vector<FacePair> cannot_link;  // "these two are not the same person"
  std::vector<FacePair> must_link;    // "these two are the same person"
};

// The default grouping spec (see the top of this file for where it comes from).
inline constexpr const char* kDefaultGroupingSpec =
    "cw,k=24,edge=0.54,sharp=10,merge=0.53,grow=0.1,qual=0.3,qref=1,iter=20";

struct GroupingOptions {
  std::string spec = kDefaultGroupingSpec;
  // The neighbour search (a make_index spec). "Flat" is exact and right at LFW's
  // size (13k faces: all 13k searches in ~2 s of BLAS); at 100k faces it would
  // cost ~10 TFLOP, so large libraries pass an IVF spec, e.g.
  // "IVF1024,SQ8,nprobe=32,pca=128,refine=100" (exhaustive, so exact, below
  // 40,960 faces; timings in README "Photo libraries: grouping (issue 13)").
  std::string index_spec = "Flat";
  int threads = 0;          // 0: one per core
  std::uint64_t seed = 1;   // the order of Chinese whispers: the same seed, the same groups
};

class FaceGrouping {
 public:
  virtual ~FaceGrouping() = default;
  FaceGrouping(const FaceGrouping&) = delete;
  FaceGrouping& operator=(const FaceGrouping&) = delete;

  // requires: dim > 0.
  // ensures: an empty grouping. kInvalidArgument for a spec or index spec that
  //   does not parse (the message names the bad item).
  static Result<std::unique_ptr<FaceGrouping>> create(int dim, const GroupingOptions& options = {});

  virtual int dim() const = 0;
  // ensures: the number of faces held.
  virtual std::size_t size() const = 0;

  // Incremental add: each new face joins an existing group or founds a new one
  // (new faces may found a group together), and two existing groups that the new
  // faces bridge merge when step 5 says so, unless both are pinned (pin()). Faces
  // already held never leave the faces they are grouped with: a group moves whole,
  // into the pinned one of the two, else into the larger, whose id it takes. So a
  // pinned group's id, and the name the owner attached to it, stays as it was.
  // (Without those merges a person whose first photos arrived in two groups stays
  // split until regroup(): on LFW in ten batches, BCubed F 0.980 without them, 0.984
  // with them, 0.986 grouping all at once.)
  // requires: vectors.size() == faces.size() * dim(), rows L2-normalised (not
  //   checked).
  // ensures: every face is in exactly one group. kInvalidArgument (nothing
  //   added) when sizes do not match, a face id repeats or is already held, or
  //   the recorded must-links would put two faces of one photo, or a
  //   cannot-linked pair, in one group.
  virtual Status add(std::span<const GroupingFace> faces, std::span<const float> vectors) = 0;

  // Pins groups (the owner named or hid them): add() never merges two pinned groups,
  // and correct() and regroup() never put faces of two pinned groups in one group
  // (unless must-links join them) and give every pinned group that still has a face
  // its id back. So no grouping call loses a name. Pins are kept for the life of the
  // object, as corrections are; a pinned id that no group has is ignored.
  virtual void pin(std::span<const std::int64_t> groups) = 0;

  // Puts back faces with the groups they were given before (a library reopened from
  // the store) and the corrections recorded so far, without grouping anything. Later
  // adds, corrections and regroups go on from there; a restored group that breaks a
  // promise (the store holds what an interrupted run left) is repaired by the next
  // correct() or regroup() that touches it.
  // requires: an empty grouping; vectors.size() == faces.size() * dim(); groups
  //   parallel to faces, each > 0.
  // ensures: group_of(face) == its given group; new groups are numbered above every
  //   restored one and above `next_group` (numbers once used by groups now gone).
  //   kInvalidArgument (nothing held) when a requirement is broken, a face repeats,
  //   or the must-links contradict themselves.
  virtual Status restore(std::span<const GroupingFace> faces, std::span<const float> vectors,
                         std::span<const std::int64_t> groups, const GroupingConstraints& constraints,
                         std::int64_t next_group = 1) = 0;

  // Records corrections and repairs the groups they touch: those groups are
  // re-grouped among themselves (with every correction), keeping their ids by
  // overlap as regroup() does; other groups do not change.
  // ensures: kInvalidArgument (nothing recorded) when a pair names one face
  //   twice or the must-links would join a conflict (two faces of one photo,
  //   or a cannot-linked pair).
  virtual Status correct(const GroupingConstraints& constraints) = 0;

  // Full re-group of every face held, respecting every correction. Group ids are
  // kept by overlap: pairs (old group, new group) are taken by the number of
  // faces they share, largest first, each old and each new group at most once;
  // a new group without an old partner gets a fresh id; pinned old groups claim
  // first. An old group keeps its id whenever any of its faces is in a group that no
  // other old group claimed first, and a pinned one always does while it has a face.
  virtual Status regroup() = 0;

  // ensures: the group of a face, or nullopt for a face not held.
  virtual std::optional<std::int64_t> group_of(std::int64_t face) const = 0;
  // ensures: every group id with its faces (ascending ids).
  virtual std::map<std::int64_t, std::vector<std::int64_t>> groups() const = 0;

 protected:
  FaceGrouping() = default;
};

// One-shot full grouping: create(), the corrections, then add() of every face
// (an add to an empty grouping groups everything from scratch).
// ensures: group ids 1..G, numbered by the group's smallest face id, ascending;
//   errors as create(), add() and correct().
Result<std::map<std::int64_t, std::int64_t>> group_faces(int dim, std::span<const GroupingFace> faces,
                                                         std::span<const float> vectors,
                                                         const GroupingConstraints& constraints = {},
                                                         const GroupingOptions& options = {});

}  // namespace candor
