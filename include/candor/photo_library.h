// Candor: photo libraries, the product around the grouping (issue 13).
//
// The operations behind `candor library ...`: ingest an owner's photo folders into a
// library (every face of every photo, templates encrypted in the store; no image is
// kept), group the faces into people (FaceGrouping, candor/library.h) with the groups
// persisted, apply the owner's corrections (merge, remove a face, regroup keeping names
// and corrections), find the photos of the person in a probe photo (audited with a
// reason), and forget a person. The store side (tables, audit, forgetting) is
// candor/library_store.h.
//
// Each call that changes groups reopens the library's grouping from the store
// (FaceGrouping::restore: the stored groups and every correction), changes it, and
// writes back the faces whose group changed. So a name, which is a label on a group
// number, stays with the group through adds and corrections, and a regroup carries it
// to the new group that shares most faces with the old (FaceGrouping::regroup).
//
// Large photos: faces are searched on the photo decoded at 1/2, 1/4 or 1/8 size
// (libjpeg's scaled decoding), the largest reduction at which a face of
// min_face_fraction of the short side is still kLibraryMinFacePx pixels; the faces
// found are located again and embedded on the full-resolution photo. Faces smaller
// than min_face_fraction of the short side are not searched for.
//
// Thread safety: the free functions may run concurrently on different libraries;
// two that change the groups of one library at once may overwrite each other's
// groups (the store keeps every correction either way; a regroup repairs).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "candor/engine.h"
#include "candor/image.h"
#include "candor/library.h"
#include "candor/library_store.h"

namespace candor {

// The face size, in pixels of the reduced photo, below which no reduction is chosen:
// the engine's default minimum face (DetectOptions::min_face_size, 24 px), which its
// detector finds without upsampling (its smallest reliable face is 20 network pixels,
// src/detect/ultraface_detector.cpp).
inline constexpr int kLibraryMinFacePx = DetectOptions{}.min_face_size;

// The faces of one photo, with templates.
struct PhotoFaces {
  std::vector<Face> faces;  // boxes, landmarks and templates in full-resolution pixels
  cv::Size size;            // the photo, full resolution (EXIF orientation applied)
  int reduction = 1;        // the photo was searched at 1/reduction of each side
  int min_face_px = 0;      // the smallest face searched for, full-resolution pixels
};

// The reduction at which to search a photo whose short side is `short_side` pixels:
// the largest of 8, 4, 2, 1 with min_face_fraction * short_side / r >= kLibraryMinFacePx.
int library_reduction(int short_side, double min_face_fraction);

// Finds every face of an encoded photo (JPEG reduced as above; other formats whole).
// ensures: decode_image's errors; no face is not an error.
Result<PhotoFaces> find_photo_faces(const Engine& engine, std::span<const std::uint8_t> bytes,
                                    const ImageLimits& limits, double min_face_fraction);

struct IngestProgress {
  std::size_t done = 0, total = 0;  // photos looked at, of all files given
  std::size_t ingested = 0;         // photos analysed and recorded (with or without faces)
  std::size_t unchanged = 0;        // skipped: same path and size and mtime, or same content
  std::size_t duplicates = 0;       // skipped: the same content at another path of the library
  std::size_t failed = 0;           // unreadable or not an image (recorded, not retried unless changed)
  std::size_t faces = 0;            // faces stored
  std::int64_t suppressed = 0;      // faces not stored: forgotten before
  double seconds = 0;               // since the ingest began
};

struct IngestReport : IngestProgress {
  std::size_t faces_grouped = 0;  // faces newly given a group
  std::size_t groups = 0;         // groups holding active faces afterwards
};

struct LibraryOptions {
  ImageLimits limits;
  double min_face_fraction = 0.02;  // the "faces of 2% of the short side or larger"
  int workers = 1;                  // photos analysed at once (the engine needs as many replicas)
  GroupingOptions grouping;
  // Called after each photo, one call at a time (from the worker that finished it).
  std::function<void(const IngestProgress&)> progress;
};

// The image files under the directories (recursively), by extension as read_image
// decodes them; sorted, absolute paths. ensures: kIoError naming a directory that
// cannot be listed.
Result<std::vector<std::filesystem::path>> library_image_files(std::span<const std::filesystem::path> dirs);

// Ingests `files` into the library, then groups the faces not grouped yet (also those
// an interrupted earlier run left). Each photo is committed in its own transaction.
// ensures: the counts; the store's errors (a photo's own failure is counted, not returned).
Result<IngestReport> ingest_photos(const Engine& engine, LibraryStore& store, std::string_view library,
                                   std::span<const std::filesystem::path> files, const LibraryOptions& options,
                                   const AuditContext& ctx);

// Groups the faces that have no group yet (FaceGrouping::add), persisting the groups.
// ensures: the number of faces grouped.
Result<std::size_t> group_new_faces(LibraryStore& store, std::string_view library, const GroupingOptions& options,
                                    const AuditContext& ctx);

// "G1 and G2 are one person": must-links from G1's first face to every other face of
// both groups, then the groups they touch are re-grouped (FaceGrouping::correct).
// ensures: kNotFound for a group with no active face; the group the faces are in after.
Result<std::int64_t> merge_groups(LibraryStore& store, std::string_view library, std::int64_t g1, std::int64_t g2,
                                  const GroupingOptions& options, const AuditContext& ctx);

// "This face is not this person": the face's must-links are dropped and it is
// cannot-linked to every other face of its group, remembered for every later grouping.
// ensures: kNotFound for a face not active in the library; the face's new group.
Result<std::int64_t> remove_face(LibraryStore& store, std::string_view library, std::int64_t face,
                                 const GroupingOptions& options, const AuditContext& ctx);

// A full re-group of the library with every correction; names carried by overlap.
// ensures: the number of faces whose group changed.
Result<std::size_t> regroup_library(LibraryStore& store, std::string_view library, const GroupingOptions& options,
                                    const AuditContext& ctx);

struct LibraryMatch {
  std::vector<std::int64_t> groups;     // the groups of the faces that matched
  std::vector<LibraryPhoto> photos;     // the photos holding a face of those groups
  std::vector<std::int64_t> faces;      // the faces at or above the threshold, best first
  float best = -1;                      // the best similarity (-1: no face in the library)
};

// The photos of the library that show the person of the probe's primary face: the
// groups of the faces scoring >= threshold against it, and every photo of those groups.
// requires: a reason (audited "library_find" with the counts, the groups and the faces).
// ensures: kNoFace when the probe shows no face; decode errors; the store's errors.
Result<LibraryMatch> find_person(const Engine& engine, LibraryStore& store, std::string_view library,
                                 std::span<const std::uint8_t> probe, float threshold, const LibraryOptions& options,
                                 const AuditContext& ctx);


// Thumbnails and the HTML report (issue 13, "look, not read"). Candor stores no image:
// a thumbnail is cut, when it is shown, from the owner's photo at its recorded path, and
// only from the bytes that were ingested (their SHA-256 must equal the recorded one), so
// a file replaced or edited since the add (or a link put in its place) yields no pixels.
struct ThumbnailOptions {
  int size = 96;         // the square's side, px: a grid of 8-10 per row on a laptop screen
  float margin = 0.25F;  // added on each side, as a fraction of the box's longer side (hair, chin)
  int jpeg_quality = 85;  // thumbnails are looked at, never analysed: no need for OpenCV's default 95
  ImageLimits limits;    // for reading and decoding the photo
};

// The square crop of `box` with the margin, from a decoded photo, resized to options.size
// and encoded as JPEG; the part of the square outside the photo is mid-grey.
// requires: photo CV_8UC3; options.size in 16..1024 (else std::invalid_argument).
std::vector<std::uint8_t> face_thumbnail_jpeg(const cv::Mat& photo, const FaceBox& box,
                                              const ThumbnailOptions& options);

// The thumbnail of one active face of the library (forgotten faces have none).
// ensures: kNotFound for a face that is not an active face of this library, and for a
//   photo that is missing or changed (the message says which, never the path);
//   decode_image's errors for a photo that no longer decodes; the store's errors.
//   Not audited: it reads, as list_groups does (library_store.h).
Result<std::vector<std::uint8_t>> library_face_thumbnail(LibraryStore& store, std::string_view library,
                                                         std::int64_t face, const ThumbnailOptions& options);

struct LibraryReportSummary {
  std::size_t groups = 0;          // groups shown (hidden ones are not)
  std::size_t hidden_groups = 0;   // groups left out because the owner hid them
  std::size_t faces = 0;           // thumbnails written
  std::size_t ungrouped = 0;       // of those, faces not grouped yet (their own section, last)
  std::size_t faces_skipped = 0;   // faces whose photo gave no thumbnail
  // Photos that gave no thumbnail: no readable file at the recorded path; content not the
  // content ingested (SHA-256 differs); content as ingested but not decodable within the limits.
  std::size_t photos_missing = 0, photos_changed = 0, photos_undecodable = 0;
};

// Writes `out_dir`/index.html and one `out_dir`/face-<id>.jpg per face shown: each visible
// group as a grid of its faces' thumbnails, largest group first (list_groups' order), under
// its name or "Person <number>" and its face count; then the faces not grouped yet. Hidden
// groups and forgotten faces are left out. Every text from the owner (names, file names)
// is HTML-escaped, and the page carries a CSP that runs no script. A photo that is missing,
// changed or undecodable is skipped and counted, not an error. Each photo is read once.
// Files face-<digits>.jpg in `out_dir` that this report did not write are deleted, so a
// forgotten or hidden face's thumbnail does not outlive a re-run into the same folder.
// Not audited (a read, as list_groups).
// ensures: the counts; kIoError when `out_dir` cannot be created or written; kNotFound
//   for an unknown library; the store's errors.
Result<LibraryReportSummary> write_library_report(LibraryStore& store, std::string_view library,
                                                  const std::filesystem::path& out_dir,
                                                  const ThumbnailOptions& options = {});

}  // namespace candor
