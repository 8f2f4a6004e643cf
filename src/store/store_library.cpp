// Photo libraries in the store (candor/library_store.h), written once over the
// Driver as the rest of the core is: each operation is one transaction of the
// core's (LibraryCore::write / read), so it shares the core's write lock, audit
// chain and refusal auditing.
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "candor/face.h"
#include "store_library.h"

namespace candor::store_detail {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The audit entry's collection field for a library: collection names cannot hold ':',
// so a library's entries never pass for a collection's.
std::string audit_scope(std::string_view library) { return std::string(kLibraryScopePrefix) + std::string(library); }

AuditDraft draft(std::string_view operation, std::string_view library) {
  return AuditDraft{std::string(operation), audit_scope(library), {}, "{}", "ok"};
}

constexpr std::string_view kLibraryColumns = "SELECT id, name, owner, retention_days, created_at FROM libraries";
constexpr std::string_view kPhotoColumns =
    "SELECT id, path, sha256, size, mtime, status, faces, error FROM library_photos";
constexpr std::size_t kMaxLabelBytes = 256;

PhotoLibrary library_from(const Rows& r, std::size_t i) {
  return PhotoLibrary{r.int64(i, 0), r.text(i, 1), r.text(i, 2), static_cast<int>(r.int64(i, 3)), from_ms(r.int64(i, 4))};
}

LibraryPhoto photo_from(const Rows& r, std::size_t i) {
  return LibraryPhoto{r.int64(i, 0), r.text(i, 1), r.text(i, 2), r.int64(i, 3), r.int64(i, 4),
                      r.text(i, 5) == "ingested", static_cast<int>(r.int64(i, 6)), r.text(i, 7)};
}

std::string_view kind_name(LibraryCorrection::Kind k) {
  return k == LibraryCorrection::Kind::kMustLink ? "must_link" : "cannot_link";
}

// Labels and flags of numbers no active face holds any more.
std::int64_t drop_unused_groups(Driver& db, const PhotoLibrary& lib) {
  return db.run("DELETE FROM library_groups WHERE library_id = $1 AND number NOT IN (SELECT group_number FROM"
                " library_faces WHERE library_id = $1 AND state = 'active' AND group_number IS NOT NULL)",
                Params().add(lib.id))
      .affected();
}

}  // namespace

std::vector<AuditDraft> expire_library_faces(Driver& db, TimePoint now, std::int64_t& expired) {
  std::vector<AuditDraft> out;
  std::vector<PhotoLibrary> libraries;
  {
    const Rows r = db.run(std::string(kLibraryColumns) + " ORDER BY id");
    for (std::size_t i = 0; i < r.size(); ++i) libraries.push_back(library_from(r, i));
  }
  for (const PhotoLibrary& lib : libraries) {
    const std::int64_t cutoff = ms(now) - static_cast<std::int64_t>(lib.retention_days) * kMsPerDay;
    const std::vector<std::int64_t> ids =
        ids_of(db.run("SELECT id FROM library_faces WHERE library_id = $1 AND state = 'active' AND created_at < $2"
                      " ORDER BY id",
                      Params().add(lib.id).add(cutoff)));
    if (ids.empty()) continue;
    const std::string in_ids(db.in_ids_at_1());
    const std::int64_t corrections =
        db.run("DELETE FROM library_corrections WHERE face_a " + in_ids + " OR face_b " + in_ids, Params().add_ids(ids))
            .affected();
    db.run("DELETE FROM library_faces WHERE id " + in_ids, Params().add_ids(ids));
    const std::int64_t photos =
        db.run("DELETE FROM library_photos WHERE library_id = $1 AND faces > 0 AND NOT EXISTS"
               " (SELECT 1 FROM library_faces f WHERE f.photo_id = library_photos.id)",
               Params().add(lib.id))
            .affected();
    const std::int64_t labels = drop_unused_groups(db, lib);
    expired += static_cast<std::int64_t>(ids.size());
    AuditDraft d = draft("library_retention_purge", lib.name);
    d.details = dump(json{{"library_id", lib.id}, {"face_ids", ids}, {"photos_deleted", photos},
                          {"corrections_deleted", corrections}, {"groups_deleted", labels},
                          {"retention_days", lib.retention_days}, {"as_of", ms(now)}});
    out.push_back(std::move(d));
  }
  return out;
}

std::string library_template_ad(std::int64_t library_id, std::string_view library_name, std::int64_t face,
                                std::string_view model_id) {
  return template_ad(library_id, audit_scope(library_name), face, "", model_id);
}

std::int64_t reseal_library_templates(Driver& db, const TemplateCipher& from, const TemplateCipher& to) {
  const Rows r = db.run(
      "SELECT f.id, f.dim, f.model_id, f.template, l.id, l.name FROM library_faces f"
      " JOIN libraries l ON l.id = f.library_id WHERE f.template IS NOT NULL ORDER BY f.id");
  for (std::size_t i = 0; i < r.size(); ++i) {
    const std::int64_t face = r.int64(i, 0);
    const std::string ad = library_template_ad(r.int64(i, 4), r.text(i, 5), face, r.text(i, 2));
    const auto dim = static_cast<std::size_t>(std::max<std::int64_t>(r.int64(i, 1), 0));
    auto plain = from.open(r.bytes(i, 3), ad, dim);
    if (!plain) fail(ErrorCode::kIntegrityError, "library face " + std::to_string(face) + ": " + plain.error().message);
    db.defer("UPDATE library_faces SET template = $1 WHERE id = $2",
             Params().add_bytes(to.seal(*plain, ad)).add(face));
  }
  return static_cast<std::int64_t>(r.size());
}

namespace {

class LibraryStoreImpl final : public LibraryStore {
 public:
  explicit LibraryStoreImpl(LibraryCore& core) : core_(core) {}

  Result<PhotoLibrary> create_library(const NewPhotoLibrary& spec, const AuditContext& ctx) override {
    PhotoLibrary out;
    auto s = core_.write(ctx, draft("library_create", spec.name), [&](Driver& db, AuditDraft& audit) {
      require_name(spec.name);
      require_text(spec.owner, "owner");
      if (spec.retention_days < 1 || spec.retention_days > kMaxRetentionDays) {
        fail(ErrorCode::kInvalidArgument, "retention_days must be 1.." + std::to_string(kMaxRetentionDays));
      }
      if (!db.run("SELECT 1 FROM libraries WHERE name = $1", Params().add(spec.name)).empty()) {
        fail(ErrorCode::kAlreadyExists, "library '" + spec.name + "' already exists");
      }
      db.defer("INSERT INTO libraries (name, owner, retention_days, created_at) VALUES ($1, $2, $3, $4)",
               Params().add(spec.name).add(spec.owner).add(spec.retention_days).add(ms(core_.now())));
      out = find(db, spec.name).value();
      audit.details = dump(json{{"library_id", out.id}, {"retention_days", out.retention_days}});
    });
    if (!s) return s.error();
    return out;
  }

  Result<PhotoLibrary> get_library(std::string_view name) override {
    PhotoLibrary out;
    auto s = core_.read([&](Driver& db) { out = require(db, name); });
    if (!s) return s.error();
    return out;
  }

  Result<std::vector<PhotoLibrary>> list_libraries() override {
    std::vector<PhotoLibrary> out;
    auto s = core_.read([&](Driver& db) {
      const Rows r = db.run(std::string(kLibraryColumns) + " ORDER BY name");
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(library_from(r, i));
    });
    if (!s) return s.error();
    return out;
  }

  Result<std::vector<LibraryPhoto>> list_photos(std::string_view library) override {
    std::vector<LibraryPhoto> out;
    auto s = core_.read([&](Driver& db) {
      const PhotoLibrary lib = require(db, library);
      const Rows r = db.run(std::string(kPhotoColumns) + " WHERE library_id = $1 ORDER BY id", Params().add(lib.id));
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(photo_from(r, i));
    });
    if (!s) return s.error();
    return out;
  }

  Result<AddedPhoto> add_photo(std::string_view library, const LibraryPhoto& photo,
                               const std::vector<NewLibraryFace>& faces, const AuditContext& ctx) override {
    AddedPhoto out;
    auto s = core_.write(ctx, draft("library_add_photo", library), [&](Driver& db, AuditDraft& audit) {
      validate_photo(photo, faces);
      const PhotoLibrary lib = require(db, library);
      if (!faces.empty()) require_same_model(db, lib, faces.front());
      // Faces of this photo's content that the owner had forgotten stay forgotten.
      std::vector<Box> forgotten;
      {
        const Rows r = db.run("SELECT box_x, box_y, box_w, box_h FROM library_faces WHERE library_id = $1"
                              " AND photo_sha256 = $2 AND state = 'forgotten'",
                              Params().add(lib.id).add(photo.sha256));
        for (std::size_t i = 0; i < r.size(); ++i) {
          forgotten.push_back(Box{static_cast<float>(r.dbl(i, 0)), static_cast<float>(r.dbl(i, 1)),
                                  static_cast<float>(r.dbl(i, 2)), static_cast<float>(r.dbl(i, 3))});
        }
      }
      std::vector<const NewLibraryFace*> kept;
      for (const NewLibraryFace& f : faces) {
        const Box b{f.box.x, f.box.y, f.box.w, f.box.h};
        const bool was_forgotten =
            std::any_of(forgotten.begin(), forgotten.end(), [&](const Box& g) { return iou(b, g) >= kForgottenIou; });
        if (was_forgotten) ++out.suppressed;
        else kept.push_back(&f);
      }
      const std::int64_t now = ms(core_.now());
      const std::string status = photo.ingested ? "ingested" : "failed";
      // A file at a path already recorded changed: the row is updated in place and its
      // active faces go (forgotten ones stay: they are markers of their own content).
      const Rows existing = db.run("SELECT id FROM library_photos WHERE library_id = $1 AND path = $2",
                                   Params().add(lib.id).add(photo.path));
      std::int64_t replaced_faces = 0;
      if (!existing.empty()) {
        out.photo = existing.int64(0, 0);
        replaced_faces = db.run("DELETE FROM library_faces WHERE photo_id = $1 AND state = 'active'",
                                Params().add(out.photo))
                             .affected();
        db.defer("UPDATE library_photos SET sha256 = $1, size = $2, mtime = $3, status = $4, faces = $5, error = $6,"
                 " added_at = $7 WHERE id = $8",
                 Params().add(photo.sha256).add(photo.size).add(photo.mtime).add(status).add(kept.size())
                     .add(photo.error).add(now).add(out.photo));
      } else {
        const Rows r = db.run("INSERT INTO library_photos (library_id, path, sha256, size, mtime, status, faces, error,"
                              " added_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                              Params().add(lib.id).add(photo.path).add(photo.sha256).add(photo.size).add(photo.mtime)
                                  .add(status).add(kept.size()).add(photo.error).add(now));
        if (r.empty()) fail(ErrorCode::kStoreError, "the new photo's id was not returned");
        out.photo = r.int64(0, 0);
      }
      if (!kept.empty()) {
        // The id is part of the associated data: drawn first, then sealed with.
        const Rows ids = db.reserve_ids("library_faces", static_cast<std::int64_t>(kept.size())).rows();
        if (ids.size() != kept.size()) fail(ErrorCode::kStoreError, "the face id sequence handed out too few ids");
        std::vector<Params> rows;
        for (std::size_t i = 0; i < kept.size(); ++i) {
          const NewLibraryFace& f = *kept[i];
          const std::int64_t id = ids.int64(i, 0);
          rows.push_back(Params().add(id).add(lib.id).add(out.photo).add(photo.sha256)
                             .add(static_cast<double>(f.box.x)).add(static_cast<double>(f.box.y))
                             .add(static_cast<double>(f.box.w)).add(static_cast<double>(f.box.h))
                             .add(static_cast<double>(f.detector_score)).add(f.embedding.size()).add(f.model_id)
                             .add_bytes(core_.cipher().seal(f.embedding,
                                                            library_template_ad(lib.id, lib.name, id, f.model_id)))
                             .add("active")
                             .add(now)
                             .add(static_cast<double>(f.template_norm)));
          out.faces.push_back(id);
        }
        // The photo's faces in one statement, as enroll writes a batch (Driver::defer_insert).
        db.defer_insert("library_faces (id, library_id, photo_id, photo_sha256, box_x, box_y, box_w, box_h,"
                        " detector_score, dim, model_id, template, state, created_at, template_norm)",
                        rows);
      }
      audit.details = dump(json{{"library_id", lib.id}, {"photo_id", out.photo}, {"status", status},
                                {"face_ids", out.faces}, {"faces_suppressed", out.suppressed},
                                {"faces_replaced", replaced_faces}});
    });
    if (!s) return s.error();
    return out;
  }

  Result<std::vector<LibraryFace>> list_faces(std::string_view library, bool with_templates,
                                              bool with_forgotten) override {
    std::vector<LibraryFace> out;
    auto s = core_.read([&](Driver& db) {
      const PhotoLibrary lib = require(db, library);
      const Rows r = db.run(
          std::string("SELECT id, photo_id, box_x, box_y, box_w, box_h, dim, model_id, ") +
              (with_templates ? "template" : "NULL") +
              ", group_number, state, template_norm FROM library_faces WHERE library_id = $1" +
              (with_forgotten ? "" : " AND state = 'active'") + " ORDER BY id",
          Params().add(lib.id));
      for (std::size_t i = 0; i < r.size(); ++i) {
        LibraryFace f;
        f.id = r.int64(i, 0);
        f.photo = r.int64(i, 1);
        f.box = FaceBox{static_cast<float>(r.dbl(i, 2)), static_cast<float>(r.dbl(i, 3)),
                        static_cast<float>(r.dbl(i, 4)), static_cast<float>(r.dbl(i, 5))};
        f.group = r.is_null(i, 9) ? 0 : r.int64(i, 9);
        f.forgotten = r.text(i, 10) == "forgotten";
        f.template_norm = static_cast<float>(r.dbl(i, 11));
        if (with_templates && !f.forgotten) {
          const auto dim = static_cast<std::size_t>(std::max<std::int64_t>(r.int64(i, 6), 0));
          auto plain = core_.cipher().open(r.bytes(i, 8), library_template_ad(lib.id, lib.name, f.id, r.text(i, 7)), dim);
          if (!plain) fail(ErrorCode::kIntegrityError, "library face " + std::to_string(f.id) + ": " + plain.error().message);
          f.embedding = std::move(plain).value();
        }
        out.push_back(std::move(f));
      }
    });
    if (!s) return s.error();
    return out;
  }

  Result<LibraryFace> find_face(std::string_view library, std::int64_t face) override {
    LibraryFace f;
    bool found = false;
    auto s = core_.read([&](Driver& db) {
      const PhotoLibrary lib = require(db, library);
      const Rows r = db.run(
          "SELECT id, photo_id, box_x, box_y, box_w, box_h, group_number FROM library_faces"
          " WHERE id = $1 AND library_id = $2 AND state = 'active'",
          Params().add(face).add(lib.id));
      if (r.size() == 0) return;
      found = true;
      f.id = r.int64(0, 0);
      f.photo = r.int64(0, 1);
      f.box = FaceBox{static_cast<float>(r.dbl(0, 2)), static_cast<float>(r.dbl(0, 3)), static_cast<float>(r.dbl(0, 4)),
                      static_cast<float>(r.dbl(0, 5))};
      f.group = r.is_null(0, 6) ? 0 : r.int64(0, 6);
    });
    if (!s) return s.error();
    if (!found) return Error{ErrorCode::kNotFound, "library '" + std::string(library) + "' has no face " + std::to_string(face)};
    return f;
  }

  Status save_groups(std::string_view library, const std::map<std::int64_t, std::int64_t>& groups,
                     const AuditContext& ctx) override {
    return core_.write(ctx, draft("library_group", library), [&](Driver& db, AuditDraft& audit) {
      const PhotoLibrary lib = require(db, library);
      std::set<std::int64_t> numbers;
      for (const auto& [face, group] : groups) {
        if (group <= 0) fail(ErrorCode::kInvalidArgument, "group numbers are > 0");
        numbers.insert(group);
        db.defer("UPDATE library_faces SET group_number = $1 WHERE id = $2 AND library_id = $3",
                 Params().add(group).add(face).add(lib.id));
      }
      const std::int64_t dropped = drop_unused_groups(db, lib);
      audit.details = dump(json{{"library_id", lib.id}, {"faces_moved", groups.size()},
                                {"groups_touched", numbers.size()}, {"labels_dropped", dropped}});
    });
  }

  Result<std::vector<LibraryGroup>> list_groups(std::string_view library) override {
    std::vector<LibraryGroup> out;
    auto s = core_.read([&](Driver& db) {
      const PhotoLibrary lib = require(db, library);
      const Rows counts = db.run(
          "SELECT group_number, COUNT(*), COUNT(DISTINCT photo_id) FROM library_faces WHERE library_id = $1"
          " AND state = 'active' AND group_number IS NOT NULL GROUP BY group_number",
          Params().add(lib.id));
      const Rows set = db.run("SELECT number, label, hidden FROM library_groups WHERE library_id = $1", Params().add(lib.id));
      std::map<std::int64_t, std::pair<std::string, bool>> labels;
      for (std::size_t i = 0; i < set.size(); ++i) {
        labels[set.int64(i, 0)] = {set.is_null(i, 1) ? "" : set.text(i, 1), set.int64(i, 2) != 0};
      }
      for (std::size_t i = 0; i < counts.size(); ++i) {
        LibraryGroup g{counts.int64(i, 0), "", false, counts.int64(i, 1), counts.int64(i, 2)};
        if (auto it = labels.find(g.number); it != labels.end()) std::tie(g.label, g.hidden) = it->second;
        out.push_back(std::move(g));
      }
      std::sort(out.begin(), out.end(), [](const LibraryGroup& a, const LibraryGroup& b) {
        return a.faces != b.faces ? a.faces > b.faces : a.number < b.number;
      });
    });
    if (!s) return s.error();
    return out;
  }

  Status set_group_label(std::string_view library, std::int64_t group, std::string_view label,
                         const AuditContext& ctx) override {
    return core_.write(ctx, draft("library_name_group", library), [&](Driver& db, AuditDraft& audit) {
      if (label.size() > kMaxLabelBytes) fail(ErrorCode::kInvalidArgument, "a label is at most 256 bytes");
      const PhotoLibrary lib = require(db, library);
      require_group(db, lib, group);
      db.defer("INSERT INTO library_groups (library_id, number, label, hidden) VALUES ($1, $2, $3, 0)"
               " ON CONFLICT (library_id, number) DO UPDATE SET label = excluded.label",
               Params().add(lib.id).add(group).add(label.empty() ? std::nullopt : std::optional<std::string>(label)));
      // The label names a person: the entry says that a name was set, not which.
      audit.details = dump(json{{"library_id", lib.id}, {"group", group}, {"named", !label.empty()}});
    });
  }

  Status set_group_hidden(std::string_view library, std::int64_t group, bool hidden, const AuditContext& ctx) override {
    return core_.write(ctx, draft("library_hide_group", library), [&](Driver& db, AuditDraft& audit) {
      const PhotoLibrary lib = require(db, library);
      require_group(db, lib, group);
      db.defer("INSERT INTO library_groups (library_id, number, label, hidden) VALUES ($1, $2, NULL, $3)"
               " ON CONFLICT (library_id, number) DO UPDATE SET hidden = excluded.hidden",
               Params().add(lib.id).add(group).add(hidden ? 1 : 0));
      audit.details = dump(json{{"library_id", lib.id}, {"group", group}, {"hidden", hidden}});
    });
  }

  Status add_corrections(std::string_view library, std::span<const LibraryCorrection> corrections,
                         const AuditContext& ctx) override {
    return replace_must_links(library, 0, corrections, ctx);
  }

  Status replace_must_links(std::string_view library, std::int64_t face, std::span<const LibraryCorrection> then_add,
                            const AuditContext& ctx) override {
    return core_.write(ctx, draft("library_correct", library), [&](Driver& db, AuditDraft& audit) {
      const PhotoLibrary lib = require(db, library);
      std::vector<std::int64_t> named;
      for (const LibraryCorrection& c : then_add) {
        if (c.a == c.b) fail(ErrorCode::kInvalidArgument, "a correction names face " + std::to_string(c.a) + " twice");
        named.push_back(c.a), named.push_back(c.b);
      }
      if (face != 0) named.push_back(face);
      std::sort(named.begin(), named.end());
      named.erase(std::unique(named.begin(), named.end()), named.end());
      if (!named.empty()) {
        const Rows r = db.run("SELECT COUNT(*) FROM library_faces WHERE library_id = $2 AND id " +
                                  std::string(db.in_ids_at_1()),
                              Params().add_ids(named).add(lib.id));
        if (r.int64(0, 0) != static_cast<std::int64_t>(named.size())) {
          fail(ErrorCode::kInvalidArgument, "a correction names a face that is not of library '" + lib.name + "'");
        }
      }
      std::int64_t unlinked = 0;
      if (face != 0) {
        unlinked = db.run("DELETE FROM library_corrections WHERE library_id = $1 AND kind = 'must_link'"
                          " AND (face_a = $2 OR face_b = $2)",
                          Params().add(lib.id).add(face))
                       .affected();
      }
      const std::int64_t now = ms(core_.now());
      for (const LibraryCorrection& c : then_add) {
        db.defer("INSERT INTO library_corrections (library_id, kind, face_a, face_b, created_at) VALUES ($1, $2, $3, $4, $5)",
                 Params().add(lib.id).add(kind_name(c.kind)).add(c.a).add(c.b).add(now));
      }
      json added = json::array();
      for (const LibraryCorrection& c : then_add) added.push_back({kind_name(c.kind), c.a, c.b});
      audit.details = dump(json{{"library_id", lib.id}, {"added", added}, {"must_links_removed", unlinked}});
    });
  }

  Result<std::vector<LibraryCorrection>> list_corrections(std::string_view library) override {
    std::vector<LibraryCorrection> out;
    auto s = core_.read([&](Driver& db) {
      const PhotoLibrary lib = require(db, library);
      const Rows r = db.run("SELECT kind, face_a, face_b FROM library_corrections WHERE library_id = $1 ORDER BY id",
                            Params().add(lib.id));
      for (std::size_t i = 0; i < r.size(); ++i) {
        out.push_back(LibraryCorrection{r.text(i, 0) == "must_link" ? LibraryCorrection::Kind::kMustLink
                                                                    : LibraryCorrection::Kind::kCannotLink,
                                        r.int64(i, 1), r.int64(i, 2)});
      }
    });
    if (!s) return s.error();
    return out;
  }

  Result<std::vector<LibraryPhoto>> photos_of_faces(std::string_view library, std::span<const std::int64_t> faces) override {
    std::vector<LibraryPhoto> out;
    auto s = core_.read([&](Driver& db) {
      const PhotoLibrary lib = require(db, library);
      if (faces.empty()) return;
      std::vector<std::int64_t> ids(faces.begin(), faces.end());
      const Rows r = db.run(std::string(kPhotoColumns) + " WHERE library_id = $2 AND id IN (SELECT photo_id FROM"
                                " library_faces WHERE id " + std::string(db.in_ids_at_1()) + ") ORDER BY id",
                            Params().add_ids(ids).add(lib.id));
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(photo_from(r, i));
    });
    if (!s) return s.error();
    return out;
  }

  Status record_find(std::string_view library, std::string_view details_json, const AuditContext& ctx) override {
    return core_.write(ctx, draft("library_find", library), [&](Driver& db, AuditDraft& audit) {
      require_text(ctx.reason, "reason (every search states why)");
      const PhotoLibrary lib = require(db, library);
      json d = json::parse(compact_json(details_json, "details_json"));
      d["library_id"] = lib.id;
      audit.details = dump(d);
      charge_search(db, ctx.actor, ms(core_.now()));  // a 1:N search of the library: the key's budget counts it
    });
  }

  Status record_find_refused(std::string_view library, std::string_view window, const AuditContext& ctx) override {
    AuditDraft refused = draft("library_find", library);
    refused.result = "refused: rate_limited";
    return core_.write(ctx, std::move(refused), [&](Driver& db, AuditDraft& audit) {
      require_text(ctx.reason, "reason (every search states why)");
      const PhotoLibrary lib = require(db, library);
      audit.details = dump(json{{"library_id", lib.id}, {"window", std::string(window)}});
    });
  }

  Result<std::vector<std::int64_t>> forget_group(std::string_view library, std::int64_t group,
                                                 const AuditContext& ctx) override {
    std::vector<std::int64_t> ids;
    auto s = core_.write(ctx, draft("library_forget", library), [&](Driver& db, AuditDraft& audit) {
      require_text(ctx.reason, "reason (why the person is forgotten)");
      const PhotoLibrary lib = require(db, library);
      require_group(db, lib, group);
      ids = ids_of(db.run("SELECT id FROM library_faces WHERE library_id = $1 AND state = 'active' AND group_number = $2"
                          " ORDER BY id",
                          Params().add(lib.id).add(group)));
      db.defer("UPDATE library_faces SET template = NULL, state = 'forgotten', group_number = NULL WHERE id " +
                   std::string(db.in_ids_at_1()),
               Params().add_ids(ids));
      const std::int64_t corrections =
          db.run("DELETE FROM library_corrections WHERE face_a " + std::string(db.in_ids_at_1()) + " OR face_b " +
                     std::string(db.in_ids_at_1()),
                 Params().add_ids(ids))
              .affected();
      db.defer("DELETE FROM library_groups WHERE library_id = $1 AND number = $2", Params().add(lib.id).add(group));
      audit.details = dump(json{{"library_id", lib.id}, {"group", group}, {"face_ids", ids},
                                {"corrections_deleted", corrections}});
    });
    if (!s) return s.error();
    return ids;
  }

  Result<LibraryErasure> delete_library(std::string_view name, const AuditContext& ctx) override {
    LibraryErasure out;
    auto s = core_.write(ctx, draft("library_delete", name), [&](Driver& db, AuditDraft& audit) {
      require_text(ctx.reason, "reason (why the library is deleted)");
      const PhotoLibrary lib = require(db, name);
      const Params p = Params().add(lib.id);
      out.corrections = db.run("DELETE FROM library_corrections WHERE library_id = $1", p).affected();
      out.groups = db.run("DELETE FROM library_groups WHERE library_id = $1", p).affected();
      out.faces = db.run("DELETE FROM library_faces WHERE library_id = $1", p).affected();
      out.photos = db.run("DELETE FROM library_photos WHERE library_id = $1", p).affected();
      db.defer("DELETE FROM libraries WHERE id = $1", p);
      audit.details = dump(json{{"library_id", lib.id}, {"photos_deleted", out.photos}, {"faces_deleted", out.faces},
                                {"groups_deleted", out.groups}, {"corrections_deleted", out.corrections}});
    });
    if (!s) return s.error();
    return out;
  }

 private:
  static void require_name(std::string_view name) {
    if (!is_valid_collection_name(name)) fail(ErrorCode::kInvalidArgument, "library name must match [a-z0-9_-]{1,64}");
  }

  static std::optional<PhotoLibrary> find(Driver& db, std::string_view name) {
    const Rows r = db.run(std::string(kLibraryColumns) + " WHERE name = $1", Params().add(name));
    if (r.empty()) return std::nullopt;
    return library_from(r, 0);
  }

  static PhotoLibrary require(Driver& db, std::string_view name) {
    require_name(name);
    auto lib = find(db, name);
    if (!lib) fail(ErrorCode::kNotFound, "no library named '" + std::string(name) + "'");
    return *lib;
  }

  static void require_group(Driver& db, const PhotoLibrary& lib, std::int64_t group) {
    if (db.run("SELECT 1 FROM library_faces WHERE library_id = $1 AND state = 'active' AND group_number = $2",
               Params().add(lib.id).add(group))
            .empty()) {
      fail(ErrorCode::kNotFound, "library '" + lib.name + "' has no group " + std::to_string(group));
    }
  }

  // The checks enroll() makes of its faces (validate_faces), and the photo's own.
  static void validate_photo(const LibraryPhoto& photo, const std::vector<NewLibraryFace>& faces) {
    if (!is_sha256_hex(photo.sha256)) fail(ErrorCode::kInvalidArgument, "a photo's sha256 must be 64 lower-case hex digits");
    require_text(photo.path, "path", 4096);
    if (photo.error.size() > kMaxTextBytes) fail(ErrorCode::kInvalidArgument, "a photo's error is at most 1024 bytes");
    if (faces.empty()) return;
    std::vector<NewFace> as_faces;
    for (const NewLibraryFace& f : faces) {
      if (!std::isfinite(f.template_norm) || f.template_norm < 0) {
        fail(ErrorCode::kInvalidArgument, "a face's template_norm must be finite and >= 0");
      }
      NewFace n;
      n.embedding = f.embedding;
      n.box = f.box;
      n.detector_score = f.detector_score;
      n.image_sha256 = photo.sha256;
      n.model_id = f.model_id;
      as_faces.push_back(std::move(n));
    }
    validate_faces(as_faces);
  }

  static void require_same_model(Driver& db, const PhotoLibrary& lib, const NewLibraryFace& face) {
    const Rows r = db.run("SELECT model_id, dim FROM library_faces WHERE library_id = $1 AND state = 'active' LIMIT 1",
                          Params().add(lib.id));
    if (!r.empty() && (r.text(0, 0) != face.model_id || r.int64(0, 1) != static_cast<std::int64_t>(face.embedding.size()))) {
      fail(ErrorCode::kInvalidArgument, "library '" + lib.name + "' holds " + std::to_string(r.int64(0, 1)) +
                                            "-d templates from model '" + r.text(0, 0) +
                                            "'; templates from another model cannot be mixed in");
    }
  }

  LibraryCore& core_;
};

}  // namespace

std::unique_ptr<LibraryStore> make_library_store(LibraryCore& core) { return std::make_unique<LibraryStoreImpl>(core); }

}  // namespace candor::store_detail
