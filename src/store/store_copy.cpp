// migrate_store and copy_store: administration across both backends.
//
// The two schemas have the same tables and columns (pg_schema.cpp mirrors
// schema.cpp), so a copy is a table-by-table move of typed rows through a
// small interface, RawTables, with one implementation per backend. Templates
// are the one column that is not copied verbatim when the keys differ.
#include <sys/stat.h>

#include <array>
#include <map>
#include <optional>
#include <variant>

#include "pg_store.h"
#include "sqlite_store.h"
#include "store_library.h"
#include "store_streams.h"

namespace candor::store_detail {
namespace {

enum class Type { kInt, kReal, kText, kBlob, kBool };

struct Column {
  const char* name;
  Type type;
};

// A value as read from either backend; nullopt is NULL.
using Value = std::optional<std::variant<std::int64_t, double, std::string, std::vector<std::uint8_t>>>;
using Row = std::vector<Value>;

struct Table {
  const char* name;
  const char* order_by;  // a unique ordering, for paging
  const char* page_key;  // an integer key to page on, or nullptr (small tables are read whole)
  std::vector<Column> columns;
};

// Every table of the current schema (v10) but schema_version (each side has its own
// migrations) and audit_head (set from the source's head at the end), parents before
// children. meta is copied without the key check value (the destination keeps its own).
const std::vector<Table>& tables() {
  static const std::vector<Table> t = {
      {"collections", "id", "id",
       {{"id", Type::kInt}, {"name", Type::kText}, {"purpose", Type::kText}, {"retention_days", Type::kInt},
        {"match_threshold", Type::kReal}, {"liveness_required", Type::kBool}, {"created_at", Type::kInt},
        {"calibration", Type::kText}}},
      {"consents", "id", "id",
       {{"id", Type::kInt}, {"collection_id", Type::kInt}, {"subject", Type::kText}, {"purpose", Type::kText},
        {"evidence_sha256", Type::kText}, {"collected_by", Type::kText}, {"granted_at", Type::kInt},
        {"expires_at", Type::kInt}, {"revoked_at", Type::kInt}}},
      {"faces", "id", "id",
       {{"id", Type::kInt}, {"collection_id", Type::kInt}, {"subject", Type::kText}, {"dim", Type::kInt},
        {"template", Type::kBlob}, {"box_x", Type::kReal}, {"box_y", Type::kReal}, {"box_w", Type::kReal},
        {"box_h", Type::kReal}, {"detector_score", Type::kReal}, {"quality_level", Type::kText},
        {"quality_json", Type::kText}, {"image_sha256", Type::kText}, {"model_id", Type::kText},
        {"created_at", Type::kInt}}},
      {"audit_log", "seq", "seq",
       {{"seq", Type::kInt}, {"time", Type::kInt}, {"actor", Type::kText}, {"operation", Type::kText},
        {"collection", Type::kText}, {"subject_tags", Type::kText}, {"details", Type::kText}, {"reason", Type::kText},
        {"result", Type::kText}, {"prev_hash", Type::kText}, {"hash", Type::kText}}},
      {"audit_subjects", "seq, tag", nullptr,
       {{"seq", Type::kInt}, {"tag", Type::kText}, {"subject", Type::kText}, {"collection", Type::kText}}},
      {"subject_salts", "subject", nullptr, {{"subject", Type::kText}, {"salt", Type::kText}}},
      {"search_counters", "actor, unit, bucket_start", nullptr,
       {{"actor", Type::kText}, {"unit", Type::kText}, {"bucket_start", Type::kInt}, {"count", Type::kInt}}},
      {"face_changes", "id", "id",
       {{"id", Type::kInt}, {"version", Type::kInt}, {"kind", Type::kText}, {"collection", Type::kText},
        {"face_id", Type::kInt}, {"time", Type::kInt}}},
      {"api_keys", "name", nullptr,
       {{"name", Type::kText}, {"hash_hex", Type::kText}, {"scopes_json", Type::kText}, {"created_at", Type::kInt}}},
      // Streams' sealed fields are bound to their id (stream_ad), which the copy keeps.
      {"streams", "id", nullptr,
       {{"id", Type::kText}, {"name", Type::kText}, {"source_sealed", Type::kBlob},
        {"source_redacted", Type::kText}, {"collection", Type::kText}, {"purpose", Type::kText},
        {"reason", Type::kText}, {"operating_point", Type::kText}, {"outputs_sealed", Type::kBlob},
        {"outputs_redacted", Type::kText}, {"created_by", Type::kText}, {"running", Type::kInt},
        {"owner_node", Type::kText}, {"lease_expires_at", Type::kInt}, {"created_at", Type::kInt},
        {"detect_every", Type::kInt}, {"buffer_frames", Type::kInt}, {"shutter_s", Type::kReal},
        {"strangers_named", Type::kReal}}},
      {"libraries", "id", nullptr,
       {{"id", Type::kInt}, {"name", Type::kText}, {"owner", Type::kText}, {"retention_days", Type::kInt},
        {"created_at", Type::kInt}}},
      {"library_photos", "id", "id",
       {{"id", Type::kInt}, {"library_id", Type::kInt}, {"path", Type::kText}, {"sha256", Type::kText},
        {"size", Type::kInt}, {"mtime", Type::kInt}, {"status", Type::kText}, {"faces", Type::kInt},
        {"error", Type::kText}, {"added_at", Type::kInt}}},
      // A forgotten face keeps its row (the marker) with a NULL template.
      {"library_faces", "id", "id",
       {{"id", Type::kInt}, {"library_id", Type::kInt}, {"photo_id", Type::kInt}, {"photo_sha256", Type::kText},
        {"box_x", Type::kReal}, {"box_y", Type::kReal}, {"box_w", Type::kReal}, {"box_h", Type::kReal},
        {"detector_score", Type::kReal}, {"dim", Type::kInt}, {"model_id", Type::kText}, {"template", Type::kBlob},
        {"group_number", Type::kInt}, {"state", Type::kText}, {"created_at", Type::kInt},
        {"template_norm", Type::kReal}}},
      {"library_groups", "library_id, number", nullptr,
       {{"library_id", Type::kInt}, {"number", Type::kInt}, {"label", Type::kText}, {"hidden", Type::kInt}}},
      {"library_corrections", "id", "id",
       {{"id", Type::kInt}, {"library_id", Type::kInt}, {"kind", Type::kText}, {"face_a", Type::kInt},
        {"face_b", Type::kInt}, {"created_at", Type::kInt}}},
      {"meta", "key", nullptr, {{"key", Type::kText}, {"value", Type::kText}}},
  };
  return t;
}

// Tables whose integer ids come from a sequence the destination must continue.
constexpr std::array kSequenced = {"collections", "consents", "faces", "face_changes",
                                   "libraries", "library_photos", "library_faces", "library_corrections"};

std::string select_sql(const Table& t, const std::string& where, const std::string& limit) {
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < t.columns.size(); ++i) sql += (i ? ", " : "") + std::string(t.columns[i].name);
  return sql + " FROM " + t.name + where + " ORDER BY " + t.order_by + limit;
}

class RawTables {
 public:
  virtual ~RawTables() = default;
  // All rows matching the constant `sql` (no parameters; same text on both backends).
  virtual std::vector<Row> select(const Table& t, const std::string& sql) = 0;
  virtual void insert(const Table& t, const Row& row) = 0;
  virtual std::optional<std::int64_t> query_int(const std::string& sql) = 0;
  virtual void exec(const std::string& sql) = 0;
  // The last id handed out for `table` (0 if none), and setting it.
  virtual std::int64_t sequence(const std::string& table) = 0;
  virtual void set_sequence(const std::string& table, std::int64_t last) = 0;
  virtual void set_head(std::int64_t seq, const std::string& hash) = 0;
  virtual void begin(bool write) = 0;
  virtual void commit() = 0;
  virtual const TemplateCipher& cipher() const = 0;
};

class SqliteTables final : public RawTables {
 public:
  SqliteTables(const std::string& path, const StoreOptions& options, std::int64_t now)
      : db_(path, options.create_if_missing) {
    db_.exec("PRAGMA busy_timeout = " + std::to_string(std::max(0, options.busy_timeout_ms)));
    db_.query_text("PRAGMA journal_mode = WAL");
    db_.exec("PRAGMA foreign_keys = ON");
    migrate(db_, now);
    cipher_ = sqlite_attach_key(db_, path, options);
  }
  std::vector<Row> select(const Table& t, const std::string& sql) override {
    std::vector<Row> rows;
    Statement st = db_.prepare(sql);
    while (st.step()) {
      Row row;
      for (std::size_t i = 0; i < t.columns.size(); ++i) {
        const int c = static_cast<int>(i);
        if (st.column_is_null(c)) {
          row.emplace_back(std::nullopt);
          continue;
        }
        switch (t.columns[i].type) {
          case Type::kInt:
          case Type::kBool: row.emplace_back(st.column_int(c)); break;
          case Type::kReal: row.emplace_back(st.column_double(c)); break;
          case Type::kText: row.emplace_back(st.column_text(c)); break;
          case Type::kBlob: row.emplace_back(st.column_blob(c)); break;
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }
  void insert(const Table& t, const Row& row) override {
    std::string sql = std::string("INSERT INTO ") + t.name + " (";
    std::string marks;
    for (std::size_t i = 0; i < t.columns.size(); ++i) {
      sql += (i ? ", " : "") + std::string(t.columns[i].name);
      marks += i ? ", ?" : "?";
    }
    Statement st = db_.prepare(sql + ") VALUES (" + marks + ")");
    for (std::size_t i = 0; i < row.size(); ++i) {
      const int p = static_cast<int>(i) + 1;
      if (!row[i]) {
        st.bind(p, std::optional<std::int64_t>());
      } else if (const auto* v = std::get_if<std::int64_t>(&*row[i])) {
        st.bind(p, *v);
      } else if (const auto* d = std::get_if<double>(&*row[i])) {
        st.bind(p, *d);
      } else if (const auto* s = std::get_if<std::string>(&*row[i])) {
        st.bind(p, std::string_view(*s));
      } else {
        st.bind_blob(p, std::get<std::vector<std::uint8_t>>(*row[i]));
      }
    }
    st.run();
  }
  std::optional<std::int64_t> query_int(const std::string& sql) override { return db_.query_int(sql); }
  void exec(const std::string& sql) override { db_.exec(sql); }
  std::int64_t sequence(const std::string& table) override {
    Statement st = db_.prepare("SELECT seq FROM sqlite_sequence WHERE name = ?");
    st.bind(1, std::string_view(table));
    return st.step() ? st.column_int(0) : 0;
  }
  void set_sequence(const std::string& table, std::int64_t last) override {
    db_.prepare("DELETE FROM sqlite_sequence WHERE name = ?").bind(1, std::string_view(table)).run();
    db_.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)").bind(1, std::string_view(table)).bind(2, last).run();
  }
  void set_head(std::int64_t seq, const std::string& hash) override {
    db_.prepare("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1").bind(1, seq).bind(2, std::string_view(hash)).run();
  }
  void begin(bool write) override { txn_.emplace(db_, write ? Transaction::Kind::kWrite : Transaction::Kind::kRead); }
  void commit() override {
    txn_->commit();
    txn_.reset();
  }
  const TemplateCipher& cipher() const override { return *cipher_; }

 private:
  Database db_;
  std::unique_ptr<TemplateCipher> cipher_;
  std::optional<Transaction> txn_;
};

class PgTables final : public RawTables {
 public:
  PgTables(const std::string& uri, const StoreOptions& options, std::int64_t now) : db_(uri) {
    db_.connect();
    if (!options.create_if_missing && pg_schema_version(db_) == 0) {
      fail(ErrorCode::kNotFound, "database " + db_.label() + " holds no Candor store");
    }
    pg_migrate(db_, now);
    cipher_ = pg_attach_key(db_, db_.label(), options);
  }
  std::vector<Row> select(const Table& t, const std::string& sql) override {
    PgResult r = db_.exec(sql);
    std::vector<Row> rows;
    for (int i = 0; i < r.rows(); ++i) {
      Row row;
      for (std::size_t j = 0; j < t.columns.size(); ++j) {
        const int c = static_cast<int>(j);
        if (r.is_null(i, c)) {
          row.emplace_back(std::nullopt);
          continue;
        }
        switch (t.columns[j].type) {
          case Type::kInt: row.emplace_back(r.int64(i, c)); break;
          case Type::kBool: row.emplace_back(std::int64_t{r.boolean(i, c) ? 1 : 0}); break;
          case Type::kReal: row.emplace_back(r.dbl(i, c)); break;
          case Type::kText: row.emplace_back(r.text(i, c)); break;
          case Type::kBlob: row.emplace_back(r.bytes(i, c)); break;
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }
  void insert(const Table& t, const Row& row) override {
    std::string sql = std::string("INSERT INTO ") + t.name + " (";
    std::string marks;
    PgParams params;
    for (std::size_t i = 0; i < t.columns.size(); ++i) {
      sql += (i ? ", " : "") + std::string(t.columns[i].name);
      marks += (i ? ", $" : "$") + std::to_string(i + 1);
      const Value& v = row[i];
      if (!v) {
        params.add(std::optional<std::int64_t>());
      } else if (t.columns[i].type == Type::kBool) {
        params.add(std::get<std::int64_t>(*v) != 0);
      } else if (const auto* n = std::get_if<std::int64_t>(&*v)) {
        params.add(*n);
      } else if (const auto* d = std::get_if<double>(&*v)) {
        params.add(*d);
      } else if (const auto* s = std::get_if<std::string>(&*v)) {
        params.add(std::string_view(*s));
      } else {
        params.add_bytes(std::get<std::vector<std::uint8_t>>(*v));
      }
    }
    db_.exec(sql + ") VALUES (" + marks + ")", params);
  }
  std::optional<std::int64_t> query_int(const std::string& sql) override { return db_.query_int(sql); }
  void exec(const std::string& sql) override { db_.exec_script(sql); }
  std::int64_t sequence(const std::string& table) override {
    PgResult r = db_.exec("SELECT last_value, is_called FROM " + table + "_id_seq");
    return r.boolean(0, 1) ? r.int64(0, 0) : 0;
  }
  void set_sequence(const std::string& table, std::int64_t last) override {
    if (last <= 0) {
      db_.exec("SELECT setval(pg_get_serial_sequence($1, 'id'), 1, false)", PgParams().add(table));
    } else {
      db_.exec("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, true)", PgParams().add(table).add(last));
    }
  }
  void set_head(std::int64_t seq, const std::string& hash) override {
    db_.exec("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", PgParams().add(seq).add(hash));
  }
  void begin(bool write) override { txn_.emplace(db_, write ? PgTransaction::Kind::kWrite : PgTransaction::Kind::kRead); }
  void commit() override {
    txn_->commit();
    txn_.reset();
  }
  const TemplateCipher& cipher() const override { return *cipher_; }

 private:
  PgConnection db_;
  std::unique_ptr<TemplateCipher> cipher_;
  std::optional<PgTransaction> txn_;
};

bool is_pg_uri(std::string_view uri) { return uri.starts_with("postgresql://") || uri.starts_with("postgres://"); }

std::string sqlite_path(std::string_view uri) {
  if (uri.starts_with("sqlite:")) uri.remove_prefix(7);
  if (uri.empty()) fail(ErrorCode::kInvalidArgument, "store URI names no database file");
  return std::string(uri);
}

std::unique_ptr<RawTables> open_tables(std::string_view uri, const StoreOptions& options) {
  const std::int64_t now = ms(options.clock ? options.clock() : now_ms());
  if (is_pg_uri(uri)) return std::make_unique<PgTables>(std::string(uri), options, now);
  const std::string path = sqlite_path(uri);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && !options.create_if_missing) {
    fail(ErrorCode::kNotFound, "database " + path + " does not exist");
  }
  return std::make_unique<SqliteTables>(path, options, now);
}

std::int64_t as_int(const Value& v) { return v ? std::get<std::int64_t>(*v) : 0; }
const std::string& as_text(const Value& v) { return std::get<std::string>(*v); }

// Names by id of the source's collections or libraries (the associated data of their
// templates holds the name).
std::map<std::int64_t, std::string> names_by_id(RawTables& from, const char* table) {
  const Table t{table, "id", nullptr, {{"id", Type::kInt}, {"name", Type::kText}}};
  std::map<std::int64_t, std::string> out;
  for (const Row& row : from.select(t, select_sql(t, "", ""))) out[as_int(row[0])] = as_text(row[1]);
  return out;
}

const std::string& name_of(const std::map<std::int64_t, std::string>& names, std::int64_t id, const char* what,
                           std::int64_t face) {
  const auto it = names.find(id);
  if (it == names.end()) fail(ErrorCode::kIntegrityError, std::string(what) + " " + std::to_string(face) + " has no parent");
  return it->second;
}

// Everything sealed under the store key is bound (associated data) to ids and names the
// copy keeps, so under another key each value is opened with the source's key and sealed
// with the destination's, with the same associated data: collection templates, library
// templates (a forgotten face has none) and each stream's source and outputs.
void reseal_row(const Table& t, Row& row, const RawTables& from, const RawTables& to,
                const std::map<std::int64_t, std::string>& collections,
                const std::map<std::int64_t, std::string>& libraries) {
  const std::string name = t.name;
  const auto reseal_template = [&](std::size_t col, std::int64_t id, std::int64_t dim, const std::string& ad) {
    const Value& v = row[col];
    if (!v) return;
    Result<std::vector<float>> plain =
        from.cipher().open(std::get<std::vector<std::uint8_t>>(*v), ad, static_cast<std::size_t>(dim));
    if (!plain) fail(ErrorCode::kIntegrityError, name + " " + std::to_string(id) + ": " + plain.error().message);
    row[col] = to.cipher().seal(*plain, ad);
  };
  if (name == "faces") {
    const std::int64_t id = as_int(row[0]);
    const std::string& collection = name_of(collections, as_int(row[1]), "face", id);
    reseal_template(4, id, as_int(row[3]),
                    template_ad(as_int(row[1]), collection, id, as_text(row[2]), as_text(row[13])));
  } else if (name == "library_faces") {
    const std::int64_t id = as_int(row[0]);
    const std::string& library = name_of(libraries, as_int(row[1]), "library face", id);
    reseal_template(11, id, as_int(row[9]), library_template_ad(as_int(row[1]), library, id, as_text(row[10])));
  } else if (name == "streams") {
    const std::string& id = as_text(row[0]);
    for (const auto& [col, field] : {std::pair<std::size_t, const char*>{2, "source"}, {8, "outputs"}}) {
      const std::string ad = stream_ad(id, field);
      Result<std::string> plain = from.cipher().open_text(std::get<std::vector<std::uint8_t>>(*row[col]), ad);
      if (!plain) fail(ErrorCode::kIntegrityError, "stream " + id + ": " + plain.error().message);
      row[col] = to.cipher().seal_text(*plain, ad);
    }
  }
}

void copy_rows(RawTables& from, RawTables& to, const Table& t, StoreCopyReport& report, bool reseal,
               const std::map<std::int64_t, std::string>& collection_names,
               const std::map<std::int64_t, std::string>& library_names) {
  constexpr int kPage = 1000;
  std::optional<std::int64_t> after;
  for (;;) {
    std::string where = t.page_key == nullptr ? "" : (after ? " WHERE " + std::string(t.page_key) + " > " + std::to_string(*after) : "");
    if (std::string(t.name) == "meta") where = " WHERE key <> 'key_check'";
    const std::string limit = t.page_key == nullptr ? "" : " LIMIT " + std::to_string(kPage);
    std::vector<Row> rows = from.select(t, select_sql(t, where, limit));
    for (Row& row : rows) {
      if (reseal) reseal_row(t, row, from, to, collection_names, library_names);
      to.insert(t, row);
    }
    const std::string name = t.name;
    const auto n = static_cast<std::int64_t>(rows.size());
    if (name == "collections") report.collections += n;
    if (name == "consents") report.consents += n;
    if (name == "faces") report.faces += n;
    if (name == "audit_log") report.audit_entries += n;
    if (name == "subject_salts") report.subject_salts += n;
    if (name == "search_counters") report.search_counters += n;
    if (name == "api_keys") report.api_keys += n;
    if (name == "face_changes") report.changes += n;
    if (name == "streams") report.streams += n;
    if (name == "libraries") report.libraries += n;
    if (name == "library_faces") report.library_faces += n;
    if (t.page_key == nullptr || rows.size() < static_cast<std::size_t>(kPage)) break;
    after = as_int(rows.back()[0]);
  }
}

}  // namespace
}  // namespace candor::store_detail

namespace candor {

using namespace store_detail;

Result<SchemaVersions> migrate_store(std::string_view uri) {
  try {
    SchemaVersions v;
    const std::int64_t now = ms(now_ms());
    if (is_pg_uri(uri)) {
      PgConnection db{std::string(uri)};
      db.connect();
      v.before = static_cast<int>(pg_schema_version(db));
      pg_migrate(db, now);
      v.after = static_cast<int>(pg_schema_version(db));
      v.latest = pg_latest_schema_version();
    } else {
      Database db(sqlite_path(uri), true);
      db.exec("PRAGMA busy_timeout = 5000");
      db.query_text("PRAGMA journal_mode = WAL");
      v.before = static_cast<int>(schema_version(db));
      migrate(db, now);
      v.after = static_cast<int>(schema_version(db));
      v.latest = latest_schema_version();
    }
    return v;
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

Result<StoreCopyReport> copy_store(std::string_view from_uri, const StoreOptions& from_options,
                                   std::string_view to_uri, const StoreOptions& to_options) {
  try {
    StoreOptions source_options = from_options;
    source_options.create_if_missing = false;
    std::unique_ptr<RawTables> from = open_tables(from_uri, source_options);
    std::unique_ptr<RawTables> to = open_tables(to_uri, to_options);
    StoreCopyReport report;
    report.reencrypted = from->cipher().key_check_value() != to->cipher().key_check_value();

    to->begin(true);
    const std::int64_t held = to->query_int("SELECT (SELECT COUNT(*) FROM collections) + (SELECT COUNT(*) FROM api_keys)"
                                            " + (SELECT COUNT(*) FROM subject_salts) + (SELECT COUNT(*) FROM search_counters)"
                                            " + (SELECT COUNT(*) FROM libraries) + (SELECT COUNT(*) FROM streams)"
                                            " + (SELECT seq FROM audit_head WHERE id = 1)")
                                  .value_or(0);
    if (held != 0) {
      fail(ErrorCode::kAlreadyExists, "the destination store is not empty; copy only into a new, empty store");
    }
    from->begin(false);
    const std::map<std::int64_t, std::string> collection_names = names_by_id(*from, "collections");
    const std::map<std::int64_t, std::string> library_names = names_by_id(*from, "libraries");
    for (const Table& t : tables()) {
      copy_rows(*from, *to, t, report, report.reencrypted, collection_names, library_names);
    }
    // The head, so the copied chain verifies and the change feed continues at the same version.
    {
      Table head{"audit_head", "id", nullptr, {{"seq", Type::kInt}, {"hash", Type::kText}}};
      std::vector<Row> rows = from->select(head, "SELECT seq, hash FROM audit_head WHERE id = 1 ORDER BY id");
      if (rows.size() != 1) fail(ErrorCode::kIntegrityError, "the source's audit chain head is missing");
      to->set_head(as_int(rows[0][0]), as_text(rows[0][1]));
    }
    for (const char* table : kSequenced) to->set_sequence(table, from->sequence(table));
    from->commit();
    to->commit();
    return report;
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

}  // namespace candor
