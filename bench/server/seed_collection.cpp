// candor_server_bench_seed: prepares and times what bench/server/wrk_bench.sh measures.
//
//   seed  STORE COLLECTION N OUTDIR   creates COLLECTION in STORE with N synthetic
//         consented subjects (random unit templates of the recogniser's dimension,
//         stored as the engine would store them) plus one real subject enrolled from
//         a face cropped out of testdata; writes OUTDIR/probe.jpg (another crop of
//         that face) and OUTDIR/a.jpg, OUTDIR/b.jpg (a compare pair).
//   time  STORE COLLECTION OUTDIR REPS the engine's own time for the requests the
//         server is benchmarked with, doing the same work as the server: compare =
//         decode + analyze(a) + analyze(b) + the quality of each compared face;
//         search = Collections::search (with the analyser, as the server runs it) over
//         the same store, opened as the server opens it (an fsync'd audit entry per
//         search). Prints JSON.
//   paired STORE COLLECTION OUTDIR REPS PORT KEY   what the server adds, measured so
//         that the machine's load cancels out: REPS times, the same request done
//         in-process and then sent to the server at 127.0.0.1:PORT (one keep-alive
//         connection, the JSON body wrk sends), back to back. Prints the median of the
//         per-pair differences (and the quartiles) for compare and search, as JSON.
//   throughput STORE COLLECTION OUTDIR SECONDS THREADS   the same work on THREADS
//         threads in this process for SECONDS per route: the engine's batch throughput
//         on these cores, which the server's req/s is compared with. Prints JSON.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "candor/analyzer.h"
#include "candor/collections.h"
#include "candor/crypto.h"
#include "candor/engine.h"

using namespace candor;

namespace {

[[noreturn]] void die(const Error& e) {
  std::cerr << "seed: " << error_code_name(e.code) << ": " << e.message << "\n";
  std::exit(1);
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  auto r = read_file_bytes(path, 64u << 20);
  if (!r) die(r.error());
  return std::move(*r);
}

void write_crop(const cv::Mat& img, const Face& f, float margin, const std::string& path) {
  const float mx = f.box.width * margin, my = f.box.height * margin;
  cv::Rect r(cv::Point(static_cast<int>(f.box.x - mx), static_cast<int>(f.box.y - my)),
             cv::Point(static_cast<int>(f.box.x + f.box.width + mx), static_cast<int>(f.box.y + f.box.height + my)));
  r &= cv::Rect(0, 0, img.cols, img.rows);
  cv::imwrite(path, img(r));
}

std::string base64(const std::vector<std::uint8_t>& bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t v = (static_cast<std::uint32_t>(bytes[i]) << 16) |
                            (i + 1 < bytes.size() ? static_cast<std::uint32_t>(bytes[i + 1]) << 8 : 0u) |
                            (i + 2 < bytes.size() ? static_cast<std::uint32_t>(bytes[i + 2]) : 0u);
    out += kDigits[v >> 18];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: seed STORE COLLECTION N OUTDIR | time STORE COLLECTION OUTDIR REPS"
                 " | paired STORE COLLECTION OUTDIR REPS PORT KEY | throughput STORE COLLECTION OUTDIR SECONDS THREADS\n";
    return 2;
  }
  const std::string mode = argv[1], store_path = argv[2], collection = argv[3];
  StoreOptions so;
  // Seeding speed; timing opens the store as the server does (full durability), so
  // that the fsync of each search's audit entry counts as engine work on both sides.
  so.durability = mode == "seed" ? Durability::kNormal : Durability::kFull;
  auto store = open_store(store_path, so);
  if (!store) die(store.error());
  auto engine = Engine::create();
  if (!engine) die(engine.error());
  const AuditContext ctx{"bench:seed", "benchmark set-up"};

  if (mode == "seed") {
    const int n = std::stoi(argv[4]);
    const std::string out = argc > 5 ? argv[5] : ".";
    auto coll = Collections::open(**engine, **store);
    if (!coll) die(coll.error());
    NewCollection spec;
    spec.name = collection;
    spec.purpose = "benchmark";
    spec.retention_days = 30;
    if (auto c = (*coll)->create_collection(spec, "fmr-1e-4", ctx); !c) die(c.error());
    // The real subject: face 0 of sample1, two crops (enrolled, probe); a compare pair from sample2.
    const std::string testdata = CANDOR_TESTDATA_DIR;
    const cv::Mat img = cv::imread(testdata + "/face-api/sample1.jpg");
    auto faces = (*engine)->detect(img);
    std::sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.box.x < b.box.x; });
    write_crop(img, faces.at(0), 0.3f, out + "/enroll.jpg");
    write_crop(img, faces.at(0), 0.6f, out + "/probe.jpg");
    write_crop(img, faces.at(0), 0.3f, out + "/a.jpg");
    write_crop(img, faces.at(0), 0.5f, out + "/b.jpg");
    NewConsent consent{collection, "bench-real", "benchmark", std::string(64, 'b'), "bench", std::nullopt, std::nullopt};
    if (auto g = (*store)->grant_consent(consent, ctx); !g) die(g.error());
    const auto bytes = read_bytes(out + "/enroll.jpg");
    std::vector<EnrollImage> images = {{"enroll.jpg", bytes}};
    auto enrolled = (*coll)->enroll(collection, "bench-real", images, ctx);
    if (!enrolled || !enrolled->at(0).face_id) die({ErrorCode::kInternal, "could not enroll the real subject"});

    const int dim = (*engine)->recognizer_spec().dim;
    std::mt19937 rng(42);
    std::normal_distribution<float> gauss;
    for (int i = 0; i < n; ++i) {
      const std::string subject = "synthetic-" + std::to_string(i);
      NewConsent c{collection, subject, "benchmark", std::string(64, 'b'), "bench", std::nullopt, std::nullopt};
      if (auto g = (*store)->grant_consent(c, ctx); !g) die(g.error());
      NewFace f;
      f.embedding.resize(static_cast<std::size_t>(dim));
      float norm = 0;
      for (auto& v : f.embedding) v = gauss(rng), norm += v * v;
      for (auto& v : f.embedding) v /= std::sqrt(norm);
      f.box = {0, 0, 100, 100};
      f.detector_score = 0.99f;
      f.quality_level = "unassessed";
      f.image_sha256 = sha256_hex(subject);
      f.model_id = (*engine)->recognizer_spec().id;
      if (auto e = (*store)->enroll(collection, subject, {f}, ctx); !e) die(e.error());
      if (i % 1000 == 999) std::fprintf(stderr, "\rseeded %d/%d", i + 1, n);
    }
    std::fprintf(stderr, "\n");
    return 0;
  }

  if (mode == "time") {
    const std::string out = argv[4];
    const int reps = argc > 5 ? std::stoi(argv[5]) : 20;
    auto analyzer = FaceAnalyzer::create();
    if (!analyzer) die(analyzer.error());
    CollectionsOptions options;
    options.analyzer = analyzer->get();
    auto coll = Collections::open(**engine, **store, options);
    if (!coll) die(coll.error());
    const auto a = read_bytes(out + "/a.jpg"), b = read_bytes(out + "/b.jpg"), probe = read_bytes(out + "/probe.jpg");
    std::vector<double> compare_ms, search_ms;
    for (int i = 0; i < reps; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      auto ma = decode_image(a), mb = decode_image(b);
      auto fa = (*engine)->analyze(*ma), fb = (*engine)->analyze(*mb);
      (*analyzer)->analyze(*ma, std::span<Face>(fa.data(), 1));
      (*analyzer)->analyze(*mb, std::span<Face>(fb.data(), 1));
      (void)cosine_similarity(fa.at(0).embedding, fb.at(0).embedding);
      auto t1 = std::chrono::steady_clock::now();
      auto r = (*coll)->search(collection, probe, 5, {"bench:engine", "benchmark: engine time"});
      auto t2 = std::chrono::steady_clock::now();
      if (!r) die(r.error());
      compare_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      search_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    std::cout << nlohmann::json({{"compare_p50_ms", percentile(compare_ms, 0.5)},
                                 {"compare_p99_ms", percentile(compare_ms, 0.99)},
                                 {"search_p50_ms", percentile(search_ms, 0.5)},
                                 {"search_p99_ms", percentile(search_ms, 0.99)},
                                 {"templates", (*coll)->indexed_faces(collection)}})
                     .dump()
              << "\n";
    return 0;
  }
  if (mode == "paired") {
    if (argc < 8) {
      std::cerr << "usage: paired STORE COLLECTION OUTDIR REPS PORT KEY\n";
      return 2;
    }
    const std::string out = argv[4];
    const int reps = std::stoi(argv[5]);
    const int port = std::stoi(argv[6]);
    const std::string key = argv[7];
    auto analyzer = FaceAnalyzer::create();
    if (!analyzer) die(analyzer.error());
    CollectionsOptions options;
    options.analyzer = analyzer->get();
    auto coll = Collections::open(**engine, **store, options);
    if (!coll) die(coll.error());
    const auto a = read_bytes(out + "/a.jpg"), b = read_bytes(out + "/b.jpg"), probe = read_bytes(out + "/probe.jpg");
    const std::string compare_body = nlohmann::json({{"a", base64(a)}, {"b", base64(b)}}).dump();
    const std::string search_body = nlohmann::json({{"image", base64(probe)}, {"reason", "load test"}}).dump();
    httplib::Client http("127.0.0.1", port);
    http.set_keep_alive(true);
    http.set_tcp_nodelay(true);
    http.set_read_timeout(60, 0);
    const httplib::Headers headers = {{"X-API-Key", key}};
    using Clock = std::chrono::steady_clock;
    const auto ms = [](Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); };
    const auto post = [&](const char* path, const std::string& body) {
      auto r = http.Post(path, headers, body, "application/json");
      if (!r || r->status != 200) die({ErrorCode::kInternal, std::string("the server failed ") + path});
    };
    std::vector<double> ce, cs, cd, se, ss, sd;
    for (int i = -2; i < reps; ++i) {  // two warm-up pairs
      auto t0 = Clock::now();
      auto ma = decode_image(a), mb = decode_image(b);
      auto fa = (*engine)->analyze(*ma), fb = (*engine)->analyze(*mb);
      (*analyzer)->analyze(*ma, std::span<Face>(fa.data(), 1));
      (*analyzer)->analyze(*mb, std::span<Face>(fb.data(), 1));
      (void)cosine_similarity(fa.at(0).embedding, fb.at(0).embedding);
      const double engine_compare = ms(t0);
      t0 = Clock::now();
      post("/v1/compare", compare_body);
      const double server_compare = ms(t0);
      t0 = Clock::now();
      auto r = (*coll)->search(collection, probe, 5, {"bench:engine", "benchmark: engine time"});
      if (!r) die(r.error());
      const double engine_search = ms(t0);
      t0 = Clock::now();
      post("/v1/collections/bench/search", search_body);
      const double server_search = ms(t0);
      if (i < 0) continue;
      ce.push_back(engine_compare), cs.push_back(server_compare), cd.push_back(server_compare - engine_compare);
      se.push_back(engine_search), ss.push_back(server_search), sd.push_back(server_search - engine_search);
    }
    std::cout << nlohmann::json({{"pairs", reps},
                                 {"compare_engine_p50_ms", percentile(ce, 0.5)},
                                 {"compare_server_p50_ms", percentile(cs, 0.5)},
                                 {"compare_added_p25_ms", percentile(cd, 0.25)},
                                 {"compare_added_p50_ms", percentile(cd, 0.5)},
                                 {"compare_added_p75_ms", percentile(cd, 0.75)},
                                 {"search_engine_p50_ms", percentile(se, 0.5)},
                                 {"search_server_p50_ms", percentile(ss, 0.5)},
                                 {"search_added_p25_ms", percentile(sd, 0.25)},
                                 {"search_added_p50_ms", percentile(sd, 0.5)},
                                 {"search_added_p75_ms", percentile(sd, 0.75)}})
                     .dump()
              << "\n";
    return 0;
  }
  if (mode == "throughput") {
    const std::string out = argv[4];
    const double seconds = argc > 5 ? std::stod(argv[5]) : 8.0;
    const int threads = argc > 6 ? std::stoi(argv[6]) : 2;
    auto analyzer = FaceAnalyzer::create();
    if (!analyzer) die(analyzer.error());
    CollectionsOptions options;
    options.analyzer = analyzer->get();
    auto coll = Collections::open(**engine, **store, options);
    if (!coll) die(coll.error());
    const auto a = read_bytes(out + "/a.jpg"), b = read_bytes(out + "/b.jpg"), probe = read_bytes(out + "/probe.jpg");
    const auto compare_once = [&] {
      auto ma = decode_image(a), mb = decode_image(b);
      auto fa = (*engine)->analyze(*ma), fb = (*engine)->analyze(*mb);
      (*analyzer)->analyze(*ma, std::span<Face>(fa.data(), 1));
      (*analyzer)->analyze(*mb, std::span<Face>(fb.data(), 1));
      (void)cosine_similarity(fa.at(0).embedding, fb.at(0).embedding);
    };
    const auto search_once = [&] {
      auto r = (*coll)->search(collection, probe, 5, {"bench:engine", "benchmark: engine throughput"});
      if (!r) die(r.error());
    };
    // Requests completed per second by `threads` threads, each doing one request after another.
    const auto rate = [&](const std::function<void()>& once) {
      std::atomic<long> done{0};
      const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
      std::vector<std::thread> pool;
      const auto t0 = std::chrono::steady_clock::now();
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
          while (std::chrono::steady_clock::now() < until) once(), ++done;
        });
      }
      for (auto& t : pool) t.join();
      return static_cast<double>(done.load()) /
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    compare_once();
    search_once();  // warm-up
    const double compare_rps = rate(compare_once);
    const double search_rps = rate(search_once);
    std::cout << nlohmann::json({{"threads", threads}, {"compare_rps", compare_rps}, {"search_rps", search_rps}}).dump()
              << "\n";
    return 0;
  }
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
