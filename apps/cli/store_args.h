// The options every store command takes (--store, --key-file, --actor) and how the
// CLI opens a store with them: shared by collection_commands.cpp and library_commands.cpp.
#pragma once

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "candor/store.h"

namespace candor::cli {

struct StoreArgs {
  std::string store;
  std::string key_file;
  std::string actor;
  // Only `collection create` and `library add` make a new store (and its key file). Every other command
  // reads or changes one that exists: a missing one is a mistyped path or a wrong folder,
  // refused with not_found rather than answered from a new, empty store left behind.
  bool may_create = false;
};

inline std::string default_actor() {
  const char* user = std::getenv("USER");
  if (user == nullptr || *user == '\0') {
    const passwd* pw = getpwuid(geteuid());
    user = pw != nullptr ? pw->pw_name : "unknown";
  }
  return std::string("cli:") + user;
}

inline std::string default_store() {
  const char* env = std::getenv("CANDOR_STORE");
  return env != nullptr && *env ? env : "candor.db";
}

inline void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << "\n"; }

inline void add_store_options(CLI::App* cmd, StoreArgs& a) {
  cmd->add_option("--store", a.store, "Database file or postgresql://... (default: $CANDOR_STORE or ./candor.db)");
  cmd->add_option("--key-file", a.key_file,
                  "Template key file (default: <database>.key for SQLite; PostgreSQL needs this or $CANDOR_KEY)");
  cmd->add_option("--actor", a.actor, "Who is acting, for the audit log (default: cli:$USER)");
}

// The defaults filled in (store, actor), then the store opened.
inline Result<std::unique_ptr<Store>> open_cli_store(const StoreArgs& args) {
  StoreOptions store_options;
  store_options.key_file = args.key_file;  // empty: CANDOR_KEY, or the SQLite default beside the file
  store_options.create_if_missing = args.may_create;
  return open_store(args.store, store_options);
}

}  // namespace candor::cli
