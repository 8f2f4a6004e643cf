// Photo libraries: ingest, persisted grouping, corrections, find (candor/photo_library.h).
#include "candor/photo_library.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "candor/crypto.h"
#include "candor/parallel.h"
#include "photo_digest.h"

namespace candor {
namespace {

// The library's grouping as stored: every active face with its template, the stored
// groups restored and the ungrouped faces waiting (not yet added).
struct LoadedGrouping {
  std::unique_ptr<FaceGrouping> grouping;
  std::map<std::int64_t, std::int64_t> stored;  // face -> group as stored (0: none)
  std::vector<LibraryFace> ungrouped;
};

GroupingConstraints constraints_of(const std::vector<LibraryCorrection>& corrections) {
  GroupingConstraints c;
  for (const LibraryCorrection& k : corrections) {
    (k.kind == LibraryCorrection::Kind::kMustLink ? c.must_link : c.cannot_link).push_back(FacePair{k.a, k.b});
  }
  return c;
}

Result<LoadedGrouping> load_grouping(LibraryStore& store, std::string_view library, const GroupingOptions& options) {
  auto faces = store.list_faces(library, true);
  if (!faces) return faces.error();
  auto corrections = store.list_corrections(library);
  if (!corrections) return corrections.error();
  LoadedGrouping out;
  std::vector<GroupingFace> held;
  std::vector<float> vectors;
  std::vector<std::int64_t> groups;
  int dim = 0;
  for (LibraryFace& f : *faces) {
    dim = static_cast<int>(f.embedding.size());
    out.stored[f.id] = f.group;
    if (f.group == 0) {
      out.ungrouped.push_back(std::move(f));
      continue;
    }
    held.push_back(GroupingFace{f.id, f.photo, f.template_norm});
    vectors.insert(vectors.end(), f.embedding.begin(), f.embedding.end());
    groups.push_back(f.group);
  }
  if (dim == 0) return out;  // no face yet: nothing to group (grouping stays null)
  auto grouping = FaceGrouping::create(dim, options);
  if (!grouping) return grouping.error();
  if (auto r = (*grouping)->restore(held, vectors, groups, constraints_of(*corrections)); !r) return r.error();
  // The groups the owner named or hid are pinned: new photos never merge two of them.
  auto set = store.list_groups(library);
  if (!set) return set.error();
  std::vector<std::int64_t> pinned;
  for (const LibraryGroup& group : *set) {
    if (!group.label.empty() || group.hidden) pinned.push_back(group.number);
  }
  (*grouping)->pin(pinned);
  out.grouping = std::move(*grouping);
  return out;
}

// FaceGrouping::add of the faces the store holds without a group (new ones, or those an
// interrupted run left).
Status add_ungrouped(LoadedGrouping& g) {
  std::vector<GroupingFace> faces;
  std::vector<float> vectors;
  for (const LibraryFace& f : g.ungrouped) {
    faces.push_back(GroupingFace{f.id, f.photo, f.template_norm});
    vectors.insert(vectors.end(), f.embedding.begin(), f.embedding.end());
  }
  g.ungrouped.clear();
  return g.grouping->add(faces, vectors);
}

// Writes back the faces whose group changed.
Result<std::size_t> save_changes(LibraryStore& store, std::string_view library, const LoadedGrouping& g,
                                 const AuditContext& ctx) {
  std::map<std::int64_t, std::int64_t> changed;
  if (g.grouping) {
    for (const auto& [group, faces] : g.grouping->groups()) {
      for (std::int64_t face : faces) {
        auto it = g.stored.find(face);
        if (it == g.stored.end() || it->second != group) changed[face] = group;
      }
    }
  }
  if (changed.empty()) return std::size_t{0};
  if (auto s = store.save_groups(library, changed, ctx); !s) return s.error();
  return changed.size();
}

// The faces of a group, as the grouping holds them.
std::vector<std::int64_t> members(const FaceGrouping& grouping, std::int64_t group) {
  auto all = grouping.groups();
  auto it = all.find(group);
  return it == all.end() ? std::vector<std::int64_t>{} : it->second;
}

Error no_group(std::string_view library, std::int64_t group) {
  return Error{ErrorCode::kNotFound, "library '" + std::string(library) + "' has no group " + std::to_string(group)};
}

std::int64_t mtime_ns(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

int library_reduction(int short_side, double min_face_fraction) {
  const double smallest = min_face_fraction * short_side;
  for (int r : {8, 4, 2}) {
    if (smallest / r >= kLibraryMinFacePx) return r;
  }
  return 1;
}

Result<PhotoFaces> find_photo_faces(const Engine& engine, std::span<const std::uint8_t> bytes, const ImageLimits& limits,
                                    double min_face_fraction) {
  auto info = probe_image(bytes);
  if (!info) return info.error();
  PhotoFaces out;
  const int short_side = std::min(info->width, info->height);
  out.min_face_px = std::max(1, static_cast<int>(std::ceil(min_face_fraction * short_side)));
  out.reduction = info->format == ImageFormat::kJpeg ? library_reduction(short_side, min_face_fraction) : 1;
  DetectOptions detect;
  if (out.reduction == 1) {
    auto full = decode_image(bytes, limits);
    if (!full) return full.error();
    out.size = full->size();
    detect.min_face_size = out.min_face_px;
    out.faces = engine.analyze(*full, detect);
    return out;
  }
  auto small = decode_image_reduced(bytes, limits, out.reduction);
  if (!small) return small.error();
  detect.min_face_size = std::max(1, out.min_face_px / out.reduction);
  detect.landmarks = false;  // located on the full photo below
  std::vector<Face> faces = engine.detect_boxes(*small, detect);
  if (faces.empty()) {
    // Sides rounded up by the scaled decode: the full size, without decoding it.
    out.size = cv::Size(small->cols * out.reduction, small->rows * out.reduction);
    return out;
  }
  auto full = decode_image(bytes, limits);
  if (!full) return full.error();
  out.size = full->size();
  const float sx = static_cast<float>(full->cols) / static_cast<float>(small->cols);
  const float sy = static_cast<float>(full->rows) / static_cast<float>(small->rows);
  for (Face& f : faces) {
    f.box = Box{f.box.x * sx, f.box.y * sy, f.box.width * sx, f.box.height * sy};
    f.box.width = std::min(f.box.width, static_cast<float>(full->cols) - f.box.x);
    f.box.height = std::min(f.box.height, static_cast<float>(full->rows) - f.box.y);
  }
  engine.locate_landmarks(*full, faces);
  engine.embed(*full, faces);
  out.faces = std::move(faces);
  return out;
}

Result<std::vector<std::filesystem::path>> library_image_files(std::span<const std::filesystem::path> dirs) {
  std::vector<std::filesystem::path> out;
  for (const auto& d : dirs) {
    try {
      for (const auto& f : image_files(d, true)) out.push_back(std::filesystem::absolute(f).lexically_normal());
    } catch (const std::filesystem::filesystem_error& e) {
      return Error{ErrorCode::kIoError, "cannot list " + d.string() + ": " + e.code().message()};
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<IngestReport> ingest_photos(const Engine& engine, LibraryStore& store, std::string_view library,
                                   std::span<const std::filesystem::path> files, const LibraryOptions& options,
                                   const AuditContext& ctx) {
  auto known = store.list_photos(library);
  if (!known) return known.error();
  std::unordered_map<std::string, LibraryPhoto> by_path;
  std::unordered_set<std::string> hashes;  // contents held (or claimed by a worker now)
  for (LibraryPhoto& p : *known) {
    hashes.insert(p.sha256);
    by_path.emplace(p.path, std::move(p));
  }
  const std::string model = engine.recognizer_spec().id;
  const auto start = std::chrono::steady_clock::now();
  std::mutex mutex;  // guards report, hashes, first_error
  IngestReport report;
  report.total = files.size();
  std::optional<Error> first_error;  // a store failure: the rest is not attempted
  const auto finish = [&](std::size_t IngestProgress::*counter, std::size_t faces, std::int64_t suppressed) {
    std::lock_guard lock(mutex);
    ++(report.*counter);
    ++report.done;
    report.faces += faces;
    report.suppressed += suppressed;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (options.progress) options.progress(report);
  };
  parallel_for(files.size(), std::max(1, options.workers), [&](std::size_t i) {
    {
      std::lock_guard lock(mutex);
      if (first_error) return;
    }
    const std::filesystem::path& path = files[i];
    LibraryPhoto photo;
    photo.path = path.string();
    std::error_code ec;
    photo.size = static_cast<std::int64_t>(std::filesystem::file_size(path, ec));
    photo.mtime = mtime_ns(path);
    const auto seen = by_path.find(photo.path);  // by_path is only read while workers run
    if (seen != by_path.end() && seen->second.size == photo.size && seen->second.mtime == photo.mtime) {
      return finish(&IngestProgress::unchanged, 0, 0);
    }
    auto bytes = read_file_bytes(path, options.limits.max_bytes);
    std::vector<NewLibraryFace> faces;
    if (!bytes) {
      photo.error = std::string(error_code_name(bytes.error().code)) + ": " + bytes.error().message;
      photo.sha256 = sha256_hex(std::string_view(photo.path));  // no content read: the path stands in
    } else {
      photo.sha256 = photo_digest(*bytes);
      {
        std::lock_guard lock(mutex);
        if (seen != by_path.end() && seen->second.sha256 == photo.sha256) {
          ++report.unchanged, ++report.done;
          return;
        }
        if (!hashes.insert(photo.sha256).second) {
          ++report.duplicates, ++report.done;
          return;
        }
      }
      auto found = find_photo_faces(engine, *bytes, options.limits, options.min_face_fraction);
      if (!found) {
        photo.error = std::string(error_code_name(found.error().code)) + ": " + found.error().message;
      } else {
        photo.ingested = true;
        for (const Face& f : found->faces) {
          faces.push_back(
              NewLibraryFace{FaceBox{f.box.x, f.box.y, f.box.width, f.box.height}, f.score, f.embedding, model, f.embedding_norm});
        }
      }
    }
    auto added = store.add_photo(library, photo, faces, ctx);
    if (!added) {
      std::lock_guard lock(mutex);
      if (!first_error) first_error = added.error();
      return;
    }
    finish(photo.ingested ? &IngestProgress::ingested : &IngestProgress::failed, added->faces.size(), added->suppressed);
  });
  if (first_error) return *first_error;
  auto grouped = group_new_faces(store, library, options.grouping, ctx);
  if (!grouped) return grouped.error();
  report.faces_grouped = *grouped;
  auto groups = store.list_groups(library);
  if (!groups) return groups.error();
  report.groups = groups->size();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

Result<std::size_t> group_new_faces(LibraryStore& store, std::string_view library, const GroupingOptions& options,
                                    const AuditContext& ctx) {
  auto g = load_grouping(store, library, options);
  if (!g) return g.error();
  if (g->ungrouped.empty()) return std::size_t{0};
  if (auto r = add_ungrouped(*g); !r) return r.error();
  return save_changes(store, library, *g, ctx);
}

Result<std::int64_t> merge_groups(LibraryStore& store, std::string_view library, std::int64_t g1, std::int64_t g2,
                                  const GroupingOptions& options, const AuditContext& ctx) {
  auto g = load_grouping(store, library, options);
  if (!g) return g.error();
  if (!g->grouping) return no_group(library, g1);
  const std::vector<std::int64_t> a = members(*g->grouping, g1), b = members(*g->grouping, g2);
  if (a.empty()) return no_group(library, g1);
  if (b.empty()) return no_group(library, g2);
  if (g1 == g2) return g1;
  std::vector<LibraryCorrection> links;
  GroupingConstraints c;
  for (const auto* list : {&a, &b}) {
    for (std::int64_t f : *list) {
      if (f == a.front()) continue;
      links.push_back(LibraryCorrection{LibraryCorrection::Kind::kMustLink, a.front(), f});
      c.must_link.push_back(FacePair{a.front(), f});
    }
  }
  // Checked by the grouping first (two faces of one photo, a cannot-link), so that a
  // refused merge records nothing.
  if (auto r = g->grouping->correct(c); !r) return r.error();
  if (auto s = store.add_corrections(library, links, ctx); !s) return s.error();
  if (auto s = save_changes(store, library, *g, ctx); !s) return s.error();
  return *g->grouping->group_of(a.front());
}

Result<std::int64_t> remove_face(LibraryStore& store, std::string_view library, std::int64_t face,
                                 const GroupingOptions& options, const AuditContext& ctx) {
  auto corrections = store.list_corrections(library);
  if (!corrections) return corrections.error();
  auto faces = store.list_faces(library, false);
  if (!faces) return faces.error();
  const auto it = std::find_if(faces->begin(), faces->end(), [&](const LibraryFace& f) { return f.id == face; });
  if (it == faces->end() || it->group == 0) {
    return Error{ErrorCode::kNotFound, "library '" + std::string(library) + "' has no grouped face " + std::to_string(face)};
  }
  std::vector<LibraryCorrection> links;
  for (const LibraryFace& f : *faces) {
    if (f.group == it->group && f.id != face) {
      links.push_back(LibraryCorrection{LibraryCorrection::Kind::kCannotLink, face, f.id});
    }
  }
  // The face's must-links go with it (they said it was this person); then the grouping is
  // reopened with the corrections as they now are, and the cannot-links applied.
  if (auto s = store.replace_must_links(library, face, links, ctx); !s) return s.error();
  auto g = load_grouping(store, library, options);
  if (!g) return g.error();
  GroupingConstraints c;
  for (const LibraryCorrection& k : links) c.cannot_link.push_back(FacePair{k.a, k.b});
  if (!c.cannot_link.empty()) {
    // restore() read the cannot-links with the rest; correct() with them again (a pair
    // recorded twice means the same) re-groups the groups they touch.
    if (auto r = g->grouping->correct(c); !r) return r.error();
  }
  if (auto s = save_changes(store, library, *g, ctx); !s) return s.error();
  return *g->grouping->group_of(face);
}

Result<std::size_t> regroup_library(LibraryStore& store, std::string_view library, const GroupingOptions& options,
                                    const AuditContext& ctx) {
  auto g = load_grouping(store, library, options);
  if (!g) return g.error();
  if (!g->grouping) return std::size_t{0};
  if (auto r = add_ungrouped(*g); !r) return r.error();
  if (auto r = g->grouping->regroup(); !r) return r.error();
  return save_changes(store, library, *g, ctx);
}

Result<LibraryMatch> find_person(const Engine& engine, LibraryStore& store, std::string_view library,
                                 std::span<const std::uint8_t> probe, float threshold, const LibraryOptions& options,
                                 const AuditContext& ctx) {
  if (auto c = check_audit_context(ctx, true); !c) return c.error();
  auto found = find_photo_faces(engine, probe, options.limits, options.min_face_fraction);
  if (!found) return found.error();
  const Face* probe_face = primary_face(found->faces);
  if (probe_face == nullptr) return Error{ErrorCode::kNoFace, "the probe photo shows no face"};
  auto faces = store.list_faces(library, true);
  if (!faces) return faces.error();
  LibraryMatch out;
  std::vector<std::pair<float, std::int64_t>> scored;
  std::set<std::int64_t> groups;
  for (const LibraryFace& f : *faces) {
    if (f.embedding.size() != probe_face->embedding.size()) continue;
    const float s = cosine_similarity(f.embedding, probe_face->embedding);
    out.best = std::max(out.best, s);
    if (s >= threshold) {
      scored.emplace_back(s, f.id);
      if (f.group != 0) groups.insert(f.group);
    }
  }
  std::sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  for (const auto& [s, id] : scored) out.faces.push_back(id);
  out.groups.assign(groups.begin(), groups.end());
  std::vector<std::int64_t> shown = out.faces;
  for (const LibraryFace& f : *faces) {
    if (f.group != 0 && groups.count(f.group) != 0) shown.push_back(f.id);
  }
  auto photos = store.photos_of_faces(library, shown);
  if (!photos) return photos.error();
  out.photos = std::move(*photos);
  const nlohmann::json details = {{"groups", out.groups}, {"face_ids", out.faces}, {"photos", out.photos.size()},
                                  {"threshold", threshold}};
  if (auto s = store.record_find(library, details.dump(), ctx); !s) return s.error();
  return out;
}

}  // namespace candor
