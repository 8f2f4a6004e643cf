// Collections: enrollment and 1:N search over the Store with per-collection indexes.
#include "candor/collections.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "candor/analyzer.h"
#include "candor/calibration.h"
#include "candor/crypto.h"
#include "candor/index.h"
#include "candor/json.h"
#include "subject_gallery.h"

namespace candor {
namespace {

// When an enrollment photo shows several faces, the largest is taken only if it is
// at least this many times the area of the next: a portrait with people in the
// background. Otherwise the photo is ambiguous and refused.
constexpr float kDominantFaceAreaRatio = 2.0f;

// Ids this node dropped before its follower saw the removal are remembered so that a
// follower which fetched the face just before cannot put it back; past this many the
// set is cleared (it is an optimisation: the search re-check keeps results correct).
constexpr std::size_t kMaxTombstones = 1'000'000;

// A template probe's source goes into the append-only audit log: a name, not a payload.
constexpr std::size_t kMaxProbeSourceBytes = 256;

struct CollectionState {
  CollectionState(Collection c, int dim, const std::string& index_spec) : info(std::move(c)), gallery(dim, index_spec) {}
  Collection info;
  collections_detail::SubjectGallery gallery;  // subject templates, and the face templates they are made of
  mutable std::shared_mutex mutex;
};

class CollectionsImpl final : public Collections {
 public:
  CollectionsImpl(const Engine& engine, Store& store, CollectionsOptions options)
      : engine_(engine), store_(store), options_(std::move(options)) {
    if (options_.follow_batch == 0) options_.follow_batch = 1;
  }

  ~CollectionsImpl() override {
    {
      std::lock_guard lock(stop_mutex_);
      stopping_ = true;
    }
    stop_cv_.notify_all();
    if (follower_.joinable()) follower_.join();
  }

  // Loads every collection. The feed position is read first, so the indexes hold at
  // least every change up to it; replaying later changes over them is idempotent.
  Status load_all() {
    auto head = store_.audit_head();
    if (!head) return head.error();
    auto list = store_.list_collections();
    if (!list) return list.error();
    std::map<std::string, std::unique_ptr<CollectionState>> loaded;
    for (const Collection& c : *list) {
      if (!serves(c.name)) continue;
      auto state = load(c);
      if (!state) return state.error();
      loaded[c.name] = std::move(*state);
    }
    {
      std::unique_lock lock(registry_mutex_);
      collections_ = std::move(loaded);
    }
    applied_version_ = head->seq;
    {
      std::lock_guard lock(tombstone_mutex_);
      tombstones_.clear();
    }
    std::lock_guard lock(status_mutex_);
    level_at_ = std::chrono::steady_clock::now();
    return ok_status();
  }

  void start_following() {
    if (!options_.follow_changes) return;
    feed_in_use_ = true;
    follower_ = std::thread([this] { follow(); });
  }

  Store& store() override { return store_; }

  Result<Collection> create_collection(NewCollection spec, const std::string& operating_point,
                                       const AuditContext& ctx) override {
    auto point = find_operating_point(engine_.recognizer_spec(), operating_point);
    if (!point) return point.error();
    spec.match_threshold = point->threshold;
    std::unique_lock lock(registry_mutex_);
    auto created = store_.create_collection(spec, ctx);
    if (!created) return created.error();
    if (!serves(created->name)) return created;  // another node group holds it
    collections_[created->name] =
        std::make_unique<CollectionState>(*created, engine_.recognizer_spec().dim, options_.index_spec);
    return created;
  }

  Result<std::vector<FaceId>> delete_collection(const std::string& name, const AuditContext& ctx) override {
    std::unique_lock lock(registry_mutex_);
    auto deleted = store_.delete_collection(name, ctx);
    if (deleted) collections_.erase(name);
    return deleted;
  }

  Result<CalibrationReport> calibrate(const std::string& collection,
                                      std::span<const std::vector<std::vector<float>>> people,
                                      const AuditContext& ctx) override {
    if (auto ok = check_audit_context(ctx, false); !ok) return ok.error();
    auto info = collection_info(collection);
    if (!info) return info.error();
    const ModelSpec& recognizer = engine_.recognizer_spec();
    std::vector<std::vector<float>> templates;
    std::vector<PersonImages> by_person;
    for (const auto& person : people) {
      PersonImages& images = by_person.emplace_back();
      for (const auto& t : person) {
        if (!t.empty()) {
          if (auto ok = check_template_size(t.size()); !ok) return ok.error();
        }
        images.push_back(templates.size());
        templates.push_back(t);
      }
    }
    auto measured = calibrate_points(by_person, templates, recognizer.operating_points, recognizer.id,
                                     std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()));
    if (!measured) return measured.error();
    CalibrationReport report;
    report.previous = operating_point_of(*info);
    report.shipped = recognizer.operating_points;
    // The collection keeps its point's name: an fmr-1e-4 collection now decides at the
    // fmr-1e-4 threshold measured on these people. A point the set could not resolve
    // (or a custom threshold) stays as it was.
    float threshold = report.previous.threshold;
    for (const CalibratedPoint& p : measured->points) {
      if (p.point.name == report.previous.name) threshold = p.point.threshold;
    }
    auto stored = set_calibration(collection, *measured, threshold, ctx);
    if (!stored) return stored.error();
    report.collection = *stored;
    report.decides_at = operating_point_of(*stored);
    return report;
  }

  Result<Collection> reset_calibration(const std::string& collection, const AuditContext& ctx) override {
    auto info = collection_info(collection);
    if (!info) return info.error();
    // The shipped point of the name the collection decides at; a custom threshold stays.
    const OperatingPoint now = operating_point_of(*info);
    auto shipped = find_operating_point(engine_.recognizer_spec(), now.name);
    return set_calibration(collection, std::nullopt, shipped ? shipped->threshold : now.threshold, ctx);
  }

  Result<std::vector<EnrollOutcome>> enroll(const std::string& collection, const std::string& subject,
                                            std::span<const EnrollImage> images, const EnrollOptions& enroll_options,
                                            const AuditContext& ctx) override {
    if (images.size() > kMaxEnrollImages) {
      return Error{ErrorCode::kInvalidArgument, std::to_string(images.size()) + " images in one enrollment; at most " +
                                                    std::to_string(kMaxEnrollImages) + " are taken per call"};
    }
    // Consent first: no photo of a person who has not consented is decoded or embedded.
    if (auto consented = store_.check_enroll_consent(collection, subject, images.size(), ctx); !consented) {
      return consented.error();
    }
    auto info = collection_info(collection);
    if (!info) return info.error();
    // Inference runs without any collection lock, so revocation, erasure and collection
    // changes never wait for it (a flood of enrollments once held them for 34 s).
    std::vector<EnrollOutcome> outcomes;
    std::vector<NewFace> faces;
    std::vector<std::size_t> face_outcome;  // faces[i] belongs to outcomes[face_outcome[i]]
    for (const EnrollImage& image : images) {
      EnrollOutcome outcome{image.name, std::nullopt, std::nullopt};
      auto face = enrollable_face(image, info->liveness_required);
      if (!face) {
        outcome.error = face.error();
      } else {
        NewFace nf;
        nf.embedding = std::move(face->first.embedding);
        nf.box = {face->first.box.x, face->first.box.y, face->first.box.width, face->first.box.height};
        nf.detector_score = face->first.score;
        nlohmann::json q = face_to_json(face->first).value("quality", nlohmann::json::object());
        const auto level = q.find("level");  // not json::value(): GCC 12 warns of a null dereference inside it here
        nf.quality_level = level != q.end() && level->is_string() ? level->get<std::string>() : "unassessed";
        nf.quality_json = q.dump();
        nf.image_sha256 = face->second;
        nf.model_id = engine_.recognizer_spec().id;
        faces.push_back(std::move(nf));
        face_outcome.push_back(outcomes.size());
      }
      outcomes.push_back(std::move(outcome));
    }
    if (faces.empty()) return outcomes;
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);  // again: it may have been deleted meanwhile
    if (!state) return state.error();
    // Exclusive from the commit until the gallery holds the faces, so a revocation
    // cannot slip between them and leave deleted faces in memory.
    std::unique_lock lock((*state)->mutex);
    if (!enroll_options.allow_outliers) {
      refuse_outliers(**state, subject, faces, face_outcome, outcomes);
      if (faces.empty()) return outcomes;
    }
    auto ids = store_.enroll(collection, subject, faces, ctx);
    if (!ids) return ids.error();
    std::vector<float> rows;
    rows.reserve(faces.size() * faces.front().embedding.size());
    for (const NewFace& f : faces) rows.insert(rows.end(), f.embedding.begin(), f.embedding.end());
    (*state)->gallery.add(subject, *ids, rows);
    for (std::size_t i = 0; i < ids->size(); ++i) outcomes[face_outcome[i]].face_id = (*ids)[i];
    return outcomes;
  }

  Result<SearchResult> search(const std::string& collection, std::span<const std::uint8_t> probe,
                              const SearchOptions& options, const AuditContext& ctx) override {
    // Everything the caller controls is checked before any work: a reason over the
    // limit costs no inference and writes nothing.
    if (auto ok = check_audit_context(ctx, true); !ok) return ok.error();
    if (auto ok = check_search_options(options); !ok) return ok.error();
    auto info = collection_info(collection);
    if (!info) return info.error();
    auto refuse = [&](const Error& e) -> Error {
      SearchRecord record{ctx, collection, {}, "{}", "refused: " + std::string(error_code_name(e.code))};
      record.charged = e.code != ErrorCode::kRateLimited;  // refused by the budget: nothing was searched
      (void)store_.record_search(record);
      return e;
    };
    // Decoding, detection and analysis hold no collection lock.
    SearchResult result;
    auto probed = probe_faces(probe, *info, options.largest_face_only, options.admit_faces, result.faces_in_image);
    if (!probed) return refuse(probed.error());
    std::vector<Face>& faces = *probed;

    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    std::shared_lock lock((*state)->mutex);
    const CollectionState& s = **state;
    const OperatingPoint point = search_point(s, options);
    result.threshold = point.threshold;
    for (Face& face : faces) {
      auto searched = search_face(s, point, face, options, ctx, fpir_details(options));
      if (!searched) return searched.error();
      face.embedding.clear();  // templates do not leave the engine
      result.faces.push_back(FaceSearch{std::move(face), std::move(*searched)});
    }
    return result;
  }

  Result<FaceSearch> search_template(const std::string& collection, const TemplateProbe& probe,
                                     const SearchOptions& options, const AuditContext& ctx) override {
    if (auto ok = check_audit_context(ctx, true); !ok) return ok.error();
    if (auto ok = check_search_options(options); !ok) return ok.error();
    if (probe.source.size() > kMaxProbeSourceBytes) {
      return Error{ErrorCode::kInvalidArgument, "a probe's source is at most 256 bytes"};
    }
    if (auto ok = check_template_size(probe.embedding.size()); !ok) return ok.error();
    if (!(probe.margin >= 0 && probe.margin < 1)) return Error{ErrorCode::kInvalidArgument, "a probe's margin is in [0, 1)"};
    auto info = collection_info(collection);
    if (!info) return info.error();
    nlohmann::json extra = fpir_details(options);
    extra.update({{"source", probe.source}, {"purpose", probe.purpose}, {"frames", probe.frames}});
    auto refuse = [&](const Error& e) -> Error {
      nlohmann::json details = extra;
      SearchRecord record{ctx, collection, {}, details.dump(), "refused: " + std::string(error_code_name(e.code))};
      record.charged = e.code != ErrorCode::kRateLimited;
      (void)store_.record_search(record);
      return e;
    };
    if (probe.purpose != info->purpose) {
      return refuse({ErrorCode::kConsentRequired, "the probe's purpose is not collection " + collection +
                                                      "'s: its subjects consented to that purpose only"});
    }
    if (info->liveness_required && probe.live != std::optional<bool>(true)) {
      return refuse({ErrorCode::kLivenessFailed, "collection " + collection + " requires a live presentation"});
    }
    if (options.admit_faces) {
      if (auto admitted = options.admit_faces(1); !admitted) return refuse(admitted.error());
    }
    Face face;
    face.box = probe.box;
    face.embedding.assign(probe.embedding.begin(), probe.embedding.end());
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    std::shared_lock lock((*state)->mutex);
    SearchOptions one = options;
    one.largest_face_only = false;  // the box goes into the details
    OperatingPoint point = search_point(**state, options);
    point.threshold += probe.margin;
    for (float& t : point.subject_thresholds) t += probe.margin;
    auto searched = search_face(**state, point, face, one, ctx, extra);
    if (!searched) return searched.error();
    face.embedding.clear();
    return FaceSearch{std::move(face), std::move(*searched)};
  }

  Result<VerifyResult> verify(const std::string& collection, const std::string& subject,
                              std::span<const std::uint8_t> probe, const AuditContext& ctx) override {
    if (auto ok = check_audit_context(ctx, true); !ok) return ok.error();
    if (auto ok = check_subject_id(subject); !ok) return ok.error();
    auto info = collection_info(collection);
    if (!info) return info.error();
    auto record = [&](const std::string& result, nlohmann::json details, std::vector<std::string> named) {
      details["verify"] = true;
      return store_.record_search(SearchRecord{ctx, collection, std::move(named), details.dump(), result});
    };
    auto refuse = [&](const Error& e) -> Error {
      (void)record("refused: " + std::string(error_code_name(e.code)), nlohmann::json::object(), {});
      return e;
    };
    std::size_t faces_in_image = 0;
    auto probed = probe_faces(probe, *info, true, {}, faces_in_image);
    if (!probed) return refuse(probed.error());
    Face face = std::move(probed->front());
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    std::shared_lock lock((*state)->mutex);
    const CollectionState& s = **state;
    auto existing = store_.existing_faces(s.gallery.faces_of(subject));  // deleted, revoked or expired: gone
    if (!existing) return existing.error();
    if (existing->empty()) {
      return refuse({ErrorCode::kNotFound, "the subject holds no face in collection " + collection});
    }
    const std::set<FaceId> live(existing->begin(), existing->end());
    const auto templates = s.gallery.templates_of(subject);
    const std::vector<float> subject_vector = subject_template(templates);
    VerifyResult out;
    out.subject = subject;
    out.faces = templates.size();
    out.similarity = collections_detail::dot(face.embedding, subject_vector);
    out.threshold = subject_threshold(operating_point_of(s.info), out.faces);
    out.match = out.similarity >= out.threshold;
    if (auto best = s.gallery.best_face(subject, face.embedding, live)) out.face_id = best->first;
    face.embedding.clear();
    out.probe = std::move(face);
    nlohmann::json details = {{"score", score_to_json(out.similarity)}, {"match", out.match}, {"face_id", out.face_id}};
    if (auto st = record("ok", details, out.match ? std::vector<std::string>{subject} : std::vector<std::string>{}); !st) {
      return st.error();
    }
    return out;
  }

  Result<std::vector<FaceId>> revoke_consent(const std::string& collection, const std::string& subject,
                                             const AuditContext& ctx) override {
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    std::unique_lock lock((*state)->mutex);
    auto ids = store_.revoke_consent(collection, subject, ctx);
    if (ids) drop(**state, *ids);
    return ids;
  }

  Result<std::vector<FaceId>> erase_subject(const std::string& collection, const std::string& subject,
                                            const AuditContext& ctx) override {
    std::unique_lock registry(registry_mutex_);  // may touch every collection
    auto ids = store_.erase_subject(collection, subject, ctx);
    if (ids) {
      for (auto& [name, state] : collections_) drop(*state, *ids);
    }
    return ids;
  }

  Result<RetentionReport> retention_run(TimePoint now, const AuditContext& ctx) override {
    std::unique_lock registry(registry_mutex_);
    auto report = store_.retention_run(now, ctx);
    if (report) {
      for (auto& [name, state] : collections_) drop(*state, report->removed);
    }
    return report;
  }

  std::size_t indexed_faces(const std::string& collection) const override {
    std::shared_lock registry(registry_mutex_);
    auto it = collections_.find(collection);
    if (it == collections_.end()) return 0;
    std::shared_lock lock(it->second->mutex);
    return it->second->gallery.faces();
  }

  Status sync() override {
    std::lock_guard guard(sync_mutex_);
    feed_in_use_ = true;
    bool reloaded = false;
    std::uint64_t applied = 0;
    for (;;) {
      auto batch = store_.changes_since(applied_version_.load(), options_.follow_batch);
      if (!batch) return sync_failed(batch.error());
      if (batch->truncated) {
        // The feed no longer reaches back to our version: start again from the store.
        if (reloaded) return sync_failed({ErrorCode::kStoreError, "the change feed is truncated just after a reload"});
        if (auto st = load_all(); !st) return sync_failed(st.error());
        reloaded = true;
        std::lock_guard lock(status_mutex_);
        ++reloads_;
        continue;
      }
      if (auto st = apply(batch->changes); !st) return sync_failed(st.error());
      applied_version_ = std::max(applied_version_.load(), batch->version);
      applied += batch->changes.size();
      if (batch->changes.size() < options_.follow_batch) break;
    }
    if (auto st = refresh_records(); !st) return sync_failed(st.error());
    std::lock_guard lock(status_mutex_);
    changes_applied_ += applied;
    level_at_ = std::chrono::steady_clock::now();
    last_error_.reset();
    return ok_status();
  }

  FollowStatus follow_status() const override {
    FollowStatus out;
    out.following = follower_.joinable();
    out.applied_version = applied_version_.load();
    std::lock_guard lock(status_mutex_);
    out.lag_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - level_at_).count();
    out.changes_applied = changes_applied_;
    out.reloads = reloads_;
    out.sync_failures = sync_failures_;
    out.last_error = last_error_;
    return out;
  }

 private:
  Status sync_failed(const Error& error) {
    std::lock_guard lock(status_mutex_);
    ++sync_failures_;
    last_error_ = error;
    return error;
  }

  // The follower: sync, then wait for the store to announce more; on failure retry
  // with a doubling delay, so an unreachable database is not hammered.
  void follow() {
    auto retry = options_.follow_retry;
    while (!stopping_.load()) {
      Status st = sync();
      if (st) st = store_.wait_for_change(applied_version_.load(), options_.follow_wait);
      if (st) {
        retry = options_.follow_retry;
        continue;
      }
      std::unique_lock lock(stop_mutex_);
      stop_cv_.wait_for(lock, retry, [this] { return stopping_.load(); });
      retry = std::min(retry * 2, options_.follow_retry_max);
    }
  }

  bool tombstoned(FaceId id) {
    std::lock_guard lock(tombstone_mutex_);
    return tombstones_.count(id) != 0;
  }

  // Applies one batch of the feed, in version order. Faces are handled per
  // collection between collection deletions: within such a run an id is added at
  // most once and removed after its addition (ids are never reused), so applying
  // a collection's additions before its removals keeps the order's outcome.
  Status apply(const std::vector<FaceChange>& changes) {
    // Templates of the added faces this node does not hold yet (its own are skipped).
    std::vector<FaceId> wanted;
    {
      std::shared_lock registry(registry_mutex_);
      for (const FaceChange& c : changes) {
        if (c.kind != FaceChange::Kind::kAdded || tombstoned(c.face_id)) continue;
        auto it = collections_.find(c.collection);
        if (it != collections_.end()) {
          std::shared_lock lock(it->second->mutex);
          if (it->second->gallery.holds(c.face_id)) continue;
        }
        wanted.push_back(c.face_id);
      }
    }
    std::unordered_map<FaceId, FaceRecord> fetched;
    if (!wanted.empty()) {
      std::sort(wanted.begin(), wanted.end());
      wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
      auto records = store_.get_faces(wanted, true);  // the faces removed since are not returned
      if (!records) return records.error();
      for (FaceRecord& r : *records) fetched.emplace(r.id, std::move(r));
    }
    std::size_t i = 0;
    while (i < changes.size()) {
      if (changes[i].kind == FaceChange::Kind::kCollectionDeleted) {
        if (auto st = apply_collection_deleted(changes[i].collection); !st) return st;
        ++i;
        continue;
      }
      std::map<std::string, std::pair<std::vector<FaceId>, std::vector<FaceId>>> runs;  // added, removed
      for (; i < changes.size() && changes[i].kind != FaceChange::Kind::kCollectionDeleted; ++i) {
        auto& run = runs[changes[i].collection];
        (changes[i].kind == FaceChange::Kind::kAdded ? run.first : run.second).push_back(changes[i].face_id);
      }
      for (const auto& [name, run] : runs) {
        if (auto st = apply_faces(name, run.first, run.second, fetched); !st) return st;
      }
    }
    return ok_status();
  }

  Status apply_faces(const std::string& name, const std::vector<FaceId>& added, const std::vector<FaceId>& removed,
                     const std::unordered_map<FaceId, FaceRecord>& fetched) {
    {
      std::shared_lock registry(registry_mutex_);
      auto it = collections_.find(name);
      if (it != collections_.end()) {
        CollectionState& s = *it->second;
        std::unique_lock lock(s.mutex);
        for (FaceId id : added) {
          auto f = fetched.find(id);
          if (f == fetched.end() || f->second.collection != name || s.gallery.holds(id) || tombstoned(id)) {
            continue;  // gone since, held already, or dropped here a moment ago
          }
          if (static_cast<int>(f->second.embedding.size()) != engine_.recognizer_spec().dim) {
            return Error{ErrorCode::kInvalidArgument, "face " + std::to_string(id) + " of collection " + name +
                                                          " is a template of model " + f->second.model_id +
                                                          ", not of the recogniser in use"};
          }
          s.gallery.add(f->second.subject, std::span<const FaceId>(&id, 1), f->second.embedding);
        }
        s.gallery.remove(removed);
        std::lock_guard tomb(tombstone_mutex_);
        for (FaceId id : removed) tombstones_.erase(id);
        return ok_status();
      }
    }
    // Removals in a collection this node does not hold change nothing here; faces
    // added to one it has not seen mean a collection created elsewhere: load it whole.
    if (added.empty() || !serves(name)) return ok_status();
    auto c = store_.get_collection(name);
    if (!c) return c.error().code == ErrorCode::kNotFound ? ok_status() : Status(c.error());
    auto state = load(*c);
    if (!state) return state.error();
    std::unique_lock registry(registry_mutex_);
    collections_.try_emplace(name, std::move(*state));  // kept if a search loaded it meanwhile
    return ok_status();
  }

  // A collection deleted elsewhere leaves this node, unless the name already
  // belongs to a newer collection of that name that this node has loaded.
  Status apply_collection_deleted(const std::string& name) {
    auto current = store_.get_collection(name);
    if (!current && current.error().code != ErrorCode::kNotFound) return current.error();
    std::unique_lock registry(registry_mutex_);
    auto it = collections_.find(name);
    if (it != collections_.end() && (!current || current->id != it->second->info.id)) collections_.erase(it);
    return ok_status();
  }

  Result<std::unique_ptr<CollectionState>> load(const Collection& c) {
    auto faces = store_.load_faces(c.name);
    if (!faces) return faces.error();
    auto state = std::make_unique<CollectionState>(c, engine_.recognizer_spec().dim, options_.index_spec);
    // Grouped by subject, so each subject's template is computed once.
    std::map<std::string, std::pair<std::vector<FaceId>, std::vector<float>>> by_subject;
    for (const FaceRecord& f : *faces) {
      if (static_cast<int>(f.embedding.size()) != engine_.recognizer_spec().dim) {
        return Error{ErrorCode::kInvalidArgument, "collection " + c.name + " holds templates of model " + f.model_id +
                                                      " (" + std::to_string(f.embedding.size()) +
                                                      "-d), not of the recogniser in use (" + engine_.recognizer_spec().id + ")"};
      }
      auto& [ids, rows] = by_subject[f.subject];
      ids.push_back(f.id);
      rows.insert(rows.end(), f.embedding.begin(), f.embedding.end());
    }
    for (const auto& [subject, faces_of] : by_subject) state->gallery.add(subject, faces_of.first, faces_of.second);
    return state;
  }

  // What a caller sets in SearchOptions, checked before any work.
  static Status check_search_options(const SearchOptions& options) {
    if (options.top_k == 0 || options.top_k > 100) return Error{ErrorCode::kInvalidArgument, "top_k must be 1..100"};
    if (options.fpir && !(*options.fpir > 0 && *options.fpir < 1)) {
      return Error{ErrorCode::kInvalidArgument, "a search's FPIR is in (0, 1)"};
    }
    return ok_status();
  }

  // A template handed in by a caller (a stream's, a calibration set's) must be the recogniser's.
  Status check_template_size(std::size_t size) const {
    const int dim = engine_.recognizer_spec().dim;
    if (static_cast<int>(size) == dim) return ok_status();
    return Error{ErrorCode::kInvalidArgument,
                 "a template of " + std::to_string(size) + " values; the recogniser's have " + std::to_string(dim)};
  }

  // Stores a calibration and puts the stored record in this node's state (other nodes
  // take it from the store at their next sync(): refresh_records()).
  Result<Collection> set_calibration(const std::string& collection, const std::optional<CollectionCalibration>& c,
                                     float threshold, const AuditContext& ctx) {
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    std::unique_lock lock((*state)->mutex);
    auto stored = store_.set_calibration(collection, c, threshold, ctx);
    if (stored) (*state)->info = *stored;
    return stored;
  }

  // Collection records changed by another node (a calibration) reach this one here: the
  // change feed carries faces, not records, and a record is one small row.
  Status refresh_records() {
    auto list = store_.list_collections();
    if (!list) return list.error();
    std::shared_lock registry(registry_mutex_);
    for (const Collection& c : *list) {
      auto it = collections_.find(c.name);
      if (it == collections_.end()) continue;
      std::unique_lock lock(it->second->mutex);
      it->second->info = c;
    }
    return ok_status();
  }

  // The collection's record as this node holds it (loading it on first use), copied so
  // that the caller can work without holding any lock.
  Result<Collection> collection_info(const std::string& name) {
    std::shared_lock registry(registry_mutex_);
    auto state = find(name, registry);
    if (!state) return state.error();
    std::shared_lock lock((*state)->mutex);
    return (*state)->info;
  }

  // The state of `name`; a collection created by another process is loaded on first use.
  Result<CollectionState*> find(const std::string& name, std::shared_lock<std::shared_mutex>& registry) {
    auto it = collections_.find(name);
    if (it != collections_.end()) return it->second.get();
    if (!serves(name)) {
      return Error{ErrorCode::kNotFound, "collection " + name + " is not held by this node (another node group serves it)"};
    }
    auto c = store_.get_collection(name);
    if (!c) return c.error();
    registry.unlock();
    {
      std::unique_lock exclusive(registry_mutex_);
      if (!collections_.count(name)) {
        auto state = load(*c);
        if (!state) return state.error();
        collections_[name] = std::move(*state);
      }
    }
    registry.lock();
    it = collections_.find(name);
    if (it == collections_.end()) return Error{ErrorCode::kNotFound, "collection " + name + " was deleted"};
    return it->second.get();
  }

  bool serves(const std::string& name) const {
    if (options_.served.empty()) return true;
    return std::any_of(options_.served.begin(), options_.served.end(), [&](const std::string& pattern) {
      if (!pattern.empty() && pattern.back() == '*') return name.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
      return name == pattern;
    });
  }

  // Drops faces this node removed itself; the feed will report them again.
  void drop(CollectionState& s, const std::vector<FaceId>& ids) {
    s.gallery.remove(ids);
    if (!feed_in_use_.load()) return;
    std::lock_guard lock(tombstone_mutex_);
    if (tombstones_.size() + ids.size() > kMaxTombstones) tombstones_.clear();
    tombstones_.insert(ids.begin(), ids.end());
  }

  // The point the collection decides at (its calibrated one, else the shipped one whose
  // threshold it was created with), for its subject thresholds; a threshold set otherwise
  // applies to every photo count.
  OperatingPoint operating_point_of(const Collection& c) const {
    const ModelSpec& recognizer = engine_.recognizer_spec();
    return collection_operating_point(c, recognizer.operating_points, recognizer.id);
  }

  // The point a search decides at: the collection's, raised for its size when the search
  // sets an FPIR (SearchOptions::fpir).
  // requires: s.mutex held (shared); options.fpir, when set, in (0, 1) (check_search_options).
  OperatingPoint search_point(const CollectionState& s, const SearchOptions& options) const {
    OperatingPoint point = operating_point_of(s.info);
    if (!options.fpir) return point;
    const ModelSpec& recognizer = engine_.recognizer_spec();
    return identification_point(point, collection_points(s.info, recognizer.operating_points, recognizer.id),
                                s.gallery.subjects(), *options.fpir);
  }

  static nlohmann::json fpir_details(const SearchOptions& options) {
    nlohmann::json j = nlohmann::json::object();
    if (options.fpir) j["fpir"] = *options.fpir;
    return j;
  }

  // One face of a search: the subjects whose templates are nearest it, re-checked against
  // the store (faces deleted, revoked or expired a moment ago are dropped), decided each at
  // the threshold for its photo count, and audited as one search.
  // requires: s.mutex held (shared).
  Result<std::vector<SubjectMatch>> search_face(const CollectionState& s, const OperatingPoint& point, const Face& face,
                                                const SearchOptions& options, const AuditContext& ctx,
                                                const nlohmann::json& extra_details = nlohmann::json::object()) {
    // A few more subjects than asked for: some may turn out to have been removed meanwhile.
    const auto hits = s.gallery.search(face.embedding, options.top_k + 8);
    std::vector<FaceId> ids;
    for (const auto& h : hits) {
      const auto faces_of = s.gallery.faces_of(h.subject);
      ids.insert(ids.end(), faces_of.begin(), faces_of.end());
    }
    auto existing = store_.existing_faces(ids);
    if (!existing) return existing.error();
    const std::set<FaceId> live(existing->begin(), existing->end());
    std::vector<SubjectMatch> matches;
    std::vector<std::string> matched;  // the audit's subject index names only these
    nlohmann::json details = {{"top_k", options.top_k}, {"results", nlohmann::json::array()}};
    if (options.include_candidates) details["candidates"] = true;
    if (!options.largest_face_only) details["face_box"] = {face.box.x, face.box.y, face.box.width, face.box.height};
    details.update(extra_details);
    for (const auto& h : hits) {
      auto best = s.gallery.best_face(h.subject, face.embedding, live);
      if (!best) continue;  // none of its faces is still identifiable
      SubjectMatch m{h.subject, h.score, subject_threshold(point, h.faces), false, h.faces, best->first, best->second};
      m.match = m.similarity >= m.threshold;
      if (!m.match && !options.include_candidates) continue;
      details["results"].push_back({{"face_id", m.face_id}, {"score", score_to_json(m.similarity)}, {"match", m.match}});
      if (m.match) matched.push_back(m.subject);
      matches.push_back(std::move(m));
      if (matches.size() == options.top_k) break;
    }
    SearchRecord record{ctx, s.info.name, matched, details.dump(), "ok"};
    if (auto recorded = store_.record_search(record); !recorded) return recorded.error();
    return matches;
  }

  // The faces of a probe photo, largest first (only the largest when `largest_only`), with
  // quality and liveness when an analyser is set; `admit` is asked before any is analysed.
  // Holds no lock. ensures: the decode's errors, kNoFace, admit's error, kLivenessFailed.
  Result<std::vector<Face>> probe_faces(std::span<const std::uint8_t> probe, const Collection& info, bool largest_only,
                                        const std::function<Status(std::size_t)>& admit, std::size_t& faces_in_image) {
    auto image = decode_image(probe, options_.limits);
    if (!image) return image.error();
    std::vector<Face> faces = engine_.analyze(*image, options_.detect);
    if (faces.empty()) return Error{ErrorCode::kNoFace, "no face in the probe image"};
    std::stable_sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.box.area() > b.box.area(); });
    faces_in_image = faces.size();
    if (largest_only) faces.resize(1);
    if (admit) {
      if (auto admitted = admit(faces.size()); !admitted) return admitted.error();
    }
    if (options_.analyzer != nullptr) {
      AnalysisRequest request;
      request.liveness = info.liveness_required;
      options_.analyzer->analyze(*image, std::span<Face>(faces), request);
      for (const Face& f : faces) {
        if (request.liveness && f.liveness && !f.liveness->live) {
          return Error{ErrorCode::kLivenessFailed, "a probe face failed the liveness check this collection requires"};
        }
      }
    }
    return faces;
  }

  // Refuses, one by one, the new faces that do not look like the subject's other photos
  // (the enrolled ones and the rest of this batch): likely another person's photo filed
  // under this name. requires: s.mutex held.
  void refuse_outliers(const CollectionState& s, const std::string& subject, std::vector<NewFace>& faces,
                       std::vector<std::size_t>& face_outcome, std::vector<EnrollOutcome>& outcomes) const {
    const std::vector<std::vector<float>> enrolled = s.gallery.templates_of(subject);
    if (enrolled.size() + faces.size() < 2) return;  // a first photo has nothing to disagree with
    const float threshold = operating_point_of(s.info).threshold;
    const float bound = kOutlierFraction * threshold;
    std::vector<bool> refused(faces.size(), false);
    for (std::size_t i = 0; i < faces.size(); ++i) {
      std::vector<std::vector<float>> others = enrolled;
      for (std::size_t j = 0; j < faces.size(); ++j) {
        if (j != i) others.push_back(faces[j].embedding);
      }
      const float similarity = collections_detail::dot(faces[i].embedding, subject_template(others));
      if (similarity >= bound) continue;
      refused[i] = true;
      char figure[160];
      std::snprintf(figure, sizeof figure,
                    "this face's similarity to the subject's other %zu photo%s is %.3f, far below the collection's "
                    "threshold %.3f (outliers: below %.3f)",
                    others.size(), others.size() == 1 ? "" : "s", similarity, threshold, bound);
      outcomes[face_outcome[i]].error = Error{
          ErrorCode::kInvalidArgument,
          std::string(figure) + ": is it the same person? Enroll it with allow_outliers (--allow-outlier) if it is"};
    }
    std::size_t kept = 0;
    for (std::size_t i = 0; i < faces.size(); ++i) {
      if (refused[i]) continue;
      if (kept != i) {  // a self-move would empty the template
        faces[kept] = std::move(faces[i]);
        face_outcome[kept] = face_outcome[i];
      }
      ++kept;
    }
    faces.resize(kept);
    face_outcome.resize(kept);
  }

  // The one face an enrollment photo contributes, with the photo's SHA-256.
  Result<std::pair<Face, std::string>> enrollable_face(const EnrollImage& image, bool liveness) const {
    auto decoded = decode_image(image.bytes, options_.limits);
    if (!decoded) return decoded.error();
    auto faces = engine_.analyze(*decoded, options_.detect);
    if (faces.empty()) return Error{ErrorCode::kNoFace, "no face found"};
    std::sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.box.area() > b.box.area(); });
    if (faces.size() > 1 && faces[0].box.area() < kDominantFaceAreaRatio * faces[1].box.area()) {
      return Error{ErrorCode::kInvalidArgument, std::to_string(faces.size()) +
                                                    " faces of similar size: an enrollment photo must show one person"};
    }
    if (options_.analyzer != nullptr) {
      AnalysisRequest request;
      request.liveness = liveness;
      options_.analyzer->analyze(*decoded, std::span<Face>(faces.data(), 1), request);
      if (auto ok = check_enrollment_quality(faces[0], options_.min_enroll_quality); !ok) return ok.error();
      if (liveness && faces[0].liveness && !faces[0].liveness->live) {
        return Error{ErrorCode::kLivenessFailed, "the liveness check failed (score " +
                                                    std::to_string(faces[0].liveness->score) + " < " +
                                                    std::to_string(faces[0].liveness->threshold) + ")"};
      }
    }
    const std::string digest = sha256_hex(std::span<const std::byte>(
        reinterpret_cast<const std::byte*>(image.bytes.data()), image.bytes.size()));
    return std::make_pair(std::move(faces[0]), digest);
  }

  const Engine& engine_;
  Store& store_;
  CollectionsOptions options_;
  mutable std::shared_mutex registry_mutex_;
  std::map<std::string, std::unique_ptr<CollectionState>> collections_;

  // The change feed.
  std::mutex sync_mutex_;                        // one sync() at a time
  std::atomic<std::int64_t> applied_version_{0};
  std::atomic<bool> feed_in_use_{false};         // tombstones are kept only then
  std::mutex tombstone_mutex_;                   // innermost lock
  std::unordered_set<FaceId> tombstones_;
  mutable std::mutex status_mutex_;
  std::chrono::steady_clock::time_point level_at_{std::chrono::steady_clock::now()};
  std::uint64_t changes_applied_ = 0;
  std::uint64_t reloads_ = 0;
  std::uint64_t sync_failures_ = 0;
  std::optional<Error> last_error_;
  std::thread follower_;
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  std::atomic<bool> stopping_{false};
};

}  // namespace

std::vector<float> subject_template(std::span<const std::vector<float>> faces, std::span<const float> weights) {
  if (!weights.empty() && weights.size() != faces.size()) {
    throw std::invalid_argument("subject_template: one weight per template");
  }
  if (faces.empty()) return {};
  std::vector<double> sum(faces.front().size(), 0.0);
  for (std::size_t i = 0; i < faces.size(); ++i) {
    if (faces[i].size() != sum.size()) throw std::invalid_argument("subject_template: templates of different sizes");
    const double w = weights.empty() ? 1.0 : weights[i];
    for (std::size_t d = 0; d < sum.size(); ++d) sum[d] += w * faces[i][d];
  }
  double norm = 0;
  for (double v : sum) norm += v * v;
  norm = std::sqrt(norm);
  std::vector<float> out(sum.size(), 0.0f);
  if (norm > 0) {
    for (std::size_t d = 0; d < sum.size(); ++d) out[d] = static_cast<float>(sum[d] / norm);
  }
  return out;
}

Result<std::unique_ptr<Collections>> Collections::open(const Engine& engine, Store& store, CollectionsOptions options) {
  try {  // a spec from a user's option: a bad one is their mistake, not a bug
    (void)make_index(engine.recognizer_spec().dim, options.index_spec);
  } catch (const std::invalid_argument& e) {
    return Error{ErrorCode::kInvalidArgument, std::string("index spec: ") + e.what()};
  }
  auto c = std::make_unique<CollectionsImpl>(engine, store, std::move(options));
  if (auto loaded = c->load_all(); !loaded) return loaded.error();
  c->start_following();
  return std::unique_ptr<Collections>(std::move(c));
}

}  // namespace candor
