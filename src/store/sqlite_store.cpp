// The SQLite implementation of Store.
//
// Every public method takes mutex_ (one connection per Store), then runs in
// one transaction. Mutations go through write_op(), which appends the audit
// entry inside the same transaction and, if the operation is refused, rolls
// back and audits the refusal in a transaction of its own.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <sodium.h>

#include "candor/crypto.h"
#include "sqlite_store.h"

namespace candor::store_detail {
namespace {

using json = nlohmann::json;
// Every dump() below passes error_handler_t::replace: caller-supplied text with
// invalid UTF-8 is written with U+FFFD instead of throwing out of a transaction.

json ids_json(const std::vector<FaceId>& ids) { return json(ids); }

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, const StoreOptions& options)
      : path_(std::move(path)), db_(path_, options.create_if_missing), clock_(options.clock),
        busy_timeout_ms_(std::max(0, options.busy_timeout_ms)) {
    if (!clock_) clock_ = now_ms;
    db_.exec("PRAGMA busy_timeout = " + std::to_string(std::max(0, options.busy_timeout_ms)));
    const std::optional<std::string> mode = db_.query_text("PRAGMA journal_mode = WAL");
    if (!mode || *mode != "wal") fail(ErrorCode::kStoreError, "cannot switch " + path_ + " to WAL mode");
    db_.exec("PRAGMA foreign_keys = ON");
    // Erased rows (templates, subject names) are overwritten, not left in free pages.
    db_.exec("PRAGMA secure_delete = ON");
    db_.exec(options.durability == Durability::kFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    migrate(db_, ms(clock_()));
    attach_key(options);
  }

  // ------------------------------------------------------------ collections

  Result<Collection> create_collection(const NewCollection& spec, const AuditContext& ctx) override {
    return write_op<Collection>(ctx, AuditDraft{"create_collection", spec.name, {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_new_collection(spec);
      if (find_collection(spec.name)) fail(ErrorCode::kAlreadyExists, "collection '" + spec.name + "' already exists");
      const std::int64_t now = ms(clock_());
      db_.prepare("INSERT INTO collections (name, purpose, retention_days, match_threshold, liveness_required, created_at)"
                  " VALUES (?, ?, ?, ?, ?, ?)")
          .bind(1, spec.name)
          .bind(2, spec.purpose)
          .bind(3, spec.retention_days)
          .bind(4, static_cast<double>(spec.match_threshold))
          .bind(5, spec.liveness_required ? 1 : 0)
          .bind(6, now)
          .run();
      Collection c = *find_collection(spec.name);
      audit.details = json{{"collection_id", c.id},
                           {"purpose", c.purpose},
                           {"retention_days", c.retention_days},
                           {"match_threshold", c.match_threshold},
                           {"liveness_required", c.liveness_required}}
                          .dump(-1, ' ', false, json::error_handler_t::replace);
      return c;
    });
  }

  Result<std::vector<Collection>> list_collections() override {
    return read_op<std::vector<Collection>>([&] {
      std::vector<Collection> out;
      Statement st = db_.prepare(std::string(kCollectionColumns) + " ORDER BY name");
      while (st.step()) out.push_back(collection_from(st));
      return out;
    });
  }

  Result<Collection> get_collection(std::string_view name) override {
    return read_op<Collection>([&] { return require_collection(name); });
  }

  Result<std::vector<FaceId>> delete_collection(std::string_view name, const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(ctx, AuditDraft{"delete_collection", std::string(name), {}, "{}", "ok"},
                                         [&](AuditDraft& audit) {
      const Collection c = require_collection(name);
      std::vector<FaceId> ids = face_ids_where("collection_id = ?", c.id);
      db_.prepare("DELETE FROM faces WHERE collection_id = ?").bind(1, c.id).run();
      db_.prepare("DELETE FROM consents WHERE collection_id = ?").bind(1, c.id).run();
      const int consents = db_.changes();
      db_.prepare("DELETE FROM collections WHERE id = ?").bind(1, c.id).run();
      // One change stands for all the collection's faces (see FaceChange::Kind).
      pending_changes_.push_back(PendingChange{FaceChange::Kind::kCollectionDeleted, c.name, 0});
      audit.details = json{{"collection_id", c.id}, {"faces_deleted", ids.size()}, {"consents_deleted", consents}}.dump(-1, ' ', false, json::error_handler_t::replace);
      return ids;
    });
  }

  // ---------------------------------------------------------------- consent

  Result<Consent> grant_consent(const NewConsent& in, const AuditContext& ctx) override {
    return write_op<Consent>(ctx, AuditDraft{"grant_consent", in.collection, {in.subject}, "{}", "ok"},
                             [&](AuditDraft& audit) {
      const TimePoint granted = in.granted_at.value_or(clock_());
      validate_new_consent(in, granted);
      const Collection c = require_collection(in.collection);
      const std::string purpose = consent_purpose(in, c);
      db_.prepare("INSERT INTO consents (collection_id, subject, purpose, evidence_sha256, collected_by, granted_at, expires_at)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)")
          .bind(1, c.id)
          .bind(2, in.subject)
          .bind(3, purpose)
          .bind(4, in.evidence_sha256)
          .bind(5, in.collected_by)
          .bind(6, ms(granted))
          .bind(7, in.expires_at ? std::optional<std::int64_t>(ms(*in.expires_at)) : std::nullopt)
          .run();
      Consent out{db_.last_insert_rowid(), c.name, in.subject, purpose, in.evidence_sha256,
                  in.collected_by, granted, in.expires_at, std::nullopt};
      json d{{"consent_id", out.id}, {"purpose_matches_collection", purpose == c.purpose},
             {"granted_at", ms(granted)}, {"evidence_sha256", in.evidence_sha256}};
      if (in.expires_at) d["expires_at"] = ms(*in.expires_at);
      audit.details = d.dump(-1, ' ', false, json::error_handler_t::replace);
      return out;
    });
  }

  Result<std::vector<FaceId>> revoke_consent(std::string_view collection, std::string_view subject,
                                             const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(
        ctx, AuditDraft{"revoke_consent", std::string(collection), {std::string(subject)}, "{}", "ok"},
        [&](AuditDraft& audit) {
          require_subject(subject);
          const Collection c = require_collection(collection);
          const std::int64_t now = ms(clock_());
          db_.prepare("UPDATE consents SET revoked_at = ? WHERE collection_id = ? AND subject = ? AND revoked_at IS NULL")
              .bind(1, now)
              .bind(2, c.id)
              .bind(3, subject)
              .run();
          const int revoked = db_.changes();
          std::vector<FaceId> ids = face_ids_where("collection_id = ? AND subject = ?", c.id, subject);
          if (revoked == 0 && ids.empty()) {
            fail(ErrorCode::kNotFound, "no active consent for this subject in collection '" + c.name + "'");
          }
          delete_faces(ids);
          audit.details = json{{"consents_revoked", revoked}, {"face_ids", ids_json(ids)}}.dump(-1, ' ', false, json::error_handler_t::replace);
          return ids;
        });
  }

  Result<std::vector<Consent>> list_consents(std::string_view collection, std::string_view subject) override {
    return read_op<std::vector<Consent>>([&] {
      const Collection c = require_collection(collection);
      std::vector<Consent> out;
      Statement st = db_.prepare(
          "SELECT id, subject, purpose, evidence_sha256, collected_by, granted_at, expires_at, revoked_at"
          " FROM consents WHERE collection_id = ?1 AND (?2 = '' OR subject = ?2) ORDER BY id");
      st.bind(1, c.id).bind(2, subject);
      while (st.step()) out.push_back(consent_from(st, c.name));
      return out;
    });
  }

  Result<std::vector<SubjectSummary>> list_subjects(std::string_view collection) override {
    return read_op<std::vector<SubjectSummary>>([&] {
      const Collection c = require_collection(collection);
      const std::int64_t now = ms(clock_());
      // One pass over the subject index of faces and consents; no template is read.
      // A valid consent with no expiry sorts as the longest (expires_at NULL -> max).
      Statement st = db_.prepare(
          "SELECT subject, SUM(faces), MAX(valid), MAX(CASE WHEN valid = 1 THEN COALESCE(expires_at, ?3) END) FROM ("
          " SELECT subject, 1 AS faces, 0 AS valid, NULL AS expires_at FROM faces WHERE collection_id = ?1"
          " UNION ALL SELECT subject, 0, (purpose = ?2 AND revoked_at IS NULL AND granted_at <= ?4"
          " AND (expires_at IS NULL OR expires_at > ?4)), expires_at FROM consents"
          " WHERE collection_id = ?1 AND revoked_at IS NULL)"
          " GROUP BY subject ORDER BY subject");
      st.bind(1, c.id).bind(2, c.purpose).bind(3, INT64_MAX).bind(4, now);
      std::vector<SubjectSummary> out;
      while (st.step()) {
        SubjectSummary summary{st.column_text(0), st.column_int(1), st.column_int(2) != 0, std::nullopt};
        if (!st.column_is_null(3) && st.column_int(3) != INT64_MAX) summary.consent_expires_at = from_ms(st.column_int(3));
        out.push_back(std::move(summary));
      }
      return out;
    });
  }

  Status check_enroll_consent(std::string_view collection, std::string_view subject, std::size_t faces_offered,
                              const AuditContext& ctx) override {
    const AuditDraft draft = enroll_draft(collection, subject, faces_offered);
    std::lock_guard lock(mutex_);
    try {
      require_actor(ctx);
      require_subject(subject);
      Transaction txn(db_, Transaction::Kind::kRead);
      const Collection c = require_collection(collection);
      if (has_valid_consent(c, subject, ms(clock_()))) return ok_status();
      fail(ErrorCode::kConsentRequired, no_consent_message(c));
    } catch (const StoreFailure& f) {
      return audit_refusal(draft, f.error, ctx);
    }
  }

  // ------------------------------------------------------------------ faces

  Result<std::vector<FaceId>> enroll(std::string_view collection, std::string_view subject,
                                     const std::vector<NewFace>& faces, const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(ctx, enroll_draft(collection, subject, faces.size()), [&](AuditDraft& audit) {
      require_subject(subject);
      validate_faces(faces);
      const Collection c = require_collection(collection);
      const std::int64_t now = ms(clock_());
      // Checked inside the write transaction: a revocation committed a moment
      // ago is seen, and none can commit between this check and our inserts.
      if (!has_valid_consent(c, subject, now)) fail(ErrorCode::kConsentRequired, no_consent_message(c));
      {
        Statement st = db_.prepare("SELECT model_id, dim FROM faces WHERE collection_id = ? LIMIT 1");
        st.bind(1, c.id);
        if (st.step()) {
          const std::string model = st.column_text(0);
          const std::int64_t dim = st.column_int(1);
          if (model != faces.front().model_id || dim != static_cast<std::int64_t>(faces.front().embedding.size())) {
            fail(ErrorCode::kInvalidArgument, "collection '" + c.name + "' holds " + std::to_string(dim) +
                                                  "-d templates from model '" + model +
                                                  "'; templates from another model cannot be mixed in");
          }
        }
      }
      std::vector<FaceId> ids;
      ids.reserve(faces.size());
      for (const NewFace& f : faces) {
        const int sealed_size = static_cast<int>(24 + f.embedding.size() * 4 + 16);
        db_.prepare("INSERT INTO faces (collection_id, subject, dim, template, box_x, box_y, box_w, box_h,"
                    " detector_score, quality_level, quality_json, image_sha256, model_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(1, c.id)
            .bind(2, subject)
            .bind(3, static_cast<std::int64_t>(f.embedding.size()))
            .bind_zeroblob(4, sealed_size)  // the id is part of the associated data, so seal after insert
            .bind(5, static_cast<double>(f.box.x))
            .bind(6, static_cast<double>(f.box.y))
            .bind(7, static_cast<double>(f.box.w))
            .bind(8, static_cast<double>(f.box.h))
            .bind(9, static_cast<double>(f.detector_score))
            .bind(10, f.quality_level)
            .bind(11, compact_json(f.quality_json, "quality_json"))
            .bind(12, f.image_sha256)
            .bind(13, f.model_id)
            .bind(14, now)
            .run();
        const FaceId id = db_.last_insert_rowid();
        const std::vector<std::uint8_t> sealed = cipher_->seal(f.embedding, template_ad(c.id, c.name, id, subject, f.model_id));
        db_.prepare("UPDATE faces SET template = ? WHERE id = ?").bind_blob(1, sealed).bind(2, id).run();
        ids.push_back(id);
        pending_changes_.push_back(PendingChange{FaceChange::Kind::kAdded, c.name, id});
      }
      audit.details = json{{"face_ids", ids_json(ids)},
                           {"model_id", faces.front().model_id},
                           {"dim", faces.front().embedding.size()}}
                          .dump(-1, ' ', false, json::error_handler_t::replace);
      return ids;
    });
  }

  Result<std::vector<FaceId>> erase_subject(std::string_view collection, std::string_view subject,
                                            const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(
        ctx, AuditDraft{"erase_subject", std::string(collection), {std::string(subject)}, "{}", "ok"},
        [&](AuditDraft& audit) {
          require_subject(subject);
          require_text(ctx.reason, "reason (why the subject is erased)");
          std::vector<FaceId> ids;
          int consents = 0;
          if (!collection.empty()) {
            const Collection c = require_collection(collection);
            ids = face_ids_where("collection_id = ? AND subject = ?", c.id, subject);
            delete_faces(ids);
            db_.prepare("DELETE FROM consents WHERE collection_id = ? AND subject = ?").bind(1, c.id).bind(2, subject).run();
            consents = db_.changes();
            db_.prepare("DELETE FROM audit_subjects WHERE subject = ? AND collection = ?").bind(1, subject).bind(2, c.name).run();
          } else {
            ids = face_ids_where("subject = ?", subject);
            delete_faces(ids);
            db_.prepare("DELETE FROM consents WHERE subject = ?").bind(1, subject).run();
            consents = db_.changes();
            db_.prepare("DELETE FROM audit_subjects WHERE subject = ?").bind(1, subject).run();
            // Without the salt, the tags left in the chain cannot be linked back
            // to this subject even by someone who guesses the identifier. The
            // erasure entry below gets a fresh salt.
            db_.prepare("DELETE FROM subject_salts WHERE subject = ?").bind(1, subject).run();
          }
          const int names_scrubbed = db_.changes();
          audit.details = json{{"scope", collection.empty() ? "all collections" : "collection"},
                               {"face_ids", ids_json(ids)},
                               {"consents_deleted", consents},
                               {"audit_names_scrubbed", names_scrubbed}}
                              .dump(-1, ' ', false, json::error_handler_t::replace);
          return ids;
        });
  }

  Result<std::string> export_subject(std::string_view subject, const AuditContext& ctx) override {
    return write_op<std::string>(ctx, AuditDraft{"export_subject", "", {std::string(subject)}, "{}", "ok"},
                                 [&](AuditDraft& audit) {
      require_subject(subject);
      std::vector<Consent> consents;
      std::vector<FaceRecord> faces;
      std::vector<AuditEntry> entries;
      {
        Statement st = db_.prepare(
            "SELECT c.id, c.subject, c.purpose, c.evidence_sha256, c.collected_by, c.granted_at, c.expires_at,"
            " c.revoked_at, k.name FROM consents c JOIN collections k ON k.id = c.collection_id"
            " WHERE c.subject = ? ORDER BY c.id");
        st.bind(1, subject);
        while (st.step()) consents.push_back(consent_from(st, st.column_text(8)));
      }
      {
        Statement st = db_.prepare(std::string(kFaceColumns) + " WHERE f.subject = ? ORDER BY f.id");
        st.bind(1, subject);
        while (st.step()) faces.push_back(face_from(st, false));
      }
      {
        Statement st = db_.prepare(std::string(kAuditColumns) +
                                   " WHERE seq IN (SELECT seq FROM audit_subjects WHERE subject = ?) ORDER BY seq");
        st.bind(1, subject);
        while (st.step()) entries.push_back(audit_from(st, false));
      }
      audit.details = subject_export_details(consents.size(), faces.size(), entries.size());
      return subject_export_json(subject, clock_(), consents, faces, entries);
    });
  }

  Result<RetentionReport> retention_run(TimePoint now_tp, const AuditContext& ctx) override {
    return write_op<RetentionReport>(ctx, AuditDraft{"retention_run", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      RetentionReport report;
      const std::int64_t now = ms(now_tp);
      std::vector<Collection> collections;
      {
        Statement st = db_.prepare(std::string(kCollectionColumns) + " ORDER BY id");
        while (st.step()) collections.push_back(collection_from(st));
      }
      int touched = 0;
      for (const Collection& c : collections) {
        std::set<FaceId> by_age;
        std::set<FaceId> by_consent;
        std::set<std::string> subjects;
        {
          Statement st = db_.prepare("SELECT id, subject FROM faces WHERE collection_id = ? AND created_at < ?");
          st.bind(1, c.id).bind(2, now - static_cast<std::int64_t>(c.retention_days) * kMsPerDay);
          while (st.step()) {
            by_age.insert(st.column_int(0));
            subjects.insert(st.column_text(1));
          }
        }
        {
          Statement st = db_.prepare(
              "SELECT f.id, f.subject FROM faces f WHERE f.collection_id = ?1 AND NOT EXISTS ("
              " SELECT 1 FROM consents k WHERE k.collection_id = ?1 AND k.subject = f.subject AND k.purpose = ?2"
              " AND k.revoked_at IS NULL AND k.granted_at <= ?3 AND (k.expires_at IS NULL OR k.expires_at > ?3))");
          st.bind(1, c.id).bind(2, c.purpose).bind(3, now);
          while (st.step()) {
            const FaceId id = st.column_int(0);
            if (by_age.count(id) == 0) by_consent.insert(id);
            subjects.insert(st.column_text(1));
          }
        }
        if (by_age.empty() && by_consent.empty()) continue;
        std::vector<FaceId> ids(by_age.begin(), by_age.end());
        ids.insert(ids.end(), by_consent.begin(), by_consent.end());
        std::sort(ids.begin(), ids.end());
        delete_faces(ids);
        report.expired_by_age += static_cast<std::int64_t>(by_age.size());
        report.without_consent += static_cast<std::int64_t>(by_consent.size());
        report.removed.insert(report.removed.end(), ids.begin(), ids.end());
        ++touched;
        append_audit(ctx, AuditDraft{"retention_purge", c.name, {subjects.begin(), subjects.end()},
                                     json{{"face_ids", ids_json(ids)},
                                          {"expired_by_age", by_age.size()},
                                          {"without_consent", by_consent.size()},
                                          {"retention_days", c.retention_days},
                                          {"as_of", ms(now_tp)}}
                                         .dump(-1, ' ', false, json::error_handler_t::replace),
                                     "ok"});
      }
      db_.prepare("DELETE FROM search_counters WHERE (unit = 'm' AND bucket_start < ?) OR (unit = 'd' AND bucket_start < ?)")
          .bind(1, now - kMinuteBucketHorizonMs - kMsPerDay)
          .bind(2, now - kDayBucketHorizonMs)
          .run();
      report.counters_pruned = db_.changes();
      prune_change_feed(now);
      std::sort(report.removed.begin(), report.removed.end());
      audit.details = json{{"as_of", ms(now_tp)}, {"collections_purged", touched},
                           {"faces_removed", report.removed.size()},
                           {"expired_by_age", report.expired_by_age},
                           {"without_consent", report.without_consent},
                           {"counters_pruned", report.counters_pruned}}
                          .dump(-1, ' ', false, json::error_handler_t::replace);
      return report;
    });
  }

  Result<std::vector<FaceRecord>> load_faces(std::string_view collection) override {
    return read_op<std::vector<FaceRecord>>([&] {
      const Collection c = require_collection(collection);
      std::vector<FaceRecord> out;
      Statement st = db_.prepare(std::string(kFaceColumns) + " WHERE f.collection_id = ? ORDER BY f.id");
      st.bind(1, c.id);
      while (st.step()) out.push_back(face_from(st, true));
      return out;
    });
  }

  Result<std::vector<FaceRecord>> get_faces(std::span<const FaceId> ids, bool with_embeddings) override {
    return read_op<std::vector<FaceRecord>>([&] {
      std::vector<FaceId> sorted(ids.begin(), ids.end());
      std::sort(sorted.begin(), sorted.end());
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
      std::vector<FaceRecord> out;
      for (FaceId id : sorted) {
        Statement st = db_.prepare(std::string(kFaceColumns) + " WHERE f.id = ?");
        st.bind(1, id);
        if (st.step()) out.push_back(face_from(st, with_embeddings));
      }
      return out;
    });
  }

  Result<std::vector<FaceId>> existing_faces(std::span<const FaceId> ids) override {
    return read_op<std::vector<FaceId>>([&] {
      std::vector<FaceId> sorted(ids.begin(), ids.end());
      std::sort(sorted.begin(), sorted.end());
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
      std::vector<FaceId> out;
      const std::int64_t now = ms(clock_());
      for (FaceId id : sorted) {
        // The face exists and its subject may still be identified: has_valid_consent's rule.
        Statement st = db_.prepare(
            "SELECT 1 FROM faces f JOIN collections k ON k.id = f.collection_id WHERE f.id = ?1 AND EXISTS ("
            "SELECT 1 FROM consents c WHERE c.collection_id = f.collection_id AND c.subject = f.subject"
            " AND c.purpose = k.purpose AND c.revoked_at IS NULL AND c.granted_at <= ?2"
            " AND (c.expires_at IS NULL OR c.expires_at > ?2))");
        st.bind(1, id).bind(2, now);
        if (st.step()) out.push_back(id);
      }
      return out;
    });
  }

  // --------------------------------------------------------------- searches

  Status record_search(const SearchRecord& s) override {
    AuditDraft draft{"search", s.collection, s.subjects, "{}", s.result};
    return write_op<Ok>(s.context, std::move(draft), [&](AuditDraft& audit) {
      require_text(s.context.reason, "reason (every search states why)");
      if (s.result != "ok" && s.result.rfind("refused: ", 0) != 0) {
        fail(ErrorCode::kInvalidArgument, "result must be \"ok\" or \"refused: <code>\"");
      }
      for (const std::string& subject : s.subjects) require_subject(subject);
      require_collection(s.collection);
      audit.details = compact_json(s.details_json, "details_json");
      const std::int64_t now = ms(clock_());
      for (auto [unit, width] : {std::pair{"m", kMsPerMinute}, std::pair{"d", kMsPerDay}}) {
        if (!s.charged) break;
        db_.prepare("INSERT INTO search_counters (actor, unit, bucket_start, count) VALUES (?, ?, ?, 1)"
                    " ON CONFLICT (actor, unit, bucket_start) DO UPDATE SET count = count + 1")
            .bind(1, s.context.actor)
            .bind(2, std::string_view(unit))
            .bind(3, now - (now % width))
            .run();
      }
      return Ok{};
    });
  }

  Result<std::int64_t> search_count(std::string_view actor, TimePoint since) override {
    return read_op<std::int64_t>([&] {
      const std::int64_t now = ms(clock_());
      const std::int64_t from = ms(since);
      const bool fine = now - from <= kMinuteBucketHorizonMs;
      const std::int64_t width = fine ? kMsPerMinute : kMsPerDay;
      Statement st = db_.prepare(
          "SELECT COALESCE(SUM(count), 0) FROM search_counters WHERE actor = ? AND unit = ? AND bucket_start >= ?");
      st.bind(1, actor).bind(2, std::string_view(fine ? "m" : "d")).bind(3, from - (((from % width) + width) % width));
      st.step();
      return st.column_int(0);
    });
  }

  // ------------------------------------------------------------------ audit

  Result<std::vector<AuditEntry>> audit_list(const AuditFilter& f) override {
    return read_op<std::vector<AuditEntry>>([&] {
      std::string sql = std::string(kAuditColumns) + " WHERE 1 = 1";
      if (f.subject) sql += " AND seq IN (SELECT seq FROM audit_subjects WHERE subject = :subject)";
      if (f.collection) sql += " AND collection = :collection";
      if (f.operation) sql += " AND operation = :operation";
      if (f.actor) sql += " AND actor = :actor";
      if (f.since) sql += " AND time >= :since";
      if (f.until) sql += " AND time < :until";
      if (f.after_seq) sql += " AND seq > :after";
      if (f.before_seq) sql += " AND seq < :before";
      sql += f.newest_first ? " ORDER BY seq DESC LIMIT :limit" : " ORDER BY seq LIMIT :limit";
      Statement st = db_.prepare(sql);
      int i = 1;
      if (f.subject) st.bind(i++, *f.subject);
      if (f.collection) st.bind(i++, *f.collection);
      if (f.operation) st.bind(i++, *f.operation);
      if (f.actor) st.bind(i++, *f.actor);
      if (f.since) st.bind(i++, ms(*f.since));
      if (f.until) st.bind(i++, ms(*f.until));
      if (f.after_seq) st.bind(i++, *f.after_seq);
      if (f.before_seq) st.bind(i++, *f.before_seq);
      st.bind(i, static_cast<std::int64_t>(std::min<std::size_t>(f.limit, 1'000'000)));
      std::vector<AuditEntry> out;
      while (st.step()) out.push_back(audit_from(st, true));
      return out;
    });
  }

  Result<AuditVerification> audit_verify() override {
    // On a connection of its own, without mutex_: the whole log is read and rehashed, and
    // under WAL a reader holds up neither the writers nor the other readers, so the
    // store's other calls (searches, enrollments, revocations) go on meanwhile.
    try {
      Database db(path_, false);
      db.exec("PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms_));
      Transaction txn(db, Transaction::Kind::kRead);
      AuditVerification result = verify_chain(db);
      txn.commit();
      return result;
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  // requires: a read transaction open on `db`.
  AuditVerification verify_chain(Database& db) {
    {
      AuditChainVerifier verifier([&db](std::string_view hash) -> std::optional<std::int64_t> {
        Statement st = db.prepare("SELECT seq FROM audit_log WHERE hash = ? ORDER BY seq LIMIT 1");
        st.bind(1, hash);
        if (!st.step()) return std::nullopt;
        return st.column_int(0);
      });
      {
        Statement st = db.prepare(std::string(kAuditColumns) + " ORDER BY seq");
        while (st.step()) verifier.add(audit_from(st, false));
      }
      const AuditHead head = read_head(db);
      AuditVerification result = verifier.finish(head.seq, head.hash);
      // The unhashed name index must agree with the hashed tags. Checked after
      // the chain so a deleted entry is reported as such, not as a dangling name.
      const auto flag = [&result](std::int64_t seq, std::string message) {
        result.intact = false;
        if (result.issues.size() < AuditVerification::kMaxIssues) {
          result.issues.push_back(AuditIssue{seq, AuditBreak::kSubjectIndex, std::move(message)});
        }
      };
      Statement st = db.prepare(
          "SELECT s.seq, s.tag, s.subject, a.subject_tags, k.salt FROM audit_subjects s"
          " LEFT JOIN audit_log a ON a.seq = s.seq LEFT JOIN subject_salts k ON k.subject = s.subject ORDER BY s.seq");
      while (st.step()) {
        const std::int64_t seq = st.column_int(0);
        const std::string tag = st.column_text(1);
        if (st.column_is_null(3)) {
          if (seq <= result.last_seq) flag(seq, "a subject name is indexed for seq " + std::to_string(seq) + ", which does not exist");
          continue;
        }
        const json tags = json::parse(st.column_text(3), nullptr, false);
        const bool listed = tags.is_array() && std::find(tags.begin(), tags.end(), json(tag)) != tags.end();
        // Every indexed name has a salt (erasure deletes both together).
        const bool matches = !st.column_is_null(4) && audit_subject_tag(st.column_text(4), st.column_text(2)) == tag;
        if (!listed || !matches) {
          flag(seq, "the subject name indexed for seq " + std::to_string(seq) +
                        " does not match the entry's hashed subject tags (edited)");
        }
      }
      return result;
    }
  }

  Result<AuditHead> audit_head() override {
    return read_op<AuditHead>([&] { return read_head(); });
  }

  // --------------------------------------------------------------- API keys

  Status put_api_key(const ApiKeyRecord& key, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"key_create", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_api_key(key);
      {
        Statement st = db_.prepare("SELECT 1 FROM api_keys WHERE name = ?");
        st.bind(1, key.name);
        if (st.step()) fail(ErrorCode::kAlreadyExists, "an API key named '" + key.name + "' already exists");
      }
      const std::int64_t created = key.created_at == TimePoint{} ? ms(clock_()) : ms(key.created_at);
      db_.prepare("INSERT INTO api_keys (name, hash_hex, scopes_json, created_at) VALUES (?, ?, ?, ?)")
          .bind(1, key.name)
          .bind(2, key.hash_hex)
          .bind(3, key.scopes_json)
          .bind(4, created)
          .run();
      audit.details = api_key_details(key);  // never the hash
      return Ok{};
    });
  }

  Result<std::vector<ApiKeyRecord>> list_api_keys() override {
    return read_op<std::vector<ApiKeyRecord>>([&] {
      std::vector<ApiKeyRecord> out;
      Statement st = db_.prepare("SELECT name, hash_hex, scopes_json, created_at FROM api_keys ORDER BY name");
      while (st.step()) {
        out.push_back(ApiKeyRecord{st.column_text(0), st.column_text(1), st.column_text(2), from_ms(st.column_int(3))});
      }
      return out;
    });
  }

  Status delete_api_key(std::string_view name, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"key_delete", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      require_text(name, "key name", 256);
      db_.prepare("DELETE FROM api_keys WHERE name = ?").bind(1, name).run();
      if (db_.changes() == 0) fail(ErrorCode::kNotFound, "no API key named '" + std::string(name) + "'");
      audit.details = json{{"name", name}}.dump(-1, ' ', false, json::error_handler_t::replace);
      return Ok{};
    });
  }

  // ------------------------------------------------------------ change feed

  Result<ChangeBatch> changes_since(std::int64_t after, std::size_t limit) override {
    return read_op<ChangeBatch>([&] {
      ChangeBatch batch;
      const std::int64_t pruned =
          db_.query_int("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'feed_pruned_through'").value_or(0);
      const std::int64_t head = read_head().seq;
      if (after < pruned) {
        batch.truncated = true;
        batch.version = head;
        return batch;
      }
      if (limit == 0) {
        batch.version = after;
        return batch;
      }
      std::int64_t last_id = 0;
      {
        Statement st = db_.prepare(
            "SELECT id, version, kind, collection, face_id FROM face_changes WHERE version > ? ORDER BY version, id LIMIT ?");
        st.bind(1, after).bind(2, static_cast<std::int64_t>(std::min<std::size_t>(limit, 1'000'000)));
        while (st.step()) {
          last_id = st.column_int(0);
          batch.changes.push_back(FaceChange{st.column_int(1), parse_change_kind(st.column_text(2)), st.column_text(3),
                                             st.column_int(4)});
        }
      }
      if (batch.changes.size() == limit) {
        // Never split a version: a caller resuming from it would miss the rest.
        Statement st = db_.prepare(
            "SELECT version, kind, collection, face_id FROM face_changes WHERE version = ? AND id > ? ORDER BY id");
        st.bind(1, batch.changes.back().version).bind(2, last_id);
        while (st.step()) {
          batch.changes.push_back(
              FaceChange{st.column_int(0), parse_change_kind(st.column_text(1)), st.column_text(2), st.column_int(3)});
        }
      }
      batch.version = batch.changes.empty() ? head : batch.changes.back().version;
      return batch;
    });
  }

  Status wait_for_change(std::int64_t after, std::chrono::milliseconds timeout) override {
    // SQLite has no notifications across processes: poll the newest version,
    // a single index lookup, every kPollInterval without holding the mutex in between.
    constexpr std::chrono::milliseconds kPollInterval{25};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        try {
          const std::int64_t newest = db_.query_int("SELECT MAX(version) FROM face_changes").value_or(0);
          if (newest > after) return ok_status();
        } catch (const StoreFailure& f) {
          return f.error;
        }
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return ok_status();
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(kPollInterval, deadline - now));
    }
  }

  Status ping() override {
    std::lock_guard lock(mutex_);
    try {
      db_.query_int("SELECT 1");
      return ok_status();
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  Status checkpoint() override {
    std::lock_guard lock(mutex_);
    try {
      Statement st = db_.prepare("PRAGMA wal_checkpoint(TRUNCATE)");
      if (st.step() && st.column_int(0) != 0) {
        return Error{ErrorCode::kStoreError, "checkpoint blocked by another connection; retry"};
      }
      return ok_status();
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

 private:

  // Runs `fn` under the mutex in a read snapshot.
  template <typename T, typename Fn>
  Result<T> read_op(Fn&& fn) {
    std::lock_guard lock(mutex_);
    try {
      Transaction txn(db_, Transaction::Kind::kRead);
      T out = fn();
      txn.commit();
      return out;
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  // Runs `fn` in a write transaction; fn fills in the draft's details, and the
  // entry is appended before COMMIT. On refusal the transaction is rolled back
  // and the refusal is audited (details as drafted before fn ran).
  template <typename T, typename Fn>
  Result<T> write_op(const AuditContext& ctx, AuditDraft draft, Fn&& fn) {
    std::lock_guard lock(mutex_);
    Error error;
    try {
      pending_changes_.clear();
      require_actor(ctx);
      Transaction txn(db_);
      AuditDraft audit = draft;
      T out = fn(audit);
      append_audit(ctx, audit);
      txn.commit();
      return out;
    } catch (const StoreFailure& f) {
      error = f.error;
    }
    pending_changes_.clear();  // rolled back with the transaction
    return audit_refusal(draft, std::move(error), ctx);
  }

  // Audits a refused operation in a transaction of its own; returns `error`. Names that
  // failed validation are not recorded (they may be garbage, or someone's data in the
  // wrong field). requires: mutex_ held, no transaction open.
  Error audit_refusal(const AuditDraft& draft, Error error, const AuditContext& ctx) {
    try {
      const AuditDraft refusal = refusal_draft(draft, error.code);
      const AuditContext who = refusal_context(ctx);
      Transaction txn(db_);
      append_audit(who, refusal);
      txn.commit();
    } catch (const StoreFailure& f) {
      error.message += " (and the refusal could not be audited: " + f.error.message + ")";
    }
    return error;
  }

  // Appends one entry; requires an open write transaction.
  void append_audit(const AuditContext& ctx, const AuditDraft& draft) {
    const AuditHead head = read_head();
    std::vector<std::string> subjects;
    const AuditEntry e = build_audit_entry(head, clock_(), ctx, draft,
                                           [this](const std::string& subject) { return salt_for(subject); }, subjects);
    db_.prepare("INSERT INTO audit_log (seq, time, actor, operation, collection, subject_tags, details, reason,"
                " result, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(1, e.seq)
        .bind(2, ms(e.time))
        .bind(3, e.actor)
        .bind(4, e.operation)
        .bind(5, e.collection)
        .bind(6, json(e.subject_tags).dump(-1, ' ', false, json::error_handler_t::replace))
        .bind(7, e.details)
        .bind(8, e.reason)
        .bind(9, e.result)
        .bind(10, e.prev_hash)
        .bind(11, e.hash)
        .run();
    for (std::size_t i = 0; i < subjects.size(); ++i) {
      db_.prepare("INSERT INTO audit_subjects (seq, tag, subject, collection) VALUES (?, ?, ?, ?)")
          .bind(1, e.seq)
          .bind(2, e.subject_tags[i])
          .bind(3, subjects[i])
          .bind(4, e.collection)
          .run();
    }
    db_.prepare("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1").bind(1, e.seq).bind(2, e.hash).run();
    if (db_.changes() != 1) fail(ErrorCode::kIntegrityError, "the audit chain head is missing");
    // The changes made since the last append take this entry's seq as their
    // version: the head is advanced under the write lock, so versions are
    // assigned in commit order.
    for (const PendingChange& c : pending_changes_) {
      db_.prepare("INSERT INTO face_changes (version, kind, collection, face_id, time) VALUES (?, ?, ?, ?, ?)")
          .bind(1, e.seq)
          .bind(2, change_kind_name(c.kind))
          .bind(3, c.collection)
          .bind(4, c.face_id)
          .bind(5, ms(e.time))
          .run();
    }
    pending_changes_.clear();
  }

  std::string salt_for(const std::string& subject) {
    {
      Statement st = db_.prepare("SELECT salt FROM subject_salts WHERE subject = ?");
      st.bind(1, subject);
      if (st.step()) return st.column_text(0);
    }
    std::array<std::uint8_t, 16> raw{};
    randombytes_buf(raw.data(), raw.size());
    const std::string salt = to_hex(raw);
    db_.prepare("INSERT INTO subject_salts (subject, salt) VALUES (?, ?)").bind(1, subject).bind(2, salt).run();
    return salt;
  }

  AuditHead read_head() { return read_head(db_); }
  static AuditHead read_head(Database& db) {
    Statement st = db.prepare("SELECT seq, hash FROM audit_head WHERE id = 1");
    if (!st.step()) fail(ErrorCode::kIntegrityError, "the audit chain head is missing");
    return AuditHead{st.column_int(0), st.column_text(1)};
  }

  std::optional<Collection> find_collection(std::string_view name) {
    Statement st = db_.prepare(std::string(kCollectionColumns) + " WHERE name = ?");
    st.bind(1, name);
    if (!st.step()) return std::nullopt;
    return collection_from(st);
  }

  Collection require_collection(std::string_view name) {
    require_collection_name(name);
    std::optional<Collection> c = find_collection(name);
    if (!c) fail(ErrorCode::kNotFound, "no collection named '" + std::string(name) + "'");
    return *c;
  }

  bool has_valid_consent(const Collection& c, std::string_view subject, std::int64_t now) {
    Statement st = db_.prepare(
        "SELECT 1 FROM consents WHERE collection_id = ?1 AND subject = ?2 AND purpose = ?3 AND revoked_at IS NULL"
        " AND granted_at <= ?4 AND (expires_at IS NULL OR expires_at > ?4) LIMIT 1");
    st.bind(1, c.id).bind(2, subject).bind(3, c.purpose).bind(4, now);
    return st.step();
  }

  // The ids of faces matching `where`, whose placeholders take `args` in order.
  template <typename... Args>
  std::vector<FaceId> face_ids_where(const std::string& where, const Args&... args) {
    Statement st = db_.prepare("SELECT id FROM faces WHERE " + where + " ORDER BY id");
    int index = 1;
    (st.bind(index++, args), ...);
    std::vector<FaceId> ids;
    while (st.step()) ids.push_back(st.column_int(0));
    return ids;
  }

  // Deletes the faces and queues their removal for the change feed.
  void delete_faces(const std::vector<FaceId>& ids) {
    for (FaceId id : ids) {
      std::string collection;
      {
        Statement st = db_.prepare("SELECT k.name FROM faces f JOIN collections k ON k.id = f.collection_id WHERE f.id = ?");
        st.bind(1, id);
        if (!st.step()) continue;
        collection = st.column_text(0);
      }
      db_.prepare("DELETE FROM faces WHERE id = ?").bind(1, id).run();
      pending_changes_.push_back(PendingChange{FaceChange::Kind::kRemoved, std::move(collection), id});
    }
  }

  // Drops change-feed rows older than kChangeFeedRetentionMs and remembers
  // the newest version dropped, so changes_since() can say a caller missed some.
  void prune_change_feed(std::int64_t now) {
    const std::int64_t cutoff = now - kChangeFeedRetentionMs;
    Statement st = db_.prepare("SELECT MAX(version) FROM face_changes WHERE time < ?");
    st.bind(1, cutoff);
    if (!st.step() || st.column_is_null(0)) return;
    const std::int64_t newest_dropped = st.column_int(0);
    // Whole versions only: a version is kept or dropped entirely.
    db_.prepare("DELETE FROM face_changes WHERE version <= ?").bind(1, newest_dropped).run();
    db_.prepare("INSERT INTO meta (key, value) VALUES ('feed_pruned_through', ?1)"
                " ON CONFLICT (key) DO UPDATE SET value = CASE WHEN CAST(value AS INTEGER) < CAST(?1 AS INTEGER)"
                " THEN ?1 ELSE value END")
        .bind(1, std::to_string(newest_dropped))
        .run();
  }

  void attach_key(const StoreOptions& options) { cipher_ = sqlite_attach_key(db_, path_, options); }

  Collection collection_from(const Statement& st) const {
    Collection c;
    c.id = st.column_int(0);
    c.name = st.column_text(1);
    c.purpose = st.column_text(2);
    c.retention_days = static_cast<int>(st.column_int(3));
    c.match_threshold = static_cast<float>(st.column_double(4));
    c.liveness_required = st.column_int(5) != 0;
    c.created_at = from_ms(st.column_int(6));
    return c;
  }

  static Consent consent_from(const Statement& st, std::string collection) {
    Consent c;
    c.id = st.column_int(0);
    c.collection = std::move(collection);
    c.subject = st.column_text(1);
    c.purpose = st.column_text(2);
    c.evidence_sha256 = st.column_text(3);
    c.collected_by = st.column_text(4);
    c.granted_at = from_ms(st.column_int(5));
    if (auto v = st.column_optional_int(6)) c.expires_at = from_ms(*v);
    if (auto v = st.column_optional_int(7)) c.revoked_at = from_ms(*v);
    return c;
  }

  FaceRecord face_from(const Statement& st, bool decrypt) const {
    FaceRecord f;
    f.id = st.column_int(0);
    f.collection = st.column_text(1);
    f.subject = st.column_text(2);
    const std::int64_t dim = st.column_int(3);
    f.box = FaceBox{static_cast<float>(st.column_double(5)), static_cast<float>(st.column_double(6)),
                    static_cast<float>(st.column_double(7)), static_cast<float>(st.column_double(8))};
    f.detector_score = static_cast<float>(st.column_double(9));
    f.quality_level = st.column_text(10);
    f.quality_json = st.column_text(11);
    f.image_sha256 = st.column_text(12);
    f.model_id = st.column_text(13);
    f.created_at = from_ms(st.column_int(14));
    if (decrypt) {
      const std::vector<std::uint8_t> sealed = st.column_blob(4);
      Result<std::vector<float>> plain = cipher_->open(
          sealed, template_ad(st.column_int(15), f.collection, f.id, f.subject, f.model_id),
          static_cast<std::size_t>(std::max<std::int64_t>(dim, 0)));
      if (!plain) {
        fail(ErrorCode::kIntegrityError, "face " + std::to_string(f.id) + ": " + plain.error().message);
      }
      f.embedding = std::move(plain).value();
    }
    return f;
  }

  AuditEntry audit_from(const Statement& st, bool with_names) {
    AuditEntry e;
    e.seq = st.column_int(0);
    e.time = from_ms(st.column_int(1));
    e.actor = st.column_text(2);
    e.operation = st.column_text(3);
    e.collection = st.column_text(4);
    e.subject_tags = parse_subject_tags(st.column_text(5));
    e.details = st.column_text(6);
    e.reason = st.column_text(7);
    e.result = st.column_text(8);
    e.prev_hash = st.column_text(9);
    e.hash = st.column_text(10);
    if (with_names) {
      Statement names = db_.prepare("SELECT subject FROM audit_subjects WHERE seq = ? ORDER BY subject");
      names.bind(1, e.seq);
      while (names.step()) e.subjects.push_back(names.column_text(0));
    }
    return e;
  }

  std::string path_;
  std::mutex mutex_;
  std::vector<PendingChange> pending_changes_;  // guarded by mutex_; written at the next append_audit
  Database db_;
  std::function<TimePoint()> clock_;
  int busy_timeout_ms_ = 5000;  // for the connections audit_verify opens
  std::unique_ptr<TemplateCipher> cipher_;
};

}  // namespace

std::unique_ptr<TemplateCipher> sqlite_attach_key(Database& db, const std::string& path, const StoreOptions& options) {
  KeyCheckAccess access;
  access.read_kcv = [&db] { return db.query_text("SELECT value FROM meta WHERE key = 'key_check'"); };
  access.count_templates = [&db] { return db.query_int("SELECT COUNT(*) FROM faces").value_or(0); };
  access.insert_kcv_if_absent = [&db](const std::string& kcv) {
    Transaction txn(db);
    db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)").bind(1, kcv).run();
    txn.commit();
  };
  return attach_key(options, path, path + ".key", access);
}

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path, const StoreOptions& options) {
  if (path.empty()) return Error{ErrorCode::kInvalidArgument, "empty database path"};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && !options.create_if_missing) {
    return Error{ErrorCode::kNotFound, "database " + path + " does not exist"};
  }
  try {
    return std::unique_ptr<Store>(std::make_unique<SqliteStore>(path, options));
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

}  // namespace candor::store_detail
