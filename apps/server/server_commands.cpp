#include "server_commands.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "api_keys.h"
#include "candor/models.h"
#include "candor/server.h"
#include "candor/store.h"

namespace candor {
namespace {

std::string default_store() {
  const char* env = std::getenv("CANDOR_STORE");
  return env != nullptr && *env ? env : "candor.db";
}

[[noreturn]] void fail(const Error& error) {
  std::cerr << "candor: " << error_code_name(error.code) << ": " << error.message << "\n";
  throw CLI::RuntimeError(1);
}

// Where a command finds the store's secrets: --key-file (the template key) and
// --pepper-file (the API keys' pepper); both default beside a SQLite database.
struct SecretFiles {
  std::string key_file;
  std::string pepper_file;
};

void add_secret_options(CLI::App* c, SecretFiles& files) {
  c->add_option("--key-file", files.key_file,
                "Template key file (default: <db>.key for SQLite; for PostgreSQL $CANDOR_KEY)");
  c->add_option("--pepper-file", files.pepper_file,
                "API key pepper, the same file on every node (default: <db>.apikeys-pepper for SQLite; for "
                "PostgreSQL beside --key-file)");
}

// Opens the store first (so `key` commands refuse a database that is not a Candor
// store and create a new one properly), then its API keys. The store must outlive
// the key store.
struct OpenKeys {
  std::unique_ptr<Store> store;
  std::unique_ptr<server::KeyStore> keys;
};

// `may_create`: `key create` may start a new store (a server's first key); `key list` and
// `key delete` refuse a missing one instead of leaving an empty store and key files behind.
OpenKeys open_keys(const std::string& uri, const SecretFiles& files, bool require_pepper, bool may_create) {
  auto key_options = server::key_store_options(uri, files.pepper_file, files.key_file);
  if (!key_options) fail(key_options.error());
  key_options->require_pepper = require_pepper;
  StoreOptions store_options;
  store_options.key_file = files.key_file;
  store_options.create_if_missing = may_create;
  auto store = open_store(uri, store_options);
  if (!store) fail(store.error());
  OpenKeys out;
  out.store = std::move(*store);
  auto keys = server::KeyStore::open(*out.store, *key_options);
  if (!keys) fail(keys.error());
  out.keys = std::move(*keys);
  return out;
}

// The audit actor of key commands run from a shell.
AuditContext cli_actor(std::string reason) {
  const char* user = std::getenv("USER");
  return AuditContext{std::string("cli:") + (user != nullptr && *user ? user : "unknown"), std::move(reason)};
}

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int signo) { g_stop_signal = signo; }

struct ServeArgs {
  ServerOptions options;
  std::string store;
  std::string collections;
  SecretFiles files;
  bool no_follow = false;
  double max_body_mb = 20;
  // A node started with its database (or before it) waits for it; see ServerOptions.
  int store_wait_s = 60;
};

std::vector<std::string> split_list(const std::string& s);

void serve(ServeArgs& args, const EngineOptions& engine_options) {
  ServerOptions options = args.options;
  options.store_uri = args.store.empty() ? default_store() : args.store;
  options.key_file = args.files.key_file;
  options.pepper_file = args.files.pepper_file;
  options.follow_changes = !args.no_follow;
  options.collections = split_list(args.collections);
  options.engine_options = engine_options;
  if (args.max_body_mb <= 0 || args.max_body_mb > 1024) fail({ErrorCode::kInvalidArgument, "--max-body-mb must be in (0, 1024]"});
  options.max_body_bytes = static_cast<std::size_t>(args.max_body_mb * 1024 * 1024);
  if (args.store_wait_s < 0) fail({ErrorCode::kInvalidArgument, "--store-wait must be >= 0"});
  options.store_wait_s = args.store_wait_s;

  // Until the server exists (which may include waiting for the store), SIGINT/SIGTERM
  // keep their default action: nothing is in flight, so ending the process is right.
  auto created = Server::create(options);
  if (!created) fail(created.error());
  Server& server = **created;

  // From here SIGINT/SIGTERM only set a flag (async-signal-safe); a waiter thread sees it
  // and asks the server to stop, so in-flight requests finish. A handler rather than a
  // blocked mask + sigwait: libraries (OpenBLAS) start threads before main() whose
  // masks we do not control, and the kernel may deliver the signal to any of them.
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  if (auto key = server.take_bootstrap_key()) {
    // Printed once, to stdout only: the log never carries key secrets.
    std::cout << "Created the first admin API key (shown only now; keep it safe):\n  " << *key << "\n"
              << "Web console: " << server.url() << "\n"
              << std::flush;
  } else {
    std::cout << "Candor API at " << server.url() << "v1 ; web console at " << server.url() << "\n" << std::flush;
  }

  std::atomic<bool> done{false};
  std::thread waiter([&] {
    while (!done.load()) {
      if (g_stop_signal != 0) {
        server.stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const Status st = server.run();
  done = true;
  waiter.join();
  if (!st) fail(st.error());
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto end = std::min(s.find(',', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

void add_model_options(CLI::App& app, EngineOptions& engine_options) {
  app.add_option("--models", engine_options.model_dir,
                 "Model directory (default: $CANDOR_MODEL_DIR, else: " + resolve_model_dir().string() + ")");
  app.add_option("--manifest", engine_options.manifest,
                 "Model manifest (default: $CANDOR_MANIFEST, else: " + resolve_manifest().string() + ")");
  app.add_option("--landmark-passes", engine_options.landmark_passes,
                 "Landmark network runs per face: 1 (box crop only) .. 4 (README 'Speed of the engine')")
      ->check(CLI::Range(kMinLandmarkPasses, kMaxLandmarkPasses))
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--inference",
         [&engine_options](const std::string& name) {
           const auto backend = parse_inference_backend(name);
           if (!backend) throw CLI::ValidationError("--inference", "must be opencv, onednn or onednn-bf16, not " + name);
           engine_options.inference = *backend;
         },
         "Runtime of the networks: opencv, onednn or onednn-bf16 (default: " +
             std::string(inference_backend_name(engine_options.inference)) + "; README 'Speed of the engine')")
      ->type_name("NAME");
}

void register_server_commands(CLI::App& app, const EngineOptions& engine_options) {
  {
    auto a = std::make_shared<ServeArgs>();
    CLI::App* c = app.add_subcommand("serve", "Run the REST API and the web console (see docs/api.md)");
    c->add_option("--store", a->store,
                  "Database file, or postgresql://... shared by several nodes (default: $CANDOR_STORE or ./candor.db)");
    add_secret_options(c, a->files);
    c->add_flag("--no-follow", a->no_follow,
                "Do not follow the store's change feed (a single node whose database no one else writes)");
    c->add_option("--collections", a->collections,
                  "Comma-separated collections this node holds in memory, names or prefix* (default: all)");
    c->add_option("--host", a->options.host, "Address to bind (default: loopback only)")->capture_default_str();
    c->add_option("--port", a->options.port, "TCP port")->capture_default_str();
    c->add_option("--web", a->options.web_dir, "Web console directory (default: <installation>/share/candor/web, else the source tree's web/)");
    c->add_option("--workers", a->options.workers, "Concurrent inferences (0: one per core)")->capture_default_str();
    c->add_option("--queue", a->options.queue, "Inferences that may wait for a worker before 503 (-1: 2 x workers)")
        ->capture_default_str();
    c->add_option("--http-threads", a->options.http_threads, "Connection threads (0: max(16, 4 x workers))")
        ->capture_default_str();
    c->add_option("--tls-cert", a->options.tls_cert, "PEM certificate: serve HTTPS");
    c->add_option("--tls-key", a->options.tls_key, "PEM private key for --tls-cert");
    c->add_option("--max-body-mb", a->max_body_mb, "Largest request body in MB (413 beyond)")->capture_default_str();
    c->add_option("--index", a->options.index_spec, "1:N index of each collection (make_index spec; README)")
        ->capture_default_str();
    c->add_option("--store-wait", a->store_wait_s,
                  "Seconds to keep trying an unreachable store at start-up (0: fail at once)")
        ->capture_default_str();
    c->add_option("--header-timeout", a->options.header_timeout_s,
                  "Seconds a client has to send its request line and headers (408 beyond)")
        ->capture_default_str();
    c->add_option("--body-timeout", a->options.body_timeout_s, "Seconds a client has to send its body")
        ->capture_default_str();
    c->add_option("--keep-alive-timeout", a->options.keep_alive_timeout_s,
                  "Seconds an idle connection waits for its next request")
        ->capture_default_str();
    c->add_option("--connection-queue", a->options.connection_queue,
                  "Accepted connections that may wait for a connection thread (503 beyond)")
        ->capture_default_str();
    c->add_option("--max-waiting-connections", a->options.max_waiting_connections,
                  "Idle or header-sending plain-HTTP connections held at once (at most 768)")
        ->capture_default_str();
    c->add_option("--trusted-proxy", a->options.trusted_proxies,
                  "A reverse proxy or load balancer in front of this server, as an address or CIDR (repeat for "
                  "more, or comma-separated): from it, X-Forwarded-For names the client whose failed logins are throttled")
        ->delimiter(',');
    c->add_option("--retention-interval-min", a->options.retention_interval_min,
                  "Purge templates past retention or consent this often (0: only `candor retention run`)")
        ->capture_default_str();
    c->add_flag("--stream-files", a->options.stream_allow_files,
                "Allow file paths as camera stream sources (/v1/streams): a file source reads any file the server can");
    c->add_option("--snapshot-dir", a->options.stream_snapshot_dir,
                  "Where camera streams with outputs.snapshots keep JPEGs of recognised people (a folder per stream; "
                  "without it such streams are refused)");
    c->add_option("--node-id", a->options.node_id,
                  "This node's name in camera streams' leases (default: host:pid:random)");
    c->add_option("--stream-lease-ms", a->options.stream_lease_ms,
                  "How long a node holds a camera stream's lease; another node takes over within it")
        ->capture_default_str();
    c->callback([a, &engine_options] { serve(*a, engine_options); });
  }

  // `candor key rotate` (the template key) may have made the group already (apps/cli).
  CLI::App* key = nullptr;
  try {
    key = app.get_subcommand("key");
  } catch (const CLI::OptionNotFound&) {
    key = app.add_subcommand("key", "Manage the API keys of `candor serve` (directly in the store; every node sees them)");
  }
  key->require_subcommand(1);
  {
    struct CreateArgs {
      std::string store, name, collections = "*", operations;
      int per_minute = 60, per_day = 10'000;
      SecretFiles files;
    };
    auto a = std::make_shared<CreateArgs>();
    CLI::App* c = key->add_subcommand("create", "Create a key and print its secret (shown once)");
    c->add_option("name", a->name, "Key name: [A-Za-z0-9_.-]{1,64}; audit actor key:<name>")->required();
    c->add_option("--collections", a->collections, "Comma-separated collection names, or *")->capture_default_str();
    std::string known;
    for (std::string_view op : server::kOperations) known.append(known.empty() ? "" : ",").append(op);
    c->add_option("--operations", a->operations, "Comma-separated: " + known)->required();
    c->add_option("--searches-per-minute", a->per_minute)->capture_default_str();
    c->add_option("--searches-per-day", a->per_day)->capture_default_str();
    c->add_option("--store", a->store, "Database file or postgresql://... (default: $CANDOR_STORE or ./candor.db)");
    add_secret_options(c, a->files);
    c->callback([a] {
      auto opened = open_keys(a->store.empty() ? default_store() : a->store, a->files, true, true);
      auto& keys = opened.keys;
      server::ApiKey spec;
      spec.name = a->name;
      spec.collections = split_list(a->collections);
      spec.operations = split_list(a->operations);
      spec.searches_per_minute = a->per_minute;
      spec.searches_per_day = a->per_day;
      // The operator at a shell is not limited by any key's scope (nullptr): who can read
      // the pepper file and write the store can make any key already.
      auto secret = keys->create(spec, nullptr, cli_actor("API key created"));
      if (!secret) fail(secret.error());
      std::cout << *secret << "\n";
    });
  }
  {
    auto store = std::make_shared<std::string>();
    auto files = std::make_shared<SecretFiles>();
    CLI::App* c = key->add_subcommand("list", "List keys (names and scopes; secrets are not stored)");
    c->add_option("--store", *store, "Database file or postgresql://... (default: $CANDOR_STORE or ./candor.db)");
    add_secret_options(c, *files);
    c->callback([store, files] {
      auto opened = open_keys(store->empty() ? default_store() : *store, *files, false, false);
      auto& keys = opened.keys;
      auto list = keys->list(nullptr);
      if (!list) fail(list.error());
      nlohmann::json out = nlohmann::json::array();
      for (const auto& k : *list) out.push_back(server::api_key_to_json(k));
      std::cout << out.dump(2) << "\n";
    });
  }
  {
    auto store = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    CLI::App* c = key->add_subcommand("delete", "Delete a key (running servers stop accepting it within seconds)");
    auto files = std::make_shared<SecretFiles>();
    c->add_option("name", *name)->required();
    c->add_option("--store", *store, "Database file or postgresql://... (default: $CANDOR_STORE or ./candor.db)");
    add_secret_options(c, *files);
    c->callback([store, name, files] {
      auto opened = open_keys(store->empty() ? default_store() : *store, *files, false, false);
      if (auto st = opened.keys->remove(*name, nullptr, cli_actor("API key deleted")); !st) fail(st.error());
      std::cout << nlohmann::json({{"deleted", *name}}).dump(2) << "\n";
    });
  }
}

}  // namespace candor
