// candor library add | list | people | faces | name | merge | remove-face | hide | regroup |
//                find | forget | delete | report
// Thin: each command is one call of include/candor/photo_library.h or library_store.h.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "candor/json.h"
#include "candor/photo_library.h"
#include "cli_context.h"
#include "store_args.h"

namespace candor::cli {
namespace {

using json = nlohmann::json;

// Runs `body` with the store opened (defaults filled in), mapping errors to exit status 1.
template <typename Body>
std::function<void()> with_store(CliContext& ctx, std::shared_ptr<StoreArgs> args, Body body) {
  return [&ctx, args, body] {
    if (args->store.empty()) args->store = default_store();
    if (args->actor.empty()) args->actor = default_actor();
    auto store = open_cli_store(*args);
    if (!store) {
      ctx.exit_code = fail(store.error());
      return;
    }
    ctx.exit_code = body((*store)->library());
  };
}

json photo_to_json(const LibraryPhoto& p) {
  json j = {{"photo_id", p.id}, {"path", p.path}, {"faces", p.faces}};
  if (!p.ingested) j["error"] = p.error;
  return j;
}

struct AddArgs {
  std::string library, owner;
  std::vector<std::string> dirs;
  int workers = 0;
  int retention_days = NewPhotoLibrary{}.retention_days;
  double min_face = LibraryOptions{}.min_face_fraction;
};

int run_add(CliContext& ctx, LibraryStore& store, const StoreArgs& a, const AddArgs& args) {
  if (!store.get_library(args.library)) {
    NewPhotoLibrary spec{args.library, args.owner.empty() ? a.actor : args.owner, args.retention_days};
    if (auto created = store.create_library(spec, {a.actor, ""}); !created) return fail(created.error());
  }
  const std::vector<std::filesystem::path> dirs(args.dirs.begin(), args.dirs.end());
  auto files = library_image_files(dirs);
  if (!files) return fail(files.error());
  LibraryOptions options;
  options.limits = ctx.limits;
  options.min_face_fraction = args.min_face;
  options.workers = ctx.prepare_workers(args.workers, files->size());
  const ProgressLine progress(files->size());
  options.progress = [&progress](const IngestProgress& p) {
    char tail[160];
    std::snprintf(tail, sizeof tail, "%.1f photos/s, %zu faces, %zu unchanged, %zu failed",
                  static_cast<double>(p.ingested + p.failed) / std::max(p.seconds, 1e-9), p.faces, p.unchanged, p.failed);
    progress.show(p.done, tail);
  };
  auto report = ingest_photos(ctx.engine(), store, args.library, *files, options, {a.actor, ""});
  progress.clear();
  if (!report) return fail(report.error());
  const double analysed = static_cast<double>(report->ingested + report->failed);
  std::fprintf(stderr, "ingested %zu photos in %.1f s: %.2f photos/s (%d worker%s), %zu faces\n", report->ingested,
               report->seconds, analysed / std::max(report->seconds, 1e-9), options.workers,
               options.workers == 1 ? "" : "s", report->faces);
  print_json({{"library", args.library},
              {"photos", report->total},
              {"ingested", report->ingested},
              {"unchanged", report->unchanged},
              {"duplicates", report->duplicates},
              {"failed", report->failed},
              {"faces", report->faces},
              {"faces_forgotten_before", report->suppressed},
              {"faces_grouped", report->faces_grouped},
              {"groups", report->groups},
              {"seconds", report->seconds}});
  return 0;
}

}  // namespace

void register_library_commands(CLI::App& app, CliContext& ctx) {
  CLI::App* lib = app.add_subcommand("library", "Photo libraries: group the faces of your own photos into people");
  lib->require_subcommand(1);
  {
    auto a = std::make_shared<StoreArgs>();
    a->may_create = true;
    auto args = std::make_shared<AddArgs>();
    CLI::App* c = lib->add_subcommand("add", "Ingest photo folders into a library (created if new); unchanged photos are skipped");
    c->add_option("name", args->library)->required();
    c->add_option("dirs", args->dirs, "Folders of photos (searched recursively)")->required();
    c->add_option("--owner", args->owner, "Whose photos these are, for a new library (default: the actor)");
    c->add_option("--retention-days", args->retention_days, "A new library's retention term")->capture_default_str();
    c->add_option("--workers", args->workers, "Photos analysed at once (0: one per core)")->capture_default_str();
    c->add_option("--min-face", args->min_face, "Smallest face searched for, as a fraction of the short side")
        ->capture_default_str();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [&ctx, a, args](LibraryStore& s) { return run_add(ctx, s, *a, *args); }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    CLI::App* c = lib->add_subcommand("list", "List libraries");
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [](LibraryStore& s) {
      auto r = s.list_libraries();
      if (!r) return fail(r.error());
      json out = json::array();
      for (const auto& l : *r) {
        out.push_back({{"name", l.name}, {"owner", l.owner}, {"retention_days", l.retention_days},
                       {"created_at", format_time(l.created_at)}});
      }
      print_json(out);
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto all = std::make_shared<bool>(false);
    CLI::App* c = lib->add_subcommand("people", "The library's groups (people), largest first, with counts and names");
    c->add_option("name", *name)->required();
    c->add_flag("--all", *all, "Also the hidden groups");
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [name, all](LibraryStore& s) {
      auto r = s.list_groups(*name);
      if (!r) return fail(r.error());
      json out = json::array();
      for (const auto& g : *r) {
        if (g.hidden && !*all) continue;
        json j = {{"group", g.number}, {"faces", g.faces}, {"photos", g.photos}};
        j["name"] = g.label.empty() ? json(nullptr) : json(g.label);
        if (g.hidden) j["hidden"] = true;
        out.push_back(std::move(j));
      }
      print_json(out);
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto group = std::make_shared<std::int64_t>(0);
    CLI::App* c = lib->add_subcommand("faces", "The library's faces (id, photo, group), for remove-face");
    c->add_option("name", *name)->required();
    c->add_option("--group", *group, "Only this group's faces");
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [name, group](LibraryStore& s) {
      auto faces = s.list_faces(*name, false);
      if (!faces) return fail(faces.error());
      auto photos = s.list_photos(*name);
      if (!photos) return fail(photos.error());
      std::map<std::int64_t, std::string> path;
      for (const auto& p : *photos) path[p.id] = p.path;
      json out = json::array();
      for (const auto& f : *faces) {
        if (*group != 0 && f.group != *group) continue;
        out.push_back({{"face_id", f.id}, {"group", f.group}, {"photo", path[f.photo]},
                       {"box", {f.box.x, f.box.y, f.box.w, f.box.h}}});
      }
      print_json(out);
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto group = std::make_shared<std::int64_t>(0);
    auto label = std::make_shared<std::string>();
    CLI::App* c = lib->add_subcommand("name", "Name a group (a label in this library only; empty removes it)");
    c->add_option("name", *name)->required();
    c->add_option("group", *group)->required();
    c->add_option("label", *label)->required();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name, group, label](LibraryStore& s) {
      if (auto r = s.set_group_label(*name, *group, *label, {a->actor, ""}); !r) return fail(r.error());
      print_json({{"group", *group}, {"name", *label}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto g1 = std::make_shared<std::int64_t>(0), g2 = std::make_shared<std::int64_t>(0);
    CLI::App* c = lib->add_subcommand("merge", "Two groups are one person (remembered by every later grouping)");
    c->add_option("name", *name)->required();
    c->add_option("group1", *g1)->required();
    c->add_option("group2", *g2)->required();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name, g1, g2](LibraryStore& s) {
      auto r = merge_groups(s, *name, *g1, *g2, {}, {a->actor, ""});
      if (!r) return fail(r.error());
      print_json({{"group", *r}});
      return 0;
    }));
  }
  for (const char* verb : {"remove-face", "split"}) {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto face = std::make_shared<std::int64_t>(0);
    CLI::App* c = lib->add_subcommand(verb, "This face is not this person (remembered by every later grouping)");
    c->add_option("name", *name)->required();
    c->add_option("face", *face, "A face id (candor library faces)")->required();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name, face](LibraryStore& s) {
      auto r = remove_face(s, *name, *face, {}, {a->actor, ""});
      if (!r) return fail(r.error());
      print_json({{"face_id", *face}, {"group", *r}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto group = std::make_shared<std::int64_t>(0);
    auto show = std::make_shared<bool>(false);
    CLI::App* c = lib->add_subcommand("hide", "Hide a group from `people` (--show brings it back)");
    c->add_option("name", *name)->required();
    c->add_option("group", *group)->required();
    c->add_flag("--show", *show, "Show the group again");
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name, group, show](LibraryStore& s) {
      if (auto r = s.set_group_hidden(*name, *group, !*show, {a->actor, ""}); !r) return fail(r.error());
      print_json({{"group", *group}, {"hidden", !*show}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    CLI::App* c = lib->add_subcommand("regroup", "Re-group every face; names and corrections are kept");
    c->add_option("name", *name)->required();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name](LibraryStore& s) {
      auto r = regroup_library(s, *name, {}, {a->actor, ""});
      if (!r) return fail(r.error());
      auto groups = s.list_groups(*name);
      if (!groups) return fail(groups.error());
      print_json({{"faces_moved", *r}, {"groups", groups->size()}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto photo = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    auto point = std::make_shared<std::string>("fmr-1e-4");
    CLI::App* c = lib->add_subcommand("find", "The library's photos that show the person in PHOTO (audited)");
    c->add_option("name", *name)->required();
    c->add_option("photo", *photo, "A photo of the person (the largest face counts)")->required();
    c->add_option("--reason", *reason, "Why (audited)")->required();
    c->add_option("--operating-point", *point, "Match threshold: fmr-1e-3 or fmr-1e-4")->capture_default_str();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [&ctx, a, name, photo, reason, point](LibraryStore& s) {
      auto op = find_operating_point(ctx.engine().recognizer_spec(), *point);
      if (!op) return fail(op.error());
      auto bytes = read_file_bytes(*photo, ctx.limits.max_bytes);
      if (!bytes) return fail(bytes.error());
      LibraryOptions options;
      options.limits = ctx.limits;
      auto r = find_person(ctx.engine(), s, *name, *bytes, op->threshold, options, {a->actor, *reason});
      if (!r) return fail(r.error());
      json photos = json::array();
      for (const auto& p : r->photos) photos.push_back(photo_to_json(p));
      print_json({{"groups", r->groups}, {"faces", r->faces}, {"photos", photos}, {"best", score_to_json(r->best)}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto group = std::make_shared<std::int64_t>(0);
    auto reason = std::make_shared<std::string>();
    CLI::App* c = lib->add_subcommand("forget", "Delete a person's templates; their faces never come back on a later add");
    c->add_option("name", *name)->required();
    c->add_option("group", *group)->required();
    c->add_option("--reason", *reason, "Why (audited)")->required();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name, group, reason](LibraryStore& s) {
      auto r = s.forget_group(*name, *group, {a->actor, *reason});
      if (!r) return fail(r.error());
      print_json({{"group", *group}, {"faces_forgotten", r->size()}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto size = std::make_shared<int>(ThumbnailOptions{}.size);
    CLI::App* c = lib->add_subcommand("report", "Write an HTML page of the groups as thumbnail grids (cut from your photos now)");
    c->add_option("name", *name)->required();
    c->add_option("out_dir", *out, "Folder for index.html and the thumbnails (created if missing)")->required();
    c->add_option("--size", *size, "Thumbnail side in pixels (16..1024)")->capture_default_str()->check(CLI::Range(16, 1024));
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [&ctx, name, out, size](LibraryStore& s) {
      ThumbnailOptions options;
      options.size = *size;
      options.limits = ctx.limits;
      auto r = write_library_report(s, *name, *out, options);
      if (!r) return fail(r.error());
      const std::size_t skipped = r->photos_missing + r->photos_changed + r->photos_undecodable;
      if (skipped > 0) {
        std::fprintf(stderr, "warning: %zu photo(s) skipped (%zu missing, %zu changed since added, %zu undecodable)\n",
                     skipped, r->photos_missing, r->photos_changed, r->photos_undecodable);
      }
      print_json({{"report", (std::filesystem::path(*out) / "index.html").string()},
                  {"groups", r->groups},
                  {"hidden_groups", r->hidden_groups},
                  {"faces", r->faces},
                  {"ungrouped", r->ungrouped},
                  {"faces_skipped", r->faces_skipped},
                  {"photos_missing", r->photos_missing},
                  {"photos_changed", r->photos_changed},
                  {"photos_undecodable", r->photos_undecodable}});
      return 0;
    }));
  }
  {
    auto a = std::make_shared<StoreArgs>();
    auto name = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    CLI::App* c = lib->add_subcommand("delete", "Delete a library: every photo record, face, template, group and correction");
    c->add_option("name", *name)->required();
    c->add_option("--reason", *reason, "Why (audited)")->required();
    add_store_options(c, *a);
    c->callback(with_store(ctx, a, [a, name, reason](LibraryStore& s) {
      auto r = s.delete_library(*name, {a->actor, *reason});
      if (!r) return fail(r.error());
      print_json({{"deleted_library", *name}, {"photos", r->photos}, {"faces", r->faces}, {"groups", r->groups},
                  {"corrections", r->corrections}});
      return 0;
    }));
  }
}

}  // namespace candor::cli
