// Where the template key comes from, and the rules that stop a lost key from
// silently turning into a new one (which would orphan every stored template).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <filesystem>

#include "store_common.h"

namespace candor::store_detail {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

SecretKey parse_or_fail(std::string_view hex, const std::string& source) {
  Result<SecretKey> key = SecretKey::from_hex(hex);
  if (!key) fail(ErrorCode::kInvalidArgument, "the key in " + source + " is malformed: " + key.error().message);
  return std::move(key).value();
}

// ensures: the key file's contents, nullopt if it does not exist; throws for anything else.
std::optional<std::string> read_key_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    fail(ErrorCode::kIoError, "cannot read key file " + path + ": " + errno_text(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::kIoError, "key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail(ErrorCode::kIoError, "key file " + path + " has mode " + mode +
                                  "; it must not be accessible to group or others (chmod 600 " +
                                  path + ")");
  }
  std::string text(256, '\0');
  ssize_t n = ::read(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n < 0) fail(ErrorCode::kIoError, "cannot read key file " + path + ": " + errno_text(err));
  text.resize(static_cast<std::size_t>(n));
  return text;
}

// Creates the key file with a fresh key; if another process won the race to
// create it, returns that process's key instead.
SecretKey create_key_file(const std::string& path) {
  SecretKey key = SecretKey::generate();
  if (write_new_key_file(path, key)) return key;
  std::optional<SecretKey> theirs = read_key(path);
  if (!theirs) fail(ErrorCode::kIoError, "cannot create key file " + path + ": it vanished while being created");
  return std::move(*theirs);
}

}  // namespace

void fsync_parent_dir(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::optional<SecretKey> read_key(const std::string& path) {
  std::optional<std::string> text = read_key_file(path);
  if (!text) return std::nullopt;
  return parse_or_fail(*text, "key file " + path);
}

bool write_new_key_file(const std::string& path, const SecretKey& key) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    fail(ErrorCode::kIoError, "cannot create key file " + path + ": " + errno_text(errno));
  }
  ::fchmod(fd, 0600);  // whatever the umask did
  const std::string text = key.to_hex() + "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    fail(ErrorCode::kIoError, "cannot write key file " + path + ": " + errno_text(err));
  }
  fsync_parent_dir(path);
  return true;
}

ResolvedKey resolve_key(const StoreOptions& options, const std::string& db_label,
                        const std::string& default_key_file, bool may_create, std::int64_t templates_held) {
  if (options.key_hex) {
    return ResolvedKey{parse_or_fail(*options.key_hex, "StoreOptions::key_hex"), "StoreOptions::key_hex"};
  }
  if (options.use_env_key) {
    const char* env = std::getenv("CANDOR_KEY");
    if (env != nullptr && *env != '\0') {
      return ResolvedKey{parse_or_fail(env, "CANDOR_KEY"), "CANDOR_KEY"};
    }
  }
  const std::string path = options.key_file.empty() ? default_key_file : options.key_file;
  if (path.empty()) {
    // No default file beside a server database: a key silently minted in
    // whatever directory the process started in would be lost with it.
    fail(ErrorCode::kNotFound, "database " + db_label +
                                   " needs a template key: set CANDOR_KEY (64 hex digits) or name a key file");
  }
  std::optional<std::string> text = read_key_file(path);
  if (text) return ResolvedKey{parse_or_fail(*text, "key file " + path), path};
  if (!may_create) {
    fail(ErrorCode::kNotFound,
         "database " + db_label + " is keyed (it holds " + std::to_string(templates_held) +
             " encrypted templates) but its key file " + path +
             " is missing; restore the key file or set CANDOR_KEY. Refusing to create a new key, "
             "which would make the existing templates unreadable");
  }
  return ResolvedKey{create_key_file(path), path};
}

std::unique_ptr<TemplateCipher> attach_key(const StoreOptions& options, const std::string& db_label,
                                           const std::string& default_key_file, const KeyCheckAccess& access) {
  const std::optional<std::string> kcv = access.read_kcv();
  const std::int64_t templates = access.count_templates();
  if (!kcv && templates > 0) {
    fail(ErrorCode::kIntegrityError,
         "database " + db_label + " holds templates but no key check value; it was tampered with");
  }
  ResolvedKey key = resolve_key(options, db_label, default_key_file, !kcv.has_value() && !options.read_only, templates);
  auto cipher = std::make_unique<TemplateCipher>(std::move(key.key));
  const std::string mine = cipher->key_check_value();
  if (!kcv && options.read_only) return cipher;  // an empty store that was never keyed: nothing to check against
  if (!kcv) access.insert_kcv_if_absent(mine);
  // Re-read: another process may have keyed the database first.
  const std::optional<std::string> stored = access.read_kcv();
  if (!stored || *stored != mine) {
    fail(ErrorCode::kIntegrityError,
         "wrong key for database " + db_label + ": the key from " + key.source +
             " does not match the database's key (key check value differs)" +
             rotation_hint(access.read_rotation_note ? access.read_rotation_note() : std::nullopt, mine, db_label));
  }
  return cipher;
}

}  // namespace candor::store_detail
