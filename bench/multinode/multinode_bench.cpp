// candor_multinode_bench: several Candor nodes over one store (SQLite file or
// PostgreSQL), each a process with its own Store and Collections, as two
// `candor serve` processes would be. bench/multinode/run.sh drives it.
//
//   propagation  node A enrolls N faces one at a time; node B (a forked process
//                following the change feed) timestamps when each reaches its
//                index. Templates are precomputed (synthetic unit vectors written
//                through A's Store): the engine's ~100 ms per photo is not part of
//                the propagation path and would make 1,000 enrollments take minutes.
//   revoke-setup / revoke-search / revoke-revoke / revoke-check
//                real LFW faces: node B searches with real probes while node A
//                revokes the subjects one by one; a violation is a search that
//                started after a revocation had returned and still named that subject.
//   memory       resident memory of a node's loaded collections per template, by index.
//
// Times are CLOCK_MONOTONIC, which is one clock for every process of a machine.
#include <malloc.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "candor/collections.h"
#include "candor/crypto.h"
#include "candor/engine.h"
#include "candor/store.h"

namespace {

using namespace candor;

constexpr std::string_view kPurpose = "multinode benchmark";

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void die(const std::string& what, const Error& e) {
  std::cerr << "candor_multinode_bench: " << what << ": " << error_code_name(e.code) << ": " << e.message << "\n";
  std::exit(1);
}

template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what, r.error());
  return std::move(*r);
}

struct Common {
  std::string store;
  std::string key_hex;  // the template key; both nodes need the same
  EngineOptions engine;
  std::string collection = "multinode";
};

std::unique_ptr<Store> open_node_store(const Common& c) {
  StoreOptions o;
  o.key_hex = c.key_hex;
  o.use_env_key = false;
  return must(open_store(c.store, o), "open " + c.store);
}

std::unique_ptr<Engine> make_engine(const Common& c) { return must(Engine::create(c.engine), "engine"); }

std::vector<float> unit_vector(std::mt19937& rng, int dim) {
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> v(static_cast<std::size_t>(dim));
  double norm = 0;
  for (float& x : v) {
    x = n(rng);
    norm += static_cast<double>(x) * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

NewFace synthetic_face(std::mt19937& rng, int dim) {
  NewFace f;
  f.embedding = unit_vector(rng, dim);
  f.box = {10, 10, 100, 100};
  f.detector_score = 0.99f;
  f.quality_level = "high";
  f.image_sha256 = sha256_hex(std::to_string(rng()));
  f.model_id = "synthetic";
  return f;
}

void grant(Store& s, const std::string& collection, const std::string& subject) {
  NewConsent n;
  n.collection = collection;
  n.subject = subject;
  n.purpose = std::string(kPurpose);
  n.evidence_sha256 = sha256_hex("consent form of " + subject);
  n.collected_by = "bench";
  must(s.grant_consent(n, {"bench", "setup"}), "consent");
}

void fresh_collection(Store& s, const std::string& name, float threshold) {
  auto existing = s.get_collection(name);
  if (existing) must(s.delete_collection(name, {"bench", "fresh start"}), "delete " + name);
  NewCollection spec;
  spec.name = name;
  spec.purpose = std::string(kPurpose);
  spec.match_threshold = threshold;
  must(s.create_collection(spec, {"bench", "setup"}), "create " + name);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(std::clamp(p * static_cast<double>(v.size() - 1), 0.0, 1e18));
  return v[std::min(i, v.size() - 1)];
}

// ------------------------------------------------------------------ propagation

struct PropagationArgs {
  int count = 1000;
  int interval_ms = 5;
  int timeout_s = 60;
  int follow_wait_ms = 500;
};

void propagation(const Common& c, const PropagationArgs& a) {
  const std::string collection = c.collection + "_prop";
  constexpr int kSubjects = 50;
  {
    auto store = open_node_store(c);
    fresh_collection(*store, collection, 0.4f);
    for (int s = 0; s < kSubjects; ++s) grant(*store, collection, "subject-" + std::to_string(s));
  }
  int ready[2], results[2];
  if (pipe(ready) != 0 || pipe(results) != 0) throw std::runtime_error("pipe");
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork");
  if (child == 0) {  // node B: follows the feed and timestamps each new template
    close(ready[0]);
    close(results[0]);
    auto store = open_node_store(c);
    auto engine = make_engine(c);
    CollectionsOptions options;
    options.follow_changes = true;
    options.follow_wait = std::chrono::milliseconds(a.follow_wait_ms);
    auto node = must(Collections::open(*engine, *store, options), "node B");
    (void)!write(ready[1], "R", 1);
    std::vector<std::int64_t> seen;  // seen[i]: when the index first held i + 1 templates
    const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(a.timeout_s) * 1'000'000'000;
    while (static_cast<int>(seen.size()) < a.count && now_ns() < deadline) {
      const std::size_t n = node->indexed_faces(collection);
      const std::int64_t t = now_ns();
      while (seen.size() < n) seen.push_back(t);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::ostringstream out;
    for (std::int64_t t : seen) out << t << "\n";
    const std::string text = out.str();
    for (std::size_t off = 0; off < text.size();) {
      const auto w = write(results[1], text.data() + off, text.size() - off);
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
    close(results[1]);
    node.reset();
    std::_Exit(0);
  }
  close(ready[1]);
  close(results[1]);
  char r = 0;
  if (read(ready[0], &r, 1) != 1) throw std::runtime_error("node B did not start");
  // Node A: one face per transaction, the commit time taken when enroll() returns.
  auto store = open_node_store(c);
  std::mt19937 rng(42);
  std::vector<std::int64_t> committed;
  for (int i = 0; i < a.count; ++i) {
    const std::vector<NewFace> faces{synthetic_face(rng, 512)};
    must(store->enroll(collection, "subject-" + std::to_string(i % kSubjects), faces, {"bench", "enroll"}), "enroll");
    committed.push_back(now_ns());
    std::this_thread::sleep_for(std::chrono::milliseconds(a.interval_ms));
  }
  std::string text;
  char buf[65536];
  for (ssize_t n; (n = read(results[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  int status = 0;
  waitpid(child, &status, 0);
  std::istringstream in(text);
  std::vector<std::int64_t> seen;
  for (std::int64_t t; in >> t;) seen.push_back(t);
  std::vector<double> delays_ms;
  int early = 0;
  for (std::size_t i = 0; i < committed.size() && i < seen.size(); ++i) {
    const double d = static_cast<double>(seen[i] - committed[i]) / 1e6;
    if (d < 0) ++early;  // B saw the commit before A's call had returned
    delays_ms.push_back(std::max(0.0, d));
  }
  std::printf("propagation store=%s faces=%d interval=%dms follow_wait=%dms: reached B %zu/%d; "
              "delay ms median %.2f p90 %.2f p99 %.2f max %.2f (seen before A's call returned: %d)\n",
              c.store.find("://") != std::string::npos ? "postgresql" : "sqlite", a.count, a.interval_ms,
              a.follow_wait_ms, seen.size(), a.count, percentile(delays_ms, 0.5), percentile(delays_ms, 0.9),
              percentile(delays_ms, 0.99), percentile(delays_ms, 1.0), early);
  auto clean = open_node_store(c);
  (void)clean->delete_collection(collection, {"bench", "clean up"});
}

// ------------------------------------------------------------------ revoke

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct RevokeArgs {
  std::string lfw = "../shared/datasets/lfw";
  std::string dir;  // probes list and logs
  int subjects = 40;
  double seconds = 40;
  bool follow = true;
  int threads = 1;
  int min_gap_ms = 200, max_gap_ms = 800;
};

// Enrolls the first photo of `subjects` LFW people with >= 2 photos (real engine, real
// consent) and writes <dir>/probes.txt: "<subject> <path of the second photo>".
void revoke_setup(const Common& c, const RevokeArgs& a) {
  const std::filesystem::path root = std::filesystem::path(a.lfw) / "lfw";
  if (!std::filesystem::is_directory(root)) {
    std::cerr << "LFW is absent (" << root << "): the revoke benchmark needs real faces\n";
    std::exit(3);
  }
  auto store = open_node_store(c);
  auto engine = make_engine(c);
  if (store->get_collection(c.collection)) must(store->delete_collection(c.collection, {"bench", "fresh start"}), "delete");
  auto node = must(Collections::open(*engine, *store), "node");
  NewCollection spec;
  spec.name = c.collection;
  spec.purpose = std::string(kPurpose);
  must(node->create_collection(spec, "fmr-1e-4", {"bench", "setup"}), "create");
  std::vector<std::string> people;
  for (const auto& e : std::filesystem::directory_iterator(root)) people.push_back(e.path().filename().string());
  std::sort(people.begin(), people.end());
  std::ofstream probes(std::filesystem::path(a.dir) / "probes.txt");
  int enrolled = 0;
  for (const std::string& person : people) {
    if (enrolled >= a.subjects) break;
    const auto first = root / person / (person + "_0001.jpg");
    const auto second = root / person / (person + "_0002.jpg");
    if (!std::filesystem::exists(second)) continue;
    grant(*store, c.collection, person);
    const auto bytes = read_bytes(first);
    const EnrollImage image{first.filename().string(), bytes};
    auto r = node->enroll(c.collection, person, std::span<const EnrollImage>(&image, 1), {"bench", "setup"});
    if (!r || !r->front().face_id) continue;
    probes << person << " " << second.string() << "\n";
    ++enrolled;
  }
  std::printf("revoke-setup: %d subjects enrolled from LFW in %s\n", enrolled, c.collection.c_str());
}

// Node B: searches with random probes until <dir>/stop exists or the time is up, and
// logs "start_ns end_ns probed_subject returned_subject..." per search.
void revoke_search(const Common& c, const RevokeArgs& a) {
  auto store = open_node_store(c);
  auto engine = make_engine(c);
  CollectionsOptions options;
  options.follow_changes = a.follow;
  auto node = must(Collections::open(*engine, *store, options), "node B");
  std::vector<std::pair<std::string, std::vector<std::uint8_t>>> probes;
  {
    std::ifstream in(std::filesystem::path(a.dir) / "probes.txt");
    for (std::string subject, path; in >> subject >> path;) probes.emplace_back(subject, read_bytes(path));
  }
  if (probes.empty()) die("revoke-search", {ErrorCode::kNotFound, "no probes: run revoke-setup"});
  std::ofstream(std::filesystem::path(a.dir) / "search.ready") << "ready\n";
  const auto stop_file = std::filesystem::path(a.dir) / "stop";
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(a.seconds * 1e9);
  std::mutex log_mutex;
  std::ofstream log(std::filesystem::path(a.dir) / (a.follow ? "search.log" : "search-nofollow.log"));
  std::atomic<int> errors{0};
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    while (now_ns() < deadline && !std::filesystem::exists(stop_file)) {
      const auto& [subject, bytes] = probes[rng() % probes.size()];
      const std::int64_t start = now_ns();
      auto r = node->search(c.collection, bytes, 5, {"bench", "revoke race"});
      const std::int64_t end = now_ns();
      if (!r) {
        ++errors;
        continue;
      }
      std::ostringstream line;
      line << start << " " << end << " " << subject;
      for (const auto& m : r->largest().matches) line << " " << m.subject;
      std::lock_guard lock(log_mutex);
      log << line.str() << "\n";
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < a.threads; ++t) threads.emplace_back(worker, 1000u + static_cast<unsigned>(t));
  for (auto& t : threads) t.join();
  std::printf("revoke-search: done (%d failed searches)\n", errors.load());
}

// Node A: revokes every subject, one at a time at random gaps, logging "returned_ns subject".
void revoke_revoke(const Common& c, const RevokeArgs& a) {
  auto store = open_node_store(c);
  auto engine = make_engine(c);
  auto node = must(Collections::open(*engine, *store), "node A");
  std::vector<std::string> subjects;
  {
    std::ifstream in(std::filesystem::path(a.dir) / "probes.txt");
    for (std::string subject, path; in >> subject >> path;) subjects.push_back(subject);
  }
  std::mt19937 rng(7);
  std::shuffle(subjects.begin(), subjects.end(), rng);
  std::uniform_int_distribution<int> gap(a.min_gap_ms, a.max_gap_ms);
  std::ofstream log(std::filesystem::path(a.dir) / "revoke.log");
  for (const std::string& s : subjects) {
    std::this_thread::sleep_for(std::chrono::milliseconds(gap(rng)));
    must(node->revoke_consent(c.collection, s, {"bench", "revoke race"}), "revoke " + s);
    log << now_ns() << " " << s << "\n" << std::flush;
  }
  std::ofstream(std::filesystem::path(a.dir) / "stop") << "stop\n";
  std::printf("revoke-revoke: %zu subjects revoked\n", subjects.size());
}

void revoke_check(const RevokeArgs& a, const std::string& log_name) {
  std::map<std::string, std::int64_t> revoked_at;
  {
    std::ifstream in(std::filesystem::path(a.dir) / "revoke.log");
    std::int64_t t = 0;
    for (std::string s; in >> t >> s;) revoked_at[s] = t;
  }
  std::ifstream in(std::filesystem::path(a.dir) / log_name);
  long searches = 0, after_revoke = 0, violations = 0, found_before = 0;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::int64_t start = 0, end = 0;
    std::string probed;
    ls >> start >> end >> probed;
    ++searches;
    const auto p = revoked_at.find(probed);
    const bool probed_revoked = p != revoked_at.end() && start > p->second;
    if (probed_revoked) ++after_revoke;
    bool first = true;
    for (std::string s; ls >> s; first = false) {
      const auto it = revoked_at.find(s);
      if (it != revoked_at.end() && start > it->second) ++violations;  // started after that revoke returned
      if (first && s == probed && !probed_revoked) ++found_before;
    }
  }
  std::printf("revoke-check %s: %ld searches, %ld of them probed a subject already revoked, %ld found the probed "
              "subject first before its revocation; violations: %ld\n",
              log_name.c_str(), searches, after_revoke, found_before, violations);
}

// ------------------------------------------------------------------ memory

std::size_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

struct MemoryArgs {
  int count = 100'000;
  std::string specs = "SQ8,Refine;IVF256,SQ8,nprobe=160,pca=128,refine=200";
  std::string dir;
};

void memory(const Common& c, const MemoryArgs& a) {
  const std::string db = (std::filesystem::path(a.dir) / "memory.db").string();
  std::filesystem::remove(db);
  std::filesystem::remove(db + "-wal");
  std::filesystem::remove(db + "-shm");
  Common local = c;
  local.store = db;
  auto engine = make_engine(local);
  const int dim = engine->recognizer_spec().dim;
  {
    StoreOptions o;
    o.key_hex = c.key_hex;
    o.use_env_key = false;
    o.durability = Durability::kNormal;
    auto store = must(open_store(db, o), "open " + db);
    fresh_collection(*store, c.collection, 0.4f);
    std::mt19937 rng(1);
    constexpr int kPerSubject = 100;
    for (int s = 0; s * kPerSubject < a.count; ++s) {
      const std::string subject = "subject-" + std::to_string(s);
      grant(*store, c.collection, subject);
      std::vector<NewFace> faces;
      for (int i = 0; i < kPerSubject && s * kPerSubject + i < a.count; ++i) faces.push_back(synthetic_face(rng, dim));
      must(store->enroll(c.collection, subject, faces, {"bench", "fill"}), "enroll");
    }
  }
  std::stringstream specs(a.specs);
  for (std::string spec; std::getline(specs, spec, ';');) {
    StoreOptions o;
    o.key_hex = c.key_hex;
    o.use_env_key = false;
    auto store = must(open_store(db, o), "open " + db);
    malloc_trim(0);
    const std::size_t before = rss_bytes();
    const auto t0 = now_ns();
    CollectionsOptions options;
    options.index_spec = spec;
    auto node = must(Collections::open(*engine, *store, options), "load");
    const double load_s = static_cast<double>(now_ns() - t0) / 1e9;
    malloc_trim(0);  // the decrypted records of the load are freed: count what stays
    const std::size_t after = rss_bytes();
    const double per = static_cast<double>(after - before) / a.count;
    const double gib = 1024.0 * 1024 * 1024;
    std::printf("memory index=%s templates=%zu: RSS +%.1f MiB = %.0f bytes/template (load %.1f s); "
                "templates per node with 1 GiB kept for the process and 20%% headroom: 8 GiB %.1fM, 32 GiB %.1fM, "
                "64 GiB %.1fM\n",
                spec.c_str(), node->indexed_faces(c.collection), static_cast<double>(after - before) / (1024 * 1024),
                per, load_s, (8 - 1) * gib * 0.8 / per / 1e6, (32 - 1) * gib * 0.8 / per / 1e6,
                (64 - 1) * gib * 0.8 / per / 1e6);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Several Candor nodes over one store: propagation, revoke races, memory"};
  app.require_subcommand(1);
  Common c;
  c.key_hex = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
  app.add_option("--store", c.store, "SQLite file or postgresql:// URI shared by the nodes");
  app.add_option("--key-hex", c.key_hex, "Template key (64 hex digits) of the store")->capture_default_str();
  app.add_option("--models", c.engine.model_dir, "Model directory");
  app.add_option("--collection", c.collection)->capture_default_str();

  PropagationArgs pa;
  auto* p = app.add_subcommand("propagation", "Enroll on A, time until B's index holds each face");
  p->add_option("--count", pa.count)->capture_default_str();
  p->add_option("--interval-ms", pa.interval_ms, "Pause between enrollments on A")->capture_default_str();
  p->add_option("--follow-wait-ms", pa.follow_wait_ms)->capture_default_str();
  p->callback([&] { propagation(c, pa); });

  RevokeArgs ra;
  auto add_revoke_options = [&](CLI::App* s) {
    s->add_option("--dir", ra.dir, "Working directory for the probes list and logs")->required();
  };
  auto* rs = app.add_subcommand("revoke-setup", "Enroll LFW subjects for the revoke race");
  add_revoke_options(rs);
  rs->add_option("--lfw", ra.lfw, "LFW root (holds lfw/<Name>/...)")->capture_default_str();
  rs->add_option("--subjects", ra.subjects)->capture_default_str();
  rs->callback([&] { revoke_setup(c, ra); });
  auto* rsearch = app.add_subcommand("revoke-search", "Node B: search until stopped");
  add_revoke_options(rsearch);
  rsearch->add_option("--seconds", ra.seconds)->capture_default_str();
  rsearch->add_option("--threads", ra.threads)->capture_default_str();
  rsearch->add_flag("--no-follow", [&](std::int64_t) { ra.follow = false; },
                    "Never apply the feed: every answer rests on the re-check");
  rsearch->callback([&] { revoke_search(c, ra); });
  auto* rrev = app.add_subcommand("revoke-revoke", "Node A: revoke every subject at random gaps");
  add_revoke_options(rrev);
  rrev->add_option("--min-gap-ms", ra.min_gap_ms)->capture_default_str();
  rrev->add_option("--max-gap-ms", ra.max_gap_ms)->capture_default_str();
  rrev->callback([&] { revoke_revoke(c, ra); });
  std::string log_name = "search.log";
  auto* rc = app.add_subcommand("revoke-check", "Count violations in the logs");
  add_revoke_options(rc);
  rc->add_option("--log", log_name)->capture_default_str();
  rc->callback([&] { revoke_check(ra, log_name); });

  MemoryArgs ma;
  auto* m = app.add_subcommand("memory", "RSS per template of loaded collections, per index");
  m->add_option("--count", ma.count)->capture_default_str();
  m->add_option("--specs", ma.specs, "Index specs separated by ';'")->capture_default_str();
  m->add_option("--dir", ma.dir, "Where the temporary SQLite store goes")->required();
  m->callback([&] { memory(c, ma); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
