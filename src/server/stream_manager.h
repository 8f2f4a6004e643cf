// The camera streams a server runs (issue 12, /v1/streams): which of the store's streams
// this node runs, their event fan-out to Server-Sent Events clients, and their budgets.
//
// Streams live in the store (Store::create_stream ...), so they survive a restart. Every
// node runs a supervisor that, every lease/3, walks the store's streams: a stream whose
// desired state is running is claimed (Store::claim_stream: the lease is taken when free
// or expired and renewed while held); the node holding the lease runs it, every other
// node does not. A node that stops (or crashes) lets its leases expire, and another node
// takes the stream over within one lease; a node that cannot renew a lease (its store is
// unreachable) stops the stream once the lease has run out. A stream stopped or deleted through any node is
// stopped by its runner at its next round (at once on the node that was asked).
//
// A stream's decisions are searches of the key that created it: its actor ("key:<name>")
// in their audit entries and its 1:N budget (SearchBudget) before each one. A key deleted
// since refuses the decisions (kPermissionDenied), so deleting a key stops its streams'
// searches.
//
// Events go to the stream's webhook (when configured) and to the SSE clients of this node:
// each client has a bounded queue; a client whose queue is full is dropped (its connection
// ends), never waited for, so a slow client cannot hold up the stream.
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "candor/store.h"
#include "candor/stream.h"

namespace candor::server {

struct Context;

// One SSE connection's queue of event lines.
// One event as SSE sends it: its id ("<epoch>-<n>", see StreamManager::subscribe) and JSON.
struct SseEvent {
  std::string id;
  std::string json;
};

struct SseClient {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<SseEvent> lines;     // one event each
  bool closed = false;            // the server stops, the stream was deleted
  bool dropped = false;           // the queue overflowed: a slow client
  bool gap = false;               // events after its Last-Event-ID are no longer held
};

// What GET /v1/streams/{id} adds to the stored record when this node runs the stream.
struct LiveStatus {
  StreamStatus status;
  double fps = 0;  // frames taken by the worker per second since the stream started here
  double uptime_s = 0;
};

class StreamManager {
 public:
  // `queue`: events a client may have unsent before it is dropped; `max_clients`: SSE
  // connections this node serves at once (each holds a connection thread).
  StreamManager(Context& ctx, std::string node, std::chrono::milliseconds lease, std::size_t queue,
                std::size_t max_clients);
  ~StreamManager();
  StreamManager(const StreamManager&) = delete;
  StreamManager& operator=(const StreamManager&) = delete;

  // Starts the supervisor. requires: the engine and collections are loaded.
  void begin();
  // Ends every SSE client (their responses finish); the streams keep running.
  void close_clients();
  // Stops the supervisor and every stream this node runs, releasing their leases. Idempotent.
  void stop_all();
  // Runs a supervisor round now (after a start, stop or delete through this node).
  void poke();

  const std::string& node() const { return node_; }
  std::optional<LiveStatus> live_status(const std::string& id) const;
  // The last error starting the stream on this node hit (the source, the collection ...).
  std::optional<std::string> start_error(const std::string& id) const;

  // A new SSE client of stream `id`, or nullptr when max_clients are connected.
  // Events are numbered "<epoch>-<n>": n counts this node's events of the stream from 1,
  // and the epoch is when this node's hub of the stream was made, so an id from before a
  // restart (or from another node) is never taken for one of this hub's. A reconnecting
  // client's Last-Event-ID (`last_event_id`) of this hub gets the events after it that
  // the hub still holds (the last `queue` of them, kept in memory only) before new ones;
  // when some are gone, or the id is not this hub's, the client gets `gap` = true.
  std::shared_ptr<SseClient> subscribe(const std::string& id, const std::string& last_event_id = "");
  void unsubscribe(const std::string& id, const std::shared_ptr<SseClient>& client);

 private:
  class Hub;
  struct Running;
  void supervise();
  void round();
  void start_local(const StreamRecord& record);
  void stop_local(const std::string& id);
  Hub& hub_of(const std::string& id);  // requires: mutex_ held

  Context& ctx_;
  const std::string node_;
  const std::chrono::milliseconds lease_;
  const std::size_t queue_;
  const std::size_t max_clients_;

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable wake_;
  bool stopping_ = false;
  bool poked_ = false;
  bool closing_ = false;  // close_clients(): no new SSE client
  std::map<std::string, std::unique_ptr<Running>> running_;
  std::map<std::string, std::unique_ptr<Hub>> hubs_;
  std::map<std::string, std::string> start_errors_;
  std::size_t clients_ = 0;
  std::thread supervisor_;
  std::mutex round_mutex_;  // one round at a time
};

}  // namespace candor::server
