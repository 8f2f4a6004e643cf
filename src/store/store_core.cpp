// The Store, written once over a Driver (store_driver.h): SQLite and
// PostgreSQL differ only in their drivers.
//
// Every public method takes mutex_ (one connection per Store), then runs in
// one transaction. Mutations go through write_op(), which takes the write lock
// (begin_write: the audit head), lets the operation fill in its audit draft,
// appends the entry inside the same transaction and commits; if the operation
// is refused, it rolls back and audits the refusal in a transaction of its own.
//
// Round trips (what PostgreSQL pays per statement): reads an operation needs
// are queued together and fetched in one flush; writes are deferred and travel
// with the COMMIT. An enrollment is two round trips on PostgreSQL whatever
// the number of faces: BEGIN, the head lock and the reads (collection, consent,
// model, subject salt, face ids); then the writes and COMMIT.
#include <sodium.h>

#include <algorithm>
#include <array>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "store_driver.h"
#include "store_library.h"
#include "store_streams.h"

namespace candor::store_detail {

const Rows& Pending::rows() { return driver_->result(*slot_); }

void charge_search(Driver& db, std::string_view actor, std::int64_t now_ms) {
  for (auto [unit, width] : {std::pair{"m", kMsPerMinute}, std::pair{"d", kMsPerDay}}) {
    // An upsert, so the counts of every node (process) sharing the store add up.
    db.defer("INSERT INTO search_counters (actor, unit, bucket_start, count) VALUES ($1, $2, $3, 1)"
             " ON CONFLICT (actor, unit, bucket_start) DO UPDATE SET count = search_counters.count + 1",
             Params().add(actor).add(unit).add(now_ms - (now_ms % width)));
  }
}

const Rows& Driver::result(ResultSlot& slot) {
  if (!slot.rows) flush();
  if (!slot.rows) fail(ErrorCode::kInternal, "a queued statement has no result after a flush");
  return *slot.rows;
}

void Driver::defer_insert(std::string_view table_columns, const std::vector<Params>& rows) {
  // A bounded number of distinct statement texts (SQLite caches each prepared).
  constexpr std::size_t kRowsPerStatement = 64;
  for (std::size_t first = 0; first < rows.size(); first += kRowsPerStatement) {
    const std::size_t last = std::min(rows.size(), first + kRowsPerStatement);
    std::string sql = "INSERT INTO " + std::string(table_columns) + " VALUES ";
    Params params;
    int n = 0;
    for (std::size_t r = first; r < last; ++r) {
      sql += r == first ? "(" : ", (";
      for (std::size_t v = 0; v < rows[r].values().size(); ++v) {
        sql += v == 0 ? "$" : ", $";
        sql += std::to_string(++n);
      }
      sql += ')';
      params.append(rows[r]);
    }
    defer(sql, std::move(params));
  }
}

namespace {

using json = nlohmann::json;

// Caller-supplied text with invalid UTF-8 is written with U+FFFD instead of
// throwing out of a transaction.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

constexpr std::string_view kConsentColumns =
    "SELECT id, subject, purpose, evidence_sha256, collected_by, granted_at, expires_at, revoked_at FROM consents";

std::vector<FaceId> sorted_unique(std::span<const FaceId> ids) {
  std::vector<FaceId> out(ids.begin(), ids.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Collection collection_from(const Rows& r, std::size_t i) {
  Collection c;
  c.id = r.int64(i, 0);
  c.name = r.text(i, 1);
  c.purpose = r.text(i, 2);
  c.retention_days = static_cast<int>(r.int64(i, 3));
  c.match_threshold = static_cast<float>(r.dbl(i, 4));
  c.liveness_required = r.boolean(i, 5);
  c.created_at = from_ms(r.int64(i, 6));
  if (!r.is_null(i, 7)) c.calibration = calibration_from_json(r.text(i, 7), c.name);
  return c;
}
constexpr int kCollectionColumnCount = 8;  // kCollectionColumns, as collection_from reads them

Consent consent_from(const Rows& r, std::size_t i, std::string collection) {
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

AuditEntry audit_from(const Rows& r, std::size_t i) {
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

AuditHead head_from(const Rows& r) {
  if (r.size() != 1) fail(ErrorCode::kIntegrityError, "the audit chain head is missing");
  return AuditHead{r.int64(0, 0), r.text(0, 1)};
}

// Rolls back unless committed (the operation boundary catches what threw).
class Txn {
 public:
  Txn(Driver& db, bool write) : db_(db) {
    if (write) {
      head_.emplace(db_.begin_write());
    } else {
      db_.begin_read();
    }
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() {
    if (open_) db_.rollback();
  }
  void commit() {
    db_.commit();
    open_ = false;
  }
  // The head read under the write lock (its rows arrive with the transaction's first flush).
  Pending head() const { return *head_; }

 private:
  Driver& db_;
  std::optional<Pending> head_;
  bool open_ = true;
};

class CoreStore final : public Store, private LibraryCore {
 public:
  CoreStore(std::unique_ptr<Driver> db, const StoreOptions& options)
      : db_(std::move(db)), waiter_(db_->change_waiter()), clock_(options.clock) {
    if (!clock_) clock_ = now_ms;
    cipher_ = db_->attach_key(options);
    library_ = make_library_store(*this);
  }

  LibraryStore& library() override { return *library_; }

  // ------------------------------------------------------------ collections

  Result<Collection> create_collection(const NewCollection& spec, const AuditContext& ctx) override {
    return write_op<Collection>(ctx, AuditDraft{"create_collection", spec.name, {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_new_collection(spec);
      if (find_collection(spec.name)) fail(ErrorCode::kAlreadyExists, "collection '" + spec.name + "' already exists");
      db_->defer(
          "INSERT INTO collections (name, purpose, retention_days, match_threshold, liveness_required, created_at)"
          " VALUES ($1, $2, $3, $4, $5, $6)",
          Params()
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
      const Rows r = db_->run(std::string(kCollectionColumns) + " ORDER BY name");
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(collection_from(r, i));
      return out;
    });
  }

  Result<Collection> get_collection(std::string_view name) override {
    return read_op<Collection>([&] { return require_collection(name); });
  }

  Result<Collection> set_calibration(std::string_view name, const std::optional<CollectionCalibration>& calibration,
                                     float match_threshold, const AuditContext& ctx) override {
    return write_op<Collection>(ctx, AuditDraft{"calibrate", std::string(name), {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_calibration(calibration, match_threshold);
      const Collection c = require_collection(name);
      db_->defer("UPDATE collections SET calibration = $1, match_threshold = $2 WHERE id = $3",
                 Params()
                     .add(calibration ? std::optional<std::string>(calibration_to_json(*calibration)) : std::nullopt)
                     .add(static_cast<double>(match_threshold))
                     .add(c.id));
      audit.details = calibration_details(c.id, calibration, match_threshold);
      return require_collection(name);
    });
  }

  Result<std::vector<FaceId>> delete_collection(std::string_view name, const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(ctx, AuditDraft{"delete_collection", std::string(name), {}, "{}", "ok"},
                                         [&](AuditDraft& audit) {
      const Collection c = require_collection(name);
      std::vector<FaceId> ids =
          ids_of(db_->run("DELETE FROM faces WHERE collection_id = $1 RETURNING id", Params().add(c.id)));
      std::sort(ids.begin(), ids.end());  // RETURNING has no order; the contract says ascending
      const std::int64_t consents =
          db_->run("DELETE FROM consents WHERE collection_id = $1", Params().add(c.id)).affected();
      db_->defer("DELETE FROM collections WHERE id = $1", Params().add(c.id));
      // One change stands for all the collection's faces (see FaceChange::Kind).
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
      const Rows r = db_->run(
          "INSERT INTO consents (collection_id, subject, purpose, evidence_sha256, collected_by, granted_at, expires_at)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
          Params()
              .add(c.id)
              .add(in.subject)
              .add(purpose)
              .add(in.evidence_sha256)
              .add(in.collected_by)
              .add(ms(granted))
              .add(in.expires_at ? std::optional<std::int64_t>(ms(*in.expires_at)) : std::nullopt));
      if (r.empty()) fail(ErrorCode::kStoreError, "the new consent's id was not returned");
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
              db_->run("UPDATE consents SET revoked_at = $1 WHERE collection_id = $2 AND subject = $3"
                       " AND revoked_at IS NULL",
                       Params().add(ms(clock_())).add(c.id).add(subject))
                  .affected();
          std::vector<FaceId> ids = ids_of(db_->run(
              "SELECT id FROM faces WHERE collection_id = $1 AND subject = $2 ORDER BY id", Params().add(c.id).add(subject)));
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
      const Rows r = db_->run(std::string(kConsentColumns) + " WHERE collection_id = $1 AND ($2 = '' OR subject = $2) ORDER BY id",
                              Params().add(c.id).add(subject));
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(consent_from(r, i, c.name));
      return out;
    });
  }

  Result<std::vector<SubjectSummary>> list_subjects(std::string_view collection) override {
    return read_op<std::vector<SubjectSummary>>([&] {
      const Collection c = require_collection(collection);
      const std::int64_t now = ms(clock_());
      // One pass over the subject index of faces and consents; no template is read.
      // A valid consent with no expiry sorts as the longest (expires_at NULL -> max).
      const Rows r = db_->run(
          "SELECT subject, SUM(faces), MAX(valid), MAX(CASE WHEN valid = 1 THEN COALESCE(expires_at, $3) END) FROM ("
          " SELECT subject, 1 AS faces, 0 AS valid, CAST(NULL AS BIGINT) AS expires_at FROM faces WHERE collection_id = $1"
          " UNION ALL SELECT subject, 0, CASE WHEN purpose = $2 AND granted_at <= $4"
          " AND (expires_at IS NULL OR expires_at > $4) THEN 1 ELSE 0 END, expires_at FROM consents"
          " WHERE collection_id = $1 AND revoked_at IS NULL) s"
          " GROUP BY subject ORDER BY subject",
          Params().add(c.id).add(c.purpose).add(std::int64_t{INT64_MAX}).add(now));
      std::vector<SubjectSummary> out;
      for (std::size_t i = 0; i < r.size(); ++i) {
        SubjectSummary summary{r.text(i, 0), r.int64(i, 1), r.int64(i, 2) != 0, std::nullopt};
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
      const EnrollFacts facts = enroll_facts(collection, subject, ms(clock_()));
      if (!facts.consent) fail(ErrorCode::kConsentRequired, no_consent_message(facts.collection));
      return true;
    });
    if (valid) return ok_status();
    if (valid.error().code == ErrorCode::kStoreUnavailable) return valid.error();
    std::lock_guard lock(mutex_);
    return audit_refusal(draft, valid.error(), ctx);
  }

  // ------------------------------------------------------------------ faces

  Result<std::vector<FaceId>> enroll(std::string_view collection, std::string_view subject,
                                     const std::vector<NewFace>& faces, const AuditContext& ctx) override {
    return write_op<std::vector<FaceId>>(ctx, enroll_draft(collection, subject, faces.size()), [&](AuditDraft& audit) {
      require_subject(subject);
      validate_faces(faces);
      // The id is part of the associated data, so draw the ids first and seal with them.
      // Queued with the reads below: one flush fetches both.
      Pending reserved = db_->reserve_ids("faces", static_cast<std::int64_t>(faces.size()));
      const std::int64_t now = ms(clock_());
      // Checked inside the write transaction, after the write lock: a revocation
      // committed a moment ago (on any node) is seen, and none can commit before
      // our inserts do.
      const EnrollFacts facts = enroll_facts(collection, subject, now);
      const Collection& c = facts.collection;
      if (!facts.consent) fail(ErrorCode::kConsentRequired, no_consent_message(c));
      // Another process (or node) may have rotated the key since this one opened the store:
      // a template sealed with the old key now would never open again.
      if (facts.key_check != cipher_->key_check_value()) {
        fail(ErrorCode::kIntegrityError,
             "the store's template key was rotated (`candor key rotate`) after this process opened it; "
             "restart it with the new key");
      }
      if (facts.model) {
        const auto& [model, dim] = *facts.model;
        if (model != faces.front().model_id || dim != static_cast<std::int64_t>(faces.front().embedding.size())) {
          fail(ErrorCode::kInvalidArgument, "collection '" + c.name + "' holds " + std::to_string(dim) +
                                                "-d templates from model '" + model +
                                                "'; templates from another model cannot be mixed in");
        }
      }
      std::vector<FaceId> ids = ids_of(reserved.rows());
      if (ids.size() != faces.size()) fail(ErrorCode::kStoreError, "the face id sequence handed out too few ids");
      std::vector<Params> rows;
      for (std::size_t i = 0; i < faces.size(); ++i) {
        const NewFace& f = faces[i];
        const std::vector<std::uint8_t> sealed =
            cipher_->seal(f.embedding, template_ad(c.id, c.name, ids[i], subject, f.model_id));
        rows.push_back(Params()
                           .add(ids[i])
                           .add(c.id)
                           .add(subject)
                           .add(f.embedding.size())
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
      db_->defer_insert("faces (id, collection_id, subject, dim, template, box_x, box_y, box_w, box_h, detector_score,"
                   " quality_level, quality_json, image_sha256, model_id, created_at)",
                   rows);
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
            ids = ids_of(db_->run("SELECT id FROM faces WHERE collection_id = $1 AND subject = $2 ORDER BY id",
                                  Params().add(c.id).add(subject)));
            delete_faces(ids);
            consents = db_->run("DELETE FROM consents WHERE collection_id = $1 AND subject = $2",
                                Params().add(c.id).add(subject))
                           .affected();
            names_scrubbed = db_->run("DELETE FROM audit_subjects WHERE subject = $1 AND collection = $2",
                                      Params().add(subject).add(c.name))
                                 .affected();
          } else {
            ids = ids_of(db_->run("SELECT f.id FROM faces f WHERE " + std::string(kSubjectsFacesEverywhere) + " ORDER BY f.id",
                                  Params().add(subject)));
            delete_faces(ids);
            consents = db_->run("DELETE FROM consents WHERE subject = $1", Params().add(subject)).affected();
            db_->defer("DELETE FROM audit_subjects WHERE subject = $1", Params().add(subject));
            // Without the salt, the tags left in the chain cannot be linked back
            // to this subject even by someone who guesses the identifier. The
            // erasure entry below gets a fresh salt. (names_scrubbed counts the salt.)
            names_scrubbed = db_->run("DELETE FROM subject_salts WHERE subject = $1", Params().add(subject)).affected();
            salts_.erase(std::string(subject));
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
      Pending consent_rows = db_->queue(
          "SELECT c.id, c.subject, c.purpose, c.evidence_sha256, c.collected_by, c.granted_at, c.expires_at,"
          " c.revoked_at, k.name FROM consents c JOIN collections k ON k.id = c.collection_id"
          " WHERE c.subject = $1 ORDER BY c.id",
          Params().add(subject));
      Pending face_rows = db_->queue(std::string(kFaceColumns) + " WHERE " + std::string(kSubjectsFacesEverywhere) +
                                         " ORDER BY f.id",
                                     Params().add(subject));
      Pending audit_rows = db_->queue(
          std::string(kAuditColumns) + " WHERE seq IN (SELECT seq FROM audit_subjects WHERE subject = $1) ORDER BY seq",
          Params().add(subject));
      std::vector<Consent> consents;
      std::vector<FaceRecord> faces;
      std::vector<AuditEntry> entries;
      const Rows& cr = consent_rows.rows();
      for (std::size_t i = 0; i < cr.size(); ++i) consents.push_back(consent_from(cr, i, cr.text(i, 8)));
      const Rows& fr = face_rows.rows();
      for (std::size_t i = 0; i < fr.size(); ++i) faces.push_back(face_from(fr, i, false));
      const Rows& ar = audit_rows.rows();
      for (std::size_t i = 0; i < ar.size(); ++i) entries.push_back(audit_from(ar, i));
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
        const Rows r = db_->run(std::string(kCollectionColumns) + " ORDER BY id");
        for (std::size_t i = 0; i < r.size(); ++i) collections.push_back(collection_from(r, i));
      }
      int touched = 0;
      for (const Collection& c : collections) {
        std::set<FaceId> by_age;
        std::set<FaceId> by_consent;
        std::set<std::string> subjects;
        {
          const Rows r = db_->run("SELECT id, subject FROM faces WHERE collection_id = $1 AND created_at < $2",
                                  Params().add(c.id).add(now - static_cast<std::int64_t>(c.retention_days) * kMsPerDay));
          for (std::size_t i = 0; i < r.size(); ++i) {
            by_age.insert(r.int64(i, 0));
            subjects.insert(r.text(i, 1));
          }
        }
        {
          const Rows r = db_->run(
              "SELECT f.id, f.subject FROM faces f WHERE f.collection_id = $1 AND NOT EXISTS ("
              " SELECT 1 FROM consents k WHERE k.collection_id = $1 AND k.subject = f.subject AND k.purpose = $2"
              " AND k.revoked_at IS NULL AND k.granted_at <= $3 AND (k.expires_at IS NULL OR k.expires_at > $3))",
              Params().add(c.id).add(c.purpose).add(now));
          for (std::size_t i = 0; i < r.size(); ++i) {
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
      // Photo libraries' templates are under a retention term too (their own, per library).
      const std::vector<AuditDraft> library_purges = expire_library_faces(*db_, now_tp, report.library_faces_expired);
      for (const AuditDraft& d : library_purges) append_audit(ctx, d);
      report.counters_pruned =
          db_->run("DELETE FROM search_counters WHERE (unit = 'm' AND bucket_start < $1) OR (unit = 'd' AND bucket_start < $2)",
                   Params().add(now - kMinuteBucketHorizonMs - kMsPerDay).add(now - kDayBucketHorizonMs))
              .affected();
      prune_change_feed(now);
      std::sort(report.removed.begin(), report.removed.end());
      audit.details = dump(json{{"as_of", ms(now_tp)}, {"collections_purged", touched},
                                {"faces_removed", report.removed.size()},
                                {"expired_by_age", report.expired_by_age},
                                {"without_consent", report.without_consent},
                                {"libraries_purged", library_purges.size()},
                                {"library_faces_expired", report.library_faces_expired},
                                {"counters_pruned", report.counters_pruned}});
      return report;
    });
  }

  Result<std::vector<FaceRecord>> load_faces(std::string_view collection) override {
    return read_op<std::vector<FaceRecord>>([&] {
      const Collection c = require_collection(collection);
      std::vector<FaceRecord> out;
      // In pages (one snapshot): a whole large collection in one result would
      // hold every template twice over at once.
      constexpr std::int64_t kPage = 5000;
      FaceId after = 0;
      for (;;) {
        const Rows r = db_->run(std::string(kFaceColumns) + " WHERE f.collection_id = $1 AND f.id > $2 ORDER BY f.id LIMIT $3",
                                Params().add(c.id).add(after).add(kPage));
        for (std::size_t i = 0; i < r.size(); ++i) out.push_back(face_from(r, i, true));
        if (r.size() < static_cast<std::size_t>(kPage)) break;
        after = out.back().id;
      }
      return out;
    });
  }

  Result<std::vector<FaceRecord>> get_faces(std::span<const FaceId> ids, bool with_embeddings) override {
    return read_op<std::vector<FaceRecord>>([&] {
      std::vector<FaceRecord> out;
      if (ids.empty()) return out;
      const Rows r = db_->run(std::string(kFaceColumns) + " WHERE f.id " + std::string(db_->in_ids_at_1()) + " ORDER BY f.id",
                              Params().add_ids(sorted_unique(ids)));
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(face_from(r, i, with_embeddings));
      return out;
    });
  }

  Result<std::vector<FaceId>> faces_without_collection() override {
    return read_op<std::vector<FaceId>>([&] {
      return ids_of(db_->run("SELECT id FROM faces WHERE collection_id NOT IN (SELECT id FROM collections) ORDER BY id"));
    });
  }

  Result<std::vector<FaceId>> existing_faces(std::span<const FaceId> ids) override {
    return read_op<std::vector<FaceId>>([&] {
      if (ids.empty()) return std::vector<FaceId>{};
      // The face exists and its subject may still be identified: enroll's consent rule.
      return ids_of(db_->run(
          "SELECT f.id FROM faces f JOIN collections k ON k.id = f.collection_id WHERE f.id " + std::string(db_->in_ids_at_1()) +
              " AND EXISTS (SELECT 1 FROM consents c WHERE c.collection_id = f.collection_id AND c.subject = f.subject"
              " AND c.purpose = k.purpose AND c.revoked_at IS NULL AND c.granted_at <= $2"
              " AND (c.expires_at IS NULL OR c.expires_at > $2)) ORDER BY f.id",
          Params().add_ids(sorted_unique(ids)).add(ms(clock_()))));
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
      if (s.charged) charge_search(*db_, s.context.actor, ms(clock_()));
      return Ok{};
    });
  }

  Result<std::int64_t> search_count(std::string_view actor, TimePoint since) override {
    return read_op<std::int64_t>([&] {
      const std::int64_t now = ms(clock_());
      const std::int64_t from = ms(since);
      const bool fine = now - from <= kMinuteBucketHorizonMs;
      const std::int64_t width = fine ? kMsPerMinute : kMsPerDay;
      const Rows r = db_->run(
          "SELECT COALESCE(SUM(count), 0) FROM search_counters WHERE actor = $1 AND unit = $2 AND bucket_start >= $3",
          Params().add(actor).add(fine ? "m" : "d").add(from - (((from % width) + width) % width)));
      return r.empty() ? std::int64_t{0} : r.int64(0, 0);
    });
  }

  // --------------------------------------------------------------- API keys

  Status put_api_key(const ApiKeyRecord& key, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"key_create", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      validate_api_key(key);
      if (!db_->run("SELECT 1 FROM api_keys WHERE name = $1", Params().add(key.name)).empty()) {
        fail(ErrorCode::kAlreadyExists, "an API key named '" + key.name + "' already exists");
      }
      const std::int64_t created = key.created_at == TimePoint{} ? ms(clock_()) : ms(key.created_at);
      db_->defer("INSERT INTO api_keys (name, hash_hex, scopes_json, created_at) VALUES ($1, $2, $3, $4)",
                 Params().add(key.name).add(key.hash_hex).add(key.scopes_json).add(created));
      audit.details = api_key_details(key);  // never the hash
      return Ok{};
    });
  }

  Result<std::vector<ApiKeyRecord>> list_api_keys() override {
    return read_op<std::vector<ApiKeyRecord>>([&] {
      std::vector<ApiKeyRecord> out;
      const Rows r = db_->run("SELECT name, hash_hex, scopes_json, created_at FROM api_keys ORDER BY name");
      for (std::size_t i = 0; i < r.size(); ++i) {
        out.push_back(ApiKeyRecord{r.text(i, 0), r.text(i, 1), r.text(i, 2), from_ms(r.int64(i, 3))});
      }
      return out;
    });
  }

  Status delete_api_key(std::string_view name, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"key_delete", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      require_text(name, "key name", 256);
      if (db_->run("DELETE FROM api_keys WHERE name = $1", Params().add(name)).affected() == 0) {
        fail(ErrorCode::kNotFound, "no API key named '" + std::string(name) + "'");
      }
      audit.details = dump(json{{"name", name}});
      return Ok{};
    });
  }

  // ---------------------------------------------------------------- streams
  // The SQL is in store_streams.cpp; here only the transactions and their audit.

  Result<StreamRecord> create_stream(const NewStream& spec, const AuditContext& ctx) override {
    return write_op<StreamRecord>(ctx, AuditDraft{"stream_create", spec.collection, {}, "{}", "ok"},
                                  [&](AuditDraft& audit) { return insert_stream(*db_, *cipher_, clock_(), spec, audit); });
  }
  Result<std::vector<StreamRecord>> list_streams() override {
    return read_op<std::vector<StreamRecord>>([&] { return select_streams(*db_); });
  }
  Result<StreamRecord> get_stream(std::string_view id) override {
    return read_op<StreamRecord>([&] { return select_stream(*db_, id); });
  }
  Result<StreamSecrets> stream_secrets(std::string_view id) override {
    return read_op<StreamSecrets>([&] { return open_stream_secrets(*db_, *cipher_, id); });
  }
  Result<StreamRecord> set_stream_running(std::string_view id, bool running, const AuditContext& ctx) override {
    return write_op<StreamRecord>(ctx, AuditDraft{running ? "stream_start" : "stream_stop", "", {}, "{}", "ok"},
                                  [&](AuditDraft& audit) { return update_stream_running(*db_, id, running, audit); });
  }
  Status delete_stream(std::string_view id, const AuditContext& ctx) override {
    return write_op<Ok>(ctx, AuditDraft{"stream_delete", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      remove_stream(*db_, id, audit);
      return Ok{};
    });
  }
  Result<bool> claim_stream(std::string_view id, std::string_view node, TimePoint now,
                            std::chrono::milliseconds ttl) override {
    return plain_op<bool>(true, [&] { return claim_stream_lease(*db_, id, node, now, ttl); });
  }
  Status release_stream(std::string_view id, std::string_view node) override {
    return plain_op<Ok>(true, [&] {
      release_stream_lease(*db_, id, node);
      return Ok{};
    });
  }

  // ------------------------------------------------------------------ audit

  Result<std::vector<AuditEntry>> audit_list(const AuditFilter& f) override {
    return read_op<std::vector<AuditEntry>>([&] {
      std::string sql = std::string(kAuditColumns) + " WHERE 1 = 1";
      Params params;
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
      const Rows r = db_->run(sql, std::move(params));
      std::vector<AuditEntry> out;
      for (std::size_t i = 0; i < r.size(); ++i) out.push_back(audit_from(r, i));
      attach_names(out);
      return out;
    });
  }

  Result<AuditVerification> audit_verify() override {
    // On a connection of its own, without mutex_: the whole log is read and rehashed,
    // and a reader holds up neither the writers nor the other readers, so the store's
    // other calls (searches, enrollments, revocations) go on meanwhile.
    try {
      std::unique_ptr<Driver> reader;
      {
        std::lock_guard lock(mutex_);
        reader = db_->open_reader();
      }
      Txn txn(*reader, false);
      AuditVerification result = verify_chain(*reader);
      txn.commit();
      return result;
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  Result<AuditHead> audit_head() override {
    return read_op<AuditHead>([&] { return head_from(db_->run(kAuditHeadQuery)); });
  }

  Status checkpoint() override {
    std::lock_guard lock(mutex_);
    return db_->checkpoint();
  }

  // ------------------------------------------------------------ change feed

  Result<ChangeBatch> changes_since(std::int64_t after, std::size_t limit) override {
    return read_op<ChangeBatch>([&] {
      ChangeBatch batch;
      Pending pruned_rows =
          db_->queue("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'feed_pruned_through'", Params());
      const std::int64_t head = head_from(db_->run(kAuditHeadQuery)).seq;
      const Rows& pr = pruned_rows.rows();
      const std::int64_t pruned = pr.empty() ? 0 : pr.int64(0, 0);
      if (after < pruned) {
        batch.truncated = true;
        batch.version = head;
        return batch;
      }
      if (limit == 0) {
        batch.version = after;
        return batch;
      }
      // Whole versions only: the rows up to the limit, plus the rest of the last
      // version (a caller resuming from it would miss the rest).
      const Rows r = db_->run(
          "WITH page AS (SELECT id, version FROM face_changes WHERE version > $1 ORDER BY version, id LIMIT $2)"
          " SELECT version, kind, collection, face_id FROM face_changes"
          " WHERE version > $1 AND version <= (SELECT MAX(version) FROM page) ORDER BY version, id",
          Params().add(after).add(static_cast<std::int64_t>(std::min<std::size_t>(limit, 1'000'000))));
      for (std::size_t i = 0; i < r.size(); ++i) {
        batch.changes.push_back(FaceChange{r.int64(i, 0), parse_change_kind(r.text(i, 1)), r.text(i, 2), r.int64(i, 3)});
      }
      batch.version = batch.changes.empty() ? head : batch.changes.back().version;
      return batch;
    });
  }

  Status wait_for_change(std::int64_t after, std::chrono::milliseconds timeout) override {
    // Not under mutex_: the waiter has a connection of its own, so other calls proceed.
    std::lock_guard lock(wait_mutex_);
    try {
      waiter_->wait(after, timeout);
      return ok_status();
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

  // -------------------------------------------------------------- health

  Status ping() override {
    std::lock_guard lock(mutex_);
    try {
      db_->ping();
      return ok_status();
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }

 private:
  // ------------------------------------------------ LibraryCore (store_library.cpp)

  Status write(const AuditContext& ctx, AuditDraft draft, const std::function<void(Driver&, AuditDraft&)>& fn) override {
    return write_op<Ok>(ctx, std::move(draft), [&](AuditDraft& audit) {
      fn(*db_, audit);
      return Ok{};
    });
  }
  Status read(const std::function<void(Driver&)>& fn) override {
    return read_op<Ok>([&] {
      fn(*db_);
      return Ok{};
    });
  }
  const TemplateCipher& cipher() const override { return *cipher_; }
  TimePoint now() const override { return clock_(); }

  // What enroll() (and check_enroll_consent()) must know of a collection, in one query.
  struct EnrollFacts {
    Collection collection;
    bool consent = false;  // the subject holds an active, unexpired consent for its purpose
    std::optional<std::pair<std::string, std::int64_t>> model;  // model_id and dim the collection holds
    std::string key_check;  // the store's key check value now (a rotation elsewhere changes it)
  };

  EnrollFacts enroll_facts(std::string_view collection, std::string_view subject, std::int64_t now) {
    require_collection_name(collection);
    // Every face of a collection has the same model and dim (enroll refuses others),
    // so any one face tells both.
    const Rows r = db_->run(
        "SELECT k.id, k.name, k.purpose, k.retention_days, k.match_threshold, k.liveness_required, k.created_at,"
        " k.calibration,"
        " EXISTS (SELECT 1 FROM consents c WHERE c.collection_id = k.id AND c.subject = $2 AND c.purpose = k.purpose"
        " AND c.revoked_at IS NULL AND c.granted_at <= $3 AND (c.expires_at IS NULL OR c.expires_at > $3)),"
        " (SELECT model_id FROM faces WHERE collection_id = k.id LIMIT 1),"
        " (SELECT dim FROM faces WHERE collection_id = k.id LIMIT 1),"
        " (SELECT value FROM meta WHERE key = 'key_check')"
        " FROM collections k WHERE k.name = $1",
        Params().add(collection).add(subject).add(now));
    if (r.empty()) fail(ErrorCode::kNotFound, "no collection named '" + std::string(collection) + "'");
    EnrollFacts facts{collection_from(r, 0), r.boolean(0, kCollectionColumnCount), std::nullopt, {}};
    if (!r.is_null(0, kCollectionColumnCount + 1)) {
      facts.model.emplace(r.text(0, kCollectionColumnCount + 1), r.int64(0, kCollectionColumnCount + 2));
    }
    facts.key_check = r.text(0, kCollectionColumnCount + 3);
    return facts;
  }

  // Runs `fn` under the mutex in one transaction that appends no audit entry: a read
  // snapshot, or (write) a write transaction (a stream's lease).
  template <typename T, typename Fn>
  Result<T> plain_op(bool write, Fn&& fn) {
    std::lock_guard lock(mutex_);
    try {
      Txn txn(*db_, write);
      T out = fn();
      txn.commit();
      return out;
    } catch (const StoreFailure& f) {
      return f.error;
    }
  }
  template <typename T, typename Fn>
  Result<T> read_op(Fn&& fn) {
    return plain_op<T>(false, std::forward<Fn>(fn));
  }

  // Runs `fn` in a write transaction; fn fills in the draft's details, and the
  // entry is appended before COMMIT. On refusal the transaction is rolled back
  // and the refusal is audited (details as drafted before fn ran).
  template <typename T, typename Fn>
  Result<T> write_op(const AuditContext& ctx, AuditDraft draft, Fn&& fn) {
    std::lock_guard lock(mutex_);
    Error error;
    try {
      require_actor(ctx);
      Txn txn(*db_, true);
      start_appending(txn.head(), draft.subjects);
      AuditDraft audit = draft;
      T out = fn(audit);
      append_audit(ctx, audit);
      txn.commit();
      // A key rotation's cipher takes over at its commit, under the lock: no template is
      // sealed with the old key after the store records the new one.
      if (next_cipher_) cipher_ = std::move(next_cipher_);
      return out;
    } catch (const StoreFailure& f) {
      error = f.error;
    }
    next_cipher_.reset();
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
      Txn txn(*db_, true);
      start_appending(txn.head(), refusal.subjects);
      append_audit(who, refusal);
      txn.commit();
    } catch (const StoreFailure& f) {
      error.message += " (and the refusal could not be audited: " + f.error.message + ")";
    }
    pending_changes_.clear();
    return error;
  }

  // A write transaction begins: the head read under the write lock, and the
  // salts of the subjects its entry will name, queued (fetched with the
  // operation's first reads).
  void start_appending(Pending head, const std::vector<std::string>& subjects) {
    head_query_.emplace(std::move(head));
    head_.reset();
    pending_changes_.clear();
    salts_.clear();
    for (const std::string& s : subjects) {
      if (!check_subject_id(s).ok() || salts_.count(s) != 0) continue;
      salts_.emplace(s, SaltLookup{db_->queue("SELECT salt FROM subject_salts WHERE subject = $1", Params().add(s)), {}});
    }
  }

  // Appends one entry after head_ and advances head_; requires a write transaction.
  void append_audit(const AuditContext& ctx, const AuditDraft& draft) {
    if (!head_) head_ = head_from(head_query_->rows());
    std::vector<std::string> subjects;
    const AuditEntry e = build_audit_entry(*head_, clock_(), ctx, draft,
                                           [this](const std::string& subject) { return salt_for(subject); }, subjects);
    db_->defer("INSERT INTO audit_log (seq, time, actor, operation, collection, subject_tags, details, reason,"
               " result, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
               Params()
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
    std::vector<Params> names;
    for (std::size_t i = 0; i < subjects.size(); ++i) {
      names.push_back(Params().add(e.seq).add(e.subject_tags[i]).add(subjects[i]).add(e.collection));
    }
    db_->defer_insert("audit_subjects (seq, tag, subject, collection)", names);
    // The head row was read under the write lock (begin_write), so it exists.
    db_->defer("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", Params().add(e.seq).add(e.hash));
    head_ = AuditHead{e.seq, e.hash};
    // The changes made since the last append take this entry's seq as their
    // version: the head is advanced under the write lock, so versions are
    // assigned in commit order.
    if (!pending_changes_.empty()) {
      std::vector<Params> rows;
      for (const PendingChange& c : pending_changes_) {
        rows.push_back(Params().add(e.seq).add(change_kind_name(c.kind)).add(c.collection).add(c.face_id).add(ms(e.time)));
      }
      db_->defer_insert("face_changes (version, kind, collection, face_id, time)", rows);
      db_->notify_changes(e.seq);
      pending_changes_.clear();
    }
  }

  std::string salt_for(const std::string& subject) {
    auto it = salts_.find(subject);
    if (it == salts_.end()) {
      it = salts_.emplace(subject, SaltLookup{db_->queue("SELECT salt FROM subject_salts WHERE subject = $1",
                                                         Params().add(subject)), {}})
               .first;
    }
    SaltLookup& lookup = it->second;
    if (!lookup.salt) {
      const Rows& r = lookup.query.rows();
      if (!r.empty()) {
        lookup.salt = r.text(0, 0);
      } else {
        std::array<std::uint8_t, 16> raw{};
        randombytes_buf(raw.data(), raw.size());
        lookup.salt = to_hex(raw);
        db_->defer("INSERT INTO subject_salts (subject, salt) VALUES ($1, $2)", Params().add(subject).add(*lookup.salt));
      }
    }
    return *lookup.salt;
  }

  // Fills in the subject names of entries (one query for the page).
  void attach_names(std::vector<AuditEntry>& entries) {
    if (entries.empty()) return;
    std::vector<std::int64_t> seqs;
    for (const AuditEntry& e : entries) seqs.push_back(e.seq);
    const Rows r = db_->run("SELECT seq, subject FROM audit_subjects WHERE seq " + std::string(db_->in_ids_at_1()) +
                                " ORDER BY seq, subject",
                            Params().add_ids(seqs));
    // By seq, not by walking both lists in step: entries may come newest first
    // (AuditFilter::newest_first).
    std::unordered_map<std::int64_t, AuditEntry*> by_seq;
    for (AuditEntry& e : entries) by_seq.emplace(e.seq, &e);
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (auto it = by_seq.find(r.int64(i, 0)); it != by_seq.end()) it->second->subjects.push_back(r.text(i, 1));
    }
  }

  // requires: a read transaction open on `db`.
  static AuditVerification verify_chain(Driver& db) {
    AuditChainVerifier verifier([&db](std::string_view hash) -> std::optional<std::int64_t> {
      const Rows r = db.run("SELECT seq FROM audit_log WHERE hash = $1 ORDER BY seq LIMIT 1", Params().add(hash));
      return r.empty() ? std::nullopt : r.optional_int(0, 0);
    });
    // In pages, so a long log is never held in memory at once.
    constexpr std::int64_t kPage = 10'000;
    std::int64_t after = std::numeric_limits<std::int64_t>::min();
    for (;;) {
      const Rows r = db.run(std::string(kAuditColumns) + " WHERE seq > $1 ORDER BY seq LIMIT $2", Params().add(after).add(kPage));
      for (std::size_t i = 0; i < r.size(); ++i) verifier.add(audit_from(r, i));
      if (r.size() < static_cast<std::size_t>(kPage)) break;
      after = r.int64(r.size() - 1, 0);
    }
    const AuditHead head = head_from(db.run(kAuditHeadQuery));
    AuditVerification result = verifier.finish(head.seq, head.hash);
    // The unhashed name index must agree with the hashed tags. Checked after
    // the chain so a deleted entry is reported as such, not as a dangling name.
    const auto flag = [&result](std::int64_t seq, std::string message) {
      result.intact = false;
      if (result.issues.size() < AuditVerification::kMaxIssues) {
        result.issues.push_back(AuditIssue{seq, AuditBreak::kSubjectIndex, std::move(message)});
      }
    };
    const Rows r = db.run(
        "SELECT s.seq, s.tag, s.subject, a.subject_tags, k.salt FROM audit_subjects s"
        " LEFT JOIN audit_log a ON a.seq = s.seq LEFT JOIN subject_salts k ON k.subject = s.subject ORDER BY s.seq");
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::int64_t seq = r.int64(i, 0);
      const std::string tag = r.text(i, 1);
      if (r.is_null(i, 3)) {
        if (seq <= result.last_seq) flag(seq, "a subject name is indexed for seq " + std::to_string(seq) + ", which does not exist");
        continue;
      }
      const std::vector<std::string> tags = parse_subject_tags(r.text(i, 3));
      const bool listed = std::find(tags.begin(), tags.end(), tag) != tags.end();
      // Every indexed name has a salt (erasure deletes both together).
      const bool matches = !r.is_null(i, 4) && audit_subject_tag(r.text(i, 4), r.text(i, 2)) == tag;
      if (!listed || !matches) {
        flag(seq, "the subject name indexed for seq " + std::to_string(seq) +
                      " does not match the entry's hashed subject tags (edited)");
      }
    }
    return result;
  }

  std::optional<Collection> find_collection(std::string_view name) {
    const Rows r = db_->run(std::string(kCollectionColumns) + " WHERE name = $1", Params().add(name));
    if (r.empty()) return std::nullopt;
    return collection_from(r, 0);
  }

  Collection require_collection(std::string_view name) {
    require_collection_name(name);
    std::optional<Collection> c = find_collection(name);
    if (!c) fail(ErrorCode::kNotFound, "no collection named '" + std::string(name) + "'");
    return *c;
  }

  // Deletes the faces and queues their removal for the change feed.
  void delete_faces(const std::vector<FaceId>& ids) {
    if (ids.empty()) return;
    const Rows r = db_->run("DELETE FROM faces WHERE id " + std::string(db_->in_ids_at_1()) +
                                " RETURNING id, (SELECT name FROM collections k WHERE k.id = collection_id)",
                            Params().add_ids(ids));
    std::vector<PendingChange> removed;
    for (std::size_t i = 0; i < r.size(); ++i) {
      removed.push_back(PendingChange{FaceChange::Kind::kRemoved, r.text(i, 1), r.int64(i, 0)});
    }
    std::sort(removed.begin(), removed.end(), [](const PendingChange& a, const PendingChange& b) { return a.face_id < b.face_id; });
    pending_changes_.insert(pending_changes_.end(), removed.begin(), removed.end());
  }

  // Drops change-feed rows older than kChangeFeedRetentionMs and remembers
  // the newest version dropped, so changes_since() can say a caller missed some.
  void prune_change_feed(std::int64_t now) {
    const Rows r = db_->run("SELECT MAX(version) FROM face_changes WHERE time < $1", Params().add(now - kChangeFeedRetentionMs));
    if (r.empty() || r.is_null(0, 0)) return;
    const std::int64_t newest_dropped = r.int64(0, 0);
    // Whole versions only: a version is kept or dropped entirely.
    db_->defer("DELETE FROM face_changes WHERE version <= $1", Params().add(newest_dropped));
    db_->defer("INSERT INTO meta (key, value) VALUES ('feed_pruned_through', $1)"
               " ON CONFLICT (key) DO UPDATE SET value = CASE WHEN CAST(meta.value AS BIGINT) < CAST(excluded.value AS BIGINT)"
               " THEN excluded.value ELSE meta.value END",
               Params().add(std::to_string(newest_dropped)));
  }

  FaceRecord face_from(const Rows& r, std::size_t i, bool decrypt) const {
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

  // A subject's salt in this transaction: queued when the transaction began,
  // or made here (and inserted with the transaction's writes).
  struct SaltLookup {
    Pending query;
    std::optional<std::string> salt;
  };

  std::mutex mutex_;  // guards db_ and everything below but waiter_
  std::unique_ptr<Driver> db_;
  std::optional<Pending> head_query_;           // the open write transaction's head, as read under its lock
  std::optional<AuditHead> head_;               // ... once fetched, advanced by each append
  std::vector<PendingChange> pending_changes_;  // written at the next append_audit
  std::map<std::string, SaltLookup> salts_;     // of the open write transaction
  std::mutex wait_mutex_;                       // guards waiter_: wait_for_change never blocks other calls
  std::unique_ptr<ChangeWaiter> waiter_;
  std::function<TimePoint()> clock_;
  std::unique_ptr<TemplateCipher> cipher_;
  std::unique_ptr<LibraryStore> library_;  // borrows *this as its LibraryCore
  std::unique_ptr<TemplateCipher> next_cipher_;  // a key rotation's, until its commit

 public:
  // See reencrypt_templates (store_driver.h).
  Result<std::int64_t> reencrypt(std::unique_ptr<TemplateCipher> next, const AuditContext& ctx,
                                 const std::string& rotation_note, const std::function<void(std::int64_t)>& progress) {
    return write_op<std::int64_t>(ctx, AuditDraft{"key_rotate", "", {}, "{}", "ok"}, [&](AuditDraft& audit) {
      const Rows kcv = db_->run("SELECT value FROM meta WHERE key = 'key_check'");
      if (kcv.empty() || kcv.text(0, 0) != cipher_->key_check_value()) {
        fail(ErrorCode::kIntegrityError,
             "the store's key changed after it was opened (another key rotation?); nothing was re-encrypted");
      }
      // In pages, all in this one transaction: every template moves to the new key or none does.
      constexpr std::int64_t kPage = 2000;
      std::int64_t done = 0;
      std::set<std::string> collections;
      FaceId after = 0;
      for (;;) {
        const Rows r = db_->run(std::string(kFaceColumns) + " WHERE f.id > $1 ORDER BY f.id LIMIT $2",
                                Params().add(after).add(kPage));
        for (std::size_t i = 0; i < r.size(); ++i) {
          const FaceRecord f = face_from(r, i, true);  // opens under the old key, or names the face
          const std::vector<std::uint8_t> sealed =
              next->seal(f.embedding, template_ad(r.int64(i, 15), f.collection, f.id, f.subject, f.model_id));
          db_->defer("UPDATE faces SET template = $1 WHERE id = $2", Params().add_bytes(sealed).add(f.id));
          collections.insert(f.collection);
          after = f.id;
          progress(++done);
        }
        if (r.size() < static_cast<std::size_t>(kPage)) break;
      }
      // Everything else sealed under the store key moves with the templates: photo-library
      // templates and the streams' sources and outputs.
      const std::int64_t library_templates = reseal_library_templates(*db_, *cipher_, *next);
      const std::int64_t streams = reseal_streams(*db_, *cipher_, *next);
      db_->defer("UPDATE meta SET value = $1 WHERE key = 'key_check'", Params().add(next->key_check_value()));
      db_->defer("INSERT INTO meta (key, value) VALUES ('key_rotation', $1)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 Params().add(rotation_note));
      audit.details = dump(json{{"faces_reencrypted", done}, {"collections", collections.size()},
                                {"library_templates_reencrypted", library_templates},
                                {"streams_reencrypted", streams}});
      next_cipher_ = std::move(next);
      return done;
    });
  }
};

}  // namespace

Result<std::int64_t> reencrypt_templates(Store& store, std::unique_ptr<TemplateCipher> next, const AuditContext& ctx,
                                         const std::string& rotation_note,
                                         const std::function<void(std::int64_t)>& progress) {
  auto* core = dynamic_cast<CoreStore*>(&store);
  if (core == nullptr) return Error{ErrorCode::kInternal, "key rotation needs a store opened by open_store"};
  return core->reencrypt(std::move(next), ctx, rotation_note, progress);
}

std::unique_ptr<Store> make_core_store(std::unique_ptr<Driver> driver, const StoreOptions& options) {
  return std::make_unique<CoreStore>(std::move(driver), options);
}

}  // namespace candor::store_detail
