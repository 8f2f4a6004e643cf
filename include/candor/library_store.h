// Candor: what the store keeps of a photo library (issue 13).
//
// A photo library is one owner's photos, grouped into people on the owner's own
// machine. The store keeps, per library: each photo's path, SHA-256, size and
// modification time (never its pixels); each face's box and its template,
// encrypted as collection templates are (candor/crypto.h, associated data binding
// the ciphertext to its library and face id); the group each face is in; what the
// owner set on a group (a label, hidden); and the owner's corrections.
//
// Libraries never mix with collections: no consent applies (the owner groups their
// own photos), no change feed entry is written, and nothing of the collection search
// path (Store::load_faces, get_faces, existing_faces) reads library faces.
//
// Every mutating call appends one audit entry in its own transaction, as the Store's
// mutations do (store.h), with the collection field "library:<name>" (collection
// names cannot hold ':'), never a template, a path or a group label (labels name
// people; audit.h keeps names out of details). A refused mutation is audited as a
// refusal. Lookups that only read are not audited; find is (record_find).
//
// Forgetting: forget_group() deletes the templates of a group's faces and marks the
// faces forgotten; the rows stay (photo hash + box, no template) so that add_photo()
// refuses to store a template again for a face of the same photo whose box overlaps a
// forgotten one (IoU >= kForgottenIou). delete_library() removes every row of the
// library.
//
// Thread safety: as the Store's (one mutex per Store; calls run one at a time). The
// LibraryStore is owned by its Store and lives as long as it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"
#include "candor/store.h"

namespace candor {

// A face of a photo being re-added matches a forgotten one when their boxes overlap
// at least this much (boxes of one face from two detector runs on the same photo
// agree far above this; two faces side by side overlap far below it).
inline constexpr float kForgottenIou = 0.5F;

struct PhotoLibrary {
  std::int64_t id = 0;
  std::string name;        // [a-z0-9_-]{1,64}, unique among libraries
  std::string owner;       // who the photos belong to (free text, non-empty)
  int retention_days = 0;  // 1..kMaxRetentionDays: retention_run deletes faces older than this
  TimePoint created_at{};
};

struct NewPhotoLibrary {
  std::string name;
  std::string owner;
  int retention_days = 365;
};

// A photo as the store knows it: where it was, what it was, and what came of it.
struct LibraryPhoto {
  std::int64_t id = 0;
  std::string path;
  std::string sha256;      // of the file's bytes
  std::int64_t size = 0;   // bytes
  std::int64_t mtime = 0;  // the file's modification time, ns since the epoch
  bool ingested = false;   // false: it failed (error says why); it is not retried unless it changes
  int faces = 0;           // faces stored from it
  std::string error;
};

struct NewLibraryFace {
  FaceBox box;
  float detector_score = 0;
  std::vector<float> embedding;  // 1..4096 finite values, one dim and model per library
  std::string model_id;
  // Face::embedding_norm (a quality signal the grouping weighs); finite, >= 0; 0: unknown.
  // Stored in the clear, as detector_score is: it says how clear a face was, not whose.
  float template_norm = 0;
};

struct LibraryFace {
  std::int64_t id = 0;
  std::int64_t photo = 0;
  FaceBox box;
  std::vector<float> embedding;  // decrypted (empty for forgotten faces or when omitted)
  float template_norm = 0;       // NewLibraryFace::template_norm (0 for faces stored before schema v7)
  std::int64_t group = 0;        // 0: not grouped yet
  bool forgotten = false;
};

struct LibraryGroup {
  std::int64_t number = 0;
  std::string label;  // empty: not named
  bool hidden = false;
  std::int64_t faces = 0;  // active faces
  std::int64_t photos = 0;
};

struct LibraryCorrection {
  enum class Kind { kMustLink, kCannotLink };
  Kind kind = Kind::kMustLink;
  std::int64_t a = 0, b = 0;  // face ids
};

struct AddedPhoto {
  std::int64_t photo = 0;
  std::vector<std::int64_t> faces;  // ids of the faces stored, in the order given
  std::int64_t suppressed = 0;      // faces not stored: they match forgotten ones
};

// What delete_library() removed (rows counted in its transaction).
struct LibraryErasure {
  std::int64_t photos = 0, faces = 0, groups = 0, corrections = 0;
};

class LibraryStore {
 public:
  virtual ~LibraryStore() = default;

  // ensures: kAlreadyExists for a taken name; kInvalidArgument for a bad name, an
  //   empty owner or a retention outside 1..kMaxRetentionDays.
  virtual Result<PhotoLibrary> create_library(const NewPhotoLibrary& spec, const AuditContext& ctx) = 0;
  // ensures: kNotFound for an unknown library.
  virtual Result<PhotoLibrary> get_library(std::string_view name) = 0;
  virtual Result<std::vector<PhotoLibrary>> list_libraries() = 0;

  // Every photo of the library (ingested or failed), ascending id.
  virtual Result<std::vector<LibraryPhoto>> list_photos(std::string_view library) = 0;

  // Records one photo and its faces in one transaction (an interrupted ingest loses at
  // most the photo in flight). A face matching a forgotten face of the same photo hash
  // (IoU >= kForgottenIou) is not stored. A photo already recorded at the same path is
  // replaced (its faces deleted with it): the file changed.
  // requires: photo.sha256 a SHA-256 hex digest; faces valid as NewLibraryFace says
  //   (else kInvalidArgument, nothing stored); a library holding templates of another
  //   model or dimension refuses these (kInvalidArgument).
  // ensures: the photo id and the ids of the faces stored. Audited "library_add_photo"
  //   with the ids and counts (not the path).
  virtual Result<AddedPhoto> add_photo(std::string_view library, const LibraryPhoto& photo,
                                       const std::vector<NewLibraryFace>& faces, const AuditContext& ctx) = 0;

  // The library's faces, ascending id; templates decrypted when with_templates. Forgotten
  // faces are included only when with_forgotten (without templates: they have none).
  // ensures: kIntegrityError naming the face when a template does not open.
  virtual Result<std::vector<LibraryFace>> list_faces(std::string_view library, bool with_templates,
                                                      bool with_forgotten = false) = 0;

  // One active face of the library, without its template: one indexed row, however large
  // the library (a thumbnail needs the box of one face, not the list of 100,000).
  // ensures: kNotFound when the library has no such active face (a forgotten face, or a
  //          face of another library, is not found).
  virtual Result<LibraryFace> find_face(std::string_view library, std::int64_t face) = 0;

  // Sets the group of each face in `groups` (face id -> group number > 0), and drops the
  // labels of numbers no active face holds any more. Audited "library_group" (counts).
  // ensures: kInvalidArgument for a number <= 0; faces not of this library are ignored.
  virtual Status save_groups(std::string_view library, const std::map<std::int64_t, std::int64_t>& groups,
                             const AuditContext& ctx) = 0;

  // The groups with active faces, with their labels, largest first (then by number).
  virtual Result<std::vector<LibraryGroup>> list_groups(std::string_view library) = 0;
  // ensures: kNotFound when no active face is in the group; kInvalidArgument for a label
  //   over 256 bytes. An empty label removes the name. Audited without the label.
  virtual Status set_group_label(std::string_view library, std::int64_t group, std::string_view label,
                                 const AuditContext& ctx) = 0;
  virtual Status set_group_hidden(std::string_view library, std::int64_t group, bool hidden,
                                  const AuditContext& ctx) = 0;

  // Records corrections (all or none). ensures: kInvalidArgument when a pair names one
  //   face twice or a face not of this library.
  virtual Status add_corrections(std::string_view library, std::span<const LibraryCorrection> corrections,
                                 const AuditContext& ctx) = 0;
  // Deletes the must-links that name `face` (a face removed from a person is no longer
  // "the same" as the faces it was linked to), in the same transaction as `then` adds.
  virtual Status replace_must_links(std::string_view library, std::int64_t face,
                                    std::span<const LibraryCorrection> then_add, const AuditContext& ctx) = 0;
  virtual Result<std::vector<LibraryCorrection>> list_corrections(std::string_view library) = 0;

  // The photos holding the faces, by photo id (for find and reports).
  virtual Result<std::vector<LibraryPhoto>> photos_of_faces(std::string_view library,
                                                            std::span<const std::int64_t> faces) = 0;

  // Records a search of the library ("find yourself"). requires: a reason.
  // ensures: one "library_find" entry with the reason and the counts and face ids found;
  //          one search counted for ctx.actor (Store::search_count), as a collection
  //          search is, so a server key's search budget covers finds too.
  virtual Status record_find(std::string_view library, std::string_view details_json, const AuditContext& ctx) = 0;

  // Records a find refused before it ran because the key's search budget is spent, as a
  // refused collection search is: one "library_find" entry with result
  // "refused: rate_limited" and the budget's window; nothing is charged.
  // requires: a reason. ensures: kNotFound for an unknown library.
  virtual Status record_find_refused(std::string_view library, std::string_view window, const AuditContext& ctx) = 0;

  // Deletes the templates of every face of the group, marks them forgotten, drops the
  // group's label and every correction naming them. requires: a reason.
  // ensures: the face ids forgotten; kNotFound when the group holds no active face.
  virtual Result<std::vector<std::int64_t>> forget_group(std::string_view library, std::int64_t group,
                                                         const AuditContext& ctx) = 0;

  // Deletes the library and everything of it. requires: a reason.
  // ensures: the rows removed; kNotFound for an unknown library.
  virtual Result<LibraryErasure> delete_library(std::string_view name, const AuditContext& ctx) = 0;
};

}  // namespace candor
