#include "store_bench.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "candor/audit.h"
#include "candor/crypto.h"
#include "candor/store.h"

namespace candor {
namespace {

struct StoreBenchOptions {
  int faces = 2000;
  int repeat = 3;
  int dim = 512;
  int searches = 2000;
  std::string durability = "full";
  std::string dir;  // empty: a fresh directory under the system temp dir
  // "sqlite" (a fresh file per run in `dir`) or a postgresql:// URI: a fresh
  // database is created on that server for each run, and dropped after it.
  std::string store = "sqlite";
  int probes = 2000;  // search_count / existing_faces calls timed per run
};

bool is_pg_uri(const std::string& uri) {
  return uri.rfind("postgresql://", 0) == 0 || uri.rfind("postgres://", 0) == 0;
}

// A database of its own on the PostgreSQL server named by `server_uri`, for one run.
class ScratchPgDatabase {
 public:
  explicit ScratchPgDatabase(const std::string& server_uri) : server_uri_(server_uri) {
    static int counter = 0;
    name_ = "candor_bench_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    admin("CREATE DATABASE " + name_);
    // postgresql://authority/DB?params with DB replaced.
    const std::size_t scheme = server_uri.find("://");
    const std::size_t slash = server_uri.find('/', scheme + 3);
    const std::size_t query = server_uri.find('?', scheme + 3);
    uri_ = server_uri.substr(0, std::min(slash, query)) + "/" + name_ +
           (query == std::string::npos ? "" : server_uri.substr(query));
  }
  ~ScratchPgDatabase() {
    try {
      admin("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "candor bench store: could not drop %s: %s\n", name_.c_str(), e.what());
    }
  }
  ScratchPgDatabase(const ScratchPgDatabase&) = delete;
  ScratchPgDatabase& operator=(const ScratchPgDatabase&) = delete;
  const std::string& uri() const { return uri_; }

 private:
  void admin(const std::string& sql) const {
    PGconn* conn = PQconnectdb(server_uri_.c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      const std::string msg = PQerrorMessage(conn);
      PQfinish(conn);
      throw std::runtime_error("cannot connect to " + server_uri_ + ": " + msg);
    }
    PGresult* r = PQexec(conn, sql.c_str());
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    const std::string msg = PQerrorMessage(conn);
    PQclear(r);
    PQfinish(conn);
    if (!ok) throw std::runtime_error(sql + ": " + msg);
  }
  std::string server_uri_;
  std::string name_;
  std::string uri_;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base) {
    std::filesystem::path root = base.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(base);
    std::string tmpl = (root / "candor-store-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("cannot create a directory under " + root.string());
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const char* name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

template <typename T>
T must(Result<T> r, const char* what) {
  if (!r) throw std::runtime_error(std::string(what) + ": " + r.error().message);
  return std::move(r).value();
}

std::vector<NewFace> synthetic_faces(int n, int dim, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.0F, 1.0F);
  std::vector<NewFace> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    NewFace& f = out[static_cast<std::size_t>(i)];
    f.embedding.resize(static_cast<std::size_t>(dim));
    for (float& x : f.embedding) x = gauss(rng);
    f.box = FaceBox{12, 34, 112, 112};
    f.detector_score = 0.99F;
    f.quality_level = "good";
    f.quality_json = R"({"sharpness":0.71,"pose":"frontal"})";
    f.image_sha256 = sha256_hex("bench-image-" + std::to_string(i));
    f.model_id = "synthetic-" + std::to_string(dim);
  }
  return out;
}

struct RunResult {
  double enroll_faces_per_s = 0;
  double load_s = 0;
  double searches_per_s = 0;
  double search_count_us = 0;    // median latency of one search_count call
  double existing_faces_us = 0;  // median latency of existing_faces(10 ids)
};

// One run: fresh database, enroll all faces in batches, reload, then searches.
RunResult run_once(const StoreBenchOptions& o, int batch, const std::vector<NewFace>& faces, bool with_searches) {
  ScratchDir dir(o.dir);
  std::unique_ptr<ScratchPgDatabase> pg;
  if (is_pg_uri(o.store)) pg = std::make_unique<ScratchPgDatabase>(o.store);
  StoreOptions so;
  so.key_hex = SecretKey::generate().to_hex();
  so.use_env_key = false;
  so.durability = o.durability == "normal" ? Durability::kNormal : Durability::kFull;
  std::unique_ptr<Store> store = must(open_store(pg ? pg->uri() : dir.file("bench.db"), so), "open_store");
  const AuditContext ctx{"bench", "benchmark"};
  NewCollection c;
  c.name = "bench";
  c.purpose = "benchmark";
  c.retention_days = 365;
  c.match_threshold = 0.4F;
  must(store->create_collection(c, ctx), "create_collection");

  // One subject per batch, as an enrolment session would look.
  const int subjects = (o.faces + batch - 1) / batch;
  for (int s = 0; s < subjects; ++s) {
    NewConsent k;
    k.collection = "bench";
    k.subject = "subject-" + std::to_string(s);
    k.purpose = "benchmark";
    k.evidence_sha256 = sha256_hex(k.subject);
    k.collected_by = "bench";
    must(store->grant_consent(k, ctx), "grant_consent");
  }

  RunResult r;
  const Clock::time_point t0 = Clock::now();
  for (int s = 0; s < subjects; ++s) {
    const auto first = faces.begin() + static_cast<std::ptrdiff_t>(s) * batch;
    const auto last = faces.begin() + std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(s + 1) * batch, o.faces);
    must(store->enroll("bench", "subject-" + std::to_string(s), std::vector<NewFace>(first, last), ctx), "enroll");
  }
  r.enroll_faces_per_s = o.faces / seconds_since(t0);

  const Clock::time_point t1 = Clock::now();
  const std::vector<FaceRecord> loaded = must(store->load_faces("bench"), "load_faces");
  r.load_s = seconds_since(t1);
  if (static_cast<int>(loaded.size()) != o.faces) throw std::runtime_error("load_faces returned the wrong count");

  if (with_searches && o.searches > 0) {
    const Clock::time_point t2 = Clock::now();
    for (int i = 0; i < o.searches; ++i) {
      SearchRecord sr{AuditContext{"bench", "benchmark"}, "bench", {"subject-" + std::to_string(i % subjects)},
                      R"({"face_ids":[1,2,3],"scores":[0.81,0.44,0.41]})", "ok"};
      if (!store->record_search(sr).ok()) throw std::runtime_error("record_search failed");
    }
    r.searches_per_s = o.searches / seconds_since(t2);
  }
  if (with_searches && o.probes > 0) {
    // The two reads on the search path: the rate-limit check and the
    // re-check of candidates (10 ids, as a top-10 search would ask).
    std::vector<double> count_us;
    std::vector<double> exist_us;
    std::mt19937 rng(7);
    std::uniform_int_distribution<FaceId> pick(1, o.faces);
    const TimePoint since = now_ms() - std::chrono::minutes(1);
    for (int i = 0; i < o.probes; ++i) {
      const Clock::time_point a = Clock::now();
      must(store->search_count("bench", since), "search_count");
      count_us.push_back(seconds_since(a) * 1e6);
      std::vector<FaceId> ids(10);
      for (FaceId& id : ids) id = pick(rng);
      const Clock::time_point b = Clock::now();
      must(store->existing_faces(ids), "existing_faces");
      exist_us.push_back(seconds_since(b) * 1e6);
    }
    r.search_count_us = median(count_us);
    r.existing_faces_us = median(exist_us);
  }
  pg.reset();  // after the store: dropping the database ends its connections
  return r;
}

void run_store_bench(const StoreBenchOptions& o) {
  if (o.faces < 1 || o.repeat < 1 || o.dim < 1) throw std::runtime_error("--faces, --repeat and --dim must be positive");
  const std::vector<NewFace> faces = synthetic_faces(o.faces, o.dim, 42);
  std::printf("candor bench store: %s, %d faces x %d-d, durability=%s, median of %d runs\n",
              is_pg_uri(o.store) ? "PostgreSQL" : "SQLite", o.faces, o.dim, o.durability.c_str(), o.repeat);
  for (int batch : {1, 32}) {
    std::vector<double> rate;
    std::vector<double> load;
    std::vector<double> search;
    std::vector<double> count_us;
    std::vector<double> exist_us;
    for (int i = 0; i < o.repeat; ++i) {
      const RunResult r = run_once(o, batch, faces, batch == 1);
      rate.push_back(r.enroll_faces_per_s);
      load.push_back(r.load_s);
      search.push_back(r.searches_per_s);
      count_us.push_back(r.search_count_us);
      exist_us.push_back(r.existing_faces_us);
    }
    std::printf("  enroll batch=%-2d  %10.0f faces/s   load_faces(%d) %8.1f ms", batch, median(rate), o.faces,
                median(load) * 1e3);
    if (batch == 1 && o.searches > 0) std::printf("   record_search %8.0f /s", median(search));
    std::printf("\n");
    if (batch == 1 && o.probes > 0) {
      std::printf("  search_count %8.1f us   existing_faces(10 ids) %8.1f us   (median call, median of runs)\n",
                  median(count_us), median(exist_us));
    }
  }
}

}  // namespace

void register_store_bench_commands(CLI::App& bench) {
  auto opts = std::make_shared<StoreBenchOptions>();
  CLI::App* cmd = bench.add_subcommand("store", "Store throughput: enroll (batch 1 and 32), load_faces, audited searches");
  cmd->add_option("--faces", opts->faces, "faces to enroll per run")->capture_default_str();
  cmd->add_option("--repeat", opts->repeat, "runs per figure; the median is reported")->capture_default_str();
  cmd->add_option("--dim", opts->dim, "template dimension")->capture_default_str();
  cmd->add_option("--searches", opts->searches, "record_search calls per run (0 to skip)")->capture_default_str();
  cmd->add_option("--durability", opts->durability, "full (fsync per commit) or normal")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  cmd->add_option("--dir", opts->dir, "where to create the scratch database (default: system temp dir)");
  cmd->add_option("--store", opts->store,
                  "sqlite, or a postgresql:// URI: each run gets a fresh database created on that server")
      ->capture_default_str();
  cmd->add_option("--probes", opts->probes, "search_count / existing_faces calls timed per run (0 to skip)")
      ->capture_default_str();
  cmd->callback([opts] { run_store_bench(*opts); });
}

}  // namespace candor
