// Candor: the REST service (`candor serve`), specified in docs/api.md.
//
// A Server owns (or borrows) the engine, opens the store and the collections over
// it, and answers the /v1 routes over cpp-httplib, plain or TLS. What it adds to
// the domain layer is the boundary: API keys with scopes, per-key search budgets,
// failed-auth throttling, a bounded admission gate in front of inference, request
// limits, metrics, logs without biometric data, and the static web console.
//
// Life cycle:
//   create()  validates the options, opens the store and its API keys, binds the
//             socket (so the port is known and a busy port fails early);
//   run()     loads the engine and the collections on a background thread
//             (/readyz answers 503 until they are in) and serves until stop();
//   stop()    stops accepting, lets in-flight requests finish, and makes run()
//             return. Safe to call from any thread (a signal-waiting thread), and
//             more than once.
//
// Thread safety: run() is called once, from one thread; stop() and the accessors
// from any thread.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "candor/audit.h"
#include "candor/engine.h"
#include "candor/result.h"

namespace candor {

class FaceAnalyzer;

struct ServerOptions {
  std::string store_uri = "candor.db";  // as open_store(): "PATH", "sqlite:PATH" or "postgresql://..."
  // The template key file (StoreOptions::key_file); empty: the store's default
  // ("<db>.key" for SQLite; for PostgreSQL, $CANDOR_KEY).
  std::filesystem::path key_file;
  // The API keys' pepper (src/server/api_keys.h), the same file on every node.
  // Empty: "<db>.apikeys-pepper" for SQLite; for PostgreSQL, beside key_file (its
  // extension replaced by ".apikeys-pepper"), so one of the two must be given.
  std::filesystem::path pepper_file;
  // A node may start before its database does (a host booting, an orchestrator starting
  // both at once): while open_store answers kStoreUnavailable, Server::create tries again
  // with backoff (0.1 s doubling to 5 s) for up to this long, logging each attempt.
  // 0: fail at once. Other store errors (no such database, a refused login, a wrong
  // key) never get better by waiting and are returned at once.
  int store_wait_s = 0;
  // Follow the store's change feed so that faces enrolled, revoked or erased by
  // other nodes (or by the CLI on the same database) reach this node's indexes.
  bool follow_changes = true;
  // The collections this node holds in memory (CollectionsOptions::served): names or
  // "prefix*"; empty: all. For splitting collections over node groups.
  std::vector<std::string> collections;
  std::string host = "127.0.0.1";       // loopback unless the operator says otherwise
  int port = 8080;                      // 0: an ephemeral port (tests); see Server::port()
  std::filesystem::path web_dir;        // static console; empty: the installed one (installed_data_dir()/web), else <source>/web
  int workers = 0;                      // concurrent inferences; 0: hardware threads
  int queue = -1;                       // inferences allowed to wait for a worker; -1: 2 x workers
  int http_threads = 0;                 // connection threads; 0: max(16, 4 x workers)
  std::size_t max_body_bytes = 20u * 1024u * 1024u;  // larger bodies get 413
  int read_timeout_s = 10;              // a read making no progress for this long ends the connection
  int write_timeout_s = 10;
  int keep_alive_timeout_s = 5;         // an idle connection waits this long for its next request
  std::size_t keep_alive_max_requests = 100;
  // Whole-phase deadlines, so a client trickling bytes (slowloris) is cut off too:
  // the request line and headers must arrive within header_timeout_s (else 408),
  // the body within body_timeout_s.
  int header_timeout_s = 10;
  int body_timeout_s = 60;
  std::size_t max_header_bytes = 32u * 1024u;  // request line + headers; larger: 431
  // Accepted connections waiting for a connection thread; beyond: 503 and close.
  int connection_queue = 64;
  // Plain-HTTP connections idle or still sending their headers wait in one poll()
  // thread, holding no connection thread; at most this many (httplib refuses sockets
  // numbered past FD_SETSIZE, 1024, so this stays well below it).
  int max_waiting_connections = 512;
  std::filesystem::path tls_cert;  // both set: HTTPS (httplib::SSLServer)
  std::filesystem::path tls_key;

  EngineOptions engine_options;  // used when `engine` is null
  const Engine* engine = nullptr;  // borrowed, must outlive the Server (tests share one)
  // Quality and liveness; borrowed when set, else created from engine_options' model paths.
  const FaceAnalyzer* analyzer = nullptr;

  // Failed authentications per client IP before 429, and the window they count in.
  int auth_failures_allowed = 10;
  int auth_failure_window_s = 60;
  // The reverse proxies / load balancers in front of this server, as addresses or
  // CIDR ranges ("10.0.0.0/8", "fd00::/8"; `candor serve --trusted-proxy`). From these
  // peers only, the client address (for the throttle above and the access log) is the
  // right-most X-Forwarded-For entry that is not itself a trusted proxy, so clients
  // behind one proxy are throttled apart. From any other peer the header is ignored
  // (a client cannot pick its own address). Empty: the peer address is the client.
  // A malformed entry makes create() fail with kInvalidArgument.
  std::vector<std::string> trusted_proxies;
  // The in-memory 1:N index of every collection (candor/index.h make_index spec).
  // "SQ8,Refine" is exhaustive; "IVF256,SQ8,nprobe=160,pca=128,refine=200" trades
  // ~0.6% recall@10 for 8x faster searches at 1M templates (README).
  std::string index_spec = "SQ8,Refine";
  // Retention terms and consent expiry are enforced at start-up and then this often
  // (the same purge as `candor retention run`); 0 disables the schedule.
  int retention_interval_min = 60;
  // Inference that has waited this long for a worker gives up with 503.
  int queue_timeout_ms = 30'000;

  // Camera streams (/v1/streams, issue 12). This node's name in the streams' leases;
  // empty: "<hostname>:<pid>:<random>", so two nodes on one host differ.
  std::string node_id;
  // A node holds a stream's lease this long and renews it every third of it; a node that
  // dies is replaced by another within one lease.
  int stream_lease_ms = 30'000;
  // File paths as stream sources (`candor serve --stream-files`): off, because a file
  // source reads any file the server may read. rtsp(s), http(s) and /dev/videoN always.
  bool stream_allow_files = false;
  // Where server-run streams whose outputs ask for snapshots keep them
  // (`candor serve --snapshot-dir`): a folder per stream id, removed with the stream. Empty:
  // a stream asking for snapshots is refused. A node keeps the snapshots of the streams it
  // ran: with several nodes, a snapshot is served by the node that took it.
  std::filesystem::path stream_snapshot_dir;
  // SSE clients of /v1/streams/{id}/events at once on this node (each holds a connection
  // thread), events a client may have unsent before it is dropped, and the heartbeat.
  int stream_max_event_clients = 8;
  int stream_event_queue = 256;
  int stream_sse_heartbeat_ms = 15'000;

  // The clock of the store and of the search budgets; empty: the system clock (now_ms).
  // Tests inject one to cross minute and day windows without waiting.
  std::function<TimePoint()> clock;

  // One JSON object per line; default: stderr. Tests capture it.
  std::function<void(std::string_view line)> log_sink;
};

// The routes the server registers, as (method, path template) pairs such as
// ("POST", "/v1/collections/{c}/search"). The OpenAPI document lists exactly these.
struct RouteInfo {
  std::string method;
  std::string path;
};

class Server {
 public:
  // ensures: kInvalidArgument (bad options: half a TLS pair, workers < 0 ...),
  //          kIoError (the port cannot be bound, TLS files unreadable),
  //          the store's errors (open_store); kStoreUnavailable only once
  //          options.store_wait_s has passed without reaching the store.
  //          When the store holds no API key, an admin key is created; see bootstrap_key().
  static Result<std::unique_ptr<Server>> create(const ServerOptions& options);

  virtual ~Server() = default;

  // Serves until stop(). ensures: ok after a graceful stop; kIoError if listening failed.
  virtual Status run() = 0;
  virtual void stop() = 0;

  // The bound port (the ephemeral one when options.port == 0).
  virtual int port() const = 0;
  // "http://127.0.0.1:8080/" (or https).
  virtual std::string url() const = 0;
  // The admin key created because the store had none: returned once, then empty.
  virtual std::optional<std::string> take_bootstrap_key() = 0;
  // True once the engine and the collections are loaded and the store is readable.
  virtual bool ready() const = 0;

  virtual std::vector<RouteInfo> routes() const = 0;
};

// The OpenAPI 3 document the server serves at /v1/openapi.json (embedded at build time).
std::string_view openapi_document();

}  // namespace candor
