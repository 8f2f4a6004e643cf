// Thumbnails cut from the owner's photos when shown, and the HTML report of a library
// (candor/photo_library.h).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/crypto.h"
#include "candor/photo_library.h"
#include "photo_digest.h"

namespace candor {
namespace {

enum class Unavailable { kNone, kMissing, kChanged, kUndecodable };

struct LoadedPhoto {
  cv::Mat image;
  Unavailable why = Unavailable::kNone;
  Error error{ErrorCode::kInternal, ""};  // when why != kNone
};

// The photo as it was ingested, or why not. Its bytes are read once and hashed before
// anything decodes them: pixels only ever come from the content the store recorded.
LoadedPhoto load_photo(const LibraryPhoto& photo, const ImageLimits& limits) {
  LoadedPhoto out;
  auto bytes = read_file_bytes(photo.path, limits.max_bytes);
  if (!bytes) {
    out.why = bytes.error().code == ErrorCode::kImageTooLarge ? Unavailable::kChanged : Unavailable::kMissing;
  } else if (photo_digest(*bytes) != photo.sha256) {
    out.why = Unavailable::kChanged;
  } else if (auto image = decode_image(*bytes, limits); !image) {
    out.why = Unavailable::kUndecodable;
    out.error = image.error();
  } else {
    out.image = std::move(*image);
  }
  const std::string which = "photo " + std::to_string(photo.id);  // never the path: it may name people
  if (out.why == Unavailable::kMissing) out.error = {ErrorCode::kNotFound, which + " is no longer at its recorded path"};
  if (out.why == Unavailable::kChanged) out.error = {ErrorCode::kNotFound, which + " has changed since it was added"};
  return out;
}

// HTML text and attribute values (the five characters HTML gives meaning to).
std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string face_file(std::int64_t face) { return "face-" + std::to_string(face) + ".jpg"; }

Status write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Error{ErrorCode::kIoError, "cannot write " + path.string()};
  return ok_status();
}

Status write_bytes(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
  return write_text(path, std::string(bytes.begin(), bytes.end()));
}

// The page's head: no script may run (default-src 'none'), images only from beside it.
constexpr const char* kHead = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
section{margin-bottom:1.5em}
h2{font-size:1.1em;margin:.3em 0}
.count{color:#666;font-weight:normal}
.grid{display:flex;flex-wrap:wrap;gap:4px}
.grid img{width:96px;height:96px;border-radius:4px}
.note{color:#666}
</style>
)";

}  // namespace

std::vector<std::uint8_t> face_thumbnail_jpeg(const cv::Mat& photo, const FaceBox& box, const ThumbnailOptions& options) {
  if (photo.empty() || photo.type() != CV_8UC3) throw std::invalid_argument("face_thumbnail_jpeg: photo must be CV_8UC3");
  if (options.size < 16 || options.size > 1024) throw std::invalid_argument("face_thumbnail_jpeg: size must be 16..1024");
  const double side = std::max<double>({box.w, box.h, 1.0}) * (1.0 + 2.0 * std::max(0.0F, options.margin));
  const double cx = box.x + box.w / 2.0, cy = box.y + box.h / 2.0;
  const int s = std::max(1, static_cast<int>(std::lround(side)));
  const cv::Rect square(static_cast<int>(std::lround(cx - side / 2)), static_cast<int>(std::lround(cy - side / 2)), s, s);
  const cv::Rect inside = square & cv::Rect(0, 0, photo.cols, photo.rows);
  cv::Mat canvas(s, s, CV_8UC3, cv::Scalar(128, 128, 128));
  if (!inside.empty()) photo(inside).copyTo(canvas(inside - square.tl()));
  cv::Mat small;
  cv::resize(canvas, small, cv::Size(options.size, options.size), 0, 0, s > options.size ? cv::INTER_AREA : cv::INTER_LINEAR);
  std::vector<std::uint8_t> jpeg;
  cv::imencode(".jpg", small, jpeg, {cv::IMWRITE_JPEG_QUALITY, std::clamp(options.jpeg_quality, 1, 100)});
  return jpeg;
}

Result<std::vector<std::uint8_t>> library_face_thumbnail(LibraryStore& store, std::string_view library,
                                                         std::int64_t face, const ThumbnailOptions& options) {
  auto found = store.find_face(library, face);
  if (!found) return found.error();
  const std::int64_t ids[] = {face};
  auto photos = store.photos_of_faces(library, ids);
  if (!photos) return photos.error();
  if (photos->empty()) return Error{ErrorCode::kNotFound, "the photo of face " + std::to_string(face) + " is not recorded"};
  LoadedPhoto loaded = load_photo(photos->front(), options.limits);
  if (loaded.why != Unavailable::kNone) return loaded.error;
  return face_thumbnail_jpeg(loaded.image, found->box, options);
}

Result<LibraryReportSummary> write_library_report(LibraryStore& store, std::string_view library,
                                                  const std::filesystem::path& out_dir, const ThumbnailOptions& options) {
  auto lib = store.get_library(library);
  if (!lib) return lib.error();
  auto groups = store.list_groups(library);
  if (!groups) return groups.error();
  auto faces = store.list_faces(library, false);
  if (!faces) return faces.error();
  auto photos = store.list_photos(library);
  if (!photos) return photos.error();
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Error{ErrorCode::kIoError, "cannot create " + out_dir.string() + ": " + ec.message()};

  LibraryReportSummary summary;
  std::set<std::int64_t> hidden;
  for (const LibraryGroup& g : *groups) {
    if (g.hidden) hidden.insert(g.number), ++summary.hidden_groups;
  }
  // The faces shown, by photo (each photo read and decoded once) and by group (page order).
  std::map<std::int64_t, std::vector<const LibraryFace*>> by_photo, by_group;
  for (const LibraryFace& f : *faces) {
    if (f.forgotten || hidden.count(f.group) != 0) continue;
    by_photo[f.photo].push_back(&f);
    by_group[f.group].push_back(&f);
  }
  std::map<std::int64_t, const LibraryPhoto*> photo_of;
  for (const LibraryPhoto& p : *photos) photo_of[p.id] = &p;

  std::set<std::int64_t> written;
  for (const auto& [photo_id, shown] : by_photo) {
    const auto p = photo_of.find(photo_id);
    LoadedPhoto loaded;
    if (p == photo_of.end()) {
      loaded.why = Unavailable::kMissing;
    } else {
      loaded = load_photo(*p->second, options.limits);
    }
    if (loaded.why != Unavailable::kNone) {
      ++(loaded.why == Unavailable::kMissing   ? summary.photos_missing
         : loaded.why == Unavailable::kChanged ? summary.photos_changed
                                               : summary.photos_undecodable);
      summary.faces_skipped += shown.size();
      continue;
    }
    for (const LibraryFace* f : shown) {
      if (auto s = write_bytes(out_dir / face_file(f->id), face_thumbnail_jpeg(loaded.image, f->box, options)); !s) {
        return s.error();
      }
      written.insert(f->id);
    }
  }
  // A thumbnail of an earlier report into this folder whose face is now forgotten, hidden
  // or gone must not stay behind.
  static const std::regex kFaceFile(R"(face-[0-9]+\.jpg)");
  for (const auto& entry : std::filesystem::directory_iterator(out_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !std::regex_match(name, kFaceFile)) continue;
    if (written.count(std::stoll(name.substr(5))) == 0) std::filesystem::remove(entry.path(), ec);
  }

  std::string html = kHead;
  html += "<title>" + html_escape(lib->name) + " \xE2\x80\x94 Candor library</title></head><body>\n";
  html += "<h1>Library " + html_escape(lib->name) + "</h1>\n<p class=\"note\">Owner: " + html_escape(lib->owner) +
          ". Thumbnails are cut from the photos at their recorded paths; Candor stores no image.</p>\n";
  const auto section = [&](const std::string& id, const std::string& title, const std::vector<const LibraryFace*>& members) {
    std::size_t shown = 0;
    std::string grid;
    for (const LibraryFace* f : members) {
      if (written.count(f->id) == 0) continue;
      ++shown;
      const auto p = photo_of.find(f->photo);
      const std::string file = p == photo_of.end() ? "" : std::filesystem::path(p->second->path).filename().string();
      grid += "<img src=\"" + face_file(f->id) + "\" alt=\"face " + std::to_string(f->id) + "\" title=\"face " +
              std::to_string(f->id) + ", " + html_escape(file) + "\" data-face=\"" + std::to_string(f->id) + "\">";
    }
    html += "<section id=\"" + id + "\"><h2>" + title + " <span class=\"count\">" + std::to_string(members.size()) +
            (members.size() == 1 ? " face" : " faces") +
            (shown < members.size() ? ", " + std::to_string(members.size() - shown) + " not shown (photo missing or changed)" : "") +
            "</span></h2>\n<div class=\"grid\">" + grid + "</div></section>\n";
    return shown;
  };
  for (const LibraryGroup& g : *groups) {  // largest first, as list_groups orders them
    if (g.hidden) continue;
    const std::string title = g.label.empty() ? "Person " + std::to_string(g.number)
                                              : html_escape(g.label) + " <span class=\"count\">(group " +
                                                    std::to_string(g.number) + ")</span>";
    summary.faces += section("group-" + std::to_string(g.number), title, by_group[g.number]);
    ++summary.groups;
  }
  if (auto it = by_group.find(0); it != by_group.end()) {
    summary.ungrouped = section("ungrouped", "Not grouped yet", it->second);
    summary.faces += summary.ungrouped;
  }
  const std::size_t photos_skipped = summary.photos_missing + summary.photos_changed + summary.photos_undecodable;
  if (photos_skipped > 0) {
    html += "<p class=\"note\">" + std::to_string(photos_skipped) + " photo(s) skipped: " +
            std::to_string(summary.photos_missing) + " missing, " + std::to_string(summary.photos_changed) +
            " changed since they were added, " + std::to_string(summary.photos_undecodable) + " not decodable.</p>\n";
  }
  if (summary.hidden_groups > 0) {
    html += "<p class=\"note\">" + std::to_string(summary.hidden_groups) + " hidden group(s) not shown.</p>\n";
  }
  html += "</body></html>\n";
  if (auto s = write_text(out_dir / "index.html", html); !s) return s.error();
  return summary;
}

}  // namespace candor
