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
//         the same store. Prints JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

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

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: seed STORE COLLECTION N OUTDIR | time STORE COLLECTION OUTDIR REPS\n";
    return 2;
  }
  const std::string mode = argv[1], store_path = argv[2], collection = argv[3];
  StoreOptions so;
  so.durability = Durability::kNormal;  // seeding speed; the server opens it with full durability
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
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
