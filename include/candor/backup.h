// Candor: backing up the system of record, and checking a store (after a restore, an
// upgrade, or at any time).
//
// A backup holds the database only, never the template key: a stolen backup is
// ciphertext, and a backup is restorable only with the key kept apart from it. Without
// the key every template of the store is unreadable, by design; the audit log, consents
// and collections are not encrypted and survive.
//
// Thread safety: both functions open their own connections and may run while servers
// and other processes use the store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"
#include "candor/store.h"

namespace candor {

struct BackupReport {
  std::filesystem::path path;  // the finished backup
  std::int64_t bytes = 0;
  // The snapshot the backup holds: every transaction whose audit entry has seq <= audit_seq
  // (every writing transaction appends one), that is, every transaction committed before
  // the backup's read snapshot began, and none committed after.
  std::int64_t audit_seq = 0;
  // Where the store's template key is (a file path, or CANDOR_KEY), as open_store would
  // resolve it; when it cannot be found, key_found is false and key_source says why.
  std::string key_source;
  bool key_found = false;
};

// Copies the SQLite store at `uri` to a new file `out`, consistently, while other
// connections keep reading and writing it (SQLite's online backup API inside one read
// transaction: writers are not blocked, and the copy is the database as of that
// transaction's start). The copy is written to "<out>.partial-<pid>" (mode 0600), checked
// (PRAGMA quick_check), fsynced and only then renamed to `out`, so a backup cut off at
// any point (SIGKILL, power loss) leaves no file at `out`: whatever is there is complete.
// The key file is not copied (see key_source).
// requires: `out` does not exist (kAlreadyExists; a backup never overwrites).
// ensures: kInvalidArgument for a PostgreSQL URI (pg_dump / pg_basebackup are the tools;
//          README), kNotFound for a missing database, kStoreError for a file that is not
//          a Candor store or a copy that fails its check, kIoError for the file system.
Result<BackupReport> backup_store(std::string_view uri, const std::filesystem::path& out,
                                  const StoreOptions& options);

struct StoreCheck {
  std::int64_t collections = 0, consents = 0, faces = 0, audit_entries = 0;
  std::int64_t libraries = 0, library_faces = 0;  // photo libraries; their active faces
  // What is wrong, in the order found (the first is the one to act on); empty: the store
  // verifies. Each names the collection, face id or audit seq concerned.
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
};

// Checks a store end to end through the Store API, on either backend: it opens with its
// key (a wrong key is refused by the key check value), every template of every collection
// decrypts (load_faces), the faces each collection counts are the faces that load, every
// face's subject holds a consent record in its collection, every active face of every photo
// library decrypts, and the audit chain verifies.
// The store is opened read-only (StoreOptions::read_only): nothing is written to it, not
// even a migration (a store at an older schema is refused, naming `candor migrate`), and
// nothing is audited.
// ensures: an Error when the store cannot be opened or read (kIntegrityError for a wrong
//          key, kNotFound for a missing store or key, ...); otherwise the check, whose
//          problems say what does not verify.
Result<StoreCheck> verify_store(std::string_view uri, const StoreOptions& options);

struct KeyRotation {
  // Where the new key is written (a new file, mode 0600; it must not exist). Empty: the
  // store's key file is replaced in place (the new key is written to "<key file>.new",
  // then renamed over the key file; the old key stays as "<key file>.old"). A key given
  // as CANDOR_KEY or StoreOptions::key_hex has no file to replace: name one here.
  std::string new_key_file;
  AuditContext context;  // the "key_rotate" entry's actor and reason
};

struct KeyRotationReport {
  std::int64_t faces = 0;     // templates re-encrypted (0 when only an interrupted rotation was finished)
  std::string key_file;       // where the store's key is now
  std::string old_key_file;   // where the retired key is kept ("" when it came from CANDOR_KEY / key_hex)
  bool finished_interrupted = false;  // a rotation cut off after its commit was completed (files only)
};

// Re-encrypts every template of the store at `uri` under a fresh key in one transaction
// (audited "key_rotate" with the counts; see also StoreOptions for where the current key
// comes from), then installs the new key. The steps, each durable before the next: the
// new key is written to its pending file (fsync); one transaction re-seals every template
// and records the new key check value; then (in place) the old key file is linked to
// "<key file>.old" and the pending file renamed over the key file. Killed at any point,
// the store opens with exactly one of the two keys: before the commit the old one (the
// pending file is a stale leftover that the next rotation removes); after it the new one,
// in the pending file until it is installed, and opening with the old key says so, naming
// that file. Running rotate_key again finishes an interrupted installation.
// Rotations of one key file are serialised (a lock on its directory); processes that keep
// the store open keep the old key in memory, and their enrollments are refused from the
// commit on (kIntegrityError: restart them with the new key).
// requires: the store exists; rotation.context.actor non-empty.
// ensures: kAlreadyExists when "<key file>.old" is still there from an earlier rotation
//          (delete it first, once no backup needs it) or new_key_file exists and is not
//          the store's key; kInvalidArgument when the key has no file and none is named;
//          the errors of open_store; nothing changed on any error.
Result<KeyRotationReport> rotate_key(std::string_view uri, const StoreOptions& options, const KeyRotation& rotation);

}  // namespace candor
