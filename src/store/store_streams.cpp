// The streams table (store_streams.h): camera streams a server runs, their sealed
// credentials, and the lease by which one node of several runs each.
#include "store_streams.h"

#include <sodium.h>

#include <array>
#include <nlohmann/json.hpp>

namespace candor::store_detail {
namespace {

using json = nlohmann::json;

constexpr std::string_view kStreamColumns =
    "SELECT id, name, source_redacted, collection, purpose, reason, operating_point, outputs_redacted, created_by,"
    " running, owner_node, lease_expires_at, created_at, detect_every, buffer_frames,"
    " shutter_s, strangers_named FROM streams";

// A stream's name is a label in every event and audit entry (as StreamOptions::name).
constexpr std::size_t kMaxStreamNameBytes = 128;
// A URL longer than this is no camera's; the limit keeps a hostile field out of the store.
constexpr std::size_t kMaxSourceBytes = 2048;
constexpr std::size_t kMaxOutputsBytes = 4096;

StreamRecord stream_from(const Rows& r, std::size_t i) {
  StreamRecord s;
  s.id = r.text(i, 0);
  s.name = r.text(i, 1);
  s.source_redacted = r.text(i, 2);
  s.collection = r.text(i, 3);
  s.purpose = r.text(i, 4);
  s.reason = r.text(i, 5);
  s.operating_point = r.text(i, 6);
  s.outputs_redacted_json = r.text(i, 7);
  s.created_by = r.text(i, 8);
  s.running = r.boolean(i, 9);
  if (!r.is_null(i, 10)) s.owner_node = r.text(i, 10);
  if (auto v = r.optional_int(i, 11)) s.lease_expires_at = from_ms(*v);
  s.created_at = from_ms(r.int64(i, 12));
  if (auto v = r.optional_int(i, 13)) s.detect_every = static_cast<int>(*v);
  if (auto v = r.optional_int(i, 14)) s.buffer_frames = static_cast<int>(*v);
  if (!r.is_null(i, 15)) s.shutter_s = r.dbl(i, 15);
  if (!r.is_null(i, 16)) s.strangers_named = r.dbl(i, 16);
  return s;
}

// Associated data of a stream's sealed fields: a ciphertext copied into another stream's
// row, or from one field into the other, does not open.

std::string new_stream_id() {
  std::array<std::uint8_t, 8> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  return "st_" + to_hex(bytes);
}

std::string details_of(const StreamRecord& s) {
  return json{{"id", s.id}, {"name", s.name}, {"source", s.source_redacted}}.dump(-1, ' ', false,
                                                                                   json::error_handler_t::replace);
}

void validate(const NewStream& spec) {
  require_text(spec.name, "stream name", kMaxStreamNameBytes);
  require_text(spec.source, "stream source", kMaxSourceBytes);
  require_text(spec.source_redacted, "redacted stream source", kMaxSourceBytes);
  require_collection_name(spec.collection);
  require_text(spec.purpose, "purpose");
  require_text(spec.reason, "reason", kMaxReasonBytes);
  if (spec.operating_point.size() > 64) fail(ErrorCode::kInvalidArgument, "operating point is longer than 64 bytes");
  require_text(spec.created_by, "stream owner", kMaxActorBytes);
  for (const std::optional<int>* v : {&spec.detect_every, &spec.buffer_frames}) {
    if (v->has_value() && **v <= 0) fail(ErrorCode::kInvalidArgument, "a stream's detect_every and buffer_frames are > 0");
  }
  // !(x > 0 && x <= 1) also refuses NaN.
  if (spec.shutter_s && !(*spec.shutter_s > 0 && *spec.shutter_s <= 1)) {
    fail(ErrorCode::kInvalidArgument, "a stream's shutter_s is > 0 and <= 1 (seconds)");
  }
  if (spec.strangers_named && !(*spec.strangers_named >= 0 && *spec.strangers_named < 1)) {
    fail(ErrorCode::kInvalidArgument, "a stream's strangers_named is a fraction of tracks >= 0 and < 1");
  }
  for (const std::string* o : {&spec.outputs_json, &spec.outputs_redacted_json}) {
    if (o->size() > kMaxOutputsBytes) fail(ErrorCode::kInvalidArgument, "stream outputs are too large");
    const json j = json::parse(*o, nullptr, false);
    if (!j.is_object()) fail(ErrorCode::kInvalidArgument, "stream outputs must be a JSON object");
  }
}

}  // namespace

std::string stream_ad(std::string_view id, std::string_view field) {
  return "candor-stream-v1:" + std::string(field) + ":" + std::string(id);
}

StreamRecord insert_stream(Driver& db, const TemplateCipher& cipher, TimePoint now, const NewStream& spec,
                           AuditDraft& audit) {
  validate(spec);
  if (db.run("SELECT 1 FROM collections WHERE name = $1", Params().add(spec.collection)).empty()) {
    fail(ErrorCode::kNotFound, "no collection named '" + spec.collection + "'");
  }
  StreamRecord s;
  s.id = new_stream_id();
  s.name = spec.name;
  s.source_redacted = spec.source_redacted;
  s.collection = spec.collection;
  s.purpose = spec.purpose;
  s.reason = spec.reason;
  s.operating_point = spec.operating_point;
  s.outputs_redacted_json = spec.outputs_redacted_json;
  s.created_by = spec.created_by;
  s.running = spec.running;
  s.created_at = now;
  s.detect_every = spec.detect_every;
  s.buffer_frames = spec.buffer_frames;
  s.shutter_s = spec.shutter_s;
  s.strangers_named = spec.strangers_named;
  const auto source = cipher.seal_text(spec.source, stream_ad(s.id, "source"));
  const auto outputs = cipher.seal_text(spec.outputs_json, stream_ad(s.id, "outputs"));
  db.defer(
      "INSERT INTO streams (id, name, source_sealed, source_redacted, collection, purpose, reason, operating_point,"
      " outputs_sealed, outputs_redacted, created_by, running, owner_node, lease_expires_at, created_at, detect_every,"
      " buffer_frames, shutter_s, strangers_named)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, $13, $14, $15, $16, $17)",
      Params()
          .add(s.id)
          .add(s.name)
          .add_bytes(source)
          .add(s.source_redacted)
          .add(s.collection)
          .add(s.purpose)
          .add(s.reason)
          .add(s.operating_point)
          .add_bytes(outputs)
          .add(s.outputs_redacted_json)
          .add(s.created_by)
          .add(s.running ? 1 : 0)
          .add(ms(now))
          .add(s.detect_every ? std::optional<std::int64_t>(*s.detect_every) : std::nullopt)
          .add(s.buffer_frames ? std::optional<std::int64_t>(*s.buffer_frames) : std::nullopt)
          .add(s.shutter_s)
          .add(s.strangers_named));
  audit.collection = s.collection;
  audit.details = details_of(s);
  return s;
}

std::vector<StreamRecord> select_streams(Driver& db) {
  const Rows r = db.run(std::string(kStreamColumns) + " ORDER BY created_at, id");
  std::vector<StreamRecord> out;
  for (std::size_t i = 0; i < r.size(); ++i) out.push_back(stream_from(r, i));
  return out;
}

StreamRecord select_stream(Driver& db, std::string_view id) {
  require_text(id, "stream id", 64);
  const Rows r = db.run(std::string(kStreamColumns) + " WHERE id = $1", Params().add(id));
  if (r.empty()) fail(ErrorCode::kNotFound, "no such stream");
  return stream_from(r, 0);
}

StreamSecrets open_stream_secrets(Driver& db, const TemplateCipher& cipher, std::string_view id) {
  require_text(id, "stream id", 64);
  const Rows r = db.run("SELECT source_sealed, outputs_sealed FROM streams WHERE id = $1", Params().add(id));
  if (r.empty()) fail(ErrorCode::kNotFound, "no such stream");
  auto source = cipher.open_text(r.bytes(0, 0), stream_ad(id, "source"));
  auto outputs = cipher.open_text(r.bytes(0, 1), stream_ad(id, "outputs"));
  if (!source || !outputs) fail(ErrorCode::kIntegrityError, "a stream's sealed source does not open");
  return StreamSecrets{std::move(*source), std::move(*outputs)};
}

std::int64_t reseal_streams(Driver& db, const TemplateCipher& from, const TemplateCipher& to) {
  const Rows r = db.run("SELECT id FROM streams ORDER BY id");
  for (std::size_t i = 0; i < r.size(); ++i) {
    const std::string id = r.text(i, 0);
    const StreamSecrets secrets = open_stream_secrets(db, from, id);
    db.defer("UPDATE streams SET source_sealed = $1, outputs_sealed = $2 WHERE id = $3",
             Params()
                 .add_bytes(to.seal_text(secrets.source, stream_ad(id, "source")))
                 .add_bytes(to.seal_text(secrets.outputs_json, stream_ad(id, "outputs")))
                 .add(id));
  }
  return static_cast<std::int64_t>(r.size());
}

StreamRecord update_stream_running(Driver& db, std::string_view id, bool running, AuditDraft& audit) {
  StreamRecord s = select_stream(db, id);
  audit.collection = s.collection;
  audit.details = details_of(s);
  // Stopping frees the lease too, so a start on another node need not wait for it to expire.
  db.defer(running ? "UPDATE streams SET running = $2 WHERE id = $1"
                   : "UPDATE streams SET running = $2, owner_node = NULL, lease_expires_at = NULL WHERE id = $1",
           Params().add(id).add(running ? 1 : 0));
  s.running = running;
  if (!running) s.owner_node.clear(), s.lease_expires_at.reset();
  return s;
}

void remove_stream(Driver& db, std::string_view id, AuditDraft& audit) {
  const StreamRecord s = select_stream(db, id);
  audit.collection = s.collection;
  audit.details = details_of(s);
  db.defer("DELETE FROM streams WHERE id = $1", Params().add(id));
}

bool claim_stream_lease(Driver& db, std::string_view id, std::string_view node, TimePoint now,
                        std::chrono::milliseconds ttl) {
  require_text(id, "stream id", 64);
  require_text(node, "node id", 256);
  if (ttl.count() <= 0) fail(ErrorCode::kInvalidArgument, "a lease needs a positive duration");
  if (db.run("SELECT 1 FROM streams WHERE id = $1", Params().add(id)).empty()) fail(ErrorCode::kNotFound, "no such stream");
  const Rows r = db.run(
      "UPDATE streams SET owner_node = $2, lease_expires_at = $3 WHERE id = $1 AND running = $5"
      " AND (owner_node IS NULL OR owner_node = $2 OR lease_expires_at IS NULL OR lease_expires_at <= $4)",
      Params().add(id).add(node).add(ms(now) + ttl.count()).add(ms(now)).add(1));
  return r.affected() == 1;
}

void release_stream_lease(Driver& db, std::string_view id, std::string_view node) {
  db.defer("UPDATE streams SET owner_node = NULL, lease_expires_at = NULL WHERE id = $1 AND owner_node = $2",
           Params().add(id).add(node));
}

}  // namespace candor::store_detail
