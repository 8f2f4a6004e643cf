// The PostgreSQL implementation of Store: one database shared by several
// Candor nodes.
//
// The rules are the SQLite store's (sqlite_store.cpp), enforced the same way
// with the shared pieces of store_common.h; what differs is concurrency:
//
// - Every writing transaction first locks the audit head row (SELECT ... FOR
//   UPDATE). Writers on all nodes are thereby serialised as SQLite's write
//   lock serialises them: the chain never forks, the consent check in enroll
//   sees every revocation committed before it, and audit seqs (hence change
//   versions) are assigned in commit order. Writers run at READ COMMITTED, so
//   each statement after the lock sees what committed before the lock was granted.
// - Reads run in one REPEATABLE READ snapshot per call.
// - Search counters are upserted (INSERT ... ON CONFLICT DO UPDATE), so rate
//   windows count the searches of every node.
// - Writes that change faces send NOTIFY candor_changes (payload: the
//   version) inside their transaction; PostgreSQL delivers it at commit, and
//   wait_for_change() listens on a connection of its own.
// - A lost connection makes the call fail with kStoreUnavailable; the store
//   reconnects on a later call, at most every 100 ms doubling to 5 s while
//   the server stays unreachable. A connection found dead when a transaction
//   begins is replaced at once and the call proceeds (nothing had been sent).
#include <poll.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "pg_store.h"

namespace candor::store_detail {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
constexpr const char* kChannel = "candor_changes";

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// A PostgreSQL array literal of ids, for "= ANY($1::bigint[])".
std::string id_array(std::span<const FaceId> ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  out += '}';
  return out;
}

// Reconnection with exponential backoff, for one connection.
class Reconnector {
 public:
  // requires: the caller holds the connection's mutex.
  // ensures: connected, or throws kStoreUnavailable (without trying, while backing off).
  void ensure(PgConnection& db) {
    if (db.connected()) return;
    const Clock::time_point now = Clock::now();
    if (now < next_attempt_) {
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now);
      fail(ErrorCode::kStoreUnavailable, "PostgreSQL is unreachable (" + last_error_ + "); next attempt in " +
                                             std::to_string(wait.count()) + " ms");
    }
    try {
      db.connect();
      backoff_ = kFirstBackoff;
      next_attempt_ = {};
      on_connect_(db);
    } catch (const StoreFailure& f) {
      db.close();
      last_error_ = f.error.message;
      next_attempt_ = Clock::now() + backoff_;
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
      throw;
    }
  }
  void set_on_connect(std::function<void(PgConnection&)> fn) { on_connect_ = std::move(fn); }

 private:
  std::chrono::milliseconds backoff_ = kFirstBackoff;
  Clock::time_point next_attempt_{};
  std::string last_error_;
  std::function<void(PgConnection&)> on_connect_ = [](PgConnection&) {};
};

class PgStore final : public Store {
 public:
  PgStore(const std::string& uri, const StoreOptions& options)
      : uri_(uri), db_(uri), listen_(uri), clock_(options.clock) {
    if (!clock_) clock_ = now_ms;
    const bool relaxed = options.durability == Durability::kNormal;
    // Async commit survives a crash of this process or of PostgreSQL (the WAL
    // is written, only not waited for); a power cut may lose the last commits.
    reconnect_.set_on_connect([relaxed](PgConnection& c) {
      if (relaxed) c.exec_script("SET synchronous_commit = off");
    });
    reconnect_.ensure(db_);
    label_ = db_.label();
    if (!options.create_if_missing && pg_schema_version(db_) == 0) {
      fail(ErrorCode::kNotFound, "database " + label_ + " holds no Candor store (and creating one was not allowed)");
    }
    pg_migrate(db_, ms(clock_()));
    attach_key(options);
  }

  // ------------------------------------------------------------ collections

  Result<Collection> create_collection(const NewCollection& spec, const AuditContext& ctx) override {
    return write_op<Collection>(ctx, AuditDraft{"create_collection", spec.name, {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_new_collection(spec);
      if (find_collection(spec.name)) fail(ErrorCode::kAlreadyExists, "collection '" + spec.name + "' already exists");
      db_.exec("INSERT INTO collections (name, purpose, retention_days, match_threshold, liveness_required, created_at)"
               " VALUES ($1, $2, $3, $4, $5, $6)",
               PgParams()
                   .add(spec.name)
                   .add(spec.purpose)
                   .add(spec.retention_days)
                   .add(static_cast<double>(spec.match_threshold))
                   .add(spec.liveness_required)
                   .add(ms(clock_())));
      Collection c = *find_collection(spec.name);
      audit.details = dump(json{{"collection_id", c.id},
                                {"purpose", c.purpose},
                                {"retention_days", c.retention_days},
                                {"match_threshold", c.match_threshold},
                                {"liveness_required", c.liveness_required}});
      return c;
    });
  }

  Result<std::vector<Collection>> list_collections() override {
    return read_op<std::vector<Collection>>([&] {
      std::vector<Collection> out;
      PgResult r = db_.exec(std::string(kCollectionColumns) + " ORDER BY name");
      for (int i = 0; i < r.rows(); ++i) out.push_back(collection_from(r, i));
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
      std::vector<FaceId> ids = ids_of(db_.exec("DELETE FROM faces WHERE collection_id = $1 RETURNING id",
                                                PgParams().add(c.id)));
      std::sort(ids.begin(), ids.end());  // RETURNING has no order; the contract says ascending
      const std::int64_t consents =
          db_.exec("DELETE FROM consents WHERE collection_id = $1", PgParams().add(c.id)).affected();
      db_.exec("DELETE FROM collections WHERE id = $1", PgParams().add(c.id));
      pending_changes_.push_back(PendingChange{FaceChange::Kind::kCollectionDeleted, c.name, 0});
      audit.details = dump(json{{"collection_id", c.id}, {"faces_deleted", ids.size()}, {"consents_deleted", consents}});
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
      PgResult r = db_.exec(
          "INSERT INTO consents (collection_id, subject, purpose, evidence_sha256, collected_by, granted_at, expires_at)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
          PgParams()
              .add(c.id)
              .add(in.subject)
              .add(purpose)
              .add(in.evidence_sha256)
              .add(in.collected_by)
              .add(ms(granted))
              .add(in.expires_at ? std::optional<std::int64_t>(ms(*in.expires_at)) : std::nullopt));
      Consent out{r.int64(0, 0), c.name, in.subject, purpose, in.evidence_sha256,
                  in.collected_by, granted, in.expires_at, std::nullopt};
      json d{{"consent_id", out.id}, {"purpose_matches_collection", purpose == c.purpose},
             {"granted_at", ms(granted)}, {"evidence_sha256", in.evidence_sha256}};
      if (in.expires_at) d["expires_at"] = ms(*in.expires_at);
      audit.details = dump(d);
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
          const std::int64_t revoked =
              db_.exec("UPDATE consents SET revoked_at = $1 WHERE collection_id = $2 AND subject = $3"
                       " AND revoked_at IS NULL",
                       PgParams().add(ms(clock_())).add(c.id).add(subject))
                  .affected();
          std::vector<FaceId> ids = ids_of(db_.exec(
              "SELECT id FROM faces WHERE collection_id = $1 AND subject = $2 ORDER BY id", PgParams().add(c.id).add(subject)));
          if (revoked == 0 && ids.empty()) {
            fail(ErrorCode::kNotFound, "no active consent for this subject in collection '" + c.name + "'");
          }
          delete_faces(ids);
          audit.details = dump(json{{"consents_revoked", revoked}, {"face_ids", ids}});
          return ids;
        });
  }

  Result<std::vector<Consent>> list_consents(std::string_view collection, std::string_view subject) override {
    return read_op<std::vector<Consent>>([&] {
      const Collection c = require_collection(collection);
      std::vector<Consent> out;
      PgResult r = db_.exec(
          "SELECT id, subject, purpose, evidence_sha256, collected_by, granted_at, expires_at, revoked_at"
          " FROM consents WHERE collection_id = $1 AND ($2 = '' OR subject = $2) ORDER BY id",
          PgParams().add(c.id).add(subject));
      for (int i = 0; i < r.rows(); ++i) out.push_back(consent_from(r, i, c.name));
      return out;
    });
  }

  // ------------------------------------------------------------------ faces

  Result<std::vector<SubjectSummary>> list_subjects(std::string_view collection) override {
    return read_op<std::vector<SubjectSummary>>([&] {
      const Collection c = require_collection(collection);
      const std::int64_t now = ms(clock_());
      // One pass over the subject index of faces and consents; no template is read.
      PgResult r = db_.exec(
          "SELECT subject, SUM(faces), BOOL_OR(valid), MAX(CASE WHEN valid THEN COALESCE(expires_at, $3) END) FROM ("
          " SELECT subject, 1 AS faces, false AS valid, NULL::bigint AS expires_at FROM faces WHERE collection_id = $1"
          " UNION ALL SELECT subject, 0, (purpose = $2 AND granted_at <= $4"
          " AND (expires_at IS NULL OR expires_at > $4)), expires_at FROM consents"
          " WHERE collection_id = $1 AND revoked_at IS NULL) s"
          " GROUP BY subject ORDER BY subject",
          PgParams().add(c.id).add(c.purpose).add(INT64_MAX).add(now));
      std::vector<SubjectSummary> out;
      for (int i = 0; i < r.rows(); ++i) {
        SubjectSummary summary{r.text(i, 0), r.int64(i, 1), r.boolean(i, 2), std::nullopt};
        if (!r.is_null(i, 3) && r.int64(i, 3) != INT64_MAX) summary.consent_expires_at = from_ms(r.int64(i, 3));
        out.push_back(std::move(summary));
      }
      return out;
    });
  }

  Status check_enroll_consent(std::string_view collection, std::string_view subject, std::size_t faces_offered,
                              const AuditContext& ctx) override {
    const AuditDraft draft = enroll_draft(collection, subject, faces_offered);
    auto valid = read_op<bool>([&] {
      require_actor(ctx);
      require_subject(subject);
      const Collection c = require_collection(collection);
      if (!has_valid_consent(c, subject, ms(clock_()))) fail(ErrorCode::kConsentRequired, no_consent_message(c));
      return true;
    });
    if (valid) return ok_status();
    if (valid.error().code == ErrorCode::kStoreUnavailable) return valid.error();
    std::lock_guard lock(mutex_);
    return audit_refusal(draft, valid.error(), ctx);
  }

  Result<std::vector<FaceId>> enroll(std::string_view collection, std::string_view subject,
                                     const std::vector<NewFace>& faces, const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(ctx, enroll_draft(collection, subject, faces.size()), [&](AuditDraft& audit) {
      require_subject(subject);
      validate_faces(faces);
      const Collection c = require_collection(collection);
      const std::int64_t now = ms(clock_());
      // Checked after the head lock: a revocation committed a moment ago (on
      // any node) is seen, and none can commit before our inserts do.
      if (!has_valid_consent(c, subject, now)) fail(ErrorCode::kConsentRequired, no_consent_message(c));
      {
        PgResult r = db_.exec("SELECT model_id, dim FROM faces WHERE collection_id = $1 LIMIT 1", PgParams().add(c.id));
        if (r.rows() > 0) {
          const std::string model = r.text(0, 0);
          const std::int64_t dim = r.int64(0, 1);
          if (model != faces.front().model_id || dim != static_cast<std::int64_t>(faces.front().embedding.size())) {
            fail(ErrorCode::kInvalidArgument, "collection '" + c.name + "' holds " + std::to_string(dim) +
                                                  "-d templates from model '" + model +
                                                  "'; templates from another model cannot be mixed in");
          }
        }
      }
      // The id is part of the associated data, so draw the ids first and seal with them.
      std::vector<FaceId> ids = ids_of(db_.exec(
          "SELECT nextval(pg_get_serial_sequence('faces', 'id')) FROM generate_series(1, $1)",
          PgParams().add(static_cast<std::int64_t>(faces.size()))));
      for (std::size_t i = 0; i < faces.size(); ++i) {
        const NewFace& f = faces[i];
        const std::vector<std::uint8_t> sealed =
            cipher_->seal(f.embedding, template_ad(c.id, c.name, ids[i], subject, f.model_id));
        db_.exec("INSERT INTO faces (id, collection_id, subject, dim, template, box_x, box_y, box_w, box_h,"
                 " detector_score, quality_level, quality_json, image_sha256, model_id, created_at)"
                 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                 PgParams()
                     .add(ids[i])
                     .add(c.id)
                     .add(subject)
                     .add(static_cast<std::int64_t>(f.embedding.size()))
                     .add_bytes(sealed)
                     .add(static_cast<double>(f.box.x))
                     .add(static_cast<double>(f.box.y))
                     .add(static_cast<double>(f.box.w))
                     .add(static_cast<double>(f.box.h))
                     .add(static_cast<double>(f.detector_score))
                     .add(f.quality_level)
                     .add(compact_json(f.quality_json, "quality_json"))
                     .add(f.image_sha256)
                     .add(f.model_id)
                     .add(now));
        pending_changes_.push_back(PendingChange{FaceChange::Kind::kAdded, c.name, ids[i]});
      }
      audit.details = dump(json{{"face_ids", ids}, {"model_id", faces.front().model_id},
                                {"dim", faces.front().embedding.size()}});
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
          std::int64_t consents = 0;
          std::int64_t names_scrubbed = 0;
          if (!collection.empty()) {
            const Collection c = require_collection(collection);
            ids = ids_of(db_.exec("SELECT id FROM faces WHERE collection_id = $1 AND subject = $2 ORDER BY id",
                                  PgParams().add(c.id).add(subject)));
            delete_faces(ids);
            consents = db_.exec("DELETE FROM consents WHERE collection_id = $1 AND subject = $2",
                                PgParams().add(c.id).add(subject))
                           .affected();
            names_scrubbed = db_.exec("DELETE FROM audit_subjects WHERE subject = $1 AND collection = $2",
                                      PgParams().add(subject).add(c.name))
                                 .affected();
          } else {
            ids = ids_of(db_.exec("SELECT id FROM faces WHERE subject = $1 ORDER BY id", PgParams().add(subject)));
            delete_faces(ids);
            consents = db_.exec("DELETE FROM consents WHERE subject = $1", PgParams().add(subject)).affected();
            db_.exec("DELETE FROM audit_subjects WHERE subject = $1", PgParams().add(subject));
            // Without the salt, the tags left in the chain cannot be linked back
            // to this subject. (names_scrubbed counts the salt, as in the SQLite store.)
            names_scrubbed = db_.exec("DELETE FROM subject_salts WHERE subject = $1", PgParams().add(subject)).affected();
          }
          audit.details = dump(json{{"scope", collection.empty() ? "all collections" : "collection"},
                                    {"face_ids", ids},
                                    {"consents_deleted", consents},
                                    {"audit_names_scrubbed", names_scrubbed}});
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
        PgResult r = db_.exec(
            "SELECT c.id, c.subject, c.purpose, c.evidence_sha256, c.collected_by, c.granted_at, c.expires_at,"
            " c.revoked_at, k.name FROM consents c JOIN collections k ON k.id = c.collection_id"
            " WHERE c.subject = $1 ORDER BY c.id",
            PgParams().add(subject));
        for (int i = 0; i < r.rows(); ++i) consents.push_back(consent_from(r, i, r.text(i, 8)));
      }
      {
        PgResult r = db_.exec(std::string(kFaceColumns) + " WHERE f.subject = $1 ORDER BY f.id", PgParams().add(subject));
        for (int i = 0; i < r.rows(); ++i) faces.push_back(face_from(r, i, false));
      }
      {
        PgResult r = db_.exec(std::string(kAuditColumns) +
                                  " WHERE seq IN (SELECT seq FROM audit_subjects WHERE subject = $1) ORDER BY seq",
                              PgParams().add(subject));
        for (int i = 0; i < r.rows(); ++i) entries.push_back(audit_from(r, i));
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
        PgResult r = db_.exec(std::string(kCollectionColumns) + " ORDER BY id");
        for (int i = 0; i < r.rows(); ++i) collections.push_back(collection_from(r, i));
      }
      int touched = 0;
      for (const Collection& c : collections) {
        std::set<FaceId> by_age;
        std::set<FaceId> by_consent;
        std::set<std::string> subjects;
        {
          PgResult r = db_.exec("SELECT id, subject FROM faces WHERE collection_id = $1 AND created_at < $2",
                                PgParams().add(c.id).add(now - static_cast<std::int64_t>(c.retention_days) * kMsPerDay));
          for (int i = 0; i < r.rows(); ++i) {
            by_age.insert(r.int64(i, 0));
            subjects.insert(r.text(i, 1));
          }
        }
        {
          PgResult r = db_.exec(
              "SELECT f.id, f.subject FROM faces f WHERE f.collection_id = $1 AND NOT EXISTS ("
              " SELECT 1 FROM consents k WHERE k.collection_id = $1 AND k.subject = f.subject AND k.purpose = $2"
              " AND k.revoked_at IS NULL AND k.granted_at <= $3 AND (k.expires_at IS NULL OR k.expires_at > $3))",
              PgParams().add(c.id).add(c.purpose).add(now));
          for (int i = 0; i < r.rows(); ++i) {
            const FaceId id = r.int64(i, 0);
            if (by_age.count(id) == 0) by_consent.insert(id);
            subjects.insert(r.text(i, 1));
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
                                     dump(json{{"face_ids", ids},
                                               {"expired_by_age", by_age.size()},
                                               {"without_consent", by_consent.size()},
                                               {"retention_days", c.retention_days},
                                               {"as_of", ms(now_tp)}}),
                                     "ok"});
      }
      report.counters_pruned =
          db_.exec("DELETE FROM search_counters WHERE (unit = 'm' AND bucket_start < $1) OR (unit = 'd' AND bucket_start < $2)",
                   PgParams().add(now - kMinuteBucketHorizonMs - kMsPerDay).add(now - kDayBucketHorizonMs))
              .affected();
      prune_change_feed(now);
      std::sort(report.removed.begin(), report.removed.end());
      audit.details = dump(json{{"as_of", ms(now_tp)}, {"collections_purged", touched},
                                {"faces_removed", report.removed.size()},
                                {"expired_by_age", report.expired_by_age},
                                {"without_consent", report.without_consent},
                                {"counters_pruned", report.counters_pruned}});
      return report;
    });
  }

  Result<std::vector<FaceRecord>> load_faces(std::string_view collection) override {
    return read_op<std::vector<FaceRecord>>([&] {
      const Collection c = require_collection(collection);
      std::vector<FaceRecord> out;
      // In pages (one snapshot): a whole large collection in one result would
      // hold every template twice over, as hex text, at once.
      constexpr std::int64_t kPage = 5000;
      FaceId after = 0;
      for (;;) {
        PgResult r = db_.exec(std::string(kFaceColumns) + " WHERE f.collection_id = $1 AND f.id > $2 ORDER BY f.id LIMIT $3",
                              PgParams().add(c.id).add(after).add(kPage));
        for (int i = 0; i < r.rows(); ++i) out.push_back(face_from(r, i, true));
        if (r.rows() < kPage) break;
        after = out.back().id;
      }
      return out;
    });
  }

  Result<std::vector<FaceRecord>> get_faces(std::span<const FaceId> ids, bool with_embeddings) override {
    return read_op<std::vector<FaceRecord>>([&] {
      std::vector<FaceRecord> out;
      if (ids.empty()) return out;
      PgResult r = db_.exec(std::string(kFaceColumns) + " WHERE f.id = ANY($1::bigint[]) ORDER BY f.id",
                            PgParams().add(id_array(ids)));
      for (int i = 0; i < r.rows(); ++i) out.push_back(face_from(r, i, with_embeddings));
      return out;
    });
  }

  Result<std::vector<FaceId>> existing_faces(std::span<const FaceId> ids) override {
    return read_op<std::vector<FaceId>>([&] {
      if (ids.empty()) return std::vector<FaceId>{};
      // The face exists and its subject may still be identified: has_valid_consent's rule.
      return ids_of(db_.exec(
          "SELECT f.id FROM faces f JOIN collections k ON k.id = f.collection_id WHERE f.id = ANY($1::bigint[])"
          " AND EXISTS (SELECT 1 FROM consents c WHERE c.collection_id = f.collection_id AND c.subject = f.subject"
          " AND c.purpose = k.purpose AND c.revoked_at IS NULL AND c.granted_at <= $2"
          " AND (c.expires_at IS NULL OR c.expires_at > $2)) ORDER BY f.id",
          PgParams().add(id_array(ids)).add(ms(clock_()))));
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
        db_.exec("INSERT INTO search_counters (actor, unit, bucket_start, count) VALUES ($1, $2, $3, 1)"
                 " ON CONFLICT (actor, unit, bucket_start) DO UPDATE SET count = search_counters.count + 1",
                 PgParams().add(s.context.actor).add(unit).add(now - (now % width)));
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
      return db_.query_int(
                    "SELECT COALESCE(SUM(count), 0) FROM search_counters WHERE actor = $1 AND unit = $2 AND bucket_start >= $3",
                    PgParams().add(actor).add(fine ? "m" : "d").add(from - (((from % width) + width) % width)))
          .value_or(0);
    });
  }

  // --------------------------------------------------------------- API keys

  Status put_api_key(const ApiKeyRecord& key, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"key_create", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_api_key(key);
      if (db_.query_int("SELECT 1 FROM api_keys WHERE name = $1", PgParams().add(key.name))) {
        fail(ErrorCode::kAlreadyExists, "an API key named '" + key.name + "' already exists");
      }
      const std::int64_t created = key.created_at == TimePoint{} ? ms(clock_()) : ms(key.created_at);
      db_.exec("INSERT INTO api_keys (name, hash_hex, scopes_json, created_at) VALUES ($1, $2, $3, $4)",
               PgParams().add(key.name).add(key.hash_hex).add(key.scopes_json).add(created));
      audit.details = api_key_details(key);  // never the hash
      return Ok{};
    });
  }

  Result<std::vector<ApiKeyRecord>> list_api_keys() override {
    return read_op<std::vector<ApiKeyRecord>>([&] {
      std::vector<ApiKeyRecord> out;
      PgResult r = db_.exec("SELECT name, hash_hex, scopes_json, created_at FROM api_keys ORDER BY name");
      for (int i = 0; i < r.rows(); ++i) {
        out.push_back(ApiKeyRecord{r.text(i, 0), r.text(i, 1), r.text(i, 2), from_ms(r.int64(i, 3))});
      }
      return out;
    });
  }

  Status delete_api_key(std::string_view name, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"key_delete", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      require_text(name, "key name", 256);
      if (db_.exec("DELETE FROM api_keys WHERE name = $1", PgParams().add(name)).affected() == 0) {
        fail(ErrorCode::kNotFound, "no API key named '" + std::string(name) + "'");
      }
      audit.details = dump(json{{"name", name}});
      return Ok{};
    });
  }

  // ------------------------------------------------------------------ audit

  Result<std::vector<AuditEntry>> audit_list(const AuditFilter& f) override {
    return read_op<std::vector<AuditEntry>>([&] {
      std::string sql = std::string(kAuditColumns) + " WHERE 1 = 1";
      PgParams params;
      int n = 0;
      const auto next = [&n] {
        std::string placeholder(1, '$');  // built up, not "$" + ...: GCC 12 warns falsely on that
        placeholder += std::to_string(++n);
        return placeholder;
      };
      if (f.subject) {
        sql += " AND seq IN (SELECT seq FROM audit_subjects WHERE subject = " + next() + ")";
        params.add(*f.subject);
      }
      if (f.collection) {
        sql += " AND collection = " + next();
        params.add(*f.collection);
      }
      if (f.operation) {
        sql += " AND operation = " + next();
        params.add(*f.operation);
      }
      if (f.actor) {
        sql += " AND actor = " + next();
        params.add(*f.actor);
      }
      if (f.since) {
        sql += " AND time >= " + next();
        params.add(ms(*f.since));
      }
      if (f.until) {
        sql += " AND time < " + next();
        params.add(ms(*f.until));
      }
      if (f.after_seq) {
        sql += " AND seq > " + next();
        params.add(*f.after_seq);
      }
      if (f.before_seq) {
        sql += " AND seq < " + next();
        params.add(*f.before_seq);
      }
      sql += f.newest_first ? " ORDER BY seq DESC LIMIT " : " ORDER BY seq LIMIT ";
      sql += next();
      params.add(static_cast<std::int64_t>(std::min<std::size_t>(f.limit, 1'000'000)));
      PgResult r = db_.exec(sql, params);
      std::vector<AuditEntry> out;
      for (int i = 0; i < r.rows(); ++i) out.push_back(audit_from(r, i));
      attach_names(out);
      return out;
    });
  }

  Result<AuditVerification> audit_verify() override {
    // On a connection of its own, without mutex_: the whole log is read and rehashed, and
    // the store's other calls (searches, enrollments, revocations) must not wait for it.
    try {
      PgConnection db(uri_);
      db.connect();
      PgTransaction txn(db, PgTransaction::Kind::kRead);
      AuditVerification result = verify_chain(db);
      txn.commit();
      return result;
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  // requires: a read transaction open on `db`.
  AuditVerification verify_chain(PgConnection& db) {
    {
      AuditChainVerifier verifier([&db](std::string_view hash) -> std::optional<std::int64_t> {
        return db.query_int("SELECT seq FROM audit_log WHERE hash = $1 ORDER BY seq LIMIT 1", PgParams().add(hash));
      });
      // In pages, so a long log is never held in memory at once.
      constexpr std::int64_t kPage = 10'000;
      std::optional<std::int64_t> after;
      for (;;) {
        PgResult r = after ? db.exec(std::string(kAuditColumns) + " WHERE seq > $1 ORDER BY seq LIMIT $2",
                                      PgParams().add(*after).add(kPage))
                           : db.exec(std::string(kAuditColumns) + " ORDER BY seq LIMIT $1", PgParams().add(kPage));
        for (int i = 0; i < r.rows(); ++i) verifier.add(audit_from(r, i));
        if (r.rows() < kPage) break;
        after = r.int64(r.rows() - 1, 0);
      }
      const AuditHead head = read_head(db, false);
      AuditVerification result = verifier.finish(head.seq, head.hash);
      const auto flag = [&result](std::int64_t seq, std::string message) {
        result.intact = false;
        if (result.issues.size() < AuditVerification::kMaxIssues) {
          result.issues.push_back(AuditIssue{seq, AuditBreak::kSubjectIndex, std::move(message)});
        }
      };
      PgResult r = db.exec(
          "SELECT s.seq, s.tag, s.subject, a.subject_tags, k.salt FROM audit_subjects s"
          " LEFT JOIN audit_log a ON a.seq = s.seq LEFT JOIN subject_salts k ON k.subject = s.subject ORDER BY s.seq");
      for (int i = 0; i < r.rows(); ++i) {
        const std::int64_t seq = r.int64(i, 0);
        const std::string tag = r.text(i, 1);
        if (r.is_null(i, 3)) {
          if (seq <= result.last_seq) flag(seq, "a subject name is indexed for seq " + std::to_string(seq) + ", which does not exist");
          continue;
        }
        const std::vector<std::string> tags = parse_subject_tags(r.text(i, 3));
        const bool listed = std::find(tags.begin(), tags.end(), tag) != tags.end();
        const bool matches = !r.is_null(i, 4) && audit_subject_tag(r.text(i, 4), r.text(i, 2)) == tag;
        if (!listed || !matches) {
          flag(seq, "the subject name indexed for seq " + std::to_string(seq) +
                        " does not match the entry's hashed subject tags (edited)");
        }
      }
      return result;
    }
  }

  Result<AuditHead> audit_head() override {
    return read_op<AuditHead>([&] { return read_head(false); });
  }

  Status checkpoint() override { return ok_status(); }  // PostgreSQL manages its own WAL

  // ------------------------------------------------------------ change feed

  Result<ChangeBatch> changes_since(std::int64_t after, std::size_t limit) override {
    return read_op<ChangeBatch>([&] {
      ChangeBatch batch;
      const std::int64_t pruned =
          db_.query_int("SELECT value::bigint FROM meta WHERE key = 'feed_pruned_through'").value_or(0);
      const std::int64_t head = read_head(false).seq;
      if (after < pruned) {
        batch.truncated = true;
        batch.version = head;
        return batch;
      }
      if (limit == 0) {
        batch.version = after;
        return batch;
      }
      // Whole versions only: the rows up to the limit, plus the rest of the last version.
      PgResult r = db_.exec(
          "WITH page AS (SELECT id, version FROM face_changes WHERE version > $1 ORDER BY version, id LIMIT $2)"
          " SELECT version, kind, collection, face_id FROM face_changes"
          " WHERE version > $1 AND version <= (SELECT MAX(version) FROM page) ORDER BY version, id",
          PgParams().add(after).add(static_cast<std::int64_t>(std::min<std::size_t>(limit, 1'000'000))));
      for (int i = 0; i < r.rows(); ++i) {
        batch.changes.push_back(FaceChange{r.int64(i, 0), parse_change_kind(r.text(i, 1)), r.text(i, 2), r.int64(i, 3)});
      }
      batch.version = batch.changes.empty() ? head : batch.changes.back().version;
      return batch;
    });
  }

  Status wait_for_change(std::int64_t after, std::chrono::milliseconds timeout) override {
    std::lock_guard lock(listen_mutex_);
    try {
      const Clock::time_point deadline = Clock::now() + timeout;
      if (!listen_.connected()) {
        listen_reconnect_.ensure(listen_);
        listen_.exec_script(std::string("LISTEN ") + kChannel);
      }
      // Notifications queued since the last call may be stale (versions the
      // caller has seen): only a newer version counts.
      if (drain_notifications(after)) return ok_status();
      // LISTEN is in place before this check, so a commit after it notifies us.
      if (listen_.query_int("SELECT MAX(version) FROM face_changes").value_or(0) > after) return ok_status();
      for (;;) {
        const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (remaining.count() <= 0) return ok_status();
        pollfd pfd{PQsocket(listen_.handle()), POLLIN, 0};
        if (pfd.fd < 0) listen_.raise(nullptr, "LISTEN");
        const int n = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(remaining.count(), 60'000)));
        if (n < 0 && errno != EINTR) listen_.raise(nullptr, "poll");
        if (n > 0) {
          if (PQconsumeInput(listen_.handle()) == 0 || PQstatus(listen_.handle()) == CONNECTION_BAD) {
            listen_.raise(nullptr, "LISTEN");
          }
          if (drain_notifications(after)) return ok_status();
        }
      }
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  // -------------------------------------------------------------- health

  Status ping() override {
    std::lock_guard lock(mutex_);
    try {
      with_fresh_connection([&] { db_.exec_script("SELECT 1"); });
      return ok_status();
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

 private:

  // Runs `first` (which begins the transaction); if the connection turns out
  // to be dead before anything was done, reconnects once and runs it again.
  template <typename Fn>
  void with_fresh_connection(Fn&& first) {
    reconnect_.ensure(db_);
    try {
      first();
    } catch (const StoreFailure& f) {
      if (f.error.code != ErrorCode::kStoreUnavailable) throw;
      reconnect_.ensure(db_);  // throws while the server stays unreachable
      first();
    }
  }

  std::unique_ptr<PgTransaction> begin(PgTransaction::Kind kind) {
    std::unique_ptr<PgTransaction> txn;
    with_fresh_connection([&] { txn = std::make_unique<PgTransaction>(db_, kind); });
    return txn;
  }

  template <typename T, typename Fn>
  Result<T> read_op(Fn&& fn) {
    std::lock_guard lock(mutex_);
    try {
      std::unique_ptr<PgTransaction> txn = begin(PgTransaction::Kind::kRead);
      T out = fn();
      txn->commit();
      return out;
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  // As SqliteStore::write_op; the head lock taken first serialises writers.
  template <typename T, typename Fn>
  Result<T> write_op(const AuditContext& ctx, AuditDraft draft, Fn&& fn) {
    std::lock_guard lock(mutex_);
    Error error;
    try {
      pending_changes_.clear();
      require_actor(ctx);
      std::unique_ptr<PgTransaction> txn = begin(PgTransaction::Kind::kWrite);
      read_head(true);
      AuditDraft audit = draft;
      T out = fn(audit);
      append_audit(ctx, audit);
      txn->commit();
      return out;
    } catch (const StoreFailure& f) {
      error = f.error;
    }
    pending_changes_.clear();  // rolled back with the transaction
    // Without a connection there is nothing to audit into; the operation had no effect.
    if (error.code == ErrorCode::kStoreUnavailable) return error;
    return audit_refusal(draft, std::move(error), ctx);
  }

  // Audits a refused operation in a transaction of its own; returns `error`.
  // requires: mutex_ held, no transaction open.
  Error audit_refusal(const AuditDraft& draft, Error error, const AuditContext& ctx) {
    try {
      const AuditDraft refusal = refusal_draft(draft, error.code);
      const AuditContext who = refusal_context(ctx);
      std::unique_ptr<PgTransaction> txn = begin(PgTransaction::Kind::kWrite);
      read_head(true);
      append_audit(who, refusal);
      txn->commit();
    } catch (const StoreFailure& f) {
      error.message += " (and the refusal could not be audited: " + f.error.message + ")";
    }
    return error;
  }

  // Appends one entry; requires a write transaction holding the head lock.
  void append_audit(const AuditContext& ctx, const AuditDraft& draft) {
    const AuditHead head = read_head(false);
    std::vector<std::string> subjects;
    const AuditEntry e = build_audit_entry(head, clock_(), ctx, draft,
                                           [this](const std::string& subject) { return salt_for(subject); }, subjects);
    db_.exec("INSERT INTO audit_log (seq, time, actor, operation, collection, subject_tags, details, reason,"
             " result, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
             PgParams()
                 .add(e.seq)
                 .add(ms(e.time))
                 .add(e.actor)
                 .add(e.operation)
                 .add(e.collection)
                 .add(dump(json(e.subject_tags)))
                 .add(e.details)
                 .add(e.reason)
                 .add(e.result)
                 .add(e.prev_hash)
                 .add(e.hash));
    for (std::size_t i = 0; i < subjects.size(); ++i) {
      db_.exec("INSERT INTO audit_subjects (seq, tag, subject, collection) VALUES ($1, $2, $3, $4)",
               PgParams().add(e.seq).add(e.subject_tags[i]).add(subjects[i]).add(e.collection));
    }
    if (db_.exec("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", PgParams().add(e.seq).add(e.hash))
            .affected() != 1) {
      fail(ErrorCode::kIntegrityError, "the audit chain head is missing");
    }
    if (!pending_changes_.empty()) {
      for (const PendingChange& c : pending_changes_) {
        db_.exec("INSERT INTO face_changes (version, kind, collection, face_id, time) VALUES ($1, $2, $3, $4, $5)",
                 PgParams().add(e.seq).add(change_kind_name(c.kind)).add(c.collection).add(c.face_id).add(ms(e.time)));
      }
      // Delivered to listeners when (and only if) this transaction commits.
      db_.exec("SELECT pg_notify($1, $2)", PgParams().add(kChannel).add(std::to_string(e.seq)));
      pending_changes_.clear();
    }
  }

  std::string salt_for(const std::string& subject) {
    if (std::optional<std::string> salt =
            db_.query_text("SELECT salt FROM subject_salts WHERE subject = $1", PgParams().add(subject))) {
      return *salt;
    }
    std::array<std::uint8_t, 16> raw{};
    randombytes_buf(raw.data(), raw.size());
    const std::string salt = to_hex(raw);
    db_.exec("INSERT INTO subject_salts (subject, salt) VALUES ($1, $2)", PgParams().add(subject).add(salt));
    return salt;
  }

  // lock: take the head row lock (first statement of every writing transaction).
  AuditHead read_head(bool lock) { return read_head(db_, lock); }
  static AuditHead read_head(PgConnection& db, bool lock) {
    PgResult r = db.exec(lock ? "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
                               : "SELECT seq, hash FROM audit_head WHERE id = 1");
    if (r.rows() != 1) fail(ErrorCode::kIntegrityError, "the audit chain head is missing");
    return AuditHead{r.int64(0, 0), r.text(0, 1)};
  }

  // Fills in the subject names of entries (one query for the page).
  void attach_names(std::vector<AuditEntry>& entries) {
    if (entries.empty()) return;
    std::vector<FaceId> seqs;
    for (const AuditEntry& e : entries) seqs.push_back(e.seq);
    PgResult r = db_.exec("SELECT seq, subject FROM audit_subjects WHERE seq = ANY($1::bigint[]) ORDER BY seq, subject",
                          PgParams().add(id_array(seqs)));
    std::size_t j = 0;
    for (int i = 0; i < r.rows(); ++i) {
      const std::int64_t seq = r.int64(i, 0);
      while (j < entries.size() && entries[j].seq < seq) ++j;
      if (j < entries.size() && entries[j].seq == seq) entries[j].subjects.push_back(r.text(i, 1));
    }
  }

  bool drain_notifications(std::int64_t after) {
    bool newer = false;
    while (PGnotify* n = PQnotifies(listen_.handle())) {
      const char* payload = n->extra != nullptr ? n->extra : "";
      char* end = nullptr;
      const long long v = std::strtoll(payload, &end, 10);
      if (end == payload || v > after) newer = true;  // an unreadable payload counts as news
      PQfreemem(n);
    }
    return newer;
  }

  std::optional<Collection> find_collection(std::string_view name) {
    PgResult r = db_.exec(std::string(kCollectionColumns) + " WHERE name = $1", PgParams().add(name));
    if (r.rows() == 0) return std::nullopt;
    return collection_from(r, 0);
  }

  Collection require_collection(std::string_view name) {
    require_collection_name(name);
    std::optional<Collection> c = find_collection(name);
    if (!c) fail(ErrorCode::kNotFound, "no collection named '" + std::string(name) + "'");
    return *c;
  }

  bool has_valid_consent(const Collection& c, std::string_view subject, std::int64_t now) {
    return db_.query_int(
                  "SELECT 1 FROM consents WHERE collection_id = $1 AND subject = $2 AND purpose = $3 AND revoked_at IS NULL"
                  " AND granted_at <= $4 AND (expires_at IS NULL OR expires_at > $4) LIMIT 1",
                  PgParams().add(c.id).add(subject).add(c.purpose).add(now))
        .has_value();
  }

  static std::vector<FaceId> ids_of(const PgResult& r) {
    std::vector<FaceId> ids;
    ids.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) ids.push_back(r.int64(i, 0));
    return ids;
  }

  // Deletes the faces and queues their removal for the change feed.
  void delete_faces(const std::vector<FaceId>& ids) {
    if (ids.empty()) return;
    PgResult r = db_.exec(
        "DELETE FROM faces f USING collections k WHERE f.id = ANY($1::bigint[]) AND k.id = f.collection_id"
        " RETURNING f.id, k.name",
        PgParams().add(id_array(ids)));
    std::vector<PendingChange> removed;
    for (int i = 0; i < r.rows(); ++i) {
      removed.push_back(PendingChange{FaceChange::Kind::kRemoved, r.text(i, 1), r.int64(i, 0)});
    }
    std::sort(removed.begin(), removed.end(), [](const PendingChange& a, const PendingChange& b) { return a.face_id < b.face_id; });
    pending_changes_.insert(pending_changes_.end(), removed.begin(), removed.end());
  }

  // As SqliteStore::prune_change_feed.
  void prune_change_feed(std::int64_t now) {
    const std::optional<std::int64_t> newest_dropped = db_.query_int(
        "SELECT MAX(version) FROM face_changes WHERE time < $1", PgParams().add(now - kChangeFeedRetentionMs));
    if (!newest_dropped) return;
    db_.exec("DELETE FROM face_changes WHERE version <= $1", PgParams().add(*newest_dropped));
    db_.exec("INSERT INTO meta (key, value) VALUES ('feed_pruned_through', $1)"
             " ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value::bigint, EXCLUDED.value::bigint)::text",
             PgParams().add(std::to_string(*newest_dropped)));
  }

  void attach_key(const StoreOptions& options) { cipher_ = pg_attach_key(db_, label_, options); }

  static Collection collection_from(const PgResult& r, int i) {
    Collection c;
    c.id = r.int64(i, 0);
    c.name = r.text(i, 1);
    c.purpose = r.text(i, 2);
    c.retention_days = static_cast<int>(r.int64(i, 3));
    c.match_threshold = static_cast<float>(r.dbl(i, 4));
    c.liveness_required = r.boolean(i, 5);
    c.created_at = from_ms(r.int64(i, 6));
    return c;
  }

  static Consent consent_from(const PgResult& r, int i, std::string collection) {
    Consent c;
    c.id = r.int64(i, 0);
    c.collection = std::move(collection);
    c.subject = r.text(i, 1);
    c.purpose = r.text(i, 2);
    c.evidence_sha256 = r.text(i, 3);
    c.collected_by = r.text(i, 4);
    c.granted_at = from_ms(r.int64(i, 5));
    if (auto v = r.optional_int(i, 6)) c.expires_at = from_ms(*v);
    if (auto v = r.optional_int(i, 7)) c.revoked_at = from_ms(*v);
    return c;
  }

  FaceRecord face_from(const PgResult& r, int i, bool decrypt) const {
    FaceRecord f;
    f.id = r.int64(i, 0);
    f.collection = r.text(i, 1);
    f.subject = r.text(i, 2);
    const std::int64_t dim = r.int64(i, 3);
    f.box = FaceBox{static_cast<float>(r.dbl(i, 5)), static_cast<float>(r.dbl(i, 6)), static_cast<float>(r.dbl(i, 7)),
                    static_cast<float>(r.dbl(i, 8))};
    f.detector_score = static_cast<float>(r.dbl(i, 9));
    f.quality_level = r.text(i, 10);
    f.quality_json = r.text(i, 11);
    f.image_sha256 = r.text(i, 12);
    f.model_id = r.text(i, 13);
    f.created_at = from_ms(r.int64(i, 14));
    if (decrypt) {
      const std::vector<std::uint8_t> sealed = r.bytes(i, 4);
      Result<std::vector<float>> plain =
          cipher_->open(sealed, template_ad(r.int64(i, 15), f.collection, f.id, f.subject, f.model_id),
                        static_cast<std::size_t>(std::max<std::int64_t>(dim, 0)));
      if (!plain) fail(ErrorCode::kIntegrityError, "face " + std::to_string(f.id) + ": " + plain.error().message);
      f.embedding = std::move(plain).value();
    }
    return f;
  }

  static AuditEntry audit_from(const PgResult& r, int i) {
    AuditEntry e;
    e.seq = r.int64(i, 0);
    e.time = from_ms(r.int64(i, 1));
    e.actor = r.text(i, 2);
    e.operation = r.text(i, 3);
    e.collection = r.text(i, 4);
    e.subject_tags = parse_subject_tags(r.text(i, 5));
    e.details = r.text(i, 6);
    e.reason = r.text(i, 7);
    e.result = r.text(i, 8);
    e.prev_hash = r.text(i, 9);
    e.hash = r.text(i, 10);
    return e;
  }

  std::mutex mutex_;  // guards db_, reconnect_, pending_changes_
  std::string uri_;  // for the connections audit_verify opens
  PgConnection db_;
  Reconnector reconnect_;
  std::vector<PendingChange> pending_changes_;
  std::mutex listen_mutex_;  // guards listen_ and listen_reconnect_: wait_for_change never blocks other calls
  PgConnection listen_;
  Reconnector listen_reconnect_;
  std::function<TimePoint()> clock_;
  std::unique_ptr<TemplateCipher> cipher_;
  std::string label_;
};

}  // namespace

std::unique_ptr<TemplateCipher> pg_attach_key(PgConnection& db, const std::string& label, const StoreOptions& options) {
  KeyCheckAccess access;
  access.read_kcv = [&db] { return db.query_text("SELECT value FROM meta WHERE key = 'key_check'"); };
  access.count_templates = [&db] { return db.query_int("SELECT COUNT(*) FROM faces").value_or(0); };
  access.insert_kcv_if_absent = [&db](const std::string& kcv) {
    db.exec("INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING", PgParams().add(kcv));
  };
  // No default key file: there is no directory that belongs to a server database.
  return attach_key(options, label, "", access);
}

Result<std::unique_ptr<Store>> open_pg_store(const std::string& uri, const StoreOptions& options) {
  try {
    return std::unique_ptr<Store>(std::make_unique<PgStore>(uri, options));
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

}  // namespace candor::store_detail
