// backup_store (candor/backup.h): a consistent copy of a live SQLite store.
//
// Consistency comes from copying every page in one sqlite3_backup_step(-1) call, which
// reads the source in one read transaction: in WAL mode a reader sees the database as of
// its transaction's start and does not block writers. (A backup in several steps takes a
// read transaction per step and restarts whenever another connection wrote in between,
// even with a transaction held open around it: measured here, a 36 MB store under two
// writers never finished.) The audit head the copy holds names its snapshot. Durability of
// the copy comes from writing it under a name that says it is partial and renaming it
// only once it is complete, checked and fsynced.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "candor/backup.h"
#include "sqlite_db.h"
#include "store_common.h"

namespace candor {
namespace {

using store_detail::Database;
using store_detail::StoreFailure;
using store_detail::fail;

void fsync_path(const std::filesystem::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::kIoError, "cannot open " + path.string() + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail(ErrorCode::kIoError, "cannot fsync " + path.string() + ": " + std::strerror(err));
}

// Where the key of the store at `path` is, and whether it is the store's key, without
// creating anything (open_store's rules; the key itself stays in memory only).
void describe_key(Database& source, const std::string& path, const StoreOptions& options, BackupReport& report) {
  try {
    store_detail::ResolvedKey key = store_detail::resolve_key(options, path, path + ".key", false, 0);
    report.key_source = key.source;
    const std::optional<std::string> kcv = source.query_text("SELECT value FROM meta WHERE key = 'key_check'");
    report.key_found = kcv && *kcv == TemplateCipher(std::move(key.key)).key_check_value();
    if (!report.key_found) report.key_source += " (but it is not this store's key: the key check value differs)";
  } catch (const StoreFailure& f) {
    report.key_source = f.error.message;
  }
}

// Copies `source`, as of one read snapshot, into a new file `partial`.
// ensures: the audit seq of the last transaction the copy holds.
std::int64_t copy_pages(Database& source, const std::filesystem::path& partial) {
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail(ErrorCode::kIoError, "cannot create " + partial.string() + ": " + std::strerror(errno));
  ::close(fd);
  Database dest(partial.string(), false);
  // No journal: until the rename nothing reads this file, and a crash leaves a partial
  // file that is deleted, never repaired.
  dest.exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF");
  sqlite3_backup* backup = sqlite3_backup_init(dest.handle(), "main", source.handle(), "main");
  if (backup == nullptr) dest.raise(sqlite3_errcode(dest.handle()), "backup");
  const int rc = sqlite3_backup_step(backup, -1);  // every page, one read transaction
  const int finish = sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) dest.raise(rc, "backup step");
  if (finish != SQLITE_OK) dest.raise(finish, "backup");
  const std::optional<std::string> check = dest.query_text("PRAGMA quick_check");
  if (check != "ok") fail(ErrorCode::kStoreError, "the copy fails its check: " + check.value_or("no answer"));
  return dest.query_int("SELECT seq FROM audit_head WHERE id = 1").value_or(0);
}

Result<BackupReport> backup_sqlite(const std::string& path, const std::filesystem::path& out,
                                   const StoreOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Error{ErrorCode::kNotFound, "database " + path + " does not exist"};
  if (std::filesystem::exists(std::filesystem::symlink_status(out, ec))) {
    return Error{ErrorCode::kAlreadyExists, out.string() + " exists; a backup never overwrites a file"};
  }
  const std::filesystem::path partial = out.string() + ".partial-" + std::to_string(::getpid());
  try {
    BackupReport report;
    report.path = out;
    {
      Database source(path, false);
      sqlite3_busy_timeout(source.handle(), options.busy_timeout_ms);
      if (!source.query_int("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_head'")) {
        fail(ErrorCode::kStoreError, path + " is not a Candor store (no audit chain)");
      }
      describe_key(source, path, options, report);
      report.audit_seq = copy_pages(source, partial);
    }
    fsync_path(partial, O_RDONLY);
    if (::rename(partial.c_str(), out.c_str()) != 0) {
      fail(ErrorCode::kIoError, "cannot rename " + partial.string() + " to " + out.string() + ": " + std::strerror(errno));
    }
    std::filesystem::path dir = out.parent_path();
    fsync_path(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
    report.bytes = static_cast<std::int64_t>(std::filesystem::file_size(out));
    return report;
  } catch (const StoreFailure& f) {
    std::filesystem::remove(partial, ec);
    return f.error;
  } catch (const std::filesystem::filesystem_error& e) {
    std::filesystem::remove(partial, ec);
    return Error{ErrorCode::kIoError, e.what()};
  }
}

}  // namespace

Result<BackupReport> backup_store(std::string_view uri, const std::filesystem::path& out, const StoreOptions& options) {
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) {
    return Error{ErrorCode::kInvalidArgument,
                 "candor backup copies SQLite stores; back up PostgreSQL with its own tools: pg_dump -Fc for one "
                 "database, pg_basebackup (with WAL archiving) for the cluster and point-in-time recovery (README "
                 "'Backups, upgrades and the Debian package'). The template key is not in the database either: "
                 "keep it apart"};
  }
  if (out.empty()) return Error{ErrorCode::kInvalidArgument, "no backup file named"};
  std::string_view path = uri;
  if (path.starts_with("sqlite:")) path.remove_prefix(7);
  if (path.empty()) return Error{ErrorCode::kInvalidArgument, "store URI names no database file"};
  return backup_sqlite(std::string(path), out, options);
}

}  // namespace candor
