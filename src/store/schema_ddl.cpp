// The schema's migrations, once for both databases (see schema_ddl.h).
#include "schema_ddl.h"

#include "store_common.h"

#include <array>
#include <utility>

namespace candor::store_detail {
namespace {

// Timestamps are milliseconds since the Unix epoch (UTC). Ids of faces and
// collections are never reused (SQLite AUTOINCREMENT; PostgreSQL sequences,
// which never hand out a value twice, not even after a rollback), so a face id
// an index still holds after a deletion can never name someone else's face,
// and a recreated collection never shares associated data with its
// predecessor's ciphertexts.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE collections (
  id                {id},
  name              TEXT NOT NULL UNIQUE,
  purpose           TEXT NOT NULL,
  retention_days    INTEGER NOT NULL CHECK (retention_days > 0),
  match_threshold   {real} NOT NULL,
  liveness_required {flag},
  created_at        {bigint} NOT NULL
);

CREATE TABLE consents (
  id              {id},
  collection_id   {bigint} NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  subject         TEXT NOT NULL,
  purpose         TEXT NOT NULL,
  evidence_sha256 TEXT NOT NULL,
  collected_by    TEXT NOT NULL,
  granted_at      {bigint} NOT NULL,
  expires_at      {bigint},
  revoked_at      {bigint}
);
CREATE INDEX consents_by_subject ON consents(collection_id, subject);
CREATE INDEX consents_by_subject_only ON consents(subject);

CREATE TABLE faces (
  id             {id},
  collection_id  {bigint} NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  subject        TEXT NOT NULL,
  dim            INTEGER NOT NULL,
  template       {blob} NOT NULL,
  box_x          {real} NOT NULL,
  box_y          {real} NOT NULL,
  box_w          {real} NOT NULL,
  box_h          {real} NOT NULL,
  detector_score {real} NOT NULL,
  quality_level  TEXT NOT NULL,
  quality_json   TEXT NOT NULL,
  image_sha256   TEXT NOT NULL,
  model_id       TEXT NOT NULL,
  created_at     {bigint} NOT NULL
);
CREATE INDEX faces_by_subject ON faces(collection_id, subject);
CREATE INDEX faces_by_subject_only ON faces(subject);
CREATE INDEX faces_by_age ON faces(collection_id, created_at);

CREATE TABLE audit_log (
  seq          {bigint} PRIMARY KEY,
  time         {bigint} NOT NULL,
  actor        TEXT NOT NULL,
  operation    TEXT NOT NULL,
  collection   TEXT NOT NULL,
  subject_tags TEXT NOT NULL,
  details      TEXT NOT NULL,
  reason       TEXT NOT NULL,
  result       TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit_log(time);
CREATE INDEX audit_by_collection ON audit_log(collection, seq);
{audit_log_indexes}
-- A speed bump, not a security boundary: it stops the application (or a
-- careless operator) from rewriting history; the hash chain is what detects
-- someone who drops the triggers first.
{audit_log_guards}
-- The last appended entry. Read (PostgreSQL: locked FOR UPDATE) and advanced
-- inside every writing transaction, so appends are serialised, the chain never
-- forks, seqs are assigned in commit order and a deleted tail is detectable.
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  {bigint} NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Unhashed index from entries to subject names; erasure deletes from it.
CREATE TABLE audit_subjects (
  seq        {bigint} NOT NULL,
  tag        TEXT NOT NULL,
  subject    TEXT NOT NULL,
  collection TEXT NOT NULL,
  PRIMARY KEY (seq, tag)
);
CREATE INDEX audit_subjects_by_subject ON audit_subjects(subject, collection);

-- Per-subject salt for audit tags; deleting it makes old tags unlinkable.
CREATE TABLE subject_salts (
  subject TEXT PRIMARY KEY,
  salt    TEXT NOT NULL
);

-- Search counts per actor in minute ('m') and day ('d') buckets.
CREATE TABLE search_counters (
  actor        TEXT NOT NULL,
  unit         TEXT NOT NULL CHECK (unit IN ('m', 'd')),
  bucket_start {bigint} NOT NULL,
  count        {bigint} NOT NULL,
  PRIMARY KEY (actor, unit, bucket_start)
);
)sql";

// v2: the change feed and the HTTP service's API keys.
// face_changes.version is the audit seq of the writing transaction; id orders
// the changes within one version. time (ms) is when the change was written,
// for pruning. meta 'feed_pruned_through' records the highest version pruned,
// so changes_since() can tell a caller it missed changes.
constexpr std::string_view kSchemaV2 = R"sql(
CREATE TABLE face_changes (
  id         {id},
  version    {bigint} NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('added', 'removed', 'collection_deleted')),
  collection TEXT NOT NULL,
  face_id    {bigint} NOT NULL,
  time       {bigint} NOT NULL
);
CREATE INDEX face_changes_by_version ON face_changes(version);
CREATE INDEX face_changes_by_time ON face_changes(time);

CREATE TABLE api_keys (
  name        TEXT PRIMARY KEY,
  hash_hex    TEXT NOT NULL,
  scopes_json TEXT NOT NULL,
  created_at  {bigint} NOT NULL
);
)sql";

// v3: operating points calibrated on an operator's own people (`candor calibrate`),
// as JSON (store_common.h calibration_to_json); NULL: the recogniser's shipped points.
constexpr std::string_view kSchemaV3 = R"sql(
ALTER TABLE collections ADD COLUMN calibration TEXT;
)sql";

// v4: camera streams a server runs (issue 12). source_sealed and outputs_sealed hold the
// source URL and the outputs (credentials) sealed under the template key; the redacted
// copies are for display. owner_node / lease_expires_at: the lease by which one node of
// several runs a stream (Store::claim_stream).
constexpr std::string_view kSchemaV4 = R"sql(
CREATE TABLE streams (
  id                    TEXT PRIMARY KEY,
  name                  TEXT NOT NULL,
  source_sealed         {blob} NOT NULL,
  source_redacted       TEXT NOT NULL,
  collection            TEXT NOT NULL,
  purpose               TEXT NOT NULL,
  reason                TEXT NOT NULL,
  operating_point       TEXT NOT NULL,
  outputs_sealed        {blob} NOT NULL,
  outputs_redacted      TEXT NOT NULL,
  created_by            TEXT NOT NULL,
  running               INTEGER NOT NULL CHECK (running IN (0, 1)),
  owner_node            TEXT,
  lease_expires_at      {bigint},
  created_at            {bigint} NOT NULL
);
)sql";

// v5: photo libraries (candor/library_store.h, issue 13). A library is one owner's photos;
// nothing of it is a collection (no consent, no change feed, no search path reaches it).
// library_faces.template is NULL once the face is forgotten: the row stays as the marker
// (photo hash + box) that keeps a later ingest of the same photo from bringing it back.
// Groups are numbered per library by the grouping (FaceGrouping ids); library_groups holds
// only what the owner set on a number (a label, hidden). Hidden is 0/1 in both dialects.
constexpr std::string_view kSchemaV5 = R"sql(
CREATE TABLE libraries (
  id             {id},
  name           TEXT NOT NULL UNIQUE,
  owner          TEXT NOT NULL,
  retention_days INTEGER NOT NULL CHECK (retention_days > 0),
  created_at     {bigint} NOT NULL
);

CREATE TABLE library_photos (
  id         {id},
  library_id {bigint} NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
  path       TEXT NOT NULL,
  sha256     TEXT NOT NULL,
  size       {bigint} NOT NULL,
  mtime      {bigint} NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('ingested', 'failed')),
  faces      INTEGER NOT NULL,
  error      TEXT NOT NULL,
  added_at   {bigint} NOT NULL,
  UNIQUE (library_id, path)
);
CREATE INDEX library_photos_by_hash ON library_photos(library_id, sha256);

CREATE TABLE library_faces (
  id             {id},
  library_id     {bigint} NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
  photo_id       {bigint} NOT NULL REFERENCES library_photos(id) ON DELETE CASCADE,
  photo_sha256   TEXT NOT NULL,
  box_x          {real} NOT NULL,
  box_y          {real} NOT NULL,
  box_w          {real} NOT NULL,
  box_h          {real} NOT NULL,
  detector_score {real} NOT NULL,
  dim            INTEGER NOT NULL,
  model_id       TEXT NOT NULL,
  template       {blob},
  group_number   {bigint},
  state          TEXT NOT NULL CHECK (state IN ('active', 'forgotten')),
  created_at     {bigint} NOT NULL
);
CREATE INDEX library_faces_by_photo ON library_faces(photo_id);
CREATE INDEX library_faces_by_hash ON library_faces(library_id, photo_sha256);
CREATE INDEX library_faces_by_group ON library_faces(library_id, group_number);

CREATE TABLE library_groups (
  library_id {bigint} NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
  number     {bigint} NOT NULL,
  label      TEXT,
  hidden     INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
  PRIMARY KEY (library_id, number)
);

CREATE TABLE library_corrections (
  id         {id},
  library_id {bigint} NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
  kind       TEXT NOT NULL CHECK (kind IN ('must_link', 'cannot_link')),
  face_a     {bigint} NOT NULL,
  face_b     {bigint} NOT NULL,
  created_at {bigint} NOT NULL
);
CREATE INDEX library_corrections_by_library ON library_corrections(library_id);
)sql";

// v6: two per-row costs of every enrollment that no query needed (issue 15: PostgreSQL's
// batch enrollment within 1.5x of SQLite's).
// - faces_by_subject_only: the only readers of faces by subject alone (erasure in every
//   collection, subject export) now reach the subject's faces through each collection's
//   faces_by_subject (collection_id, subject), so an enrollment updates one index of faces
//   by subject, not two.
// - The foreign key faces.collection_id -> collections: on PostgreSQL it is a trigger
//   that runs a `SELECT ... FOR KEY SHARE` of the collection for every inserted face.
//   Nothing depends on it: enroll() reads the collection (and the consent) under the write
//   lock every write transaction takes first (the audit head), so no deletion of the
//   collection can commit between that check and the insert; delete_collection() deletes
//   the collection's faces itself, in the same transaction, before the collection.
//   Dropping it is spelled per dialect ({drop_faces_collection_fk}): SQLite cannot drop
//   a constraint and rebuilds the table.
constexpr std::string_view kSchemaV6 = R"sql(
DROP INDEX faces_by_subject_only;
{drop_faces_collection_fk}
)sql";

// v7: each library face's template norm before L2 normalisation (Face::embedding_norm), the
// quality signal the grouping weighs (include/candor/library.h, qual=). Faces stored before
// it read 0, "unknown": the grouping treats them as it did before.
constexpr std::string_view kSchemaV7 = R"sql(
ALTER TABLE library_faces ADD COLUMN template_norm {real} NOT NULL DEFAULT 0;
)sql";

// v8: how often a stream detects and how many frames it holds for its worker
// (StreamOptions::detect_every, buffer_frames), set per stream by its creator; NULL: the
// library's defaults, which is what every stream created before v8 ran with.
constexpr std::string_view kSchemaV8 = R"sql(
ALTER TABLE streams ADD COLUMN detect_every INTEGER;
ALTER TABLE streams ADD COLUMN buffer_frames INTEGER;
)sql";

// v9: the camera's exposure time (StreamOptions::shutter_s), set per stream by its creator
// so that a moving face is deblurred before its template; NULL: unknown, no deblurring,
// which is what every stream created before v9 ran with.
constexpr std::string_view kSchemaV9 = R"sql(
ALTER TABLE streams ADD COLUMN shutter_s {real};
)sql";

// v10: the share of strangers' tracks a stream's collection size may cost
// (DecisionOptions::strangers_named), set per stream by its creator; NULL: the library's
// default, which is what every stream created before v10 ran with; 0: the collection's
// operating point alone, whatever its size.
constexpr std::string_view kSchemaV10 = R"sql(
ALTER TABLE streams ADD COLUMN strangers_named {real};
)sql";

constexpr std::array<std::pair<int, std::string_view>, 10> kMigrations = {{
    {1, kSchemaV1},
    {2, kSchemaV2},
    {3, kSchemaV3},
    {4, kSchemaV4},
    {5, kSchemaV5},
    {6, kSchemaV6},
    {7, kSchemaV7},
    {8, kSchemaV8},
    {9, kSchemaV9},
    {10, kSchemaV10},
}};

// `text` with every {token} replaced by the dialect's spelling.
std::string spell(std::string_view text, const SchemaDialect& d) {
  const std::array<std::pair<std::string_view, std::string_view>, 8> words = {{
      {"{id}", d.id},
      {"{bigint}", d.bigint},
      {"{real}", d.real},
      {"{blob}", d.blob},
      {"{flag}", d.flag},
      {"{audit_log_guards}", d.audit_log_guards},
      {"{audit_log_indexes}", d.audit_log_indexes},
      {"{drop_faces_collection_fk}", d.drop_faces_collection_fk},
  }};
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    bool replaced = false;
    if (text[i] == '{') {
      for (const auto& [token, word] : words) {
        if (text.substr(i, token.size()) == token) {
          out += word;
          i += token.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out += text[i++];
  }
  return out;
}

}  // namespace

void apply_migrations(std::int64_t current, const std::vector<SchemaMigration>& migrations,
                      const std::function<void(const SchemaMigration&)>& apply) {
  const int latest = migrations.back().version;
  if (current > latest) {
    fail(ErrorCode::kStoreError, "database schema version " + std::to_string(current) +
                                     " is newer than this build of Candor understands (" + std::to_string(latest) +
                                     "); upgrade Candor");
  }
  for (const SchemaMigration& m : migrations) {
    if (m.version > current) apply(m);
  }
}

void require_current_schema(std::int64_t current, const std::vector<SchemaMigration>& migrations) {
  apply_migrations(current, migrations, [current, &migrations](const SchemaMigration&) {
    fail(ErrorCode::kStoreError, "database schema version " + std::to_string(current) + " is older than this build's (" +
                                     std::to_string(migrations.back().version) +
                                     ") and it was opened read-only; run `candor migrate` first");
  });
}

std::vector<SchemaMigration> schema_migrations(const SchemaDialect& dialect) {
  std::vector<SchemaMigration> out;
  for (const auto& [version, text] : kMigrations) out.push_back(SchemaMigration{version, spell(text, dialect)});
  return out;
}

}  // namespace candor::store_detail
