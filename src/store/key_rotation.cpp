// rotate_key (candor/backup.h): the files of a key rotation around the one transaction
// that re-encrypts (reencrypt_templates, in the store core).
//
// Order, each step durable before the next, so that a process killed anywhere leaves a
// store that opens with exactly one of the two keys:
//   1. the new key is written to its pending file (O_EXCL, 0600, fsync, directory fsync);
//   2. one transaction re-seals every template and records the new key check value and
//      a note naming the pending file (meta 'key_rotation'): before its commit the old
//      key is the store's, after it the new one;
//   3. in place: link(key file, "<key file>.old"), then rename(pending, key file), each
//      followed by a directory fsync. rename replaces atomically, so the key file always
//      holds one whole key.
// A rerun finds the pending file: if the store opens with it, step 3 was cut off and is
// finished; if not, step 2 never committed and the file is a leftover, removed.
//
// Test hook: CANDOR_TEST_KILL_KEY_ROTATE=midway|committed|linked makes the process kill
// itself with SIGKILL at that point (tests/cli/key_rotate_cli_test.cpp); it is read only
// here and changes nothing else.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "candor/backup.h"
#include "store_driver.h"

namespace candor {
namespace {

using store_detail::fail;
using store_detail::StoreFailure;

void test_kill_point(std::string_view point) {
  const char* at = std::getenv("CANDOR_TEST_KILL_KEY_ROTATE");
  if (at != nullptr && point == at) ::raise(SIGKILL);
}

bool is_pg(std::string_view uri) { return uri.starts_with("postgresql://") || uri.starts_with("postgres://"); }

// open_store's default key file for `uri`: "<path>.key" for SQLite, none for PostgreSQL.
std::string default_key_file(std::string_view uri) {
  if (is_pg(uri)) return "";
  if (uri.starts_with("sqlite:")) uri.remove_prefix(7);
  return std::string(uri) + ".key";
}

// An exclusive lock on `file`'s directory for this process's lifetime in scope:
// rotations of one key file run one at a time (a rerun must not take another's
// pending file for a leftover).
class DirLock {
 public:
  explicit DirLock(const std::string& file) {
    std::filesystem::path dir = std::filesystem::path(file).parent_path();
    if (dir.empty()) dir = ".";
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) fail(ErrorCode::kIoError, "cannot open " + dir.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX) != 0) fail(ErrorCode::kIoError, "cannot lock " + dir.string() + ": " + std::strerror(errno));
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock() { ::close(fd_); }

 private:
  int fd_ = -1;
};

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Step 3: the old key kept as `old_file`, the pending file renamed over the key file.
void install(const std::string& pending, const std::string& key_file, const std::string& old_file) {
  if (::link(key_file.c_str(), old_file.c_str()) != 0) {
    // Already linked by the run that was cut off (the same key in both), or refused.
    if (errno != EEXIST || file_text(old_file) != file_text(key_file)) {
      fail(ErrorCode::kIoError, "cannot keep the old key as " + old_file + ": " + std::strerror(errno));
    }
  }
  store_detail::fsync_parent_dir(old_file);
  test_kill_point("linked");
  if (::rename(pending.c_str(), key_file.c_str()) != 0) {
    fail(ErrorCode::kIoError, "cannot rename " + pending + " to " + key_file + ": " + std::strerror(errno));
  }
  store_detail::fsync_parent_dir(key_file);
}

// Opens the store with the key in `file`; nullptr when that is not the store's key.
std::unique_ptr<Store> open_with(std::string_view uri, const StoreOptions& options, const SecretKey& key) {
  StoreOptions with = options;
  with.key_hex = key.to_hex();
  with.create_if_missing = false;
  Result<std::unique_ptr<Store>> s = open_store(uri, with);
  if (s) return std::move(*s);
  if (s.error().code == ErrorCode::kIntegrityError) return nullptr;
  throw StoreFailure{s.error()};
}

Result<KeyRotationReport> rotate(std::string_view uri, const StoreOptions& options, const KeyRotation& rotation) {
  if (Status st = check_audit_context(rotation.context, false); !st) return st.error();
  StoreOptions existing = options;
  existing.create_if_missing = false;
  // The current key, found as open_store finds it: a file, or CANDOR_KEY / key_hex.
  store_detail::ResolvedKey current =
      store_detail::resolve_key(existing, std::string(uri), default_key_file(uri), false, 0);
  const bool from_file = current.source != "CANDOR_KEY" && current.source != "StoreOptions::key_hex";
  const std::string key_file = from_file ? current.source : "";
  const bool in_place = rotation.new_key_file.empty();
  if (in_place && key_file.empty()) {
    return Error{ErrorCode::kInvalidArgument,
                 "the store's key comes from CANDOR_KEY, not a file: name a new key file to write the new key to "
                 "(--new-key-file), then give that key to every process that opens the store"};
  }
  const std::string pending = in_place ? key_file + ".new" : rotation.new_key_file;
  const std::string old_file = in_place ? key_file + ".old" : "";
  DirLock lock(pending);

  KeyRotationReport report;
  report.key_file = in_place ? key_file : pending;
  report.old_key_file = in_place ? old_file : key_file;

  // An earlier run's pending file: finish it, or drop it.
  if (std::optional<SecretKey> earlier = store_detail::read_key(pending)) {
    if (open_with(uri, existing, *earlier) != nullptr) {  // its transaction committed
      if (in_place) install(pending, key_file, old_file);
      report.finished_interrupted = true;
      return report;
    }
    if (!in_place) {
      return Error{ErrorCode::kAlreadyExists, pending + " exists and does not hold this store's key; choose a new file"};
    }
    ::unlink(pending.c_str());  // cut off before its commit: the key of nothing
    store_detail::fsync_parent_dir(pending);
  }
  if (in_place && std::filesystem::exists(std::filesystem::symlink_status(old_file))) {
    return Error{ErrorCode::kAlreadyExists,
                 old_file + " is still there from an earlier rotation; delete it once no backup needs it "
                            "(backups made before that rotation open only with it), then rotate again"};
  }

  Result<std::unique_ptr<Store>> store = open_store(uri, existing);
  if (!store) return store.error();
  SecretKey next = SecretKey::generate();
  auto cipher = std::make_unique<TemplateCipher>(next);
  if (!store_detail::write_new_key_file(pending, next)) {
    return Error{ErrorCode::kAlreadyExists, pending + " appeared while the rotation began; not touching it"};
  }
  store_detail::RotationNote note;
  note.pending_key_file = std::filesystem::absolute(pending).string();
  note.key_file = std::filesystem::absolute(report.key_file).string();
  note.previous_key_check = TemplateCipher(current.key).key_check_value();
  Result<std::int64_t> total = Error{ErrorCode::kInternal, ""};
  {
    std::int64_t held = 0;
    Result<std::vector<Collection>> collections = (*store)->list_collections();
    if (!collections) return collections.error();
    for (const Collection& c : *collections) {
      Result<std::vector<SubjectSummary>> subjects = (*store)->list_subjects(c.name);
      if (!subjects) return subjects.error();
      for (const SubjectSummary& s : *subjects) held += s.faces;
    }
    total = store_detail::reencrypt_templates(
        **store, std::move(cipher), rotation.context, store_detail::rotation_note_json(note, store_detail::ms(now_ms())),
        [held](std::int64_t done) {
          if (done * 2 >= held) test_kill_point("midway");
        });
  }
  if (!total) {
    ::unlink(pending.c_str());  // never the store's key
    return total.error();
  }
  report.faces = *total;
  test_kill_point("committed");
  if (in_place) install(pending, key_file, old_file);
  return report;
}

}  // namespace

namespace store_detail {

std::string rotation_note_json(const RotationNote& note, std::int64_t rotated_at_ms) {
  return nlohmann::json{{"previous_key_check", note.previous_key_check},
                        {"pending_key_file", note.pending_key_file},
                        {"key_file", note.key_file},
                        {"rotated_at", rotated_at_ms}}
      .dump();
}

std::string rotation_hint(const std::optional<std::string>& note_json, const std::string& offered,
                          const std::string& db_label) {
  if (!note_json) return "";
  const nlohmann::json note = nlohmann::json::parse(*note_json, nullptr, false);
  if (!note.is_object()) return "";
  const std::string previous = note.value("previous_key_check", "");
  const std::string pending = note.value("pending_key_file", "");
  const std::string key_file = note.value("key_file", "");
  if (previous != offered) return "";
  std::string hint = "; it is the database's previous key, retired by `candor key rotate`";
  std::error_code ec;
  if (pending != key_file && std::filesystem::exists(pending, ec)) {
    return hint + ". The rotation was cut off after the database was re-encrypted: the key is in " + pending +
           " and not yet installed as " + key_file + ". Run `candor key rotate --store " + db_label +
           "` again to finish, or open with --key-file " + pending;
  }
  return hint + ". The key now is the one written to " + key_file;
}

}  // namespace store_detail

Result<KeyRotationReport> rotate_key(std::string_view uri, const StoreOptions& options, const KeyRotation& rotation) {
  try {
    return rotate(uri, options, rotation);
  } catch (const StoreFailure& f) {
    return f.error;
  }
}

}  // namespace candor
