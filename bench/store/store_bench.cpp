#include "store_bench.h"

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
};

// One run: fresh database, enroll all faces in batches, reload, then searches.
RunResult run_once(const StoreBenchOptions& o, int batch, const std::vector<NewFace>& faces, bool with_searches) {
  ScratchDir dir(o.dir);
  StoreOptions so;
  so.key_hex = SecretKey::generate().to_hex();
  so.use_env_key = false;
  so.durability = o.durability == "normal" ? Durability::kNormal : Durability::kFull;
  std::unique_ptr<Store> store = must(open_store(dir.file("bench.db"), so), "open_store");
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
  return r;
}

void run_store_bench(const StoreBenchOptions& o) {
  if (o.faces < 1 || o.repeat < 1 || o.dim < 1) throw std::runtime_error("--faces, --repeat and --dim must be positive");
  const std::vector<NewFace> faces = synthetic_faces(o.faces, o.dim, 42);
  std::printf("candor bench store: %d faces x %d-d, durability=%s, median of %d runs\n", o.faces, o.dim,
              o.durability.c_str(), o.repeat);
  for (int batch : {1, 32}) {
    std::vector<double> rate;
    std::vector<double> load;
    std::vector<double> search;
    for (int i = 0; i < o.repeat; ++i) {
      const RunResult r = run_once(o, batch, faces, batch == 1);
      rate.push_back(r.enroll_faces_per_s);
      load.push_back(r.load_s);
      search.push_back(r.searches_per_s);
    }
    std::printf("  enroll batch=%-2d  %10.0f faces/s   load_faces(%d) %8.1f ms", batch, median(rate), o.faces,
                median(load) * 1e3);
    if (batch == 1 && o.searches > 0) std::printf("   record_search %8.0f /s", median(search));
    std::printf("\n");
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
  cmd->callback([opts] { run_store_bench(*opts); });
}

}  // namespace candor
