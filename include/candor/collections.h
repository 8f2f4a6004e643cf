// Candor: consent-first collections — enrollment and 1:N identification over the
// system of record (candor/store.h), with an in-memory index per collection
// (candor/index.h) kept in step with it.
//
// The Store enforces the rules (consent before enrollment, atomic revocation,
// encryption, audit). This layer adds what needs the engine and the index:
// turning photos into templates, searching, and making sure that a face removed
// from the store is never returned by a search:
//
// - Each collection has a reader-writer lock. A search holds it shared from the
//   index lookup until its audit entry is written; revocation, erasure and
//   retention hold it exclusive from the store transaction until the index has
//   dropped the faces. So no search that returns a revoked face can overlap the
//   revocation's commit, and no search after it can see the face.
// - Candidates are re-checked against the store (existing_faces) before a
//   search answers, so an index that lags the store (another process, another
//   node) never leaks a deleted face.
// - Several nodes over one store: each follows the store's change feed
//   (Store::changes_since / wait_for_change, see candor/store.h) and applies the
//   faces added and removed and the collections deleted by the others (sync(),
//   or a background follower with CollectionsOptions::follow_changes). Applying
//   is idempotent, so this node's own changes coming back through the feed are
//   no-ops. Lag only delays new faces: removed ones are already filtered by the
//   re-check above.
//
// Thread safety: all members may be called concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "candor/engine.h"
#include "candor/store.h"

namespace candor {

class FaceAnalyzer;

struct CollectionsOptions {
  // Index factory spec (candor/index.h) for each collection's in-memory index. The
  // default is exhaustive: int8 codes scanned with AVX2, the best 256 re-ranked in
  // float32 — recall@10 1.0000 against float32 at 1M templates in 39 ms per query,
  // 2.5x faster than the float scan (README "1:N search and the index").
  std::string index_spec = "SQ8,Refine";
  // Optional analyser: when set, enrollment refuses faces below min_enroll_quality
  // (kQualityTooLow naming the figure), searches report the probe's quality, and
  // collections with liveness_required refuse faces that fail the liveness check.
  const FaceAnalyzer* analyzer = nullptr;
  QualityLevel min_enroll_quality = QualityLevel::kMedium;
  DetectOptions detect;
  ImageLimits limits;  // for enrollment photos and probes

  // Follow the store's change feed on a background thread owned by the
  // Collections (stopped and joined by its destructor), so that changes made by
  // other nodes or processes reach this node's indexes. Without it, call sync().
  bool follow_changes = false;
  // Longest single wait_for_change() of the follower: bounds how long the
  // destructor waits for the thread; PostgreSQL wakes it at once on NOTIFY,
  // SQLite polls within this period.
  std::chrono::milliseconds follow_wait{500};
  // After a failed sync (store unreachable) the follower retries after this
  // delay, doubling up to follow_retry_max.
  std::chrono::milliseconds follow_retry{100};
  std::chrono::milliseconds follow_retry_max{5000};
  // Changes read per changes_since() call.
  std::size_t follow_batch = 1000;

  // The collections this node holds in memory, when one node cannot hold them all
  // (README "Several nodes"): names, or prefixes ending in '*' ("eu-*"). Empty: all.
  // Searches and enrollments in any other collection fail with kNotFound naming
  // the option; the store operations (consents, audit) are unaffected.
  std::vector<std::string> served;
};

// Where this node's indexes stand against the store's change feed (metrics).
struct FollowStatus {
  bool following = false;            // the background follower runs
  std::int64_t applied_version = 0;  // every change up to this version is in the indexes
  // Seconds since the indexes were last confirmed level with the store (a sync
  // that found nothing newer). A healthy follower keeps it under follow_wait
  // plus the time to apply a batch; it grows while the store is unreachable.
  double lag_seconds = 0;
  std::uint64_t changes_applied = 0;  // feed entries applied (own changes included)
  std::uint64_t reloads = 0;          // full reloads after a truncated feed
  std::uint64_t sync_failures = 0;
  std::optional<Error> last_error;    // of the last sync, cleared by a good one
};

// One image offered for enrollment: its bytes are hashed (SHA-256 kept), decoded,
// and dropped; only the template is stored.
// What Collections::calibrate measured and what it changed.
struct CalibrationReport {
  Collection collection;                // as stored, with its calibration
  OperatingPoint previous;              // the point it decided at before
  OperatingPoint decides_at;            // the point it decides at now
  std::vector<OperatingPoint> shipped;  // the recogniser's points, for comparison
};

// A subject's template: the mean of its face templates, renormalised to unit length
// (Amazon Rekognition's "user vector"). On Candor's LFW templates, people enrolled from
// 3 photos and searched by this mean are found with FNIR 2.3% at FPIR 1e-2, against
// 2.9% for the best single face and 5.2% for the mean of the face scores (issue 11's
// protocol, `candor bench lfw-ident --enroll-images 3`). `weights`, when given, weight
// each face (one per template; e.g. by quality); empty: equal weights.
// requires: every template has the same non-zero size; weights empty or one per template.
// ensures: a unit vector of that size (all zeros when `faces` is empty or sums to zero).
std::vector<float> subject_template(std::span<const std::vector<float>> faces, std::span<const float> weights = {});

// The most photos one enroll() call takes: a subject is enrolled from a few good photos,
// and each one costs an inference (~30 ms), so a larger batch is refused before any
// work (Azure Face keeps at most 248 faces per person across all calls).
inline constexpr std::size_t kMaxEnrollImages = 64;

struct EnrollImage {
  std::string name;                   // for messages: a file name
  std::span<const std::uint8_t> bytes;
};

struct EnrollOutcome {
  std::string name;
  std::optional<FaceId> face_id;  // set when enrolled
  std::optional<Error> error;     // why not: unreadable, no face, several faces, quality, consent
};

struct SubjectMatch {
  std::string subject;
  float similarity = 0;  // the probe against the subject's template (subject_template())
  float threshold = 0;   // the threshold it was decided at: the collection's operating point for a
                         // subject enrolled from `faces` photos (OperatingPoint::subject_thresholds)
  bool match = false;    // similarity >= threshold
  std::size_t faces = 0;  // enrolled faces the subject's template is made of
  FaceId face_id = 0;    // the enrolled face most similar to the probe
  float face_similarity = 0;  // ... and its similarity
};

struct SearchOptions {
  std::size_t top_k = 5;  // 1..100 subjects per face
  // Also return the best subjects below the threshold (match == false).
  // Off by default: a search answers who matched, not who in the collection looks
  // most like a stranger. The audit entry records that candidates were asked for;
  // its subject index still names only the matches.
  bool include_candidates = false;
  // Search only the largest face of the probe. Default: every face found (a door
  // camera's frame or a group photo holds several people), each searched and audited
  // as one search.
  bool largest_face_only = false;
  // Called once the probe's faces are found, with how many will be searched, before
  // any is: a rate limit charges each face. A non-ok status refuses the search with
  // that error, audited (a kRateLimited refusal uncharged: nothing was searched).
  std::function<Status(std::size_t faces)> admit_faces;
  // The most probability with which a probe of someone not enrolled may be named, for
  // this collection's size: each subject is then decided at identification_point()
  // (candor/calibration.h) of the collection's point, FMR fpir / subjects, never looser
  // than the collection's point. Empty: the collection's point alone, whatever its size.
  // requires: in (0, 1) when set (else kInvalidArgument). Recorded in the audit details.
  std::optional<double> fpir;
};

// One face of the probe and the subjects it matched.
struct FaceSearch {
  Face probe;                         // box, landmarks, quality; no template
  std::vector<SubjectMatch> matches;  // best first, one per subject, at most top_k: those at
                                      // or above their threshold, and below it too when
                                      // SearchOptions::include_candidates
};

struct SearchResult {
  std::vector<FaceSearch> faces;  // every face searched, largest first (never empty)
  std::size_t faces_in_image = 0;
  float threshold = 0;  // the collection's threshold for a subject enrolled from one photo
  const FaceSearch& largest() const { return faces.front(); }
};

struct VerifyResult {
  std::string subject;
  Face probe;             // the largest face of the photo; no template
  float similarity = 0;   // probe against the subject's template
  float threshold = 0;    // the collection's operating point for the subject's photo count
  bool match = false;
  std::size_t faces = 0;  // enrolled faces of the subject
  FaceId face_id = 0;     // the enrolled face most similar to the probe
};

struct EnrollOptions {
  // A photo whose face does not look like the subject's other photos (similarity to
  // their template below kOutlierFraction of the collection's threshold) is refused as
  // probably another person's, naming the figure; true enrolls it anyway.
  bool allow_outliers = false;
};

// An enrollment photo is an outlier when its similarity to the template of the
// subject's other photos is below this fraction of the collection's threshold: at
// fmr-1e-4 (0.4128) that is 0.206, far below any operating point (fmr-1e-3 is 0.338)
// and well inside the impostor range, so a genuine photo of usable quality is seldom
// refused while a photo filed under the wrong name almost always is.
inline constexpr float kOutlierFraction = 0.5f;

// A probe that is already a template: a camera stream's track (candor/stream.h), whose
// evidence several frames made. Nothing of it is stored; its template is not copied.
struct TemplateProbe {
  std::span<const float> embedding;  // L2-normalised, the recogniser's dim()
  Box box;                           // where the face was last seen (audit details)
  // The liveness check's outcome for the track, when one ran. A collection that
  // requires liveness refuses a probe without a live one.
  std::optional<bool> live;
  // Who asks, in the audit details: e.g. "stream door-1 track 17". At most 256 bytes.
  std::string source;
  // The purpose the probe was taken for: must be the collection's (its subjects
  // consented to that purpose and no other).
  std::string purpose;
  std::size_t frames = 1;  // frames whose templates were combined (audit details)
  // Added to the operating point's thresholds for this search (>= 0): a stream's early
  // decision on one frame asks for a stricter match, and the audit entry's match (and the
  // subject it names) is then the stream's, so a search that does not name anyone records
  // no name either.
  float margin = 0;
};

class Collections {
 public:
  // Loads every collection's templates from the store into memory.
  // ensures: errors from the store (kIntegrityError for a template that does not decrypt).
  static Result<std::unique_ptr<Collections>> open(const Engine& engine, Store& store, CollectionsOptions options = {});

  virtual ~Collections() = default;

  // The store, for operations that need no engine or index (consents, audit, export).
  virtual Store& store() = 0;

  // Creates a collection whose match threshold is the recogniser's operating point
  // `operating_point` (default fmr-1e-4: identification compares one probe with many).
  virtual Result<Collection> create_collection(NewCollection spec, const std::string& operating_point,
                                               const AuditContext& ctx) = 0;
  virtual Result<std::vector<FaceId>> delete_collection(const std::string& name, const AuditContext& ctx) = 0;

  // Measures the collection's operating points on the operator's own people (`people`:
  // one list of templates per person, from photos the operator may use for this; they
  // are neither enrolled nor kept) with calibrate_points() (candor/calibration.h), and
  // stores them (Store::set_calibration, audited as "calibrate"). The collection keeps
  // its point's name: an fmr-1e-4 collection decides at the fmr-1e-4 threshold measured
  // here, for a subject of any photo count, from the next search on this node and after
  // the next sync() on the others.
  // requires: every non-empty template has the recogniser's dim (an empty one is an
  //   unreadable photo and is skipped).
  // ensures: the report; kInvalidArgument (nothing stored) for a wrong dim or a set that
  //          resolves no operating point (calibrate_points); kNotFound for no collection.
  virtual Result<CalibrationReport> calibrate(const std::string& collection,
                                              std::span<const std::vector<std::vector<float>>> people,
                                              const AuditContext& ctx) = 0;
  // Back to the recogniser's shipped points (the shipped point of the same name), audited.
  virtual Result<Collection> reset_calibration(const std::string& collection, const AuditContext& ctx) = 0;

  // Enrolls one face per image for `subject`. Images are processed independently;
  // those that fail (no face, several faces, low quality) are reported and skipped.
  // The faces that pass are stored in one transaction.
  // The subject's consent is checked before any image is decoded (Store::
  // check_enroll_consent), so no template of a person without consent is ever
  // computed, and again at commit. No lock that revocation, erasure or collection
  // changes need is held while the images are decoded and embedded.
  // ensures: kConsentRequired (nothing decoded, nothing stored) when the subject lacks
  //          consent; kInvalidArgument for more than kMaxEnrollImages images;
  //          kNotFound for an unknown collection; otherwise one outcome per image.
  //          An outlier photo (see EnrollOptions) is refused individually with
  //          kInvalidArgument naming its similarity, unless options.allow_outliers.
  virtual Result<std::vector<EnrollOutcome>> enroll(const std::string& collection, const std::string& subject,
                                                    std::span<const EnrollImage> images, const EnrollOptions& options,
                                                    const AuditContext& ctx) = 0;
  Result<std::vector<EnrollOutcome>> enroll(const std::string& collection, const std::string& subject,
                                            std::span<const EnrollImage> images, const AuditContext& ctx) {
    return enroll(collection, subject, images, EnrollOptions{}, ctx);
  }

  // 1:N: the subjects matching each face in `probe` (see SearchOptions), ranked by
  // their subject templates; each face searched is one audited search.
  // The audit context (reason non-empty, within kMaxReasonBytes) and the options are
  // checked before the probe is decoded; inference holds no collection lock.
  // ensures: kInvalidArgument for a bad context or options (nothing run, nothing
  //          audited); kNoFace when the probe has none; once the probe is read, the
  //          search is audited whatever its outcome.
  virtual Result<SearchResult> search(const std::string& collection, std::span<const std::uint8_t> probe,
                                      const SearchOptions& options, const AuditContext& ctx) = 0;
  Result<SearchResult> search(const std::string& collection, std::span<const std::uint8_t> probe, std::size_t top_k,
                              const AuditContext& ctx) {
    SearchOptions options;
    options.top_k = top_k;
    return search(collection, probe, options, ctx);
  }

  // 1:N with a template instead of a photo: the search() of one face, for callers that
  // embedded it themselves (a stream combining several frames of a track). The same
  // re-check against the store, thresholds and one audit entry, whose details add the
  // probe's source, purpose and frame count. options.largest_face_only is ignored;
  // options.admit_faces is asked for one face.
  // ensures: kInvalidArgument for a bad context, options, source, or a template of the
  //          wrong size (nothing audited); kNotFound for an unknown collection; audited
  //          refusals: kConsentRequired when probe.purpose is not the collection's,
  //          kLivenessFailed when the collection requires liveness and probe.live is not
  //          true, admit_faces's error.
  //          The result's probe holds the box only.
  virtual Result<FaceSearch> search_template(const std::string& collection, const TemplateProbe& probe,
                                             const SearchOptions& options, const AuditContext& ctx) = 0;

  // 1:1 against one subject: is the largest face of `probe` this subject? Decided on the
  // subject's template at the collection's operating point; audited as a search ("verify"
  // in its details; the subject named only when it matched).
  // requires: as search().
  // ensures: kNotFound when the subject holds no face in the collection (audited);
  //          kNoFace when the probe has none.
  virtual Result<VerifyResult> verify(const std::string& collection, const std::string& subject,
                                      std::span<const std::uint8_t> probe, const AuditContext& ctx) = 0;

  // As the store's, and the faces leave the index before the call returns.
  virtual Result<std::vector<FaceId>> revoke_consent(const std::string& collection, const std::string& subject,
                                                     const AuditContext& ctx) = 0;
  virtual Result<std::vector<FaceId>> erase_subject(const std::string& collection, const std::string& subject,
                                                    const AuditContext& ctx) = 0;
  virtual Result<RetentionReport> retention_run(TimePoint now, const AuditContext& ctx) = 0;

  // Templates held in memory for `collection` (0 for an unknown one).
  virtual std::size_t indexed_faces(const std::string& collection) const = 0;

  // Applies every change the store's feed holds after the applied version:
  // templates of added faces are fetched (get_faces) and indexed under their
  // subject, removed faces dropped, deleted collections dropped, collections
  // first seen in the feed loaded whole; a truncated feed reloads everything.
  // Idempotent: a face already indexed is skipped, an absent one ignored.
  // ensures: on success the indexes hold every change up to a version the store
  //          had when sync() was called; store errors (kStoreUnavailable) leave
  //          the applied version where it was, so the next sync() resumes there.
  // thread safety: concurrent calls are serialised.
  virtual Status sync() = 0;
  virtual FollowStatus follow_status() const = 0;
};

}  // namespace candor
