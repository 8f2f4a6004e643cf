// candor migrate | store copy | store verify | backup | key rotate: administration of the system of record itself.
#include <iostream>
#include <memory>
#include <string>

#include "candor/backup.h"
#include "candor/store.h"
#include "cli_context.h"

namespace candor::cli {
namespace {

std::string store_or_default(const std::string& given) {
  if (!given.empty()) return given;
  const char* env = std::getenv("CANDOR_STORE");
  return env != nullptr && *env ? env : "candor.db";
}

// Template key options for one side: CANDOR_KEY when set, else the key file
// (for SQLite, "<database>.key" when none is named; PostgreSQL has no default).
StoreOptions key_options(const std::string& key_file) {
  StoreOptions o;
  o.key_file = key_file;
  return o;
}

int run_backup(const std::string& store, const std::string& key_file, const std::string& out) {
  Result<BackupReport> r = backup_store(store_or_default(store), out, key_options(key_file));
  if (!r) return fail(r.error());
  std::cout << "backup written: " << r->path.string() << " (" << r->bytes << " bytes), the store as of audit entry "
            << r->audit_seq << "\n"
            << "The template key is NOT in the backup. "
            << (r->key_found ? "It is " : "It was not found: ") << r->key_source << "\n"
            << "Keep a copy of the key apart from the backups (another medium, a vault): without it every template\n"
            << "in the store and in every backup is unreadable, by design. After restoring, run\n"
            << "  candor store verify --store <restored file> --key-file <the key>\n";
  return 0;
}

int run_verify(const std::string& store, const std::string& key_file) {
  Result<StoreCheck> r = verify_store(store_or_default(store), key_options(key_file));
  if (!r) return fail(r.error());
  if (!r->ok()) {
    std::cerr << "candor: store does not verify; first problem: " << r->problems.front() << "\n";
    for (std::size_t i = 1; i < r->problems.size(); ++i) std::cerr << "  also: " << r->problems[i] << "\n";
    return 1;
  }
  std::cout << "store verified: " << r->collections << " collections, " << r->consents << " consents, " << r->faces
            << " faces (every template decrypts; counts match), " << r->libraries << " photo libraries with "
            << r->library_faces << " faces (every template decrypts), " << r->audit_entries
            << " audit entries (chain intact)\n";
  return 0;
}

int run_rotate(const std::string& store, const std::string& key_file, const std::string& new_key_file,
               const std::string& actor) {
  KeyRotation rotation;
  rotation.new_key_file = new_key_file;
  const char* user = std::getenv("USER");
  rotation.context = {actor.empty() ? std::string("cli:") + (user != nullptr && *user ? user : "unknown") : actor,
                      "template key rotated"};
  const std::string uri = store_or_default(store);
  Result<KeyRotationReport> r = rotate_key(uri, key_options(key_file), rotation);
  if (!r) return fail(r.error());
  if (r->finished_interrupted) {
    std::cout << "finished an interrupted rotation: the store's key is now in " << r->key_file << "\n";
  } else {
    std::cout << "re-encrypted " << r->faces << " templates under a new key, in one audited transaction\n"
              << "the store's key is now in " << r->key_file << "\n";
  }
  if (!r->old_key_file.empty()) {
    std::cout << "the old key is kept in " << r->old_key_file
              << ": backups made before now open only with it. Delete it once no such backup is kept.\n";
  }
  std::cout << "restart every process that has the store open (they hold the old key), and keep a copy of the new "
               "key apart from the backups\n";
  return 0;
}

}  // namespace

void register_store_commands(CLI::App& app, CliContext& ctx) {
  {
    auto store = std::make_shared<std::string>();
    CLI::App* c = app.add_subcommand(
        "migrate", "Apply pending schema migrations to a store (SQLite path or postgresql:// URI); idempotent");
    c->add_option("--store", *store, "Database (default: $CANDOR_STORE or ./candor.db)");
    c->callback([&ctx, store] {
      const std::string uri = store_or_default(*store);
      Result<SchemaVersions> v = migrate_store(uri);
      if (!v) {
        ctx.exit_code = fail(v.error());
        return;
      }
      std::cout << "schema version before: " << v->before << "\n"
                << "schema version after:  " << v->after << " (newest this build knows: " << v->latest << ")\n";
    });
  }
  {
    struct BackupArgs {
      std::string store, key_file, out;
    };
    auto a = std::make_shared<BackupArgs>();
    CLI::App* c = app.add_subcommand(
        "backup", "Copy a running SQLite store consistently to a new file, without stopping the server (never the key)");
    c->add_option("--store", a->store, "Database (default: $CANDOR_STORE or ./candor.db); PostgreSQL: use pg_dump");
    c->add_option("--key-file", a->key_file, "Where the template key is, to report it (default: $CANDOR_KEY, or <db>.key)");
    c->add_option("out", a->out, "Backup file to create (must not exist)")->required();
    c->callback([&ctx, a] { ctx.exit_code = run_backup(a->store, a->key_file, a->out); });
  }
  CLI::App* store = app.add_subcommand("store", "Administer the store itself");
  store->require_subcommand(1);
  {
    struct CopyArgs {
      std::string from, to, from_key_file, to_key_file;
    };
    auto a = std::make_shared<CopyArgs>();
    CLI::App* c = store->add_subcommand(
        "copy", "Copy a whole store into a new, empty one (e.g. SQLite to PostgreSQL), audit chain included");
    c->add_option("--from", a->from, "Source store (SQLite path or postgresql:// URI)")->required();
    c->add_option("--to", a->to, "Destination store; must be empty (created if missing)")->required();
    c->add_option("--from-key-file", a->from_key_file, "Source template key file (default: $CANDOR_KEY, or <path>.key for SQLite)");
    c->add_option("--to-key-file", a->to_key_file,
                  "Destination template key file, created for a new store (default: $CANDOR_KEY, or <path>.key for "
                  "SQLite); templates are re-encrypted when the keys differ");
    c->callback([&ctx, a] {
      Result<StoreCopyReport> r = copy_store(a->from, key_options(a->from_key_file), a->to, key_options(a->to_key_file));
      if (!r) {
        ctx.exit_code = fail(r.error());
        return;
      }
      std::cout << "copied " << r->collections << " collections, " << r->consents << " consents, " << r->faces
                << " faces" << (r->reencrypted ? " (re-encrypted under the destination's key)" : "") << ", "
                << r->audit_entries << " audit entries, " << r->subject_salts << " subject salts, "
                << r->search_counters << " search counters, " << r->api_keys << " API keys, " << r->changes
                << " change-feed entries, " << r->streams << " streams, " << r->libraries << " photo libraries with "
                << r->library_faces << " faces\n"
                << "run `candor store verify --store " << a->to << "` to check the copy (templates, counts, chain)\n";
    });
  }
  {
    struct VerifyArgs {
      std::string store, key_file;
    };
    auto a = std::make_shared<VerifyArgs>();
    CLI::App* c = store->add_subcommand(
        "verify", "Check a store (after a restore): every template decrypts, counts match, the audit chain verifies");
    c->add_option("--store", a->store, "Database (SQLite path or postgresql:// URI; default: $CANDOR_STORE or ./candor.db)");
    c->add_option("--key-file", a->key_file, "Template key file (default: $CANDOR_KEY, or <path>.key for SQLite)");
    c->callback([&ctx, a] { ctx.exit_code = run_verify(a->store, a->key_file); });
  }
  {
    struct RotateArgs {
      std::string store, key_file, new_key_file, actor;
    };
    auto a = std::make_shared<RotateArgs>();
    CLI::App* key = app.add_subcommand(
        "key", "Manage the API keys of `candor serve` (directly in the store; every node sees them), rotate the template key");
    key->require_subcommand(1);
    CLI::App* c = key->add_subcommand(
        "rotate", "Re-encrypt every template under a new template key in one audited transaction, then install the key");
    c->add_option("--store", a->store, "Database (SQLite path or postgresql:// URI; default: $CANDOR_STORE or ./candor.db)");
    c->add_option("--key-file", a->key_file, "The current template key file (default: $CANDOR_KEY, or <path>.key for SQLite)");
    c->add_option("--new-key-file", a->new_key_file,
                  "Write the new key to this new file instead of replacing the key file in place (needed when the "
                  "key comes from $CANDOR_KEY)");
    c->add_option("--actor", a->actor, "Who is acting, for the audit log (default: cli:$USER)");
    c->callback([&ctx, a] { ctx.exit_code = run_rotate(a->store, a->key_file, a->new_key_file, a->actor); });
  }
}

}  // namespace candor::cli
