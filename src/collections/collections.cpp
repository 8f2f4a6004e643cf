// Collections: enrollment and 1:N search over the Store with per-collection indexes.
#include "candor/collections.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "candor/analyzer.h"
#include "candor/crypto.h"
#include "candor/index.h"
#include "candor/json.h"

namespace candor {
namespace {

// When an enrollment photo shows several faces, the largest is taken only if it is
// at least this many times the area of the next: a portrait with people in the
// background. Otherwise the photo is ambiguous and refused.
constexpr float kDominantFaceAreaRatio = 2.0f;

struct CollectionState {
  Collection info;
  std::unique_ptr<Index> index;
  std::unordered_map<FaceId, std::string> subject_of;
  mutable std::shared_mutex mutex;
};

class CollectionsImpl final : public Collections {
 public:
  CollectionsImpl(const Engine& engine, Store& store, CollectionsOptions options)
      : engine_(engine), store_(store), options_(std::move(options)) {}

  Status load_all() {
    auto list = store_.list_collections();
    if (!list) return list.error();
    std::unique_lock lock(registry_mutex_);
    for (const Collection& c : *list) {
      auto state = load(c);
      if (!state) return state.error();
      collections_[c.name] = std::move(*state);
    }
    return ok_status();
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
    auto state = std::make_unique<CollectionState>();
    state->info = *created;
    state->index = make_index(engine_.recognizer_spec().dim, options_.index_spec);
    collections_[created->name] = std::move(state);
    return created;
  }

  Result<std::vector<FaceId>> delete_collection(const std::string& name, const AuditContext& ctx) override {
    std::unique_lock lock(registry_mutex_);
    auto deleted = store_.delete_collection(name, ctx);
    if (deleted) collections_.erase(name);
    return deleted;
  }

  Result<std::vector<EnrollOutcome>> enroll(const std::string& collection, const std::string& subject,
                                            std::span<const EnrollImage> images, const AuditContext& ctx) override {
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    std::vector<EnrollOutcome> outcomes;
    std::vector<NewFace> faces;
    std::vector<std::size_t> face_outcome;  // faces[i] belongs to outcomes[face_outcome[i]]
    for (const EnrollImage& image : images) {
      EnrollOutcome outcome{image.name, std::nullopt, std::nullopt};
      auto face = enrollable_face(image, (*state)->info.liveness_required);
      if (!face) {
        outcome.error = face.error();
      } else {
        NewFace nf;
        nf.embedding = std::move(face->first.embedding);
        nf.box = {face->first.box.x, face->first.box.y, face->first.box.width, face->first.box.height};
        nf.detector_score = face->first.score;
        nlohmann::json q = face_to_json(face->first).value("quality", nlohmann::json::object());
        nf.quality_level = q.value("level", "unassessed");
        nf.quality_json = q.dump();
        nf.image_sha256 = face->second;
        nf.model_id = engine_.recognizer_spec().id;
        faces.push_back(std::move(nf));
        face_outcome.push_back(outcomes.size());
      }
      outcomes.push_back(std::move(outcome));
    }
    if (faces.empty()) return outcomes;
    // Exclusive from the commit until the index holds the faces, so a revocation
    // cannot slip between them and leave deleted faces in the index.
    std::unique_lock lock((*state)->mutex);
    auto ids = store_.enroll(collection, subject, faces, ctx);
    if (!ids) return ids.error();
    std::vector<float> rows;
    rows.reserve(faces.size() * faces.front().embedding.size());
    for (const NewFace& f : faces) rows.insert(rows.end(), f.embedding.begin(), f.embedding.end());
    (*state)->index->add(*ids, rows);
    for (std::size_t i = 0; i < ids->size(); ++i) {
      (*state)->subject_of[(*ids)[i]] = subject;
      outcomes[face_outcome[i]].face_id = (*ids)[i];
    }
    return outcomes;
  }

  Result<SearchResult> search(const std::string& collection, std::span<const std::uint8_t> probe, std::size_t top_k,
                              const AuditContext& ctx) override {
    if (ctx.reason.empty()) {
      return Error{ErrorCode::kInvalidArgument, "a search must state its reason"};
    }
    if (top_k == 0 || top_k > 100) return Error{ErrorCode::kInvalidArgument, "top_k must be 1..100"};
    std::shared_lock registry(registry_mutex_);
    auto state = find(collection, registry);
    if (!state) return state.error();
    auto refuse = [&](const Error& e) -> Error {
      SearchRecord record{ctx, collection, {}, "{}", "refused: " + std::string(error_code_name(e.code))};
      (void)store_.record_search(record);
      return e;
    };
    auto image = decode_image(probe, options_.limits);
    if (!image) return refuse(image.error());
    auto faces = engine_.analyze(*image, options_.detect);
    if (faces.empty()) return refuse({ErrorCode::kNoFace, "no face in the probe image"});
    const auto largest = std::max_element(faces.begin(), faces.end(),
                                          [](const Face& a, const Face& b) { return a.box.area() < b.box.area(); });
    SearchResult result;
    result.faces_in_image = faces.size();
    result.probe = *largest;
    if (options_.analyzer != nullptr) {
      AnalysisRequest request;
      request.liveness = (*state)->info.liveness_required;
      options_.analyzer->analyze(*image, std::span<Face>(&result.probe, 1), request);
      if (request.liveness && result.probe.liveness && !result.probe.liveness->live) {
        return refuse({ErrorCode::kLivenessFailed, "the probe failed the liveness check this collection requires"});
      }
    }

    std::shared_lock lock((*state)->mutex);
    const CollectionState& s = **state;
    result.threshold = s.info.match_threshold;
    // Faces, not subjects, come out of the index: ask for more until top_k distinct
    // subjects are found or the index is exhausted.
    std::vector<Neighbor> neighbors;
    for (std::size_t k = top_k * 4; s.index->size() > 0; k *= 4) {
      neighbors = s.index->search(result.probe.embedding, std::min(k, s.index->size())).front();
      std::set<std::string> distinct;
      for (const Neighbor& n : neighbors) distinct.insert(s.subject_of.at(n.id));
      if (distinct.size() >= top_k || k >= s.index->size()) break;
    }
    std::vector<FaceId> ids;
    for (const Neighbor& n : neighbors) ids.push_back(n.id);
    auto existing = store_.existing_faces(ids);
    if (!existing) return existing.error();
    const std::set<FaceId> live(existing->begin(), existing->end());
    std::set<std::string> seen;
    nlohmann::json details = {{"top_k", top_k}, {"results", nlohmann::json::array()}};
    std::vector<std::string> subjects;
    for (const Neighbor& n : neighbors) {
      if (!live.count(n.id)) continue;
      const std::string& subject = s.subject_of.at(n.id);
      if (!seen.insert(subject).second) continue;
      result.matches.push_back({subject, n.score, n.id, n.score >= s.info.match_threshold});
      details["results"].push_back({{"face_id", n.id}, {"score", std::round(static_cast<double>(n.score) * 10000) / 10000}, {"match", n.score >= s.info.match_threshold}});
      subjects.push_back(subject);
      if (result.matches.size() == top_k) break;
    }
    result.probe.embedding.clear();  // templates do not leave the engine
    SearchRecord record{ctx, collection, subjects, details.dump(), "ok"};
    if (auto recorded = store_.record_search(record); !recorded) return recorded.error();
    return result;
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
    return it->second->index->size();
  }

 private:
  Result<std::unique_ptr<CollectionState>> load(const Collection& c) {
    auto faces = store_.load_faces(c.name);
    if (!faces) return faces.error();
    auto state = std::make_unique<CollectionState>();
    state->info = c;
    state->index = make_index(engine_.recognizer_spec().dim, options_.index_spec);
    std::vector<FaceId> ids;
    std::vector<float> rows;
    for (const FaceRecord& f : *faces) {
      if (static_cast<int>(f.embedding.size()) != engine_.recognizer_spec().dim) {
        return Error{ErrorCode::kInvalidArgument, "collection " + c.name + " holds templates of model " + f.model_id +
                                                      " (" + std::to_string(f.embedding.size()) +
                                                      "-d), not of the recogniser in use (" + engine_.recognizer_spec().id + ")"};
      }
      ids.push_back(f.id);
      rows.insert(rows.end(), f.embedding.begin(), f.embedding.end());
      state->subject_of[f.id] = f.subject;
    }
    if (!ids.empty()) state->index->add(ids, rows);
    return state;
  }

  // The state of `name`; a collection created by another process is loaded on first use.
  Result<CollectionState*> find(const std::string& name, std::shared_lock<std::shared_mutex>& registry) {
    auto it = collections_.find(name);
    if (it != collections_.end()) return it->second.get();
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

  static void drop(CollectionState& s, const std::vector<FaceId>& ids) {
    s.index->remove(ids);
    for (FaceId id : ids) s.subject_of.erase(id);
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
};

}  // namespace

Result<std::unique_ptr<Collections>> Collections::open(const Engine& engine, Store& store, CollectionsOptions options) {
  try {  // a spec from a user's option: a bad one is their mistake, not a bug
    (void)make_index(engine.recognizer_spec().dim, options.index_spec);
  } catch (const std::invalid_argument& e) {
    return Error{ErrorCode::kInvalidArgument, std::string("index spec: ") + e.what()};
  }
  auto c = std::make_unique<CollectionsImpl>(engine, store, std::move(options));
  if (auto loaded = c->load_all(); !loaded) return loaded.error();
  return std::unique_ptr<Collections>(std::move(c));
}

}  // namespace candor
